//! Secrets from files, as Docker and Kubernetes mount them: `NAME_FILE` for every secret-bearing
//! variable (both set, or an unreadable file, refused naming the variable and never the content),
//! and `SIGHUP` (or a change of the file) re-reading the webhook secrets for a rotation without a
//! restart.

use std::time::Duration;

use tests::http::{eventually, get};
use tests::process::Server;

#[tokio::test]
async fn the_webhook_secrets_rotate_from_their_file_on_change_or_sighup() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("webhook-secret");
    std::fs::write(&file, "whsec_before_rotation\n").expect("secret file");
    let path = file.display().to_string();
    let edge = Server::edge(&[("STRIPE_WEBHOOK_SECRET_FILE", path.as_str())]).await;
    let reply = edge
        .webhook_signed_with("whsec_before_rotation", "cs_test_rotation_1")
        .await;
    assert_eq!(
        reply.status, 200,
        "the trailing newline is not part of the secret"
    );
    assert_eq!(
        edge.webhook_signed_with("whsec_after_rotation", "cs_test_rotation_2")
            .await
            .status,
        400
    );

    // The new secret is added beside the old one, as a mounted secret is updated: the edge
    // notices the file changed.
    std::fs::write(&file, "whsec_after_rotation,whsec_before_rotation\n").expect("rotate");
    assert!(
        eventually(Duration::from_secs(20), || async {
            edge.webhook_signed_with("whsec_after_rotation", "cs_test_rotation_3")
                .await
                .status
                == 200
        })
        .await,
        "the new secret verifies once the file changed"
    );
    assert_eq!(
        edge.webhook_signed_with("whsec_before_rotation", "cs_test_rotation_4")
            .await
            .status,
        200,
        "and the old one still does"
    );

    // A bad file is refused on reload: the secrets in force stay, and the failure is counted.
    std::fs::write(&file, "sk_live_oops\n").expect("bad secret");
    edge.signal("HUP");
    let reloads = |outcome: &'static str| async move {
        let text = get(edge.admin, "/metrics").await.text();
        let prefix =
            format!(r#"edge_config_reloads_total{{what="webhook_secrets",outcome="{outcome}"}} "#);
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        eventually(Duration::from_secs(10), || async {
            reloads("failed").await >= 1.0
        })
        .await,
        "a failed reload is counted"
    );
    assert!(reloads("ok").await >= 1.0);
    let text = get(edge.admin, "/metrics").await.text();
    assert!(text.contains("edge_webhook_secrets_active 2"), "{text}");
    assert_eq!(
        edge.webhook_signed_with("whsec_after_rotation", "cs_test_rotation_5")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_secret_and_its_file_together_or_an_unreadable_file_exit_64_naming_the_variable() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("api-key");
    std::fs::write(&file, "sk_test_secret_content_42\n").expect("key file");
    let path = file.display().to_string();
    let limit = Duration::from_secs(30);
    let both = tests::process::run(
        "reconciler",
        &["once"],
        &[
            ("DATABASE_URL", "postgres://u@127.0.0.1:1/db"),
            ("STRIPE_EXPECT_LIVEMODE", "false"),
            ("STRIPE_API_KEY", "sk_test_inline"),
            ("STRIPE_API_KEY_FILE", path.as_str()),
        ],
        limit,
    )
    .await;
    assert_eq!(both.status.code(), Some(64), "{}", both.stderr);
    assert!(
        both.stderr.contains("STRIPE_API_KEY_FILE"),
        "{}",
        both.stderr
    );
    assert!(!both.stderr.contains("sk_test_inline"), "{}", both.stderr);

    let missing = dir.path().join("no-such-file");
    let missing = missing.display().to_string();
    let unreadable = tests::process::run(
        "edge",
        &["serve"],
        &[
            ("DATABASE_URL_FILE", missing.as_str()),
            ("STRIPE_WEBHOOK_SECRET_FILE", path.as_str()),
            ("STRIPE_EXPECT_LIVEMODE", "false"),
        ],
        limit,
    )
    .await;
    assert_eq!(unreadable.status.code(), Some(64), "{}", unreadable.stderr);
    assert!(
        unreadable.stderr.contains("DATABASE_URL_FILE"),
        "{}",
        unreadable.stderr
    );
    // The webhook secret file holds an API key: refused, without quoting it.
    assert!(
        unreadable.stderr.contains("STRIPE_WEBHOOK_SECRET"),
        "{}",
        unreadable.stderr
    );
    assert!(
        !unreadable.stderr.contains("sk_test_secret_content_42"),
        "{}",
        unreadable.stderr
    );
}
