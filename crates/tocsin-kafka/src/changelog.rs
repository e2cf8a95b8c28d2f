//! The correlators' state changelog: records per (group, detections partition) and state
//! write.
//!
//! A correlate worker holds one correlator per detections partition it owns. At most every
//! `correlate.state_interval_ms` (and at once for a partition taken away, a stop, a reload
//! of the correlation rules or policy, an idle advance and the batch after it), after the
//! warnings the batches since caused are acknowledged and before their offsets are
//! committed, it writes each touched partition's state to partition *p* of the compacted
//! changelog topic, with the header `tocsin.state.next-offset`: the first detections offset
//! the state does *not* include. When it is given partition *p*, a worker reads partition
//! *p* of the changelog to its end, restores the newest state there (below), and skips the
//! detections below it.
//!
//! **Whole states.** A state is written whole under `GROUP/TOPIC/P=ID`, ID (32 hex digits)
//! the digest of its bytes; or, when longer than one record may be
//! (`correlate.state_record_bytes`; the topic and the producer take 16 MiB), in parts, each
//! under a key naming the state it belongs to, `GROUP/TOPIC/P@NEXT_OFFSET~DIGEST~PART_BYTES#INDEX`,
//! with the header `tocsin.state.part` = `INDEX/COUNT`. So every key names one state: no
//! write replaces another's record (two owners during a rebalance, whose states at one
//! offset may differ, as may their part sizes), and a crash midway leaves the states before
//! whole. A state is taken only when all its parts are there and their bytes hash to its
//! digest. (Before deltas, whole states were written under `GROUP/TOPIC/P`; such a record
//! is still read.)
//!
//! **Deltas.** Written whole, a state costs what the partition holds (about a kilobyte a
//! live key), however few keys changed. So between whole states a worker writes *deltas*:
//! the keys and groups changed or removed since the state before (`Correlator::take_delta`),
//! one record each under `GROUP/TOPIC/P+ID`, with the header `tocsin.state.base` naming the
//! state it applies to. A delta's id is the digest of its base's id and its own bytes
//! (checked at the restore), so a delta names exactly one state and no chain of them loops.
//! The worker writes a whole state again once its deltas since the last add up to that
//! state's size, or number `correlate.state_max_deltas`, so that the deltas a restore
//! applies add up to at most about one state; a delta longer than a record is a whole state
//! instead. A worker's
//! first write after it restored a partition is whole, so that it never continues a chain
//! another owner may still be writing; and a write that fails ends the worker (it starts
//! again from a restore), so no chain goes on past a failed write.
//!
//! **Which state a restore takes.** Whole states and the deltas on them form trees (a delta
//! continues its base at a next offset not below the base's). A restore takes, of every
//! whole state and every delta that leads back to one, the one with the highest next offset
//! (then the one written last: an idle partition's state is written again at the same next
//! offset, with the windows judged since), with the deltas leading to it. Offsets are
//! committed only once a state that includes them is acknowledged, so the state taken
//! includes every committed offset.
//!
//! **Forgetting.** Once a later whole state is acknowledged, its writer tombstones
//! ([`forget`]) the records the state before stood on: its whole record or parts, and the
//! deltas since. A restore hands over the records written before the state it took that are
//! not part of it, to be tombstoned with those after its taker's first (whole) write. Records
//! written after the state taken that do not lead to it (a stale owner's) are left to a later
//! restore, which finds them older than the state it takes. Should a state be lost all the
//! same (a stale owner that tombstones the records a newer owner's chain stands on), the
//! state taken ends below the committed offset, and the worker reads the partition again
//! from there.
//!
//! Why this is safe without transactions: the correlator is deterministic (event time only),
//! so two owners of a partition compute the same state for the same offset, and any state
//! taken is a true state of its offset. Warnings are acknowledged before the state that
//! issued them is written, so a restored state never claims a warning version that was not
//! delivered; a crash between the two repeats versions, with the same ids.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::sink::Sink;
use crate::{KafkaError, KafkaSettings};

/// The header with the first offset a state record does not include.
pub const NEXT_OFFSET_HEADER: &str = "tocsin.state.next-offset";
/// The header naming the state's format.
pub const FORMAT_HEADER: &str = "tocsin.state.format";
/// The header of a part of a state split over several records: `INDEX/COUNT`, from 0.
pub const PART_HEADER: &str = "tocsin.state.part";
/// The header of a delta: the id (32 hex digits) of the state it applies to.
pub const BASE_HEADER: &str = "tocsin.state.base";

/// Where a state belongs: the consumer group and the detections partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

impl StateKey {
    fn record_key(&self) -> String {
        format!("{}/{}/{}", self.group, self.topic, self.partition)
    }

    /// The key of the whole state `id`, written in one record.
    fn whole_key(&self, id: u128) -> String {
        format!("{}={id:032x}", self.record_key())
    }

    /// The key of the delta `id`.
    fn delta_key(&self, id: u128) -> String {
        format!("{}+{id:032x}", self.record_key())
    }

    /// The key of part `index` of the split state `id`.
    fn part_key(&self, id: &SplitId, index: usize) -> String {
        format!(
            "{}@{}~{:032x}~{}#{index}",
            self.record_key(),
            id.next_offset,
            id.digest,
            id.part_bytes
        )
    }
}

