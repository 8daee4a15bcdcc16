//! The coordinator: every transactional id's [`Transaction`], persisted in
//! `transactions.json`, and the marker and offset writes that end a transaction.
//!
//! One mutex covers the table, held for one request including its disk writes (the
//! state file, markers, offsets), so transitions of one id never interleave and the file
//! always matches the table. Every method blocks on disk: async callers go through
//! `spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use shadowlink_protocol::batch::ControlType;
use shadowlink_storage::{read_meta, write_meta, StorageError};

use super::state::{Transaction, TxnState};
use super::{now_ms, TxnError, MAX_TIMEOUT_MS};
use crate::groups::{Committed, Coordinator, TopicPartition};
use crate::mirror::Store;

const FILE: &str = "transactions.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    transactions: BTreeMap<String, Transaction>,
}

type Table = BTreeMap<String, Transaction>;

/// The node's transaction coordinator.
pub struct TxnCoordinator {
    path: PathBuf,
    table: Mutex<Table>,
    store: Arc<Store>,
    groups: Arc<Coordinator>,
}

impl TxnCoordinator {
    /// Loads `transactions.json` from `data_dir` and completes every transaction that
    /// was decided before the node stopped. A marker that still cannot be written leaves
    /// its transaction decided, for the sweep to retry.
    pub fn open(
        data_dir: &Path,
        store: Arc<Store>,
        groups: Arc<Coordinator>,
    ) -> Result<TxnCoordinator, StorageError> {
        let path = data_dir.join(FILE);
        let persisted = read_meta::<Persisted>(&path)?.unwrap_or_default();
        let coordinator = TxnCoordinator {
            path,
            table: Mutex::new(persisted.transactions),
            store,
            groups,
        };
        let mut table = coordinator.lock();
        let decided: Vec<String> = table
            .iter()
            .filter(|(_, t)| t.is_preparing())
            .map(|(id, _)| id.clone())
            .collect();
        for id in decided {
            tracing::info!(transactional_id = %id, "completing a transaction decided before the restart");
            if let Err(error) = coordinator.complete(&mut table, &id) {
                tracing::warn!(transactional_id = %id, %error, "cannot complete the transaction yet");
            }
        }
        drop(table);
        Ok(coordinator)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, table: &Table) -> Result<(), StorageError> {
        let persisted = PersistedRef {
            transactions: table,
        };
        write_meta(&self.path, &persisted)
    }

    /// InitProducerId with a transactional id: a new producer id at epoch 0 for a new
    /// id, else the next epoch, which fences every older producer. An ongoing
    /// transaction of the old epoch is aborted first. `current` is the `(producer id,
    /// epoch)` a KIP-360 client sends to keep its id; it must be the id's current one.
    pub fn init_producer_id(
        &self,
        id: &str,
        timeout_ms: i32,
        current: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        if id.is_empty() {
            return Err(TxnError::EmptyTransactionalId);
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(TxnError::InvalidTimeout(timeout_ms));
        }
        let mut table = self.lock();
        let Some(txn) = table.get(id) else {
            let producer_id = self.store.allocate_producer_id()?;
            table.insert(id.to_string(), Transaction::new(producer_id, timeout_ms));
            self.persist(&table)?;
            tracing::info!(
                transactional_id = id,
                producer_id,
                "transactional id registered"
            );
            return Ok((producer_id, 0));
        };
        if let Some((producer_id, epoch)) = current {
            txn.check_producer(id, producer_id, epoch)?;
        }
        if txn.is_preparing() {
            self.complete(&mut table, id)?;
        }
        if table.get(id).is_some_and(|t| t.state == TxnState::Ongoing) {
            tracing::info!(
                transactional_id = id,
                "aborting the ongoing transaction of the old epoch"
            );
            self.abort(&mut table, id)?;
        }
        let Some(txn) = table.get_mut(id) else {
            return Err(TxnError::Concurrent(id.to_string()));
        };
        if !txn.bump_epoch() {
            txn.producer_id = self.store.allocate_producer_id()?;
            txn.producer_epoch = 0;
        }
        txn.timeout_ms = timeout_ms;
        txn.state = TxnState::Empty;
        let answer = (txn.producer_id, txn.producer_epoch);
        self.persist(&table)?;
        Ok(answer)
    }

