//! The edge's configuration: every variable `edge serve` reads, parsed once into types with the
//! shared parser of `common::config`.

use std::net::SocketAddr;
use std::time::Duration;

use common::config::{
    ConfigError, DbConfig, LogFormat, Parser, ProcessEnv, Secret, Source, range, var,
};

/// Most webhook secrets active at once (`STRIPE_WEBHOOK_SECRET`).
pub const MAX_WEBHOOK_SECRETS: usize = 8;

/// Everything `edge serve` needs.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub db: DbConfig,
    pub log_format: LogFormat,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// One or more webhook signing secrets (several during a rotation); index = metric label.
    pub webhook_secrets: Vec<Secret>,
    pub webhook_tolerance_secs: u64,
    pub max_body_bytes: usize,
    /// Group commit: writers, each with its own pipelined connection, and the most events one
    /// transaction takes.
    pub ledger_writers: usize,
    pub batch_max: usize,
    pub expect_livemode: Option<bool>,
    /// `UPSTREAM_URL`: the app behind the proxy.
    pub upstream: Option<UpstreamApp>,
    pub upstream_timeout: Duration,
    pub shutdown_grace: Duration,
    /// From accept to a complete request head, protocol detection included.
    pub header_timeout: Duration,
    /// Open public connections at most; `None`: derived from `RLIMIT_NOFILE` at start-up.
    pub max_connections: Option<usize>,
    /// Webhook body bytes in flight across all connections.
    pub body_budget_bytes: usize,
    /// Proxied requests in flight (each on its own upstream connection) at most.
    pub proxy_max_inflight: usize,
    /// Threads serving the public listener, each with its own runtime and `SO_REUSEPORT`
    /// socket; 0: it shares the main multi-threaded runtime (one socket).
    pub serve_threads: usize,
    /// `EDGE_TLS_CERT_FILE` and `EDGE_TLS_KEY_FILE`: the public listener speaks HTTPS.
    pub tls: Option<TlsFiles>,
}

/// The PEM files of the public listener's certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// `UPSTREAM_URL` (`http://host[:port]`), parsed once: where the proxy connects and the `Host`
/// the app is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamApp {
    /// The URL's authority (`host[:port]`), sent to the app as `Host`.
    pub authority: String,
    /// `host:port` to connect to (port 80 when the URL names none).
    pub address: String,
}

impl EdgeConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv)
    }

    pub fn from_source(source: &(impl Source + ?Sized)) -> Result<Self, ConfigError> {
        let mut p = Parser::new(source);
        let db = p.db();
        let log_format = p.log_format();
        let listen = p.addr(var::EDGE_LISTEN, "0.0.0.0:8080");
        let admin_listen = p.addr(var::EDGE_ADMIN_LISTEN, "0.0.0.0:9464");
        let webhook_secrets = parse_webhook_secrets(&mut p);
        let webhook_tolerance_secs = p.with(var::STRIPE_WEBHOOK_TOLERANCE_SECS, 300, |v| {
            range(v, 1, 86_400)
        });
        let max_body_bytes = p.with(var::EDGE_MAX_BODY_BYTES, 1_048_576, |v| {
            range(v, 1024, 64 * 1024 * 1024)
        });
        let ledger_writers = p.with(var::EDGE_LEDGER_WRITERS, 1, |v| range(v, 1, 64));
        let batch_max = p.with(var::EDGE_BATCH_MAX, 128, |v| range(v, 1, 1000));
        let expect_livemode = p.expect_livemode();
        let upstream = p.with(var::UPSTREAM_URL, None, |v| http_like::parse(v).map(Some));
        let upstream_timeout = p.with(var::UPSTREAM_TIMEOUT_SECS, Duration::from_secs(30), |v| {
            range(v, 1, 3600).map(Duration::from_secs)
        });
        let shutdown_grace = p.grace();
        let header_timeout = p.with(
            var::EDGE_HEADER_TIMEOUT_SECS,
            Duration::from_secs(10),
            |v| range(v, 1, 300).map(Duration::from_secs),
        );
        let max_connections = p.with(var::EDGE_MAX_CONNECTIONS, None, |v| {
            range(v, 16, 10_000_000).map(Some)
        });
        let body_budget_bytes = p.with(var::EDGE_BODY_BUDGET_BYTES, 64 * 1024 * 1024, |v| {
            range(v, 64 * 1024, 16 * 1024 * 1024 * 1024)
        });
        let proxy_max_inflight = p.with(var::EDGE_PROXY_MAX_INFLIGHT, 1024, |v| {
            range(v, 1, 1_000_000)
        });
        let serve_threads = p.with(var::EDGE_SERVE_THREADS, 0, |v| range(v, 0, 256));
        if body_budget_bytes < max_body_bytes {
            p.problem(
                var::EDGE_BODY_BUDGET_BYTES,
                "must be at least EDGE_MAX_BODY_BYTES (one largest body must fit)",
            );
        }
        if listen == admin_listen && listen.port() != 0 {
            p.problem(
                var::EDGE_ADMIN_LISTEN,
                "must differ from EDGE_LISTEN (metrics stay private)",
            );
        }
        let tls = match (
            p.raw(var::EDGE_TLS_CERT_FILE),
            p.raw(var::EDGE_TLS_KEY_FILE),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.trim().into(),
                key: key.trim().into(),
            }),
            (None, None) => None,
            (Some(_), None) => {
                p.problem(
                    var::EDGE_TLS_KEY_FILE,
                    "is required with EDGE_TLS_CERT_FILE",
                );
                None
            }
            (None, Some(_)) => {
                p.problem(
                    var::EDGE_TLS_CERT_FILE,
                    "is required with EDGE_TLS_KEY_FILE",
                );
                None
            }
        };
        p.finish(EdgeConfig {
            db,
            log_format,
            listen,
            admin_listen,
            webhook_secrets,
            webhook_tolerance_secs,
            max_body_bytes,
            ledger_writers,
            batch_max,
            expect_livemode,
            upstream,
            upstream_timeout,
            shutdown_grace,
            header_timeout,
            max_connections,
            body_budget_bytes,
            proxy_max_inflight,
            serve_threads,
            tls,
        })
    }
}

