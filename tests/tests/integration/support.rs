//! The support pages over real HTTP against the reconciler daemon, Postgres and the simulator:
//! login (cookie flags, wrong token, the failed-login limit, logout), a search that shows the
//! timeline of a session whose webhook never came, "Reconcile this session" with its before and
//! after, "Redeliver notification", CSRF refusals, the security headers, a Stripe outage that
//! still shows what the database knows, and an XSS corpus of customer-controlled values that never
//! reaches the page unescaped.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use reconciler::schedule::Daemon;
use sim::objects::{Session, session_event};
use sim::server::StripeSim;
use tests::http::{Reply, request, send};
use tests::ledger::{order, pending_order};
use tests::pg::TestDb;
use tokio::sync::oneshot;

const KEY: &str = "sk_test_support_pages";
const TOKEN: &str = "support-admin-token-0123456789";

/// A running daemon with the support pages.
struct Desk {
    admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), reconciler::error::Error>>,
}

impl Desk {
    async fn start(db: &TestDb, sim: &StripeSim, token: bool) -> Self {
        let mut extra = vec![
            ("RECONCILE_SCHEDULE", "0 0 0 1 1 *"),
            ("RECONCILE_LOOKBACK", "1h"),
        ];
        if token {
            extra.push(("ADMIN_TOKEN", TOKEN));
        }
        let reconciler = tests::reconciler::build(db, sim, &extra).await;
        let daemon = Daemon::bind(reconciler).await.expect("bind");
        let admin = daemon.admin_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(daemon.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            admin,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), &mut self.task).await;
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        let mut req = request(Method::GET, self.admin, path);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        send(
            self.admin,
            req.body(Full::new(Bytes::new())).expect("request"),
        )
        .await
        .expect("reply")
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Reply {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect();
        let mut req = request(Method::POST, self.admin, path)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        send(
            self.admin,
            req.body(Full::new(Bytes::from(body.join("&"))))
                .expect("request"),
        )
        .await
        .expect("reply")
    }

    /// Logs in; returns the cookie to send back.
    async fn login(&self) -> String {
        let reply = self.post("/support/login", None, &[("token", TOKEN)]).await;
        assert_eq!(reply.status, 303, "{}", reply.text());
        let set = reply.header("set-cookie").expect("a session cookie");
        set.split(';').next().expect("name=value").to_owned()
    }
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The CSRF token of a page's forms.
fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &page[at + 19..];
    rest[..rest.find('"').expect("end")].to_owned()
}

