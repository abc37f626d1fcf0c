//! rustls configurations for mutual TLS: both ends present a certificate of the operator's CA
//! and verify the other's; the server side then reads the caller's [`Identity`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::pki::CA_CERT;
use crate::{Identity, TlsError};

/// The files one part of ferry needs for mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The operator's CA certificate: peers must chain to it.
    pub ca: PathBuf,
    /// This part's certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `ferry pki` writes for `identity` in `dir`.
    pub fn in_dir(dir: &Path, identity: &Identity) -> TlsFiles {
        let stem = identity.file_stem();
        TlsFiles {
            ca: dir.join(CA_CERT),
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    /// The identity this part's own certificate names (a daemon checks it is who it claims).
    pub fn identity(&self) -> Result<Identity, TlsError> {
        let chain = load_certs(&self.cert)?;
        peer_identity(&chain[0])
    }
}

/// TLS 1.3 only: every part is ferry's own, nothing old to talk to.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_err(path: &Path) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Pem {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err(path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(path))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(pem_err(path))
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: ca.to_path_buf(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// A server that requires a client certificate of the CA.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    server(files, false)
}

/// A server where a client certificate of the CA is optional: the MEC APIs, which ferry's own
/// parts call with their certificate and applications call with an OAuth 2.0 bearer token.
/// A certificate that is presented must still chain to the CA and name an identity.
pub fn server_config_optional_client(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    server(files, true)
}

fn server(files: &TlsFiles, optional_client: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let mut verifier = WebPkiClientVerifier::builder_with_provider(roots(&files.ca)?, provider());
    if optional_client {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier
        .build()
        .map_err(|e| TlsError::Certificate(format!("client verifier: {e}")))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&files.cert)?, load_key(&files.key)?)?;
    Ok(Arc::new(config))
}

/// A client that authenticates the server only (an application's, which holds a token and no
/// certificate).
pub fn client_config_server_auth(ca: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Checks that `cert` (DER) was issued by the CA in `ca` and is valid now, and returns the
/// identity it names: how a verifier trusts the certificate a signed token carries (`x5c`).
pub struct CertVerifier {
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl CertVerifier {
    pub fn new(ca: &Path) -> Result<CertVerifier, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
            .build()
            .map_err(|e| TlsError::Certificate(format!("certificate verifier: {e}")))?;
        Ok(CertVerifier { verifier })
    }

    pub fn verify(&self, cert: &[u8]) -> Result<Identity, TlsError> {
        let der = CertificateDer::from(cert.to_vec());
        let now = rustls_pki_types::UnixTime::now();
        self.verifier
            .verify_client_cert(&der, &[], now)
            .map_err(|e| TlsError::Certificate(format!("certificate refused: {e}")))?;
        peer_identity(&der)
    }
}

/// The PEM text of the CA certificate(s) in `ca`, for parts that are told it rather than
/// given the file (an application's environment).
pub fn ca_pem(ca: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(ca).map_err(TlsError::io("cannot read", ca))
}

/// A client that presents its certificate and accepts only servers of the CA.
pub fn client_config(files: &TlsFiles) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(&files.ca)?)
        .with_client_auth_cert(load_certs(&files.cert)?, load_key(&files.key)?)?;
    Ok(Arc::new(config))
}

/// The identity a (verified) peer certificate names in its URI SAN.
pub fn peer_identity(cert: &CertificateDer<'_>) -> Result<Identity, TlsError> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref())
        .map_err(|e| TlsError::Certificate(format!("unparsable peer certificate: {e}")))?;
    let san = parsed
        .subject_alternative_name()
        .map_err(|e| TlsError::Certificate(format!("bad SAN extension: {e}")))?
        .ok_or(TlsError::NoIdentity)?;
    let mut found = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(uri) => Identity::from_uri(uri),
        _ => None,
    });
    match (found.next(), found.next()) {
        (Some(id), None) => id,
        // Two identities in one certificate would let it act as either.
        (Some(_), Some(_)) => Err(TlsError::Certificate(
            "the certificate names more than one ferry identity".into(),
        )),
        (None, _) => Err(TlsError::NoIdentity),
    }
}
