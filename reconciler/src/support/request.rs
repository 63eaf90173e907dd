//! What a support request carries: its form (`application/x-www-form-urlencoded`, at most
//! [`MAX_FORM_BYTES`]), its query string, its session cookie, and whether it came over HTTPS.

use http::{Request, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::auth::COOKIE;

/// The largest form body read.
pub const MAX_FORM_BYTES: usize = 8 * 1024;

/// Whether the request came over HTTPS (directly, or as the proxy in front says).
pub fn came_over_https(req: &Request<Incoming>) -> bool {
    req.uri().scheme_str() == Some("https")
        || req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The support session id of the request's cookie.
pub fn cookie(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A form body (`application/x-www-form-urlencoded`, at most [`MAX_FORM_BYTES`]).
pub async fn form(req: Request<Incoming>) -> Option<Vec<(String, String)>> {
    let body = Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
        .ok()?
        .to_bytes();
    let text = std::str::from_utf8(&body).ok()?;
    Some(pairs(text))
}

pub fn field<'a>(f: &'a [(String, String)], name: &str) -> Option<&'a str> {
    f.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub fn query_param(query: &str, name: &str) -> Option<String> {
    pairs(query)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// `k=v&…` pairs, percent- and `+`-decoded (invalid UTF-8 replaced).
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_as_browsers_send_them() {
        assert_eq!(
            pairs("q=cs_test_1&x=a+b%3Cc%3E&bad=%zz%&end=%4"),
            vec![
                ("q".into(), "cs_test_1".into()),
                ("x".into(), "a b<c>".into()),
                ("bad".into(), "%zz%".into()),
                ("end".into(), "%4".into()),
            ]
        );
    }
}
