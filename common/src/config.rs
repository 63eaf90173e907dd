//! Typed configuration: every environment variable is named here, parsed once at start-up, and all
//! bad variables are reported together (the binaries then exit with status 64).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// The names of every environment variable the binaries read.
pub mod var {
    pub const DATABASE_URL: &str = "DATABASE_URL";
    pub const DATABASE_POOL_SIZE: &str = "DATABASE_POOL_SIZE";
    pub const LOG_FORMAT: &str = "LOG_FORMAT";
    pub const EDGE_LISTEN: &str = "EDGE_LISTEN";
    pub const EDGE_ADMIN_LISTEN: &str = "EDGE_ADMIN_LISTEN";
    pub const STRIPE_WEBHOOK_SECRET: &str = "STRIPE_WEBHOOK_SECRET";
    pub const STRIPE_WEBHOOK_TOLERANCE_SECS: &str = "STRIPE_WEBHOOK_TOLERANCE_SECS";
    pub const EDGE_MAX_BODY_BYTES: &str = "EDGE_MAX_BODY_BYTES";
    pub const EDGE_LEDGER_WRITERS: &str = "EDGE_LEDGER_WRITERS";
    pub const EDGE_BATCH_MAX: &str = "EDGE_BATCH_MAX";
    pub const STRIPE_EXPECT_LIVEMODE: &str = "STRIPE_EXPECT_LIVEMODE";
    pub const UPSTREAM_URL: &str = "UPSTREAM_URL";
    pub const UPSTREAM_TIMEOUT_SECS: &str = "UPSTREAM_TIMEOUT_SECS";
    pub const SHUTDOWN_GRACE_SECS: &str = "SHUTDOWN_GRACE_SECS";
    pub const STRIPE_API_KEY: &str = "STRIPE_API_KEY";
    pub const STRIPE_API_BASE: &str = "STRIPE_API_BASE";
    pub const STRIPE_API_VERSION: &str = "STRIPE_API_VERSION";
    pub const RECONCILE_SCHEDULE: &str = "RECONCILE_SCHEDULE";
    pub const RECONCILE_LOOKBACK: &str = "RECONCILE_LOOKBACK";
    pub const RECONCILE_OVERLAP: &str = "RECONCILE_OVERLAP";
    pub const STRIPE_MAX_RPS: &str = "STRIPE_MAX_RPS";
    pub const RECONCILER_ADMIN_LISTEN: &str = "RECONCILER_ADMIN_LISTEN";
    pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";
}

/// Most webhook secrets active at once (`STRIPE_WEBHOOK_SECRET`).
pub const MAX_WEBHOOK_SECRETS: usize = 8;

/// Stripe keeps events for 30 days; a first pass must stay inside that.
pub const MAX_LOOKBACK: Duration = Duration::from_secs(29 * 24 * 3600);

/// Where variables come from: the process environment in production, a map in tests (so no test
/// ever calls `set_var`).
pub trait Source {
    fn get(&self, key: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).map(|v| (*v).to_owned())
    }
}

/// A string that never shows in `Debug` or `Display` (API keys, webhook secrets, tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    /// The secret itself: call this only where the value is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One bad variable and what is wrong with it (never its value: it may be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub var: &'static str,
    pub message: String,
}

/// Every problem found in one parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for p in &self.problems {
            writeln!(f, "  {}: {}", p.var, p.message)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// The names of the bad variables, in the order found.
    pub fn vars(&self) -> Vec<&'static str> {
        self.problems.iter().map(|p| p.var).collect()
    }
}

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Self::Json),
            "pretty" => Ok(Self::Pretty),
            _ => Err("must be `json` or `pretty`".into()),
        }
    }
}

/// Database settings shared by both binaries.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Parsed `DATABASE_URL` (tokio-postgres redacts the password in `Debug`).
    pub pg: tokio_postgres::Config,
    pub pool_size: usize,
}

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
    /// `scheme://authority` of the app, without a trailing slash.
    pub upstream_url: Option<String>,
    pub upstream_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// Everything the reconciler's commands need.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    pub db: DbConfig,
    pub log_format: LogFormat,
    pub stripe_api_key: Option<Secret>,
    pub stripe_api_base: String,
    pub stripe_api_version: Option<String>,
    pub schedule: String,
    pub lookback: Duration,
    pub overlap: Duration,
    pub max_rps: u32,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub expect_livemode: Option<bool>,
    pub shutdown_grace: Duration,
}

