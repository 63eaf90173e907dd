//! Unit and property tests of the scanner: it accepts exactly the texts that serde_json accepts
//! as one JSON value, hands out raw members, and never recurses on deep nesting.

use super::*;
use proptest::prelude::*;
use serde::de::IgnoredAny;

/// The whole text as one JSON value, as the event parser reads a body.
fn scan(text: &str) -> Result<(), Syntax> {
    let mut s = Scanner::new(text);
    s.skip()?;
    s.end()
}

fn serde_accepts(text: &str) -> bool {
    serde_json::from_str::<IgnoredAny>(text).is_ok()
}

#[test]
fn valid_documents() {
    for text in [
        "{}",
        " [ ] ",
        "0",
        "-0.5e+10",
        "1E5",
        r#""a\"\\\/\b\f\n\r\t\u00e9\ud800""#,
        "[1,[2,{\"a\":[true,false,null]}],{}]",
        "{\"a\" : {\"b\" :\n{\"c\":\t[]}} }",
        "\"é ü 漢\"",
    ] {
        assert_eq!(scan(text), Ok(()), "{text}");
        assert!(serde_accepts(text), "{text}");
    }
}

#[test]
fn invalid_documents() {
    for text in [
        "",
        " ",
        "{",
        "}",
        "[1,]",
        "[1 2]",
        "{\"a\"}",
        "{\"a\":1,}",
        "{1:2}",
        "{\"a\":1]",
        "[1}",
        "01",
        "1.",
        ".5",
        "-",
        "1e",
        "+1",
        "tru",
        "nulls",
        "\"a",
        "\"\\x\"",
        "\"\\u12g4\"",
        "\"a\u{1}b\"",
        "\"tab\there\"",
        "{} {}",
        "[] x",
    ] {
        assert!(scan(text).is_err(), "{text:?}");
        assert!(!serde_accepts(text), "{text:?}");
    }
}

#[test]
fn every_stop_is_found_at_every_offset_of_a_word() {
    for len in 0..20 {
        for at in 0..=len {
            for piece in [
                "\"", "\\n", "\\", "\u{1}", "\u{1f}", " ", "!", "#", "\\\"", "\u{7f}", "é",
                "\u{80}", "漢",
            ] {
                let text = format!("\"{}{piece}{}\"", "a".repeat(at), "b".repeat(len - at));
                assert_eq!(scan(&text).is_ok(), serde_accepts(&text), "{text:?}");
            }
        }
    }
}

#[test]
fn deep_nesting_is_skipped_without_recursion() {
    for depth in [63, 64, 65, 128, 129, 200_000] {
        let text = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(scan(&text), Ok(()), "{depth}");
        let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        assert_eq!(scan(&objects), Ok(()), "{depth}");
        let unclosed = format!("{}1{}", "[".repeat(depth), "]".repeat(depth - 1));
        assert!(scan(&unclosed).is_err(), "{depth}");
        let crossed = format!("{}{{\"a\":1]{}", "[".repeat(depth), "]".repeat(depth - 1));
        assert!(scan(&crossed).is_err(), "{depth}");
    }
}

#[test]
fn members_come_raw_and_in_order() {
    let text = r#" { "a" : [1, {"x":2}] , "b\u0063":"\ud800", "c": null } "#;
    let mut s = Scanner::new(text);
    let mut seen = Vec::new();
    s.object(|s, key| -> Result<(), Syntax> {
        seen.push((key.raw, key.plain, s.value()?));
        Ok(())
    })
    .expect("object");
    s.end().expect("end");
    assert_eq!(
        seen,
        vec![
            ("a", true, "[1, {\"x\":2}]"),
            ("b\\u0063", false, "\"\\ud800\""),
            ("c", true, "null")
        ]
    );
    assert_eq!(decode("b\\u0063").as_deref(), Some("bc"));
    assert_eq!(decode("plain").as_deref(), Some("plain"));
    assert_eq!(decode("\\ud800"), None);
}

#[test]
fn errors_say_where() {
    let err = scan("[1, x]").expect_err("not JSON");
    assert_eq!(err.at, 4);
    assert_eq!(err.to_string(), "expected a value at byte 4");
}

/// Pieces of JSON, valid and not, that a soup of them mixes.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    " ",
    "\n",
    "\"a\"",
    "\"k\":",
    "\"\\u00e9\"",
    "\"\\ud800\"",
    "\"\\\"\"",
    "\"\\q\"",
    "\"\u{7}\"",
    "\"",
    "\\",
    "1",
    "-0",
    "1.5e3",
    "01",
    "1.",
    "-",
    "e5",
    "true",
    "false",
    "null",
    "nul",
    "x",
    "é",
];

fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_soup_of_tokens_is_judged_as_serde_judges_it(
        tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..24),
    ) {
        let text = tokens.concat();
        prop_assert_eq!(scan(&text).is_ok(), serde_accepts(&text), "{:?}", text);
    }

    #[test]
    fn json_with_one_byte_changed_is_judged_as_serde_judges_it(
        value in any_json(),
        pretty in any::<bool>(),
        at in any::<prop::sample::Index>(),
        change in prop_oneof![
            Just(None),
            prop::sample::select(&b"{}[],:\" \\0-.e+tn\x01"[..]).prop_map(Some),
        ],
        remove in any::<bool>(),
    ) {
        let text = if pretty {
            serde_json::to_string_pretty(&value).unwrap_or_default()
        } else {
            value.to_string()
        };
        prop_assert_eq!(scan(&text), Ok(()), "{:?}", text);
        let mut bytes = text.into_bytes();
        let at = at.index(bytes.len() + 1);
        if remove && at < bytes.len() {
            bytes.remove(at);
        }
        if let Some(b) = change {
            bytes.insert(at, b);
        }
        if let Ok(text) = String::from_utf8(bytes) {
            prop_assert_eq!(scan(&text).is_ok(), serde_accepts(&text), "{:?}", text);
        }
    }
}
