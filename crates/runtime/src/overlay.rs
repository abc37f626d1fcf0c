//! The container's root filesystem: an overlay of the image's unpacked layers (read-only,
//! shared by every container of that image) and the container's own writable layer. Only the
//! writable layer (`upper`) belongs to the container, which is what a migration has to move.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("mount overlay at {target}: {source}")]
    Mount { target: PathBuf, source: nix::Error },
    #[error("unmount {target}: {source}")]
    Unmount { target: PathBuf, source: nix::Error },
    #[error("prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("overlay needs at least one image layer")]
    NoLayers,
}

/// Whether `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| mp == target)
}

/// Mounts `lower` (top-most layer first) + `upper`/`work` at `target`, unless already mounted.
pub fn mount_root(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), OverlayError> {
    if lower.is_empty() {
        return Err(OverlayError::NoLayers);
    }
    for dir in [upper, work, target] {
        std::fs::create_dir_all(dir).map_err(|source| OverlayError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    if is_mounted(target) {
        return Ok(());
    }
    let lowerdir = lower
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|source| OverlayError::Mount {
        target: target.to_path_buf(),
        source,
    })
}

/// Unmounts `target` if it is mounted.
pub fn unmount_root(target: &Path) -> Result<(), OverlayError> {
    if !is_mounted(target) {
        return Ok(());
    }
    umount2(target, MntFlags::empty()).map_err(|source| OverlayError::Unmount {
        target: target.to_path_buf(),
        source,
    })
}
