//! Unit tests of `Stripe-Signature`: Stripe's official vectors, parsing edge cases, rotation and
//! properties.

//! Every vector of `stripe-fixtures/signature-vectors.json`, plus rotation in both orders.
use super::*;
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/stripe");

fn vectors() -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}/signature-vectors.json"))
        .expect("signature vectors are readable");
    serde_json::from_str(&text).expect("signature vectors are JSON")
}

fn payload() -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/sigvec_dotnet_event_payload.json")).expect("payload")
}

fn secrets(names: &[&str]) -> Vec<Secret> {
    names.iter().map(|s| Secret::new((*s).to_owned())).collect()
}

#[test]
fn official_payload_is_the_exact_484_bytes() {
    let v = vectors();
    let official = &v["official_vectors"][0];
    let body = payload();
    assert_eq!(
        body.len() as u64,
        official["payload_bytes_len"].as_u64().expect("len")
    );
    assert_eq!(
        body,
        official["payload_utf8"].as_str().expect("utf8").as_bytes()
    );
}

#[test]
fn official_vector_and_its_checks() {
    let v = vectors();
    let official = &v["official_vectors"][0];
    let header = official["header"].as_str().expect("header");
    let ts = official["timestamp"].as_i64().expect("ts");
    let secret = official["secret"].as_str().expect("secret");
    let body = payload();
    assert_eq!(
        compute_v1(secret, ts, &body),
        official["expected_v1"].as_str().expect("v1")
    );
    for check in official["checks_from_official_test"]
        .as_array()
        .expect("checks")
    {
        let expect = check["expect"].as_str().expect("expect");
        if let Some(now) = check["now"].as_i64() {
            let tol = check["tolerance"].as_u64().expect("tolerance");
            let got = verify(header, &body, &secrets(&[secret]), tol, now);
            if expect == "valid" {
                assert_eq!(got, Ok(0));
            } else {
                assert_eq!(got, Err(SignatureError::TooOld), "{expect}");
            }
        } else {
            let mut changed = body.clone();
            changed.extend_from_slice(b"this_changes_the_json");
            let got = verify(header, &changed, &secrets(&[secret]), 300, ts);
            assert_eq!(got, Err(SignatureError::NoMatch));
        }
    }
}

#[test]
fn reason_labels_are_indexed_in_order_and_distinct() {
    use crate::metrics::Label;
    let mut seen = std::collections::HashSet::new();
    for (i, reason) in SignatureError::ALL.iter().copied().enumerate() {
        assert_eq!(reason.index(), i);
        assert!(seen.insert(reason.as_str()));
    }
}

#[test]
fn node_raw_hmac_vectors() {
    let v = vectors();
    let node = &v["official_vectors"][1];
    let secret = node["secret"].as_str().expect("secret");
    for case in node["cases"].as_array().expect("cases") {
        let message = case["message"].as_str().expect("message");
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(message.as_bytes());
        let got = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            got,
            case["expected_hex"].as_str().expect("hex"),
            "{message}"
        );
    }
}

#[test]
fn official_malformed_headers_are_all_rejected() {
    let v = vectors();
    let m = &v["official_malformed_headers"];
    for header in m["headers"].as_array().expect("headers") {
        let header = header.as_str().expect("header");
        let got = verify(
            header,
            b"{}",
            &secrets(&["webhook_secret"]),
            300,
            1_533_204_620,
        );
        assert!(got.is_err(), "{header:?} must be rejected, got {got:?}");
    }
}

#[test]
fn derived_vectors() {
    let v = vectors();
    let d = &v["derived_vectors"];
    let ts = d["timestamp"].as_i64().expect("ts");
    let default_secret = d["secret"].as_str().expect("secret");
    let body = payload();
    for case in d["cases"].as_array().expect("cases") {
        let id = case["id"].as_str().expect("id");
        let header = case["header"].as_str().expect("header");
        let now = case["now"].as_i64().unwrap_or(ts);
        let mut body = body.clone();
        if case["payload_mutation"].as_str() == Some("strip final 0x0A") {
            body.pop();
            let secret = default_secret;
            assert_eq!(
                compute_v1(secret, ts, &body),
                case["mutated_payload_hmac"].as_str().expect("hmac")
            );
        }
        let names: Vec<&str> = match case["secrets_accepting"].as_array() {
            Some(list) => list.iter().map(|s| s.as_str().expect("secret")).collect(),
            None => vec![case["secret"].as_str().unwrap_or(default_secret)],
        };
        let expect = case["expect"].as_str().expect("expect");
        let got = verify(header, &body, &secrets(&names), 300, now);
        match id {
            "rotation-valid-first"
            | "rotation-valid-last"
            | "bad-hex-v1-plus-valid"
            | "whsec-prefixed-secret"
            | "future-timestamp" => {
                assert!(got.is_ok(), "{id}: {expect}: {got:?}");
            }
            "v0-only" => assert_eq!(got, Err(SignatureError::NoV1), "{id}"),
            "payload-without-trailing-newline" => {
                assert_eq!(got, Err(SignatureError::NoMatch), "{id}")
            }
            other => panic!("unknown derived vector {other}: add it here"),
        }
    }
}

#[test]
fn rotation_in_both_orders_and_with_the_secret_order_swapped() {
    let body = payload();
    let ts = 1_533_204_620;
    let old = "whsec_old";
    let new = "whsec_new";
    for header in [
        sign_rotating(&[old, new], ts, &body),
        sign_rotating(&[new, old], ts, &body),
    ] {
        assert_eq!(
            verify(&header, &body, &secrets(&[new, old]), 300, ts),
            Ok(0)
        );
        assert_eq!(
            verify(&header, &body, &secrets(&[old, new]), 300, ts),
            Ok(0)
        );
        assert_eq!(verify(&header, &body, &secrets(&[old]), 300, ts), Ok(0));
        assert_eq!(
            verify(&header, &body, &secrets(&["other", new]), 300, ts),
            Ok(1)
        );
    }
    let only_new = sign(new, ts, &body);
    assert_eq!(
        verify(&only_new, &body, &secrets(&[old, new]), 300, ts),
        Ok(1)
    );
    assert_eq!(
        verify(&only_new, &body, &secrets(&[old]), 300, ts),
        Err(SignatureError::NoMatch)
    );
}

#[test]
fn hostile_headers() {
    let body = b"{}";
    let s = secrets(&["whsec_x"]);
    let good = compute_v1("whsec_x", 10, body);
    let cases = [
        String::new(),
        "t=".into(),
        "t=-5,v1=00".into(),
        "t=+5,v1=00".into(),
        "t=abc,v1=00".into(),
        "t=99999999999999999999999,v1=00".into(),
        format!("t=10,t=10,v1={good}"),
        format!("t=10,v1={}", "a".repeat(1 << 20)),
        format!("t=10{}", ",v1=00".repeat(1000)),
        format!("t=10,v1={good},junk"),
        "v1=00".into(),
    ];
    for header in &cases {
        assert!(verify(header, body, &s, 300, 10).is_err(), "{:.60}", header);
    }
    assert_eq!(verify(&format!("t=10,v1={good}"), body, &s, 300, 10), Ok(0));
    assert_eq!(
        verify(&format!("t=10, v1={good}"), body, &s, 300, 10),
        Ok(0)
    );
}
