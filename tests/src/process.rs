//! The project's binaries run as processes of their own, for what only a process shows: its exit
//! status, what it prints, its peak memory (`VmHWM`) and CPU time (for the benchmarks too).
//! `scripts/test.sh` builds them before the tests run.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::Command;

/// The path of a binary of the workspace, beside the test binary (`target/<profile>/<name>`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, which builds the binaries first",
        path.display()
    );
    path
}

/// What a finished process did.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident memory, in MB, as last sampled from `/proc` while it ran.
    pub peak_rss_mb: f64,
    pub elapsed: Duration,
}

/// Runs `name` with `args` and exactly `env` (plus `PATH`), sampling its peak RSS, killed after
/// `limit`.
pub async fn run(name: &str, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Finished {
    let started = std::time::Instant::now();
    let mut cmd = Command::new(binary(name));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn");
    let pid = child.id().unwrap_or(0);
    let (peak_tx, mut peak_rx) = tokio::sync::watch::channel(0.0f64);
    let sampler = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            match peak_rss_kb(pid) {
                Some(kb) => {
                    let _ = peak_tx.send(kb as f64 / 1024.0);
                }
                None => break,
            }
        }
    });
    let output = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} ran past {limit:?}"))
        .expect("output");
    sampler.abort();
    let peak_rss_mb = *peak_rx.borrow_and_update();
    Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        peak_rss_mb,
        elapsed: started.elapsed(),
    }
}

/// `VmHWM` of a live process, in kB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// utime + stime of a process, plus its reaped children's when asked (a postmaster's exited
/// backends), from `/proc/<pid>/stat`; 0 if it cannot be read.
pub fn cpu_ticks(pid: u32, with_reaped_children: bool) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15,
    // cutime 16, cstime 17.
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0;
    };
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let field = |n: usize| fields.get(n - 3).copied().unwrap_or(0);
    field(14)
        + field(15)
        + if with_reaped_children {
            field(16) + field(17)
        } else {
            0
        }
}
