//! ferry's operator PKI and mutual TLS between its parts.
//!
//! - [`Identity`]: what a certificate says its holder is (`host:mec1`, `control`, `ran`,
//!   `operator`), carried as a URI SAN `urn:ferry:identity:<identity>`, so authorization is by
//!   identity and never by "has a certificate of the CA".
//! - [`pki`]: `ferry pki init` / `issue`: a CA and per-component certificates (keys 0600).
//! - [`config`]: rustls server and client configurations that require and verify each other's
//!   certificates against the operator's CA, and [`config::peer_identity`] to read who called.

pub mod config;
pub mod identity;
pub mod listener;
pub mod pki;

pub use config::{
    ca_pem, client_config, client_config_server_auth, peer_identity, server_config,
    server_config_optional_client, CertVerifier, TlsFiles,
};
pub use identity::Identity;
pub use listener::{MtlsListener, Peer};
pub use pki::{Pki, San, Validity};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{0}")]
    Certificate(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the certificate names no ferry identity (a URI SAN urn:ferry:identity:...)")]
    NoIdentity,
    #[error("invalid identity '{0}': use host:NAME, control, ran or operator")]
    BadIdentity(String),
    #[error("{} already holds a CA; remove the directory to start over (every certificate it issued then stops working)", .0.display())]
    CaExists(PathBuf),
    #[error("no CA in {}: run `ferry pki init --dir {}` first", .0.display(), .0.display())]
    NoCa(PathBuf),
}

impl TlsError {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> TlsError {
        let path = path.into();
        move |source| TlsError::Io {
            context,
            path,
            source,
        }
    }
}