/// A restored state: a whole one and the deltas that continue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    /// The first detections offset the whole state does not include.
    pub next_offset: i64,
    /// The correlator snapshot.
    pub state: Vec<u8>,
    /// Its id ([`state_id`]).
    pub id: u128,
    /// The keys of the records it was read from: its one record, or its parts ([`forget`]
    /// them once a later state is written).
    pub records: Vec<String>,
    /// The deltas that continue it, to apply in this order.
    pub deltas: Vec<DeltaRecord>,
    /// The keys of the records (whole, parts, deltas) of older states still in the
    /// changelog (forget them too).
    pub stale: Vec<String>,
    /// Records of this partition's state that could not be read (a missing or malformed
    /// header or key, a delta whose bytes are not those its id names) and were passed over.
    pub skipped: usize,
}

/// A delta of a restored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaRecord {
    /// The first detections offset the state it leads to does not include.
    pub next_offset: i64,
    /// Its id (the digest of its base's id and its bytes).
    pub id: u128,
    /// Its record's key ([`forget`] it once a later whole state is written).
    pub key: String,
    /// The correlator delta.
    pub delta: Vec<u8>,
}

/// The id of a whole state: the digest of its bytes, which names its record or parts (and
/// which a delta after it names as its base).
pub fn state_id(state: &[u8]) -> u128 {
    tocsin_core::id::IdHasher::new("correlator-state")
        .part(state)
        .digest()
}

/// The id of a delta on the state `base`.
fn delta_id(base: u128, delta: &[u8]) -> u128 {
    tocsin_core::id::IdHasher::new("correlator-delta")
        .part(&base.to_le_bytes())
        .part(delta)
        .digest()
}

/// Queue `delta`, the changes since the state `base` (a whole state's [`state_id`] or the
/// id of the delta before), as of `next_offset`, as one record. Returns its id and key.
/// The caller flushes the sink, and writes a whole state instead of a delta longer than a
/// record may be.
pub fn write_delta(
    sink: &mut Sink,
    changelog: &str,
    key: &StateKey,
    next_offset: i64,
    format: &str,
    base: u128,
    delta: &[u8],
) -> Result<(u128, String), KafkaError> {
    let id = delta_id(base, delta);
    let record_key = key.delta_key(id);
    let next = next_offset.to_string();
    let base = format!("{base:032x}");
    let headers = [
        (NEXT_OFFSET_HEADER, next.as_str()),
        (FORMAT_HEADER, format),
        (BASE_HEADER, base.as_str()),
    ];
    sink.send_to(
        changelog,
        Some(key.partition),
        Some(record_key.as_bytes()),
        delta,
        &headers,
    )?;
    Ok((id, record_key))
}

/// Queue the state of `key`'s partition as of `next_offset`: one record, or parts of at most
/// `record_bytes` when it is longer. Returns its id ([`state_id`]) and the keys of the
/// records written. The caller flushes the sink.
pub fn write(
    sink: &mut Sink,
    changelog: &str,
    key: &StateKey,
    next_offset: i64,
    format: &str,
    state: &[u8],
    record_bytes: usize,
) -> Result<(u128, Vec<String>), KafkaError> {
    let id = state_id(state);
    let next = next_offset.to_string();
    let mut keys = Vec::new();
    for (record_key, value, part) in records(key, next_offset, state, id, record_bytes) {
        let mut headers = vec![(NEXT_OFFSET_HEADER, next.as_str()), (FORMAT_HEADER, format)];
        if let Some(label) = &part {
            headers.push((PART_HEADER, label.as_str()));
        }
        sink.send_to(
            changelog,
            Some(key.partition),
            Some(record_key.as_bytes()),
            value,
            &headers,
        )?;
        keys.push(record_key);
    }
    Ok((id, keys))
}

/// The records the state `id` is written as: (key, value, part header): one record under
/// the state's key, or parts of at most `record_bytes` under their state's keys.
fn records<'s>(
    key: &StateKey,
    next_offset: i64,
    state: &'s [u8],
    id: u128,
    record_bytes: usize,
) -> Vec<(String, &'s [u8], Option<String>)> {
    if state.len() <= record_bytes {
        return vec![(key.whole_key(id), state, None)];
    }
    let id = SplitId {
        next_offset,
        digest: id,
        part_bytes: record_bytes.max(1),
    };
    let count = state.len().div_ceil(id.part_bytes);
    state
        .chunks(id.part_bytes)
        .enumerate()
        .map(|(index, part)| {
            (
                key.part_key(&id, index),
                part,
                Some(format!("{index}/{count}")),
            )
        })
        .collect()
}

/// Queue tombstones for the records of earlier states (whole records, parts and deltas:
/// keys from [`write`], [`write_delta`] or [`restore`]), once a later whole state has been
/// acknowledged (not merely queued: a record that failed must not take the state before it
/// along).
pub fn forget(
    sink: &mut Sink,
    changelog: &str,
    key: &StateKey,
    records: &[String],
) -> Result<(), KafkaError> {
    for record in records {
        sink.send_tombstone(changelog, key.partition, record.as_bytes())?;
    }
    Ok(())
}

