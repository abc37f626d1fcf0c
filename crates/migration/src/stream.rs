//! The stream that carries a container's CRIU images (all but the memory pages, which go
//! through the page server) and its writable layer from source to target, as one tar,
//! gzip-compressed (fast level: the non-lazy pages of a post-copy dump shrink severalfold,
//! so the stream crosses the link in fewer of TCP's round trips):
//!
//! ```text
//! images/<file>        CRIU image files, each as the dump closes it (the stream opens
//!                      before the dump); one may come again, changed: the later one counts
//! images/<file>        after the dump: those not sent yet or changed since
//! upper/<path>         the overlay upper dir: files, dirs, symlinks, whiteouts (0:0 devices)
//! MANIFEST.json        last: every entry above with kind, size and sha256, plus the page bytes
//! ```
//! The target writes each entry as it arrives, hashing it, within limits counted as it goes,
//! and accepts the stream only when every entry of the manifest arrived as listed; what
//! arrived but is not listed is removed. It never follows a symlink while writing, and
//! refuses paths that leave the two directories.

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

impl Entry {
    fn symlink(target: &Path, mode: u32) -> Entry {
        Entry {
            kind: Kind::Symlink,
            size: 0,
            mode,
            sha256: hex::encode(Sha256::digest(target.as_os_str().as_encoded_bytes())),
        }
    }
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
                Entry::symlink(&std::fs::read_link(e.path())?, mode)
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

/// Writes a stream entry by entry: image files as the dump closes them ([`send_image`]),
/// then whatever the manifest lists that did not go out as it is now, then the manifest
/// ([`finish`]). `corrupt` flips one byte of the first image file on the wire (fault
/// injection); what was sent is recorded as read, so the flip is not mended by a resend.
///
/// [`send_image`]: StreamWriter::send_image
/// [`finish`]: StreamWriter::finish
pub struct StreamWriter<W: Write> {
    tar: tar::Builder<flate2::write::GzEncoder<CountingWriter<W>>>,
    sent: BTreeMap<String, Entry>,
    corrupt: bool,
}

impl<W: Write> StreamWriter<W> {
    pub fn new(out: W, corrupt: bool) -> Self {
        let counter = CountingWriter {
            inner: out,
            bytes: 0,
            closed: false,
        };
        let gz = flate2::write::GzEncoder::new(counter, flate2::Compression::fast());
        StreamWriter {
            tar: tar::Builder::new(gz),
            sent: BTreeMap::new(),
            corrupt,
        }
    }

    /// Sends the image file `name` of `images` now and pushes it out of the compressor: the
    /// target has it while the dump goes on. Read from disk as it goes (an image may be
    /// large); should it change meanwhile, what was recorded differs from the manifest at
    /// the end and it goes again.
    pub fn send_image(&mut self, images: &Path, name: &str) -> std::io::Result<()> {
        let path = images.join(name);
        let meta = std::fs::symlink_metadata(&path)?;
        if !meta.file_type().is_file() {
            return Ok(());
        }
        let entry = Entry {
            kind: Kind::File,
            size: meta.len(),
            mode: meta.permissions().mode() & 0o7777,
            sha256: sha256_file(&path)?,
        };
        self.append(&format!("images/{name}"), &path, &entry)?;
        self.tar.get_mut().flush()
    }

    fn append(&mut self, key: &str, path: &Path, entry: &Entry) -> std::io::Result<()> {
        let tar = &mut self.tar;
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
                tar.append_link(&mut h, key, std::fs::read_link(path)?)?;
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
                if self.corrupt && key.starts_with("images/") && entry.size > 0 {
                    let mut bytes = std::fs::read(path)?;
                    bytes.truncate(entry.size as usize);
                    bytes[0] ^= 0xff;
                    self.corrupt = false;
                    tar.append_data(&mut h, key, bytes.as_slice())?;
                } else {
                    tar.append_data(&mut h, key, File::open(path)?.take(entry.size))?;
                }
            }
        }
        self.sent.insert(key.to_string(), entry.clone());
        Ok(())
    }

    /// Sends every entry of `manifest` not sent yet or changed since, then the manifest, and
    /// ends the stream. Returns the bytes written.
    /// A failure on the way abandons the stream, as [`abandon`](StreamWriter::abandon) does.
    pub fn finish(
        mut self,
        manifest: &Manifest,
        images: &Path,
        upper: &Path,
    ) -> std::io::Result<u64> {
        if let Err(e) = self.append_rest(manifest, images, upper) {
            self.abandon();
            return Err(e);
        }
        let mut counter = self.tar.into_inner()?.finish()?;
        counter.inner.flush()?;
        Ok(counter.bytes)
    }

    fn append_rest(
        &mut self,
        manifest: &Manifest,
        images: &Path,
        upper: &Path,
    ) -> std::io::Result<()> {
        for (key, entry) in &manifest.entries {
            if self.sent.get(key) != Some(entry) {
                self.append(key, &source_path(images, upper, key), entry)?;
            }
        }
        let body = serde_json::to_vec(manifest).map_err(std::io::Error::other)?;
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        self.tar.append_data(&mut h, MANIFEST, body.as_slice())
    }

    /// Gives up: nothing more reaches `out`, not even the ends a dropped compressor and
    /// archive would write, so the target cannot take what it got for a whole stream.
    pub fn abandon(mut self) {
        self.tar.get_mut().get_mut().closed = true;
    }
}