/// Collects problems while parsing, so that every bad variable is reported at once.
struct Parser<'a, S: Source + ?Sized> {
    source: &'a S,
    problems: Vec<Problem>,
}

impl<'a, S: Source + ?Sized> Parser<'a, S> {
    fn new(source: &'a S) -> Self {
        Self {
            source,
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, var: &'static str, message: impl Into<String>) {
        self.problems.push(Problem {
            var,
            message: message.into(),
        });
    }

    /// The raw value; an empty (or all-blank) value counts as unset.
    fn raw(&self, var: &'static str) -> Option<String> {
        self.source.get(var).filter(|v| !v.trim().is_empty())
    }

    fn required_raw(&mut self, var: &'static str) -> Option<String> {
        let value = self.raw(var);
        if value.is_none() {
            self.problem(var, "is required but not set");
        }
        value
    }

    /// Parses with `parse`, or returns `default` when unset; records a problem on a bad value.
    fn with<T>(
        &mut self,
        var: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T {
        match self.raw(var) {
            None => default,
            Some(v) => match parse(v.trim()) {
                Ok(t) => t,
                Err(message) => {
                    self.problem(var, message);
                    default
                }
            },
        }
    }

    fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }

    fn db(&mut self) -> DbConfig {
        let pg = match self.required_raw(var::DATABASE_URL) {
            None => tokio_postgres::Config::new(),
            Some(url) => match url.trim().parse::<tokio_postgres::Config>() {
                Ok(mut pg) => {
                    if pg.get_connect_timeout().is_none() {
                        pg.connect_timeout(Duration::from_secs(5));
                    }
                    pg.keepalives_idle(Duration::from_secs(30));
                    pg
                }
                Err(_) => {
                    self.problem(
                        var::DATABASE_URL,
                        "is not a valid postgres URL or key=value string",
                    );
                    tokio_postgres::Config::new()
                }
            },
        };
        let pool_size = self.with(var::DATABASE_POOL_SIZE, 16, |v| range(v, 1, 1024));
        DbConfig { pg, pool_size }
    }

    fn log_format(&mut self) -> LogFormat {
        self.with(var::LOG_FORMAT, LogFormat::Json, LogFormat::from_str)
    }

    fn expect_livemode(&mut self) -> Option<bool> {
        self.with(var::STRIPE_EXPECT_LIVEMODE, None, |v| match v {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err("must be `true` or `false` (or unset to accept both modes)".into()),
        })
    }

    fn addr(&mut self, var: &'static str, default: &str) -> SocketAddr {
        let fallback = SocketAddr::from(([0, 0, 0, 0], 0));
        let default = default.parse().unwrap_or(fallback);
        self.with(var, default, |v| {
            v.parse::<SocketAddr>()
                .map_err(|_| "must be an address such as 0.0.0.0:8080".into())
        })
    }

    fn grace(&mut self) -> Duration {
        self.with(var::SHUTDOWN_GRACE_SECS, Duration::from_secs(30), |v| {
            range(v, 0, 3600).map(Duration::from_secs)
        })
    }
}

fn range<T: FromStr + PartialOrd + fmt::Display>(v: &str, min: T, max: T) -> Result<T, String> {
    match v.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}

/// Parses durations such as `500ms`, `30s`, `15m`, `72h`, `2d`.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let err = || format!("`{v}` is not a duration such as 30s, 15m, 72h or 2d");
    let split = v.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let (number, unit) = v.split_at(split);
    let n: u64 = number.parse().map_err(|_| err())?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60).ok_or_else(err)?,
        "h" => n.checked_mul(3600).ok_or_else(err)?,
        "d" => n.checked_mul(86_400).ok_or_else(err)?,
        _ => return Err(err()),
    };
    Ok(Duration::from_secs(secs))
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

fn upstream_url(v: &str) -> Result<Option<String>, String> {
    let uri: http_like::Parts = http_like::parse(v)?;
    Ok(Some(format!("{}://{}", uri.scheme, uri.authority)))
}

