//! The reconciler's configuration: every variable its commands read, parsed once into types with
//! the shared parser of `common::config`.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};

use common::config::{
    ConfigError, DbConfig, LogFormat, Parser, ProcessEnv, Secret, Source, parse_duration, range,
    var,
};

/// Stripe keeps events for 30 days; a first pass must stay inside that.
pub const MAX_LOOKBACK: Duration = Duration::from_secs(29 * 24 * 3600);

/// `RECONCILE_SCHEDULE`: a cron expression with seconds, UTC, parsed once.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: croner::Cron,
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Self, String> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .build()
            .parse(expr)
            .map_err(|e| {
                format!("must be a cron expression with seconds (`sec min hour dom mon dow`): {e}")
            })?;
        Ok(Self {
            expr: expr.to_owned(),
            cron,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The tick that `now` belongs to: the latest scheduled time at or before it. Replicas whose
    /// clocks differ by less than the schedule's period agree on it.
    pub fn tick(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let second = now.with_nanosecond(0).unwrap_or(now);
        self.cron.find_previous_occurrence(&second, true).ok()
    }
}

impl PartialEq<&str> for Schedule {
    fn eq(&self, other: &&str) -> bool {
        self.expr == *other
    }
}

/// Everything the reconciler's commands need.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    pub db: DbConfig,
    pub log_format: LogFormat,
    pub stripe_api_key: Option<Secret>,
    pub stripe_api_base: String,
    pub stripe_api_version: Option<String>,
    pub schedule: Schedule,
    pub lookback: Duration,
    pub overlap: Duration,
    /// A pass's window ends this long before now (`RECONCILE_SETTLE`).
    pub settle: Duration,
    /// A pass that runs longer is recorded failed and stopped (`RECONCILE_PASS_TIMEOUT`).
    pub pass_timeout: Duration,
    /// Larger Stripe responses fail the pass (`STRIPE_MAX_RESPONSE_BYTES`).
    pub max_response_bytes: usize,
    pub max_rps: u32,
    pub admin_listen: SocketAddr,
    pub admin_token: Option<Secret>,
    pub expect_livemode: Option<bool>,
    pub shutdown_grace: Duration,
    /// Order notifications to the app (`APP_NOTIFY_*`); `None` when `APP_NOTIFY_URL` is unset:
    /// the rows are written but not delivered.
    pub notify: Option<NotifyConfig>,
    /// When the daemon sweeps the objects (`SWEEP_SCHEDULE`); `None`: never on its own.
    pub sweep_schedule: Option<Schedule>,
    /// The window of a scheduled sweep (`SWEEP_LOOKBACK`).
    pub sweep_lookback: Duration,
}

/// Where and how order notifications are delivered.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// `APP_NOTIFY_URL`: an http(s) URL.
    pub url: reqwest::Url,
    /// `APP_NOTIFY_SECRET`: signs each notification (`Edge-Signature`).
    pub secret: Secret,
    /// A notification not acknowledged this long after it was queued is dead.
    pub max_age: Duration,
    /// Per delivery attempt.
    pub timeout: Duration,
    /// Deliveries in flight in this process.
    pub concurrency: usize,
}

/// The shortest notification secret: 32 bytes, as a 256-bit HMAC key.
pub const MIN_NOTIFY_SECRET_BYTES: usize = 32;

impl NotifyConfig {
    /// `None` without `APP_NOTIFY_URL` (a secret alone is allowed: delivery is off).
    fn parse<S: Source + ?Sized>(p: &mut Parser<'_, S>) -> Option<Self> {
        let url = p
            .raw(var::APP_NOTIFY_URL)
            .and_then(|v| match reqwest::Url::parse(v.trim()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
                Ok(_) => {
                    p.problem(var::APP_NOTIFY_URL, "must be an http:// or https:// URL");
                    None
                }
                Err(e) => {
                    p.problem(var::APP_NOTIFY_URL, format!("is not a URL: {e}"));
                    None
                }
            });
        let secret = p.raw(var::APP_NOTIFY_SECRET).and_then(|v| {
            if v.len() < MIN_NOTIFY_SECRET_BYTES {
                p.problem(
                    var::APP_NOTIFY_SECRET,
                    format!("must be at least {MIN_NOTIFY_SECRET_BYTES} bytes"),
                );
                return None;
            }
            Some(Secret::new(v))
        });
        let max_age = p.with(
            var::APP_NOTIFY_MAX_AGE,
            Duration::from_secs(72 * 3600),
            |v| {
                parse_duration(v).and_then(|d| match d >= Duration::from_secs(60) {
                    true => Ok(d),
                    false => Err("must be at least 1m".into()),
                })
            },
        );
        let timeout = p.with(var::APP_NOTIFY_TIMEOUT_SECS, 10, |v| range(v, 1, 300));
        let concurrency = p.with(var::APP_NOTIFY_CONCURRENCY, 8, |v| range(v, 1, 256));
        let url = url?;
        let Some(secret) = secret else {
            if !p.reported(var::APP_NOTIFY_SECRET) {
                p.problem(
                    var::APP_NOTIFY_SECRET,
                    "is required with APP_NOTIFY_URL (it signs the notifications)",
                );
            }
            return None;
        };
        Some(Self {
            url,
            secret,
            max_age,
            timeout: Duration::from_secs(timeout),
            concurrency,
        })
    }
}

