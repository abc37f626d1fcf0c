//! The persistent store: every resource `ferry control` owns, as JSON records in one embedded
//! redb database (`STATE_DIR/control.redb`), so a restarted daemon knows all of them.
//!
//! One table per resource kind, keyed by the resource id. Records are the API's own JSON
//! bodies: what a client PUT is what a restart serves back. Every write is one redb write
//! transaction and is durable when the call returns; `update` reads and writes in the same
//! transaction, so concurrent changes of one record cannot lose each other.
//!
//! Group commit: a write commits without an fsync and then waits until a durable commit
//! covers it. One writer at a time makes that durable commit (an empty transaction, which
//! persists every commit before it) for all writes committed so far, so many relocations
//! writing at once share one fsync instead of queueing for one each. A write is visible to
//! readers from its commit, a moment before it is durable.
//!
//! Every call blocks on the disk. Called from a worker of the daemon's (multi-threaded)
//! tokio runtime it runs under `block_in_place`, so the worker's other tasks move to another
//! thread meanwhile instead of waiting behind an fsync.

use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("stored {table} record '{key}' is damaged: {source}")]
    Damaged {
        table: &'static str,
        key: String,
        source: serde_json::Error,
    },
    #[error("cannot encode a {table} record: {0}", table = .0)]
    Encode(&'static str),
}

/// Turns any redb error into `StoreError::Io` (they all mean "the disk or the file failed").
macro_rules! io {
    ($e:expr) => {
        $e.map_err(|e| StoreError::Io(e.to_string()))
    };
}

/// The resource kinds, one redb table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// MEC 010-2 `AppPkgInfo` by package id.
    Packages,
    /// MEC 010-2 `AppPkgSubscriptionInfo` by id.
    PkgSubscriptions,
    /// The onboarded AppD of a package, by package id.
    AppDs,
    /// MEC 010-2 `AppInstanceInfo` by instance id.
    Instances,
    /// MEC 010-2 `AppInstanceLcmOpOcc` by id.
    LcmOps,
    /// MEC 010-2 `AppInstSubscriptionInfo` by id.
    LcmSubscriptions,
    /// MEC 021 `RegistrationInfo` by appMobilityServiceId.
    Registrations,
    /// MEC 021 subscriptions by id.
    AmsSubscriptions,
    /// MEC 011 `TrafficRule`s by "appInstanceId/trafficRuleId".
    TrafficRules,
    /// MEC 011 `DnsRule`s by "appInstanceId/dnsRuleId".
    DnsRules,
    /// MEC 011 readiness: `{"ready": bool}` by appInstanceId.
    AppStatus,
    /// MEC 011 `ServiceInfo` by serInstanceId.
    Services,
    /// MEC 011 service availability subscriptions by id.
    ServiceSubscriptions,
    /// Relocation records by id (see `relocation.rs`).
    Relocations,
    /// The UE (IPv4 address) an instance was instantiated for (`ferryAssociateId`), by
    /// instance id: the relocation controller moves it with that UE.
    InstanceUes,
    /// The relocation controller's MEC 012 subscriptions at the RAN: the resource URI (href)
    /// by purpose (`cell_change`), so a daemon killed before its shutdown could delete one
    /// finds it again at the next start.
    RanSubscriptions,
    /// MEC 011 app termination subscriptions by id.
    AppSupportSubscriptions,
    /// OAuth 2.0 clients (`oauth.rs`) by client id.
    Clients,
    /// Who created a resource a client may create (its `Caller::owner`), by "table/id":
    /// a client sees and changes only its own, and its count is capped.
    Owners,
}