/// A small, strict parser for `UPSTREAM_URL` (http only: TLS to the app terminates elsewhere).
mod http_like {
    pub struct Parts {
        pub scheme: &'static str,
        pub authority: String,
    }

    pub fn parse(v: &str) -> Result<Parts, String> {
        let rest = v.strip_prefix("http://").ok_or_else(|| {
            "must start with http:// (for example http://127.0.0.1:3000)".to_owned()
        })?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err("must be http://host[:port] with no path".into());
        }
        Ok(Parts {
            scheme: "http",
            authority: authority.to_owned(),
        })
    }
}

/// Parses only what `migrate` and other database-only commands need.
pub fn db_from(source: &(impl Source + ?Sized)) -> Result<(DbConfig, LogFormat), ConfigError> {
    let mut p = Parser::new(source);
    let db = p.db();
    let log = p.log_format();
    p.finish((db, log))
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
        let webhook_secrets = match p.required_raw(var::STRIPE_WEBHOOK_SECRET) {
            None => Vec::new(),
            Some(v) => webhook_secrets(&v).unwrap_or_else(|m| {
                p.problem(var::STRIPE_WEBHOOK_SECRET, m);
                Vec::new()
            }),
        };
        let webhook_tolerance_secs = p.with(var::STRIPE_WEBHOOK_TOLERANCE_SECS, 300, |v| {
            range(v, 1, 86_400)
        });
        let max_body_bytes = p.with(var::EDGE_MAX_BODY_BYTES, 1_048_576, |v| {
            range(v, 1024, 64 * 1024 * 1024)
        });
        let ledger_writers = p.with(var::EDGE_LEDGER_WRITERS, 1, |v| range(v, 1, 64));
        let batch_max = p.with(var::EDGE_BATCH_MAX, 128, |v| range(v, 1, 1000));
        let expect_livemode = p.expect_livemode();
        let upstream_url = p.with(var::UPSTREAM_URL, None, upstream_url);
        let upstream_timeout = p.with(var::UPSTREAM_TIMEOUT_SECS, Duration::from_secs(30), |v| {
            range(v, 1, 3600).map(Duration::from_secs)
        });
        let shutdown_grace = p.grace();
        if listen == admin_listen && listen.port() != 0 {
            p.problem(
                var::EDGE_ADMIN_LISTEN,
                "must differ from EDGE_LISTEN (metrics stay private)",
            );
        }
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
            upstream_url,
            upstream_timeout,
            shutdown_grace,
        })
    }
}

/// Which reconciler command is being configured: only some need the Stripe key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRequirement {
    Required,
    Optional,
}

impl ReconcilerConfig {
    pub fn from_env(key: KeyRequirement) -> Result<Self, ConfigError> {
        Self::from_source(&ProcessEnv, key)
    }

