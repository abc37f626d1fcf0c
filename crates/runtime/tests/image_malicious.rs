//! Hostile image archives: path traversal, absolute paths, symlinks and hardlinks that point
//! outside, writes through planted symlinks, device nodes, truncated and corrupt streams. Each
//! must be refused with a Malformed error naming the entry, leave the store empty (no layers,
//! records or staging leftovers), and write nothing outside the store.

#[path = "image_fixtures.rs"]
mod fixtures;

use std::path::Path;

use ferry_runtime::image::ImageError;
use fixtures::{docker_archive, gzip, Blob, Layer, Oci, Sandbox};

/// A sandbox with a directory `outside/` holding `victim`, a file hostile layers aim at.
fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path().join("outside")).unwrap();
    std::fs::write(sb.path().join("outside/victim"), b"original").unwrap();
    sb
}

/// Imports a one-layer OCI archive (and the same layer as a docker-archive) and checks the
/// import fails naming `needle`, and that nothing changed outside the store.
fn assert_rejected(sb: &Sandbox, layer: Vec<u8>, needle: &str) {
    let archives = [
        ("oci", Oci::new(vec![Blob::gzip(layer.clone())]).archive()),
        ("docker", docker_archive(&[Blob::plain(layer)])),
    ];
    for (format, archive) in archives {
        let err = sb.store.import("evil", &archive[..], false).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ImageError::Malformed(_)), "{format}: {msg}");
        assert!(
            msg.contains(needle),
            "{format}: '{msg}' does not name '{needle}'"
        );
        sb.assert_store_empty();
        assert_outside_untouched(sb);
    }
}

