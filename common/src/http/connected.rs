//! What a handler is told of the connection its request came on ([`Connected`]): the peer (and
//! its address as a header value, written once per connection), the scheme, and what the
//! connection's handlers keep from one request to the next.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use http::HeaderValue;

use super::Kept;

/// What a handler knows of the connection its request came on, passed with every request (as
/// extensions they would cost a map and a box each, per request).
#[derive(Debug, Clone)]
pub struct Connected {
    pub peer: SocketAddr,
    /// The peer's address as a header value (`X-Forwarded-For`), written at accept: each
    /// request shares it.
    pub peer_ip: Option<HeaderValue>,
    /// How the request reached us (`X-Forwarded-Proto`).
    pub scheme: Scheme,
    /// What the connection's handlers keep from one request to the next.
    pub kept: Kept,
}

impl Connected {
    pub fn new(peer: SocketAddr, scheme: Scheme) -> Self {
        Self {
            peer,
            peer_ip: ip_value(peer.ip()),
            scheme,
            kept: Kept::default(),
        }
    }
}

/// An address as a header value, written without a `String` in between.
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    // The longest text of an IPv6 address is 45 characters.
    let mut text = [0u8; 48];
    let mut cursor = std::io::Cursor::new(&mut text[..]);
    write!(cursor, "{ip}").ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(text.get(..len)?).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_as_header_values() {
        let longest: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .expect("address");
        for ip in [
            IpAddr::from([127, 0, 0, 1]),
            "::1".parse().expect("v6"),
            longest,
        ] {
            assert_eq!(ip_value(ip).expect("value"), ip.to_string().as_str());
        }
    }
}
