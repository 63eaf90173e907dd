//! The project's binaries run as processes of their own, for what only a process shows: its exit
//! status, what it prints, and its peak memory (`VmHWM`). `scripts/test.sh` builds them before the
//! tests run.

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
