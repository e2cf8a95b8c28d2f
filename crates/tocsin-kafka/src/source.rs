//! A consumer-group member whose offsets move only when the worker says so.
//!
//! Auto-commit is off. The worker calls [`Source::poll`] to get a message (borrowed: the
//! payload is not copied), [`Source::done`] once every message derived from it has been
//! handed to the sink, and, after the sink's acknowledged flush, [`Source::commit`] to commit
//! the highest done offset of each partition. A crash before the commit means the batch is
//! read again by whoever owns the partition next: at least once, never lost.
//!
//! Partitions a rebalance takes away stay assigned until the worker releases them
//! ([`Source::release_revoked`], or at the latest its next [`Source::poll`]): librdkafka
//! waits for that before the group moves on, so a worker can write what it holds for them
//! and commit their offsets while they are still its own, as Kafka's `onPartitionsRevoked`
//! allows, and their next owner starts from there instead of from an older commit.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::{KafkaError, KafkaSettings};

/// What librdkafka tells the consumer on the side: the partitions a rebalance takes away
/// (for the worker to save and drop their state), and, from its statistics (every second),
/// whether a broker is reachable and how far behind each assigned partition is. librdkafka
/// calls it inside [`Source::poll`], on the worker's thread.
#[derive(Default)]
pub struct Rebalances {
    revoked: Mutex<Vec<(String, i32)>>,
    assigned: Mutex<Vec<(String, i32)>>,
    health: Mutex<Health>,
    /// Partitions revoked but not yet released: librdkafka's rebalance waits for their
    /// unassignment, which [`Source::release_revoked`] makes.
    unreleased: Mutex<Option<TopicPartitionList>>,
    /// The consumer is closing: a revocation is released at once (nobody would release it).
    closing: AtomicBool,
}

impl Rebalances {
    /// Give up `list` (the whole assignment under the eager protocol).
    fn unassign(consumer: &BaseConsumer<Self>, list: &TopicPartitionList) -> KafkaResult<()> {
        match consumer.rebalance_protocol() {
            RebalanceProtocol::Cooperative => consumer.incremental_unassign(list),
            _ => consumer.unassign(),
        }
    }
}

/// The consumer's view of the cluster, from librdkafka's last statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// Whether at least one broker connection is up; `None` before the first statistics.
    pub broker_up: Option<bool>,
    /// Consumer lag of each assigned partition: (topic, partition, messages behind).
    pub lag: Vec<(String, i32, i64)>,
    /// When these statistics arrived (librdkafka delivers them from `poll`, so a worker
    /// busy elsewhere sees them age).
    pub observed: Option<Instant>,
}

impl ClientContext for Rebalances {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let broker_up = statistics
            .brokers
            .values()
            .any(|b| b.source != "internal" && b.state == "UP");
        let mut lag: Vec<(String, i32, i64)> = statistics
            .topics
            .iter()
            .flat_map(|(topic, t)| {
                t.partitions
                    .values()
                    .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                    .map(move |p| (topic.clone(), p.partition, p.consumer_lag))
            })
            .collect();
        lag.sort();
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = Health {
            broker_up: Some(broker_up),
            lag,
            observed: Some(Instant::now()),
        };
    }
}

/// The (topic, partition) pairs of a list.
fn pairs(list: &TopicPartitionList) -> impl Iterator<Item = (String, i32)> + '_ {
    list.elements()
        .into_iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
}

impl ConsumerContext for Rebalances {
    /// rdkafka's own rebalance, but for a revocation: that is recorded and left for the
    /// worker to release once it has saved what it holds for those partitions.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        // A failed (un)assignment leaves librdkafka's group state to its own recovery, as
        // in rdkafka's default; the worker sees the partitions it did get by their messages.
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let _ = match consumer.rebalance_protocol() {
                    RebalanceProtocol::Cooperative => consumer.incremental_assign(list),
                    _ => consumer.assign(list),
                };
                let mut assigned = self.assigned.lock().unwrap_or_else(|p| p.into_inner());
                assigned.extend(pairs(list));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(pairs(list));
                // Closing, nobody would release them; lost (the session expired), they are
                // no longer ours to commit.
                if self.closing.load(Ordering::Relaxed) || consumer.assignment_lost() {
                    let _ = Self::unassign(consumer, list);
                } else {
                    let mut unreleased = self.unreleased.lock().unwrap_or_else(|p| p.into_inner());
                    match unreleased.as_mut() {
                        Some(earlier) => {
                            for e in list.elements() {
                                earlier.add_partition(e.topic(), e.partition());
                            }
                        }
                        None => *unreleased = Some(list.clone()),
                    }
                }
            }
            // An error ends the assignment, as in rdkafka's default.
            _ => {
                let _ = Self::unassign(consumer, list);
            }
        }
    }
}

