//! Builders for image archives used by the image store tests (`image_import.rs`,
//! `image_malicious.rs` include this file as a module): layer tars with any entry, hostile ones
//! included (raw header bytes bypass the tar crate's own path checks), OCI image layouts and
//! docker-archives around them, and a sandbox that can tell whether anything escaped the store.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A layer tar, entry by entry.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_700_000_000);
        h
    }

    pub fn dir(mut self, path: &str) -> Layer {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.builder
            .append_data(&mut h, path, std::io::empty())
            .unwrap();
        self
    }

    pub fn file(mut self, path: &str, data: &[u8], mode: u32) -> Layer {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.builder.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Layer {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(self, path: &str, target: &str) -> Layer {
        // Raw, because the builder would refuse hostile targets.
        self.raw(path, tar::EntryType::Link, target, b"")
    }

    /// An empty `.wh.NAME` file hiding `dir/NAME`.
    pub fn whiteout(self, dir: &str, name: &str) -> Layer {
        let path = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&path, b"", 0o644)
    }

    pub fn opaque(self, dir: &str) -> Layer {
        self.file(&format!("{dir}/.wh..wh..opq"), b"", 0o644)
    }

    pub fn device(mut self, path: &str, kind: tar::EntryType, major: u32, minor: u32) -> Layer {
        let mut h = Self::header(kind, 0o600, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.builder
            .append_data(&mut h, path, std::io::empty())
            .unwrap();
        self
    }

    /// A regular file preceded by a PAX header carrying `SCHILY.xattr.*` records.
    pub fn file_with_xattrs(mut self, path: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> Layer {
        let mut pax = Vec::new();
        for (name, value) in xattrs {
            let body_len = format!(" SCHILY.xattr.{name}=").len() + value.len() + 1;
            // The record's length counts its own digits.
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len = len.to_string().len() + body_len;
            }
            pax.extend_from_slice(format!("{len} SCHILY.xattr.{name}=").as_bytes());
            pax.extend_from_slice(value);
            pax.push(b'\n');
        }
        let mut h = Self::header(tar::EntryType::XHeader, 0o644, pax.len() as u64);
        self.builder
            .append_data(&mut h, "PaxHeader", &pax[..])
            .unwrap();
        self.file(path, data, 0o644)
    }

    /// An entry whose name and link name are written straight into the header bytes, so
    /// `../x`, `/abs` and friends reach the archive as an attacker would write them.
    pub fn raw(mut self, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Layer {
        let mut h = Self::header(kind, 0o644, data.len() as u64);
        {
            let old = h.as_old_mut();
            old.name = [0; 100];
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname = [0; 100];
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub fn tar(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

/// A layer as it goes into an archive: the blob bytes and the digest of its uncompressed tar.
pub struct Blob {
    pub bytes: Vec<u8>,
    pub diff_id: String,
}

impl Blob {
    pub fn plain(tar: Vec<u8>) -> Blob {
        Blob {
            diff_id: sha256(&tar),
            bytes: tar,
        }
    }

    pub fn gzip(tar: Vec<u8>) -> Blob {
        Blob {
            diff_id: sha256(&tar),
            bytes: gzip(&tar),
        }
    }
}

pub fn config_json(entrypoint: &[&str], diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Entrypoint": entrypoint, "Env": ["PATH=/bin", "A=b"], "WorkingDir": "/srv", "User": "1000:1000" },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap()
}

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data).unwrap();
}

/// Parts of an OCI image layout, so tests can tamper with any of them.
pub struct Oci {
    pub layers: Vec<Blob>,
    pub config: Vec<u8>,
    pub layer_media_type: &'static str,
}

impl Oci {
    pub fn new(layers: Vec<Blob>) -> Oci {
        let ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        Oci {
            config: config_json(&["/bin/app", "--serve"], &ids),
            layers,
            layer_media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        }
    }

    pub fn manifest(&self) -> Vec<u8> {
        let layers: Vec<_> = self
            .layers
            .iter()
            .map(|l| serde_json::json!({"mediaType": self.layer_media_type, "digest": sha256(&l.bytes), "size": l.bytes.len()}))
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&self.config), "size": self.config.len()},
            "layers": layers,
        }))
        .unwrap()
    }

    pub fn manifest_digest(&self) -> String {
        sha256(&self.manifest())
    }

    /// The archive; `tamper` may swap the content stored under a blob's digest name.
    pub fn archive_with(&self, tamper: impl Fn(&str, Vec<u8>) -> Vec<u8>) -> Vec<u8> {
        let manifest = self.manifest();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&manifest), "size": manifest.len(),
                           "annotations": {"org.opencontainers.image.ref.name": "test"}}],
        }))
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        append(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        append(&mut b, "index.json", &index);
        let mut blobs: Vec<&[u8]> = vec![&manifest, &self.config];
        blobs.extend(self.layers.iter().map(|l| &l.bytes[..]));
        for blob in blobs {
            let digest = sha256(blob);
            let data = tamper(&digest, blob.to_vec());
            append(&mut b, &format!("blobs/sha256/{}", &digest[7..]), &data);
        }
        b.into_inner().unwrap()
    }

    pub fn archive(&self) -> Vec<u8> {
        self.archive_with(|_, data| data)
    }
}

