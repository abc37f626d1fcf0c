//! App images of one MEC host: import OCI image layouts and docker-archive tarballs into a
//! content-addressed store, with every layer unpacked (whiteouts included) for overlayfs.
//!
//! - [`store`]: [`ImageStore`], the on-disk store (`layers/<hex>/`, `images/<name>.json`, `staging/`).
//! - `archive`: reads an archive stream, spools its files and finds the image in it (OCI or docker).
//! - `format`: the JSON documents of both formats and digest helpers.
//! - `unpack`: safe unpacking of one layer tar (no path escapes, no symlink following, whiteouts).
//! - `fsops`: directory-relative file operations (`openat` and friends) that never follow symlinks.
//! - [`pack`]: [`pack_oci_archive`], a deterministic one-layer OCI archive from files on disk.
//!
//! The host daemon runs as root and archives arrive over the network, so everything read from
//! an archive is validated and a failed import leaves nothing behind.

mod archive;
mod format;
mod fsops;
pub mod limit;
pub mod pack;
pub mod store;
mod unpack;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use limit::ImageLimits;
pub use pack::{pack_oci_archive, PackFile};
pub use store::ImageStore;

/// JSON documents (index, manifests, configs) larger than this are refused before being read,
/// so a bad request cannot make the daemon allocate without bound.
pub const MAX_JSON_BYTES: u64 = 16 * 1024 * 1024;

/// One imported image, as stored in `images/<name>.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The name it was imported under (`[a-z0-9][a-z0-9._-]*` with an optional `:tag`).
    pub name: String,
    /// Digest of the image manifest (`sha256:<hex>`). For a docker-archive, the digest of the
    /// OCI manifest ferry derives from it (config digest + layer blobs as found in the archive).
    pub digest: String,
    /// Layer digests, bottom layer first. These are the digests of the *uncompressed* layer
    /// tars (the config's `rootfs.diff_ids`), so a layer is shared whether it came gzip-compressed
    /// or plain, from an OCI layout or a docker-archive.
    pub layers: Vec<String>,
    /// What the container runs by default.
    pub config: ImageConfig,
    /// Total size of the layer blobs as they were in the archive.
    pub size_bytes: u64,
    /// When the image was imported (RFC 3339, UTC).
    pub imported_at: String,
}

/// The part of an image's configuration a container needs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

#[derive(thiserror::Error, Debug)]
pub enum ImageError {
    #[error("image '{0}' not found")]
    NotFound(String),
    #[error(
        "image '{0}' already exists with different content (import with replace to overwrite)"
    )]
    AlreadyExists(String),
    #[error("invalid image name '{0}': use [a-z0-9][a-z0-9._-]{{0,127}} with an optional ':tag'")]
    InvalidName(String),
    /// The archive is not an image ferry accepts; the message names the offending entry.
    #[error("malformed image archive: {0}")]
    Malformed(String),
    /// Past one of the host's [`ImageLimits`]; the message names the limit and its flag.
    #[error("image archive too large: {0}")]
    TooLarge(String),
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ImageError {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io {
            context,
            path,
            source,
        }
    }
}

/// Checks an image name: `[a-z0-9][a-z0-9._-]{0,127}`, optionally followed by `:tag` with
/// `tag` = `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}` (the docker tag grammar). The name becomes a
/// file name in the store, so nothing else (no `/`, no leading `.`) is allowed.
pub fn validate_name(name: &str) -> Result<(), ImageError> {
    let invalid = || ImageError::InvalidName(name.to_string());
    let (repo, tag) = match name.split_once(':') {
        Some((repo, tag)) => (repo, Some(tag)),
        None => (name, None),
    };
    let repo_ok = (1..=128).contains(&repo.len())
        && repo.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        });
    let tag_ok = tag.is_none_or(|tag| {
        (1..=128).contains(&tag.len())
            && tag.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && matches!(b, b'.' | b'-'))
            })
    });
    if repo_ok && tag_ok {
        Ok(())
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "counter",
            "ferry-counter:latest",
            "a",
            "a.b_c-d:v1.2",
            "x:Tag_1",
        ] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            "Counter",
            "-x",
            ".x",
            "a/b",
            "../x",
            "a:",
            "a:-x",
            "a:b:c",
            "a b",
            long.as_str(),
        ] {
            assert!(
                matches!(validate_name(bad), Err(ImageError::InvalidName(_))),
                "{bad}"
            );
        }
    }
}
