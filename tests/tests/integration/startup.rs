//! Start-up checks: an outdated schema is refused with a message that says to run `edge migrate`,
//! an unreachable database is reported, and concurrent migrations are safe.

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
