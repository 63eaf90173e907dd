//! What a peer of a listener may hold, and for how long ([`Limits`]): the time-outs of its
//! connections and requests, the connection cap, the request rate. [`super::serve`] enforces them.

use std::time::Duration;

/// What a peer may hold, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From accept to the first complete request head; on HTTP/1, also from each answer to the
    /// next complete head.
    pub header_read_timeout: Duration,
    /// A client must send its whole webhook body within this time, or gets 408 and is closed.
    pub body_read_timeout: Duration,
    /// An h2 connection with no request in progress is closed once idle this long (an HTTP/1
    /// one at `header_read_timeout`, when it is shorter).
    pub idle_timeout: Duration,
    /// A connection whose every request in progress is a response its peer has not read for this
    /// long is closed (and counts as idle at the cap after a second of it); a proxied response
    /// not read for this long is given up, freeing its slot and its upstream connection.
    pub stall_timeout: Duration,
    /// Open connections at most; at the cap, accept waits.
    pub max_connections: usize,
    /// Requests started per second at most (with a burst of 50: `pace::BURST`); `None`:
    /// unpaced.
    pub requests_per_second: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            requests_per_second: None,
        }
    }
}