/// `RECONCILE_SCHEDULE`'s default: every ten minutes.
const DEFAULT_SCHEDULE: &str = "0 */10 * * * *";

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
        let stripe = StripeSettings::parse(&mut p, key);
        let Some(pass) = PassSettings::parse(&mut p) else {
            return Err(p.into_error());
        };
        let max_response_bytes = p.with(var::STRIPE_MAX_RESPONSE_BYTES, 16 * 1024 * 1024, |v| {
            range(v, 64 * 1024, 1024 * 1024 * 1024)
        });
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
        let notify = NotifyConfig::parse(&mut p);
        let sweep_schedule = p.with(var::SWEEP_SCHEDULE, None, |v| Schedule::parse(v).map(Some));
        let sweep_lookback = p.with(
            var::SWEEP_LOOKBACK,
            Duration::from_secs(35 * 24 * 3600),
            |v| {
                let d = parse_duration(v)?;
                match d.is_zero() {
                    true => Err("must be more than 0".into()),
                    false => Ok(d),
                }
            },
        );
        p.finish(ReconcilerConfig {
            db,
            log_format,
            stripe_api_key: stripe.api_key,
            stripe_api_base: stripe.api_base,
            stripe_api_version: stripe.api_version,
            schedule: pass.schedule,
            lookback: pass.lookback,
            overlap: pass.overlap,
            settle: pass.settle,
            pass_timeout: pass.pass_timeout,
            max_response_bytes,
            max_rps,
            admin_listen,
            admin_token,
            expect_livemode,
            shutdown_grace,
            notify,
            sweep_schedule,
            sweep_lookback,
        })
    }
}

/// How the reconciler talks to Stripe.
struct StripeSettings {
    api_key: Option<Secret>,
    api_base: String,
    api_version: Option<String>,
}

