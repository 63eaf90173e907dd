//! The Stripe simulator speaks Stripe's wire format: list shape and order, filters, cursors,
//! limits, auth, error shapes, `Request-Id`, and the injected faults.

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use serde_json::Value;
use sim::objects::{Session, envelope, event_id};
use sim::server::{Faults, StripeSim};
use tests::http::{Reply, request, send};

const KEY: &str = "sk_test_simulator_suite";

async fn get(sim: &StripeSim, path: &str, auth: Option<&str>) -> Reply {
    let mut req = request(Method::GET, sim.addr, path);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    send(
        sim.addr,
        req.body(Full::new(Bytes::new())).expect("request"),
    )
    .await
    .expect("reply")
}

async fn list(sim: &StripeSim, query: &str) -> Value {
    let r = get(
        sim,
        &format!("/v1/events?{query}"),
        Some(&format!("Bearer {KEY}")),
    )
    .await;
    assert_eq!(r.status, 200, "{query}: {}", r.text());
    r.json()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn lists_page_newest_first_with_filters_and_cursors() {
    let sim = StripeSim::start(KEY).await;
    let mut all = Vec::new();
    for i in 0..25 {
        let kind = if i % 5 == 0 {
            "checkout.session.expired"
        } else {
            "checkout.session.completed"
        };
        let e = envelope(
            &event_id(),
            kind,
            1_700_000_000 + i,
            false,
            Session::new(format!("cs_test_{i}")).object(),
        );
        all.push(e["id"].as_str().expect("id").to_owned());
        sim.add_event(e);
    }
    all.push({
        let e = envelope(
            &event_id(),
            "charge.refunded",
            1_700_000_100,
            false,
            serde_json::json!({"id": "ch_1", "object": "charge"}),
        );
        sim.add_event(e.clone());
        e["id"].as_str().expect("id").to_owned()
    });
    let newest_first: Vec<String> = all.iter().rev().cloned().collect();

    let page = list(&sim, "").await;
    assert_eq!(page["object"], "list");
    assert_eq!(page["url"], "/v1/events");
    assert_eq!(page["has_more"], true);
    assert_eq!(
        ids(&page),
        newest_first[..10],
        "default limit 10, newest first"
    );

    // starting_after pages through everything exactly once.
    let mut seen = Vec::new();
    let mut query = "limit=7".to_owned();
    loop {
        let page = list(&sim, &query).await;
        seen.extend(ids(&page));
        if page["has_more"] == false {
            break;
        }
        query = format!("limit=7&starting_after={}", seen.last().expect("last"));
    }
    assert_eq!(seen, newest_first);

    // ending_before returns the events just newer than the cursor, still newest first.
    let page = list(&sim, &format!("limit=3&ending_before={}", newest_first[10])).await;
    assert_eq!(ids(&page), newest_first[7..10]);
    assert_eq!(page["has_more"], true);

    let page = list(&sim, "limit=100&type=checkout.session.*").await;
    assert_eq!(ids(&page).len(), 25);
    let page = list(
        &sim,
        "limit=100&types%5B%5D=checkout.session.expired&types%5B%5D=charge.refunded",
    )
    .await;
    assert_eq!(ids(&page).len(), 6);
    let page = list(
        &sim,
        "limit=100&created%5Bgte%5D=1700000010&created%5Blt%5D=1700000020",
    )
    .await;
    assert_eq!(ids(&page).len(), 10);

    let bearer = format!("Bearer {KEY}");
    for bad in [
        "type=a&types%5B%5D=b",
        "limit=0",
        "limit=101",
        "starting_after=evt_nope",
    ] {
        let r = get(&sim, &format!("/v1/events?{bad}"), Some(&bearer)).await;
        assert!(r.status == 400 || r.status == 404, "{bad}: {}", r.status);
        assert!(r.json()["error"]["message"].is_string(), "{bad}");
    }
}

#[tokio::test]
async fn auth_errors_and_faults_look_like_stripe() {
    let sim = StripeSim::start(KEY).await;
    let e = envelope(
        "evt_fixed_1",
        "checkout.session.completed",
        1_700_000_000,
        false,
        Session::new("cs_test_x").object(),
    );
    sim.add_event(e.clone());
    sim.put_session(Session::new("cs_test_x").object());

    let unauthorized = get(&sim, "/v1/events", None).await;
    assert_eq!(unauthorized.status, 401);
    assert_eq!(
        unauthorized.json()["error"]["type"],
        "invalid_request_error"
    );
    assert!(
        unauthorized
            .header("request-id")
            .is_some_and(|r| r.starts_with("req_"))
    );
    assert_eq!(
        get(&sim, "/v1/events", Some("Bearer sk_test_wrong"))
            .await
            .status,
        401
    );

    // Basic auth: the key as user name, empty password (curl -u sk_…:).
    let basic = format!("Basic {}", base64(&format!("{KEY}:")));
    let one = get(&sim, "/v1/events/evt_fixed_1", Some(&basic)).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json(), e);
    let session = get(&sim, "/v1/checkout/sessions/cs_test_x", Some(&basic)).await;
    assert_eq!(session.json()["object"], "checkout.session");
    let missing = get(&sim, "/v1/checkout/sessions/cs_test_nope", Some(&basic)).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["code"], "resource_missing");

    sim.set_faults(Faults {
        rate_limited: 1,
        server_errors: 1,
        malformed: 1,
        ..Faults::default()
    });
    let limited = get(&sim, "/v1/events", Some(&basic)).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("stripe-should-retry"), Some("true"));
    assert_eq!(
        limited.header("stripe-rate-limited-reason"),
        Some("global-rate")
    );
    assert_eq!(get(&sim, "/v1/events", Some(&basic)).await.status, 500);
    let malformed = get(&sim, "/v1/events", Some(&basic)).await;
    assert_eq!(malformed.status, 200);
    assert!(serde_json::from_slice::<Value>(&malformed.body).is_err());
    assert_eq!(get(&sim, "/v1/events", Some(&basic)).await.status, 200);
    assert_eq!(
        sim.requests(),
        9,
        "every answer counts, faults and refusals included"
    );
}

fn base64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (u32::from(c) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