/// Writes a whole stream at once (`corrupt`: see [`StreamWriter`]). Returns the bytes written.
pub fn write_stream(
    manifest: &Manifest,
    images: &Path,
    upper: &Path,
    out: impl Write,
    corrupt: bool,
) -> std::io::Result<u64> {
    StreamWriter::new(out, corrupt).finish(manifest, images, upper)
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
    /// Abandoned: writes go nowhere.
    closed: bool,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.closed {
            return Ok(());
        }
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

/// The most a stream may carry, counted while it arrives (a resent entry counts again), so a
/// stream that would exceed them stops at once.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub bytes: u64,
    pub entries: u64,
}

/// Reads a stream into `images` and `upper`, verifying it against its manifest, which comes
/// last: every entry it lists must have arrived as listed (a later copy of an entry replaces
/// an earlier one), and what arrived but is not listed (an image the dump closed, then
/// removed) is removed again.
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
    let entries = archive.entries().map_err(io_err("read stream"))?;
    let mut got: BTreeMap<String, Entry> = BTreeMap::new();
    let (mut bytes, mut count) = (0u64, 0u64);
    let mut manifest: Option<Manifest> = None;
    for entry in entries {
        let mut entry = entry.map_err(io_err("read stream"))?;
        if manifest.is_some() {
            return Err(MigrationError::Integrity(
                "an entry follows the manifest".into(),
            ));
        }
        let key = entry
            .path()
            .map_err(io_err("read stream"))?
            .to_string_lossy()
            .into_owned();
        let key = key.trim_end_matches('/').to_string();
        if key == MANIFEST {
            if entry.size() > MAX_MANIFEST_BYTES {
                return Err(MigrationError::Integrity(
                    "the manifest is too large".into(),
                ));
            }
            let mut body = Vec::new();
            entry
                .read_to_end(&mut body)
                .map_err(io_err("read manifest"))?;
            manifest = Some(
                serde_json::from_slice(&body)
                    .map_err(|e| MigrationError::Integrity(format!("bad manifest: {e}")))?,
            );
            continue;
        }
        count += 1;
        bytes = bytes.saturating_add(entry.size());
        if count > limits.entries || bytes > limits.bytes {
            return Err(MigrationError::TooLarge(format!(
                "the stream carries more than {} entries or {} MiB, the most this host takes for this container",
                limits.entries,
                limits.bytes >> 20
            )));
        }
        let dest = dest_path(images, upper, &key)?;
        // A directory stays as it is (with what is in it); anything else is written anew.
        if got
            .remove(&key)
            .is_some_and(|earlier| earlier.kind != Kind::Dir)
        {
            std::fs::remove_file(&dest).map_err(io_err("replace an entry"))?;
        }
        let received = write_entry(&mut entry, &key, &dest)?;
        got.insert(key, received);
    }
    let manifest = manifest
        .ok_or_else(|| MigrationError::Integrity("the stream ended without its manifest".into()))?;
    // Whole or not at all: the source counts a stream it could not end as never received,
    // so this side takes it only once the compressed stream's end (and its CRC) is in.
    read_to_the_end(archive.into_inner())?;
    for (key, expected) in &manifest.entries {
        match got.get(key) {
            None => {
                return Err(MigrationError::Integrity(format!(
                    "'{key}' is missing from the stream"
                )))
            }
            Some(g) if g != expected => {
                return Err(MigrationError::Integrity(format!(
                    "'{key}' does not match the manifest (size {} vs {}, sha256 {} vs {})",
                    g.size, expected.size, g.sha256, expected.sha256
                )))
            }
            Some(_) => {}
        }
    }
    for (key, e) in &got {
        if !manifest.entries.contains_key(key) {
            remove_entry(&dest_path(images, upper, key)?, e.kind)
                .map_err(io_err("remove an entry the manifest does not list"))?;
        }
    }
    Ok(manifest)
}

