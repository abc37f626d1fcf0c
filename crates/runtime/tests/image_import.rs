//! Image store: importing good OCI layouts and docker-archives (gzip and plain layers, whole
//! archive gzip), whiteouts and opaque directories seen through a real overlay mount, layer
//! sharing, idempotent re-import and replace, and the errors for bad names, unknown images and
//! content that does not match its digest.

#[path = "image_fixtures.rs"]
mod fixtures;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ferry_runtime::image::{pack_oci_archive, ImageConfig, ImageError, PackFile};
use fixtures::{
    docker_archive, docker_archive_multi, gzip, oci_layout_multi, Blob, Layer, Oci, Sandbox,
};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn pack_then_import_round_trip() {
    let sb = Sandbox::new();
    let src = sb.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let binary: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("app"), &binary).unwrap();
    std::fs::write(src.join("conf"), b"port=8080\n").unwrap();
    let files = vec![
        PackFile {
            source: src.join("app"),
            dest: "/ferry-counter".into(),
            mode: 0o755,
        },
        PackFile {
            source: src.join("conf"),
            dest: "/etc/app/app.conf".into(),
            mode: 0o640,
        },
    ];
    let config = ImageConfig {
        entrypoint: vec!["/ferry-counter".into()],
        cmd: vec!["--port".into(), "8080".into()],
        env: vec!["RUST_LOG=info".into()],
        working_dir: Some("/".into()),
        user: None,
    };
    let mut archive = Vec::new();
    let digest = pack_oci_archive(&files, &config, "counter:1", &mut archive).unwrap();

    let image = sb.store.import("counter:1", &archive[..], false).unwrap();
    assert_eq!(image.digest, digest);
    assert_eq!(image.config, config);
    assert_eq!(image.layers.len(), 1);
    assert!(
        image.imported_at.ends_with('Z') && image.imported_at.len() == 20,
        "{}",
        image.imported_at
    );

    let lower = sb.store.lower_dirs(&image).unwrap();
    assert_eq!(lower.len(), 1);
    let root = &lower[0];
    assert_eq!(std::fs::read(root.join("ferry-counter")).unwrap(), binary);
    assert_eq!(mode(&root.join("ferry-counter")), 0o755);
    assert_eq!(
        std::fs::read(root.join("etc/app/app.conf")).unwrap(),
        b"port=8080\n"
    );
    assert_eq!(mode(&root.join("etc/app/app.conf")), 0o640);
    assert_eq!(mode(&root.join("tmp")), 0o1777);
    let meta = std::fs::metadata(root.join("ferry-counter")).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.mtime()), (0, 0, 0));

    assert_eq!(sb.store.get("counter:1").unwrap().digest, digest);
    let names: Vec<String> = sb
        .store
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["counter:1"]);
    assert_eq!(sb.count("staging"), 0);
    assert!(sb.entries_beside_store(&["src"]).is_empty());
}

/// Two layers (the top one replacing a file of the bottom one), gzip or plain, in both formats.
fn two_layers(gzip_bottom: bool, gzip_top: bool) -> Vec<Blob> {
    let bottom = Layer::new()
        .dir("bin")
        .file("bin/app", b"v1", 0o755)
        .file("bin/tool", b"tool", 0o700)
        .symlink("bin/sh", "/bin/app")
        .hardlink("bin/app-again", "bin/app")
        .tar();
    let top = Layer::new()
        .dir("./bin/")
        .file("./bin/app", b"v2", 0o750)
        .dir("srv")
        .tar();
    let wrap = |tar, gz| {
        if gz {
            Blob::gzip(tar)
        } else {
            Blob::plain(tar)
        }
    };
    vec![wrap(bottom, gzip_bottom), wrap(top, gzip_top)]
}