/// `STRIPE_WEBHOOK_SECRET` (or `STRIPE_WEBHOOK_SECRET_FILE`) alone, as `SIGHUP` re-reads it.
pub fn webhook_secrets_from(source: &(impl Source + ?Sized)) -> Result<Vec<Secret>, ConfigError> {
    let mut p = Parser::new(source);
    let secrets = parse_webhook_secrets(&mut p);
    p.finish(secrets)
}

fn parse_webhook_secrets<S: Source + ?Sized>(p: &mut Parser<'_, S>) -> Vec<Secret> {
    match p.required_raw(var::STRIPE_WEBHOOK_SECRET) {
        None => Vec::new(),
        Some(v) => webhook_secrets(&v).unwrap_or_else(|m| {
            p.problem(var::STRIPE_WEBHOOK_SECRET, m);
            Vec::new()
        }),
    }
}

fn webhook_secrets(v: &str) -> Result<Vec<Secret>, String> {
    let mut out = Vec::new();
    for (i, part) in v.split(',').enumerate() {
        let s = part.trim();
        if s.is_empty() {
            return Err(format!("entry {i} is empty (secrets are comma-separated)"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "entry {i} contains whitespace; copy the secret again"
            ));
        }
        if ["sk_", "rk_", "pk_"].iter().any(|p| s.starts_with(p)) {
            return Err(format!(
                "entry {i} looks like an API key, not a webhook signing secret (whsec_…)"
            ));
        }
        out.push(Secret::new(s.to_owned()));
    }
    if out.len() > MAX_WEBHOOK_SECRETS {
        return Err(format!(
            "at most {MAX_WEBHOOK_SECRETS} secrets may be active at once"
        ));
    }
    Ok(out)
}

/// A small, strict parser for `UPSTREAM_URL` (http only: TLS to the app terminates elsewhere).
mod http_like {
    use super::UpstreamApp;