/// Which split state a part belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SplitId {
    next_offset: i64,
    digest: u128,
    part_bytes: usize,
}

/// `NEXT~DIGEST~PART_BYTES#INDEX`, the rest of a part key after `GROUP/TOPIC/P@`.
fn parse_part_key(rest: &[u8]) -> Option<(SplitId, usize)> {
    let rest = std::str::from_utf8(rest).ok()?;
    let (id, index) = rest.split_once('#')?;
    let mut fields = id.split('~');
    let next_offset = fields.next()?.parse().ok()?;
    let digest = u128::from_str_radix(fields.next()?, 16).ok()?;
    let part_bytes = fields.next()?.parse().ok()?;
    if fields.next().is_some() {
        return None;
    }
    let id = SplitId {
        next_offset,
        digest,
        part_bytes,
    };
    Some((id, index.parse().ok()?))
}

/// `INDEX/COUNT` of a part header, with `INDEX < COUNT`.
fn part_label(value: &str) -> Option<(usize, usize)> {
    let (index, count) = value.split_once('/')?;
    let (index, count) = (index.parse().ok()?, count.parse().ok()?);
    (index < count).then_some((index, count))
}

/// The parts of one split state read so far.
#[derive(Default)]
struct Split {
    count: usize,
    parts: BTreeMap<usize, Vec<u8>>,
    /// The changelog offset of its latest part: when it was written.
    written: i64,
}

/// Which of two states was written later: by next offset, then by changelog offset (an idle
/// partition's state is written again at the same next offset, with windows judged since).
type Rank = (i64, i64);

/// A delta read from the changelog.
struct Delta {
    base: u128,
    next_offset: i64,
    /// The changelog offset it was written at.
    written: i64,
    bytes: Vec<u8>,
}

/// A whole state: one record, or a split one with every part and the right digest.
struct Root {
    rank: Rank,
    state: Vec<u8>,
    /// The keys of its records.
    records: Vec<String>,
}

/// The records of one partition's changelog, read in order, and the state to restore from
/// them (see the module's "Which state a restore takes").
struct Selection {
    wanted: String,
    /// Whole states written in one record, by id (the digest of their bytes): their rank
    /// and bytes.
    wholes: BTreeMap<u128, (Rank, Vec<u8>)>,
    /// The record under the partition's own key (written before deltas): its rank and
    /// bytes, the latest if several.
    legacy: Option<(Rank, Vec<u8>)>,
    splits: BTreeMap<SplitId, Split>,
    /// Deltas by id.
    deltas: BTreeMap<u128, Delta>,
    /// Records of the key that could not be read (a missing header, a key out of form,
    /// bytes that are not those a record's id or digest names): not taken, and counted.
    skipped: usize,
}

impl Selection {
    fn new(key: &StateKey) -> Self {
        Selection {
            wanted: key.record_key(),
            wholes: BTreeMap::new(),
            legacy: None,
            splits: BTreeMap::new(),
            deltas: BTreeMap::new(),
            skipped: 0,
        }
    }

    /// Take the record at changelog offset `at`: its key, value (`None`: a tombstone) and
    /// the values of its next-offset, part and base headers.
    fn read(
        &mut self,
        at: i64,
        record_key: &[u8],
        payload: Option<&[u8]>,
        headers: RecordHeaders<'_>,
    ) {
        let RecordHeaders { next, part, base } = headers;
        let next = next.and_then(|v| v.parse::<i64>().ok());
        let Some(rest) = record_key.strip_prefix(self.wanted.as_bytes()) else {
            return;
        };
        match rest.first() {
            None => self.read_legacy(at, payload, next),
            Some(b'=') => self.read_whole(at, &rest[1..], payload, next),
            Some(b'+') => self.read_delta(at, &rest[1..], payload, next, base),
            Some(b'@') => self.read_part(at, &rest[1..], payload, part),
            // Another partition's (`.../2` is a prefix of `.../22`).
            Some(_) => {}
        }
    }

    /// The record under the partition's own key.
    fn read_legacy(&mut self, at: i64, payload: Option<&[u8]>, next: Option<i64>) {
        let Some(payload) = payload else {
            self.legacy = None;
            return;
        };
        match next {
            Some(next) if self.legacy.as_ref().is_none_or(|(r, _)| (next, at) > *r) => {
                self.legacy = Some(((next, at), payload.to_vec()));
            }
            Some(_) => {}
            None => self.skipped += 1,
        }
    }

    /// A whole state's record, its key ending in `id`.
    fn read_whole(&mut self, at: i64, id: &[u8], payload: Option<&[u8]>, next: Option<i64>) {
        let Some(id) = hex_id(id) else {
            self.skipped += 1;
            return;
        };
        let Some(payload) = payload else {
            self.wholes.remove(&id);
            return;
        };
        match next {
            Some(next) if state_id(payload) == id => {
                self.wholes.insert(id, ((next, at), payload.to_vec()));
            }
            _ => self.skipped += 1,
        }
    }

