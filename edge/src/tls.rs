//! HTTPS on the public listener, for a shop without a load balancer in front (Stripe sends live
//! webhooks to HTTPS endpoints only): rustls, TLS 1.2 and 1.3, h2 and http/1.1 by ALPN, the
//! certificate from `EDGE_TLS_CERT_FILE` / `EDGE_TLS_KEY_FILE`. The pair is re-read on `SIGHUP`
//! and when its files change (a certbot renewal), without touching open connections: new
//! handshakes get the new certificate. A new pair that cannot be used (unreadable, a key that does
//! not match) keeps the one in force, and the log says why. The certificate's end date is a metric,
//! alerted on 14 days ahead.

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use x509_cert::der::Decode;

use crate::config::TlsFiles;
use crate::metrics::{EdgeMetrics, ReloadOutcome, Reloaded};

/// How often the certificate's files are looked at for a change.
pub const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Why a certificate pair cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {var} {path}: {source}")]
    Read {
        var: &'static str,
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("EDGE_TLS_CERT_FILE {0} holds no certificate")]
    NoCertificate(String),
    #[error("the certificate and the key do not go together: {0}")]
    Pair(rustls::Error),
    #[error("cannot read the certificate's end date: {0}")]
    Expiry(String),
}

/// The certificate in force, swapped by a reload.
#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// The public listener's certificate, reloadable.
pub struct Certificates {
    files: TlsFiles,
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
    metrics: EdgeMetrics,
    /// The files' modification times when last loaded.
    seen: RwLock<Option<(SystemTime, SystemTime)>>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("files", &self.files)
            .finish()
    }
}

impl Certificates {
    /// Loads the pair (a failure here stops the edge at start, exit 64).
    pub fn load(files: &TlsFiles, metrics: EdgeMetrics) -> Result<Self, TlsError> {
        let seen = modified(files);
        let (key, expiry) = read_pair(files)?;
        metrics.tls_expiry.set_value(expiry);
        let resolver = Arc::new(Resolver(RwLock::new(Arc::new(key))));
        let mut config = ServerConfig::builder_with_provider(common::db::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Pair)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            files: files.clone(),
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            metrics,
            seen: RwLock::new(seen),
        })
    }

    /// The acceptor of the public listener (it always presents the pair in force).
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Re-reads the pair: in force for the next handshakes, or kept as it is when the new one
    /// cannot be used. Whether it was replaced.
    pub fn reload(&self) -> bool {
        *self.seen.write().unwrap_or_else(PoisonError::into_inner) = modified(&self.files);
        match read_pair(&self.files) {
            Ok((key, expiry)) => {
                *self
                    .resolver
                    .0
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                self.metrics.tls_expiry.set_value(expiry);
                self.metrics
                    .reloads
                    .inc((Reloaded::TlsCertificate, ReloadOutcome::Ok));
                tracing::info!(
                    cert = %self.files.cert.display(),
                    expiresAt = expiry,
                    "TLS certificate reloaded"
                );
                true
            }
            Err(e) => {
                self.metrics
                    .reloads
                    .inc((Reloaded::TlsCertificate, ReloadOutcome::Failed));
                tracing::error!(error = %e, "TLS certificate not reloaded; the one in force stays");
                false
            }
        }
    }

    /// Reloads whenever the files change, looking every [`WATCH_EVERY`] (spawn it).
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = modified(&self.files);
            let changed = *self.seen.read().unwrap_or_else(PoisonError::into_inner) != now;
            if changed && now.is_some() {
                tracing::info!("TLS certificate files changed: reloading");
                self.reload();
            }
        }
    }
}

/// The files' modification times (`None` while one cannot be read: mid-renewal).
fn modified(files: &TlsFiles) -> Option<(SystemTime, SystemTime)> {
    let at = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((at(&files.cert)?, at(&files.key)?))
}

/// The pair, checked to go together, and the certificate's end (unix seconds).
fn read_pair(files: &TlsFiles) -> Result<(CertifiedKey, f64), TlsError> {
    let read = |var, path: &Path| {
        let path = path.display().to_string();
        move |source| TlsError::Read { var, path, source }
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(read("EDGE_TLS_CERT_FILE", &files.cert))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate(files.cert.display().to_string()));
    };
    let expiry = x509_cert::Certificate::from_der(leaf)
        .map_err(|e| TlsError::Expiry(e.to_string()))?
        .tbs_certificate
        .validity
        .not_after
        .to_unix_duration()
        .as_secs_f64();
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(read("EDGE_TLS_KEY_FILE", &files.key))?;
    let certified =
        CertifiedKey::from_der(chain, key, &common::db::tls::provider()).map_err(TlsError::Pair)?;
    Ok((certified, expiry))
}