#[tokio::test]
async fn login_search_reconcile_and_redeliver() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let sim = StripeSim::start(KEY).await;
    // A paid session whose webhook never reached the edge, three days ago: beyond the window of
    // the daemon's start-up pass (RECONCILE_LOOKBACK=1h), as an old ticket is.
    let mut session = Session::new("cs_test_support_paid");
    session.created -= 3 * 24 * 3600;
    let id = pending_order(&client, &session.id).await;
    sim.add_event(session_event("checkout.session.completed", &session));
    let desk = Desk::start(&db, &sim, true).await;

    // Not logged in: the login form; the other pages send there.
    let page = desk.get("/support", None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text()
            .contains("<label class=\"field\" for=\"token\">")
    );
    assert_eq!(
        page.header("content-security-policy"),
        Some("default-src 'self'; form-action 'self'; frame-ancestors 'none'")
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let away = desk.get("/support/search?q=x", None).await;
    assert_eq!(away.status, 303);
    let css = desk.get("/support/style.css", None).await;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));

    // A wrong token is refused; the right one gives a strict cookie.
    let wrong = desk
        .post("/support/login", None, &[("token", "nope")])
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    let reply = desk.post("/support/login", None, &[("token", TOKEN)]).await;
    let set = reply.header("set-cookie").expect("cookie").to_owned();
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/support",
        "Max-Age=28800",
    ] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let cookie = set.split(';').next().expect("cookie").to_owned();

    // The overview, then the search: the same timeline and verdict as inspect.
    let overview = desk.get("/support", Some(&cookie)).await;
    assert_eq!(overview.status, 200);
    assert!(overview.text().contains("Recent passes and sweeps"));
    assert!(!overview.text().contains(TOKEN), "no secret on any page");
    let found = desk
        .get(&format!("/support/search?q={}", session.id), Some(&cookie))
        .await;
    assert_eq!(found.status, 200);
    let text = found.text();
    assert!(text.contains("Verdict:"), "{text}");
    assert!(text.contains("Reconcile this session"), "{text}");
    assert!(text.contains(&id.to_string()));

    // The reconcile needs the CSRF token of this session.
    let forged = desk
        .post(
            "/support/reconcile",
            Some(&cookie),
            &[("session", &session.id), ("csrf", "forged")],
        )
        .await;
    assert_eq!(forged.status, 403);
    assert_eq!(order(&client, id).await.status, "pending");
    let token = csrf(&text);
    let done = desk
        .post(
            "/support/reconcile",
            Some(&cookie),
            &[("session", &session.id), ("csrf", &token)],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.text());
    let text = done.text();
    assert!(text.contains("before") && text.contains("after"), "{text}");
    assert!(
        text.contains(">pending<") && text.contains(">paid<"),
        "{text}"
    );
    assert_eq!(order(&client, id).await.status, "paid");

    // Redeliver the order.paid notification the reconcile made.
    let timeline = desk
        .get(&format!("/support/search?q={id}"), Some(&cookie))
        .await
        .text();
    let otr = timeline
        .split("name=\"transition\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a notification to redeliver")
        .to_owned();
    assert!(otr.starts_with("otr_"));
    let redelivered = desk
        .post(
            "/support/redeliver",
            Some(&cookie),
            &[("transition", &otr), ("csrf", &token)],
        )
        .await;
    assert_eq!(redelivered.status, 200, "{}", redelivered.text());
    assert!(redelivered.text().contains("1 notification(s) queued"));
    let metrics = tests::http::get(desk.admin, "/metrics").await.text();
    assert!(metrics.contains("reconciler_support_actions_total{action=\"reconcile\"} 1"));
    assert!(metrics.contains("reconciler_support_actions_total{action=\"redeliver\"} 1"));

    // Logging out ends the session.
    let out = desk
        .post("/support/logout", Some(&cookie), &[("csrf", &token)])
        .await;
    assert_eq!(out.status, 303);
    assert!(
        out.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    assert_eq!(desk.get("/support", Some(&cookie)).await.status, 200);
    assert!(
        desk.get("/support", Some(&cookie))
            .await
            .text()
            .contains("for=\"token\""),
        "back to the login form"
    );
    desk.stop().await;
}

#[tokio::test]
async fn failed_logins_are_limited_and_https_cookies_are_secure() {
    let db = TestDb::new().await;
    let sim = StripeSim::start(KEY).await;
    let desk = Desk::start(&db, &sim, true).await;
    for _ in 0..5 {
        let r = desk
            .post("/support/login", None, &[("token", "guess")])
            .await;
        assert_eq!(r.status, 401);
    }
    let locked = desk.post("/support/login", None, &[("token", TOKEN)]).await;
    assert_eq!(locked.status, 429, "even the right token waits a minute");

    // Behind a TLS-terminating proxy the cookie is Secure (another test's address is not locked
    // out: a new desk).
    let desk2 = Desk::start(&db, &sim, true).await;
    let req = request(Method::POST, desk2.admin, "/support/login")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-proto", "https")
        .body(Full::new(Bytes::from(format!("token={TOKEN}"))))
        .expect("request");
    let reply = send(desk2.admin, req).await.expect("reply");
    assert!(
        reply
            .header("set-cookie")
            .is_some_and(|c| c.contains("; Secure")),
        "{:?}",
        reply.headers
    );
    desk.stop().await;
    desk2.stop().await;

    // Without ADMIN_TOKEN the pages say they are off.
    let off = Desk::start(&db, &sim, false).await;
    let page = off.get("/support", None).await;
    assert_eq!(page.status, 403);
    assert!(page.text().contains("ADMIN_TOKEN"));
    off.stop().await;
}