    /// A part of a split state, its key ending in `NEXT~DIGEST~PART_BYTES#INDEX`.
    fn read_part(&mut self, at: i64, rest: &[u8], payload: Option<&[u8]>, part: Option<&str>) {
        let Some((id, index)) = parse_part_key(rest) else {
            self.skipped += 1;
            return;
        };
        let Some(payload) = payload else {
            if let Some(split) = self.splits.get_mut(&id) {
                split.parts.remove(&index);
            }
            return;
        };
        match part.and_then(part_label) {
            Some((of, count)) if of == index => {
                let split = self.splits.entry(id).or_default();
                split.count = count;
                split.parts.insert(index, payload.to_vec());
                split.written = split.written.max(at);
            }
            _ => self.skipped += 1,
        }
    }

    /// A delta's record, its key ending in `id`.
    fn read_delta(
        &mut self,
        at: i64,
        id: &[u8],
        payload: Option<&[u8]>,
        next: Option<i64>,
        base: Option<&str>,
    ) {
        let Some(id) = hex_id(id) else {
            self.skipped += 1;
            return;
        };
        let Some(payload) = payload else {
            self.deltas.remove(&id);
            return;
        };
        let base = base.and_then(|b| hex_id(b.as_bytes()));
        match (next, base) {
            (Some(next_offset), Some(base)) if delta_id(base, payload) == id => {
                self.deltas.insert(
                    id,
                    Delta {
                        base,
                        next_offset,
                        written: at,
                        bytes: payload.to_vec(),
                    },
                );
            }
            _ => self.skipped += 1,
        }
    }

    /// Every whole state there is, by id: the records written whole, the legacy record, the
    /// split states with every part whose bytes hash to their digest. Of one id written
    /// twice (the same bytes whole and in parts, say), the later; the other's rank and
    /// records go to `twins`.
    fn roots(
        &mut self,
        key: &StateKey,
        twins: &mut Vec<(Rank, Vec<String>)>,
    ) -> BTreeMap<u128, Root> {
        let mut roots: BTreeMap<u128, Root> = BTreeMap::new();
        let mut offer = |id: u128, root: Root| match roots.get(&id) {
            Some(kept) if kept.rank >= root.rank => twins.push((root.rank, root.records)),
            _ => {
                if let Some(earlier) = roots.insert(id, root) {
                    twins.push((earlier.rank, earlier.records));
                }
            }
        };
        for (id, (rank, state)) in std::mem::take(&mut self.wholes) {
            let records = vec![key.whole_key(id)];
            offer(
                id,
                Root {
                    rank,
                    state,
                    records,
                },
            );
        }
        if let Some((rank, state)) = self.legacy.take() {
            let records = vec![self.wanted.clone()];
            offer(
                state_id(&state),
                Root {
                    rank,
                    state,
                    records,
                },
            );
        }
        let mut complete = Vec::new();
        for (id, split) in &self.splits {
            let whole =
                split.parts.len() == split.count && split.parts.keys().copied().eq(0..split.count);
            if !whole {
                continue;
            }
            let state: Vec<u8> = split.parts.values().flatten().copied().collect();
            if state_id(&state) == id.digest {
                complete.push(*id);
                let records = (0..split.count).map(|i| key.part_key(id, i)).collect();
                let rank = (id.next_offset, split.written);
                offer(
                    id.digest,
                    Root {
                        rank,
                        state,
                        records,
                    },
                );
            } else {
                self.skipped += 1;
            }
        }
        for id in complete {
            self.splits.remove(&id);
        }
        roots
    }

    /// The root each delta leads back to (a delta on no root, or after a delta of a later
    /// offset than its own, leads nowhere).
    fn leads_to(&self, roots: &BTreeMap<u128, Root>) -> HashMap<u128, u128> {
        let mut leads: HashMap<u128, Option<u128>> = HashMap::new();
        for &start in self.deltas.keys() {
            let mut path = Vec::new();
            let mut at = start;
            let found = loop {
                if let Some(known) = leads.get(&at) {
                    break *known;
                }
                let Some(d) = self.deltas.get(&at) else {
                    break None;
                };
                let base_next = match (roots.get(&d.base), self.deltas.get(&d.base)) {
                    (Some(root), _) => Some(root.rank.0),
                    (None, Some(base)) => Some(base.next_offset),
                    (None, None) => None,
                };
                path.push(at);
                match base_next {
                    Some(next) if d.next_offset >= next => {
                        if roots.contains_key(&d.base) {
                            break Some(d.base);
                        }
                        // Ids are digests of their base's: a walk longer than the deltas
                        // would be a loop, which only a collision could make.
                        if path.len() > self.deltas.len() {
                            break None;
                        }
                        at = d.base;
                    }
                    _ => break None,
                }
            };
            for id in path {
                leads.insert(id, found);
            }
        }
        leads
            .into_iter()
            .filter_map(|(id, root)| Some((id, root?)))
            .collect()
    }

