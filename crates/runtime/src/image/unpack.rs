//! Unpacks one layer tar (plain or gzip) into a directory for overlayfs, treating the tar as
//! hostile: it is parsed with the tar crate but every file is created by ferry itself through
//! [`fsops::Dir`], after validating the entry:
//!
//! - paths must be relative with no `..` (a leading `./` is fine);
//! - a parent component that is a symlink (or a file) is an error, never followed;
//! - relative symlink targets must stay inside the layer when resolved from the link's directory
//!   (absolute targets are normal: they resolve inside the container's root at run time);
//! - hardlink targets must be files written earlier in the same layer;
//! - device nodes are refused, except a char device 0:0 (an overlayfs whiteout already);
//! - `.wh.NAME` becomes an overlayfs whiteout (char device 0:0 named NAME) and `.wh..wh..opq`
//!   the xattr `trusted.overlay.opaque=y` on its directory.
//!
//! The whole uncompressed stream is hashed, so the caller can check it against the layer's diff_id.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use nix::sys::stat::SFlag;
use tar::EntryType;

use super::format::{sniff, Compression, HashingReader};
use super::fsops::{self, Dir, Kind};
use super::limit::{too_large, Budget, Counted, Meter, Over};
use super::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Other `.wh..wh.` names are aufs bookkeeping (e.g. `.wh..wh.plnk`); they carry no content.
const AUFS_META_PREFIX: &str = ".wh..wh.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Longest entry path and deepest nesting accepted (Linux' PATH_MAX, and far more depth than
/// any real root filesystem has).
const MAX_PATH_BYTES: usize = 4096;
const MAX_PATH_DEPTH: usize = 128;

/// What unpacking a layer found out.
#[derive(Debug)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar (the layer's diff_id).
    pub diff_id: String,
    pub entries: u64,
}

/// Unpacks the layer blob at `blob` into `dest` (an existing empty directory), within what is
/// left of the import's `budget` (reduced by what this layer took). `what` names the layer in
/// error messages.
pub fn unpack_layer(
    blob: &Path,
    dest: &Path,
    what: &str,
    budget: &mut Budget,
) -> Result<Unpacked, ImageError> {
    let file = std::fs::File::open(blob).map_err(ImageError::io("open layer blob", blob))?;
    let mut buffered = BufReader::new(file);
    let head = buffered
        .fill_buf()
        .map_err(ImageError::io("read layer blob", blob))?;
    let (stream, meter) = match sniff(head) {
        Compression::None => Meter::new(Box::new(buffered) as Box<dyn Read>, budget.bytes, None),
        // Multi-member gzip (pigz, estargz) is valid gzip: read every member.
        Compression::Gzip => {
            let (counted, count) = Counted::new(buffered);
            let gz = flate2::bufread::MultiGzDecoder::new(std::io::BufReader::new(counted));
            Meter::new(
                Box::new(gz) as Box<dyn Read>,
                budget.bytes,
                Some((count, budget.gzip_ratio)),
            )
        }
        Compression::Zstd => {
            return Err(ImageError::Malformed(format!(
                "{what}: zstd-compressed layers are not supported (re-export the image with gzip or uncompressed layers)"
            )))
        }
    };
    let mut hashing = HashingReader::new(stream);
    let root = Dir::open(dest).map_err(|e| ImageError::io("open layer dir", dest)(e.into()))?;
    let mut unpacker = Unpacker {
        root,
        what,
        written: HashSet::new(),
        dirs: Vec::new(),
        entries: 0,
        max_entries: budget.entries,
    };
    let unpacked = unpacker.run(&mut hashing);
    // A limit makes the tar crate see a failed read: report the limit, not "truncated".
    if let Some(over) = meter.over() {
        return Err(too_large(what, over, "--max-image-mib"));
    }
    unpacked?;
    let (diff_id, _) = hashing.finish();
    budget.bytes -= meter.read().min(budget.bytes);
    budget.entries -= unpacker.entries.min(budget.entries);
    Ok(Unpacked {
        diff_id,
        entries: unpacker.entries,
    })
}

