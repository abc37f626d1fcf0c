//! The stream that carries a container's CRIU images (all but the memory pages, which go
//! through the page server) and its writable layer from source to target, as one tar,
//! gzip-compressed (fast level: the non-lazy pages of a post-copy dump shrink severalfold,
//! so the stream crosses the link in fewer of TCP's round trips):
//!
//! ```text
//! MANIFEST.json        every entry below with kind, size and sha256, plus the page bytes
//! images/<file>        CRIU image files
//! upper/<path>         the overlay upper dir: files, dirs, symlinks, whiteouts (0:0 devices)
//! ```
//! The target writes each entry as it arrives, hashing it, and accepts the stream only when
//! every entry matches the manifest and nothing is missing or extra. It never follows a
//! symlink while writing, and refuses paths that leave the two directories.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::MigrationError;

const MANIFEST: &str = "MANIFEST.json";
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// overlayfs whiteout: a 0:0 character device.
    Whiteout,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: Kind,
    pub size: u64,
    pub mode: u32,
    /// sha256 of a file's bytes, or of a symlink's target.
    pub sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Keyed by stream path (`images/...`, `upper/...`).
    pub entries: BTreeMap<String, Entry>,
    /// Bytes of memory pages the target must have received through the page server.
    pub pages_bytes: u64,
}

fn io_err(context: &str) -> impl Fn(std::io::Error) -> MigrationError + '_ {
    move |e| MigrationError::Io(format!("{context}: {e}"))
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

fn walk(root: &Path, prefix: &str, out: &mut BTreeMap<String, Entry>) -> std::io::Result<()> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)?.flatten().collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let rel_path = rel.join(e.file_name());
            let meta = std::fs::symlink_metadata(e.path())?;
            let ft = meta.file_type();
            let key = format!("{prefix}/{}", rel_path.display());
            let mode = meta.permissions().mode() & 0o7777;
            let entry = if ft.is_dir() {
                stack.push(rel_path);
                Entry {
                    kind: Kind::Dir,
                    size: 0,
                    mode,
                    sha256: String::new(),
                }
            } else if ft.is_symlink() {
                let target = std::fs::read_link(e.path())?;
                let h = hex::encode(Sha256::digest(target.as_os_str().as_encoded_bytes()));
                Entry {
                    kind: Kind::Symlink,
                    size: 0,
                    mode,
                    sha256: h,
                }
            } else if ft.is_char_device() && meta.rdev() == 0 {
                Entry {
                    kind: Kind::Whiteout,
                    size: 0,
                    mode,
                    sha256: String::new(),
                }
            } else if ft.is_file() {
                Entry {
                    kind: Kind::File,
                    size: meta.len(),
                    mode,
                    sha256: sha256_file(&e.path())?,
                }
            } else {
                tracing::warn!(path = %key, "skipping special file in the writable layer");
                continue;
            };
            out.insert(key, entry);
        }
    }
    Ok(())
}

/// Hashes everything that will be streamed.
pub fn build_manifest(
    images: &Path,
    upper: &Path,
    pages_bytes: u64,
) -> Result<Manifest, MigrationError> {
    let mut entries = BTreeMap::new();
    walk(images, "images", &mut entries).map_err(io_err("read images"))?;
    // CRIU's link to the previous pre-copy round: the target makes its own, to its own
    // copy of that round; one from the network would name a path on this host.
    if entries
        .get("images/parent")
        .is_some_and(|e| matches!(e.kind, Kind::Symlink))
    {
        entries.remove("images/parent");
    }
    if upper.exists() {
        walk(upper, "upper", &mut entries).map_err(io_err("read writable layer"))?;
    }
    Ok(Manifest {
        entries,
        pages_bytes,
    })
}

fn source_path(images: &Path, upper: &Path, key: &str) -> PathBuf {
    match key.split_once('/') {
        Some(("images", rest)) => images.join(rest),
        Some((_, rest)) => upper.join(rest),
        None => PathBuf::from(key),
    }
}