impl StripeSettings {
    fn parse<S: Source + ?Sized>(p: &mut Parser<'_, S>, key: KeyRequirement) -> Self {
        let raw_key = match key {
            KeyRequirement::Required => p.required_raw(var::STRIPE_API_KEY),
            KeyRequirement::Optional => p.raw(var::STRIPE_API_KEY),
        };
        let api_key = raw_key.and_then(|k| {
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
        let api_base = p.with(var::STRIPE_API_BASE, "https://api.stripe.com".into(), |v| {
            let v = v.trim_end_matches('/');
            if v.starts_with("https://") || v.starts_with("http://") {
                Ok(v.to_owned())
            } else {
                Err("must be an http(s) URL".into())
            }
        });
        Self {
            api_key,
            api_base,
            api_version: p.raw(var::STRIPE_API_VERSION).map(|v| v.trim().to_owned()),
        }
    }
}

/// When passes run and what window each covers.
struct PassSettings {
    schedule: Schedule,
    lookback: Duration,
    overlap: Duration,
    settle: Duration,
    pass_timeout: Duration,
}

impl PassSettings {
    /// `None` only when `RECONCILE_SCHEDULE` was refused (the default always parses).
    fn parse<S: Source + ?Sized>(p: &mut Parser<'_, S>) -> Option<Self> {
        let schedule = p
            .with(var::RECONCILE_SCHEDULE, None, |v| {
                Schedule::parse(v).map(Some)
            })
            .or_else(|| Schedule::parse(DEFAULT_SCHEDULE).ok())?;
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
        let settle = p.with(var::RECONCILE_SETTLE, Duration::from_secs(60), |v| {
            parse_duration(v).and_then(|d| match d <= Duration::from_secs(3600) {
                true => Ok(d),
                false => Err("must be at most 1h".into()),
            })
        });
        let pass_timeout = p.with(var::RECONCILE_PASS_TIMEOUT, Duration::from_secs(300), |v| {
            parse_duration(v).and_then(|d| match d >= Duration::from_secs(1) {
                true => Ok(d),
                false => Err("must be at least 1s".into()),
            })
        });
        Some(Self {
            schedule,
            lookback,
            overlap,
            settle,
            pass_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_a_few_hundred_ms_apart_name_the_same_tick() {
        let schedule = Schedule::parse("*/10 * * * * *").expect("schedule");
        let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("time").to_utc();
        let tick = at("2026-12-01T12:00:00Z");
        for now in [
            "2026-12-01T12:00:00.000Z",
            "2026-12-01T12:00:00.300Z",
            "2026-12-01T12:00:09.700Z",
        ] {
            assert_eq!(schedule.tick(at(now)), Some(tick), "{now}");
        }
        assert!(
            Schedule::parse("*/5 * * * *").is_err(),
            "seconds are required"
        );
    }
    use std::collections::HashMap;

    fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    const DB: (&str, &str) = ("DATABASE_URL", "postgres://u:pw@127.0.0.1:5432/db");
    const MODE: (&str, &str) = ("STRIPE_EXPECT_LIVEMODE", "false");

    #[test]
    fn reconciler_key_and_limits() {
        let e = ReconcilerConfig::from_source(&env(&[DB, MODE]), KeyRequirement::Required)
            .expect_err("key required");
        assert_eq!(e.vars(), vec!["STRIPE_API_KEY"]);
        let ok = ReconcilerConfig::from_source(&env(&[DB, MODE]), KeyRequirement::Optional)
            .expect("key optional");
        assert_eq!(ok.lookback, Duration::from_secs(72 * 3600));
        assert_eq!(ok.schedule, "0 */10 * * * *");
        let e = ReconcilerConfig::from_source(
            &env(&[
                DB,
                MODE,
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

    #[test]
    fn order_notifications_need_an_http_url_and_a_long_secret() {
        let secret = ("APP_NOTIFY_SECRET", "0123456789abcdef0123456789abcdef");
        let ok = ReconcilerConfig::from_source(
            &env(&[
                DB,
                MODE,
                ("APP_NOTIFY_URL", "https://shop.example/hooks/edge"),
                secret,
            ]),
            KeyRequirement::Optional,
        )
        .expect("valid");
        let notify = ok.notify.expect("configured");
        assert_eq!(notify.max_age, Duration::from_secs(72 * 3600));
        assert_eq!(
            (notify.timeout, notify.concurrency),
            (Duration::from_secs(10), 8)
        );
        let off =
            ReconcilerConfig::from_source(&env(&[DB, MODE, secret]), KeyRequirement::Optional)
                .expect("a secret alone");
        assert!(off.notify.is_none());
        for (bad, var) in [
            (("APP_NOTIFY_URL", "ftp://shop.example/x"), "APP_NOTIFY_URL"),
            (("APP_NOTIFY_URL", "not a url"), "APP_NOTIFY_URL"),
            (("APP_NOTIFY_MAX_AGE", "10s"), "APP_NOTIFY_MAX_AGE"),
            (("APP_NOTIFY_CONCURRENCY", "0"), "APP_NOTIFY_CONCURRENCY"),
        ] {
            let e = ReconcilerConfig::from_source(
                &env(&[DB, MODE, secret, bad]),
                KeyRequirement::Optional,
            )
            .expect_err(var);
            assert_eq!(e.vars(), vec![var]);
        }
        let short = ReconcilerConfig::from_source(
            &env(&[
                DB,
                MODE,
                ("APP_NOTIFY_URL", "http://127.0.0.1:1/x"),
                ("APP_NOTIFY_SECRET", "short"),
            ]),
            KeyRequirement::Optional,
        )
        .expect_err("short secret");
        assert_eq!(short.vars(), vec!["APP_NOTIFY_SECRET"]);
        let missing = ReconcilerConfig::from_source(
            &env(&[DB, MODE, ("APP_NOTIFY_URL", "http://127.0.0.1:1/x")]),
            KeyRequirement::Optional,
        )
        .expect_err("no secret");
        assert_eq!(missing.vars(), vec!["APP_NOTIFY_SECRET"]);
    }
}
