//! `ferry image`: build and check OCI image archives without a registry or docker.
//!
//! - `ferry image pack --file SRC:DEST[:MODE] ... --entrypoint ARG... -o OUT.tar` writes a
//!   deterministic one-layer OCI image layout (how the build packages ferry-counter).
//! - `ferry image inspect ARCHIVE` imports an archive into a throw-away store, with every check
//!   `ferry host` applies, and prints its digest, layers and config.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use ferry_runtime::image::{pack_oci_archive, ImageConfig, ImageStore, PackFile};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Pack files into a one-layer OCI image archive (deterministic: same files, same digest).
    Pack(PackArgs),
    /// Validate an image archive (OCI layout or docker-archive, tar or tar.gz) and show what is in it.
    Inspect(InspectArgs),
}

#[derive(clap::Args)]
struct PackArgs {
    /// A file to put into the image: SRC:DEST[:MODE], e.g. target/release/app:/app:0755
    /// (MODE in octal; default: the source file's permissions).
    #[arg(long = "file", value_name = "SRC:DEST[:MODE]", required = true)]
    files: Vec<String>,
    /// The image's entrypoint (program and its first arguments).
    #[arg(long, value_name = "ARG", num_args = 1.., required = true)]
    entrypoint: Vec<String>,
    /// Default arguments after the entrypoint.
    #[arg(long, value_name = "ARG", num_args = 1..)]
    cmd: Vec<String>,
    /// Environment entry KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory of the process.
    #[arg(long)]
    workdir: Option<String>,
    /// User (and group) the process runs as, e.g. 1000:1000.
    #[arg(long)]
    user: Option<String>,
    /// Name recorded in the archive's index.json (default: the first file's name, tag latest).
    #[arg(long, value_name = "NAME:TAG")]
    reference: Option<String>,
    /// Where to write the archive.
    #[arg(short = 'o', long = "output", value_name = "OUT.tar")]
    output: PathBuf,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// The archive to check (`-` reads standard input).
    archive: PathBuf,
    /// Print the image record as JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Pack(a) => pack(a),
        Command::Inspect(a) => inspect(a),
    }
}

/// Parses `SRC:DEST[:MODE]`.
fn parse_file(spec: &str) -> anyhow::Result<PackFile> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dest, mode) = match parts.as_slice() {
        [src, dest] => (*src, *dest, None),
        [src, dest, mode] => (*src, *dest, Some(*mode)),
        _ => bail!("--file '{spec}': expected SRC:DEST[:MODE], e.g. target/release/app:/app:0755"),
    };
    if src.is_empty() || !dest.starts_with('/') {
        bail!("--file '{spec}': SRC must be a file and DEST an absolute path inside the image, e.g. app:/app");
    }
    let source = PathBuf::from(src);
    let meta = std::fs::metadata(&source)
        .with_context(|| format!("--file '{spec}': cannot read {src} (build it first?)"))?;
    if !meta.is_file() {
        bail!("--file '{spec}': {src} is not a regular file");
    }
    let mode = match mode {
        Some(m) => u32::from_str_radix(m, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .with_context(|| {
                format!("--file '{spec}': MODE '{m}' is not an octal mode like 0755")
            })?,
        None => std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777,
    };
    Ok(PackFile {
        source,
        dest: dest.to_string(),
        mode,
    })
}

/// `/usr/bin/ferry-counter` -> `ferry-counter:latest`.
fn default_reference(dest: &str) -> String {
    let base = dest.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    let reference = format!("{base}:latest");
    if ferry_runtime::image::validate_name(&reference).is_ok() {
        reference
    } else {
        "image:latest".to_string()
    }
}

