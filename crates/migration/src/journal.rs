//! The durable records of a host's migrations, one JSON file each:
//! `STATE_DIR/journal/outgoing/<id>.json` (source side, with the token: mode 0600) and
//! `STATE_DIR/journal/incoming/<id>.json` (target side, the token's digest only). Each write
//! is a temporary file, fsync, rename and an fsync of the directory: a record survives a
//! crash of the daemon and of the machine, and is never seen half-written. The target's
//! steps that recovery treats like the one before them are written without the fsyncs
//! (see [`Journal::put_incoming`]).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use ferry_wire::channel::LazyState;
use ferry_wire::migration::{
    CheckpointEngine, IncomingState, MigrateRequest, MigrationId, MigrationReport, OutgoingState,
    PageTransport, Phase, Technique,
};

use crate::MigrationError;

/// The source's record of one outgoing migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutgoingRecord {
    pub id: MigrationId,
    pub container: String,
    /// The target host's API base URL.
    pub target: String,
    /// The channel's token (the target keeps its digest).
    pub token: String,
    pub request: MigrateRequest,
    pub technique: Technique,
    pub state: OutgoingState,
    pub phase: Phase,
    /// The lease the target granted (milliseconds).
    pub lease_ms: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// When the commit decision was taken (for the in-doubt deadline).
    #[serde(default)]
    pub committing_since_ms: Option<u64>,
    /// The report as far as the migration got.
    pub report: MigrationReport,
}

/// The target's record of one incoming migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IncomingRecord {
    pub id: MigrationId,
    pub container: String,
    /// The source host, as it named itself.
    pub source: String,
    /// sha256 of the token, hex.
    pub token_sha256: String,
    pub technique: Technique,
    /// How the pages travel (the offer's, accepted).
    #[serde(default)]
    pub pages: PageTransport,
    /// Who drives CRIU (the offer's).
    #[serde(default)]
    pub engine: CheckpointEngine,
    pub state: IncomingState,
    pub lease_ms: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Pre-copy and hybrid: the round the source may start next, and whether the final dump
    /// was announced.
    #[serde(default)]
    pub next_round: u32,
    #[serde(default)]
    pub last_round_started: bool,
    /// Bytes of pages the stream's manifest announced.
    #[serde(default)]
    pub expected_pages: Option<u64>,
    /// Post-copy: how the page transfer ended, once it did.
    #[serde(default)]
    pub lazy: Option<LazyState>,
}

#[derive(Clone, Copy)]
enum Side {
    Outgoing,
    Incoming,
}

impl Side {
    fn dir(self) -> &'static str {
        match self {
            Side::Outgoing => "outgoing",
            Side::Incoming => "incoming",
        }
    }
}

/// The journal directory of one host.
#[derive(Debug, Clone)]
pub struct Journal {
    root: PathBuf,
}

fn journal_err(what: &str, path: &Path, e: impl std::fmt::Display) -> MigrationError {
    MigrationError::Journal(format!("{what} {}: {e}", path.display()))
}

impl Journal {
    pub fn open(state_dir: &Path) -> Result<Journal, MigrationError> {
        let root = state_dir.join("journal");
        for side in [Side::Outgoing, Side::Incoming] {
            let d = root.join(side.dir());
            std::fs::create_dir_all(&d).map_err(|e| journal_err("create", &d, e))?;
        }
        Ok(Journal { root })
    }

    fn path(&self, side: Side, id: &MigrationId) -> PathBuf {
        self.root.join(side.dir()).join(format!("{id}.json"))
    }

    /// Replaces the record of `id` atomically; with `durable` it is on the disk when this
    /// returns, else a crash of the machine may leave the previous version.
    fn write<T: Serialize>(
        &self,
        side: Side,
        id: &MigrationId,
        rec: &T,
        durable: bool,
    ) -> Result<(), MigrationError> {
        let path = self.path(side, id);
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(rec).map_err(|e| journal_err("encode", &path, e))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| journal_err("write", &tmp, e))?;
        f.write_all(&body)
            .and_then(|()| if durable { f.sync_all() } else { Ok(()) })
            .map_err(|e| journal_err("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| journal_err("rename", &path, e))?;
        if !durable {
            return Ok(());
        }
        let dir = self.root.join(side.dir());
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| journal_err("sync", &dir, e))
    }