/// Reads what follows the archive's end: at most the rest of its zero blocks, then the gzip
/// trailer (checked), then the end of the input.
fn read_to_the_end<R: Read>(mut gz: flate2::read::GzDecoder<R>) -> Result<(), MigrationError> {
    let mut rest = Vec::new();
    gz.by_ref()
        .take(64 << 10)
        .read_to_end(&mut rest)
        .map_err(io_err("read the stream's end"))?;
    let mut after = [0u8; 1];
    let more = gz
        .into_inner()
        .read(&mut after)
        .map_err(io_err("read the stream's end"))?;
    if rest.len() >= 64 << 10 || rest.iter().any(|b| *b != 0) || more != 0 {
        return Err(MigrationError::Integrity(
            "data follows the archive's end".into(),
        ));
    }
    Ok(())
}

/// Writes one entry at `dest` with its header's mode; returns what it wrote.
fn write_entry(
    entry: &mut tar::Entry<'_, impl Read>,
    key: &str,
    dest: &Path,
) -> Result<Entry, MigrationError> {
    let mode = entry.header().mode().map_err(io_err("read stream"))? & 0o7777;
    let got = match entry.header().entry_type() {
        tar::EntryType::Directory => {
            std::fs::create_dir_all(dest).map_err(io_err("create dir"))?;
            Entry {
                kind: Kind::Dir,
                size: 0,
                mode,
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
            std::os::unix::fs::symlink(&target, dest).map_err(io_err("create symlink"))?;
            Entry::symlink(&target, mode)
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
            mknod_whiteout(dest).map_err(io_err("create whiteout"))?;
            Entry {
                kind: Kind::Whiteout,
                size: 0,
                mode,
                sha256: String::new(),
            }
        }
        tar::EntryType::Regular => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dest)
                .map_err(io_err("create file"))?;
            // The entry's reader ends at its header's size, which the limits counted.
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut size = 0u64;
            loop {
                let n = entry.read(&mut buf).map_err(io_err("read stream"))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                f.write_all(&buf[..n]).map_err(io_err("write file"))?;
                size += n as u64;
            }
            Entry {
                kind: Kind::File,
                size,
                mode,
                sha256: hex::encode(h.finalize()),
            }
        }
        other => {
            return Err(MigrationError::Integrity(format!(
                "'{key}': unexpected entry type {other:?}"
            )))
        }
    };
    if got.kind != Kind::Symlink {
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("chmod"))?;
    }
    Ok(got)
}

