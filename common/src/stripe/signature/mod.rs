//! `Stripe-Signature`: parsing the header, verifying it against one or more secrets, and signing.
//!
//! The scheme (Stripe's "verify signatures manually" guide): the header is
//! `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, the signature is HMAC-SHA256 over `"{t}.{raw body}"`
//! keyed by the whole secret string (including `whsec_`). Any matching `v1` passes (several are sent during secret rotation), every other scheme
//! (`v0` included) is ignored, and a timestamp older than the tolerance is refused. A timestamp in the
//! future is accepted, as all of Stripe's official libraries do.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Longest header we are willing to parse. A real one is about 220 bytes (t, two v1, one v0).
pub const MAX_HEADER_LEN: usize = 4096;
/// Most `v1` candidates we compare. Stripe sends one per active secret (two during a rotation).
pub const MAX_V1_CANDIDATES: usize = 8;

crate::label! {
    /// Why a `Stripe-Signature` was refused. Every variant maps to 400 `invalid_signature`; the
    /// label values are the `reason` of `edge_webhook_signature_failures_total`.
    #[derive(thiserror::Error)]
    pub enum SignatureError: "reason" {
        #[error("the Stripe-Signature header is missing")]
        Missing = "missing",
        #[error("more than one Stripe-Signature header was sent")]
        Duplicated = "duplicated",
        #[error("the Stripe-Signature header is malformed")]
        Malformed = "malformed",
        #[error("the Stripe-Signature header has no v1 signature")]
        NoV1 = "no_v1",
        #[error("the signed timestamp is older than the tolerance")]
        TooOld = "too_old",
        #[error("no v1 signature matches any configured secret")]
        NoMatch = "no_match",
    }
}

/// A parsed header: the timestamp exactly as sent (it is part of the signed bytes) and the decoded
/// `v1` signatures. Values that are not 64 lowercase hex characters are skipped, as stripe-go
/// skips non-hex ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHeader<'a> {
    pub timestamp_raw: &'a str,
    pub timestamp: i64,
    pub v1: Vec<[u8; 32]>,
}

/// Parses a `Stripe-Signature` header value.
pub fn parse_header(header: &str) -> Result<ParsedHeader<'_>, SignatureError> {
    if header.is_empty() || header.len() > MAX_HEADER_LEN {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp: Option<(&str, i64)> = None;
    let mut v1 = Vec::new();
    let mut v1_seen = 0usize;
    for item in header.split(',') {
        let (key, value) = item
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match key {
            "t" => {
                if timestamp.is_some() || value.is_empty() || value.len() > 19 {
                    return Err(SignatureError::Malformed);
                }
                if !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed);
                }
                let parsed = value
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed)?;
                timestamp = Some((value, parsed));
            }
            "v1" => {
                v1_seen += 1;
                if v1_seen > MAX_V1_CANDIDATES {
                    return Err(SignatureError::Malformed);
                }
                // Stripe sends lowercase hex, and its libraries compare strings: anything else is
                // skipped, like a value that is not hex at all.
                let mut decoded = [0u8; 32];
                let lowercase_hex = value
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if value.len() == 64
                    && lowercase_hex
                    && hex::decode_to_slice(value, &mut decoded).is_ok()
                {
                    v1.push(decoded);
                }
            }
            // v0 and any future scheme are ignored, so a downgrade is impossible.
            _ => {}
        }
    }
    let (timestamp_raw, timestamp) = timestamp.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::NoV1);
    }
    Ok(ParsedHeader {
        timestamp_raw,
        timestamp,
        v1,
    })
}

/// Verifies `header` for `payload` against every secret. Returns the index of the secret that
/// matched (for the rotation metric). `now` is unix seconds; `tolerance_secs` must be at least 1.
pub fn verify(
    header: &str,
    payload: &[u8],
    secrets: &[Secret],
    tolerance_secs: u64,
    now: i64,
) -> Result<usize, SignatureError> {
    let parsed = check_header(header, tolerance_secs, now)?;
    verify_parsed(&parsed, payload, secrets)
}

/// What can be checked before the body is read, cheaply: the header parses, has at least one `v1`
/// of 64 hex characters, and its timestamp is within the tolerance.
pub fn check_header(
    header: &str,
    tolerance_secs: u64,
    now: i64,
) -> Result<ParsedHeader<'_>, SignatureError> {
    let parsed = parse_header(header)?;
    let age = now.saturating_sub(parsed.timestamp);
    if age > 0 && age.unsigned_abs() > tolerance_secs {
        return Err(SignatureError::TooOld);
    }
    Ok(parsed)
}

/// Verifies `payload` against a checked header and every secret: the index of the secret that
/// matched.
pub fn verify_parsed(
    parsed: &ParsedHeader<'_>,
    payload: &[u8],
    secrets: &[Secret],
) -> Result<usize, SignatureError> {
    for (index, secret) in secrets.iter().enumerate() {
        let mac = keyed_mac(secret.expose(), parsed.timestamp_raw, payload);
        for candidate in &parsed.v1 {
            if mac.clone().verify_slice(candidate).is_ok() {
                return Ok(index);
            }
        }
    }
    Err(SignatureError::NoMatch)
}

/// The hex `v1` signature of `payload` at `timestamp` under `secret`.
pub fn compute_v1(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let ts = timestamp.to_string();
    hex::encode(keyed_mac(secret, &ts, payload).finalize().into_bytes())
}

/// A complete `Stripe-Signature` value for one secret, as Stripe would send it.
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        compute_v1(secret, timestamp, payload)
    )
}

/// A header carrying one `v1` per secret, as Stripe sends during a rotation.
pub fn sign_rotating(secrets: &[&str], timestamp: i64, payload: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&compute_v1(secret, timestamp, payload));
    }
    header
}

fn keyed_mac(secret: &str, timestamp_raw: &str, payload: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp_raw.as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

#[cfg(test)]
mod tests;