    /// The state to restore: of the whole states and the deltas that lead back to one, the
    /// newest, with the deltas leading to it; and the records written before its whole state
    /// that are not part of it.
    fn finish(mut self, key: &StateKey) -> Option<StateRecord> {
        let mut twins = Vec::new();
        let mut roots = self.roots(key, &mut twins);
        let leads = self.leads_to(&roots);
        // The newest: a whole state, or the end of a chain of deltas.
        let best_root = roots.iter().map(|(id, r)| (r.rank, *id, None)).max();
        let best_delta = leads
            .keys()
            .map(|id| {
                let d = &self.deltas[id];
                ((d.next_offset, d.written), leads[id], Some(*id))
            })
            .max();
        let (_, root_id, tip) = best_root.into_iter().chain(best_delta).max()?;
        let root = roots.remove(&root_id)?;
        // The deltas from the whole state to the end.
        let mut chain = Vec::new();
        let mut at = tip;
        while let Some(id) = at {
            let d = self.deltas.remove(&id)?;
            at = (d.base != root_id).then_some(d.base);
            chain.push(DeltaRecord {
                next_offset: d.next_offset,
                id,
                key: key.delta_key(id),
                delta: d.bytes,
            });
        }
        chain.reverse();
        // Written before the state taken and not part of it: forgotten after the next write.
        let before = root.rank.1;
        let mut stale: Vec<String> = roots
            .into_values()
            .filter(|r| r.rank.1 < before)
            .flat_map(|r| r.records)
            .collect();
        stale.extend(
            twins
                .into_iter()
                .filter(|(rank, _)| rank.1 < before)
                .flat_map(|(_, records)| records),
        );
        stale.extend(
            self.splits
                .iter()
                .filter(|(_, s)| s.written < before)
                .flat_map(|(id, s)| s.parts.keys().map(|i| key.part_key(id, *i))),
        );
        stale.extend(
            self.deltas
                .iter()
                .filter(|(_, d)| d.written < before)
                .map(|(id, _)| key.delta_key(*id)),
        );
        Some(StateRecord {
            next_offset: root.rank.0,
            id: root_id,
            state: root.state,
            records: root.records,
            deltas: chain,
            stale,
            skipped: self.skipped,
        })
    }
}

/// An id written as 32 hex digits.
fn hex_id(text: &[u8]) -> Option<u128> {
    let text = std::str::from_utf8(text).ok().filter(|t| t.len() == 32)?;
    u128::from_str_radix(text, 16).ok()
}

