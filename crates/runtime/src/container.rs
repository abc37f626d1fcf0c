//! The persisted record of one container (`state.json`): the wire's [`Container`], written
//! atomically so a restarted daemon finds its containers again. The lifecycle (and its
//! diagram) is the wire's [`Status`]; every operation checks `can_*` first and fails with an
//! "incorrect status" error instead of half-doing something.

use std::path::{Path, PathBuf};

pub use ferry_wire::container::{
    validate_name, CheckpointRecord, Container, ContainerRequest, Owner, Status,
};

pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Writes `state.json` atomically (temporary file, fsync, rename), so a crash never leaves a
/// half-written record. Without `durable` there is no fsync: a crash of the machine may then
/// leave the previous record, for the steps that someone else's record can redo.
pub fn save(c: &Container, dir: &Path, durable: bool) -> std::io::Result<()> {
    let tmp = dir.join("state.json.tmp");
    let body = serde_json::to_vec_pretty(c).map_err(std::io::Error::other)?;
    {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, &body)?;
        if durable {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, state_file(dir))
}

pub fn load(dir: &Path) -> std::io::Result<Container> {
    let body = std::fs::read(state_file(dir))?;
    serde_json::from_slice(&body).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {e}", state_file(dir).display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let c = Container {
            name: "c1".into(),
            request: ContainerRequest {
                name: "c1".into(),
                image: "counter".into(),
                args: Some(vec!["--port".into(), "80".into()]),
                env: vec![],
                memory_mib: Some(64),
                cpus: None,
                ip: Some(Ipv4Addr::new(10, 200, 0, 5)),
            },
            status: Status::Running,
            netns: "ns".into(),
            veth: Some("fv1".into()),
            created_at: "now".into(),
            started_at: None,
            last_checkpoint: None,
            migration: Some("m-1".parse().unwrap()),
            owner: Owner::Ferry {
                pid: 42,
                start_time: 7,
            },
        };
        save(&c, dir.path(), true).unwrap();
        assert_eq!(load(dir.path()).unwrap(), c);
    }
}