    /// The id's transaction, checked to belong to the caller's producer.
    fn checked<'t>(
        table: &'t mut Table,
        id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&'t mut Transaction, TxnError> {
        let txn = table
            .get_mut(id)
            .ok_or_else(|| TxnError::ProducerIdMapping {
                transactional_id: id.to_string(),
                producer_id,
            })?;
        txn.check_producer(id, producer_id, epoch)?;
        Ok(txn)
    }

    /// AddPartitionsToTxn, for partitions the caller has checked this node writes.
    pub fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), TxnError> {
        let mut table = self.lock();
        let txn = Self::checked(&mut table, id, producer_id, epoch)?;
        let known =
            txn.state == TxnState::Ongoing && partitions.iter().all(|p| txn.partitions.contains(p));
        if known {
            return Ok(());
        }
        txn.enlist(id, partitions, None, now_ms())?;
        self.persist(&table)?;
        Ok(())
    }

    /// AddOffsetsToTxn: the group's offsets will be committed by this transaction.
    pub fn add_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
    ) -> Result<(), TxnError> {
        let mut table = self.lock();
        let txn = Self::checked(&mut table, id, producer_id, epoch)?;
        if txn.state == TxnState::Ongoing && txn.groups.contains(group) {
            return Ok(());
        }
        txn.enlist(id, [], Some(group.to_string()), now_ms())?;
        self.persist(&table)?;
        Ok(())
    }

    /// TxnOffsetCommit: offsets the group sees only once the transaction commits.
    pub fn stage_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<(String, i32, Committed)>,
    ) -> Result<(), TxnError> {
        let mut table = self.lock();
        let txn = Self::checked(&mut table, id, producer_id, epoch)?;
        txn.stage_offsets(id, group, offsets)?;
        self.persist(&table)?;
        Ok(())
    }

    /// EndTxn: the decision is persisted, then the markers and offsets are written and
    /// the transaction completes before the answer. A retry of a decision already taken
    /// finishes it if needed and succeeds.
    pub fn end(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        let mut table = self.lock();
        let txn = Self::checked(&mut table, id, producer_id, epoch)?;
        if txn.prepare(id, commit)? {
            self.persist(&table)?;
        }
        if table.get(id).is_some_and(Transaction::is_preparing) {
            self.complete(&mut table, id)?;
        }
        Ok(())
    }

    /// Checks a transactional Produce: the batch's producer must be the current epoch of
    /// its transactional id, with the partition in its ongoing transaction.
    pub fn verify_produce(
        &self,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), TxnError> {
        let table = self.lock();
        let owner = table.iter().find(|(_, t)| t.producer_id == producer_id);
        let not_in = || TxnError::NotInTransaction {
            producer_id,
            topic: topic.to_string(),
            partition,
        };
        let Some((id, txn)) = owner else {
            return Err(not_in());
        };
        if epoch != txn.producer_epoch {
            return Err(TxnError::Fenced {
                transactional_id: id.clone(),
                producer_id,
                epoch,
                current: txn.producer_epoch,
            });
        }
        let enlisted = txn.state == TxnState::Ongoing
            && txn.partitions.contains(&(topic.to_string(), partition));
        enlisted.then_some(()).ok_or_else(not_in)
    }

    /// Partitions of `group` with offsets staged by a transaction not yet decided: a
    /// KIP-447 OffsetFetch with `require_stable` must wait for them.
    pub fn unstable_offsets(&self, group: &str) -> BTreeSet<(String, i32)> {
        self.lock()
            .values()
            .filter(|t| t.state == TxnState::Ongoing || t.is_preparing())
            .filter_map(|t| t.pending_offsets.get(group))
            .flat_map(|staged| staged.iter().map(|(t, p, _)| (t.clone(), *p)))
            .collect()
    }

    /// Aborts every ongoing transaction past its timeout (bumping its epoch first, which
    /// fences the producer that let it hang) and retries decided ones whose markers
    /// could not be written. Returns how many transactions ended.
    pub fn sweep(&self, now_ms: i64) -> usize {
        let mut table = self.lock();
        let due: Vec<(String, bool)> = table
            .iter()
            .filter(|(_, t)| t.expired(now_ms) || t.is_preparing())
            .map(|(id, t)| (id.clone(), t.is_preparing()))
            .collect();
        let mut ended = 0;
        for (id, decided) in due {
            let result = match decided {
                true => self.complete(&mut table, &id),
                false => {
                    tracing::warn!(transactional_id = %id, "transaction timed out: aborting it");
                    self.abort(&mut table, &id)
                }
            };
            match result {
                Ok(()) => ended += 1,
                Err(error) => {
                    tracing::warn!(transactional_id = %id, %error, "cannot end the transaction yet")
                }
            }
        }
        ended
    }

    /// Aborts the ongoing transaction of `id` in a new epoch, so its producer is fenced
    /// and the markers carry an epoch no zombie can write after.
    fn abort(&self, table: &mut Table, id: &str) -> Result<(), TxnError> {
        let Some(txn) = table.get_mut(id) else {
            return Ok(());
        };
        txn.producer_epoch = txn.producer_epoch.saturating_add(1);
        txn.state = TxnState::PrepareAbort;
        self.persist(table)?;
        self.complete(table, id)
    }

    /// Writes the markers of a decided transaction, applies its offsets on commit, and
    /// records it complete.
    fn complete(&self, table: &mut Table, id: &str) -> Result<(), TxnError> {
        let Some(txn) = table.get(id).filter(|t| t.is_preparing()) else {
            return Ok(());
        };
        let commit = txn.state == TxnState::PrepareCommit;
        let control = if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let now = now_ms();
        for (topic, index) in &txn.partitions {
            let Some(partition) = self.store.partition(topic, *index) else {
                tracing::warn!(
                    transactional_id = id,
                    topic,
                    partition = index,
                    "no marker: the partition is gone"
                );
                continue;
            };
            partition.write_marker(txn.producer_id, txn.producer_epoch, control, now)?;
        }
        if commit {
            for (group, staged) in &txn.pending_offsets {
                let entries = staged
                    .iter()
                    .map(|(t, p, c)| (TopicPartition::new(t.clone(), *p), c.clone()))
                    .collect();
                self.groups.commit_transactional(group, entries)?;
            }
        }
        tracing::info!(
            transactional_id = id,
            producer_id = txn.producer_id,
            partitions = txn.partitions.len(),
            commit,
            "transaction complete"
        );
        if let Some(txn) = table.get_mut(id) {
            txn.finish();
        }
        self.persist(table)?;
        Ok(())
    }
}

/// [`Persisted`] by reference, so persisting never clones the table.
#[derive(Serialize)]
struct PersistedRef<'a> {
    transactions: &'a Table,
}