fn assert_outside_untouched(sb: &Sandbox) {
    assert!(
        sb.entries_beside_store(&["outside"]).is_empty(),
        "{:?}",
        sb.entries_beside_store(&["outside"])
    );
    let mut names: Vec<_> = std::fs::read_dir(sb.path().join("outside"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["victim"], "files appeared outside the store");
    assert_eq!(
        std::fs::read(sb.path().join("outside/victim")).unwrap(),
        b"original"
    );
}

/// From a layer dir (`<tmp>/store/staging/<id>/layers/<hex>`), this climbs to `<tmp>`.
const TO_SANDBOX: &str = "../../../../../";

#[test]
fn parent_dir_components() {
    let sb = sandbox();
    let name = format!("{TO_SANDBOX}escape");
    assert_rejected(
        &sb,
        Layer::new()
            .file("ok", b"ok", 0o644)
            .raw(&name, tar::EntryType::Regular, "", b"pwned")
            .tar(),
        "'..'",
    );
    assert_rejected(
        &sb,
        Layer::new()
            .raw(
                "a/../../outside/victim",
                tar::EntryType::Regular,
                "",
                b"pwned",
            )
            .tar(),
        "'..'",
    );
    assert_rejected(
        &sb,
        Layer::new()
            .raw("../x", tar::EntryType::Directory, "", b"")
            .tar(),
        "../x",
    );
}

#[test]
fn absolute_paths() {
    let sb = sandbox();
    let target = sb.path().join("outside/abs-pwned");
    let name = target.to_str().unwrap();
    assert_rejected(
        &sb,
        Layer::new()
            .raw(name, tar::EntryType::Regular, "", b"pwned")
            .tar(),
        "absolute",
    );
    assert!(!target.exists());
}

#[test]
fn relative_symlink_escaping_the_layer() {
    let sb = sandbox();
    let target = format!("{TO_SANDBOX}outside/victim");
    assert_rejected(
        &sb,
        Layer::new().symlink("evil", &target).tar(),
        "points outside",
    );
    assert_rejected(
        &sb,
        Layer::new().dir("a").symlink("a/up", "../..").tar(),
        "a/up",
    );
}

#[test]
fn writes_through_a_planted_symlink_are_refused() {
    let sb = sandbox();
    let outside = sb.path().join("outside");
    let outside = outside.to_str().unwrap();
    // An absolute symlink is fine by itself (it resolves in the container's root at run time),
    // but the unpacker must never follow it: a file, a dir, a whiteout or an opaque marker
    // "under" it would land outside.
    let cases = [
        Layer::new()
            .symlink("link", outside)
            .file("link/pwned", b"pwned", 0o644)
            .tar(),
        Layer::new()
            .symlink("link", outside)
            .dir("link/pwned")
            .tar(),
        Layer::new()
            .symlink("link", outside)
            .whiteout("link", "victim")
            .tar(),
        Layer::new().symlink("link", outside).opaque("link").tar(),
        // A relative link that stays inside the layer is fine too, but is not followed either.
        Layer::new()
            .dir("d")
            .symlink("d/self", "..")
            .file("d/self/x", b"x", 0o644)
            .tar(),
    ];
    for layer in cases {
        assert_rejected(&sb, layer, "symlink");
    }
}

#[test]
fn replacing_a_symlink_with_a_file_does_not_write_through_it() {
    // Legal: a later entry replaces the link itself. The victim must stay untouched.
    let sb = sandbox();
    let victim = sb.path().join("outside/victim");
    let layer = Layer::new()
        .symlink("f", victim.to_str().unwrap())
        .file("f", b"replaced", 0o644)
        .tar();
    let image = sb
        .store
        .import(
            "ok",
            &Oci::new(vec![Blob::gzip(layer)]).archive()[..],
            false,
        )
        .unwrap();
    let lower = sb.store.lower_dirs(&image).unwrap();
    let meta = std::fs::symlink_metadata(lower[0].join("f")).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(std::fs::read(lower[0].join("f")).unwrap(), b"replaced");
    assert_outside_untouched(&sb);
}

#[test]
fn hardlinks_outside_or_to_nothing() {
    let sb = sandbox();
    let victim = sb.path().join("outside/victim");
    let abs = victim.to_str().unwrap();
    let up = format!("{TO_SANDBOX}outside/victim");
    let outside = sb.path().join("outside");
    let cases = [
        (Layer::new().hardlink("h", abs).tar(), "outside the layer"),
        (Layer::new().hardlink("h", &up).tar(), "outside the layer"),
        (
            Layer::new()
                .hardlink("h", "later")
                .file("later", b"x", 0o644)
                .tar(),
            "not a file earlier",
        ),
        (
            Layer::new()
                .symlink("link", outside.to_str().unwrap())
                .hardlink("h", "link/victim")
                .tar(),
            "not a file earlier",
        ),
        (Layer::new().hardlink("h", "h").tar(), "not a file earlier"),
    ];
    for (layer, needle) in cases {
        assert_rejected(&sb, layer, needle);
    }
    // The victim still has exactly one link: nothing hard-linked it into the store.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&victim).unwrap().nlink(), 1);
}

#[test]
fn device_nodes() {
    let sb = sandbox();
    assert_rejected(
        &sb,
        Layer::new().device("mem", tar::EntryType::Char, 1, 1).tar(),
        "device",
    );
    assert_rejected(
        &sb,
        Layer::new()
            .device("sda", tar::EntryType::Block, 8, 0)
            .tar(),
        "device",
    );
    // A char device 0:0 is an overlayfs whiteout already: accepted.
    let ok = Layer::new()
        .device("gone", tar::EntryType::Char, 0, 0)
        .tar();
    sb.store
        .import("ok", &Oci::new(vec![Blob::plain(ok)]).archive()[..], false)
        .unwrap();
}

#[test]
fn truncated_gzip_layer_leaves_nothing_behind() {
    let sb = sandbox();
    let content: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let tar = Layer::new()
        .file("big", &content, 0o644)
        .file("small", b"s", 0o644)
        .tar();
    let gz = gzip(&tar);
    for cut in [gz.len() - 4, gz.len() / 2] {
        // The manifest describes the truncated blob exactly, so only the decoder can notice.
        let blob = Blob {
            bytes: gz[..cut].to_vec(),
            diff_id: fixtures::sha256(&tar),
        };
        let archive = Oci::new(vec![blob]).archive();
        let err = sb.store.import("cut", &archive[..], false).unwrap_err();
        assert!(matches!(err, ImageError::Malformed(_)), "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
        sb.assert_store_empty();
    }
    assert_outside_untouched(&sb);
}

#[test]
fn truncated_or_corrupt_archive_stream() {
    let sb = sandbox();
    let archive = Oci::new(vec![Blob::gzip(
        Layer::new().file("f", &[7u8; 50_000], 0o644).tar(),
    )])
    .archive();
    let gz = gzip(&archive);
    for (what, bytes) in [
        ("gzip cut short", gz[..gz.len() - 8].to_vec()),
        ("gzip cut in half", gz[..gz.len() / 2].to_vec()),
        (
            "tar cut mid-entry",
            archive[..archive.len() / 2 + 100].to_vec(),
        ),
    ] {
        let err = sb.store.import("cut", &bytes[..], false).unwrap_err();
        assert!(matches!(err, ImageError::Malformed(_)), "{what}: {err}");
        sb.assert_store_empty();
    }
    // A header with a broken checksum.
    let mut corrupt = archive.clone();
    corrupt[0] ^= 0x55;
    let err = sb.store.import("corrupt", &corrupt[..], false).unwrap_err();
    assert!(matches!(err, ImageError::Malformed(_)), "{err}");
    sb.assert_store_empty();
    assert_outside_untouched(&sb);
}

#[test]
fn hostile_outer_archive_paths_are_never_used_as_paths() {
    let sb = sandbox();
    // The outer archive's names are only keys: `../` is refused outright, and nothing is created.
    let outer = Layer::new()
        .raw("../../outside/pwned", tar::EntryType::Regular, "", b"x")
        .tar();
    let err = sb.store.import("x", &outer[..], false).unwrap_err();
    assert!(err.to_string().contains("'..'"), "{err}");
    let abs = sb.path().join("outside/abs");
    let outer = Layer::new()
        .raw(abs.to_str().unwrap(), tar::EntryType::Regular, "", b"x")
        .tar();
    assert!(sb.store.import("x", &outer[..], false).is_err());
    sb.assert_store_empty();
    assert_outside_untouched(&sb);
    assert!(!Path::new(&abs).exists());
}

#[test]
fn absurd_nesting_is_refused() {
    let sb = sandbox();
    let deep = "d/".repeat(200) + "f";
    let mut layer = Layer::new();
    // The builder writes long names as GNU long-name records, as real tools do.
    layer = layer.file(&deep, b"x", 0o644);
    assert_rejected(&sb, layer.tar(), "nested over");
}

/// Random corruption of a valid archive (plain and gzip, OCI and docker) must give an error or
/// a valid import, never a panic, and a failed import must leave nothing behind.
#[test]
fn random_corruption_never_panics_or_leaks() {
    let sb = sandbox();
    let layer = Layer::new()
        .dir("etc")
        .file("etc/conf", b"conf", 0o644)
        .symlink("etc/link", "conf")
        .hardlink("etc/hard", "etc/conf")
        .whiteout("etc", "old")
        .opaque("etc")
        .tar();
    let bases = [
        Oci::new(vec![Blob::plain(layer.clone())]).archive(),
        gzip(&Oci::new(vec![Blob::gzip(layer.clone())]).archive()),
        docker_archive(&[Blob::plain(layer)]),
    ];
    // xorshift: deterministic, so a failure can be replayed.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut ok, mut rejected) = (0, 0);
    for round in 0..300 {
        let mut bytes = bases[round % bases.len()].clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] = next() as u8;
        }
        if next() % 5 == 0 {
            bytes.truncate((next() % bytes.len() as u64) as usize);
        }
        match sb.store.import("fuzz", &bytes[..], true) {
            Ok(_) => {
                ok += 1;
                sb.store.remove("fuzz").unwrap();
            }
            Err(ImageError::Malformed(_)) => rejected += 1,
            Err(e) => panic!("round {round}: not a Malformed error: {e}"),
        }
        sb.assert_store_empty();
    }
    assert_outside_untouched(&sb);
    // Most corruptions must be caught (digests cover every byte that matters).
    assert!(rejected > ok, "ok {ok}, rejected {rejected}");
}