fn remove_entry(path: &Path, kind: Kind) -> std::io::Result<()> {
    match kind {
        Kind::Dir => std::fs::remove_dir_all(path),
        _ => std::fs::remove_file(path),
    }
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

    /// Receiving `buf` into `dir` fails on an integrity check.
    fn assert_refused_as_damaged(buf: &[u8], dir: &Path) {
        let err = receive_stream(buf, &dir.join("a"), &dir.join("b"), ROOMY).unwrap_err();
        assert!(matches!(err, MigrationError::Integrity(_)), "{err}");
    }

    /// A stream made by hand: regular files, in this order.
    fn tar_gz(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            tar.append_data(&mut h, path, body.as_slice()).unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    }

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
        assert_refused_as_damaged(&buf, t.path());
    }

    #[test]
    fn a_stream_over_the_limits_stops_at_the_entry_past_them() {
        let (t, images, upper) = fixture();
        let m = build_manifest(&images, &upper, 0).unwrap();
        let mut buf = Vec::new();
        write_stream(&m, &images, &upper, &mut buf, false).unwrap();
        // In stream order: images/core-1.img (5000 bytes), images/inventory.img, upper/link, ...
        for (limits, not_written) in [
            (
                StreamLimits {
                    bytes: 5000,
                    ..ROOMY
                },
                "images/inventory.img",
            ),
            (
                StreamLimits {
                    entries: 2,
                    ..ROOMY
                },
                "upper/link",
            ),
        ] {
            let d = tempfile::tempdir().unwrap();
            let (a, b) = (d.path().join("a"), d.path().join("b"));
            let err = receive_stream(buf.as_slice(), &a, &b, limits).unwrap_err();
            assert!(matches!(err, MigrationError::TooLarge(_)), "{err}");
            let path = dest_path(&a, &b, not_written).unwrap();
            assert!(
                std::fs::symlink_metadata(&path).is_err(),
                "{not_written} was written"
            );
        }
        drop(t);
    }

    #[test]
    fn an_entry_past_the_limits_is_not_written() {
        let t = tempfile::tempdir().unwrap();
        // Compressed as a source's stream is: the 1 MiB of ones shrinks to a few KiB.
        let buf = tar_gz(&[("images/core-1.img", vec![1u8; 1 << 20])]);
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let limits = StreamLimits {
            bytes: 1000,
            ..ROOMY
        };
        let err = receive_stream(buf.as_slice(), &a, &b, limits).unwrap_err();
        assert!(matches!(err, MigrationError::TooLarge(_)), "{err}");
        assert!(!a.join("core-1.img").exists());
    }

    #[test]
    fn images_sent_while_dumped_are_sent_again_if_they_changed_and_removed_if_gone() {
        let (t, images, upper) = fixture();
        std::fs::write(images.join("tmp.img"), b"gone soon").unwrap();
        let mut buf = Vec::new();
        let mut w = StreamWriter::new(&mut buf, false);
        for name in ["core-1.img", "inventory.img", "tmp.img"] {
            w.send_image(&images, name).unwrap();
        }
        std::fs::write(images.join("inventory.img"), b"inventory, rewritten").unwrap();
        std::fs::remove_file(images.join("tmp.img")).unwrap();
        let m = build_manifest(&images, &upper, 0).unwrap();
        w.finish(&m, &images, &upper).unwrap();
        let (di, du) = (t.path().join("dst-images"), t.path().join("dst-upper"));
        assert_eq!(receive_stream(buf.as_slice(), &di, &du, ROOMY).unwrap(), m);
        assert_eq!(
            std::fs::read(di.join("inventory.img")).unwrap(),
            b"inventory, rewritten"
        );
        assert!(!di.join("tmp.img").exists());
        assert_eq!(std::fs::read(di.join("core-1.img")).unwrap().len(), 5000);
    }

    #[test]
    fn a_byte_corrupted_while_dumped_is_not_mended_by_the_end() {
        let (t, images, upper) = fixture();
        let mut buf = Vec::new();
        let mut w = StreamWriter::new(&mut buf, true);
        w.send_image(&images, "core-1.img").unwrap();
        let m = build_manifest(&images, &upper, 0).unwrap();
        w.finish(&m, &images, &upper).unwrap();
        assert_refused_as_damaged(&buf, t.path());
    }

    #[test]
    fn an_abandoned_stream_is_refused() {
        let (t, images, _upper) = fixture();
        let mut buf = Vec::new();
        let mut w = StreamWriter::new(&mut buf, false);
        w.send_image(&images, "core-1.img").unwrap();
        w.abandon();
        assert!(!buf.is_empty(), "the image went out before the end");
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        assert!(receive_stream(buf.as_slice(), &a, &b, ROOMY).is_err());
    }

    #[test]
    fn a_stream_is_taken_only_with_its_end() {
        let (t, images, upper) = fixture();
        let m = build_manifest(&images, &upper, 0).unwrap();
        let mut buf = Vec::new();
        write_stream(&m, &images, &upper, &mut buf, false).unwrap();
        // Without gzip's trailer (CRC and length) every entry and the manifest are there.
        buf.truncate(buf.len() - 8);
        let err = receive_stream(
            buf.as_slice(),
            &t.path().join("a"),
            &t.path().join("b"),
            ROOMY,
        )
        .unwrap_err();
        assert!(err.to_string().contains("end"), "{err}");
    }

    #[test]
    fn nothing_may_follow_the_manifest() {
        let (t, images, upper) = fixture();
        let m = build_manifest(&images, &upper, 0).unwrap();
        let buf = tar_gz(&[
            (MANIFEST, serde_json::to_vec(&m).unwrap()),
            ("images/extra.img", b"late".to_vec()),
        ]);
        assert_refused_as_damaged(&buf, t.path());
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
