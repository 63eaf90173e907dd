//! Postgres for tests: the cluster (a throwaway one when `DATABASE_URL` is unset), a migrated
//! template database created once, and a fresh database per test cloned from it.
//!
//! The throwaway cluster listens only on a Unix socket in a temporary directory, so tests need no
//! port. It runs under a small shell that holds our stdin: when the test process exits, however it
//! exits, the pipe closes and the shell stops Postgres and removes the directory.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::config::DbConfig;

/// The lock time-out of test pools, as in production (`EDGE_LOCK_TIMEOUT_MS`).
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(2000);
use tokio_postgres::{Client, NoTls};

/// How the harness reaches the server that holds the test databases.
#[derive(Debug, Clone)]
pub struct Server {
    /// Connection settings without a database name.
    pub base: tokio_postgres::Config,
    /// The Unix socket directory of a throwaway cluster (None for an external `DATABASE_URL`).
    pub socket_dir: Option<PathBuf>,
    pub port: u16,
    /// The template database every test database is cloned from.
    pub template: String,
}

/// A throwaway cluster's keeper process (kept alive for the whole test process).
struct Keeper {
    _child: Child,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static KEEPER: Mutex<Option<Keeper>> = Mutex::new(None);

/// The shared server, started and templated on first use.
pub fn server() -> &'static Server {
    let result = SERVER.get_or_init(|| {
        // A thread of its own: the template is built on a runtime that is not the test's.
        std::thread::spawn(|| {
            let server = match std::env::var("DATABASE_URL") {
                Ok(url) if !url.trim().is_empty() => external(&url)?,
                _ => throwaway()?,
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| common::error::chain(&e))?;
            rt.block_on(ensure_template(&server))?;
            Ok(server)
        })
        .join()
        .unwrap_or_else(|_| Err("the Postgres set-up thread panicked".into()))
    });
    match result {
        Ok(server) => server,
        Err(e) => panic!("test Postgres is unavailable: {e}"),
    }
}

fn external(url: &str) -> Result<Server, String> {
    let base: tokio_postgres::Config = url.parse().map_err(|e| format!("DATABASE_URL: {e}"))?;
    let port = base.get_ports().first().copied().unwrap_or(5432);
    Ok(Server {
        base,
        socket_dir: None,
        port,
        template: template_name(),
    })
}

/// Where Debian keeps the server binaries; `PG_BIN` overrides.
pub fn pg_bin() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<u32> = std::fs::read_dir(root)
        .map_err(|e| format!("no PostgreSQL server under {}: {e}", root.display()))?
        .filter_map(|d| d.ok()?.file_name().to_str()?.parse().ok())
        .filter(|v: &u32| root.join(v.to_string()).join("bin/postgres").exists())
        .collect();
    versions.sort_unstable();
    let v = versions
        .last()
        .ok_or("no PostgreSQL server binaries found (install postgresql)")?;
    Ok(root.join(v.to_string()).join("bin"))
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `cmd` run as the `postgres` user when we are root (initdb refuses root).
fn as_db_user(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Makes `dir` the postgres user's (when root) and runs initdb into `dir/data`.
fn init_data_dir(bin: &Path, root: bool, dir: &Path) -> Result<PathBuf, String> {
    let data = dir.join("data");
    if root {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()
            .map_err(|e| common::error::chain(&e))?;
        if !ok.success() {
            return Err("chown to postgres failed".into());
        }
    }
    let out = as_db_user(root, &bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ])
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(data)
}

