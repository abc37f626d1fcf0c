//! Reads an image archive stream (tar, optionally gzip-compressed as a whole), spools its files
//! into a staging directory, and finds the one image in it: an OCI image layout (`oci-layout`,
//! `index.json`, `blobs/sha256/..`) or a docker-archive (`manifest.json`, config, layer tars).
//!
//! Files are spooled under numbered names, never under their archive paths, so nothing in the
//! outer archive decides where anything is written. Every blob is checked against its digest.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::format::{
    digest_hex, host_arch, parse_json, sha256_digest, sniff, Compression, ConfigFile, Descriptor,
    DockerEntry, HashingReader, Index, Manifest, OciLayout, ANNOTATION_REF_NAME, MEDIA_CONFIG,
    MEDIA_DOCKER_LIST, MEDIA_INDEX, MEDIA_LAYER_GZIP, MEDIA_LAYER_TAR, MEDIA_MANIFEST,
};
use super::limit::{too_large, Counted, Meter, Over};
use super::unpack::clean_path;
use super::{ImageConfig, ImageError, ImageLimits, MAX_JSON_BYTES};

/// A file of the outer archive, spooled to disk.
#[derive(Debug, Clone)]
struct Spooled {
    file: PathBuf,
    digest: String,
    size: u64,
}

/// The files of an archive, by their (cleaned) archive path.
#[derive(Debug, Default)]
pub struct Spool {
    files: HashMap<String, Spooled>,
    /// Symlinks and hardlinks of the outer archive (older `docker save` links shared layers).
    links: HashMap<String, String>,
    /// `dir/` when the whole layout sits in one top-level directory (`tar cf x.tar dir/`).
    prefix: String,
}

/// One layer of the image found in an archive, ready to unpack.
#[derive(Debug, Clone)]
pub struct LayerSource {
    /// The spooled blob.
    pub blob: PathBuf,
    /// The blob's size in the archive.
    pub size: u64,
    /// The expected digest of the uncompressed tar (from the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

/// The image an archive holds, its blobs verified (layers are verified again when unpacked).
#[derive(Debug)]
pub struct Found {
    pub digest: String,
    pub config: ImageConfig,
    pub layers: Vec<LayerSource>,
}

fn malformed(msg: impl Into<String>) -> ImageError {
    ImageError::Malformed(msg.into())
}

/// Reads the archive stream `input` into `dir` (an empty staging directory), at most
/// `limits.archive_bytes` of it.
pub fn spool(input: impl Read, dir: &Path, limits: &ImageLimits) -> Result<Spool, ImageError> {
    // Sniff the first bytes for gzip without needing a seekable stream.
    let mut input = input;
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(malformed(format!("archive: read failed: {e}"))),
        }
    }
    if got == 0 {
        return Err(malformed(
            "archive: empty request body (send a tar or tar.gz image archive)",
        ));
    }
    let chained = std::io::Cursor::new(head[..got].to_vec()).chain(input);
    let (mut stream, meter) = match sniff(&head[..got]) {
        Compression::None => Meter::new(
            Box::new(chained) as Box<dyn Read>,
            limits.archive_bytes,
            None,
        ),
        // Multi-member gzip (pigz, estargz) is valid gzip: read every member.
        Compression::Gzip => {
            let (counted, count) = Counted::new(chained);
            Meter::new(
                Box::new(flate2::read::MultiGzDecoder::new(counted)) as Box<dyn Read>,
                limits.archive_bytes,
                Some((count, limits.gzip_ratio)),
            )
        }
        Compression::Zstd => {
            return Err(malformed(
                "archive: zstd-compressed archives are not supported (use tar or tar.gz)",
            ))
        }
    };

    let spooled = spool_entries(&mut stream, dir, limits.entries);
    // A limit makes the tar crate see a failed read: report the limit, not "truncated".
    if let Some(over) = meter.over() {
        return Err(too_large("archive", over, "--max-archive-mib"));
    }
    spooled
}

