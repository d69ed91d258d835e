//! One command as a subprocess in a session of its own, so that a timeout, a
//! cancellation, a shutdown or recovery kills everything it started.
//!
//! What belongs to an attempt: its session and process group (both the leader's pid), every
//! process carrying its `CAIRN_RUN_ID` in its environment (a descendant that calls `setsid`
//! keeps it), and the descendants of those. The Cairn process is a child subreaper
//! ([`become_subreaper`]), so a descendant whose parent exits is re-parented to Cairn, not
//! to init, and is reaped here once killed.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use cairn_model::asset::Program;
use nix::sys::signal::{Signal, kill, killpg};
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
        .kill_on_drop(false);
    // SAFETY: `setsid` is async-signal-safe and touches no memory of the parent.
    #[allow(unsafe_code)] // The workspace denies unsafe code; this hook has no safe form.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    // Registered before anyone can reap it: `reap_orphans` never takes a leader's status.
    let mut leaders = LEADERS.lock().expect("the leader set is never poisoned");
    let child = cmd.spawn();
    if let Some(pid) = child.as_ref().ok().and_then(|c| c.id()) {
        leaders.insert(pid as i32);
    }
    drop(leaders);
    child.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("command not found: {exe} ({e})"),
        std::io::ErrorKind::PermissionDenied => {
            format!("command is not executable: {exe} ({e})")
        }
        _ => format!("could not start {exe}: {e}"),
    })
}

/// Commands' leaders, whose exit status is their `Child`'s to collect.
static LEADERS: std::sync::Mutex<std::collections::BTreeSet<i32>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// Forgets a leader once its `Child` has been waited for.
pub fn forget_leader(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        LEADERS
            .lock()
            .expect("the leader set is never poisoned")
            .remove(&pid);
    }
}

/// Sends `signal` to the process group `pgid`; a group already gone is fine.
pub fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else {
        return;
    };
    let _ = killpg(Pid::from_raw(raw), signal);
}

/// SIGTERM to every process of the attempt, then SIGKILL to the leader's group after
/// `grace` if the leader has not exited ([`kill_attempt`] does the rest).
pub async fn terminate(
    child: &mut Child,
    pgid: u32,
    run_id: &str,
    grace: Duration,
) -> Option<ExitStatus> {
    if grace.is_zero() {
        signal_group(pgid, Signal::SIGKILL);
    } else {
        for pid in attempt_processes(Some(pgid), run_id) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
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

/// Makes this process the reaper of its orphaned descendants (Linux `PR_SET_CHILD_SUBREAPER`):
/// a command's background process whose parent exits stays below Cairn, where it is found
/// and killed with its attempt. Idempotent.
pub fn become_subreaper() -> Result<(), nix::Error> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// One process as `/proc/PID/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// Clock ticks after boot: with the pid, identifies a process (pids are reused).
    pub start_time: u64,
}

impl ProcStat {
    pub fn read(pid: i32) -> Option<ProcStat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may hold anything: split after the last.
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(ProcStat {
            pid,
            state: fields.first()?.chars().next()?,
            ppid: fields.get(1)?.parse().ok()?,
            pgrp: fields.get(2)?.parse().ok()?,
            session: fields.get(3)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
        })
    }

    /// Exited but not yet reaped: it runs nothing.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Every process on this host, as `/proc` lists them.
fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(ProcStat::read)
        .collect()
}

/// Whether `pid`'s environment holds every one of `wanted` (`NAME=value`).
pub fn environ_has(pid: i32, wanted: &[String]) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    wanted
        .iter()
        .all(|w| environ.split(|&b| b == 0).any(|v| v == w.as_bytes()))
}