fn throwaway() -> Result<Server, String> {
    let bin = pg_bin()?;
    let root = running_as_root();
    let dir = tempfile::Builder::new()
        .prefix("edge-test-pg-")
        .tempdir()
        .map_err(|e| common::error::chain(&e))?
        .keep();
    let data = init_data_dir(&bin, root, &dir)?;
    let port = 5432u16;
    let postgres = as_db_user(root, &bin.join("postgres"));
    let mut argv: Vec<String> = std::iter::once(postgres.get_program())
        .chain(postgres.get_args())
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect();
    for arg in [
        "-D".into(),
        data.display().to_string(),
        "-p".into(),
        port.to_string(),
        "-k".into(),
        dir.display().to_string(),
        "-c".into(),
        "listen_addresses=".into(),
        "-c".into(),
        "max_connections=400".into(),
        "-c".into(),
        "fsync=off".into(),
        "-c".into(),
        "full_page_writes=off".into(),
        "-c".into(),
        "shared_buffers=64MB".into(),
    ] {
        argv.push(shell_quote(&arg));
    }
    // The shell stops Postgres when our end of its stdin closes (we exited), then cleans up.
    let script = format!(
        "{cmd} >{log} 2>&1 & pid=$!; cat >/dev/null; kill -QUIT $pid 2>/dev/null; wait $pid; rm -rf {dir}",
        cmd = argv.join(" "),
        log = shell_quote(&dir.join("postgres.log").display().to_string()),
        dir = shell_quote(&dir.display().to_string()),
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))?;
    if let Ok(mut keeper) = KEEPER.lock() {
        *keeper = Some(Keeper { _child: child });
    }
    let mut base = tokio_postgres::Config::new();
    base.host_path(&dir).port(port).user("postgres");
    wait_until_accepting(&base, &dir)?;
    Ok(Server {
        base,
        socket_dir: Some(dir),
        port,
        template: template_name(),
    })
}

/// Polls (with a deadline) until the new cluster accepts connections.
fn wait_until_accepting(base: &tokio_postgres::Config, dir: &Path) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| common::error::chain(&e))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut cfg = base.clone();
    cfg.dbname("postgres");
    loop {
        match rt.block_on(cfg.connect(NoTls)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default();
                return Err(format!("postgres did not start: {e}\n{log}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The template's name changes whenever a migration file changes.
fn template_name() -> String {
    let mut hasher = DefaultHasher::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        f.file_name().hash(&mut hasher);
        std::fs::read(&f).unwrap_or_default().hash(&mut hasher);
    }
    format!(
        "edge_test_template_{:012x}",
        hasher.finish() & 0xffff_ffff_ffff
    )
}

/// Settings for one database of the server.
pub fn db_config(server: &Server, dbname: &str) -> tokio_postgres::Config {
    let mut c = server.base.clone();
    c.dbname(dbname);
    c
}

/// The same database reached over TCP at `addr` (a fault proxy) instead of its own host.
pub fn via(config: &tokio_postgres::Config, addr: std::net::SocketAddr) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host(addr.ip().to_string()).port(addr.port());
    if let Some(user) = config.get_user() {
        c.user(user);
    }
    if let Some(pw) = config.get_password() {
        c.password(pw);
    }
    if let Some(db) = config.get_dbname() {
        c.dbname(db);
    }
    c
}

/// A libpq key=value string (what `DATABASE_URL` accepts) for `config`.
pub fn conninfo(config: &tokio_postgres::Config) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"));
    let mut parts = Vec::new();
    for host in config.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(h) => parts.push(format!("host={}", q(h))),
            tokio_postgres::config::Host::Unix(p) => {
                parts.push(format!("host={}", q(&p.display().to_string())))
            }
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={}", q(user)));
    }
    if let Some(pw) = config.get_password() {
        parts.push(format!("password={}", q(&String::from_utf8_lossy(pw))));
    }
    if let Some(db) = config.get_dbname() {
        parts.push(format!("dbname={}", q(db)));
    }
    parts.join(" ")
}