    pub fn from_source(
        source: &(impl Source + ?Sized),
        key: KeyRequirement,
    ) -> Result<Self, ConfigError> {
        let mut p = Parser::new(source);
        let db = p.db();
        let log_format = p.log_format();
        let raw_key = match key {
            KeyRequirement::Required => p.required_raw(var::STRIPE_API_KEY),
            KeyRequirement::Optional => p.raw(var::STRIPE_API_KEY),
        };
        let stripe_api_key = raw_key.and_then(|k| {
            let k = k.trim().to_owned();
            if k.starts_with("sk_") || k.starts_with("rk_") {
                Some(Secret::new(k))
            } else {
                p.problem(
                    var::STRIPE_API_KEY,
                    "must be a secret (sk_…) or restricted (rk_…) key",
                );
                None
            }
        });
        let stripe_api_base = p.with(var::STRIPE_API_BASE, "https://api.stripe.com".into(), |v| {
            let v = v.trim_end_matches('/');
            if v.starts_with("https://") || v.starts_with("http://") {
                Ok(v.to_owned())
            } else {
                Err("must be an http(s) URL".into())
            }
        });
        let stripe_api_version = p.raw(var::STRIPE_API_VERSION).map(|v| v.trim().to_owned());
        let schedule = p.with(var::RECONCILE_SCHEDULE, "0 */10 * * * *".into(), |v| {
            let fields = v.split_whitespace().count();
            if v.starts_with('@') || fields == 6 || fields == 7 {
                Ok(v.to_owned())
            } else {
                Err("must be a cron expression with seconds: `sec min hour dom mon dow`".into())
            }
        });
        let lookback = p.with(
            var::RECONCILE_LOOKBACK,
            Duration::from_secs(72 * 3600),
            |v| {
                let d = parse_duration(v)?;
                if d.is_zero() || d > MAX_LOOKBACK {
                    Err("must be more than 0 and at most 29d (Stripe keeps events 30 days)".into())
                } else {
                    Ok(d)
                }
            },
        );
        let overlap = p.with(
            var::RECONCILE_OVERLAP,
            Duration::from_secs(15 * 60),
            parse_duration,
        );
        let max_rps = p.with(var::STRIPE_MAX_RPS, 20, |v| range(v, 1, 1000));
        let admin_listen = p.addr(var::RECONCILER_ADMIN_LISTEN, "0.0.0.0:9465");
        let admin_token = p.raw(var::ADMIN_TOKEN).and_then(|t| {
            let t = t.trim().to_owned();
            if t.len() < 16 {
                p.problem(var::ADMIN_TOKEN, "must be at least 16 characters");
                None
            } else {
                Some(Secret::new(t))
            }
        });
        let expect_livemode = p.expect_livemode();
        let shutdown_grace = p.grace();
        p.finish(ReconcilerConfig {
            db,
            log_format,
            stripe_api_key,
            stripe_api_base,
            stripe_api_version,
            schedule,
            lookback,
            overlap,
            max_rps,
            admin_listen,
            admin_token,
            expect_livemode,
            shutdown_grace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    const DB: (&str, &str) = ("DATABASE_URL", "postgres://u:pw@127.0.0.1:5432/db");

    #[test]
    fn edge_defaults() {
        let c = EdgeConfig::from_source(&env(&[DB, ("STRIPE_WEBHOOK_SECRET", "whsec_a")]))
            .expect("valid");
        assert_eq!(c.listen, "0.0.0.0:8080".parse().expect("addr"));
        assert_eq!(c.admin_listen, "0.0.0.0:9464".parse().expect("addr"));
        assert_eq!(c.webhook_tolerance_secs, 300);
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert_eq!(c.db.pool_size, 16);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.expect_livemode, None);
        assert_eq!(c.upstream_url, None);
        assert_eq!(c.shutdown_grace, Duration::from_secs(30));
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
    fn secrets_rotate_and_never_print() {
        let c = EdgeConfig::from_source(&env(&[
            DB,
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
            let e = EdgeConfig::from_source(&env(&[DB, ("STRIPE_WEBHOOK_SECRET", bad)]))
                .expect_err(bad);
            assert_eq!(e.vars(), vec!["STRIPE_WEBHOOK_SECRET"]);
            assert!(!e.to_string().contains(bad), "value leaked into the error");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(259_200)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10w").is_err());
    }

    #[test]
    fn reconciler_key_and_limits() {
        let e = ReconcilerConfig::from_source(&env(&[DB]), KeyRequirement::Required)
            .expect_err("key required");
        assert_eq!(e.vars(), vec!["STRIPE_API_KEY"]);
        let ok = ReconcilerConfig::from_source(&env(&[DB]), KeyRequirement::Optional)
            .expect("key optional");
        assert_eq!(ok.lookback, Duration::from_secs(72 * 3600));
        assert_eq!(ok.schedule, "0 */10 * * * *");
        let e = ReconcilerConfig::from_source(
            &env(&[
                DB,
                ("STRIPE_API_KEY", "whsec_oops"),
                ("RECONCILE_SCHEDULE", "*/5 * * * *"),
                ("RECONCILE_LOOKBACK", "40d"),
                ("STRIPE_MAX_RPS", "1001"),
                ("ADMIN_TOKEN", "short"),
            ]),
            KeyRequirement::Required,
        )
        .expect_err("invalid");
        assert_eq!(
            e.vars(),
            vec![
                "STRIPE_API_KEY",
                "RECONCILE_SCHEDULE",
                "RECONCILE_LOOKBACK",
                "STRIPE_MAX_RPS",
                "ADMIN_TOKEN"
            ]
        );
    }
}