impl Unpacker<'_> {
    /// Every entry, the rest of the stream, then the directories' times.
    fn run(&mut self, hashing: &mut impl Read) -> Result<(), ImageError> {
        let what = self.what;
        {
            let mut archive = tar::Archive::new(&mut *hashing);
            let entries = archive
                .entries()
                .map_err(|e| ImageError::Malformed(format!("{what}: not a tar archive: {e}")))?;
            for entry in entries {
                let entry = entry.map_err(|e| {
                    ImageError::Malformed(format!("{what}: corrupt or truncated tar/gzip: {e}"))
                })?;
                self.entry(entry)?;
            }
        }
        // Read to the end: the tar's zero blocks and padding belong to the diff_id, and a gzip
        // stream is only checked (CRC, length) once its trailer is read.
        std::io::copy(hashing, &mut std::io::sink()).map_err(|e| {
            ImageError::Malformed(format!("{what}: corrupt or truncated tar/gzip: {e}"))
        })?;
        self.finish_dirs()
    }
}

/// Splits an archive path into its normal components; `.` components are dropped, `..` and
/// absolute paths are refused.
pub fn clean_path(path: &Path, what: &str) -> Result<Vec<OsString>, ImageError> {
    // Real images stay far below these; the limits keep hostile nesting from making the
    // recursive removal of a replaced directory (or the later overlay mount) fall over.
    if path.as_os_str().len() > MAX_PATH_BYTES {
        return Err(ImageError::Malformed(format!(
            "{what}: entry path of {} bytes is over the {MAX_PATH_BYTES}-byte limit",
            path.as_os_str().len()
        )));
    }
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) if n.as_bytes().contains(&0) => {
                return Err(ImageError::Malformed(format!(
                    "{what}: entry '{}' has a NUL byte in its name",
                    path.display()
                )))
            }
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(ImageError::Malformed(format!(
                    "{what}: entry '{}' has a '..' component",
                    path.display()
                )))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ImageError::Malformed(format!(
                    "{what}: entry '{}' is an absolute path",
                    path.display()
                )))
            }
        }
    }
    if out.len() > MAX_PATH_DEPTH {
        return Err(ImageError::Malformed(format!(
            "{what}: entry '{}' is nested over {MAX_PATH_DEPTH} directories deep",
            path.display()
        )));
    }
    Ok(out)
}

/// Whether a relative symlink target, resolved from the directory `link_dir_depth` levels below
/// the layer root, stays inside the layer.
fn relative_target_stays_inside(target: &Path, link_dir_depth: usize) -> bool {
    let mut depth = link_dir_depth as i64;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    true
}

struct Unpacker<'a> {
    root: Dir,
    what: &'a str,
    /// Non-directory paths written so far in this layer (the valid hardlink targets).
    written: HashSet<Vec<OsString>>,
    /// Directories and their mtimes, set last (writing children changes a directory's mtime).
    dirs: Vec<(Vec<OsString>, i64)>,
    entries: u64,
    /// Entries this layer may have (what the import's budget has left).
    max_entries: u64,
}

