//! `DATABASE_URL` as libpq reads it: the TLS parameters (`sslmode`, `sslrootcert`, `sslcert`,
//! `sslkey`) taken out of the URL or `key=value` string, and the rest handed to tokio-postgres,
//! which knows only `disable`, `prefer` and `require` and none of the file parameters.

use std::fmt;
use std::path::PathBuf;

/// `sslmode`, as libpq defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    /// TLS when the server offers it, else plain; the certificate is not checked (libpq's
    /// default).
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is checked against `sslrootcert` when one is given.
    Require,
    /// TLS, the certificate signed by a CA of `sslrootcert`; any host name.
    VerifyCa,
    /// TLS, the certificate signed by a CA of `sslrootcert` and issued for the host connected to.
    VerifyFull,
}

impl SslMode {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the CAs that sign the server's certificate come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file.
    File(PathBuf),
    /// The operating system's store (`sslrootcert=system`).
    System,
}

/// The TLS half of `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsParams {
    pub mode: SslMode,
    pub root: Option<RootCerts>,
    /// `sslcert` and `sslkey`: a client certificate (both or neither).
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The TLS parameters libpq reads and tokio-postgres does not.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Takes the TLS parameters out of `url`; returns what tokio-postgres should parse, and them. The
/// error never quotes the URL (it may hold a password).
pub fn split(url: &str) -> Result<(String, TlsParams), String> {
    let url = url.trim();
    let (rest, pairs) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_url(url)
    } else {
        split_key_values(url)?
    };
    let mut params = TlsParams::default();
    let (mut cert, mut key) = (None, None);
    for (k, v) in pairs {
        match k.as_str() {
            "sslmode" => {
                params.mode = SslMode::parse(&v).ok_or_else(|| {
                    "sslmode must be disable, prefer, require, verify-ca or verify-full".to_owned()
                })?
            }
            "sslrootcert" if v == "system" => params.root = Some(RootCerts::System),
            "sslrootcert" => params.root = Some(RootCerts::File(v.into())),
            "sslcert" => cert = Some(PathBuf::from(v)),
            "sslkey" => key = Some(PathBuf::from(v)),
            _ => {}
        }
    }
    params.client = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return Err("sslcert and sslkey go together".into()),
    };
    if matches!(params.mode, SslMode::VerifyCa | SslMode::VerifyFull) && params.root.is_none() {
        return Err(format!(
            "sslmode={} needs sslrootcert: the CA file, or `system` for the system's CAs",
            params.mode
        ));
    }
    Ok((rest, params))
}

/// A `postgres://` URL without the TLS query parameters.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k);
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, percent_decode(v)));
        } else {
            kept.push(pair);
        }
    }
    let rest = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    (rest, taken)
}

/// A `key=value` connection string without the TLS keys (values may be single-quoted, with `\'`
/// and `\\` escapes, as libpq allows).
fn split_key_values(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err("is not a valid postgres URL or key=value string".into());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let (mut value, mut raw) = (String::new(), String::new());
        if chars.next_if_eq(&'\'').is_some() {
            raw.push('\'');
            loop {
                match chars.next() {
                    Some('\\') => {
                        let escaped = chars.next().ok_or("an unfinished escape")?;
                        value.push(escaped);
                        raw.push('\\');
                        raw.push(escaped);
                    }
                    Some('\'') => break raw.push('\''),
                    Some(c) => {
                        value.push(c);
                        raw.push(c);
                    }
                    None => return Err("an unclosed quote".into()),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
                raw.push(c);
            }
        }
        if TLS_KEYS.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            kept.push(format!("{key}={raw}"));
        }
    }
    Ok((kept.join(" "), taken))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_tls_parameters() {
        let (rest, p) = split(
            "postgres://u:pw@db.example:5432/shop?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=edge",
        )
        .expect("valid");
        assert_eq!(
            rest,
            "postgres://u:pw@db.example:5432/shop?application_name=edge"
        );
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.root, Some(RootCerts::File("/etc/ca.pem".into())));
        let (rest, p) = split("postgres://u@h/db").expect("valid");
        assert_eq!(rest, "postgres://u@h/db");
        assert_eq!(p, TlsParams::default(), "prefer by default");
    }

    #[test]
    fn key_value_strings_too() {
        let (rest, p) = split(
            "host=db.example user=edge password='it\\'s a secret' sslmode=require sslcert=/c.pem sslkey='/k y.pem' dbname=shop",
        )
        .map_err(|e| e.to_string())
        .and_then(|(r, p)| match r.parse::<tokio_postgres::Config>() {
            Ok(_) => Ok((r, p)),
            Err(e) => Err(format!("{r}: {e}")),
        })
        .expect("valid");
        assert!(!rest.contains("sslmode"), "{rest}");
        assert!(rest.contains("dbname=shop"), "{rest}");
        assert_eq!(p.mode, SslMode::Require);
        assert_eq!(p.client, Some(("/c.pem".into(), "/k y.pem".into())));
    }

    #[test]
    fn verify_needs_a_root_and_modes_are_checked() {
        assert!(split("postgres://h/db?sslmode=verify-full").is_err());
        assert!(split("postgres://h/db?sslmode=verify-ca&sslrootcert=system").is_ok());
        let e = split("postgres://u:hunter2@h/db?sslmode=sometimes").expect_err("bad mode");
        assert!(!e.contains("hunter2"));
        assert!(split("postgres://h/db?sslcert=/c.pem").is_err());
    }
}
