//! An idempotent producer whose flush says whether everything arrived.
//!
//! Every delivery report is counted: [`Sink::flush`] waits until librdkafka's queue is empty
//! and fails if any message since the previous flush was not acknowledged, so the worker
//! does not commit the offsets those messages came from. The queue is bounded
//! (`queue.buffering.max.messages` / `.kbytes`); when it is full, [`Sink::send`] waits for
//! room, which stops the worker from fetching more: that is the backpressure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, OwnedHeaders, ToBytes};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::{KafkaError, KafkaSettings};

/// Counts delivery reports.
#[derive(Default)]
struct DeliveryReports {
    acknowledged: AtomicU64,
    failed: AtomicU64,
    /// A failure a retry cannot fix was seen since the last flush.
    permanent: std::sync::atomic::AtomicBool,
    first_failure: Mutex<Option<String>>,
}

/// The producer's context: a shared handle on the counters.
#[derive(Clone)]
struct Reports(Arc<DeliveryReports>);

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                if e.rdkafka_error_code().is_some_and(crate::is_permanent) {
                    self.0.permanent.store(true, Ordering::Relaxed);
                }
                let mut first = self
                    .0
                    .first_failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// The producer side of a worker.
pub struct Sink {
    producer: ThreadedProducer<Reports>,
    reports: Arc<DeliveryReports>,
}

/// Producer defaults; any of them can be overridden by the passthrough settings.
const DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
    ("compression.type", "lz4"),
    ("queue.buffering.max.messages", "100000"),
    ("queue.buffering.max.kbytes", "65536"),
    // A correlator's state record can be larger than the 1 MB default.
    ("message.max.bytes", "16777216"),
];

impl Sink {
    /// A producer for `settings`.
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let with_defaults = settings.with_defaults(DEFAULTS);
        let reports = Arc::new(DeliveryReports::default());
        let producer = with_defaults
            .client_config(&[])
            .create_with_context(Reports(reports.clone()))
            .map_err(|source| KafkaError::Client {
                client: "producer",
                bootstrap: settings.bootstrap.clone(),
                source,
            })?;
        Ok(Sink { producer, reports })
    }

    /// Queue one message with `headers` (name, value); waits while the queue is full. The
    /// partition is the key's (librdkafka's default partitioner).
    pub fn send(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), KafkaError> {
        self.send_to(topic, None, key, payload, headers)
    }

    /// Queue a tombstone (a record with a key and no value) for a compacted topic.
    pub fn send_tombstone(
        &mut self,
        topic: &str,
        partition: i32,
        key: &[u8],
    ) -> Result<(), KafkaError> {
        let record = BaseRecord::<[u8], [u8]>::to(topic)
            .key(key)
            .partition(partition);
        self.enqueue(record)
    }

    /// As [`Sink::send`], to an explicit `partition` when one is given.
    pub fn send_to(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), KafkaError> {
        let headers = (!headers.is_empty()).then(|| {
            headers.iter().fold(
                OwnedHeaders::new_with_capacity(headers.len()),
                |h, (key, value)| {
                    h.insert(Header {
                        key,
                        value: Some(*value),
                    })
                },
            )
        });
        let mut record = BaseRecord::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        self.enqueue(record)
    }

    /// Hand `record` to the producer, waiting while its queue is full (backpressure).
    fn enqueue<K, P>(&self, mut record: BaseRecord<'_, K, P>) -> Result<(), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    std::thread::sleep(Duration::from_millis(5));
                    record = back;
                }
                Err((e, _)) => return Err(KafkaError::Producer(e)),
            }
        }
    }

    /// Wait until every queued message is acknowledged (or `timeout` passes:
    /// [`KafkaError::FlushTimeout`], the messages stay queued); fail if any message since the
    /// previous flush was not acknowledged. Returns the number acknowledged.
    pub fn flush(&mut self, timeout: Duration) -> Result<u64, KafkaError> {
        if let Err(e) = self.producer.flush(timeout) {
            return Err(match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::OperationTimedOut) => KafkaError::FlushTimeout {
                    in_flight: self.producer.in_flight_count(),
                },
                _ => KafkaError::Producer(e),
            });
        }
        let failed = self.reports.failed.swap(0, Ordering::Relaxed);
        let acknowledged = self.reports.acknowledged.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let first = self
                .reports
                .first_failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_default();
            return Err(KafkaError::Delivery {
                count: failed,
                first,
                permanent: self.reports.permanent.swap(false, Ordering::Relaxed),
            });
        }
        Ok(acknowledged)
    }
}
