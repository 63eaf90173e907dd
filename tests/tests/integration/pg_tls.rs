//! TLS to Postgres as libpq's `sslmode` says, against a real PostgreSQL 15 with `ssl=on` and a
//! `hostssl`-only `pg_hba.conf`, with a CA and certificates made by the test: `require`,
//! `verify-ca` and `verify-full` work, each failure names its cause (unknown CA, host name
//! mismatch, expired certificate, TLS required, a server without TLS) and never the password,
//! client certificates authenticate, and an edge writes its webhooks over TLS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::config::DbConfig;
use tests::http::eventually;
use tests::pg::DedicatedCluster;
use tests::tls::{Pem, TestCa};

/// A cluster listening on loopback TCP with TLS only (`hostssl`), its certificate issued for
/// `localhost` by `ca`, client certificates signed by `ca` accepted; the files in `dir`.
struct TlsCluster {
    cluster: DedicatedCluster,
    port: u16,
    ca: PathBuf,
    dir: tempfile::TempDir,
}

impl TlsCluster {
    async fn start(ca: &TestCa, server: &Pem, hba: &str) -> Self {
        let cluster = DedicatedCluster::start_tcp().expect("cluster");
        let port = cluster.tcp_port().expect("tcp");
        cluster.enable_ssl(server, ca).await.expect("ssl on");
        cluster.set_hba(hba).await.expect("hba");
        let dir = tempfile::tempdir().expect("dir");
        let ca = ca.write(dir.path(), "root");
        let tls = Self {
            cluster,
            port,
            ca,
            dir,
        };
        // pg_hba.conf is reloaded asynchronously: wait until plain TCP is refused.
        let plain = tls.url("sslmode=disable");
        assert!(
            eventually(Duration::from_secs(10), || async {
                common::db::connect(&db(&plain)).await.is_err()
            })
            .await,
            "hostssl-only in force"
        );
        tls
    }

    fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres:hunter2@localhost:{}/postgres?{query}",
            self.port
        )
    }

    fn url_at(&self, host: &str, query: &str) -> String {
        format!(
            "postgres://postgres:hunter2@{host}:{}/postgres?{query}",
            self.port
        )
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

const HOSTSSL_TRUST: &str = "local all all trust\nhostssl all all 127.0.0.1/32 trust\n";

fn db(url: &str) -> DbConfig {
    let env: std::collections::HashMap<&str, &str> = [("DATABASE_URL", url)].into_iter().collect();
    common::config::db_from(&env).expect("DATABASE_URL").0
}

/// Connects and says whether the session is encrypted; or the error's text.
async fn encrypted(url: &str) -> Result<bool, String> {
    let client = common::db::connect(&db(url))
        .await
        .map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| common::error::chain(&e))?;
    Ok(row.get(0))
}

#[tokio::test]
async fn require_verify_ca_and_verify_full_connect_encrypted() {
    let ca = TestCa::new("edge-test-ca");
    let pg = TlsCluster::start(&ca, &ca.issue(&["localhost"], "localhost"), HOSTSSL_TRUST).await;
    let root = pg.ca.display().to_string();
    assert_eq!(encrypted(&pg.url("sslmode=require")).await, Ok(true));
    assert_eq!(
        encrypted(&pg.url("")).await,
        Ok(true),
        "prefer: TLS when offered"
    );
    assert_eq!(
        encrypted(&pg.url(&format!("sslmode=verify-full&sslrootcert={root}"))).await,
        Ok(true)
    );
    // verify-ca checks the CA but not the name: 127.0.0.1 is not on the certificate.
    assert_eq!(
        encrypted(&pg.url_at(
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={root}")
        ))
        .await,
        Ok(true)
    );
}

