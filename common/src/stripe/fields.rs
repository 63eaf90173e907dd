//! Reading single fields of Stripe's JSON leniently, from the raw text: a field we do not read is
//! never parsed, a field of an unexpected type reads as absent, and a field that is present but
//! cannot be decoded (a number out of range, a string that does not decode) is named, so that the
//! object holding it can be judged unreadable rather than silently wrong.

use std::borrow::Cow;

use super::scan::decode;

/// The longest Stripe object id: Stripe documents ids of up to 255 characters.
pub const MAX_ID_LEN: usize = 255;

/// A field that was present but could not be read.
pub(super) struct Unreadable(pub &'static str);

/// Reads the needed fields one by one; the first field that cannot be read is remembered.
#[derive(Default)]
pub(super) struct Reader {
    pub unreadable: Option<&'static str>,
}

impl Reader {
    pub fn note<T>(&mut self, r: Result<T, Unreadable>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(Unreadable(field)) => {
                self.unreadable.get_or_insert(field);
                None
            }
        }
    }

    /// A string field: `None` when absent, null, of another type, too long or not printable.
    pub fn text(&mut self, raw: Option<&str>, field: &'static str) -> Option<String> {
        self.note(text(raw, field)).flatten()
    }

    /// An integer field: `None` when absent or of another type.
    pub fn int(&mut self, raw: Option<&str>, field: &'static str) -> Option<i64> {
        self.note(int(raw, field)).flatten()
    }
}

/// A raw JSON value's content between its quotes (escapes undecoded) when it is a string.
pub(super) fn string_content(raw: &str) -> Option<&str> {
    raw.strip_prefix('"')?.strip_suffix('"')
}

pub(super) fn text(raw: Option<&str>, field: &'static str) -> Result<Option<String>, Unreadable> {
    let Some(content) = raw.and_then(string_content) else {
        return Ok(None);
    };
    let s = decode(content).ok_or(Unreadable(field))?;
    Ok(Some(s)
        .filter(|s| !s.is_empty() && s.len() <= MAX_ID_LEN && is_printable(s))
        .map(Cow::into_owned))
}

pub(super) fn int(raw: Option<&str>, field: &'static str) -> Result<Option<i64>, Unreadable> {
    let Some(t) = raw else { return Ok(None) };
    if !t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Ok(None);
    }
    // A JSON integer parses as Rust's; a fraction, an exponent or a value out of range goes to
    // serde_json, which reads `1e3` as no integer either.
    t.parse::<i64>()
        .or_else(|_| serde_json::from_str::<i64>(t))
        .map(Some)
        .map_err(|_| Unreadable(field))
}

pub(super) fn boolean(raw: Option<&str>) -> Option<bool> {
    match raw {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}

/// Stripe ids: 1–255 characters of `[A-Za-z0-9_]`.
pub fn is_stripe_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub(super) fn is_printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}