impl Table {
    pub const ALL: [Table; 19] = [
        Table::Packages,
        Table::PkgSubscriptions,
        Table::AppDs,
        Table::Instances,
        Table::LcmOps,
        Table::LcmSubscriptions,
        Table::Registrations,
        Table::AmsSubscriptions,
        Table::TrafficRules,
        Table::DnsRules,
        Table::AppStatus,
        Table::Services,
        Table::ServiceSubscriptions,
        Table::Relocations,
        Table::InstanceUes,
        Table::RanSubscriptions,
        Table::AppSupportSubscriptions,
        Table::Clients,
        Table::Owners,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Packages => "packages",
            Table::PkgSubscriptions => "pkg_subscriptions",
            Table::AppDs => "appds",
            Table::Instances => "instances",
            Table::LcmOps => "lcm_ops",
            Table::LcmSubscriptions => "lcm_subscriptions",
            Table::Registrations => "registrations",
            Table::AmsSubscriptions => "ams_subscriptions",
            Table::TrafficRules => "traffic_rules",
            Table::DnsRules => "dns_rules",
            Table::AppStatus => "app_status",
            Table::Services => "services",
            Table::ServiceSubscriptions => "service_subscriptions",
            Table::Relocations => "relocations",
            Table::InstanceUes => "instance_ues",
            Table::RanSubscriptions => "ran_subscriptions",
            Table::AppSupportSubscriptions => "app_support_subscriptions",
            Table::Clients => "oauth_clients",
            Table::Owners => "owners",
        }
    }

    fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.name())
    }
}

/// Counters for ids that stay unique across restarts.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The store. Cheap to share behind an `Arc`; redb serializes write transactions itself.
pub struct Store {
    db: Database,
    sync: Mutex<SyncState>,
    synced: Condvar,
}

/// Where the group commit stands: writes are numbered as they commit.
#[derive(Debug, Default)]
struct SyncState {
    /// Writes committed (durable or not).
    committed: u64,
    /// Writes made durable.
    durable: u64,
    /// A writer is making a durable commit now.
    flushing: bool,
    /// Durable commits made (each an fsync).
    flushes: u64,
}

/// Runs blocking store work off the async scheduling of a multi-threaded runtime's worker
/// (a current-thread runtime, as in unit tests, cannot hand its tasks over: there it runs
/// in place).
fn off_async<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Width of the counter in ids (`reloc-000000000012`): ids sort in the order they were made,
/// in redb and in any listing by id.
const ID_DIGITS: usize = 12;

impl Store {
    /// Opens (or creates) `DIR/control.redb` and makes sure every table exists.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("control.redb");
        let db = Database::create(&path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let tx = io!(db.begin_write())?;
        for t in Table::ALL {
            io!(tx.open_table(t.def()))?;
        }
        io!(tx.open_table(META))?;
        io!(tx.commit())?;
        Ok(Store {
            db,
            sync: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
        })
    }

    fn sync_state(&self) -> MutexGuard<'_, SyncState> {
        self.sync.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A write transaction that commits without an fsync (see [`Store::commit`]).
    fn begin(&self) -> Result<WriteTransaction, StoreError> {
        let mut tx = io!(self.db.begin_write())?;
        tx.set_durability(Durability::None);
        Ok(tx)
    }

    /// Commits `tx` and returns once a durable commit covers it.
    fn commit(&self, tx: WriteTransaction) -> Result<(), StoreError> {
        // Numbered before the commit, while this transaction holds redb's write lock: a
        // durable commit that begins later (it needs that lock) covers every number it reads.
        let n = {
            let mut s = self.sync_state();
            s.committed += 1;
            s.committed
        };
        io!(tx.commit())?;
        self.wait_durable(n)
    }

    /// Waits until write `n` is durable, making the durable commit itself if nobody else is.
    fn wait_durable(&self, n: u64) -> Result<(), StoreError> {
        let mut s = self.sync_state();
        loop {
            if s.durable >= n {
                return Ok(());
            }
            if s.flushing {
                s = self.synced.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            s.flushing = true;
            drop(s);
            let flushed = self.flush();
            s = self.sync_state();
            s.flushing = false;
            match flushed {
                Ok(upto) => {
                    s.durable = s.durable.max(upto);
                    s.flushes += 1;
                    self.synced.notify_all();
                }
                Err(e) => {
                    // The others try again themselves and get their own answer.
                    self.synced.notify_all();
                    return Err(e);
                }
            }
        }
    }

    /// One durable commit; returns the number of the last write it covers.
    fn flush(&self) -> Result<u64, StoreError> {
        let tx = io!(self.db.begin_write())?;
        // Holding the write lock: every numbered write has committed.
        let upto = self.sync_state().committed;
        io!(tx.commit())?;
        Ok(upto)
    }

    /// Durable commits (fsyncs) so far, and writes so far.
    pub fn commit_counts(&self) -> (u64, u64) {
        let s = self.sync_state();
        (s.flushes, s.committed)
    }

    /// Stores `value` under `key`, replacing what was there.
    pub fn put<T: Serialize>(&self, t: Table, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|_| StoreError::Encode(t.name()))?;
        off_async(|| {
            let tx = self.begin()?;
            {
                let mut table = io!(tx.open_table(t.def()))?;
                io!(table.insert(key, bytes.as_slice()))?;
            }
            self.commit(tx)
        })
    }