#[tokio::test]
async fn each_failure_names_its_cause_and_never_the_password() {
    let ca = TestCa::new("edge-test-ca");
    let pg = TlsCluster::start(&ca, &ca.issue(&["localhost"], "localhost"), HOSTSSL_TRUST).await;
    let root = pg.ca.display().to_string();

    let other = TestCa::new("someone-else").write(pg.dir(), "other");
    let unknown = encrypted(&pg.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        other.display()
    )))
    .await
    .expect_err("another CA");
    assert!(unknown.contains("unknown CA"), "{unknown}");

    let mismatch = encrypted(&pg.url_at(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={root}"),
    ))
    .await
    .expect_err("the certificate names localhost");
    assert!(mismatch.contains("host name mismatch"), "{mismatch}");

    let disabled = encrypted(&pg.url("sslmode=disable"))
        .await
        .expect_err("hostssl only");
    assert!(disabled.contains("the server requires TLS"), "{disabled}");
    assert!(disabled.contains("sslmode=require"), "{disabled}");

    for message in [&unknown, &mismatch, &disabled] {
        eprintln!("{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}

#[tokio::test]
async fn an_expired_server_certificate_is_named() {
    let ca = TestCa::new("edge-test-ca");
    let expired = ca.issue_expired(&["localhost"], "localhost");
    let pg = TlsCluster::start(&ca, &expired, HOSTSSL_TRUST).await;
    let root = pg.ca.display().to_string();
    let e = encrypted(&pg.url(&format!("sslmode=verify-full&sslrootcert={root}")))
        .await
        .expect_err("expired");
    assert!(e.contains("expired certificate"), "{e}");
}

#[tokio::test]
async fn prefer_works_without_tls_and_require_says_the_server_has_none() {
    let cluster = DedicatedCluster::start_tcp().expect("cluster");
    cluster
        .set_hba("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        .await
        .expect("hba");
    let port = cluster.tcp_port().expect("tcp");
    let url = |query: &str| format!("postgres://postgres@127.0.0.1:{port}/postgres?{query}");
    assert!(
        eventually(Duration::from_secs(10), || async {
            encrypted(&url("sslmode=prefer")).await == Ok(false)
        })
        .await,
        "prefer falls back to plain"
    );
    let e = encrypted(&url("sslmode=require"))
        .await
        .expect_err("no TLS on the server");
    assert!(e.contains("does not accept TLS"), "{e}");
}

#[tokio::test]
async fn a_client_certificate_authenticates() {
    let ca = TestCa::new("edge-test-ca");
    let pg = TlsCluster::start(
        &ca,
        &ca.issue(&["localhost"], "localhost"),
        "local all all trust\nhostssl all all 127.0.0.1/32 cert\n",
    )
    .await;
    let (cert, key) = ca.issue(&[], "postgres").write(pg.dir(), "client");
    let root = pg.ca.display().to_string();
    let with_cert = format!(
        "sslmode=verify-full&sslrootcert={root}&sslcert={}&sslkey={}",
        cert.display(),
        key.display()
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            encrypted(&pg.url(&with_cert)).await == Ok(true)
        })
        .await,
        "{:?}",
        encrypted(&pg.url(&with_cert)).await
    );
    let without = encrypted(&pg.url(&format!("sslmode=verify-full&sslrootcert={root}")))
        .await
        .expect_err("a certificate is required");
    assert!(!without.contains("hunter2"), "{without}");
}

#[tokio::test]
async fn an_edge_writes_its_webhooks_over_tls() {
    let ca = TestCa::new("edge-test-ca");
    let pg = TlsCluster::start(&ca, &ca.issue(&["localhost"], "localhost"), HOSTSSL_TRUST).await;
    let mut migrated = pg.cluster.migrated_db("shop").await;
    migrated.dbname("shop");
    let url = format!(
        "postgres://postgres@localhost:{}/shop?sslmode=verify-full&sslrootcert={}",
        pg.port,
        pg.ca.display()
    );
    let (config, _, _, secrets) = tests::edge::TestEdge::builder()
        .env("DATABASE_URL", &url)
        .config()
        .await;
    let app = edge::App::build(config).await.expect("edge over TLS");
    let public = app.public_addr();
    let app_admin = app.admin_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let event = sim::objects::session_event(
        "checkout.session.completed",
        &sim::objects::Session::new("cs_test_over_tls"),
    )
    .to_string();
    let signature = common::stripe::signature::sign(
        &secrets[0],
        chrono::Utc::now().timestamp(),
        event.as_bytes(),
    );
    let req = tests::http::request(http::Method::POST, public, "/stripe/webhook")
        .header("stripe-signature", signature)
        .body(http_body_util::Full::new(bytes::Bytes::from(event)))
        .expect("request");
    let reply = tests::http::send(public, req).await.expect("webhook");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let admin = tests::pg::connect(&migrated).await.expect("admin");

    // The server's certificate changes to one the edge's CA did not sign, and its sessions end:
    // every new connection fails its handshake while the edge runs. A webhook is a storage error
    // (5xx, so that Stripe retries) and /ready names the cause.
    let stranger = TestCa::new("someone-else");
    pg.cluster
        .enable_ssl(&stranger.issue(&["localhost"], "localhost"), &ca)
        .await
        .expect("new certificate");
    admin
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
              WHERE datname = 'shop' AND pid <> pg_backend_pid()",
        )
        .await
        .expect("sessions ended");
    let admin = tests::pg::connect(&migrated).await.expect("admin");
    let event = sim::objects::session_event(
        "checkout.session.completed",
        &sim::objects::Session::new("cs_test_refused"),
    )
    .to_string();
    let signature = common::stripe::signature::sign(
        &secrets[0],
        chrono::Utc::now().timestamp(),
        event.as_bytes(),
    );
    let req = tests::http::request(http::Method::POST, public, "/stripe/webhook")
        .header("stripe-signature", signature)
        .body(http_body_util::Full::new(bytes::Bytes::from(event)))
        .expect("request");
    let reply = tests::http::send(public, req).await.expect("webhook");
    assert!(
        reply.status.is_server_error(),
        "{} {}",
        reply.status,
        reply.text()
    );
    let last = std::sync::Mutex::new(String::new());
    let named = eventually(Duration::from_secs(10), || async {
        let reply = tests::http::get(app_admin, "/ready").await;
        let text = reply.text();
        let found = reply.status == 503 && text.contains("unknown CA");
        *last.lock().expect("lock") = text;
        found
    })
    .await;
    let last = last.into_inner().expect("lock");
    assert!(named, "/ready: {last}");
    assert!(!last.contains("hunter2"), "{last}");

    let _ = stop.send(());
    let _ = run.await;
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM payment_events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 1);
}

