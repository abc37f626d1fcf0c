//! The operator's PKI: a CA and per-component certificates, as files in one directory.
//!
//! ```text
//! DIR/ca.crt              the CA certificate (give it to every part)
//! DIR/ca.key              the CA key (0600; keep it off the edge servers)
//! DIR/<stem>.crt, .key    one per identity: host-mec1, control, ran, operator (key 0600)
//! ```
//! Each certificate carries its [`Identity`] as a URI SAN and the addresses or DNS names it is
//! reached at (checked by the clients), and serves for both ends of mutual TLS.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::{Identity, TlsError};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";

/// A name a certificate's holder is reached at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Ip(IpAddr),
    Dns(String),
}

impl std::str::FromStr for San {
    type Err = TlsError;

    /// An IP address, else a DNS name.
    fn from_str(s: &str) -> Result<San, TlsError> {
        if let Ok(ip) = s.parse() {
            return Ok(San::Ip(ip));
        }
        let valid = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if valid {
            Ok(San::Dns(s.to_ascii_lowercase()))
        } else {
            Err(TlsError::Certificate(format!(
                "'{s}' is neither an IP address nor a DNS name"
            )))
        }
    }
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (clocks of edge servers drift) for `days` days.
    pub fn days(days: u32) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days.into()),
        }
    }
}

/// An issued certificate's files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub identity: Identity,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA, loaded from its directory.
pub struct Pki {
    dir: PathBuf,
    cert: Certificate,
    key: KeyPair,
}

fn rcgen_err(e: rcgen::Error) -> TlsError {
    TlsError::Certificate(e.to_string())
}

/// Writes `data` to `path` with `mode`, replacing it only once the new file is complete.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(TlsError::io("create", &tmp))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(TlsError::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(TlsError::io("rename to", path))
}

impl Pki {
    /// Makes a new CA in `dir` (created if needed); refuses to replace one.
    pub fn init(dir: &Path, name: &str, validity: Validity) -> Result<Pki, TlsError> {
        std::fs::create_dir_all(dir).map_err(TlsError::io("create", dir))?;
        if dir.join(CA_KEY).exists() || dir.join(CA_CERT).exists() {
            return Err(TlsError::CaExists(dir.to_path_buf()));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let key = KeyPair::generate().map_err(rcgen_err)?;
        let cert = params.self_signed(&key).map_err(rcgen_err)?;
        write_file(&dir.join(CA_KEY), key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&dir.join(CA_CERT), cert.pem().as_bytes(), 0o644)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            cert,
            key,
        })
    }

    /// Loads the CA of `dir`.
    pub fn open(dir: &Path) -> Result<Pki, TlsError> {
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        if !key_path.exists() {
            return Err(TlsError::NoCa(dir.to_path_buf()));
        }
        let read = |p: &Path| std::fs::read_to_string(p).map_err(TlsError::io("read", p));
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| TlsError::Pem {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        let params =
            CertificateParams::from_ca_cert_pem(&read(&cert_path)?).map_err(|e| TlsError::Pem {
                path: cert_path.clone(),
                reason: e.to_string(),
            })?;
        // rcgen signs with a Certificate: the same subject and key as the file's, so what it
        // signs chains to the CA certificate on disk.
        let cert = params.self_signed(&key).map_err(rcgen_err)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            cert,
            key,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Issues (or re-issues, for rotation) the certificate of `identity`, reachable at `sans`.
    pub fn issue(
        &self,
        identity: &Identity,
        sans: &[San],
        validity: Validity,
    ) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, identity.to_string());
        let uri = identity.uri().try_into().map_err(rcgen_err)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        for san in sans {
            params.subject_alt_names.push(match san {
                San::Ip(ip) => SanType::IpAddress(*ip),
                San::Dns(name) => SanType::DnsName(name.clone().try_into().map_err(rcgen_err)?),
            });
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let key = KeyPair::generate().map_err(rcgen_err)?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(rcgen_err)?;
        let stem = identity.file_stem();
        let issued = Issued {
            identity: identity.clone(),
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
        };
        write_file(&issued.key, key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&issued.cert, cert.pem().as_bytes(), 0o644)?;
        Ok(issued)
    }
}
