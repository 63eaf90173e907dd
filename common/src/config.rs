//! Typed configuration: every environment variable is named here, and the parser that each
//! binary's configuration (`edge/src/config.rs`, `reconciler/src/config.rs`) is read with: every
//! variable parsed once at start-up into types, every bad one reported together (the binaries then
//! exit with status 64), secrets redacted by type.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::pgurl::{SslMode, TlsParams};

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
    pub const EDGE_LOCK_TIMEOUT_MS: &str = "EDGE_LOCK_TIMEOUT_MS";
    pub const EDGE_HEADER_TIMEOUT_SECS: &str = "EDGE_HEADER_TIMEOUT_SECS";
    pub const EDGE_MAX_CONNECTIONS: &str = "EDGE_MAX_CONNECTIONS";
    pub const EDGE_BODY_BUDGET_BYTES: &str = "EDGE_BODY_BUDGET_BYTES";
    pub const EDGE_PROXY_MAX_INFLIGHT: &str = "EDGE_PROXY_MAX_INFLIGHT";
    pub const EDGE_SERVE_THREADS: &str = "EDGE_SERVE_THREADS";
    pub const UPSTREAM_URL: &str = "UPSTREAM_URL";
    pub const UPSTREAM_TIMEOUT_SECS: &str = "UPSTREAM_TIMEOUT_SECS";
    pub const SHUTDOWN_GRACE_SECS: &str = "SHUTDOWN_GRACE_SECS";
    pub const STRIPE_API_KEY: &str = "STRIPE_API_KEY";
    pub const STRIPE_API_BASE: &str = "STRIPE_API_BASE";
    pub const STRIPE_API_VERSION: &str = "STRIPE_API_VERSION";
    pub const RECONCILE_SCHEDULE: &str = "RECONCILE_SCHEDULE";
    pub const RECONCILE_LOOKBACK: &str = "RECONCILE_LOOKBACK";
    pub const RECONCILE_OVERLAP: &str = "RECONCILE_OVERLAP";
    pub const RECONCILE_SETTLE: &str = "RECONCILE_SETTLE";
    pub const RECONCILE_PASS_TIMEOUT: &str = "RECONCILE_PASS_TIMEOUT";
    pub const SWEEP_SCHEDULE: &str = "SWEEP_SCHEDULE";
    pub const SWEEP_LOOKBACK: &str = "SWEEP_LOOKBACK";
    pub const STRIPE_MAX_RESPONSE_BYTES: &str = "STRIPE_MAX_RESPONSE_BYTES";
    pub const STRIPE_MAX_RPS: &str = "STRIPE_MAX_RPS";
    pub const RECONCILER_ADMIN_LISTEN: &str = "RECONCILER_ADMIN_LISTEN";
    pub const ADMIN_TOKEN: &str = "ADMIN_TOKEN";
    pub const APP_NOTIFY_URL: &str = "APP_NOTIFY_URL";
    pub const APP_NOTIFY_SECRET: &str = "APP_NOTIFY_SECRET";
    pub const APP_NOTIFY_MAX_AGE: &str = "APP_NOTIFY_MAX_AGE";
    pub const APP_NOTIFY_TIMEOUT_SECS: &str = "APP_NOTIFY_TIMEOUT_SECS";
    pub const APP_NOTIFY_CONCURRENCY: &str = "APP_NOTIFY_CONCURRENCY";
    pub const EDGE_TLS_CERT_FILE: &str = "EDGE_TLS_CERT_FILE";
    pub const EDGE_TLS_KEY_FILE: &str = "EDGE_TLS_KEY_FILE";

    pub const DATABASE_URL_FILE: &str = "DATABASE_URL_FILE";
    pub const STRIPE_WEBHOOK_SECRET_FILE: &str = "STRIPE_WEBHOOK_SECRET_FILE";
    pub const STRIPE_API_KEY_FILE: &str = "STRIPE_API_KEY_FILE";
    pub const ADMIN_TOKEN_FILE: &str = "ADMIN_TOKEN_FILE";
    pub const APP_NOTIFY_SECRET_FILE: &str = "APP_NOTIFY_SECRET_FILE";

    /// Every secret-bearing variable and the variable that may name a file holding it instead
    /// (Docker and Kubernetes mount secrets as files).
    pub const SECRET_FILES: [(&str, &str); 5] = [
        (DATABASE_URL, DATABASE_URL_FILE),
        (STRIPE_WEBHOOK_SECRET, STRIPE_WEBHOOK_SECRET_FILE),
        (STRIPE_API_KEY, STRIPE_API_KEY_FILE),
        (ADMIN_TOKEN, ADMIN_TOKEN_FILE),
        (APP_NOTIFY_SECRET, APP_NOTIFY_SECRET_FILE),
    ];

    /// The `_FILE` variable of a secret-bearing variable.
    pub fn file_of(var: &str) -> Option<&'static str> {
        SECRET_FILES
            .iter()
            .find(|(name, _)| *name == var)
            .map(|(_, file)| *file)
    }
}

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
    /// Parsed `DATABASE_URL` (tokio-postgres redacts the password in `Debug`), without its TLS
    /// parameters.
    pub pg: tokio_postgres::Config,
    /// `DATABASE_URL`'s TLS parameters (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`).
    pub tls: TlsParams,
    pub pool_size: usize,
    /// `lock_timeout` of pooled sessions (`EDGE_LOCK_TIMEOUT_MS`): a row locked elsewhere never
    /// stalls the ledger's writes for longer.
    pub lock_timeout: Duration,
}