/// Consumer defaults; the passthrough settings can override them.
const DEFAULTS: &[(&str, &str)] = &[
    // An early-warning pipeline wants latency: a fetch that finds nothing waits at most
    // 100 ms (librdkafka's 500 ms default is what an idle partition adds to every event's
    // latency on brokers that do not answer a waiting fetch as soon as data arrives).
    ("fetch.wait.max.ms", "100"),
    // Bounded prefetch: at most 64 MB queued ahead of the worker (librdkafka's default,
    // stated here because it is the consumer's memory bound; 16 MB cost 3.5× in
    // throughput on the broker bench, benches/RESULTS.md).
    ("queued.max.messages.kbytes", "65536"),
];

/// A consumer with manual, explicit offset commits.
pub struct Source {
    consumer: BaseConsumer<Rebalances>,
    /// (topic, partition, next offset to read) of messages done since the last commit.
    /// A cell, because messages borrow the consumer while they are marked done.
    pending: RefCell<Vec<(String, i32, i64)>>,
}

impl Source {
    /// Join `group` and subscribe to `topics`. A group with no committed offset starts at the
    /// earliest message, so nothing published before the first worker started is skipped.
    pub fn subscribe(
        settings: &KafkaSettings,
        group: &str,
        topics: &[String],
    ) -> Result<Self, KafkaError> {
        let consumer: BaseConsumer<Rebalances> = settings
            .with_defaults(DEFAULTS)
            .client_config(&[
                ("group.id", group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
                ("statistics.interval.ms", "1000"),
                // A metadata request (a worker checking that a topic exists) never creates
                // the topic, whatever the passthrough settings say.
                ("allow.auto.create.topics", "false"),
            ])
            .create_with_context(Rebalances::default())
            .map_err(|source| KafkaError::Client {
                client: "consumer",
                bootstrap: settings.bootstrap.clone(),
                source,
            })?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|source| KafkaError::Consumer {
                action: "subscribe",
                source,
            })?;
        Ok(Source {
            consumer,
            pending: RefCell::new(Vec::new()),
        })
    }

