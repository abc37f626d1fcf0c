//! Builds an OCI image layout tar with one layer from files on disk: how the build packages
//! `ferry-counter` (a static binary on a minimal root filesystem) without a registry or docker.
//!
//! The output is deterministic: entries sorted, owner root, mtime 0, gzip header without a
//! timestamp, JSON with a fixed field order. Packing the same files gives the same digest.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use flate2::write::GzEncoder;

use super::format::{
    host_arch, sha256_digest, ConfigFile, ContainerConfig, Descriptor, Index, Manifest, OciLayout,
    RootFs, ANNOTATION_REF_NAME, MEDIA_CONFIG, MEDIA_INDEX, MEDIA_LAYER_GZIP, MEDIA_MANIFEST,
};
use super::{validate_name, ImageConfig, ImageError};

/// A file to put into the image.
#[derive(Debug, Clone)]
pub struct PackFile {
    /// The file on disk.
    pub source: PathBuf,
    /// Its absolute path inside the image, e.g. `/ferry-counter`.
    pub dest: String,
    /// Permission bits, e.g. `0o755`.
    pub mode: u32,
}

/// The directories of the minimal root filesystem every packed image gets (runc mounts
/// /proc, /dev, /sys over them; /tmp is the usual scratch space).
const BASE_DIRS: [(&str, u32); 5] = [
    ("dev", 0o755),
    ("etc", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("tmp", 0o1777),
];

enum Node<'a> {
    Dir(u32),
    File(&'a PackFile),
}

/// Writes an OCI image layout tar holding one image (one gzip layer made of `files`, the given
/// config), named `reference` in index.json. Returns the manifest digest.
pub fn pack_oci_archive(
    files: &[PackFile],
    config: &ImageConfig,
    reference: &str,
    out: impl Write,
) -> Result<String, ImageError> {
    validate_name(reference)?;
    if files.is_empty() {
        return Err(ImageError::Malformed("pack: no files given".into()));
    }
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    for (dir, mode) in BASE_DIRS {
        nodes.insert(dir.to_string(), Node::Dir(mode));
    }
    for file in files {
        let rel = dest_path(&file.dest)?;
        let parts: Vec<&str> = rel.split('/').collect();
        for i in 1..parts.len() {
            nodes
                .entry(parts[..i].join("/"))
                .or_insert(Node::Dir(0o755));
        }
        if let Some(Node::File(_)) = nodes.insert(rel.clone(), Node::File(file)) {
            return Err(ImageError::Malformed(format!(
                "pack: '{}' is given twice",
                file.dest
            )));
        }
    }
    // A file cannot also be the parent of another entry.
    for (path, node) in &nodes {
        if matches!(node, Node::File(_))
            && nodes
                .range(format!("{path}/")..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(&format!("{path}/")))
        {
            return Err(ImageError::Malformed(format!(
                "pack: '/{path}' is a file and a directory"
            )));
        }
    }

    let layer_tar = build_layer(&nodes)?;
    let diff_id = sha256_digest(&layer_tar);
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&layer_tar)
        .map_err(ImageError::io("compress layer", "<memory>"))?;
    let layer = gz
        .finish()
        .map_err(ImageError::io("compress layer", "<memory>"))?;

    let config_json = to_json(&ConfigFile {
        architecture: host_arch().into(),
        os: "linux".into(),
        config: Some(ContainerConfig::from_image_config(config)),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id],
        },
    })?;
    let manifest_json = to_json(&Manifest {
        schema_version: 2,
        media_type: Some(MEDIA_MANIFEST.into()),
        config: descriptor(MEDIA_CONFIG, &config_json, None),
        layers: vec![descriptor(MEDIA_LAYER_GZIP, &layer, None)],
    })?;
    let manifest_digest = sha256_digest(&manifest_json);
    let annotations = BTreeMap::from([(ANNOTATION_REF_NAME.to_string(), reference.to_string())]);
    let index_json = to_json(&Index {
        schema_version: 2,
        media_type: Some(MEDIA_INDEX.into()),
        manifests: vec![descriptor(
            MEDIA_MANIFEST,
            &manifest_json,
            Some(annotations),
        )],
    })?;
    let layout_json = to_json(&OciLayout {
        image_layout_version: "1.0.0".into(),
    })?;

    let mut blobs: BTreeMap<String, &[u8]> = BTreeMap::new();
    for blob in [&layer[..], &config_json[..], &manifest_json[..]] {
        blobs.insert(sha256_digest(blob)[7..].to_string(), blob);
    }
    let mut outer = tar::Builder::new(out);
    let io = |e| ImageError::io("write archive", "<output>")(e);
    append_dir(&mut outer, "blobs/").map_err(io)?;
    append_dir(&mut outer, "blobs/sha256/").map_err(io)?;
    for (hex, bytes) in &blobs {
        append_file(&mut outer, &format!("blobs/sha256/{hex}"), 0o644, bytes).map_err(io)?;
    }
    append_file(&mut outer, "index.json", 0o644, &index_json).map_err(io)?;
    append_file(&mut outer, "oci-layout", 0o644, &layout_json).map_err(io)?;
    outer.into_inner().map_err(io)?.flush().map_err(io)?;
    Ok(manifest_digest)
}