/// Read partition `key.partition` of `changelog` to its end and return the newest state of
/// `key`, a whole state and the deltas on it (see the module's "Which state a restore
/// takes"), if any. Fails when the changelog cannot be read within `timeout`: a worker must
/// not process a partition whose state it could not restore.
pub fn restore(
    settings: &KafkaSettings,
    changelog: &str,
    key: &StateKey,
    timeout: Duration,
) -> Result<Option<StateRecord>, KafkaError> {
    let fail = |action: &'static str| {
        move |source: rdkafka::error::KafkaError| KafkaError::Consumer { action, source }
    };
    let consumer: BaseConsumer = settings
        .client_config(&[
            ("group.id", "tocsin-changelog-reader"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "false"),
        ])
        .create()
        .map_err(|source| KafkaError::Client {
            client: "changelog reader",
            bootstrap: settings.bootstrap.clone(),
            source,
        })?;
    let deadline = Instant::now() + timeout;
    // Right after a broker restart the partition may have no leader yet: retry until the
    // deadline.
    let (low, high) = loop {
        match consumer.fetch_watermarks(changelog, key.partition, Duration::from_secs(5)) {
            Ok(w) => break w,
            Err(e) if Instant::now() >= deadline => {
                return Err(fail("read changelog watermarks")(e));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    if high <= low {
        return Ok(None);
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(changelog, key.partition, Offset::Offset(low))
        .map_err(fail("assign changelog"))?;
    consumer.assign(&list).map_err(fail("assign changelog"))?;
    let mut selection = Selection::new(key);
    let mut position = low;
    while position < high {
        if Instant::now() >= deadline {
            return Err(KafkaError::Restore {
                changelog: changelog.to_owned(),
                partition: key.partition,
                reason: format!("read to offset {position} of {high} within {timeout:?}"),
            });
        }
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        // Consumer errors are transient here (librdkafka retries); the deadline bounds them.
        let Ok(m) = polled else { continue };
        position = m.offset() + 1;
        let Some(record_key) = m.key() else { continue };
        let headers = RecordHeaders {
            next: header(&m, NEXT_OFFSET_HEADER),
            part: header(&m, PART_HEADER),
            base: header(&m, BASE_HEADER),
        };
        selection.read(m.offset(), record_key, m.payload(), headers);
    }
    Ok(selection.finish(key))
}

/// The headers of a changelog record that the selection reads.
#[derive(Debug, Clone, Copy, Default)]
struct RecordHeaders<'m> {
    next: Option<&'m str>,
    part: Option<&'m str>,
    base: Option<&'m str>,
}

/// A header's value as text.
fn header<'m>(m: &'m rdkafka::message::BorrowedMessage<'_>, name: &str) -> Option<&'m str> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_labels_name_a_part_of_a_count() {
        assert_eq!(part_label("0/3"), Some((0, 3)));
        assert_eq!(part_label("2/3"), Some((2, 3)));
        for bad in ["3/3", "1", "/2", "a/2", "1/b", "-1/2", ""] {
            assert_eq!(part_label(bad), None, "{bad}");
        }
    }

    fn key() -> StateKey {
        StateKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 2,
        }
    }

    /// A changelog as the selection reads it: (key, value, next header, part header); the
    /// base headers of deltas are kept beside it, by place.
    type Log = Vec<(String, Option<Vec<u8>>, Option<String>, Option<String>)>;

    /// Append a state's records to the log; returns their keys.
    fn written(log: &mut Log, next: i64, state: &[u8], record_bytes: usize) -> Vec<String> {
        let mut keys = Vec::new();
        for (k, v, part) in records(&key(), next, state, state_id(state), record_bytes) {
            keys.push(k.clone());
            log.push((k, Some(v.to_vec()), Some(next.to_string()), part));
        }
        keys
    }

    fn sorted(keys: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut keys: Vec<String> = keys.into_iter().collect();
        keys.sort();
        keys
    }

    fn select(log: &Log) -> Option<StateRecord> {
        select_with_bases(log, &BTreeMap::new())
    }

    /// [`select`], with the base headers of records by their place in the log.
    fn select_with_bases(log: &Log, bases: &BTreeMap<usize, String>) -> Option<StateRecord> {
        let mut selection = Selection::new(&key());
        for (at, (k, v, next, part)) in log.iter().enumerate() {
            let headers = RecordHeaders {
                next: next.as_deref(),
                part: part.as_deref(),
                base: bases.get(&at).map(String::as_str),
            };
            selection.read(at as i64, k.as_bytes(), v.as_deref(), headers);
        }
        selection.finish(&key())
    }

    fn state(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn part_keys_name_their_state() {
        let parts: Vec<String> = records(&key(), 1234, &state(10, 0), state_id(&state(10, 0)), 4)
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        assert_eq!(parts.len(), 3);
        assert!(
            parts[0].starts_with("g/t/2@1234~") && parts[2].ends_with("~4#2"),
            "{parts:?}"
        );
        let small = state(4, 0);
        let whole = records(&key(), 1234, &small, state_id(&small), 4)[0]
            .0
            .clone();
        assert_eq!(whole, format!("g/t/2={:032x}", state_id(&small)));
    }

    #[test]
    fn the_newest_whole_state_is_taken_and_older_parts_handed_over() {
        let mut log = Log::new();
        let first = written(&mut log, 10, &state(3, 1), 8);
        assert_eq!(
            first.len(),
            1,
            "a state no longer than a record is one record"
        );
        let old_parts = written(&mut log, 20, &state(30, 2), 8);
        let new_parts = written(&mut log, 30, &state(50, 3), 8);
        let r = select(&log).unwrap();
        assert_eq!((r.next_offset, r.state.clone()), (30, state(50, 3)));
        assert_eq!(r.records, new_parts);
        assert_eq!(
            sorted(r.stale),
            sorted(first.iter().chain(&old_parts).cloned())
        );
        assert_eq!(r.skipped, 0);
        // A later whole record wins over the parts.
        let last = written(&mut log, 40, &state(5, 4), 8);
        let r = select(&log).unwrap();
        assert_eq!(
            (r.next_offset, &r.state, &r.records),
            (40, &state(5, 4), &last)
        );
        assert_eq!(r.stale.len(), 1 + old_parts.len() + new_parts.len());
    }

    #[test]
    fn a_state_missing_a_part_is_passed_over_and_kept() {
        let mut log = Log::new();
        let before = written(&mut log, 20, &state(30, 2), 8);
        let mut newer = Log::new();
        written(&mut newer, 30, &state(50, 3), 8);
        newer.pop(); // a crash before its last part
        log.extend(newer);
        let r = select(&log).unwrap();
        assert_eq!(
            (r.next_offset, r.state.clone(), r.records.clone()),
            (20, state(30, 2), before)
        );
        // The newer parts may be another owner's, still being written: not handed over.
        assert!(r.stale.is_empty());
        // A tombstone makes a state incomplete too: with nothing older, nothing is taken.
        let mut log = Log::new();
        let parts = written(&mut log, 20, &state(30, 2), 8);
        log.push((parts[1].clone(), None, None, None));
        assert_eq!(select(&log), None);
    }

    #[test]
    fn of_states_at_one_offset_the_one_written_last_is_taken() {
        // An idle partition's state is written again at the same next offset, changed.
        let (a, b) = (state(30, 1), state(40, 2));
        let mut log = Log::new();
        let whole = written(&mut log, 20, &state(3, 0), 8);
        let first = written(&mut log, 20, &a, 8);
        let second = written(&mut log, 20, &b, 8);
        let r = select(&log).unwrap();
        assert_eq!((r.state.clone(), r.records), (b, second.clone()));
        assert_eq!(
            sorted(r.stale),
            sorted(whole.iter().chain(&first).cloned()),
            "the states written before are handed over"
        );
        // A whole record written after the parts wins over them, and they go.
        written(&mut log, 20, &state(5, 3), 8);
        let r = select(&log).unwrap();
        assert_eq!(r.state, state(5, 3));
        assert_eq!(r.stale.len(), 1 + first.len() + second.len());
    }

    #[test]
    fn parts_of_two_writers_never_mix() {
        // Two owners write the same offset: bytes that differ (a set's order), and the same
        // bytes in parts of other sizes (another `state_record_bytes`), interleaved, one of
        // each incomplete.
        let (a, b) = (state(40, 5), state(40, 6));
        let (mut la, mut lb, mut lc) = (Log::new(), Log::new(), Log::new());
        written(&mut la, 30, &a, 8);
        written(&mut lb, 30, &b, 8);
        written(&mut lc, 30, &a, 16);
        lb.remove(2);
        lc.remove(0);
        let mut log = Log::new();
        for i in 0..5 {
            for l in [&la, &lb, &lc] {
                if let Some(r) = l.get(i) {
                    log.push(r.clone());
                }
            }
        }
        let r = select(&log).unwrap();
        assert_eq!((r.next_offset, r.state), (30, a));
    }

    #[test]
    fn unreadable_records_and_damaged_parts_are_passed_over() {
        let mut log = Log::new();
        written(&mut log, 20, &state(30, 2), 8);
        let mut newer = Log::new();
        written(&mut newer, 30, &state(30, 7), 8);
        // A damaged part: its state's digest no longer holds.
        newer[1].1.as_mut().unwrap()[0] ^= 1;
        log.extend(newer);
        log.push((
            "g/t/2@garbage".into(),
            Some(vec![1]),
            Some("40".into()),
            Some("0/1".into()),
        ));
        log.push(("g/t/2".into(), Some(vec![1]), None, None));
        // Another partition's records are not this one's.
        log.push(("g/t/22".into(), Some(vec![1]), Some("99".into()), None));
        let r = select(&log).unwrap();
        assert_eq!((r.next_offset, r.state), (20, state(30, 2)));
        assert_eq!(r.skipped, 3);
    }

    /// Append a delta on `base` as of `next` to the log; returns its id.
    fn delta(
        log: &mut Log,
        bases: &mut BTreeMap<usize, String>,
        base: u128,
        next: i64,
        bytes: &[u8],
    ) -> u128 {
        let id = delta_id(base, bytes);
        bases.insert(log.len(), format!("{base:032x}"));
        log.push((
            key().delta_key(id),
            Some(bytes.to_vec()),
            Some(next.to_string()),
            None,
        ));
        id
    }

    fn chain_of(r: &StateRecord) -> Vec<(i64, Vec<u8>)> {
        r.deltas
            .iter()
            .map(|d| (d.next_offset, d.delta.clone()))
            .collect()
    }

    #[test]
    fn deltas_continue_the_newest_whole_state_in_order() {
        let (mut log, mut bases) = (Log::new(), BTreeMap::new());
        let whole = state(30, 1);
        written(&mut log, 10, &whole, 64);
        let first = delta(&mut log, &mut bases, state_id(&whole), 20, b"d1");
        // Another partition's delta, and one on no state here.
        log.push((
            "g/t/22+00".into(),
            Some(b"x".to_vec()),
            Some("99".into()),
            None,
        ));
        delta(&mut log, &mut bases, 7, 50, b"stray");
        let second = delta(&mut log, &mut bases, first, 30, b"d2");
        let r = select_with_bases(&log, &bases).unwrap();
        assert_eq!(
            (r.next_offset, &r.state, r.id),
            (10, &whole, state_id(&whole))
        );
        assert_eq!(chain_of(&r), [(20, b"d1".to_vec()), (30, b"d2".to_vec())]);
        assert_eq!(r.deltas[1].id, second);
        assert_eq!(r.deltas[0].key, format!("g/t/2+{first:032x}"));
        assert!(r.stale.is_empty());
        assert_eq!(r.skipped, 0);
        // The same over a split state.
        let (mut log, mut bases) = (Log::new(), BTreeMap::new());
        let split = state(30, 2);
        let parts = written(&mut log, 10, &split, 8);
        delta(&mut log, &mut bases, state_id(&split), 20, b"d1");
        let r = select_with_bases(&log, &bases).unwrap();
        assert_eq!((r.records.len(), r.id), (parts.len(), state_id(&split)));
        assert_eq!(chain_of(&r), [(20, b"d1".to_vec())]);
    }

    #[test]
    fn of_two_deltas_on_one_state_the_later_goes_on() {
        let (mut log, mut bases) = (Log::new(), BTreeMap::new());
        let whole = state(30, 1);
        written(&mut log, 10, &whole, 64);
        let base = state_id(&whole);
        // Two owners: the higher next offset wins, then the one written last.
        delta(&mut log, &mut bases, base, 30, b"a");
        delta(&mut log, &mut bases, base, 25, b"b");
        let c = delta(&mut log, &mut bases, base, 30, b"c");
        delta(&mut log, &mut bases, c, 40, b"c2");
        let r = select_with_bases(&log, &bases).unwrap();
        assert_eq!(chain_of(&r), [(30, b"c".to_vec()), (40, b"c2".to_vec())]);
        // A delta below its base's offset is not a continuation.
        let (mut log, mut bases) = (Log::new(), BTreeMap::new());
        written(&mut log, 10, &whole, 64);
        delta(&mut log, &mut bases, base, 9, b"behind");
        assert!(select_with_bases(&log, &bases).unwrap().deltas.is_empty());
    }

    #[test]
    fn a_damaged_or_forgotten_delta_ends_the_chain() {
        let (mut log, mut bases) = (Log::new(), BTreeMap::new());
        let whole = state(30, 1);
        written(&mut log, 10, &whole, 64);
        let first = delta(&mut log, &mut bases, state_id(&whole), 20, b"d1");
        delta(&mut log, &mut bases, first, 30, b"d2");
        // Bytes that are not the ones its id names: passed over and counted, and what
        // follows it is not reached.
        let mut damaged = log.clone();
        damaged[1].1 = Some(b"D1".to_vec());
        let r = select_with_bases(&damaged, &bases).unwrap();
        assert!(r.deltas.is_empty());
        assert_eq!(r.skipped, 1);
        // A tombstone: the same.
        log.push((key().delta_key(first), None, None, None));
        assert!(select_with_bases(&log, &bases).unwrap().deltas.is_empty());
    }

    #[test]
    fn the_state_that_goes_furthest_is_taken_whatever_whole_state_it_starts_from() {
        // An owner writes a whole state and a delta; another (restored from them) writes its
        // own whole state and a delta; the first, stale, writes one more delta, which goes
        // furthest: the offsets up to it may have been committed after it, so it is taken.
        let (mut log, mut bases) = (Log::new(), BTreeMap::new());
        let old = state(30, 1);
        let old_records = written(&mut log, 10, &old, 64);
        let d1 = delta(&mut log, &mut bases, state_id(&old), 20, b"d1");
        let new = state(30, 2);
        let new_records = written(&mut log, 20, &new, 64);
        let n1 = delta(&mut log, &mut bases, state_id(&new), 25, b"n1");
        let late = delta(&mut log, &mut bases, d1, 30, b"late");
        let r = select_with_bases(&log, &bases).unwrap();
        assert_eq!(
            (&r.state, r.next_offset, &r.records),
            (&old, 10, &old_records)
        );
        assert_eq!(chain_of(&r), [(20, b"d1".to_vec()), (30, b"late".to_vec())]);
        assert_eq!(r.deltas[1].id, late);
        // Nothing was written before the state taken; the other chain is left alone.
        assert!(r.stale.is_empty(), "{:?}", r.stale);
        // Without the stale owner's last delta, the other chain goes further: the records
        // written before its whole state are handed over.
        log.push((key().delta_key(late), None, None, None));
        let r = select_with_bases(&log, &bases).unwrap();
        assert_eq!((&r.state, &r.records), (&new, &new_records));
        assert_eq!(chain_of(&r), [(25, b"n1".to_vec())]);
        assert_eq!(r.deltas[0].id, n1);
        assert_eq!(
            sorted(r.stale),
            sorted(old_records.into_iter().chain([key().delta_key(d1)]))
        );
    }

    #[test]
    fn of_two_branches_the_one_that_goes_further_is_taken() {
        // Two owners go on from one delta: one with a delta to 200, the other with deltas to
        // 180 and then 250. The first delta of the branch taken is not the higher one.
        let (mut log, mut bases) = (Log::new(), BTreeMap::new());
        let whole = state(30, 1);
        written(&mut log, 100, &whole, 64);
        let d1 = delta(&mut log, &mut bases, state_id(&whole), 150, b"d1");
        let n2 = delta(&mut log, &mut bases, d1, 180, b"n2");
        delta(&mut log, &mut bases, d1, 200, b"o2");
        delta(&mut log, &mut bases, n2, 250, b"n3");
        let r = select_with_bases(&log, &bases).unwrap();
        assert_eq!(
            chain_of(&r),
            [
                (150, b"d1".to_vec()),
                (180, b"n2".to_vec()),
                (250, b"n3".to_vec())
            ]
        );
    }

    #[test]
    fn a_state_written_under_the_partitions_own_key_is_still_read() {
        // As versions before deltas wrote a whole state.
        let mut log = Log::new();
        let legacy = state(30, 1);
        log.push((
            "g/t/2".into(),
            Some(legacy.clone()),
            Some("10".into()),
            None,
        ));
        let r = select(&log).unwrap();
        assert_eq!(
            (&r.state, r.next_offset, r.id),
            (&legacy, 10, state_id(&legacy))
        );
        assert_eq!(r.records, ["g/t/2"]);
        // A newer state hands it over to be tombstoned.
        written(&mut log, 20, &state(30, 2), 64);
        assert_eq!(select(&log).unwrap().stale, ["g/t/2"]);
    }

    #[test]
    fn the_records_of_a_state_written_twice_are_handed_over_too() {
        // The same bytes written whole, then in parts (another `state_record_bytes`), then
        // a newer state: both forms of the first are handed over.
        let mut log = Log::new();
        let first = state(30, 1);
        let whole = written(&mut log, 10, &first, 64);
        let parts = written(&mut log, 10, &first, 8);
        let newer = state(30, 2);
        written(&mut log, 20, &newer, 64);
        let r = select(&log).unwrap();
        assert_eq!(r.state, newer);
        assert_eq!(sorted(r.stale), sorted(whole.into_iter().chain(parts)));
    }
}