/// Writes the stream; `corrupt` flips one byte of the first image file (fault injection).
/// Returns the bytes written.
pub fn write_stream(
    manifest: &Manifest,
    images: &Path,
    upper: &Path,
    out: impl Write,
    corrupt: bool,
) -> std::io::Result<u64> {
    let mut counter = CountingWriter {
        inner: out,
        bytes: 0,
    };
    {
        let gz = flate2::write::GzEncoder::new(&mut counter, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        let body = serde_json::to_vec(manifest).map_err(std::io::Error::other)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, MANIFEST, body.as_slice())?;
        let mut corrupted = false;
        for (key, entry) in &manifest.entries {
            let path = source_path(images, upper, key);
            let mut h = tar::Header::new_gnu();
            h.set_mode(entry.mode);
            match entry.kind {
                Kind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_cksum();
                    tar.append_data(&mut h, key, std::io::empty())?;
                }
                Kind::Symlink => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tar.append_link(&mut h, key, std::fs::read_link(&path)?)?;
                }
                Kind::Whiteout => {
                    h.set_entry_type(tar::EntryType::Char);
                    h.set_device_major(0)?;
                    h.set_device_minor(0)?;
                    h.set_size(0);
                    h.set_cksum();
                    tar.append_data(&mut h, key, std::io::empty())?;
                }
                Kind::File => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(entry.size);
                    h.set_cksum();
                    if corrupt && !corrupted && key.starts_with("images/") && entry.size > 0 {
                        let mut bytes = std::fs::read(&path)?;
                        bytes[0] ^= 0xff;
                        corrupted = true;
                        tar.append_data(&mut h, key, bytes.as_slice())?;
                    } else {
                        tar.append_data(&mut h, key, File::open(&path)?.take(entry.size))?;
                    }
                }
            }
        }
        tar.into_inner()?.finish()?;
    }
    counter.inner.flush()?;
    Ok(counter.bytes)
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Maps a stream path to where it lands, refusing anything that could leave the two roots.
fn dest_path(images: &Path, upper: &Path, key: &str) -> Result<PathBuf, MigrationError> {
    let bad = || MigrationError::Integrity(format!("refused stream path '{key}'"));
    let (root, rest) = match key.split_once('/') {
        Some(("images", rest)) => (images, rest),
        Some(("upper", rest)) => (upper, rest),
        _ => return Err(bad()),
    };
    let rel = Path::new(rest);
    if rest.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad());
    }
    // No parent may be a symlink: a write must never be redirected out of the root.
    let mut cur = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for c in parent.components() {
            cur.push(c);
            match std::fs::symlink_metadata(&cur) {
                Ok(m) if m.file_type().is_symlink() => return Err(bad()),
                _ => {}
            }
        }
    }
    Ok(root.join(rel))
}

/// The most a stream may carry: checked against its manifest before anything is written, and
/// each entry against the manifest while it arrives (so a lying stream stops at once).
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub bytes: u64,
    pub entries: u64,
}