/// A gzip stream that inflates to a tar holding one file `name` of `size` zero bytes, built
/// without ever holding (or compressing) those bytes: the zeros are one small gzip member
/// repeated, which multi-member gzip readers concatenate.
fn gzip_bomb(name: &str, size: u64) -> Vec<u8> {
    const CHUNK: u64 = 8 << 20;
    assert_eq!(size % CHUNK, 0);
    let mut header = tar::Header::new_gnu();
    header.set_path(name).unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let zeros = gzip(&vec![0u8; CHUNK as usize]);
    let mut out = gzip(header.as_bytes());
    for _ in 0..size / CHUNK {
        out.extend_from_slice(&zeros);
    }
    out.extend_from_slice(&gzip(&[0u8; 1024])); // the tar's end
    out
}

fn assert_too_large(sb: &Sandbox, archive: &[u8], needle: &str) {
    let started = std::time::Instant::now();
    let err = sb.store.import("bomb", archive, false).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::TooLarge(_)), "{msg}");
    assert!(msg.contains(needle), "'{msg}' does not mention '{needle}'");
    sb.assert_store_empty();
    eprintln!("refused in {:?}: {msg}", started.elapsed());
}

#[test]
fn a_gzip_bomb_layer_is_refused_at_the_ratio_and_leaves_nothing() {
    let sb = sandbox();
    // 1 GiB of zeros in about 1 MiB: far past the ratio once 64 MiB are out.
    let bomb = gzip_bomb("zeros", 1 << 30);
    assert!(
        (1u64 << 30) / bomb.len() as u64 > 200,
        "a bomb: {} bytes",
        bomb.len()
    );
    let layer = Blob {
        bytes: bomb,
        // Never reached: the ratio stops the layer first (else the import would fail later,
        // on this digest, after writing 1 GiB).
        diff_id: fixtures::sha256(b"unknown"),
    };
    let archive = Oci::new(vec![layer]).archive();
    assert_too_large(&sb, &archive, "gzip bomb");
    assert_outside_untouched(&sb);
}