    /// The record under `key`, if any.
    pub fn get<T: DeserializeOwned>(&self, t: Table, key: &str) -> Result<Option<T>, StoreError> {
        off_async(|| self.get_now(t, key))
    }

    fn get_now<T: DeserializeOwned>(&self, t: Table, key: &str) -> Result<Option<T>, StoreError> {
        let tx = io!(self.db.begin_read())?;
        let table = io!(tx.open_table(t.def()))?;
        let Some(v) = io!(table.get(key))? else {
            return Ok(None);
        };
        decode(t, key, v.value()).map(Some)
    }

    /// All records of a table, by key order. A damaged record is logged and skipped, so one bad
    /// record does not hide the others.
    pub fn list<T: DeserializeOwned>(&self, t: Table) -> Result<Vec<(String, T)>, StoreError> {
        off_async(|| self.list_now(t))
    }

    fn list_now<T: DeserializeOwned>(&self, t: Table) -> Result<Vec<(String, T)>, StoreError> {
        let tx = io!(self.db.begin_read())?;
        let table = io!(tx.open_table(t.def()))?;
        let mut out = Vec::new();
        for entry in io!(table.iter())? {
            let (k, v) = io!(entry)?;
            match decode(t, k.value(), v.value()) {
                Ok(rec) => out.push((k.value().to_string(), rec)),
                Err(e) => tracing::warn!("{e}; skipped"),
            }
        }
        Ok(out)
    }

    /// Removes a record; false if there was none.
    pub fn delete(&self, t: Table, key: &str) -> Result<bool, StoreError> {
        off_async(|| self.delete_now(t, key))
    }

    fn delete_now(&self, t: Table, key: &str) -> Result<bool, StoreError> {
        let tx = self.begin()?;
        let existed = {
            let mut table = io!(tx.open_table(t.def()))?;
            let old = io!(table.remove(key))?;
            old.is_some()
        };
        self.commit(tx)?;
        Ok(existed)
    }

    /// Reads the record under `key`, lets `f` change it (or refuse with its own error), and
    /// writes it back in one transaction. `Ok(None)` if there is no such record.
    pub fn update<T, R, E>(
        &self,
        t: Table,
        key: &str,
        f: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<Option<Result<R, E>>, StoreError>
    where
        T: Serialize + DeserializeOwned,
    {
        off_async(|| self.update_now(t, key, f))
    }

    fn update_now<T, R, E>(
        &self,
        t: Table,
        key: &str,
        f: impl FnOnce(&mut T) -> Result<R, E>,
    ) -> Result<Option<Result<R, E>>, StoreError>
    where
        T: Serialize + DeserializeOwned,
    {
        let tx = self.begin()?;
        let result = {
            let mut table = io!(tx.open_table(t.def()))?;
            let current: Option<T> = match io!(table.get(key))? {
                Some(v) => Some(decode(t, key, v.value())?),
                None => None,
            };
            let Some(mut rec) = current else {
                return Ok(None);
            };
            match f(&mut rec) {
                Ok(r) => {
                    let bytes =
                        serde_json::to_vec(&rec).map_err(|_| StoreError::Encode(t.name()))?;
                    io!(table.insert(key, bytes.as_slice()))?;
                    Ok(r)
                }
                // Nothing written: dropping the transaction aborts it.
                Err(e) => return Ok(Some(Err(e))),
            }
        };
        self.commit(tx)?;
        Ok(Some(result))
    }

    /// A new id `PREFIX-N` (N zero-padded to [`ID_DIGITS`]), unique for this store across
    /// restarts; later ids sort after earlier ones.
    pub fn next_id(&self, prefix: &str) -> Result<String, StoreError> {
        off_async(|| self.next_id_now(prefix))
    }

    fn next_id_now(&self, prefix: &str) -> Result<String, StoreError> {
        let tx = self.begin()?;
        let n = {
            let mut meta = io!(tx.open_table(META))?;
            let n = io!(meta.get(prefix))?.map(|v| v.value()).unwrap_or(0) + 1;
            io!(meta.insert(prefix, n))?;
            n
        };
        self.commit(tx)?;
        Ok(format!("{prefix}-{n:0width$}", width = ID_DIGITS))
    }
}

fn decode<T: DeserializeOwned>(t: Table, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Damaged {
        table: t.name(),
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn records_survive_reopening_and_ids_stay_unique() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.put(Table::Packages, "p1", &json!({"a": 1})).unwrap();
            s.put(Table::Packages, "p2", &json!({"a": 2})).unwrap();
            assert_eq!(s.next_id("pkg").unwrap(), "pkg-000000000001");
            assert!(s.delete(Table::Packages, "p2").unwrap());
            assert!(!s.delete(Table::Packages, "p2").unwrap());
        }
        let s = Store::open(dir.path()).unwrap();
        let all: Vec<(String, Value)> = s.list(Table::Packages).unwrap();
        assert_eq!(all, vec![("p1".to_string(), json!({"a": 1}))]);
        assert_eq!(s.next_id("pkg").unwrap(), "pkg-000000000002");
    }