#[tokio::test]
async fn a_stripe_outage_still_shows_what_the_database_knows() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let sim = StripeSim::start(KEY).await;
    let session = Session::new("cs_test_support_outage");
    let id = pending_order(&client, &session.id).await;
    let desk = Desk::start(&db, &sim, true).await;
    let cookie = desk.login().await;
    drop(sim);
    let page = desk
        .get(&format!("/support/search?q={}", session.id), Some(&cookie))
        .await;
    assert_eq!(page.status, 200);
    let text = page.text();
    assert!(text.contains("Stripe unreachable"), "{text}");
    assert!(text.contains(&id.to_string()), "the order is still shown");
    desk.stop().await;
}

#[tokio::test]
async fn customer_values_never_reach_the_page_unescaped() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let sim = StripeSim::start(KEY).await;
    let corpus = [
        "<script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "'; DROP TABLE orders; --",
        "\u{1b}[2J\u{1b}[31mterminal escape",
        "javascript:alert(1)",
        "</td></tr></table><h1>forged</h1>",
        "\u{202e}reversed",
    ];
    let desk = Desk::start(&db, &sim, true).await;
    let cookie = desk.login().await;
    for (n, evil) in corpus.iter().enumerate() {
        // An anomaly text, a session id and a request id are what customers and the app control.
        let session_id = format!("cs_test_xss_{n}");
        let id = pending_order(&client, &session_id).await;
        client
            .execute(
                "UPDATE orders SET anomaly = $2 WHERE id = $1",
                &[&id, &format!("session_mismatch: {evil}")],
            )
            .await
            .expect("anomaly");
        for path in [
            "/support".to_owned(),
            format!("/support/search?q={id}"),
            format!("/support/search?q={}", enc(evil)),
        ] {
            let page = desk.get(&path, Some(&cookie)).await;
            let text = page.text();
            assert!(
                page.status.is_success() || page.status == 404,
                "{path}: {}",
                page.status
            );
            if evil.contains(['<', '>', '"', '\'', '\u{1b}', '\u{202e}']) {
                assert!(!text.contains(evil), "{path} shows {evil:?} raw");
            }
            assert!(!text.contains("href=\"javascript:"), "{path}");
            assert!(!text.contains("<script>"), "{path}");
            assert!(!text.contains("<img"), "{path}");
            assert!(!text.contains("<h1>forged"), "{path}");
            assert!(!text.contains('\u{1b}'), "{path}: a terminal escape");
            assert!(!text.contains('\u{202e}'), "{path}");
        }
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .expect("orders")
        .get(0);
    assert_eq!(n, corpus.len() as i64, "nothing dropped");
    desk.stop().await;
}

#[tokio::test]
async fn a_long_timeline_is_shown_a_page_at_a_time() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let sim = StripeSim::start(KEY).await;
    let session = Session::new("cs_test_support_long");
    let id = pending_order(&client, &session.id).await;
    client
        .execute(
            "INSERT INTO payment_events (stripe_event_id, event_type, stripe_object_id,
                 stripe_session_id, order_id, livemode, stripe_created_at, payload, source)
             SELECT 'evt_long_' || g, 'customer.updated', 'cus_1', $2, $1, false,
                 now() - make_interval(secs => 500 - g), '{}', 'webhook'
             FROM generate_series(1, 450) AS g",
            &[&id, &session.id],
        )
        .await
        .expect("events");
    let desk = Desk::start(&db, &sim, true).await;
    let cookie = desk.login().await;
    let first = desk
        .get(&format!("/support/search?q={id}"), Some(&cookie))
        .await
        .text();
    assert!(
        first.contains("events 1 to 200 of 450 (page 1 of 3)"),
        "{first}"
    );
    assert!(first.contains(&format!("/support/search?q={id}&amp;page=2")));
    assert_eq!(
        first.matches("evt_long_").count() / 2,
        200,
        "200 rows, each id twice (text and link)"
    );
    let last = desk
        .get(&format!("/support/search?q={id}&page=3"), Some(&cookie))
        .await
        .text();
    assert!(
        last.contains("events 401 to 450 of 450 (page 3 of 3)"),
        "{last}"
    );
    assert!(last.contains("earlier events") && !last.contains("later events"));
    desk.stop().await;
}
