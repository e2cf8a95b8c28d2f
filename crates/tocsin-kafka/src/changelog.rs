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
//! Why this is safe without transactions: the correlator is deterministic (event time only),
//! so two owners of a partition during a rebalance compute the same state for the same
//! offset, and whichever record compaction keeps is a true state of its offset. Warnings are
//! acknowledged before the state that issued them is written, so a restored state never
//! claims a warning version that was not delivered; a crash between the two repeats
//! versions, with the same ids.

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
}

/// A restored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    /// The first detections offset the state does not include.
    pub next_offset: i64,
    /// The correlator snapshot.
    pub state: Vec<u8>,
}

/// Queue the state of `key`'s partition as of `next_offset`. The caller flushes the sink.
pub fn write(
    sink: &mut Sink,
    changelog: &str,
    key: &StateKey,
    next_offset: i64,
    format: &str,
    state: &[u8],
) -> Result<(), KafkaError> {
    let next = next_offset.to_string();
    sink.send_to(
        changelog,
        Some(key.partition),
        Some(key.record_key().as_bytes()),
        state,
        &[(NEXT_OFFSET_HEADER, next.as_str()), (FORMAT_HEADER, format)],
    )
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
    let mut best: Option<StateRecord> = None;
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
        if m.key() != Some(wanted.as_bytes()) {
            continue;
        }
        let next = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == NEXT_OFFSET_HEADER))
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| KafkaError::Restore {
                changelog: changelog.to_owned(),
                partition: key.partition,
                reason: format!(
                    "record at offset {} has no valid {NEXT_OFFSET_HEADER} header",
                    m.offset()
                ),
            })?;
        if best.as_ref().is_none_or(|b| next >= b.next_offset) {
            best = Some(StateRecord {
                next_offset: next,
                state: m.payload().unwrap_or_default().to_vec(),
            });
        }
    }
    Ok(best)
}