fn check_two_layers(sb: &Sandbox, name: &str) {
    let image = sb.store.get(name).unwrap();
    assert_eq!(image.config.entrypoint, ["/bin/app", "--serve"]);
    assert_eq!(image.config.env, ["PATH=/bin", "A=b"]);
    assert_eq!(image.config.working_dir.as_deref(), Some("/srv"));
    assert_eq!(image.config.user.as_deref(), Some("1000:1000"));
    let lower = sb.store.lower_dirs(&image).unwrap();
    assert_eq!(lower.len(), 2);
    let (top, bottom) = (&lower[0], &lower[1]);
    assert_eq!(std::fs::read(top.join("bin/app")).unwrap(), b"v2");
    assert_eq!(mode(&top.join("bin/app")), 0o750);
    assert_eq!(std::fs::read(bottom.join("bin/app")).unwrap(), b"v1");
    assert_eq!(mode(&bottom.join("bin/tool")), 0o700);
    assert_eq!(
        std::fs::read_link(bottom.join("bin/sh")).unwrap(),
        Path::new("/bin/app")
    );
    let a = std::fs::metadata(bottom.join("bin/app")).unwrap();
    let b = std::fs::metadata(bottom.join("bin/app-again")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlink");
    assert_eq!((a.uid(), a.gid(), a.mtime()), (1000, 1000, 1_700_000_000));
    assert_eq!(
        std::fs::metadata(bottom.join("bin")).unwrap().mtime(),
        1_700_000_000
    );
}

#[test]
fn oci_layout_with_gzip_and_plain_layers() {
    for (gz_bottom, gz_top) in [(true, true), (false, false), (true, false)] {
        let sb = Sandbox::new();
        let oci = Oci::new(two_layers(gz_bottom, gz_top));
        let image = sb.store.import("app", &oci.archive()[..], false).unwrap();
        assert_eq!(image.digest, oci.manifest_digest());
        check_two_layers(&sb, "app");
    }
}

#[test]
fn docker_archive_with_plain_and_gzip_layers() {
    for (gz_bottom, gz_top) in [(false, false), (false, true)] {
        let sb = Sandbox::new();
        let archive = docker_archive(&two_layers(gz_bottom, gz_top));
        let image = sb.store.import("app:latest", &archive[..], false).unwrap();
        check_two_layers(&sb, "app:latest");
        // The derived manifest digest is stable: importing again is a no-op.
        let again = sb.store.import("app:latest", &archive[..], false).unwrap();
        assert_eq!(again.digest, image.digest);
    }
}

#[test]
fn whole_archive_gzip_compressed_or_inside_a_directory() {
    let sb = Sandbox::new();
    let oci = Oci::new(two_layers(false, true));
    sb.store
        .import("app", &gzip(&oci.archive())[..], false)
        .unwrap();
    check_two_layers(&sb, "app");
    let docker = gzip(&docker_archive(&two_layers(false, false)));
    sb.store.import("app2", &docker[..], false).unwrap();
    check_two_layers(&sb, "app2");
    // A layout tarred with its directory around it.
    let wrapped = fixtures::under_dir(&oci.archive(), "my-image");
    sb.store.import("app3", &wrapped[..], false).unwrap();
    check_two_layers(&sb, "app3");
    let wrapped = fixtures::under_dir(&docker_archive(&two_layers(true, false)), "saved");
    sb.store.import("app4", &wrapped[..], false).unwrap();
    check_two_layers(&sb, "app4");
}

/// Unmounts (lazily) on drop, so a failing assertion does not leave the mount behind.
struct MountGuard(PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_content_in_an_overlay() {
    let sb = Sandbox::new();
    let base = Layer::new()
        .dir("etc")
        .file("etc/keep", b"keep", 0o644)
        .file("etc/gone", b"gone", 0o644)
        .dir("data")
        .file("data/old", b"old", 0o644)
        .dir("cache")
        .file("cache/x", b"x", 0o644)
        .tar();
    let top = Layer::new()
        .whiteout("etc", "gone")
        .opaque("data")
        .file("data/new", b"new", 0o644)
        .whiteout("", "cache")
        .tar();
    let oci = Oci::new(vec![Blob::gzip(base), Blob::plain(top)]);
    let image = sb.store.import("wh", &oci.archive()[..], false).unwrap();
    let lower = sb.store.lower_dirs(&image).unwrap();

    // The whiteouts as overlayfs wants them: char device 0:0, and the opaque xattr.
    for hidden in ["etc/gone", "cache"] {
        let meta = std::fs::symlink_metadata(lower[0].join(hidden)).unwrap();
        assert!(
            meta.file_type().is_char_device(),
            "{hidden} is not a whiteout"
        );
        assert_eq!(meta.rdev(), 0, "{hidden}");
    }
    assert!(!lower[0].join("etc/.wh.gone").exists());
    assert!(!lower[0].join("data/.wh..wh..opq").exists());
    let opaque = xattr(&lower[0].join("data"), "trusted.overlay.opaque");
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]));

    // And as a container would see them.
    let mnt = sb.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let lowerdir = lower
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    nix::mount::mount(
        Some("overlay"),
        &mnt,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(format!("lowerdir={lowerdir}").as_str()),
    )
    .expect("mount overlay (needs root)");
    let _guard = MountGuard(mnt.clone());
    assert_eq!(std::fs::read(mnt.join("etc/keep")).unwrap(), b"keep");
    assert!(!mnt.join("etc/gone").exists(), "whited-out file visible");
    assert!(!mnt.join("cache").exists(), "whited-out dir visible");
    assert!(
        !mnt.join("data/old").exists(),
        "opaque dir shows lower content"
    );
    assert_eq!(std::fs::read(mnt.join("data/new")).unwrap(), b"new");
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let out = std::process::Command::new("getfattr")
        .args(["--only-values", "--absolute-names", "-n", name])
        .arg(path)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(o.stdout),
        Ok(_) => None,
        // No getfattr: ask the kernel directly.
        Err(_) => {
            let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            let c_name = std::ffi::CString::new(name).unwrap();
            let mut buf = vec![0u8; 64];
            // SAFETY: valid NUL-terminated strings and a buffer of the length passed.
            let n = unsafe {
                libc::lgetxattr(
                    c_path.as_ptr(),
                    c_name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            (n >= 0).then(|| buf[..n as usize].to_vec())
        }
    }
}