    pub fn parse(v: &str) -> Result<UpstreamApp, String> {
        let rest = v.strip_prefix("http://").ok_or_else(|| {
            "must start with http:// (for example http://127.0.0.1:3000)".to_owned()
        })?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err("must be http://host[:port] with no path".into());
        }
        let address = match authority
            .parse::<http::uri::Authority>()
            .ok()
            .and_then(|a| a.port_u16())
        {
            Some(_) => authority.to_owned(),
            None => format!("{authority}:80"),
        };
        Ok(UpstreamApp {
            authority: authority.to_owned(),
            address,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    const DB: (&str, &str) = ("DATABASE_URL", "postgres://u:pw@127.0.0.1:5432/db");
    const MODE: (&str, &str) = ("STRIPE_EXPECT_LIVEMODE", "any");

    #[test]
    fn edge_defaults() {
        let c = EdgeConfig::from_source(&env(&[DB, MODE, ("STRIPE_WEBHOOK_SECRET", "whsec_a")]))
            .expect("valid");
        assert_eq!(c.listen, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(c.admin_listen, "0.0.0.0:9464".parse().expect("addr"));
        assert_eq!(c.webhook_tolerance_secs, 300);
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert_eq!(c.db.pool_size, 16);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.expect_livemode, None);
        assert_eq!(c.db.lock_timeout, Duration::from_millis(2000));
        assert_eq!(c.db.statement_timeout(), Duration::from_secs(10));
        assert_eq!(c.upstream, None);
        assert_eq!(
            c.serve_threads, 0,
            "the public listener shares the main runtime"
        );
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    }

    #[test]
    fn the_upstream_url_gives_the_apps_host_and_the_address_to_connect_to() {
        let app = |url: &'static str| {
            EdgeConfig::from_source(&env(&[
                DB,
                MODE,
                ("STRIPE_WEBHOOK_SECRET", "whsec_a"),
                ("UPSTREAM_URL", url),
            ]))
            .expect("valid")
            .upstream
            .expect("an upstream")
        };
        let named = app("http://127.0.0.1:3000/");
        assert_eq!(named.authority, "127.0.0.1:3000");
        assert_eq!(named.address, "127.0.0.1:3000");
        let default_port = app("http://app.internal");
        assert_eq!(default_port.authority, "app.internal");
        assert_eq!(default_port.address, "app.internal:80");
    }

    #[test]
    fn every_bad_variable_is_named_at_once() {
        let e = EdgeConfig::from_source(&env(&[
            ("DATABASE_POOL_SIZE", "zero"),
            ("LOG_FORMAT", "xml"),
            ("EDGE_LISTEN", "nowhere"),
            ("STRIPE_WEBHOOK_TOLERANCE_SECS", "0"),
            ("STRIPE_EXPECT_LIVEMODE", "yes"),
            ("UPSTREAM_URL", "ftp://x"),
        ]))
        .expect_err("invalid");
        assert_eq!(
            e.vars(),
            vec![
                "DATABASE_URL",
                "DATABASE_POOL_SIZE",
                "LOG_FORMAT",
                "EDGE_LISTEN",
                "STRIPE_WEBHOOK_SECRET",
                "STRIPE_WEBHOOK_TOLERANCE_SECS",
                "STRIPE_EXPECT_LIVEMODE",
                "UPSTREAM_URL",
            ]
        );
    }

    #[test]
    fn the_expected_mode_is_an_explicit_choice() {
        let e = EdgeConfig::from_source(&env(&[DB, ("STRIPE_WEBHOOK_SECRET", "whsec_a")]))
            .expect_err("unset");
        assert_eq!(e.vars(), vec!["STRIPE_EXPECT_LIVEMODE"]);
        for (value, want) in [("true", Some(true)), ("false", Some(false)), ("any", None)] {
            let c = EdgeConfig::from_source(&env(&[
                DB,
                ("STRIPE_WEBHOOK_SECRET", "whsec_a"),
                ("STRIPE_EXPECT_LIVEMODE", value),
            ]))
            .expect(value);
            assert_eq!(c.expect_livemode, want);
        }
    }

    #[test]
    fn secrets_rotate_and_never_print() {
        let c = EdgeConfig::from_source(&env(&[
            DB,
            MODE,
            ("STRIPE_WEBHOOK_SECRET", " whsec_new , whsec_old "),
        ]))
        .expect("valid");
        assert_eq!(c.webhook_secrets.len(), 2);
        assert_eq!(c.webhook_secrets[1].expose(), "whsec_old");
        let debug = format!("{c:?}");
        assert!(!debug.contains("whsec_"), "{debug}");
        assert!(!debug.contains("pw"), "password leaked: {debug}");
    }

    #[test]
    fn secret_traps_are_refused() {
        for bad in ["sk_test_123", "whsec_a b", "whsec_a,,whsec_b"] {
            let e = EdgeConfig::from_source(&env(&[DB, MODE, ("STRIPE_WEBHOOK_SECRET", bad)]))
                .expect_err(bad);
            assert_eq!(e.vars(), vec!["STRIPE_WEBHOOK_SECRET"]);
            assert!(!e.to_string().contains(bad), "value leaked into the error");
        }
    }
}