    /// The next message, waiting at most `timeout`. Errors are returned, not retried:
    /// librdkafka reconnects by itself and most errors are transient. Partitions revoked
    /// and not yet released are released first ([`Source::release_revoked`]); a release
    /// that fails is returned as the error, after `timeout`, so that a worker reporting it
    /// does not spin, and tried again at the next poll.
    pub fn poll(&self, timeout: Duration) -> Option<Result<Received<'_>, KafkaError>> {
        if let Err(e) = self.release_revoked() {
            std::thread::sleep(timeout);
            return Some(Err(e));
        }
        self.consumer.poll(timeout).map(|r| {
            r.map(|msg| Received { msg })
                .map_err(|source| KafkaError::Consumer {
                    action: "poll",
                    source,
                })
        })
    }

    /// Read `partition` of `topic` again from `offset`: what was fetched past it is dropped,
    /// and so is what was marked done for it and not committed yet (it is read again). For a
    /// partition whose messages are being fetched (one of them was read): right after an
    /// assignment librdkafka may refuse it.
    pub fn seek(&self, topic: &str, partition: i32, offset: i64) -> Result<(), KafkaError> {
        self.pending
            .borrow_mut()
            .retain(|(t, p, _)| !(*p == partition && t == topic));
        self.consumer
            .seek(
                topic,
                partition,
                Offset::Offset(offset),
                Duration::from_secs(10),
            )
            .map_err(|source| KafkaError::Consumer {
                action: "seek",
                source,
            })
    }

    /// Mark a message as done: everything derived from it is in the sink.
    pub fn done(&self, m: &Received<'_>) {
        let (topic, partition, offset) = (m.topic(), m.partition(), m.offset());
        let mut pending = self.pending.borrow_mut();
        match pending
            .iter_mut()
            .find(|(t, p, _)| *p == partition && t == topic)
        {
            Some(entry) => entry.2 = entry.2.max(offset + 1),
            None => pending.push((topic.to_owned(), partition, offset + 1)),
        }
    }

    /// Let the partitions taken away go, once what the worker holds for them is saved and
    /// their offsets committed: until then they are still this member's (their commits
    /// succeed) and the group's rebalance waits, within `max.poll.interval.ms`. The next
    /// [`Source::poll`] releases them anyway.
    /// A release that fails stays due.
    pub fn release_revoked(&self) -> Result<(), KafkaError> {
        let mut unreleased = self
            .consumer
            .context()
            .unreleased
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(list) = unreleased.as_ref() else {
            return Ok(());
        };
        Rebalances::unassign(&self.consumer, list).map_err(|source| KafkaError::Consumer {
            action: "release revoked partitions",
            source,
        })?;
        *unreleased = None;
        Ok(())
    }

    /// Whether a rebalance took partitions away that are not released yet: a worker ends
    /// its batch, so as to commit their offsets while they are still its own.
    pub fn revocation_pending(&self) -> bool {
        self.consumer
            .context()
            .unreleased
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The partitions taken away by rebalances since the last call (the worker's state for
    /// them is stale once it releases them, [`Source::release_revoked`]: their next owner
    /// restores it).
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(
            &mut *self
                .consumer
                .context()
                .revoked
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// The partitions rebalances gave this member since the last call. librdkafka reports a
    /// rebalance from inside [`Source::poll`], which then returns no message, so a worker
    /// that calls this after every poll sees an assignment before any of its messages.
    pub fn take_assigned(&self) -> Vec<(String, i32)> {
        std::mem::take(
            &mut *self
                .consumer
                .context()
                .assigned
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    /// The cluster as the consumer last saw it (broker reachable, lag per partition).
    pub fn health(&self) -> Health {
        self.consumer
            .context()
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether any done offset waits for a commit.
    pub fn has_pending(&self) -> bool {
        !self.pending.borrow().is_empty()
    }

    /// Commit the done offsets (synchronously). Call only after the sink's flush succeeded.
    /// Only the offsets of partitions still assigned are committed: one taken away (released
    /// after a rebalance, or lost with the session) may be read by another member by now,
    /// whose offset a late commit would move back; its next owner reads those messages
    /// again, which at-least-once allows. So does a commit that fails.
    pub fn commit(&mut self) -> Result<(), KafkaError> {
        let mut pending = std::mem::take(self.pending.get_mut());
        if pending.is_empty() {
            return Ok(());
        }
        let consumer_error = |action| move |source| KafkaError::Consumer { action, source };
        let assigned = match self.consumer.assignment() {
            Ok(assigned) => assigned,
            Err(e) => {
                *self.pending.get_mut() = pending;
                return Err(consumer_error("read the assignment")(e));
            }
        };
        pending
            .retain(|(topic, partition, _)| assigned.find_partition(topic, *partition).is_some());
        if pending.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(pending.len());
        for (topic, partition, next) in &pending {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(consumer_error("commit"))?;
        }
        let result = self
            .consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(consumer_error("commit"));
        if result.is_err() {
            // Kept for the next commit (a partition that gets no more messages would
            // otherwise stay uncommitted, and look lagging, until a restart).
            let mut kept = self.pending.borrow_mut();
            for entry in pending {
                if !kept.iter().any(|(t, p, _)| *p == entry.1 && *t == entry.0) {
                    kept.push(entry);
                }
            }
        }
        result
    }

    /// The group's committed offset of each partition (`None`: nothing committed yet, so
    /// the partition starts at the earliest message), asked of the group coordinator.
    pub fn committed(
        &self,
        partitions: &[(String, i32)],
        timeout: Duration,
    ) -> Result<Vec<(String, i32, Option<i64>)>, KafkaError> {
        let mut tpl = TopicPartitionList::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            tpl.add_partition(topic, *partition);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, timeout)
            .map_err(|source| KafkaError::Consumer {
                action: "read committed offsets",
                source,
            })?;
        Ok(committed
            .elements()
            .iter()
            .map(|e| {
                let offset = match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                };
                (e.topic().to_owned(), e.partition(), offset)
            })
            .collect())
    }

    /// How many partitions `topic` has, from the cluster's metadata.
    pub fn partition_count(&self, topic: &str, timeout: Duration) -> Result<usize, KafkaError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|source| KafkaError::Consumer {
                action: "read topic metadata",
                source,
            })?;
        let t = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| {
                KafkaError::Layout(format!(
                    "topic {topic} does not exist (create the topics first: tocsin topics create)"
                ))
            })?;
        Ok(t.partitions().len())
    }
}

impl Drop for Source {
    /// Closing the consumer revokes its partitions from inside the close: those are
    /// released at once, and any still unreleased now.
    fn drop(&mut self) {
        self.consumer
            .context()
            .closing
            .store(true, Ordering::Relaxed);
        // librdkafka's close would otherwise wait for ever for a release it already asked
        // for: whatever is still assigned goes.
        if self.release_revoked().is_err() {
            let _ = match self.consumer.assignment() {
                Ok(all) => Rebalances::unassign(&self.consumer, &all),
                Err(_) => self.consumer.unassign(),
            };
        }
    }
}

/// A message as the worker sees it: borrowed from librdkafka's buffer, not copied.
pub struct Received<'a> {
    msg: BorrowedMessage<'a>,
}

impl Received<'_> {
    /// The value; an empty slice for a null value.
    pub fn payload(&self) -> &[u8] {
        self.msg.payload().unwrap_or_default()
    }

    /// The key.
    pub fn key(&self) -> Option<&[u8]> {
        self.msg.key()
    }

    pub fn topic(&self) -> &str {
        self.msg.topic()
    }

    pub fn partition(&self) -> i32 {
        self.msg.partition()
    }

    pub fn offset(&self) -> i64 {
        self.msg.offset()
    }

    /// The message timestamp (create or log-append time), in epoch milliseconds.
    pub fn timestamp_millis(&self) -> Option<i64> {
        self.msg.timestamp().to_millis()
    }

    /// The value of the last header called `name`, if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        let headers = self.msg.headers()?;
        headers
            .iter()
            .filter(|h| h.key == name)
            .last()
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    }
}
