//! Reading single fields of Stripe's JSON leniently, from the raw text: a field we do not read is
//! never parsed, a field of an unexpected type reads as absent, and a field that is present but
//! cannot be decoded (a number out of range, a string that does not decode) is named, so that the
//! object holding it can be judged unreadable rather than silently wrong.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// The longest Stripe object id: Stripe documents ids of up to 255 characters.
pub const MAX_ID_LEN: usize = 255;

/// A struct read only from a JSON object (never from an array, as derived structs also are).
pub(super) struct MapOnly<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for MapVisitor<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(MapOnly)
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

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
    pub fn text(&mut self, raw: Option<&RawValue>, field: &'static str) -> Option<String> {
        self.note(text(raw, field)).flatten()
    }

    /// An integer field: `None` when absent or of another type.
    pub fn int(&mut self, raw: Option<&RawValue>, field: &'static str) -> Option<i64> {
        self.note(int(raw, field)).flatten()
    }
}

pub(super) fn text(
    raw: Option<&RawValue>,
    field: &'static str,
) -> Result<Option<String>, Unreadable> {
    let Some(raw) = raw else { return Ok(None) };
    if !raw.get().starts_with('"') {
        return Ok(None);
    }
    let s: Cow<'_, str> = serde_json::from_str(raw.get()).map_err(|_| Unreadable(field))?;
    Ok(Some(s)
        .filter(|s| !s.is_empty() && s.len() <= MAX_ID_LEN && is_printable(s))
        .map(Cow::into_owned))
}

pub(super) fn int(raw: Option<&RawValue>, field: &'static str) -> Result<Option<i64>, Unreadable> {
    let Some(raw) = raw else { return Ok(None) };
    let t = raw.get();
    if !t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Ok(None);
    }
    serde_json::from_str::<i64>(t)
        .map(Some)
        .map_err(|_| Unreadable(field))
}

pub(super) fn boolean(raw: Option<&RawValue>) -> Option<bool> {
    raw.and_then(|r| serde_json::from_str::<bool>(r.get()).ok())
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