/// Processes matching `matches`, and all their descendants; never this process.
fn with_descendants(all: &[ProcStat], matches: impl Fn(&ProcStat) -> bool) -> Vec<ProcStat> {
    let me = std::process::id() as i32;
    let mut found: Vec<ProcStat> = all
        .iter()
        .filter(|p| p.pid != me && matches(p))
        .copied()
        .collect();
    let mut i = 0;
    while i < found.len() {
        let parent = found[i].pid;
        for p in all {
            if p.ppid == parent && p.pid != me && !found.iter().any(|f| f.pid == p.pid) {
                found.push(*p);
            }
        }
        i += 1;
    }
    found
}

/// The processes of run `run_id`'s attempt whose session/group is `pgid` (when known),
/// zombies included.
fn attempt_stats(pgid: Option<u32>, run_id: &str) -> Vec<ProcStat> {
    let pgid = pgid.and_then(|p| i32::try_from(p).ok()).filter(|&p| p > 0);
    let wanted = [format!("CAIRN_RUN_ID={run_id}")];
    with_descendants(&all_processes(), |p| {
        Some(p.pgrp) == pgid || Some(p.session) == pgid || environ_has(p.pid, &wanted)
    })
}

/// The live processes of run `run_id`'s attempt (see the module's comment).
pub fn attempt_processes(pgid: Option<u32>, run_id: &str) -> Vec<i32> {
    attempt_stats(pgid, run_id)
        .into_iter()
        .filter(|p| !p.is_zombie())
        .map(|p| p.pid)
        .collect()
}

/// Live processes whose environment holds every one of `wanted` but not
/// `CAIRN_RUN_ID=except_run`, with their descendants: what is left of other attempts.
pub fn leftovers(wanted: &[String], except_run: &str) -> Vec<i32> {
    let mine = format!("CAIRN_RUN_ID={except_run}");
    with_descendants(&all_processes(), |p| {
        !p.is_zombie()
            && environ_has(p.pid, wanted)
            && !environ_has(p.pid, std::slice::from_ref(&mine))
    })
    .into_iter()
    .filter(|p| !p.is_zombie())
    .map(|p| p.pid)
    .collect()
}

/// SIGKILLs what `find` returns until it finds nothing running (at most `within`), reaping
/// those of them that were re-parented to this process. Returns the pids still running.
pub async fn kill_all(mut find: impl FnMut() -> Vec<i32>, within: Duration) -> Vec<i32> {
    let deadline = tokio::time::Instant::now() + within;
    let mut killed = std::collections::BTreeSet::new();
    loop {
        let pids = find();
        for &pid in &pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            killed.insert(pid);
        }
        reap_orphans(&killed);
        let left: Vec<i32> = pids
            .into_iter()
            .filter(|&p| ProcStat::read(p).is_some_and(|s| !s.is_zombie()))
            .collect();
        if left.is_empty() && find().is_empty() {
            reap_orphans(&killed);
            return Vec::new();
        }
        if tokio::time::Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reaps those of `killed` that exited as children of this process: orphans re-parented
/// to it (it is a subreaper). Never a command's leader, whose status is its `Child`'s.
fn reap_orphans(killed: &std::collections::BTreeSet<i32>) {
    let me = std::process::id() as i32;
    let leaders = LEADERS.lock().expect("the leader set is never poisoned");
    for &pid in killed {
        if leaders.contains(&pid) {
            continue;
        }
        if ProcStat::read(pid).is_some_and(|p| p.ppid == me && p.is_zombie()) {
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
        }
    }
}

/// Kills every process of run `run_id`'s attempt (see [`attempt_processes`]) and checks
/// that none is left; returns those still running after `within`.
pub async fn kill_attempt(pgid: Option<u32>, run_id: &str, within: Duration) -> Vec<i32> {
    let left = kill_all(|| attempt_processes(pgid, run_id), within).await;
    // Those that exited on their own before and were re-parented here: reaped too.
    let exited: std::collections::BTreeSet<i32> = attempt_stats(pgid, run_id)
        .into_iter()
        .filter(ProcStat::is_zombie)
        .map(|p| p.pid)
        .collect();
    reap_orphans(&exited);
    left
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