impl DbConfig {
    /// `statement_timeout` of pooled sessions: five lock timeouts, at least 5 s.
    pub fn statement_timeout(&self) -> Duration {
        (self.lock_timeout * 5).max(Duration::from_secs(5))
    }
}

/// Collects problems while parsing, so that every bad variable is reported at once.
pub struct Parser<'a, S: Source + ?Sized> {
    source: &'a S,
    problems: Vec<Problem>,
}

impl<'a, S: Source + ?Sized> Parser<'a, S> {
    pub fn new(source: &'a S) -> Self {
        Self {
            source,
            problems: Vec::new(),
        }
    }

    pub fn problem(&mut self, var: &'static str, message: impl Into<String>) {
        self.problems.push(Problem {
            var,
            message: message.into(),
        });
    }

    /// The raw value; an empty (or all-blank) value counts as unset. A secret-bearing variable
    /// may instead be given as `<NAME>_FILE`, a file whose content (trailing newlines stripped) is
    /// the value; both set, or a file that cannot be read, is a problem of its own (naming the
    /// variable and the path, never the content).
    pub fn raw(&mut self, var: &'static str) -> Option<String> {
        let direct = self.source.get(var).filter(|v| !v.trim().is_empty());
        let Some(file_var) = var::file_of(var) else {
            return direct;
        };
        let file = self.source.get(file_var).filter(|v| !v.trim().is_empty());
        match (direct, file) {
            (Some(_), Some(_)) => {
                let message = format!("is set together with {var}: set only one of them");
                self.problem(file_var, message);
                None
            }
            (direct, None) => direct,
            (None, Some(path)) => {
                let path = path.trim();
                match std::fs::read_to_string(path) {
                    Ok(content) => {
                        let value = content.trim_end_matches(['\n', '\r']);
                        if value.trim().is_empty() {
                            self.problem(file_var, format!("names an empty file: {path}"));
                            return None;
                        }
                        Some(value.to_owned())
                    }
                    Err(e) => {
                        self.problem(file_var, format!("cannot read {path}: {e}"));
                        None
                    }
                }
            }
        }
    }

    /// Whether a problem was recorded for `var` (or for its `_FILE` twin).
    pub fn reported(&self, var: &'static str) -> bool {
        let file_var = var::file_of(var);
        self.problems
            .iter()
            .any(|p| p.var == var || Some(p.var) == file_var)
    }

    pub fn required_raw(&mut self, var: &'static str) -> Option<String> {
        let value = self.raw(var);
        let file_var = var::file_of(var);
        if value.is_none() && !self.reported(var) {
            match file_var {
                Some(file_var) => self.problem(
                    var,
                    format!("is required but not set (neither is {file_var})"),
                ),
                None => self.problem(var, "is required but not set"),
            }
        }
        value
    }

    /// Parses with `parse`, or returns `default` when unset; records a problem on a bad value.
    pub fn with<T>(
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

    /// The problems found so far, as the error (for a parse that cannot go on).
    pub fn into_error(self) -> ConfigError {
        ConfigError {
            problems: self.problems,
        }
    }

    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }

    pub fn db(&mut self) -> DbConfig {
        let (pg, tls) = match self.required_raw(var::DATABASE_URL) {
            None => (tokio_postgres::Config::new(), TlsParams::default()),
            Some(url) => match database_url(&url) {
                Ok(parsed) => parsed,
                Err(message) => {
                    self.problem(var::DATABASE_URL, message);
                    (tokio_postgres::Config::new(), TlsParams::default())
                }
            },
        };
        let pool_size = self.with(var::DATABASE_POOL_SIZE, 16, |v| range(v, 1, 1024));
        let lock_timeout = self.with(
            var::EDGE_LOCK_TIMEOUT_MS,
            Duration::from_millis(2000),
            |v| range(v, 10, 600_000).map(Duration::from_millis),
        );
        DbConfig {
            pg,
            tls,
            pool_size,
            lock_timeout,
        }
    }