/// A docker-archive (`docker save` layout: `<hex>.json`, `<id>/layer.tar`, `manifest.json` last).
pub fn docker_archive(layers: &[Blob]) -> Vec<u8> {
    docker_archive_multi(&[(layers, "app:latest")])
}

/// A docker-archive holding several images, each with one RepoTag.
pub fn docker_archive_multi(images: &[(&[Blob], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut entries = Vec::new();
    for (n, (layers, tag)) in images.iter().enumerate() {
        let ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let config = config_json(&["/bin/app", "--serve"], &ids);
        let config_name = format!("{}.json", &sha256(&config)[7..]);
        append(&mut b, &config_name, &config);
        let mut paths = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let path = format!("image{n}-layer{i}/layer.tar");
            append(&mut b, &path, &layer.bytes);
            paths.push(path);
        }
        entries
            .push(serde_json::json!({"Config": config_name, "RepoTags": [tag], "Layers": paths}));
    }
    append(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&entries).unwrap(),
    );
    b.into_inner().unwrap()
}

/// An OCI image layout holding several images, each named by a ref.name annotation.
pub fn oci_layout_multi(images: &[(&Oci, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut manifests = Vec::new();
    let mut blobs: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for (oci, name) in images {
        let manifest = oci.manifest();
        manifests.push(
            serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(&manifest), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": name}}),
        );
        for blob in [manifest, oci.config.clone()]
            .into_iter()
            .chain(oci.layers.iter().map(|l| l.bytes.clone()))
        {
            blobs.insert(sha256(&blob)[7..].to_string(), blob);
        }
    }
    append(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    append(&mut b, "index.json", &serde_json::to_vec(&index).unwrap());
    for (hex, blob) in blobs {
        append(&mut b, &format!("blobs/sha256/{hex}"), &blob);
    }
    b.into_inner().unwrap()
}

/// The same archive with every entry moved under `dir/` (as `tar cf x.tar dir/` makes it).
pub fn under_dir(archive: &[u8], dir: &str) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut input = tar::Archive::new(archive);
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = format!("{dir}/{}", entry.path().unwrap().display());
        let mut header = entry.header().clone();
        out.append_data(&mut header, path, &mut entry).unwrap();
    }
    out.into_inner().unwrap()
}

/// A temp dir with the store at `<tmp>/store`, so a test can check nothing was written beside it.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub store: ferry_runtime::image::ImageStore,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let store = ferry_runtime::image::ImageStore::open(&tmp.path().join("store")).unwrap();
        Sandbox { tmp, store }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    pub fn store_dir(&self, sub: &str) -> PathBuf {
        self.tmp.path().join("store").join(sub)
    }

    /// Names in the sandbox beside `store` (other than the ones a test made itself).
    pub fn entries_beside_store(&self, expected: &[&str]) -> Vec<String> {
        std::fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "store" && !expected.contains(&n.as_str()))
            .collect()
    }

    pub fn count(&self, sub: &str) -> usize {
        std::fs::read_dir(self.store_dir(sub)).unwrap().count()
    }

    /// A failed import must leave the store as it was: no layers, records or staging left.
    pub fn assert_store_empty(&self) {
        for sub in ["layers", "images", "staging"] {
            assert_eq!(self.count(sub), 0, "store/{sub} is not empty");
        }
    }
}