impl Unpacker<'_> {
    fn bad(&self, path: &Path, reason: impl std::fmt::Display) -> ImageError {
        ImageError::Malformed(format!(
            "{}: entry '{}': {reason}",
            self.what,
            path.display()
        ))
    }

    fn fs_err(&self, path: &Path, op: &str, e: nix::Error) -> ImageError {
        // The staging dir is ours, so a failure here is either a hostile layout the checks let
        // through to the kernel (ELOOP, ENOTDIR, EEXIST) or a local I/O problem; name both.
        match e {
            nix::Error::ELOOP
            | nix::Error::ENOTDIR
            | nix::Error::EEXIST
            | nix::Error::ENOENT
            | nix::Error::EINVAL
            | nix::Error::ENAMETOOLONG => self.bad(
                path,
                format!("{op}: {e} (a parent is a symlink or not a directory?)"),
            ),
            other => ImageError::Io {
                context: "unpack layer entry",
                path: path.to_path_buf(),
                source: other.into(),
            },
        }
    }

    /// Opens the directory `comps` under the root, creating missing ones (mode 0755) and
    /// refusing to pass through anything that is not a real directory.
    fn walk(&self, comps: &[OsString], create: bool, path: &Path) -> Result<Dir, ImageError> {
        let mut dir = self
            .root
            .reopen()
            .map_err(|e| self.fs_err(path, "open layer root", e))?;
        for c in comps {
            match dir.kind(c).map_err(|e| self.fs_err(path, "stat", e))? {
                Kind::Dir => {}
                Kind::Missing if create => {
                    dir.mkdir(c, 0o755)
                        .map_err(|e| self.fs_err(path, "mkdir", e))?;
                    // mkdir applies the daemon's umask; a parent the tar does not list gets
                    // the usual 0755 whatever that umask is.
                    dir.chmod_at(c, 0o755)
                        .map_err(|e| self.fs_err(path, "chmod", e))?;
                }
                Kind::Missing => {
                    return Err(self.bad(path, format!("'{}' does not exist", c.to_string_lossy())))
                }
                Kind::Other => {
                    return Err(self.bad(
                        path,
                        format!(
                            "parent '{}' is a symlink or a file, not a directory",
                            c.to_string_lossy()
                        ),
                    ))
                }
            }
            dir = dir
                .open_dir(c)
                .map_err(|e| self.fs_err(path, "open parent", e))?;
        }
        Ok(dir)
    }

    /// Removes whatever is at `name` in `dir` (unless it is a directory and `keep_dir`).
    fn clear(
        &mut self,
        dir: &Dir,
        name: &OsStr,
        rel: &[OsString],
        keep_dir: bool,
        path: &Path,
    ) -> Result<(), ImageError> {
        match dir.kind(name).map_err(|e| self.fs_err(path, "stat", e))? {
            Kind::Missing => Ok(()),
            Kind::Dir if keep_dir => Ok(()),
            _ => {
                dir.remove(name)
                    .map_err(|e| self.fs_err(path, "remove existing", e))?;
                self.written.retain(|w| !w.starts_with(rel));
                Ok(())
            }
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<R>) -> Result<(), ImageError> {
        self.entries += 1;
        if self.entries > self.max_entries {
            return Err(too_large(self.what, Over::Entries(self.max_entries), ""));
        }
        let path = entry
            .path()
            .map_err(|e| {
                ImageError::Malformed(format!("{}: entry with an unreadable path: {e}", self.what))
            })?
            .into_owned();
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let rel = clean_path(&path, self.what)?;
        let Some((name, parents)) = rel.split_last() else {
            // The layer root itself ("./"): the directory exists, take its metadata (the top
            // layer's root becomes the container's `/`).
            if kind != EntryType::Directory {
                return Err(self.bad(&path, "names the layer root but is not a directory"));
            }
            let (uid, gid, mode, mtime) = self.owner_mode_mtime(entry.header(), &path)?;
            self.root
                .set_meta(uid, gid, mode, mtime)
                .map_err(|e| self.fs_err(&path, "set metadata", e))?;
            self.dirs.push((Vec::new(), mtime));
            return Ok(());
        };
        let name = name.clone();
        let name_str = name.to_string_lossy().into_owned();
        let parent = self.walk(parents, true, &path)?;

        // Whiteouts first: their entry type does not matter, only the name.
        if name_str == OPAQUE_MARKER {
            return parent
                .set_xattr(OPAQUE_XATTR, b"y")
                .map_err(|e| ImageError::io("set opaque xattr for", path.clone())(e));
        }
        if name_str.starts_with(AUFS_META_PREFIX) {
            return Ok(());
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(self.bad(&path, "whiteout of an invalid name"));
            }
            let hidden = OsStr::new(hidden);
            let mut hidden_rel = parents.to_vec();
            hidden_rel.push(hidden.to_os_string());
            self.clear(&parent, hidden, &hidden_rel, false, &path)?;
            return self.whiteout(&parent, hidden, &path);
        }

        let header = entry.header().clone();
        let (uid, gid, mode, mtime) = self.owner_mode_mtime(&header, &path)?;
        let xattrs = self.xattrs(&mut entry, &path)?;

        match kind {
            EntryType::Directory => {
                self.clear(&parent, &name, &rel, true, &path)?;
                if parent
                    .kind(&name)
                    .map_err(|e| self.fs_err(&path, "stat", e))?
                    == Kind::Missing
                {
                    parent
                        .mkdir(&name, 0o700)
                        .map_err(|e| self.fs_err(&path, "mkdir", e))?;
                }
                let dir = parent
                    .open_dir(&name)
                    .map_err(|e| self.fs_err(&path, "open dir", e))?;
                dir.set_meta(uid, gid, mode, mtime)
                    .map_err(|e| self.fs_err(&path, "set metadata", e))?;
                for (k, v) in &xattrs {
                    self.apply_xattr(&dir, k, v, &path);
                }
                self.dirs.push((rel.clone(), mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.clear(&parent, &name, &rel, false, &path)?;
                let mut file = parent
                    .create_file(&name)
                    .map_err(|e| self.fs_err(&path, "create", e))?;
                self.copy_data(&mut entry, &mut file, &path)?;
                for (k, v) in &xattrs {
                    self.apply_xattr(&file, k, v, &path);
                }
                fsops::set_fd_meta(&file, uid, gid, mode, mtime)
                    .map_err(|e| self.fs_err(&path, "set metadata", e))?;
                self.written.insert(rel.clone());
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.into_owned())
                    .filter(|t| !t.as_os_str().is_empty())
                    .ok_or_else(|| self.bad(&path, "symlink without a target"))?;
                if target.is_relative() && !relative_target_stays_inside(&target, parents.len()) {
                    return Err(self.bad(
                        &path,
                        format!(
                            "symlink target '{}' points outside the layer root",
                            target.display()
                        ),
                    ));
                }
                self.clear(&parent, &name, &rel, false, &path)?;
                parent
                    .symlink(target.as_os_str(), &name)
                    .map_err(|e| self.fs_err(&path, "symlink", e))?;
                parent
                    .set_link_meta(&name, uid, gid, mtime)
                    .map_err(|e| self.fs_err(&path, "set metadata", e))?;
                self.written.insert(rel.clone());
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|t| t.into_owned())
                    .ok_or_else(|| self.bad(&path, "hardlink without a target"))?;
                let target_rel = clean_path(&target, self.what).map_err(|_| {
                    self.bad(
                        &path,
                        format!(
                            "hardlink target '{}' is outside the layer",
                            target.display()
                        ),
                    )
                })?;
                if target_rel == rel || !self.written.contains(&target_rel) {
                    return Err(self.bad(
                        &path,
                        format!(
                            "hardlink target '{}' is not a file earlier in this layer",
                            target.display()
                        ),
                    ));
                }
                let Some((target_name, target_parents)) = target_rel.split_last() else {
                    return Err(self.bad(&path, "hardlink to the layer root"));
                };
                let target_dir = self.walk(target_parents, false, &path)?;
                self.clear(&parent, &name, &rel, false, &path)?;
                parent
                    .hardlink(&target_dir, target_name, &name)
                    .map_err(|e| self.fs_err(&path, "hardlink", e))?;
                self.written.insert(rel.clone());
            }
            EntryType::Char | EntryType::Block => {
                let major = header.device_major().ok().flatten();
                let minor = header.device_minor().ok().flatten();
                if kind == EntryType::Char && major == Some(0) && minor == Some(0) {
                    self.clear(&parent, &name, &rel, false, &path)?;
                    return self.whiteout(&parent, &name, &path);
                }
                return Err(self.bad(&path, "device nodes are not allowed in image layers"));
            }
            EntryType::Fifo => {
                self.clear(&parent, &name, &rel, false, &path)?;
                parent
                    .mknod(&name, SFlag::S_IFIFO, mode & 0o7777, 0)
                    .map_err(|e| self.fs_err(&path, "mkfifo", e))?;
                parent
                    .chmod_at(&name, mode & 0o7777)
                    .map_err(|e| self.fs_err(&path, "chmod", e))?;
                parent
                    .set_link_meta(&name, uid, gid, mtime)
                    .map_err(|e| self.fs_err(&path, "set metadata", e))?;
            }
            other => return Err(self.bad(&path, format!("unsupported tar entry type {other:?}"))),
        }
        Ok(())
    }

    /// (uid, gid, permission bits, mtime) of an entry.
    fn owner_mode_mtime(
        &self,
        header: &tar::Header,
        path: &Path,
    ) -> Result<(u32, u32, u32, i64), ImageError> {
        let mode = header
            .mode()
            .map_err(|e| self.bad(path, format!("bad mode: {e}")))?;
        let uid = header.uid().ok().and_then(|u| u32::try_from(u).ok());
        let gid = header.gid().ok().and_then(|g| u32::try_from(g).ok());
        let (Some(uid), Some(gid)) = (uid, gid) else {
            return Err(self.bad(path, "bad uid/gid"));
        };
        // Timestamps are advisory; a broken mtime field is not worth refusing a layer for.
        let mtime = header
            .mtime()
            .ok()
            .and_then(|t| i64::try_from(t).ok())
            .unwrap_or(0);
        Ok((uid, gid, mode & 0o7777, mtime))
    }

    /// An overlayfs whiteout: a char device 0:0.
    fn whiteout(&self, dir: &Dir, name: &OsStr, path: &Path) -> Result<(), ImageError> {
        dir.mknod(name, SFlag::S_IFCHR, 0, libc::makedev(0, 0))
            .map_err(|e| self.fs_err(path, "mknod whiteout", e))
    }

    /// The entry's `SCHILY.xattr.*` PAX records. overlayfs' own `trusted.overlay.*` attributes
    /// (redirects, metacopy, ...) would change how layers combine, so only `opaque` passes.
    fn xattrs<R: Read>(
        &self,
        entry: &mut tar::Entry<R>,
        path: &Path,
    ) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
        let mut out = Vec::new();
        let Some(exts) = entry
            .pax_extensions()
            .map_err(|e| self.bad(path, format!("bad PAX header: {e}")))?
        else {
            return Ok(out);
        };
        for ext in exts {
            let ext = ext.map_err(|e| self.bad(path, format!("bad PAX record: {e}")))?;
            let Ok(key) = ext.key() else { continue };
            let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
                continue;
            };
            if name.starts_with("trusted.overlay.") && name != OPAQUE_XATTR {
                tracing::warn!(layer = self.what, entry = %path.display(), xattr = name, "dropping overlayfs xattr from layer");
                continue;
            }
            out.push((name.to_string(), ext.value_bytes().to_vec()));
        }
        Ok(out)
    }

    fn apply_xattr(&self, fd: &impl std::os::fd::AsRawFd, name: &str, value: &[u8], path: &Path) {
        // Some attributes (security.selinux on a host without SELinux, ...) cannot be set
        // everywhere; the file is still usable, so log and go on.
        if let Err(e) = fsops::set_xattr(fd, name, value) {
            tracing::warn!(layer = self.what, entry = %path.display(), xattr = name, error = %e, "xattr not set");
        }
    }

    /// Copies an entry's data; read errors are the archive's fault, write errors ours.
    fn copy_data(
        &self,
        from: &mut impl Read,
        to: &mut std::fs::File,
        path: &Path,
    ) -> Result<(), ImageError> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.bad(path, format!("corrupt or truncated data: {e}"))),
            };
            to.write_all(&buf[..n])
                .map_err(ImageError::io("write layer file", path))?;
        }
    }

    /// Sets directory mtimes once their contents are complete.
    fn finish_dirs(&self) -> Result<(), ImageError> {
        for (rel, mtime) in self.dirs.iter().rev() {
            let path: std::path::PathBuf = rel.iter().collect();
            // A later entry may have replaced or whited out the directory: nothing to do then.
            let Ok(dir) = self.walk(rel, false, &path) else {
                continue;
            };
            dir.set_mtime(*mtime)
                .map_err(|e| self.fs_err(&path, "set mtime", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_escape_rules() {
        let p = Path::new;
        assert!(relative_target_stays_inside(p("x"), 0));
        assert!(relative_target_stays_inside(p("../x"), 1));
        assert!(!relative_target_stays_inside(p("../x"), 0));
        assert!(!relative_target_stays_inside(p("a/../../x"), 0));
        assert!(relative_target_stays_inside(p("a/../x"), 0));
        assert!(!relative_target_stays_inside(p("../../../etc/passwd"), 2));
        assert!(relative_target_stays_inside(p("/etc/passwd"), 0));
    }

    #[test]
    fn clean_paths() {
        assert_eq!(
            clean_path(Path::new("./a/b"), "t").unwrap(),
            vec![OsString::from("a"), OsString::from("b")]
        );
        assert!(clean_path(Path::new("./"), "t").unwrap().is_empty());
        assert!(clean_path(Path::new("a/../b"), "t").is_err());
        assert!(clean_path(Path::new("/etc/x"), "t").is_err());
        assert!(clean_path(Path::new(&"a/".repeat(129)), "t").is_err());
        assert!(clean_path(Path::new(&"a/".repeat(128)), "t").is_ok());
        assert!(clean_path(Path::new(&"a".repeat(4097)), "t").is_err());
        assert!(clean_path(Path::new(std::ffi::OsStr::from_bytes(b"a\0b")), "t").is_err());
    }
}