    pub fn log_format(&mut self) -> LogFormat {
        self.with(var::LOG_FORMAT, LogFormat::Json, LogFormat::from_str)
    }

    /// `STRIPE_EXPECT_LIVEMODE`, required: `true` (live), `false` (test) or `any` (both modes
    /// move orders, as an explicit choice). `None` means any.
    pub fn expect_livemode(&mut self) -> Option<bool> {
        let value = self.required_raw(var::STRIPE_EXPECT_LIVEMODE)?;
        match value.trim() {
            "true" => Some(true),
            "false" => Some(false),
            "any" => None,
            _ => {
                self.problem(
                    var::STRIPE_EXPECT_LIVEMODE,
                    "must be `true` (live mode), `false` (test mode) or `any`",
                );
                None
            }
        }
    }

    pub fn addr(&mut self, var: &'static str, default: &str) -> SocketAddr {
        let fallback = SocketAddr::from(([0, 0, 0, 0], 0));
        let default = default.parse().unwrap_or(fallback);
        self.with(var, default, |v| {
            v.parse::<SocketAddr>()
                .map_err(|_| "must be an address such as 0.0.0.0:8080".into())
        })
    }

    pub fn grace(&mut self) -> Duration {
        self.with(var::SHUTDOWN_GRACE_SECS, Duration::from_secs(30), |v| {
            range(v, 0, 3600).map(Duration::from_secs)
        })
    }
}

/// `DATABASE_URL`: tokio-postgres's settings and the TLS parameters libpq reads (the message of
/// an error never quotes the URL: it may hold a password).
fn database_url(url: &str) -> Result<(tokio_postgres::Config, TlsParams), String> {
    let (rest, tls) = crate::pgurl::split(url).map_err(|e| format!("has {e}"))?;
    let mut pg = rest
        .parse::<tokio_postgres::Config>()
        .map_err(|_| "is not a valid postgres URL or key=value string".to_owned())?;
    pg.ssl_mode(match tls.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(5));
    }
    pg.keepalives_idle(Duration::from_secs(30));
    Ok((pg, tls))
}

pub fn range<T: FromStr + PartialOrd + fmt::Display>(v: &str, min: T, max: T) -> Result<T, String> {
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

/// Parses only what `migrate` and other database-only commands need.
pub fn db_from(source: &(impl Source + ?Sized)) -> Result<(DbConfig, LogFormat), ConfigError> {
    let mut p = Parser::new(source);
    let db = p.db();
    let log = p.log_format();
    p.finish((db, log))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn database_settings() {
        let (db, log) = db_from(&env(&[
            ("DATABASE_URL", "postgres://u:pw@127.0.0.1:5432/db"),
            ("LOG_FORMAT", "pretty"),
        ]))
        .expect("valid");
        assert_eq!(db.pool_size, 16);
        assert_eq!(log, LogFormat::Pretty);
        assert!(!format!("{db:?}").contains("pw"), "password leaked");
        let e = db_from(&env(&[("DATABASE_POOL_SIZE", "0")])).expect_err("invalid");
        assert_eq!(e.vars(), vec!["DATABASE_URL", "DATABASE_POOL_SIZE"]);
    }

    #[test]
    fn secrets_may_come_from_files() {
        let dir = std::env::temp_dir().join(format!("edge-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("url");
        std::fs::write(&file, "postgres://u:pw@127.0.0.1/db\r\n").expect("file");
        let path = file.display().to_string();
        let (db, _) = db_from(&env(&[("DATABASE_URL_FILE", path.leak())])).expect("from the file");
        assert_eq!(db.pg.get_dbname(), Some("db"));
        let e = db_from(&env(&[
            ("DATABASE_URL", "postgres://u@h/db"),
            ("DATABASE_URL_FILE", "/nowhere"),
        ]))
        .expect_err("both");
        assert_eq!(e.vars(), vec!["DATABASE_URL_FILE"]);
        let e = db_from(&env(&[("DATABASE_URL_FILE", "/nowhere/at/all")])).expect_err("missing");
        assert_eq!(e.vars(), vec!["DATABASE_URL_FILE"]);
        let _ = std::fs::remove_dir_all(&dir);
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
}