    #[test]
    fn ids_sort_in_the_order_they_were_made() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let ids: Vec<String> = (0..12).map(|_| s.next_id("reloc").unwrap()).collect();
        for id in &ids {
            s.put(Table::Relocations, id, &json!(id)).unwrap();
        }
        let listed: Vec<String> = s
            .list::<Value>(Table::Relocations)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(listed, ids, "reloc-10 must not sort before reloc-2");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn store_calls_work_on_a_runtime_worker() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        // On the only worker: block_in_place hands the worker's other tasks over.
        let ticker = tokio::spawn(async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        });
        for i in 0..20 {
            s.put(Table::Packages, &format!("p{i}"), &json!(i)).unwrap();
        }
        ticker.await.unwrap();
        assert_eq!(s.list::<Value>(Table::Packages).unwrap().len(), 20);
    }

    #[test]
    fn concurrent_writes_are_all_durable_and_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = std::sync::Arc::new(Store::open(dir.path()).unwrap());
            let writers: Vec<_> = (0..8)
                .map(|w| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        for i in 0..25 {
                            s.put(Table::Relocations, &format!("w{w}-{i}"), &json!(i))
                                .unwrap();
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            let (flushes, writes) = s.commit_counts();
            assert_eq!(writes, 200);
            assert!(flushes >= 1 && flushes <= writes, "{flushes} of {writes}");
        }
        // Reopened: every write returned was durable.
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.list::<Value>(Table::Relocations).unwrap().len(), 200);
    }

    #[test]
    fn update_is_atomic_and_refusal_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put(Table::Instances, "i", &json!({"n": 1})).unwrap();
        let r = s
            .update(Table::Instances, "i", |v: &mut Value| {
                v["n"] = json!(2);
                Err::<(), _>("no")
            })
            .unwrap();
        assert_eq!(r, Some(Err("no")));
        assert_eq!(
            s.get::<Value>(Table::Instances, "i").unwrap(),
            Some(json!({"n": 1}))
        );
        s.update(Table::Instances, "i", |v: &mut Value| {
            v["n"] = json!(3);
            Ok::<_, ()>(())
        })
        .unwrap();
        assert_eq!(
            s.get::<Value>(Table::Instances, "i").unwrap(),
            Some(json!({"n": 3}))
        );
        assert!(s
            .update(Table::Instances, "nope", |_: &mut Value| Ok::<_, ()>(()))
            .unwrap()
            .is_none());
    }

    #[test]
    fn damaged_record_is_an_error_on_get_and_skipped_in_list() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.put(Table::Services, "ok", &json!({"x": 1})).unwrap();
        s.put(Table::Services, "bad", &json!("text")).unwrap();
        #[derive(serde::Deserialize, Debug)]
        struct X {
            #[allow(dead_code)]
            x: u8,
        }
        assert!(matches!(
            s.get::<X>(Table::Services, "bad"),
            Err(StoreError::Damaged { .. })
        ));
        assert_eq!(s.list::<X>(Table::Services).unwrap().len(), 1);
    }
}
