//! Support sessions: a login with `ADMIN_TOKEN` (compared in constant time) makes a random session
//! id, kept here with its CSRF token, that expires after 8 hours idle; failed logins are counted
//! per client address (5 a minute, then 429). In memory: a restart logs support out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// A session unused this long is over.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);
/// Failed logins a client address may make per [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Sessions kept at most (the oldest idle one makes room).
const MAX_SESSIONS: usize = 10_000;
/// Client addresses whose failures are remembered at most.
const MAX_CLIENTS: usize = 10_000;

/// The cookie holding the session id.
pub const COOKIE: &str = "support_session";

/// A signed-in support session.
#[derive(Debug, Clone)]
pub struct Session {
    /// A short public tag for logs (never the id itself).
    pub tag: String,
    pub csrf: String,
    last_seen: Instant,
}

#[derive(Default)]
pub struct Auth {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

/// 244 random bits, as hex.
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Auth {
    /// Whether `client` has used up its failed logins for now.
    pub fn locked_out(&self, client: IpAddr) -> bool {
        let Ok(mut failures) = self.failures.lock() else {
            return true;
        };
        let now = Instant::now();
        match failures.get_mut(&client) {
            Some(times) => {
                times.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
                times.len() >= MAX_FAILURES
            }
            None => false,
        }
    }

    /// Checks `presented` against `token`; on success a new session (its id and state), else the
    /// failure is counted for `client`.
    pub fn login(&self, client: IpAddr, presented: &str, token: &str) -> Option<(String, Session)> {
        if !bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
            if let Ok(mut failures) = self.failures.lock() {
                if failures.len() >= MAX_CLIENTS && !failures.contains_key(&client) {
                    let now = Instant::now();
                    failures.retain(|_, times| {
                        times
                            .iter()
                            .any(|t| now.duration_since(*t) < FAILURE_WINDOW)
                    });
                }
                failures.entry(client).or_default().push(Instant::now());
            }
            return None;
        }
        let id = random_token();
        let session = Session {
            tag: id[..8].to_owned(),
            csrf: random_token(),
            last_seen: Instant::now(),
        };
        let mut sessions = self.sessions.lock().ok()?;
        let now = Instant::now();
        sessions.retain(|_, s| now.duration_since(s.last_seen) < IDLE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), session.clone());
        Some((id, session))
    }

    /// The live session of a cookie value, touched.
    pub fn session(&self, id: &str) -> Option<Session> {
        let mut sessions = self.sessions.lock().ok()?;
        let now = Instant::now();
        let session = sessions.get_mut(id)?;
        if now.duration_since(session.last_seen) >= IDLE {
            sessions.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    pub fn logout(&self, id: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(id);
        }
    }
}

/// Whether a form's CSRF token is the session's (constant time).
pub fn csrf_ok(session: &Session, presented: &str) -> bool {
    bool::from(presented.as_bytes().ct_eq(session.csrf.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_needs_the_token_and_failures_lock_out() {
        let auth = Auth::default();
        let client: IpAddr = "192.0.2.7".parse().expect("ip");
        let other: IpAddr = "192.0.2.8".parse().expect("ip");
        assert!(auth.login(client, "wrong", "the-admin-token-123").is_none());
        let (id, session) = auth
            .login(client, "the-admin-token-123", "the-admin-token-123")
            .expect("login");
        assert_eq!(id.len(), 64);
        assert!(auth.session(&id).is_some());
        assert!(csrf_ok(&session, &session.csrf));
        assert!(!csrf_ok(&session, "forged"));
        for _ in 0..MAX_FAILURES {
            assert!(auth.login(client, "wrong", "the-admin-token-123").is_none());
        }
        assert!(auth.locked_out(client));
        assert!(!auth.locked_out(other), "per client address");
        auth.logout(&id);
        assert!(auth.session(&id).is_none());
    }
}
