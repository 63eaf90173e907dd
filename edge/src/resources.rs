//! The process's file descriptors: the soft limit raised to the hard one at start-up, and the
//! default cap on public connections (`EDGE_MAX_CONNECTIONS`) derived from it, with a reserve for
//! the database pools, the upstream connections, the admin listener and the rest.

use crate::config::EdgeConfig;
use crate::group_commit::CONNECTIONS_PER_WRITER;

/// Descriptors kept for everything else (logs, the runtime, DNS, accept itself).
const MISC_RESERVE: usize = 64;
/// The fewest public connections the edge serves, whatever the limit.
const MIN_CONNECTIONS: usize = 16;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the file descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// The soft `RLIMIT_NOFILE` now.
pub fn fd_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// What stays free of public connections: both pools, the upstream connections (at most a
/// quarter of the limit), the admin listener and the rest.
pub fn reserve(config: &EdgeConfig, limit: usize) -> usize {
    let database = config.db.pool_size + config.ledger_writers * CONNECTIONS_PER_WRITER;
    let upstream = match config.upstream {
        Some(_) => config.proxy_max_inflight.min(limit / 4),
        None => 0,
    };
    database + upstream + common::admin::MAX_CONNECTIONS + MISC_RESERVE
}

/// `EDGE_MAX_CONNECTIONS`, or the limit less the [`reserve`].
pub fn max_connections(config: &EdgeConfig) -> usize {
    if let Some(n) = config.max_connections {
        return n;
    }
    let limit = fd_limit().map_or(1024, |l| usize::try_from(l).unwrap_or(usize::MAX));
    limit
        .saturating_sub(reserve(config, limit))
        .max(MIN_CONNECTIONS)
}