fn spool_entries(
    stream: &mut impl Read,
    dir: &Path,
    max_entries: u64,
) -> Result<Spool, ImageError> {
    let mut spool = Spool::default();
    {
        let mut archive = tar::Archive::new(&mut *stream);
        let entries = archive
            .entries()
            .map_err(|e| malformed(format!("archive: not a tar archive: {e}")))?;
        for (n, entry) in entries.enumerate() {
            if n as u64 >= max_entries {
                return Err(too_large("archive", Over::Entries(max_entries), ""));
            }
            let mut entry = entry
                .map_err(|e| malformed(format!("archive: corrupt or truncated tar/gzip: {e}")))?;
            let raw = entry
                .path()
                .map_err(|e| malformed(format!("archive: entry with an unreadable path: {e}")))?
                .into_owned();
            let key = archive_key(&raw)?;
            match entry.header().entry_type() {
                EntryType::Directory | EntryType::XGlobalHeader => {}
                EntryType::Regular | EntryType::Continuous => {
                    let file = dir.join(format!("{n}"));
                    let (digest, size) = spool_file(&mut entry, &file, &key)?;
                    spool.files.insert(key, Spooled { file, digest, size });
                }
                kind @ (EntryType::Symlink | EntryType::Link) => {
                    let target =
                        entry.link_name().ok().flatten().ok_or_else(|| {
                            malformed(format!("archive: link '{key}' has no target"))
                        })?;
                    // Symlink targets are relative to the link's directory, hardlink targets to the archive root.
                    let base = match kind {
                        EntryType::Symlink => Path::new(&key)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(&target),
                        _ => target.into_owned(),
                    };
                    let resolved = resolve_lexically(&base).ok_or_else(|| {
                        malformed(format!("archive: link '{key}' points outside the archive"))
                    })?;
                    spool.links.insert(key, resolved);
                }
                other => {
                    return Err(malformed(format!(
                        "archive: entry '{key}' has unsupported type {other:?}"
                    )))
                }
            }
        }
    }
    spool.prefix = spool.layout_prefix();
    // The gzip trailer (CRC, length) is only checked once it is read.
    std::io::copy(stream, &mut std::io::sink())
        .map_err(|e| malformed(format!("archive: corrupt or truncated tar/gzip: {e}")))?;
    Ok(spool)
}

/// The cleaned path of an outer archive entry, `/`-separated.
fn archive_key(raw: &Path) -> Result<String, ImageError> {
    let comps = clean_path(raw, "archive")?;
    let parts: Vec<String> = comps
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    Ok(parts.join("/"))
}

/// Resolves `.` and `..` without touching the disk; None if it climbs above the root.
fn resolve_lexically(path: &Path) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n.to_string_lossy().into_owned()),
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop()?;
            }
            _ => return None,
        }
    }
    Some(out.join("/"))
}

fn spool_file(entry: &mut impl Read, file: &Path, key: &str) -> Result<(String, u64), ImageError> {
    let mut out = std::fs::File::create(file).map_err(ImageError::io("create spool file", file))?;
    let mut hashing = HashingReader::new(entry);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match hashing.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(malformed(format!(
                    "archive: entry '{key}': corrupt or truncated: {e}"
                )))
            }
        };
        std::io::Write::write_all(&mut out, &buf[..n])
            .map_err(ImageError::io("write spool file", file))?;
    }
    Ok(hashing.finish())
}

impl Spool {
    fn lookup(&self, key: &str) -> Option<&Spooled> {
        let mut key = format!("{}{key}", self.prefix);
        // Links may chain; a few hops are plenty, and a loop must not hang the import.
        for _ in 0..8 {
            if let Some(f) = self.files.get(&key) {
                return Some(f);
            }
            key = self.links.get(&key)?.clone();
        }
        None
    }

