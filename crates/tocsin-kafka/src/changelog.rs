//! The correlators' state changelog: one record per (group, detections partition) and batch.
//!
//! A correlate worker holds one correlator per detections partition it owns. At the end of
//! each batch, after the warnings the batch caused are acknowledged and before the batch's
//! offsets are committed, it writes each touched partition's state to partition *p* of the
//! compacted changelog topic: key `GROUP/TOPIC/P`, value the correlator snapshot, header
//! `tocsin.state.next-offset` the first detections offset the state does *not* include.
//! When it is given partition *p*, a worker reads partition *p* of the changelog to its end
//! and restores the record with the highest next offset, then skips the detections below it.
//!
//! A state longer than one record may be (`correlate.state_record_bytes`; the topic and the
//! producer take 16 MiB) is written in parts instead, each under a key of its own state,
//! `GROUP/TOPIC/P@NEXT_OFFSET#INDEX`, with the header `tocsin.state.part` = `INDEX/COUNT`.
//! A reader takes a split state only when all its parts are there. Because its keys are its
//! own, no later write replaces a part of it, so a crash or a second owner writing midway
//! leaves the state before whole; once a later state is written, the writer queues
//! tombstones for the earlier one's parts ([`forget`]), after it in the partition, for
//! compaction to remove them.
//!
//! Why this is safe without transactions: the correlator is deterministic (event time only),
//! so two owners of a partition during a rebalance compute the same state for the same
//! offset, and whichever record compaction keeps is a true state of its offset. Warnings are
//! acknowledged before the state that issued them is written, so a restored state never
//! claims a warning version that was not delivered; a crash between the two repeats
//! versions, with the same ids.

use std::collections::BTreeMap;
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

    /// The key of part `index` of the state as of `next_offset`.
    fn part_key(&self, next_offset: i64, index: usize) -> String {
        format!("{}@{next_offset}#{index}", self.record_key())
    }
}

/// A restored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    /// The first detections offset the state does not include.
    pub next_offset: i64,
    /// The correlator snapshot.
    pub state: Vec<u8>,
    /// The keys of its parts, when it was split ([`forget`] them once a later state is
    /// written).
    pub parts: Vec<String>,
    /// The keys of the parts of older states still in the changelog (forget them too).
    pub stale_parts: Vec<String>,
}

/// Queue the state of `key`'s partition as of `next_offset`: one record, or parts of at most
/// `record_bytes` when it is longer. Returns the keys of the parts (none when whole). The
/// caller flushes the sink.
pub fn write(
    sink: &mut Sink,
    changelog: &str,
    key: &StateKey,
    next_offset: i64,
    format: &str,
    state: &[u8],
    record_bytes: usize,
) -> Result<Vec<String>, KafkaError> {
    let next = next_offset.to_string();
    if state.len() <= record_bytes {
        sink.send_to(
            changelog,
            Some(key.partition),
            Some(key.record_key().as_bytes()),
            state,
            &[(NEXT_OFFSET_HEADER, next.as_str()), (FORMAT_HEADER, format)],
        )?;
        return Ok(Vec::new());
    }
    let count = state.len().div_ceil(record_bytes.max(1));
    let mut keys = Vec::with_capacity(count);
    for (index, part) in state.chunks(record_bytes.max(1)).enumerate() {
        let part_key = key.part_key(next_offset, index);
        let label = format!("{index}/{count}");
        sink.send_to(
            changelog,
            Some(key.partition),
            Some(part_key.as_bytes()),
            part,
            &[
                (NEXT_OFFSET_HEADER, next.as_str()),
                (FORMAT_HEADER, format),
                (PART_HEADER, label.as_str()),
            ],
        )?;
        keys.push(part_key);
    }
    Ok(keys)
}

/// Queue tombstones for parts of earlier states (keys from [`write`] or [`restore`]), once a
/// later state has been queued: in the same partition, after it, so that a reader who meets
/// a tombstone has met the later state whole.
pub fn forget(
    sink: &mut Sink,
    changelog: &str,
    key: &StateKey,
    part_keys: &[String],
) -> Result<(), KafkaError> {
    for part_key in part_keys {
        sink.send_tombstone(changelog, key.partition, part_key.as_bytes())?;
    }
    Ok(())
}