#[test]
fn a_gzip_bomb_archive_is_refused_at_the_ratio() {
    let sb = sandbox();
    assert_too_large(&sb, &gzip_bomb("blobs/big", 1 << 30), "gzip bomb");
}

#[test]
fn images_over_the_host_limits_are_refused() {
    use ferry_runtime::image::{ImageLimits, ImageStore};
    let layer = (0..50).fold(Layer::new(), |l, i| {
        l.file(&format!("f{i}"), &[b'x'; 4096], 0o644)
    });
    let archive = Oci::new(vec![Blob::gzip(layer.tar())]).archive();
    let limited = |limits: ImageLimits| {
        let sb = sandbox();
        let store = ImageStore::open(&sb.store_dir(""))
            .unwrap()
            .with_limits(limits);
        Sandbox { store, ..sb }
    };
    let defaults = ImageLimits::default();
    let cases = [
        (
            ImageLimits {
                entries: 20,
                ..defaults
            },
            "20 entries",
        ),
        (
            ImageLimits {
                unpacked_bytes: 100 << 10,
                ..defaults
            },
            "--max-image-mib",
        ),
        (
            ImageLimits {
                archive_bytes: 2048,
                ..defaults
            },
            "--max-archive-mib",
        ),
    ];
    for (limits, needle) in cases {
        assert_too_large(&limited(limits), &archive, needle);
    }
    // Within the limits the same archive imports.
    let sb = limited(ImageLimits {
        entries: 60,
        unpacked_bytes: 1 << 20,
        ..defaults
    });
    sb.store.import("ok", &archive[..], false).unwrap();
}
