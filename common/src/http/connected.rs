//! What a handler is told of the connection its request came on ([`Connected`]): the peer, the
//! scheme, and what the connection's handlers keep from one request to the next.

use std::net::SocketAddr;

use super::Kept;

/// What a handler knows of the connection its request came on, passed with every request (as
/// extensions they would cost a map and a box each, per request).
#[derive(Debug, Clone)]
pub struct Connected {
    pub peer: SocketAddr,
    /// How the request reached us (`X-Forwarded-Proto`).
    pub scheme: Scheme,
    /// What the connection's handlers keep from one request to the next.
    pub kept: Kept,
}

/// How a request reached the edge (`X-Forwarded-Proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}
