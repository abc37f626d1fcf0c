//! The JSON documents of OCI image layouts and docker-archives (only the fields ferry reads or
//! writes), media types, and sha256 digest helpers.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ImageConfig, ImageError};

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker's manifest list (what `docker save` may put in index.json for multi-platform images).
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The annotation OCI layouts use to name an image in index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `oci-layout`
#[derive(Serialize, Deserialize, Debug)]
pub struct OciLayout {
    #[serde(rename = "imageLayoutVersion")]
    pub image_layout_version: String,
}

/// A content descriptor (OCI image spec, descriptor.md).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<Platform>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

/// `index.json`, or an image index blob.
#[derive(Serialize, Deserialize, Debug)]
pub struct Index {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Serialize, Deserialize, Debug)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An image configuration (OCI image spec config.md; docker's is the same for these fields).
#[derive(Serialize, Deserialize, Debug, Default)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct ContainerConfig {
    #[serde(rename = "User", default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(
        rename = "Entrypoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "WorkingDir",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub working_dir: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Default)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

/// One entry of a docker-archive's `manifest.json`.
#[derive(Deserialize, Debug)]
pub struct DockerEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
}

impl ContainerConfig {
    /// The fields a container needs; empty strings count as unset.
    pub fn to_image_config(&self) -> ImageConfig {
        ImageConfig {
            entrypoint: self.entrypoint.clone().unwrap_or_default(),
            cmd: self.cmd.clone().unwrap_or_default(),
            env: self.env.clone().unwrap_or_default(),
            working_dir: self.working_dir.clone().filter(|s| !s.is_empty()),
            user: self.user.clone().filter(|s| !s.is_empty()),
        }
    }

    pub fn from_image_config(c: &ImageConfig) -> ContainerConfig {
        let some = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        ContainerConfig {
            user: c.user.clone(),
            env: some(&c.env),
            entrypoint: some(&c.entrypoint),
            cmd: some(&c.cmd),
            working_dir: c.working_dir.clone(),
        }
    }
}

/// Returns the hex part of a `sha256:<64 lowercase hex>` digest; anything else is Malformed
/// (the hex becomes a file name in the store, so it must be exactly this).
pub fn digest_hex<'a>(digest: &'a str, what: &str) -> Result<&'a str, ImageError> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| {
        ImageError::Malformed(format!(
            "{what}: unsupported digest '{digest}' (only sha256 is)"
        ))
    })?;
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex)
    } else {
        Err(ImageError::Malformed(format!(
            "{what}: invalid digest '{digest}'"
        )))
    }
}

/// `sha256:<hex>` of a byte string.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Parses a JSON document of at most [`super::MAX_JSON_BYTES`] bytes, naming `what` on error.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, ImageError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ImageError::Malformed(format!("{what}: invalid JSON: {e}")))
}

/// A reader that hashes (sha256) and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// (`sha256:<hex>`, bytes read)
    pub fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.bytes,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The compression of a stream, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// The OCI architecture name of this machine (`GOARCH` spelling).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        let good = sha256_digest(b"x");
        assert_eq!(digest_hex(&good, "t").unwrap(), &good[7..]);
        for bad in [
            "sha512:00",
            "sha256:../../etc/passwd",
            "sha256:ABC",
            "",
            &good.to_uppercase(),
        ] {
            assert!(
                matches!(digest_hex(bad, "t"), Err(ImageError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(sniff(b"bin/"), Compression::None);
        assert_eq!(sniff(&[]), Compression::None);
    }
}
