//! The topic layout (DESIGN.md) and `tocsin topics create`.
//!
//! | topic | key | partitions | config |
//! |---|---|---|---|
//! | event topics (`tocsin.events` by default) | sensor's choice | `partitions` | — |
//! | `tocsin.detections` | correlation key | `partitions` | — |
//! | `tocsin.correlate-state` | `GROUP/TOPIC/PARTITION` and a suffix naming the state (whole, part or delta: `changelog`) | same as detections (co-partitioned) | `cleanup.policy=compact`, 16 MB records |
//! | `tocsin.warnings.{technical,operational,strategic}` and per-recipient topics | warning id | `partitions` | — |
//! | `tocsin.dead-letter` | original key | 1 | 14 days retention |
//!
//! The changelog must have exactly as many partitions as the detections topic: a correlate
//! worker restores partition *p* of the state from partition *p* of the changelog.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaError, KafkaSettings};

/// The default event topic.
pub const EVENTS: &str = "tocsin.events";
/// Detections, keyed by correlation key.
pub const DETECTIONS: &str = "tocsin.detections";
/// The correlators' compacted state changelog.
pub const CORRELATE_STATE: &str = "tocsin.correlate-state";
/// Undecodable input, with the reason in headers.
pub const DEAD_LETTER: &str = "tocsin.dead-letter";
/// The prefix of the warning topics: `tocsin.warnings.technical`, `….csirt.de`.
pub const WARNINGS_PREFIX: &str = "tocsin.warnings";

/// The names of the topics the workers write and the correlate worker reads, so that one
/// cluster can host several deployments (and the tests one set per scenario). The defaults
/// are DESIGN.md's names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicNames {
    /// Event topics the match workers consume.
    pub events: Vec<String>,
    /// Detections, keyed by correlation key.
    pub detections: String,
    /// The correlators' compacted state changelog (as many partitions as `detections`).
    pub correlate_state: String,
    /// Dead letters.
    pub dead_letter: String,
    /// Prefix of the per-audience and per-recipient warning topics.
    pub warnings_prefix: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            events: vec![EVENTS.to_owned()],
            detections: DETECTIONS.to_owned(),
            correlate_state: CORRELATE_STATE.to_owned(),
            dead_letter: DEAD_LETTER.to_owned(),
            warnings_prefix: WARNINGS_PREFIX.to_owned(),
        }
    }
}

impl TopicNames {
    /// The warning topic of an audience (`technical`, `operational`, `strategic`).
    pub fn audience_topic(&self, audience: &str) -> String {
        format!("{}.{audience}", self.warnings_prefix)
    }

    /// The three audience topics.
    pub fn audience_topics(&self) -> [String; 3] {
        ["technical", "operational", "strategic"].map(|a| self.audience_topic(a))
    }

    /// The warning topic of one recipient: the id lowercased, with characters Kafka does not
    /// allow in topic names turned into dots (`csirt:DE` → `tocsin.warnings.csirt.de`).
    pub fn recipient_topic(&self, recipient_id: &str) -> String {
        let id: String = recipient_id
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '.' | '_' | '-') => c,
                _ => '.',
            })
            .collect();
        format!("{}.{id}", self.warnings_prefix)
    }
}

/// One topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlan {
    pub name: String,
    pub partitions: i32,
    pub configs: Vec<(&'static str, String)>,
}

/// The whole layout: the event topics, the detections/changelog pair, the audience topics,
/// `recipient_topics` and the dead-letter topic.
pub fn layout(names: &TopicNames, recipient_topics: &[String], partitions: i32) -> Vec<TopicPlan> {
    let plain = |name: &str| TopicPlan {
        name: name.to_owned(),
        partitions,
        configs: Vec::new(),
    };
    let mut plan: Vec<TopicPlan> = names.events.iter().map(|t| plain(t)).collect();
    plan.push(plain(&names.detections));
    plan.push(TopicPlan {
        name: names.correlate_state.clone(),
        partitions,
        configs: vec![
            ("cleanup.policy", "compact".to_owned()),
            // A record holds a partition's correlator state, or a part of a longer one.
            ("max.message.bytes", "16777216".to_owned()),
            // A state per partition every few seconds: roll segments often and compact
            // eagerly, so that a restore reads little more than the latest state of each.
            ("segment.ms", "600000".to_owned()),
            ("min.cleanable.dirty.ratio", "0.1".to_owned()),
            ("delete.retention.ms", "3600000".to_owned()),
        ],
    });
    plan.extend(names.audience_topics().iter().map(|t| plain(t)));
    plan.extend(recipient_topics.iter().map(|t| plain(t)));
    plan.push(TopicPlan {
        name: names.dead_letter.clone(),
        partitions: 1,
        configs: vec![("retention.ms", (14 * 24 * 3600 * 1000u64).to_string())],
    });
    plan
}

/// What happened to one planned topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Created,
    AlreadyExists,
}

/// Create the planned topics (replication factor 1 unless `replication` says otherwise);
/// topics that exist already are reported, not an error.
pub fn create(
    settings: &KafkaSettings,
    plan: &[TopicPlan],
    replication: i32,
    timeout: Duration,
) -> Result<Vec<(String, Created)>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        settings
            .client_config(&[])
            .create()
            .map_err(|source| KafkaError::Client {
                client: "admin",
                bootstrap: settings.bootstrap.clone(),
                source,
            })?;
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let mut out = Vec::with_capacity(plan.len());
    // One request per topic: Tansu 0.6.0 answers a request for many topics (16 here) with
    // a response librdkafka cannot parse, after creating them.
    for p in plan {
        let topic = p.configs.iter().fold(
            NewTopic::new(&p.name, p.partitions, TopicReplication::Fixed(replication)),
            |t, (k, v)| t.set(k, v),
        );
        let results = futures_executor::block_on(admin.create_topics([&topic], &options))
            .map_err(KafkaError::Admin)?;
        for r in results {
            match r {
                Ok(name) => out.push((name, Created::Created)),
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    out.push((name, Created::AlreadyExists))
                }
                Err((topic, code)) => {
                    return Err(KafkaError::CreateTopic {
                        topic,
                        reason: code.to_string(),
                    })
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog_is_compacted_and_copartitioned_with_detections() {
        let names = TopicNames::default();
        let plan = layout(&names, &[names.recipient_topic("csirt:DE")], 6);
        let get = |n: &str| plan.iter().find(|p| p.name == n).unwrap();
        assert_eq!(get(DETECTIONS).partitions, get(CORRELATE_STATE).partitions);
        assert!(get(CORRELATE_STATE)
            .configs
            .contains(&("cleanup.policy", "compact".to_owned())));
        assert!(plan.iter().any(|p| p.name == "tocsin.warnings.csirt.de"));
        assert_eq!(plan.len(), 1 + 2 + 3 + 1 + 1);
    }
}
