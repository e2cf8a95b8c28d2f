//! Kafka edges of the Tocsin workers, and the only crate that links rdkafka.
//!
//! The workers' logic (decode, match, correlate) lives in the I/O-free crates; this crate
//! moves bytes between them and a Kafka cluster with the delivery guarantee the workers
//! promise: **at least once, end to end**. The rule that gives it is simple and lives in
//! [`source::Source`] and [`sink::Sink`]: a worker polls a bounded batch, produces every
//! message derived from it, waits until the producer has acknowledged all of them
//! ([`sink::Sink::flush`]), and only then commits the batch's offsets
//! ([`source::Source::commit`]). A worker killed anywhere in between restarts from the last
//! commit and produces some messages again; those repeats carry the same deterministic ids
//! (detection id, warning id and version), so consumers deduplicate them.
//!
//! - [`settings`]: bootstrap servers and librdkafka passthrough settings, with secrets redacted.
//! - [`topics`]: the topic layout of DESIGN.md and `tocsin topics create`.
//! - [`source`]: a consumer-group member with manual offset commits.
//! - [`sink`]: an idempotent producer with bounded queueing (backpressure) and acknowledged flushes.
//! - [`dead_letter`]: the headers a dead letter carries.
//! - [`changelog`]: the correlators' state records, written at the correlate worker's
//!   interval (or at once when a replay would judge otherwise) and restored on assignment.

pub mod changelog;
pub mod dead_letter;
pub mod settings;
pub mod sink;
pub mod source;
pub mod topics;

pub use settings::KafkaSettings;

/// Errors of the Kafka edges. Messages never contain secret settings.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka refused the client configuration.
    #[error("cannot create the Kafka {client} client for {bootstrap}: {source}")]
    Client {
        client: &'static str,
        bootstrap: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A consumer operation failed.
    #[error("Kafka consumer: {action}: {source}")]
    Consumer {
        action: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A produced message was not acknowledged. `permanent`: the broker refused it for a
    /// reason a retry cannot fix (too large, unknown topic or partition, not authorised).
    #[error("Kafka producer: {count} message(s) not acknowledged; first error: {first}")]
    Delivery {
        count: u64,
        first: String,
        permanent: bool,
    },
    /// Messages were still unacknowledged when the flush timeout passed (the broker is slow
    /// or away; librdkafka keeps them and retries).
    #[error("Kafka producer: {in_flight} message(s) not yet acknowledged")]
    FlushTimeout { in_flight: i32 },
    /// The producer failed.
    #[error("Kafka producer: {0}")]
    Producer(#[source] rdkafka::error::KafkaError),
    /// A topic could not be created.
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    /// A partition's correlator state could not be restored from the changelog.
    #[error("cannot restore state from {changelog} partition {partition}: {reason}")]
    Restore {
        changelog: String,
        partition: i32,
        reason: String,
    },
    /// An admin request failed.
    #[error("Kafka admin request failed: {0}")]
    Admin(#[source] rdkafka::error::KafkaError),
    /// The topics do not have the layout the workers need.
    #[error("{0}")]
    Layout(String),
}

impl KafkaError {
    /// Whether starting again from the last committed offsets may succeed: the broker was
    /// away or refused for a while. Refusals a retry cannot fix (a message too large, a topic
    /// that does not exist, missing authorisation, a wrong topic layout) are not transient:
    /// retrying them would only deliver the same batch's output again and again.
    pub fn is_transient(&self) -> bool {
        match self {
            KafkaError::Delivery { permanent, .. } => !permanent,
            KafkaError::Producer(e) => !e.rdkafka_error_code().is_some_and(is_permanent),
            KafkaError::FlushTimeout { .. } | KafkaError::Restore { .. } => true,
            KafkaError::Consumer { source, .. } => {
                !source.rdkafka_error_code().is_some_and(is_permanent)
            }
            KafkaError::Client { .. }
            | KafkaError::CreateTopic { .. }
            | KafkaError::Admin(_)
            | KafkaError::Layout(_) => false,
        }
    }
}

/// Error codes a retry cannot fix.
pub(crate) fn is_permanent(code: rdkafka::types::RDKafkaErrorCode) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::UnknownTopicOrPartition
            | C::UnknownTopic
            | C::UnknownPartition
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::InvalidConfig
            | C::MessageBatchTooLarge
            | C::InvalidRecord
    )
}
