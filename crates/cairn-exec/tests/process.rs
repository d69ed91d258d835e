//! An attempt's processes: found by session, environment and descent, killed, checked.

use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_exec::process::{ProcStat, attempt_processes, kill_all, kill_attempt, leftovers};

/// A shell with the given environment that starts a background child and one that leaves
/// its session, then waits; returns the shell's pid and the other two's (from its stdout).
fn family(env: &[(&str, &str)]) -> (std::process::Child, Vec<i32>) {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg("sleep 300 & echo $!; setsid sleep 301 & echo $!; wait")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut pids = vec![child.id() as i32];
    for _ in 0..2 {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        pids.push(line.trim().parse().unwrap());
    }
    (child, pids)
}

fn running(pid: i32) -> bool {
    ProcStat::read(pid).is_some_and(|s| !s.is_zombie())
}

#[tokio::test]
async fn every_process_of_an_attempt_is_found_killed_and_checked_gone() {
    let run = format!("test-run-{}", std::process::id());
    let (mut shell, pids) = family(&[("CAIRN_RUN_ID", run.as_str())]);
    // The escaped child is found by its environment; without it, by session only two.
    let mut found = attempt_processes(None, &run);
    found.sort();
    let mut expected = pids.clone();
    expected.sort();
    assert_eq!(found, expected);
    assert!(pids.iter().all(|&p| running(p)));
    let left = kill_attempt(None, &run, Duration::from_secs(5)).await;
    assert!(left.is_empty(), "{left:?}");
    // Killed and possibly reaped already (it is one of the attempt's processes).
    let _ = shell.wait();
    for p in pids {
        assert!(!running(p), "{p} survived");
    }
}

#[tokio::test]
async fn leftovers_of_another_attempt_of_the_partition_are_found_not_ours() {
    let old = format!("old-{}", std::process::id());
    let dir = format!("/nonexistent/assets-{}", std::process::id());
    let env = [
        ("CAIRN_RUN_ID", old.as_str()),
        ("CAIRN_ASSETS_DIR", dir.as_str()),
        ("CAIRN_ASSET", "raw/x"),
        ("CAIRN_PARTITION", "p"),
    ];
    let (mut shell, pids) = family(&env);
    let partition = |p: &str| {
        vec![
            format!("CAIRN_ASSETS_DIR={dir}"),
            "CAIRN_ASSET=raw/x".to_owned(),
            format!("CAIRN_PARTITION={p}"),
        ]
    };
    assert!(
        leftovers(&partition("q"), "new").is_empty(),
        "another partition's"
    );
    assert!(
        leftovers(&partition("p"), &old).is_empty(),
        "the attempt's own"
    );
    let mut found = leftovers(&partition("p"), "new");
    found.sort();
    let mut expected = pids.clone();
    expected.sort();
    assert_eq!(found, expected);
    let left = kill_all(|| leftovers(&partition("p"), "new"), Duration::from_secs(5)).await;
    assert!(left.is_empty(), "{left:?}");
    // Killed and possibly reaped already (it is one of the attempt's processes).
    let _ = shell.wait();
    assert!(pids.iter().all(|&p| !running(p)));
}