/// Reads a stream into `images` and `upper`, verifying it against its manifest.
pub fn receive_stream(
    input: impl Read,
    images: &Path,
    upper: &Path,
    limits: StreamLimits,
) -> Result<Manifest, MigrationError> {
    std::fs::create_dir_all(images).map_err(io_err("create image dir"))?;
    std::fs::create_dir_all(upper).map_err(io_err("create upper dir"))?;
    // The limits below count the entries' bytes as they come out of the decompressor.
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(input));
    let mut entries = archive.entries().map_err(io_err("read stream"))?;
    let manifest: Manifest = {
        let mut first = entries
            .next()
            .ok_or_else(|| MigrationError::Integrity("empty stream".into()))?
            .map_err(io_err("read stream"))?;
        if first.path().map_err(io_err("read stream"))?.as_os_str() != MANIFEST
            || first.size() > MAX_MANIFEST_BYTES
        {
            return Err(MigrationError::Integrity(
                "the stream does not start with its manifest".into(),
            ));
        }
        let mut body = Vec::new();
        first
            .read_to_end(&mut body)
            .map_err(io_err("read manifest"))?;
        serde_json::from_slice(&body)
            .map_err(|e| MigrationError::Integrity(format!("bad manifest: {e}")))?
    };
    let announced: u64 = manifest
        .entries
        .values()
        .fold(0u64, |sum, e| sum.saturating_add(e.size));
    if manifest.entries.len() as u64 > limits.entries || announced > limits.bytes {
        return Err(MigrationError::TooLarge(format!(
            "the stream announces {} entries and {} MiB; this host takes at most {} entries and {} MiB for this container",
            manifest.entries.len(),
            announced >> 20,
            limits.entries,
            limits.bytes >> 20
        )));
    }
    let mut seen = BTreeMap::new();
    for entry in entries {
        let mut entry = entry.map_err(io_err("read stream"))?;
        let key = entry
            .path()
            .map_err(io_err("read stream"))?
            .to_string_lossy()
            .into_owned();
        let key = key.trim_end_matches('/').to_string();
        let expected = manifest
            .entries
            .get(&key)
            .ok_or_else(|| MigrationError::Integrity(format!("'{key}' is not in the manifest")))?;
        let dest = dest_path(images, upper, &key)?;
        let got = match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(&dest).map_err(io_err("create dir"))?;
                Entry {
                    kind: Kind::Dir,
                    size: 0,
                    mode: expected.mode,
                    sha256: String::new(),
                }
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io_err("read symlink"))?
                    .ok_or_else(|| {
                        MigrationError::Integrity(format!("symlink '{key}' has no target"))
                    })?;
                std::os::unix::fs::symlink(&target, &dest).map_err(io_err("create symlink"))?;
                let h = hex::encode(Sha256::digest(target.as_os_str().as_encoded_bytes()));
                Entry {
                    kind: Kind::Symlink,
                    size: 0,
                    mode: expected.mode,
                    sha256: h,
                }
            }
            tar::EntryType::Char => {
                let (major, minor) = (
                    entry.header().device_major().ok().flatten(),
                    entry.header().device_minor().ok().flatten(),
                );
                if major != Some(0) || minor != Some(0) {
                    return Err(MigrationError::Integrity(format!(
                        "'{key}': only 0:0 whiteouts are allowed"
                    )));
                }
                mknod_whiteout(&dest).map_err(io_err("create whiteout"))?;
                Entry {
                    kind: Kind::Whiteout,
                    size: 0,
                    mode: expected.mode,
                    sha256: String::new(),
                }
            }
            tar::EntryType::Regular => {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dest)
                    .map_err(io_err("create file"))?;
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 1 << 16];
                let mut size = 0u64;
                loop {
                    let n = entry.read(&mut buf).map_err(io_err("read stream"))?;
                    if n == 0 {
                        break;
                    }
                    if size + n as u64 > expected.size {
                        return Err(MigrationError::Integrity(format!(
                            "'{key}' is larger than the manifest's {} bytes",
                            expected.size
                        )));
                    }
                    h.update(&buf[..n]);
                    f.write_all(&buf[..n]).map_err(io_err("write file"))?;
                    size += n as u64;
                }
                Entry {
                    kind: Kind::File,
                    size,
                    mode: expected.mode,
                    sha256: hex::encode(h.finalize()),
                }
            }
            other => {
                return Err(MigrationError::Integrity(format!(
                    "'{key}': unexpected entry type {other:?}"
                )))
            }
        };
        if &got != expected {
            return Err(MigrationError::Integrity(format!(
                "'{key}' does not match the manifest (size {} vs {}, sha256 {} vs {})",
                got.size, expected.size, got.sha256, expected.sha256
            )));
        }
        if got.kind != Kind::Symlink {
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(expected.mode))
                .map_err(io_err("chmod"))?;
        }
        seen.insert(key, ());
    }
    if let Some(missing) = manifest.entries.keys().find(|k| !seen.contains_key(*k)) {
        return Err(MigrationError::Integrity(format!(
            "'{missing}' is missing from the stream"
        )));
    }
    Ok(manifest)
}