#[test]
fn shared_layers_are_stored_once_and_survive_removal_of_one_image() {
    let sb = Sandbox::new();
    let base_tar = Layer::new()
        .dir("usr")
        .file("usr/lib.so", b"shared", 0o644)
        .tar();
    let one = Layer::new().file("one", b"1", 0o644).tar();
    let two = Layer::new().file("two", b"2", 0o644).tar();
    // The same base layer, gzip in an OCI layout and plain in a docker-archive.
    let a = Oci::new(vec![Blob::gzip(base_tar.clone()), Blob::gzip(one)]).archive();
    let b = docker_archive(&[Blob::plain(base_tar), Blob::plain(two)]);
    let ia = sb.store.import("a", &a[..], false).unwrap();
    let ib = sb.store.import("b", &b[..], false).unwrap();
    assert_eq!(ia.layers[0], ib.layers[0]);
    assert_eq!(sb.count("layers"), 3);
    assert_eq!(
        sb.store.lower_dirs(&ia).unwrap()[1],
        sb.store.lower_dirs(&ib).unwrap()[1]
    );

    sb.store.remove("a").unwrap();
    assert_eq!(sb.count("layers"), 2);
    assert!(matches!(sb.store.get("a"), Err(ImageError::NotFound(_))));
    let lower_b = sb.store.lower_dirs(&ib).unwrap();
    assert_eq!(
        std::fs::read(lower_b[1].join("usr/lib.so")).unwrap(),
        b"shared"
    );
    assert_eq!(std::fs::read(lower_b[0].join("two")).unwrap(), b"2");
    sb.store.remove("b").unwrap();
    assert_eq!(sb.count("layers"), 0);
    assert_eq!(sb.count("images"), 0);
}

#[test]
fn reimport_is_idempotent_and_replace_is_explicit() {
    let sb = Sandbox::new();
    let v1 = Oci::new(vec![Blob::gzip(Layer::new().file("v", b"1", 0o644).tar())]).archive();
    let v2 = Oci::new(vec![Blob::gzip(Layer::new().file("v", b"2", 0o644).tar())]).archive();
    let first = sb.store.import("app", &v1[..], false).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = sb.store.import("app", &v1[..], false).unwrap();
    assert_eq!(
        again.imported_at, first.imported_at,
        "re-import rewrote the record"
    );
    assert_eq!(again.digest, first.digest);

    let err = sb.store.import("app", &v2[..], false).unwrap_err();
    assert!(matches!(err, ImageError::AlreadyExists(_)), "{err}");
    assert_eq!(sb.store.get("app").unwrap().digest, first.digest);
    assert_eq!(sb.count("staging"), 0);

    let replaced = sb.store.import("app", &v2[..], true).unwrap();
    assert_ne!(replaced.digest, first.digest);
    assert_eq!(
        sb.count("layers"),
        1,
        "the replaced image's layer was not cleaned up"
    );
    let lower = sb.store.lower_dirs(&replaced).unwrap();
    assert_eq!(std::fs::read(lower[0].join("v")).unwrap(), b"2");
}