/// One connection, its driver spawned on the current runtime.
pub async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// A pool of one connection whose server notices are kept: each notice's message, in order, on
/// the receiver (auto_explain's plans with `auto_explain.log_level = notice`). A pool, because the
/// product's queries take deadpool's clients.
pub fn pool_keeping_notices(
    config: &tokio_postgres::Config,
) -> (
    deadpool_postgres::Pool,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let manager = deadpool_postgres::Manager::from_connect(
        config.clone(),
        KeepNotices { tx },
        deadpool_postgres::ManagerConfig::default(),
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(1)
        .build()
        .expect("a pool of one");
    (pool, rx)
}

/// Connects without TLS and forwards the connection's notices.
struct KeepNotices {
    tx: tokio::sync::mpsc::UnboundedSender<String>,
}

type Connected = Result<(Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>;

impl deadpool_postgres::Connect for KeepNotices {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Connected> + Send + '_>> {
        let config = config.clone();
        let tx = self.tx.clone();
        Box::pin(async move {
            use std::task::Poll;
            let (client, mut conn) = config.connect(NoTls).await?;
            let task = tokio::spawn(std::future::poll_fn(move |cx| {
                loop {
                    match conn.poll_message(cx) {
                        Poll::Ready(Some(Ok(tokio_postgres::AsyncMessage::Notice(n)))) => {
                            let _ = tx.send(n.message().to_owned());
                        }
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(()),
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }));
            Ok((client, task))
        })
    }
}

async fn ensure_template(server: &Server) -> Result<(), String> {
    let admin = connect(&db_config(server, "postgres"))
        .await
        .map_err(|e| common::error::chain(&e))?;
    // Serialises template creation across concurrent test processes (nextest, parallel CI).
    admin
        .execute("SELECT pg_advisory_lock(727274)", &[])
        .await
        .map_err(|e| common::error::chain(&e))?;
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&server.template],
        )
        .await
        .map_err(|e| common::error::chain(&e))?
        .is_some();
    let result = if exists {
        Ok(())
    } else {
        build_template(server, &admin).await
    };
    let _ = admin
        .execute("SELECT pg_advisory_unlock(727274)", &[])
        .await;
    result
}

async fn build_template(server: &Server, admin: &Client) -> Result<(), String> {
    let building = format!("{}_building", server.template);
    for sql in [
        format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"),
        format!("CREATE DATABASE \"{building}\""),
    ] {
        admin
            .batch_execute(&sql)
            .await
            .map_err(|e| common::error::chain(&e))?;
    }
    let cfg = DbConfig {
        pg: db_config(server, &building),
        tls: Default::default(),
        pool_size: 1,
        lock_timeout: DEFAULT_LOCK_TIMEOUT,
    };
    common::db::migrate(&cfg)
        .await
        .map_err(|e| common::error::chain(&e))?;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{building}\" RENAME TO \"{}\"",
            server.template
        ))
        .await
        .map_err(|e| format!("renaming the template: {}", common::error::chain(&e)))
}

/// A fresh database for one test, cloned from the migrated template.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub config: tokio_postgres::Config,
    server: &'static Server,
}

impl TestDb {
    /// A migrated database.
    pub async fn new() -> Self {
        Self::create(true).await
    }

    /// An empty database (no schema at all).
    pub async fn empty() -> Self {
        Self::create(false).await
    }

    async fn create(migrated: bool) -> Self {
        let server = server();
        let name = format!("edge_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&db_config(server, "postgres"))
            .await
            .expect("admin connection");
        let sql = if migrated {
            format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{}\"",
                server.template
            )
        } else {
            format!("CREATE DATABASE \"{name}\"")
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match admin.batch_execute(&sql).await {
                Ok(()) => break,
                // Another test may be cloning the template this very moment.
                Err(e)
                    if Instant::now() < deadline
                        && common::error::chain(&e).contains("being accessed") =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot create test database: {}", common::error::chain(&e)),
            }
        }
        let config = db_config(server, &name);
        Self {
            name,
            config,
            server,
        }
    }

    /// `DATABASE_URL` for this database.
    pub fn url(&self) -> String {
        conninfo(&self.config)
    }