fn mknod_whiteout(path: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    let c = CString::new(path.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call; mknod only reads it.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Total bytes of the memory page images (`pages-*.img`) in a directory.
pub fn pages_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with("pages-") && n.ends_with(".img")
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: StreamLimits = StreamLimits {
        bytes: 1 << 30,
        entries: 1000,
    };

    fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let images = t.path().join("src-images");
        let upper = t.path().join("src-upper");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(upper.join("var/lib")).unwrap();
        std::fs::write(images.join("core-1.img"), vec![7u8; 5000]).unwrap();
        std::fs::write(images.join("inventory.img"), b"inv").unwrap();
        std::fs::write(upper.join("var/lib/data"), b"state").unwrap();
        std::os::unix::fs::symlink("/etc/hosts", upper.join("link")).unwrap();
        (t, images, upper)
    }

    #[test]
    fn round_trip_verifies() {
        let (t, images, upper) = fixture();
        let m = build_manifest(&images, &upper, 4096).unwrap();
        let mut buf = Vec::new();
        let n = write_stream(&m, &images, &upper, &mut buf, false).unwrap();
        assert_eq!(n as usize, buf.len());
        let (di, du) = (t.path().join("dst-images"), t.path().join("dst-upper"));
        let got = receive_stream(buf.as_slice(), &di, &du, ROOMY).unwrap();
        assert_eq!(got, m);
        assert_eq!(std::fs::read(du.join("var/lib/data")).unwrap(), b"state");
        assert_eq!(
            std::fs::read_link(du.join("link")).unwrap(),
            Path::new("/etc/hosts")
        );
        assert_eq!(std::fs::read(di.join("core-1.img")).unwrap().len(), 5000);
    }

    #[test]
    fn corrupted_byte_is_detected() {
        let (t, images, upper) = fixture();
        let m = build_manifest(&images, &upper, 0).unwrap();
        let mut buf = Vec::new();
        write_stream(&m, &images, &upper, &mut buf, true).unwrap();
        let err = receive_stream(
            buf.as_slice(),
            &t.path().join("a"),
            &t.path().join("b"),
            ROOMY,
        )
        .unwrap_err();
        assert!(matches!(err, MigrationError::Integrity(_)), "{err}");
    }

    #[test]
    fn a_stream_over_the_limits_is_refused_before_anything_is_written() {
        let (t, images, upper) = fixture();
        let m = build_manifest(&images, &upper, 0).unwrap();
        let mut buf = Vec::new();
        write_stream(&m, &images, &upper, &mut buf, false).unwrap();
        for limits in [
            StreamLimits {
                bytes: 5000,
                ..ROOMY
            },
            StreamLimits {
                entries: 2,
                ..ROOMY
            },
        ] {
            let (a, b) = (t.path().join("a"), t.path().join("b"));
            let err = receive_stream(buf.as_slice(), &a, &b, limits).unwrap_err();
            assert!(matches!(err, MigrationError::TooLarge(_)), "{err}");
            assert_eq!(std::fs::read_dir(&a).unwrap().count(), 0);
            assert_eq!(std::fs::read_dir(&b).unwrap().count(), 0);
        }
    }

    #[test]
    fn an_entry_longer_than_its_manifest_stops_at_the_manifest_size() {
        let t = tempfile::tempdir().unwrap();
        let mut m = Manifest::default();
        m.entries.insert(
            "images/core-1.img".into(),
            Entry {
                kind: Kind::File,
                size: 10,
                mode: 0o600,
                sha256: String::new(),
            },
        );
        let mut tar = tar::Builder::new(Vec::new());
        for (path, body) in [
            (MANIFEST, serde_json::to_vec(&m).unwrap()),
            ("images/core-1.img", vec![1u8; 1 << 20]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            tar.append_data(&mut h, path, body.as_slice()).unwrap();
        }
        // Compressed as a source's stream is: the 1 MiB of ones shrinks to a few KiB.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar.into_inner().unwrap()).unwrap();
        let buf = gz.finish().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let err = receive_stream(buf.as_slice(), &a, &b, ROOMY).unwrap_err();
        assert!(matches!(err, MigrationError::Integrity(_)), "{err}");
        let written = std::fs::metadata(a.join("core-1.img")).unwrap().len();
        assert!(written <= 10, "wrote {written} bytes past the manifest");
    }

    #[test]
    fn truncated_stream_is_detected() {
        let (t, images, upper) = fixture();
        let m = build_manifest(&images, &upper, 0).unwrap();
        let mut buf = Vec::new();
        write_stream(&m, &images, &upper, &mut buf, false).unwrap();
        buf.truncate(buf.len() / 2);
        assert!(receive_stream(
            buf.as_slice(),
            &t.path().join("a"),
            &t.path().join("b"),
            ROOMY
        )
        .is_err());
    }

    #[test]
    fn escaping_paths_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let (i, u) = (t.path().join("i"), t.path().join("u"));
        for bad in [
            "images/../x",
            "upper/../../etc/passwd",
            "other/x",
            "images/",
            "/abs",
        ] {
            assert!(dest_path(&i, &u, bad).is_err(), "{bad}");
        }
        std::fs::create_dir_all(&u).unwrap();
        std::os::unix::fs::symlink("/tmp", u.join("evil")).unwrap();
        assert!(
            dest_path(&i, &u, "upper/evil/x").is_err(),
            "writing through a symlink"
        );
    }
}
