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

/// An edge running as a process of its own on a fresh test database, for what only a process
/// shows under load (its memory); killed on drop.
pub struct Server {
    pub public: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub db: crate::pg::TestDb,
    secret: String,
    pid: u32,
    _child: tokio::process::Child,
}

/// A free loopback port, found by binding port 0 (for a process that must be told its port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    /// `edge serve` with the test defaults and `env`, once `/ready` answers 200.
    pub async fn edge(env: &[(&str, &str)]) -> Self {
        let db = crate::pg::TestDb::new().await;
        let public = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        let secret = format!("whsec_process_{}", uuid::Uuid::new_v4().simple());
        let mut cmd = Command::new(binary("edge"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", db.url())
            .env("EDGE_LISTEN", public.to_string())
            .env("EDGE_ADMIN_LISTEN", admin.to_string())
            .env("STRIPE_EXPECT_LIVEMODE", "any");
        // A test that gives the secret as a file gives no secret in the environment.
        if !env
            .iter()
            .any(|(k, _)| k.starts_with("STRIPE_WEBHOOK_SECRET"))
        {
            cmd.env("STRIPE_WEBHOOK_SECRET", &secret);
        }
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = cmd.spawn().expect("spawn edge");
        let pid = child.id().unwrap_or(0);
        let ready = crate::http::eventually(Duration::from_secs(30), || async {
            let req = crate::http::request(http::Method::GET, admin, "/ready")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .expect("request");
            crate::http::send(admin, req)
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await;
        assert!(ready, "the edge process never became ready");
        Self {
            public,
            admin,
            db,
            secret,
            pid,
            _child: child,
        }
    }

    /// Sends it `signal` (`HUP`, `TERM`…).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {}", self.pid);
    }

    /// Its peak resident memory so far, in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        peak_rss_kb(self.pid).unwrap_or(0) as f64 / 1024.0
    }

    /// A signed `checkout.session.completed` for `session_id`, POSTed now.
    pub async fn webhook(&self, session_id: &str) -> crate::http::Reply {
        self.webhook_signed_with(&self.secret, session_id).await
    }

    /// [`Server::webhook`], signed with `secret`.
    pub async fn webhook_signed_with(&self, secret: &str, session_id: &str) -> crate::http::Reply {
        let body = sim::objects::session_event(
            "checkout.session.completed",
            &sim::objects::Session::new(session_id),
        )
        .to_string();
        let signature = common::stripe::signature::sign(
            secret,
            chrono::Utc::now().timestamp(),
            body.as_bytes(),
        );
        let req = crate::http::request(http::Method::POST, self.public, "/stripe/webhook")
            .header("stripe-signature", signature)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .expect("request");
        crate::http::send(self.public, req).await.expect("webhook")
    }
}

/// A daemon binary (`edge serve`, `reconciler run`) running as a process with exactly `env`
/// (plus `PATH`), its output discarded; killed on drop.
pub struct Daemon {
    pub pid: u32,
    child: tokio::process::Child,
}

impl Daemon {
    /// Starts `name args` and waits until `admin`'s `/ready` answers 200.
    pub async fn start(
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        admin: std::net::SocketAddr,
    ) -> Self {
        let child = Command::new(binary(name))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn");
        let pid = child.id().unwrap_or(0);
        let ready = crate::http::eventually(Duration::from_secs(30), || async {
            let req = crate::http::request(http::Method::GET, admin, "/ready")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .expect("request");
            crate::http::send(admin, req)
                .await
                .is_ok_and(|r| r.status == 200)
        })
        .await;
        assert!(ready, "{name} never became ready");
        Self { pid, child }
    }

    /// `kill -9`: no drain, no clean-up, as a crash; returns once it is gone.
    pub async fn kill9(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