    pub fn db_config(&self) -> DbConfig {
        DbConfig {
            pg: self.config.clone(),
            tls: Default::default(),
            pool_size: 4,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    pub async fn client(&self) -> Client {
        connect(&self.config)
            .await
            .expect("test database connection")
    }

    pub fn server(&self) -> &'static Server {
        self.server
    }
}

impl Drop for TestDb {
    /// Databases on an external server are dropped; a throwaway cluster is deleted whole at exit.
    fn drop(&mut self) {
        if self.server.socket_dir.is_some() {
            return;
        }
        let name = self.name.clone();
        let admin = db_config(self.server, "postgres");
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = connect(&admin).await.ok()?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// A cluster of its own for a test that restarts Postgres (the shared one serves every other test).
/// Stopped and deleted on drop.
pub struct DedicatedCluster {
    dir: PathBuf,
    bin: PathBuf,
    root: bool,
    /// Also listening on this loopback TCP port.
    tcp: Option<u16>,
    pub config: tokio_postgres::Config,
}

impl DedicatedCluster {
    pub fn start() -> Result<Self, String> {
        Self::start_listening(None)
    }

    /// [`DedicatedCluster::start`], also listening on a free loopback TCP port.
    pub fn start_tcp() -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        Self::start_listening(Some(port))
    }

    /// The loopback TCP port, when listening on one.
    pub fn tcp_port(&self) -> Option<u16> {
        self.tcp
    }

    /// Turns TLS on with `server` (and `client_ca`, which signs the certificates clients may
    /// present), its files in the data directory as Postgres requires them.
    pub async fn enable_ssl(
        &self,
        server: &crate::tls::Pem,
        client_ca: &crate::tls::TestCa,
    ) -> Result<(), String> {
        let data = self.dir.join("data");
        let (cert, key) = server.write(&data, "server");
        let ca = client_ca.write(&data, "client-ca");
        if self.root {
            for path in [&cert, &key, &ca] {
                let ok = Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(path)
                    .status()
                    .map_err(|e| e.to_string())?;
                if !ok.success() {
                    return Err("chown to postgres failed".into());
                }
            }
        }
        let admin = connect(&self.config)
            .await
            .map_err(|e| common::error::chain(&e))?;
        for (setting, value) in [
            ("ssl_cert_file", cert.display().to_string()),
            ("ssl_key_file", key.display().to_string()),
            ("ssl_ca_file", ca.display().to_string()),
            ("ssl", "on".to_owned()),
        ] {
            admin
                .batch_execute(&format!("ALTER SYSTEM SET {setting} = '{value}'"))
                .await
                .map_err(|e| common::error::chain(&e))?;
        }
        admin
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .map_err(|e| common::error::chain(&e))?;
        // The reload is signalled: wait until a new session sees it.
        let on = crate::http::eventually(Duration::from_secs(10), || async {
            match connect(&self.config).await {
                Ok(c) => c
                    .query_one("SHOW ssl", &[])
                    .await
                    .is_ok_and(|r| r.get::<_, String>(0) == "on"),
                Err(_) => false,
            }
        })
        .await;
        on.then_some(())
            .ok_or_else(|| "ssl did not turn on".to_owned())
    }

    /// Replaces `pg_hba.conf` with `lines` and reloads the server.
    pub async fn set_hba(&self, lines: &str) -> Result<(), String> {
        let path = self.dir.join("data").join("pg_hba.conf");
        std::fs::write(&path, lines).map_err(|e| e.to_string())?;
        let admin = connect(&self.config)
            .await
            .map_err(|e| common::error::chain(&e))?;
        admin
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .map_err(|e| common::error::chain(&e))
    }

    fn start_listening(tcp: Option<u16>) -> Result<Self, String> {
        let bin = pg_bin()?;
        let root = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("edge-test-pg-dedicated-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        init_data_dir(&bin, root, &dir)?;
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&dir)
            .port(tcp.unwrap_or(5432))
            .user("postgres")
            .dbname("postgres");
        let cluster = Self {
            dir: dir.clone(),
            bin,
            root,
            tcp,
            config,
        };
        cluster.pg_ctl(&["start", "-w"])?;
        Ok(cluster)
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let options = match self.tcp {
            None => format!(
                "-k {} -p 5432 -c listen_addresses= -c fsync=off",
                self.dir.display()
            ),
            Some(port) => format!(
                "-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.dir.display()
            ),
        };
        // The server must log to a file: were it to inherit our pipes, `output()` would wait for
        // it to exit.
        let out = as_db_user(self.root, &self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(args)
            .args(["-o", &options])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Restarts the server (fast shutdown: every connection is closed), waiting until it is back.
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl(&["restart", "-m", "fast", "-w"])
    }

    /// A new migrated database; returns its settings.
    pub async fn migrated_db(&self, name: &str) -> tokio_postgres::Config {
        let admin = connect(&self.config).await.expect("dedicated cluster");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create database");
        let mut config = self.config.clone();
        config.dbname(name);
        common::db::migrate(&DbConfig {
            pg: config.clone(),
            tls: Default::default(),
            pool_size: 1,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        })
        .await
        .expect("migrate");
        config
    }
}

impl Drop for DedicatedCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
