//! One command as a subprocess in its own process group, so that a timeout, a
//! cancellation or a shutdown kills everything it started.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use cairn_model::asset::Program;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::environment::RunEnvironment;

/// Starts `program` with exactly `env`'s variables, stdin closed, stdout and stderr piped.
/// The error is a sentence for the run's log.
pub fn spawn(program: &Program, env: &RunEnvironment) -> Result<Child, String> {
    if !env.cwd.is_dir() {
        return Err(format!(
            "the working directory {} does not exist",
            env.cwd.display()
        ));
    }
    let (exe, mut cmd) = match program {
        Program::Argv(argv) => {
            let Some((exe, args)) = argv.split_first() else {
                return Err("the command is empty".into());
            };
            let mut cmd = Command::new(exe);
            cmd.args(args);
            (exe.clone(), cmd)
        }
        Program::Shell(line) => {
            let mut cmd = Command::new("/bin/sh");
            cmd.arg("-c").arg(line);
            ("/bin/sh".to_owned(), cmd)
        }
    };
    cmd.env_clear()
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .current_dir(&env.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("command not found: {exe} ({e})"),
        std::io::ErrorKind::PermissionDenied => {
            format!("command is not executable: {exe} ({e})")
        }
        _ => format!("could not start {exe}: {e}"),
    })
}

/// Sends `signal` to the process group `pgid`; a group already gone is fine.
pub fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else {
        return;
    };
    let _ = killpg(Pid::from_raw(raw), signal);
}

/// SIGTERM to the group, then SIGKILL after `grace` if the leader has not exited.
pub async fn terminate(child: &mut Child, pgid: u32, grace: Duration) -> Option<ExitStatus> {
    signal_group(pgid, Signal::SIGTERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(Ok(status)) => Some(status),
        _ => None,
    };
    signal_group(pgid, Signal::SIGKILL);
    match status {
        Some(s) => Some(s),
        None => child.wait().await.ok(),
    }
}

/// "exited with status 3", "killed by signal SIGKILL (9)".
pub fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    match status.signal() {
        Some(sig) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by signal {} ({sig})", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        None => "ended without a status".into(),
    }
}
