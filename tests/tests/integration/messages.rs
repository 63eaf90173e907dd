//! Errors keep their cause: each failure an operator meets says why, in the words of whoever
//! refused (Postgres's SQLSTATE and message, the network's error), never a bare "db error".

use std::time::Duration;

use tests::pg::{DedicatedCluster, TestDb};
use tests::process::{Finished, run};

/// `edge migrate` against `url`.
async fn migrate(url: &str) -> Finished {
    run(
        "edge",
        &["migrate"],
        &[("DATABASE_URL", url), ("LOG_FORMAT", "json")],
        Duration::from_secs(60),
    )
    .await
}

fn says(f: &Finished, words: &[&str]) {
    for w in words {
        assert!(f.stderr.contains(w), "expected {w:?} in: {}", f.stderr);
    }
}

#[tokio::test]
async fn a_failing_migration_names_itself_and_postgres_s_reason() {
    let db = TestDb::empty().await;
    let client = db.client().await;
    // Something the first migration cannot create over.
    client
        .batch_execute("CREATE TABLE orders (legacy int)")
        .await
        .expect("legacy table");
    let f = migrate(&db.url()).await;
    assert_eq!(f.status.code(), Some(1), "{f:?}");
    says(&f, &["V1__ledger", "already exists", "SQLSTATE 42P07"]);
}

#[tokio::test]
async fn a_refused_connection_says_so() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let f = migrate(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=x"
    ))
    .await;
    assert_eq!(f.status.code(), Some(common::EXIT_UNAVAILABLE), "{f:?}");
    says(
        &f,
        &["cannot connect to the database", "Connection refused"],
    );
}

#[tokio::test]
async fn an_unknown_host_says_so() {
    let f = migrate("host=no-such-host.invalid user=postgres dbname=x connect_timeout=5").await;
    assert_eq!(f.status.code(), Some(common::EXIT_UNAVAILABLE), "{f:?}");
    says(
        &f,
        &["cannot connect to the database", "no-such-host.invalid"],
    );
    assert!(
        f.stderr.contains("lookup")
            || f.stderr.contains("resolve")
            || f.stderr.contains("not known"),
        "{}",
        f.stderr
    );
}

#[tokio::test]
async fn a_missing_database_is_named() {
    let db = TestDb::new().await;
    let mut config = db.config.clone();
    config.dbname("no_such_database");
    let f = migrate(&tests::pg::conninfo(&config)).await;
    assert_eq!(f.status.code(), Some(common::EXIT_UNAVAILABLE), "{f:?}");
    says(
        &f,
        &[
            "database \"no_such_database\" does not exist",
            "SQLSTATE 3D000",
        ],
    );
}

#[tokio::test]
async fn a_wrong_password_and_a_tls_only_server_say_so() {
    let cluster = DedicatedCluster::start_tcp().expect("dedicated cluster");
    let admin = tests::pg::connect(&cluster.config).await.expect("admin");
    admin
        .batch_execute("CREATE ROLE shop LOGIN PASSWORD 'the-right-one'")
        .await
        .expect("role");
    let port = cluster.tcp_port().expect("tcp");
    cluster
        .set_hba(
            "local all postgres trust\n\
             host all shop 127.0.0.1/32 scram-sha-256\n\
             hostssl all postgres 127.0.0.1/32 trust\n",
        )
        .await
        .expect("hba");
    let f = migrate(&format!(
        "host=127.0.0.1 port={port} user=shop password=a-wrong-one dbname=postgres"
    ))
    .await;
    says(
        &f,
        &["password authentication failed for user \"shop\"", "28P01"],
    );
    let f = migrate(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres"
    ))
    .await;
    says(&f, &["no encryption", "requires TLS"]);
}

#[tokio::test]
async fn a_stripe_that_cannot_be_reached_is_named_with_its_cause() {
    let db = TestDb::new().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let f = run(
        "reconciler",
        &["once"],
        &[
            ("DATABASE_URL", &db.url()),
            ("STRIPE_API_KEY", "sk_test_messages"),
            ("STRIPE_API_BASE", &format!("http://{closed}")),
            ("STRIPE_EXPECT_LIVEMODE", "any"),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "error"),
        ],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(f.status.code(), Some(1));
    assert!(
        f.stdout.contains("Connection refused"),
        "the summary names the cause: {}",
        f.stdout
    );
}