#[test]
fn unknown_images_and_bad_names() {
    let sb = Sandbox::new();
    assert!(matches!(sb.store.get("nope"), Err(ImageError::NotFound(_))));
    assert!(matches!(
        sb.store.remove("nope:1"),
        Err(ImageError::NotFound(_))
    ));
    let archive = Oci::new(vec![Blob::plain(Layer::new().file("f", b"", 0o644).tar())]).archive();
    for bad in [
        "",
        "UPPER",
        "../etc/x",
        "a/b",
        ".hidden",
        "x:",
        "with space",
    ] {
        let err = sb.store.import(bad, &archive[..], false).unwrap_err();
        assert!(matches!(err, ImageError::InvalidName(_)), "{bad}: {err}");
    }
    sb.assert_store_empty();
}

fn assert_malformed(sb: &Sandbox, archive: &[u8], needle: &str) {
    let err = sb.store.import("app", archive, false).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ImageError::Malformed(_)), "{msg}");
    assert!(msg.contains(needle), "'{msg}' does not mention '{needle}'");
    sb.assert_store_empty();
}

#[test]
fn content_not_matching_its_digest_is_rejected() {
    let sb = Sandbox::new();
    let layer = Blob::gzip(Layer::new().file("f", b"real", 0o644).tar());
    let oci = Oci::new(vec![layer]);
    let layer_digest = fixtures::sha256(&oci.layers[0].bytes);
    let evil = fixtures::gzip(&Layer::new().file("f", b"evil", 0o644).tar());
    // A layer blob swapped under its original name.
    let swapped = oci.archive_with(|d, data| {
        if d == layer_digest {
            evil.clone()
        } else {
            data
        }
    });
    assert_malformed(&sb, &swapped, &layer_digest);
    // A config swapped under its original name.
    let config_digest = fixtures::sha256(&oci.config);
    let swapped = oci.archive_with(|d, data| {
        if d == config_digest {
            br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec()
        } else {
            data
        }
    });
    assert_malformed(&sb, &swapped, &config_digest);

    // A config whose diff_id does not match the uncompressed layer.
    let mut lying = Oci::new(vec![Blob::gzip(Layer::new().file("f", b"x", 0o644).tar())]);
    let fake = fixtures::sha256(b"something else");
    lying.config = fixtures::config_json(&["/x"], std::slice::from_ref(&fake));
    assert_malformed(&sb, &lying.archive(), &fake);

    // A docker-archive whose layer does not match the config's diff_id.
    let mut blob = Blob::plain(Layer::new().file("f", b"x", 0o644).tar());
    blob.diff_id = fake.clone();
    assert_malformed(&sb, &docker_archive(&[blob]), &fake);

    // An emptied blob.
    let emptied = oci.archive_with(|d, data| if d == layer_digest { Vec::new() } else { data });
    assert_malformed(&sb, &emptied, "expected");
}

#[test]
fn oversized_json_is_refused() {
    let sb = Sandbox::new();
    let mut b = tar::Builder::new(Vec::new());
    let big = vec![b' '; 17 * 1024 * 1024];
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(big.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "index.json", &big[..]).unwrap();
    assert_malformed(&sb, &b.into_inner().unwrap(), "limit");
}

#[test]
fn not_an_image_archive() {
    let sb = Sandbox::new();
    assert_malformed(&sb, b"", "empty");
    assert_malformed(
        &sb,
        &Layer::new().file("hello", b"hi", 0o644).tar(),
        "neither",
    );
    let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0];
    assert_malformed(&sb, &zstd, "zstd");
}

#[test]
fn xattrs_are_kept_but_overlayfs_ones_dropped() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .file_with_xattrs(
            "f",
            b"data",
            &[
                ("user.note", b"hello"),
                ("trusted.overlay.redirect", b"/etc"),
            ],
        )
        .tar();
    let image = sb
        .store
        .import("x", &Oci::new(vec![Blob::gzip(layer)]).archive()[..], false)
        .unwrap();
    let f = sb.store.lower_dirs(&image).unwrap()[0].join("f");
    assert_eq!(std::fs::read(&f).unwrap(), b"data");
    assert_eq!(xattr(&f, "user.note").as_deref(), Some(&b"hello"[..]));
    assert_eq!(xattr(&f, "trusted.overlay.redirect"), None);
}

