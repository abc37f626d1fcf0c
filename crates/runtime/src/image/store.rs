//! The content-addressed image store of one host:
//!
//! ```text
//! <root>/layers/<hex>/         one unpacked layer, keyed by its diff_id (shared between images)
//! <root>/images/<name>.json    the Image record (written to a temp file, then renamed)
//! <root>/staging/<id>/         an import in progress: spooled blobs and freshly unpacked layers
//! ```
//!
//! An import spools and verifies everything in its own staging directory and only then moves
//! new layers into `layers/` and writes the record, so a failed import leaves nothing behind
//! (the staging directory is removed by a guard, and leftovers of a crash at the next `open`).
//!
//! Removing or replacing an image deletes the layers no other image uses, except layers some
//! overlay still mounts (a container running on the old image): those go at a later cleanup.
//! One `ImageStore` per root directory: `open` clears the staging area of that root.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::archive::{self, Found};
use super::format::digest_hex;
use super::limit::Budget;
use super::unpack::unpack_layer;
use super::{validate_name, Image, ImageError, ImageLimits};

pub struct ImageStore {
    root: PathBuf,
    /// Serialises imports and removals, so a removal's layer cleanup never races an import
    /// that is about to reuse a layer.
    lock: Mutex<()>,
    next_staging: AtomicU64,
    limits: ImageLimits,
}

/// Removes a staging directory when dropped (on success its contents were moved out already).
struct StagingGuard(PathBuf);

