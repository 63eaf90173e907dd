//! The schema keeps only indexes that a query needs: every index of the product's tables carries a
//! comment that names the file holding the query it serves, and that file exists and uses the
//! index's table.

use std::path::Path;

use tests::pg::TestDb;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// One index of the migrated schema, with its table and its comment.
struct Index {
    name: String,
    table: String,
    comment: Option<String>,
}

async fn indexes(db: &TestDb) -> Vec<Index> {
    let client = db.client().await;
    let rows = client
        .query(
            "SELECT i.relname, t.relname, obj_description(i.oid, 'pg_class')
               FROM pg_index AS x
               JOIN pg_class AS i ON i.oid = x.indexrelid
               JOIN pg_class AS t ON t.oid = x.indrelid
               JOIN pg_namespace AS n ON n.oid = t.relnamespace
              WHERE n.nspname = 'public' AND t.relname <> 'refinery_schema_history'
              ORDER BY t.relname, i.relname",
            &[],
        )
        .await
        .expect("list the indexes");
    rows.iter()
        .map(|r| Index {
            name: r.get(0),
            table: r.get(1),
            comment: r.get(2),
        })
        .collect()
}

/// The files a comment names: the comma-separated paths before its first `: `.
fn named_files(comment: &str) -> Vec<&str> {
    comment
        .split_once(": ")
        .map(|(paths, _)| paths.split(", ").map(str::trim).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn every_index_names_the_query_it_serves() {
    let db = TestDb::new().await;
    let all = indexes(&db).await;
    assert!(all.len() > 20, "the schema has its indexes: {}", all.len());
    let mut problems = Vec::new();
    for index in &all {
        let Some(comment) = index.comment.as_deref() else {
            problems.push(format!("{} on {}: no comment", index.name, index.table));
            continue;
        };
        let files = named_files(comment);
        if files.is_empty() {
            problems.push(format!(
                "{}: the comment does not start with the files of its query: {comment}",
                index.name
            ));
        }
        for file in files {
            match std::fs::read_to_string(Path::new(ROOT).join(file)) {
                Ok(text) if text.contains(&index.table) => {}
                Ok(_) => problems.push(format!(
                    "{}: {file} does not mention the table {}",
                    index.name, index.table
                )),
                Err(e) => problems.push(format!("{}: {file}: {e}", index.name)),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