/// The parts of one split state read so far.
#[derive(Default)]
struct Split {
    count: usize,
    parts: BTreeMap<usize, Vec<u8>>,
}

/// `INDEX/COUNT` of a part header, with `INDEX < COUNT`.
fn part_label(value: &str) -> Option<(usize, usize)> {
    let (index, count) = value.split_once('/')?;
    let (index, count) = (index.parse().ok()?, count.parse().ok()?);
    (index < count).then_some((index, count))
}

/// Read partition `key.partition` of `changelog` to its end and return the newest state of
/// `key` (the highest next offset), if any. Fails when the changelog cannot be read within
/// `timeout`: a worker must not process a partition whose state it could not restore.
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
    let wanted = key.record_key();
    let part_prefix = format!("{wanted}@");
    let mut best: Option<StateRecord> = None;
    let mut splits: BTreeMap<i64, Split> = BTreeMap::new();
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
        let bad = |what: String| KafkaError::Restore {
            changelog: changelog.to_owned(),
            partition: key.partition,
            reason: format!("record at offset {}: {what}", m.offset()),
        };
        if let Some(part) = record_key.strip_prefix(part_prefix.as_bytes()) {
            let (next, index) = std::str::from_utf8(part)
                .ok()
                .and_then(|p| p.split_once('#'))
                .and_then(|(n, i)| Some((n.parse::<i64>().ok()?, i.parse::<usize>().ok()?)))
                .ok_or_else(|| {
                    bad(format!(
                        "{:?} is no part key",
                        String::from_utf8_lossy(record_key)
                    ))
                })?;
            let Some(payload) = m.payload() else {
                // A tombstone: a later state was written whole.
                if let Some(split) = splits.get_mut(&next) {
                    split.parts.remove(&index);
                }
                continue;
            };
            let (at, count) = header(&m, PART_HEADER)
                .and_then(part_label)
                .filter(|(at, _)| *at == index)
                .ok_or_else(|| bad(format!("no valid {PART_HEADER} header for part {index}")))?;
            let split = splits.entry(next).or_default();
            split.count = count;
            split.parts.insert(at, payload.to_vec());
            continue;
        }
        if record_key != wanted.as_bytes() {
            continue;
        }
        let next = header(&m, NEXT_OFFSET_HEADER)
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| bad(format!("no valid {NEXT_OFFSET_HEADER} header")))?;
        if best.as_ref().is_none_or(|b| next >= b.next_offset) {
            best = Some(StateRecord {
                next_offset: next,
                state: m.payload().unwrap_or_default().to_vec(),
                parts: Vec::new(),
                stale_parts: Vec::new(),
            });
        }
    }
    // The newest state whole: a single record, or a split one with every part.
    let newest_split = splits
        .iter()
        .rev()
        .find(|(_, s)| s.parts.len() == s.count && s.parts.keys().copied().eq(0..s.count))
        .map(|(next, _)| *next)
        .filter(|next| best.as_ref().is_none_or(|b| *next > b.next_offset));
    if let Some(next) = newest_split {
        let split = splits.remove(&next).unwrap_or_default();
        best = Some(StateRecord {
            next_offset: next,
            parts: (0..split.count).map(|i| key.part_key(next, i)).collect(),
            state: split.parts.into_values().flatten().collect(),
            stale_parts: Vec::new(),
        });
    }
    // Parts of older states may go; those of a newer state still incomplete may be being
    // written by another owner of the partition, and stay.
    if let Some(b) = &mut best {
        b.stale_parts = splits
            .iter()
            .filter(|(next, _)| **next < b.next_offset)
            .flat_map(|(next, s)| s.parts.keys().map(|i| key.part_key(*next, *i)))
            .collect();
    }
    Ok(best)
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

    #[test]
    fn part_keys_are_the_states_own() {
        let key = StateKey {
            group: "g".into(),
            topic: "t".into(),
            partition: 2,
        };
        assert_eq!(key.record_key(), "g/t/2");
        assert_eq!(key.part_key(1234, 0), "g/t/2@1234#0");
        assert_ne!(key.part_key(1234, 1), key.part_key(1235, 1));
    }
}