impl Drop for StagingGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.0.display(), error = %e, "could not remove staging dir");
            }
        }
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root`, and clears leftovers of interrupted
    /// imports (staging dirs, layers no image refers to).
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        for dir in ["layers", "images", "staging"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(ImageError::io("create store dir", &path))?;
        }
        let staging = root.join("staging");
        for entry in std::fs::read_dir(&staging)
            .map_err(ImageError::io("read", &staging))?
            .flatten()
        {
            let path = entry.path();
            tracing::info!(dir = %path.display(), "removing leftover of an interrupted import");
            std::fs::remove_dir_all(&path)
                .map_err(ImageError::io("remove leftover staging dir", &path))?;
        }
        let store = ImageStore {
            root: root.to_path_buf(),
            lock: Mutex::new(()),
            next_staging: AtomicU64::new(0),
            limits: ImageLimits::default(),
        };
        // Layers moved in by an import that crashed before writing its record.
        store.collect_garbage()?;
        Ok(store)
    }

    /// The same store with other caps on what one import may read and write.
    pub fn with_limits(mut self, limits: ImageLimits) -> ImageStore {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> ImageLimits {
        self.limits
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.root.join("images").join(format!("{name}.json"))
    }

    fn layer_dir(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("layers").join(digest_hex(diff_id, "layer")?))
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock leaves no half-state the next caller could trip on
        // (records are renamed into place), so a poisoned lock is still usable.
        self.lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Imports an image archive (tar or tar.gz holding an OCI image layout or a docker-archive)
    /// under `name`. The same content under the same name again is a no-op; different content
    /// replaces the image only with `replace`, else it is [`ImageError::AlreadyExists`].
    pub fn import(
        &self,
        name: &str,
        archive: impl std::io::Read,
        replace: bool,
    ) -> Result<Image, ImageError> {
        validate_name(name)?;
        let id = self.next_staging.fetch_add(1, Ordering::Relaxed);
        let staging = self
            .root
            .join("staging")
            .join(format!("{}-{id}", std::process::id()));
        let spool_dir = staging.join("spool");
        let layers_dir = staging.join("layers");
        for dir in [&spool_dir, &layers_dir] {
            std::fs::create_dir_all(dir).map_err(ImageError::io("create staging dir", dir))?;
        }
        let _guard = StagingGuard(staging.clone());

        // Reading the stream (maybe a slow upload) and checking it touch only this import's
        // staging dir, so they run without the lock; the store changes below hold it.
        let spool = archive::spool(archive, &spool_dir, &self.limits)?;
        let found = spool.find_image(name)?;
        let _lock = self.locked();
        let existing = match self.get(name) {
            Ok(image) => Some(image),
            Err(ImageError::NotFound(_)) => None,
            // A damaged record is replaced when asked to; otherwise say what is wrong.
            Err(ImageError::Io { .. }) if replace => None,
            Err(e) => return Err(e),
        };
        if let Some(existing) = &existing {
            if existing.digest == found.digest && self.layers_present(existing) {
                tracing::info!(image = name, digest = %existing.digest, "already imported");
                return Ok(existing.clone());
            }
            if existing.digest != found.digest && !replace {
                return Err(ImageError::AlreadyExists(name.to_string()));
            }
        }

        let image = self.unpack_and_commit(name, &found, &layers_dir)?;
        if existing.is_some() {
            self.collect_garbage()?;
        }
        tracing::info!(image = name, digest = %image.digest, layers = image.layers.len(), "imported");
        Ok(image)
    }

    fn layers_present(&self, image: &Image) -> bool {
        image
            .layers
            .iter()
            .all(|l| self.layer_dir(l).map(|d| d.is_dir()).unwrap_or(false))
    }

    /// Unpacks the layers the store lacks, moves them in, and writes the record.
    fn unpack_and_commit(
        &self,
        name: &str,
        found: &Found,
        layers_dir: &Path,
    ) -> Result<Image, ImageError> {
        let mut fresh: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut budget = Budget::new(&self.limits);
        for layer in &found.layers {
            let hex = digest_hex(&layer.diff_id, "layer")?;
            let target = self.root.join("layers").join(hex);
            let staged = layers_dir.join(hex);
            // Shared with an image already in the store, or repeated within this image.
            if target.is_dir() || staged.is_dir() {
                continue;
            }
            std::fs::create_dir(&staged).map_err(ImageError::io("create layer dir", &staged))?;
            // The layer root becomes `/` in the container if the tar has no `./` entry: 0755
            // whatever the daemon's umask.
            std::fs::set_permissions(&staged, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(ImageError::io("chmod layer dir", &staged))?;
            let what = format!("layer {}", layer.diff_id);
            let unpacked = unpack_layer(&layer.blob, &staged, &what, &mut budget)?;
            if unpacked.diff_id != layer.diff_id {
                return Err(ImageError::Malformed(format!(
                    "{what}: uncompressed content has digest {}, the config says {} (corrupt or tampered)",
                    unpacked.diff_id, layer.diff_id
                )));
            }
            tracing::debug!(layer = %layer.diff_id, entries = unpacked.entries, "unpacked");
            fresh.push((staged, target));
        }
        for (staged, target) in &fresh {
            std::fs::rename(staged, target)
                .map_err(ImageError::io("move layer into the store", target))?;
        }
        let image = Image {
            name: name.to_string(),
            digest: found.digest.clone(),
            layers: found.layers.iter().map(|l| l.diff_id.clone()).collect(),
            config: found.config.clone(),
            size_bytes: found.layers.iter().map(|l| l.size).sum(),
            imported_at: rfc3339_now(),
        };
        self.write_record(&image)?;
        Ok(image)
    }

    fn write_record(&self, image: &Image) -> Result<(), ImageError> {
        let path = self.record_path(&image.name);
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(image).map_err(|e| ImageError::Io {
            context: "serialise image record",
            path: path.clone(),
            source: e.into(),
        })?;
        std::fs::write(&tmp, bytes).map_err(ImageError::io("write image record", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(ImageError::io("rename image record", &path))
    }

    pub fn get(&self, name: &str) -> Result<Image, ImageError> {
        validate_name(name)?;
        let path = self.record_path(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::NotFound(name.to_string()))
            }
            Err(e) => return Err(ImageError::io("read image record", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Io {
            context: "parse image record",
            path,
            source: e.into(),
        })
    }

    /// All images, by name. A record that cannot be read is logged and left out, so one
    /// damaged file does not hide the other images.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        Ok(self.records()?.0)
    }

    /// The readable records, and how many records could not be read.
    fn records(&self) -> Result<(Vec<Image>, usize), ImageError> {
        let dir = self.root.join("images");
        let mut images = Vec::new();
        let mut unreadable = 0;
        for entry in std::fs::read_dir(&dir).map_err(ImageError::io("read", &dir))? {
            let entry = entry.map_err(ImageError::io("read", &dir))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file_name.strip_suffix(".json") else {
                continue;
            };
            match self.get(name) {
                Ok(image) => images.push(image),
                // Removed between read_dir and get, or a stray file: not an image.
                Err(ImageError::NotFound(_) | ImageError::InvalidName(_)) => {}
                Err(e) => {
                    tracing::warn!(record = %entry.path().display(), error = %e, "unreadable image record");
                    unreadable += 1;
                }
            }
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok((images, unreadable))
    }

    /// Removes an image; layers other images use stay.
    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        validate_name(name)?;
        let _lock = self.locked();
        let path = self.record_path(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::NotFound(name.to_string()))
            }
            Err(e) => return Err(ImageError::io("remove image record", &path)(e)),
        }
        self.collect_garbage()?;
        tracing::info!(image = name, "removed");
        Ok(())
    }

    /// Removes layers no image refers to. Called with the lock held (or from `open`).
    fn collect_garbage(&self) -> Result<(), ImageError> {
        let (images, unreadable) = self.records()?;
        if unreadable > 0 {
            // Their layers are unknown, so removing "unused" ones could break those images.
            tracing::warn!(
                unreadable,
                "skipping layer cleanup: some image records cannot be read"
            );
            return Ok(());
        }
        let used: std::collections::HashSet<String> = images
            .iter()
            .flat_map(|i| i.layers.iter())
            .filter_map(|l| digest_hex(l, "layer").ok().map(str::to_string))
            .collect();
        // A container still running on a removed or replaced image keeps its layers: deleting
        // a mounted lowerdir would pull files from under it. They go at a later cleanup.
        let mounted = mounted_layers();
        let dir = self.root.join("layers");
        for entry in std::fs::read_dir(&dir).map_err(ImageError::io("read", &dir))? {
            let entry = entry.map_err(ImageError::io("read", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if mounted.contains(&name) && !used.contains(&name) {
                tracing::info!(layer = %name, "unused layer still mounted; kept for now");
            } else if !used.contains(&name) {
                let path = entry.path();
                std::fs::remove_dir_all(&path)
                    .map_err(ImageError::io("remove unused layer", &path))?;
                tracing::debug!(layer = %name, "removed unused layer");
            }
        }
        Ok(())
    }

    /// The image's unpacked layer directories in overlayfs `lowerdir` order (top-most first).
    /// A layer that occurs twice is listed once, at its top-most place: overlayfs refuses a
    /// lowerdir given twice (ELOOP), and the lower copy is entirely covered by the upper one.
    pub fn lower_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for layer in image.layers.iter().rev() {
            let dir = self.layer_dir(layer)?;
            if !dir.is_dir() {
                return Err(ImageError::NotFound(format!(
                    "{} (its layer {layer} is missing from the store)",
                    image.name
                )));
            }
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        Ok(dirs)
    }
}

/// Hex digests of layer directories (`.../layers/<hex>`) that some overlay mount of this
/// mount namespace uses. Matching on the name alone errs on the side of keeping a layer.
fn mounted_layers() -> std::collections::HashSet<String> {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Default::default();
    };
    let mut found = std::collections::HashSet::new();
    for line in mounts.lines().filter(|l| l.contains(" overlay ")) {
        for (i, _) in line.match_indices("/layers/") {
            let rest = &line[i + "/layers/".len()..];
            if let Some(hex) = rest.get(..64) {
                if hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    found.insert(hex.to_string());
                }
            }
        }
    }
    found
}

/// Now as RFC 3339 UTC (`2026-11-27T19:05:00Z`), without a date-time dependency.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_807_845), "2026-11-27T19:30:45Z");
    }

    #[test]
    fn open_clears_leftovers_and_get_reports_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        let left = tmp.path().join("staging/123-0/spool");
        std::fs::create_dir_all(&left).unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        assert!(!tmp.path().join("staging/123-0").exists());
        assert!(matches!(store.get("nothing"), Err(ImageError::NotFound(_))));
        assert!(matches!(
            store.remove("nothing"),
            Err(ImageError::NotFound(_))
        ));
        assert!(matches!(store.get("../x"), Err(ImageError::InvalidName(_))));
        assert!(store.list().unwrap().is_empty());

        // A layer no record refers to (an import died between moving it in and writing the
        // record) is removed at the next open.
        std::fs::create_dir_all(tmp.path().join("layers").join("ab".repeat(32)).join("etc"))
            .unwrap();
        drop(store);
        ImageStore::open(tmp.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(tmp.path().join("layers"))
                .unwrap()
                .count(),
            0
        );

        // A damaged record: open and list still work, and no layer is collected meanwhile.
        std::fs::write(tmp.path().join("images/broken.json"), b"{not json").unwrap();
        std::fs::create_dir_all(tmp.path().join("layers").join("cd".repeat(32))).unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        assert!(store.list().unwrap().is_empty());
        let layers = std::fs::read_dir(tmp.path().join("layers")).unwrap();
        assert_eq!(layers.count(), 1);
        assert!(matches!(store.get("broken"), Err(ImageError::Io { .. })));
    }
}
