//! The id of one request ([`RequestId`]): the caller's `X-Request-Id` when it is a sane token,
//! else a fresh UUIDv7, made by each thread on its own (no lock) and written into a small block of
//! text that the thread's ids share (no allocation of its own).

use std::cell::RefCell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::HeaderValue;

/// The id of one request: the caller's `X-Request-Id` when it is a sane token, else a new one.
/// Held as the header value it is sent as (back to the caller, and on to the app): checked once,
/// and shared, not copied, by each header that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub const MAX_LEN: usize = 128;

    /// A fresh id: a UUIDv7 (its first 48 bits the time in milliseconds, so ids sort by the
    /// millisecond they were made in; 74 random bits below).
    pub fn generate() -> Self {
        let text = FRESH
            .try_with(|fresh| fresh.try_borrow_mut().ok().map(|mut fresh| fresh.id()))
            .ok()
            .flatten()
            // The thread is exiting (its block is gone): the id gets a buffer of its own.
            .unwrap_or_else(|| {
                let mut text = uuid::Uuid::encode_buffer();
                let len = uuid::Uuid::now_v7()
                    .hyphenated()
                    .encode_lower(&mut text)
                    .len();
                Bytes::copy_from_slice(text.get(..len).unwrap_or_default())
            });
        // Hex digits and hyphens are always a valid header value.
        Self(
            HeaderValue::from_maybe_shared(text)
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        )
    }

    /// Keeps the caller's value only when it is 1–128 characters of `[A-Za-z0-9._:-]`.
    pub fn from_header(value: Option<&HeaderValue>) -> Self {
        match value {
            Some(v) if is_sane(v.as_bytes()) => Self(v.clone()),
            _ => Self::generate(),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only sane (ASCII) values are ever held.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value (a clone shares its bytes).
    pub fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_sane(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= RequestId::MAX_LEN
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The length of a hyphenated UUID.
const ID_LEN: usize = 36;
/// Ids per block of text. A block is freed once every id in it is: small, so that the few ids
/// that live long (those of requests in progress) hold little memory.
const IDS_PER_BLOCK: usize = 32;

thread_local! {
    static FRESH: RefCell<Fresh> = RefCell::new(Fresh::new());
}

/// Where one thread's fresh ids come from. `uuid`'s own v7 source is shared by the process: a
/// lock and a counter per id, so that ids sort within a millisecond, which nothing here needs.
struct Fresh {
    /// A SplitMix64 generator, seeded once from the operating system's randomness.
    state: u64,
    /// The rest of the current block: each id is split off its front, a count on the block.
    block: BytesMut,
}

impl Fresh {
    fn new() -> Self {
        Self {
            state: uuid::Uuid::new_v4().as_u64_pair().0,
            block: BytesMut::new(),
        }
    }

    /// SplitMix64 (Steele, Lea and Flood): every seed gives a full-period sequence of
    /// well-mixed values.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A fresh id's text.
    fn id(&mut self) -> Bytes {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        let mut random = [0u8; 10];
        let (high, low) = random.split_at_mut(8);
        high.copy_from_slice(&self.next_u64().to_le_bytes());
        low.copy_from_slice(&self.next_u64().to_le_bytes()[..2]);
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
        if self.block.capacity() < ID_LEN {
            self.block = BytesMut::with_capacity(ID_LEN * IDS_PER_BLOCK);
        }
        let mut text = uuid::Uuid::encode_buffer();
        self.block
            .extend_from_slice(uuid.hyphenated().encode_lower(&mut text).as_bytes());
        self.block.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn request_ids() {
        assert_eq!(
            RequestId::from_header(Some(&HeaderValue::from_static("abc-1.2_3:4"))).as_str(),
            "abc-1.2_3:4"
        );
        // What a header value can hold (CR, LF and other controls never get this far).
        for bad in [&b""[..], b"a b", b"a\tb", "\u{e9}".as_bytes(), &[b'a'; 129]] {
            let value = HeaderValue::from_bytes(bad).expect("a header value");
            let got = RequestId::from_header(Some(&value));
            assert_ne!(got.as_str().as_bytes(), bad);
            assert_eq!(got.as_str().len(), 36);
        }
        assert_eq!(RequestId::from_header(None).as_str().len(), 36);
    }

    /// Fresh ids are UUIDv7s of the current millisecond, all different, from any thread, across
    /// many blocks.
    #[test]
    fn fresh_ids_are_distinct_uuid_v7s_of_now() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("time")
            .as_millis();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    (0..IDS_PER_BLOCK * 40)
                        .map(|_| RequestId::generate().as_str().to_owned())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let ids: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("thread"))
            .collect();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("time")
            .as_millis();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(uuid.get_version_num(), 7, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(uuid.hyphenated().to_string(), *id, "lower-case, hyphenated");
            let (secs, nanos) = uuid.get_timestamp().expect("a v7 timestamp").to_unix();
            let millis = u128::from(secs) * 1000 + u128::from(nanos / 1_000_000);
            assert!(
                (before..=after).contains(&millis),
                "{id}: {millis} not in {before}..={after}"
            );
        }
    }

    /// Two threads seeded apart do not make the same random bits.
    #[test]
    fn threads_draw_different_random_bits() {
        let draw = || {
            std::thread::spawn(|| {
                let mut fresh = Fresh::new();
                (fresh.next_u64(), fresh.next_u64())
            })
            .join()
            .expect("thread")
        };
        assert_ne!(draw(), draw());
    }
}