/// `/a/b` -> `a/b`, refusing anything but a clean absolute path.
fn dest_path(dest: &str) -> Result<String, ImageError> {
    let path = Path::new(dest);
    let bad = || {
        ImageError::Malformed(format!(
            "pack: destination '{dest}' must be a clean absolute path like /app"
        ))
    };
    if !path.is_absolute() {
        return Err(bad());
    }
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => parts.push(n.to_str().ok_or_else(bad)?.to_string()),
            _ => return Err(bad()),
        }
    }
    if parts.is_empty() {
        return Err(bad());
    }
    Ok(parts.join("/"))
}

fn build_layer(nodes: &BTreeMap<String, Node>) -> Result<Vec<u8>, ImageError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, node) in nodes {
        let io = |e| ImageError::io("add to layer", path.as_str())(e);
        match node {
            Node::Dir(mode) => {
                append_dir_mode(&mut builder, &format!("{path}/"), *mode).map_err(io)?
            }
            Node::File(f) => {
                let data = std::fs::read(&f.source).map_err(ImageError::io("read", &f.source))?;
                append_file(&mut builder, path, f.mode, &data).map_err(io)?;
            }
        }
    }
    builder
        .into_inner()
        .map_err(ImageError::io("finish layer", "<memory>"))
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str) -> std::io::Result<()> {
    append_dir_mode(b, path, 0o755)
}

fn append_dir_mode<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
) -> std::io::Result<()> {
    let mut h = header(tar::EntryType::Directory, mode, 0);
    b.append_data(&mut h, path, std::io::empty())
}

fn append_file<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, path, data)
}

fn descriptor(
    media_type: &str,
    bytes: &[u8],
    annotations: Option<BTreeMap<String, String>>,
) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
        platform: None,
        annotations,
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(value).map_err(|e| ImageError::Io {
        context: "serialise",
        path: "<json>".into(),
        source: e.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_validated() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("app");
        std::fs::write(&src, b"#!/bin/sh\necho hi\n").unwrap();
        let files = vec![PackFile {
            source: src.clone(),
            dest: "/usr/bin/app".into(),
            mode: 0o755,
        }];
        let config = ImageConfig {
            entrypoint: vec!["/usr/bin/app".into()],
            ..Default::default()
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let da = pack_oci_archive(&files, &config, "app:1", &mut a).unwrap();
        let db = pack_oci_archive(&files, &config, "app:1", &mut b).unwrap();
        assert_eq!(da, db);
        assert_eq!(a, b);
        assert!(da.starts_with("sha256:"));

        for bad in ["relative", "/a/../b", "/"] {
            let f = vec![PackFile {
                source: src.clone(),
                dest: bad.into(),
                mode: 0o644,
            }];
            assert!(
                matches!(
                    pack_oci_archive(&f, &config, "app", Vec::new()),
                    Err(ImageError::Malformed(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            pack_oci_archive(&files, &config, "Bad Ref", Vec::new()),
            Err(ImageError::InvalidName(_))
        ));
    }
}