fn pack(a: PackArgs) -> anyhow::Result<ExitCode> {
    let files = a
        .files
        .iter()
        .map(|f| parse_file(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for e in &a.env {
        if !e.contains('=') || e.starts_with('=') {
            bail!("--env '{e}': expected KEY=VALUE");
        }
    }
    let config = ImageConfig {
        entrypoint: a.entrypoint,
        cmd: a.cmd,
        env: a.env,
        working_dir: a.workdir,
        user: a.user,
    };
    let reference = a
        .reference
        .unwrap_or_else(|| default_reference(&files[0].dest));

    if let Some(dir) = a.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Write next to the target and rename, so a failed pack never leaves a half archive.
    let tmp = tmp_path(&a.output);
    let result = (|| -> anyhow::Result<String> {
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut out = std::io::BufWriter::new(file);
        let digest = pack_oci_archive(&files, &config, &reference, &mut out)
            .with_context(|| format!("cannot pack {}", a.output.display()))?;
        out.flush()
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &a.output)
            .with_context(|| format!("cannot write {}", a.output.display()))?;
        Ok(digest)
    })();
    let digest = match result {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let size = std::fs::metadata(&a.output).map(|m| m.len()).unwrap_or(0);
    println!(
        "{digest} {} ({size} bytes, {reference})",
        a.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn tmp_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    out.with_file_name(name)
}

/// A throw-away store, removed on drop (also when the import fails).
struct TempStore(PathBuf);

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn inspect(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let root = std::env::temp_dir().join(format!("ferry-inspect-{}-{nanos}", std::process::id()));
    let guard = TempStore(root);
    let store = ImageStore::open(&guard.0).context("cannot create a temporary image store")?;
    let input: Box<dyn std::io::Read> = if a.archive.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(&a.archive).with_context(|| {
            format!(
                "cannot open {} (give the path of an image archive)",
                a.archive.display()
            )
        })?;
        Box::new(std::io::BufReader::new(f))
    };
    let image = store
        .import("inspect", input, false)
        .with_context(|| format!("{} is not an image ferry can run", a.archive.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&image)?);
        return Ok(ExitCode::SUCCESS);
    }
    let lower = store.lower_dirs(&image)?;
    println!("digest:      {}", image.digest);
    println!("size:        {} bytes of layer blobs", image.size_bytes);
    println!("layers:      {} (bottom first)", image.layers.len());
    for (layer, dir) in image.layers.iter().zip(lower.iter().rev()) {
        println!("  {layer}  {} entries", count_entries(dir));
    }
    let c = &image.config;
    println!("entrypoint:  {:?}", c.entrypoint);
    println!("cmd:         {:?}", c.cmd);
    println!("env:         {:?}", c.env);
    println!("working_dir: {}", c.working_dir.as_deref().unwrap_or("/"));
    println!("user:        {}", c.user.as_deref().unwrap_or("root"));
    Ok(ExitCode::SUCCESS)
}

/// Files, dirs, links and whiteouts in an unpacked layer (symlinks are not followed).
fn count_entries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            1 + if is_dir { count_entries(&e.path()) } else { 0 }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_specs() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("bin");
        std::fs::write(&src, b"x").unwrap();
        let s = src.display();
        let f = parse_file(&format!("{s}:/app:0750")).unwrap();
        assert_eq!((f.dest.as_str(), f.mode), ("/app", 0o750));
        assert!(parse_file(&format!("{s}:/app")).is_ok());
        for bad in [
            format!("{s}"),
            format!("{s}:app"),
            format!("{s}:/app:9"),
            format!("{s}:/a:1:2"),
            "nope:/x".into(),
        ] {
            assert!(parse_file(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            default_reference("/usr/bin/ferry-counter"),
            "ferry-counter:latest"
        );
        assert_eq!(default_reference("/Bad Name"), "image:latest");
    }

    #[test]
    fn pack_then_inspect() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("app");
        std::fs::write(&src, b"#!/bin/sh\n").unwrap();
        let out = tmp.path().join("build/app.oci.tar");
        let args = PackArgs {
            files: vec![format!("{}:/app:0755", src.display())],
            entrypoint: vec!["/app".into()],
            cmd: vec![],
            env: vec!["A=1".into()],
            workdir: None,
            user: None,
            reference: None,
            output: out.clone(),
        };
        assert_eq!(pack(args).unwrap(), ExitCode::SUCCESS);
        // Only the archive: no temp file left beside it.
        let names: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        let ok = inspect(InspectArgs {
            archive: out,
            json: true,
        });
        assert_eq!(ok.unwrap(), ExitCode::SUCCESS);
        let bad = inspect(InspectArgs {
            archive: src,
            json: false,
        });
        assert!(format!("{:#}", bad.unwrap_err()).contains("not an image ferry can run"));
    }
}
