//! Start-up checks: an outdated schema is refused with a message that says to run `edge migrate`,
//! a newer one is accepted within its declared compatibility range and refused beyond it, an
//! unreachable database is reported, concurrent migrations are safe, and `edge migrate --status`
//! and `--dry-run` show what is applied and what would run without changing anything.

use common::db;
use tests::edge::TestEdge;
use tests::pg::TestDb;

#[tokio::test]
async fn an_unmigrated_database_is_refused_with_the_fix() {
    let db = TestDb::empty().await;
    let (config, _db, _, _) = TestEdge::builder().db(db).config().await;
    let err = match edge::App::build(config).await {
        Ok(_) => panic!("the edge must refuse an unmigrated database"),
        Err(e) => e,
    };
    assert_eq!(err.exit_code(), common::EXIT_SCHEMA);
    let message = err.to_string();
    assert!(message.contains("edge migrate"), "{message}");
    assert!(message.contains("version 0"), "{message}");
}

#[tokio::test]
async fn an_unreachable_database_is_reported() {
    let mut builder = TestEdge::builder().through_fault_proxy();
    let (config, _db, fault, _) = builder.config().await;
    fault.as_ref().expect("fault proxy").cut();
    let err = match edge::App::build(config).await {
        Ok(_) => panic!("the edge must not start without its database"),
        Err(e) => e,
    };
    assert_eq!(err.exit_code(), common::EXIT_UNAVAILABLE, "{err}");
}

#[tokio::test]
async fn concurrent_migrations_are_safe() {
    let db = TestDb::empty().await;
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let cfg = db.db_config();
            tokio::spawn(async move { db::migrate(&cfg).await.map(|applied| applied.len()) })
        })
        .collect();
    let mut applied = 0;
    for run in runs {
        applied += run.await.expect("task").expect("migrate succeeds");
    }
    assert_eq!(applied, db::embedded_migration_count());
    let client = db.client().await;
    assert_eq!(
        db::schema_version(&client).await.expect("version"),
        db::required_schema_version()
    );
    assert_eq!(db::migrate(&db.db_config()).await.expect("again").len(), 0);
}

/// Records a migration newer than this build, as a newer build's `edge migrate` would, and sets
/// the oldest build the schema still supports.
async fn pretend_newer_schema(db: &TestDb, oldest_build_schema: i32) -> i32 {
    let client = db.client().await;
    let newer = db::required_schema_version() + 1;
    client
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES ($1, 'a_newer_build', '2026-12-01T00:00:00Z', '0')",
            &[&newer],
        )
        .await
        .expect("history row");
    client
        .execute(
            "UPDATE schema_compatibility SET oldest_build_schema = $1",
            &[&oldest_build_schema],
        )
        .await
        .expect("compatibility");
    newer
}

#[tokio::test]
async fn a_newer_schema_is_accepted_within_its_compatibility_range() {
    let db = TestDb::new().await;
    let newer = pretend_newer_schema(&db, db::required_schema_version()).await;
    let edge = TestEdge::builder().db(db).spawn().await;
    let ready = tests::http::get(edge.admin, "/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["schemaVersion"], newer);
    let event = sim::objects::session_event(
        "checkout.session.completed",
        &sim::objects::Session::new("cs_test_newer_schema"),
    );
    assert_eq!(edge.webhook_json(&event).await.status, 200);
}

#[tokio::test]
async fn a_newer_schema_that_drops_this_build_is_refused() {
    let db = TestDb::new().await;
    let newer = pretend_newer_schema(&db, db::required_schema_version() + 1).await;
    let (config, _db, _, _) = TestEdge::builder().db(db).config().await;
    let err = match edge::App::build(config).await {
        Ok(_) => panic!("the edge must refuse a schema that no longer supports it"),
        Err(e) => e,
    };
    assert_eq!(err.exit_code(), common::EXIT_SCHEMA);
    let message = err.to_string();
    assert!(message.contains(&format!("version {newer}")), "{message}");
    assert!(message.contains("deploy a newer build"), "{message}");
}

#[tokio::test]
async fn migrate_status_and_dry_run_change_nothing() {
    let db = TestDb::empty().await;
    let url = db.url();
    let env = [("DATABASE_URL", url.as_str()), ("LOG_FORMAT", "json")];
    let limit = std::time::Duration::from_secs(60);
    let status = tests::process::run("edge", &["migrate", "--status"], &env, limit).await;
    assert!(status.status.success(), "{}", status.stderr);
    let pending = db::embedded_migration_count();
    assert!(
        status.stdout.contains(&format!("{pending} pending")),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("V4   schema_compatibility"),
        "{}",
        status.stdout
    );
    let dry = tests::process::run("edge", &["migrate", "--dry-run"], &env, limit).await;
    assert!(dry.status.success(), "{}", dry.stderr);
    assert!(
        dry.stdout.contains("CREATE TABLE schema_compatibility"),
        "{}",
        dry.stdout
    );
    let client = db.client().await;
    assert_eq!(db::schema_version(&client).await.expect("version"), 0);

    let applied = tests::process::run("edge", &["migrate"], &env, limit).await;
    assert!(applied.status.success(), "{}", applied.stderr);
    let status = tests::process::run("edge", &["migrate", "--status"], &env, limit).await;
    assert!(
        status.stdout.contains("nothing pending"),
        "{}",
        status.stdout
    );
    assert_eq!(
        status.stdout.matches(" applied 20").count(),
        pending,
        "{}",
        status.stdout
    );
    let dry = tests::process::run("edge", &["migrate", "--dry-run"], &env, limit).await;
    assert!(
        dry.stdout.contains("would change nothing"),
        "{}",
        dry.stdout
    );
}

#[tokio::test]
async fn an_older_builds_migrate_against_a_newer_compatible_schema_has_nothing_to_apply() {
    let db = TestDb::new().await;
    let newer = pretend_newer_schema(&db, db::required_schema_version()).await;
    let url = db.url();
    let env = [("DATABASE_URL", url.as_str()), ("LOG_FORMAT", "json")];
    let limit = std::time::Duration::from_secs(60);
    // A rollback: compose and the Kubernetes Job run `migrate` before `serve`.
    let migrated = tests::process::run("edge", &["migrate"], &env, limit).await;
    assert!(migrated.status.success(), "{}", migrated.stderr);
    assert!(
        migrated.stdout.contains(&format!(
            "nothing to apply: the schema is at V{newer}, newer than this build's V{}",
            db::required_schema_version()
        )),
        "{}",
        migrated.stdout
    );
    assert!(
        db::migrate(&db.db_config())
            .await
            .expect("again")
            .is_empty()
    );

    // Below the oldest build the schema supports, it is refused (exit 78).
    let client = db.client().await;
    client
        .execute(
            "UPDATE schema_compatibility SET oldest_build_schema = $1",
            &[&newer],
        )
        .await
        .expect("compatibility");
    let refused = tests::process::run("edge", &["migrate"], &env, limit).await;
    assert_eq!(
        refused.status.code(),
        Some(common::EXIT_SCHEMA),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("deploy a newer build"),
        "{}",
        refused.stderr
    );
}