    fn read<T: DeserializeOwned>(
        &self,
        side: Side,
        id: &MigrationId,
    ) -> Result<Option<T>, MigrationError> {
        let path = self.path(side, id);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| journal_err("decode", &path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(journal_err("read", &path, e)),
        }
    }

    fn all<T: DeserializeOwned>(&self, side: Side) -> Vec<T> {
        let dir = self.root.join(side.dir());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_suffix(".json")
                .and_then(|s| s.parse::<MigrationId>().ok())
            else {
                continue; // a temporary file of an interrupted write, or a stranger
            };
            match self.read(side, &id) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => tracing::error!("{e}; the record is ignored (an operator must look)"),
            }
        }
        out
    }

    fn remove(&self, side: Side, id: &MigrationId) {
        let _ = std::fs::remove_file(self.path(side, id));
    }

    pub fn put_outgoing(&self, r: &OutgoingRecord) -> Result<(), MigrationError> {
        self.write(Side::Outgoing, &r.id, r, true)
    }
    pub fn get_outgoing(&self, id: &MigrationId) -> Result<Option<OutgoingRecord>, MigrationError> {
        self.read(Side::Outgoing, id)
    }
    pub fn all_outgoing(&self) -> Vec<OutgoingRecord> {
        self.all(Side::Outgoing)
    }
    pub fn remove_outgoing(&self, id: &MigrationId) {
        self.remove(Side::Outgoing, id)
    }

    /// Writes the target's record. `images_received` and `restored` do not wait for the
    /// disk: recovery removes an uncommitted copy whichever step its record names
    /// (`recover_incoming`), so a crash that loses one of them changes nothing, and both
    /// fall inside the app's frozen window (a durable write costs 7-12 ms on this machine's
    /// disk). The first record and `committed` / `aborted` are durable as every other.
    pub fn put_incoming(&self, r: &IncomingRecord) -> Result<(), MigrationError> {
        let durable = !matches!(
            r.state,
            IncomingState::ImagesReceived | IncomingState::Restored
        );
        self.write(Side::Incoming, &r.id, r, durable)
    }
    pub fn get_incoming(&self, id: &MigrationId) -> Result<Option<IncomingRecord>, MigrationError> {
        self.read(Side::Incoming, id)
    }
    pub fn all_incoming(&self) -> Vec<IncomingRecord> {
        self.all(Side::Incoming)
    }
    pub fn remove_incoming(&self, id: &MigrationId) {
        self.remove(Side::Incoming, id)
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record(id: &str) -> OutgoingRecord {
        let id: MigrationId = id.parse().unwrap();
        OutgoingRecord {
            id: id.clone(),
            container: "app".into(),
            target: "http://t:7100".into(),
            token: "secret".into(),
            request: MigrateRequest::default(),
            technique: Technique::Cold,
            state: OutgoingState::Preparing,
            phase: Phase::Prepare,
            lease_ms: 30_000,
            created_at_ms: 1,
            updated_at_ms: 1,
            committing_since_ms: None,
            report: MigrationReport::new(id, "app", "a", "t", Technique::Cold, Technique::Cold),
        }
    }

    #[test]
    fn records_survive_reopening_and_keep_the_token_private() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut r = record("m-1");
        j.put_outgoing(&r).unwrap();
        r.state = OutgoingState::Committing;
        j.put_outgoing(&r).unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let back = j.get_outgoing(&r.id).unwrap().unwrap();
        assert_eq!(back.state, OutgoingState::Committing);
        assert_eq!(back.token, "secret");
        let mode = std::fs::metadata(dir.path().join("journal/outgoing/m-1.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the token is readable by others: {mode:o}");
        assert_eq!(j.all_outgoing().len(), 1);
        assert!(j.get_outgoing(&"m-2".parse().unwrap()).unwrap().is_none());
    }

    #[test]
    fn a_damaged_record_is_an_error_not_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("journal/outgoing/m-9.json"), b"{").unwrap();
        std::fs::write(dir.path().join("journal/outgoing/m-8.json.tmp"), b"{").unwrap();
        assert!(j.get_outgoing(&"m-9".parse().unwrap()).is_err());
        assert!(j.all_outgoing().is_empty());
    }
}
