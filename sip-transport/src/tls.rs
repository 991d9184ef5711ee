//! TLS configuration (RFC 3261 §26.2, RFC 5630): a server from PEM certificate and key,
//! optionally requiring client certificates; a client with its root store, SNI and an optional
//! client certificate. rustls with the `ring` provider.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::TlsConfigError;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsConfigError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate);
    }
    Ok(certs)
}

fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsConfigError::NoPrivateKey,
        e => TlsConfigError::Pem(e.to_string()),
    })
}

fn roots(pem: &[u8]) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    for c in certs(pem)? {
        store.add(c)?;
    }
    Ok(store)
}

/// The server side of TLS listeners.
///
/// ```no_run
/// # fn demo(cert: &[u8], key: &[u8]) -> Result<(), sip_transport::TlsConfigError> {
/// let tls = sip_transport::TlsServerConfig::from_pem(cert, key)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsServerConfig {
    pub(crate) inner: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerConfig").finish_non_exhaustive()
    }
}

impl TlsServerConfig {
    /// A server presenting `cert_chain_pem` (leaf first) with the key in `key_pem` (PKCS#8,
    /// PKCS#1 or SEC1), not asking for client certificates.
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsConfigError> {
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs(cert_chain_pem)?, key(key_pem)?)?;
        Ok(TlsServerConfig {
            inner: Arc::new(cfg),
        })
    }

    /// Mutual TLS: as [`TlsServerConfig::from_pem`], and every client must present a
    /// certificate issued by one of the CAs in `client_ca_pem`.
    pub fn from_pem_with_client_auth(
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: &[u8],
    ) -> Result<Self, TlsConfigError> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots(client_ca_pem)?),
            provider(),
        )
        .build()
        .map_err(|e| TlsConfigError::Verifier(e.to_string()))?;
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs(cert_chain_pem)?, key(key_pem)?)?;
        Ok(TlsServerConfig {
            inner: Arc::new(cfg),
        })
    }

    /// A server from a rustls configuration built by the caller.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        TlsServerConfig { inner: config }
    }
}

/// The client side: connections we open to TLS targets. The server name verified (and sent
/// as SNI) is [`sip_core::Target::server_name`], or the target's IP address.
#[derive(Clone)]
pub struct TlsClientConfig {
    pub(crate) inner: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClientConfig").finish_non_exhaustive()
    }
}

impl TlsClientConfig {
    /// A client trusting the CAs in `roots_pem`, without a client certificate.
    pub fn from_pem_roots(roots_pem: &[u8]) -> Result<Self, TlsConfigError> {
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(roots_pem)?)
            .with_no_client_auth();
        Ok(TlsClientConfig {
            inner: Arc::new(cfg),
        })
    }

    /// A client trusting the CAs in `roots_pem` and presenting a certificate (mutual TLS).
    pub fn from_pem_with_client_cert(
        roots_pem: &[u8],
        cert_chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, TlsConfigError> {
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots(roots_pem)?)
            .with_client_auth_cert(certs(cert_chain_pem)?, key(key_pem)?)?;
        Ok(TlsClientConfig {
            inner: Arc::new(cfg),
        })
    }

    /// A client from a rustls configuration built by the caller (e.g. with the platform's
    /// root store).
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> Self {
        TlsClientConfig { inner: config }
    }
}