/// A binary, its arguments and its environment.
type Start<'a> = (&'a str, &'a [&'a str], Vec<(&'a str, &'a str)>);

#[tokio::test]
async fn an_edge_that_cannot_verify_the_server_exits_69_naming_the_cause() {
    let ca = TestCa::new("edge-test-ca");
    let pg = TlsCluster::start(&ca, &ca.issue(&["localhost"], "localhost"), HOSTSSL_TRUST).await;
    let other = TestCa::new("someone-else").write(pg.dir(), "other");
    let url = pg.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        other.display()
    ));
    let starts: [Start; 3] = [
        ("edge", &["migrate"], vec![]),
        (
            "edge",
            &["serve"],
            vec![
                ("EDGE_LISTEN", "127.0.0.1:0"),
                ("EDGE_ADMIN_LISTEN", "127.0.0.1:0"),
                ("STRIPE_WEBHOOK_SECRET", "whsec_tls_start_0123456789"),
            ],
        ),
        (
            "reconciler",
            &["once"],
            vec![
                ("STRIPE_API_KEY", "sk_test_tls_start"),
                ("STRIPE_API_BASE", "http://127.0.0.1:9"),
            ],
        ),
    ];
    for (binary, args, mut env) in starts {
        env.push(("DATABASE_URL", &url));
        env.push(("STRIPE_EXPECT_LIVEMODE", "false"));
        let finished = tests::process::run(binary, args, &env, Duration::from_secs(30)).await;
        let what = format!("{binary} {}: {}", args.join(" "), finished.stderr);
        assert_eq!(finished.status.code(), Some(69), "{what}");
        assert!(finished.stderr.contains("unknown CA"), "{what}");
        assert!(!finished.stderr.contains("hunter2"), "{what}");
    }
}
