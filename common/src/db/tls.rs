//! TLS to Postgres as `sslmode` says, with rustls (never OpenSSL): one connector for every
//! connection the binaries make (the edge's pools, `edge migrate`, the reconciler, `inspect`), and
//! the words that name why a TLS connection failed (unknown CA, host name mismatch, expired
//! certificate, a server without TLS).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::pgurl::{RootCerts, SslMode, TlsParams};

/// Why the TLS settings cannot be used (a file, a certificate, a key).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("sslrootcert {0} holds no certificate")]
    NoRoots(String),
    #[error("the system's CA store is empty or unreadable")]
    NoSystemRoots,
    #[error("the TLS settings were refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto every TLS config of the binaries uses (the one reqwest uses too).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The connector for `params`: what it checks of the server's certificate follows `sslmode`
/// (nothing under `prefer` and `require` without `sslrootcert`, as libpq; the CA under
/// `verify-ca`, or `require` with `sslrootcert`; the CA and the host name under `verify-full`).
pub fn connector(params: &TlsParams) -> Result<MakeRustlsConnect, TlsSetupError> {
    let provider = provider();
    let roots = match &params.root {
        Some(root) => Some(Arc::new(root_store(root)?)),
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (params.mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => {
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))?
        }
        (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Arc::new(AnyHostName(
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| TlsSetupError::Rustls(rustls::Error::General(e.to_string())))?,
        )),
        _ => Arc::new(Unchecked(provider.clone())),
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &params.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|source| TlsSetupError::Read {
                    what: "sslcert",
                    path: cert.display().to_string(),
                    source,
                })?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsSetupError::Read {
                what: "sslkey",
                path: key.display().to_string(),
                source,
            })?;
            builder.with_client_auth_cert(certs, key)?
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(root: &RootCerts) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    match root {
        RootCerts::File(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|source| TlsSetupError::Read {
                    what: "sslrootcert",
                    path: path.display().to_string(),
                    source,
                })?;
            store.add_parsable_certificates(certs);
            if store.is_empty() {
                return Err(TlsSetupError::NoRoots(path.display().to_string()));
            }
        }
        RootCerts::System => {
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if store.is_empty() {
                return Err(TlsSetupError::NoSystemRoots);
            }
        }
    }
    Ok(store)
}

/// What a TLS failure to connect means, in an operator's words; `None` when the failure is not
/// TLS's.
pub fn cause(error: &(dyn std::error::Error + 'static), params: &TlsParams) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(tls) = rustls_error(e) {
            return Some(explain(tls, params));
        }
        if e.to_string().contains("server does not support TLS") {
            return Some(format!(
                "the server does not accept TLS, and sslmode={} requires it (the server's ssl \
                 setting is off, or a pooler in front of it does not speak TLS)",
                params.mode
            ));
        }
        next = e.source();
    }
    None
}

fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    e.downcast_ref::<rustls::Error>().or_else(|| {
        e.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    })
}

fn explain(e: &rustls::Error, params: &TlsParams) -> String {
    let root = match &params.root {
        Some(RootCerts::File(path)) => format!("sslrootcert {}", path.display()),
        Some(RootCerts::System) => "the system's CAs".to_owned(),
        None => "sslrootcert".to_owned(),
    };
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                format!("unknown CA: the server's certificate is not signed by a CA of {root}")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "host name mismatch: the server's certificate is not issued for the host \
                     DATABASE_URL names (sslmode={}); connect by the name on the certificate",
                    params.mode
                )
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "expired certificate: the server's certificate is past its end date".to_owned()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check the clocks)".to_owned()
            }
            other => format!("the server's certificate was refused: {other:?}"),
        },
        other => format!("TLS failed: {other}"),
    }
}

/// `prefer` and `require` without `sslrootcert`, as libpq: encrypted, the certificate unchecked.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain to a CA of `sslrootcert`, whatever host name the certificate names.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