    /// Where the layout starts: the archive root, or its single top-level directory if the
    /// root has no index.json / manifest.json but that directory does.
    fn layout_prefix(&self) -> String {
        let is_top = |k: &str| k == "index.json" || k == "manifest.json";
        let keys = || self.files.keys().chain(self.links.keys());
        if keys().any(|k| is_top(k)) {
            return String::new();
        }
        let mut dirs: Vec<&str> = keys()
            .filter_map(|k| k.split_once('/'))
            .filter(|(_, rest)| is_top(rest))
            .map(|(dir, _)| dir)
            .collect();
        dirs.sort_unstable();
        dirs.dedup();
        match dirs.as_slice() {
            [one] => format!("{one}/"),
            _ => String::new(),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.lookup(key).is_some()
    }

    /// Reads a (small) JSON file of the archive.
    fn json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T, ImageError> {
        let f = self
            .lookup(key)
            .ok_or_else(|| malformed(format!("archive: '{key}' is missing")))?;
        read_json(f, key)
    }

    /// A blob of an OCI layout, checked against its descriptor (digest and size).
    fn blob(&self, desc: &Descriptor, what: &str) -> Result<&Spooled, ImageError> {
        let hex = digest_hex(&desc.digest, what)?;
        let key = format!("blobs/sha256/{hex}");
        let f = self.lookup(&key).ok_or_else(|| {
            malformed(format!(
                "{what} {}: blob '{key}' is missing from the archive",
                desc.digest
            ))
        })?;
        check_digest(f, &desc.digest, &key)?;
        if f.size != desc.size {
            return Err(malformed(format!(
                "{what} {}: blob '{key}' is {} bytes, the descriptor says {}",
                desc.digest, f.size, desc.size
            )));
        }
        Ok(f)
    }

    /// Finds the image in the spooled archive. If it holds several, the one whose reference
    /// matches `name` (see [`reference_matches`]) is taken.
    pub fn find_image(&self, name: &str) -> Result<Found, ImageError> {
        if self.has("index.json") {
            self.find_oci(name)
        } else if self.has("manifest.json") {
            self.find_docker(name)
        } else {
            Err(malformed(
                "archive: neither an OCI image layout (index.json) nor a docker-archive (manifest.json)",
            ))
        }
    }

    fn find_oci(&self, name: &str) -> Result<Found, ImageError> {
        if self.has("oci-layout") {
            let layout: OciLayout = self.json("oci-layout")?;
            if !layout.image_layout_version.starts_with("1.") {
                return Err(malformed(format!(
                    "oci-layout: unsupported imageLayoutVersion '{}'",
                    layout.image_layout_version
                )));
            }
        }
        let index: Index = self.json("index.json")?;
        let mut candidates = Vec::new();
        self.collect_manifests(&index, 0, &mut candidates)?;
        // Several tags of one image are one image.
        let mut seen = std::collections::HashSet::new();
        candidates.retain(|d| seen.insert(d.digest.clone()));
        let named: Vec<&Descriptor> = candidates
            .iter()
            .filter(|d| {
                d.annotations
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_REF_NAME))
                    .is_some_and(|r| reference_matches(r, name))
            })
            .collect();
        let desc = match (candidates.as_slice(), named.as_slice()) {
            ([one], _) => one.clone(),
            (_, [one]) => (*one).clone(),
            ([], _) => {
                return Err(malformed(format!(
                    "index.json: no image manifest for linux/{}",
                    host_arch()
                )))
            }
            (many, _) => {
                return Err(malformed(format!(
                    "index.json: {} image manifests for linux/{} ({}) and none named '{name}'; import under the name of one (its org.opencontainers.image.ref.name)",
                    many.len(),
                    host_arch(),
                    many.iter()
                        .map(|d| d.digest.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        let manifest_blob = self.blob(&desc, "manifest")?;
        let manifest: Manifest = read_json(manifest_blob, &format!("manifest {}", desc.digest))?;
        if manifest.schema_version != 2 {
            return Err(malformed(format!(
                "manifest {}: schemaVersion {} (only 2 is supported)",
                desc.digest, manifest.schema_version
            )));
        }
        let config_blob = self.blob(&manifest.config, "config")?;
        let config: ConfigFile =
            read_json(config_blob, &format!("config {}", manifest.config.digest))?;
        let diff_ids = check_rootfs(&config, manifest.layers.len(), &manifest.config.digest)?;
        let mut layers = Vec::new();
        for (desc, diff_id) in manifest.layers.iter().zip(diff_ids) {
            if desc.media_type.contains("zstd") {
                return Err(malformed(format!(
                    "layer {}: media type {} is not supported (use gzip or uncompressed layers)",
                    desc.digest, desc.media_type
                )));
            }
            let blob = self.blob(desc, "layer")?;
            layers.push(LayerSource {
                blob: blob.file.clone(),
                size: blob.size,
                diff_id,
            });
        }
        Ok(Found {
            digest: desc.digest.clone(),
            config: config.config.unwrap_or_default().to_image_config(),
            layers,
        })
    }

    /// Collects the image manifests for this platform, descending into nested indexes.
    fn collect_manifests(
        &self,
        index: &Index,
        depth: usize,
        out: &mut Vec<Descriptor>,
    ) -> Result<(), ImageError> {
        for desc in &index.manifests {
            if let Some(p) = &desc.platform {
                // Attestation manifests (buildx) say unknown/unknown; other platforms are not ours.
                if p.os != "linux" || p.architecture != host_arch() {
                    continue;
                }
            }
            if desc.media_type == MEDIA_INDEX || desc.media_type == MEDIA_DOCKER_LIST {
                if depth >= 2 {
                    return Err(malformed("index.json: image indexes nested too deeply"));
                }
                let blob = self.blob(desc, "index")?;
                let nested: Index = read_json(blob, &format!("index {}", desc.digest))?;
                self.collect_manifests(&nested, depth + 1, out)?;
            } else {
                out.push(desc.clone());
            }
        }
        Ok(())
    }

    fn find_docker(&self, name: &str) -> Result<Found, ImageError> {
        let entries: Vec<DockerEntry> = self.json("manifest.json")?;
        let named: Vec<&DockerEntry> = entries
            .iter()
            .filter(|e| {
                e.repo_tags
                    .iter()
                    .flatten()
                    .any(|t| reference_matches(t, name))
            })
            .collect();
        let entry = match (entries.as_slice(), named.as_slice()) {
            ([one], _) => one,
            (_, [one]) => *one,
            _ => {
                return Err(malformed(format!(
                    "manifest.json: holds {} images and none tagged '{name}'; import under one of its RepoTags",
                    entries.len()
                )))
            }
        };
        let config_key = archive_key(Path::new(&entry.config))?;
        let config_file = self.lookup(&config_key).ok_or_else(|| {
            malformed(format!(
                "manifest.json: config '{}' is missing from the archive",
                entry.config
            ))
        })?;
        // docker names the config after its digest ("<hex>.json" or "blobs/sha256/<hex>").
        let stem = config_key
            .rsplit('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".json");
        if stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) {
            check_digest(config_file, &format!("sha256:{stem}"), &config_key)?;
        }
        let config: ConfigFile = read_json(config_file, &config_key)?;
        let diff_ids = check_rootfs(&config, entry.layers.len(), &config_file.digest)?;
        let mut layers = Vec::new();
        let mut manifest_layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
            let key = archive_key(Path::new(path))?;
            let f = self.lookup(&key).ok_or_else(|| {
                malformed(format!(
                    "manifest.json: layer '{path}' is missing from the archive"
                ))
            })?;
            let media_type = match sniff(&read_head(&f.file)?) {
                Compression::Gzip => MEDIA_LAYER_GZIP,
                _ => MEDIA_LAYER_TAR,
            };
            manifest_layers.push(Descriptor {
                media_type: media_type.into(),
                digest: f.digest.clone(),
                size: f.size,
                platform: None,
                annotations: None,
            });
            layers.push(LayerSource {
                blob: f.file.clone(),
                size: f.size,
                diff_id,
            });
        }
        // docker-archives carry no OCI manifest; derive the one skopeo would write, so the
        // same archive always gets the same digest.
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_MANIFEST.into()),
            config: Descriptor {
                media_type: MEDIA_CONFIG.into(),
                digest: config_file.digest.clone(),
                size: config_file.size,
                platform: None,
                annotations: None,
            },
            layers: manifest_layers,
        };
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| malformed(format!("manifest.json: {e}")))?;
        Ok(Found {
            digest: sha256_digest(&bytes),
            config: config.config.unwrap_or_default().to_image_config(),
            layers,
        })
    }
}

/// Whether a reference found in an archive (`latest`, `app:1`, `docker.io/library/app:1`)
/// names the image being imported as `name` (`app:1`): equal, equal to its tag, or equal after
/// dropping a registry/repository prefix.
fn reference_matches(reference: &str, name: &str) -> bool {
    let tag = name.split_once(':').map(|(_, t)| t);
    reference == name || Some(reference) == tag || reference.rsplit('/').next() == Some(name)
}

/// The config's diff_ids, checked to match the layer count and to be valid digests.
fn check_rootfs(config: &ConfigFile, layers: usize, what: &str) -> Result<Vec<String>, ImageError> {
    let ids = &config.rootfs.diff_ids;
    if ids.len() != layers {
        return Err(malformed(format!(
            "config {what}: rootfs lists {} diff_ids for {layers} layers",
            ids.len()
        )));
    }
    if layers == 0 {
        return Err(malformed(format!("config {what}: the image has no layers")));
    }
    for id in ids {
        digest_hex(id, &format!("config {what} diff_id"))?;
    }
    Ok(ids.clone())
}

fn check_digest(f: &Spooled, expected: &str, key: &str) -> Result<(), ImageError> {
    if f.digest == expected {
        Ok(())
    } else {
        Err(malformed(format!(
            "'{key}': content has digest {}, expected {expected} (corrupt or tampered)",
            f.digest
        )))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(f: &Spooled, what: &str) -> Result<T, ImageError> {
    if f.size > MAX_JSON_BYTES {
        return Err(malformed(format!(
            "{what}: {} bytes of JSON, over the {} MiB limit",
            f.size,
            MAX_JSON_BYTES / (1024 * 1024)
        )));
    }
    let bytes = std::fs::read(&f.file).map_err(ImageError::io("read spool file", &f.file))?;
    parse_json(&bytes, what)
}

fn read_head(path: &Path) -> Result<Vec<u8>, ImageError> {
    let mut head = Vec::with_capacity(4);
    std::fs::File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut head))
        .map_err(ImageError::io("read spool file", path))?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert!(reference_matches("app:1", "app:1"));
        assert!(reference_matches("1", "app:1"));
        assert!(reference_matches("docker.io/library/app:1", "app:1"));
        assert!(!reference_matches("app:2", "app:1"));
        assert!(!reference_matches("latest", "app"));
    }

    #[test]
    fn lexical_resolution() {
        assert_eq!(
            resolve_lexically(Path::new("a/../b/c")).as_deref(),
            Some("b/c")
        );
        assert_eq!(resolve_lexically(Path::new("../x")), None);
        assert_eq!(resolve_lexically(Path::new("/x")), None);
    }

    #[test]
    fn empty_body_is_malformed() {
        let tmp = tempfile::tempdir().unwrap();
        let err = spool(std::io::empty(), tmp.path(), &ImageLimits::default()).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