#[test]
fn concurrent_imports_of_shared_layers() {
    let sb = Sandbox::new();
    let base = Layer::new().file("base", &[1u8; 100_000], 0o644).tar();
    let archives: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            let top = Layer::new()
                .file("top", format!("{i}").as_bytes(), 0o644)
                .tar();
            Oci::new(vec![Blob::gzip(base.clone()), Blob::gzip(top)]).archive()
        })
        .collect();
    std::thread::scope(|s| {
        for (i, archive) in archives.iter().enumerate() {
            let store = &sb.store;
            // Each image twice, at the same time: both imports must succeed.
            for _ in 0..2 {
                s.spawn(move || {
                    store
                        .import(&format!("img{i}"), &archive[..], false)
                        .unwrap()
                });
            }
        }
    });
    assert_eq!(sb.store.list().unwrap().len(), 4);
    assert_eq!(sb.count("layers"), 5);
    assert_eq!(sb.count("staging"), 0);
    for i in 0..4 {
        let image = sb.store.get(&format!("img{i}")).unwrap();
        let lower = sb.store.lower_dirs(&image).unwrap();
        assert_eq!(
            std::fs::read(lower[0].join("top")).unwrap(),
            format!("{i}").as_bytes()
        );
    }
}

#[test]
fn multi_member_gzip_layers() {
    // pigz and estargz write several gzip members; all of them are the layer.
    let sb = Sandbox::new();
    let first = Layer::new().file("a", b"first", 0o644).tar();
    let tar = Layer::new()
        .file("a", b"first", 0o644)
        .file("b", b"second", 0o644)
        .tar();
    // Split the tar in two gzip members at a block boundary inside the second entry.
    let cut = first.len() - 1024 + 512;
    let mut bytes = gzip(&tar[..cut]);
    bytes.extend(gzip(&tar[cut..]));
    let blob = Blob {
        bytes,
        diff_id: fixtures::sha256(&tar),
    };
    let image = sb
        .store
        .import("mm", &Oci::new(vec![blob]).archive()[..], false)
        .unwrap();
    let lower = sb.store.lower_dirs(&image).unwrap();
    assert_eq!(std::fs::read(lower[0].join("b")).unwrap(), b"second");
}

#[test]
fn archives_with_several_images_pick_the_named_one() {
    let sb = Sandbox::new();
    let one = Oci::new(vec![Blob::gzip(
        Layer::new().file("which", b"one", 0o644).tar(),
    )]);
    let two = Oci::new(vec![Blob::gzip(
        Layer::new().file("which", b"two", 0o644).tar(),
    )]);
    let oci = oci_layout_multi(&[(&one, "app:1"), (&two, "app:2")]);
    let which = |name: &str| {
        let image = sb.store.get(name).unwrap();
        std::fs::read(sb.store.lower_dirs(&image).unwrap()[0].join("which")).unwrap()
    };
    sb.store.import("app:2", &oci[..], false).unwrap();
    assert_eq!(which("app:2"), b"two");
    let err = sb.store.import("other", &oci[..], false).unwrap_err();
    assert!(err.to_string().contains("none named 'other'"), "{err}");

    let l1 = [Blob::plain(Layer::new().file("which", b"d1", 0o644).tar())];
    let l2 = [Blob::plain(Layer::new().file("which", b"d2", 0o644).tar())];
    let docker = docker_archive_multi(&[(&l1, "docker.io/library/web:1"), (&l2, "web:2")]);
    sb.store.import("web:1", &docker[..], false).unwrap();
    assert_eq!(which("web:1"), b"d1");
    let err = sb.store.import("web:3", &docker[..], false).unwrap_err();
    assert!(err.to_string().contains("none tagged 'web:3'"), "{err}");
}

