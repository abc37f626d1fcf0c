//! Directory-relative file operations for unpacking untrusted layers. Every call works on a
//! name inside an open directory (`*at` syscalls) and never follows a symlink: a layer that
//! plants `a -> /etc` and then writes `a/passwd` gets an error, not a write to the host.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fstatat, futimens, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

/// What is at a name inside a directory (symlinks are not followed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Missing,
    Dir,
    Other,
}

/// An open directory.
pub struct Dir {
    fd: OwnedFd,
}

fn owned(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful openat and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl AsRawFd for Dir {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl Dir {
    /// Opens a trusted directory by path (the layer root ferry created itself).
    pub fn open(path: &Path) -> nix::Result<Dir> {
        let fd = openat(
            None,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Dir { fd: owned(fd) })
    }

    fn raw(&self) -> Option<std::os::fd::RawFd> {
        Some(self.fd.as_raw_fd())
    }

    /// A second handle on the same directory (so walks can start from the root repeatedly).
    pub fn reopen(&self) -> nix::Result<Dir> {
        self.open_dir(OsStr::new("."))
    }

    /// Opens the child directory `name`; fails (ELOOP / ENOTDIR) if it is a symlink or not a directory.
    pub fn open_dir(&self, name: &OsStr) -> nix::Result<Dir> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(self.raw(), name, flags, Mode::empty())?;
        Ok(Dir { fd: owned(fd) })
    }

    pub fn kind(&self, name: &OsStr) -> nix::Result<Kind> {
        match fstatat(self.raw(), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFDIR => {
                Ok(Kind::Dir)
            }
            Ok(_) => Ok(Kind::Other),
            Err(Errno::ENOENT) => Ok(Kind::Missing),
            Err(e) => Err(e),
        }
    }

    pub fn mkdir(&self, name: &OsStr, mode: u32) -> nix::Result<()> {
        mkdirat(self.raw(), name, Mode::from_bits_truncate(mode))
    }

    /// Creates a new regular file (the name must not exist) for writing.
    pub fn create_file(&self, name: &OsStr) -> nix::Result<File> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(self.raw(), name, flags, Mode::from_bits_truncate(0o600))?;
        Ok(File::from(owned(fd)))
    }

    pub fn symlink(&self, target: &OsStr, name: &OsStr) -> nix::Result<()> {
        symlinkat(target, self.raw(), name)
    }

    /// Hard-links `from_dir/from_name` as `name` here (a symlink is linked itself, not followed).
    pub fn hardlink(&self, from_dir: &Dir, from_name: &OsStr, name: &OsStr) -> nix::Result<()> {
        linkat(
            from_dir.raw(),
            from_name,
            self.raw(),
            name,
            AtFlags::empty(),
        )
    }

    pub fn mknod(&self, name: &OsStr, kind: SFlag, mode: u32, dev: libc::dev_t) -> nix::Result<()> {
        mknodat(self.raw(), name, kind, Mode::from_bits_truncate(mode), dev)
    }

    /// Removes `name`, a directory with everything in it included (never following symlinks).
    pub fn remove(&self, name: &OsStr) -> nix::Result<()> {
        if self.kind(name)? != Kind::Dir {
            return unlinkat(self.raw(), name, UnlinkatFlags::NoRemoveDir);
        }
        let child = self.open_dir(name)?;
        // List the names through the fd we hold (the /proc magic link is that very directory),
        // then remove each by name relative to it.
        let listing = std::fs::read_dir(format!("/proc/self/fd/{}", child.fd.as_raw_fd()))
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
        let names: Vec<std::ffi::OsString> = listing
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        for name in names {
            child.remove(&name)?;
        }
        unlinkat(self.raw(), name, UnlinkatFlags::RemoveDir)
    }

    /// Sets the mode of `name`, which must not be a symlink (callers just created it).
    pub fn chmod_at(&self, name: &OsStr, mode: u32) -> nix::Result<()> {
        let st = fstatat(self.raw(), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFLNK {
            return Err(Errno::ELOOP);
        }
        nix::sys::stat::fchmodat(
            self.raw(),
            name,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
    }

    /// Sets owner, mode and times of the directory itself.
    pub fn set_meta(&self, uid: u32, gid: u32, mode: u32, mtime: i64) -> nix::Result<()> {
        set_fd_meta(&self.fd, uid, gid, mode, mtime)
    }

    pub fn set_mtime(&self, mtime: i64) -> nix::Result<()> {
        futimens(
            self.fd.as_raw_fd(),
            &TimeSpec::UTIME_OMIT,
            &TimeSpec::new(mtime, 0),
        )
    }

    pub fn set_xattr(&self, name: &str, value: &[u8]) -> std::io::Result<()> {
        set_xattr(&self.fd, name, value)
    }

    /// Owner and times of a name that may be a symlink (the link itself is changed).
    pub fn set_link_meta(&self, name: &OsStr, uid: u32, gid: u32, mtime: i64) -> nix::Result<()> {
        if nix::unistd::geteuid().is_root() {
            fchownat(
                self.raw(),
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        let t = TimeSpec::new(mtime, 0);
        utimensat(self.raw(), name, &t, &t, UtimensatFlags::NoFollowSymlink)
    }
}

/// Owner (only when running as root), mode (after chown, which clears set-id bits) and times.
pub fn set_fd_meta(
    fd: &impl AsRawFd,
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
) -> nix::Result<()> {
    let fd = fd.as_raw_fd();
    if nix::unistd::geteuid().is_root() {
        fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    }
    fchmod(fd, Mode::from_bits_truncate(mode & 0o7777))?;
    let t = TimeSpec::new(mtime, 0);
    futimens(fd, &t, &t)
}

/// Sets an extended attribute on an open file or directory.
pub fn set_xattr(fd: &impl AsRawFd, name: &str, value: &[u8]) -> std::io::Result<()> {
    let name =
        CString::new(name).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `name` is a NUL-terminated string and `value` a valid slice, both outliving the
    // call; the kernel only reads them. The fd is open for the duration of the call.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_dir_refuses_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("real")).unwrap();
        std::os::unix::fs::symlink("real", tmp.path().join("link")).unwrap();
        let root = Dir::open(tmp.path()).unwrap();
        assert!(root.open_dir(OsStr::new("real")).is_ok());
        assert!(root.open_dir(OsStr::new("link")).is_err());
        assert_eq!(root.kind(OsStr::new("link")).unwrap(), Kind::Other);
        assert_eq!(root.kind(OsStr::new("nothing")).unwrap(), Kind::Missing);
    }

    #[test]
    fn remove_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"x").unwrap();
        let layer = tmp.path().join("layer");
        std::fs::create_dir_all(layer.join("d/e")).unwrap();
        std::os::unix::fs::symlink(&outside, layer.join("d/e/out")).unwrap();
        let root = Dir::open(&layer).unwrap();
        root.remove(OsStr::new("d")).unwrap();
        assert!(!layer.join("d").exists());
        assert!(outside.join("keep").exists());
    }
}