#[test]
fn a_layer_repeated_in_an_image_is_mounted_once() {
    let sb = Sandbox::new();
    let same = Layer::new().dir("etc").file("etc/conf", b"v", 0o644).tar();
    let middle = Layer::new()
        .whiteout("etc", "conf")
        .file("mid", b"m", 0o644)
        .tar();
    let oci = Oci::new(vec![
        Blob::plain(same.clone()),
        Blob::gzip(middle),
        Blob::gzip(same),
    ]);
    let image = sb.store.import("rep", &oci.archive()[..], false).unwrap();
    assert_eq!(image.layers.len(), 3);
    assert_eq!(sb.count("layers"), 2);
    let lower = sb.store.lower_dirs(&image).unwrap();
    assert_eq!(lower.len(), 2);
    let mnt = sb.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let lowerdir = lower
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    nix::mount::mount(
        Some("overlay"),
        &mnt,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(format!("lowerdir={lowerdir}").as_str()),
    )
    .expect("mount overlay (needs root)");
    let _guard = MountGuard(mnt.clone());
    // The top copy brings back what the middle layer whited out.
    assert_eq!(std::fs::read(mnt.join("etc/conf")).unwrap(), b"v");
    assert_eq!(std::fs::read(mnt.join("mid")).unwrap(), b"m");
}

#[test]
fn layers_of_a_mounted_image_outlive_its_removal_until_unmounted() {
    let sb = Sandbox::new();
    let archive = Oci::new(vec![Blob::gzip(
        Layer::new().file("app", b"running", 0o755).tar(),
    )])
    .archive();
    let image = sb.store.import("busy", &archive[..], false).unwrap();
    let lower = sb.store.lower_dirs(&image).unwrap();
    let mnt = sb.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // Two lowers are needed for a read-only overlay without upper; use an empty second one.
    let empty = sb.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let data = format!("lowerdir={}:{}", lower[0].display(), empty.display());
    nix::mount::mount(
        Some("overlay"),
        &mnt,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(data.as_str()),
    )
    .expect("mount overlay (needs root)");
    let guard = MountGuard(mnt.clone());

    sb.store.remove("busy").unwrap();
    assert!(matches!(sb.store.get("busy"), Err(ImageError::NotFound(_))));
    assert!(lower[0].is_dir(), "a mounted layer was deleted");
    assert_eq!(std::fs::read(mnt.join("app")).unwrap(), b"running");

    drop(guard);
    // The next cleanup (here: the next open) takes it.
    let reopened = ferry_runtime::image::ImageStore::open(&sb.store_dir("")).unwrap();
    assert!(reopened.list().unwrap().is_empty());
    assert!(!lower[0].exists(), "an unused, unmounted layer was kept");
}

/// The daemon may run with a strict umask: modes in the store come from the archive (0755 for
/// directories it does not list), never from that umask. The umask belongs to the whole
/// process, so the check runs in a child: this test binary, re-run for this one test.
#[test]
fn modes_do_not_depend_on_the_umask() {
    const CHILD: &str = "FERRY_IMAGE_UMASK_CHILD";
    if std::env::var_os(CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "modes_do_not_depend_on_the_umask",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("1 passed"), "child ran no test:\n{stdout}");
        return;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let sb = Sandbox::new();
    let implicit = Layer::new()
        .file("a/b/f", b"f", 0o644)
        .raw("p", tar::EntryType::Fifo, "", b"")
        .dir("d")
        .tar();
    let with_root = Layer::new()
        .raw("./", tar::EntryType::Directory, "", b"")
        .file("g", b"g", 0o644)
        .tar();
    let oci = Oci::new(vec![Blob::gzip(implicit), Blob::plain(with_root)]);
    let image = sb.store.import("modes", &oci.archive()[..], false).unwrap();
    let lower = sb.store.lower_dirs(&image).unwrap();
    let (top, bottom) = (&lower[0], &lower[1]);
    assert_eq!(mode(bottom), 0o755, "layer root");
    assert_eq!(mode(&bottom.join("a")), 0o755, "implicit parent");
    assert_eq!(mode(&bottom.join("a/b")), 0o755, "implicit parent");
    assert_eq!(mode(&bottom.join("a/b/f")), 0o644);
    assert_eq!(mode(&bottom.join("p")), 0o644, "fifo");
    assert_eq!(mode(&bottom.join("d")), 0o755);
    // raw() entries carry mode 0644: the `./` entry sets the layer root's mode.
    assert_eq!(mode(top), 0o644, "layer root from './'");
}
