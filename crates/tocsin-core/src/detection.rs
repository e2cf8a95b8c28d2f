//! The detection contract (`tocsin.detection/v1`): one rule or indicator matched one event.
//!
//! Detections are what the match stage publishes (topic `tocsin.detections`, keyed by each
//! correlation key) and what the correlate stage consumes. They carry everything the
//! correlator needs — context, entities, indicators with their TLP, taxonomy, ATT&CK tags and
//! correlation keys — so that correlation never has to look at the raw event again.
//! Schema: `schemas/detection.schema.json`.

use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::taxonomy::Taxonomy;
use crate::time::Timestamp;
use crate::tlp::Tlp;

/// The schema name and version carried in every detection.
pub const DETECTION_SCHEMA: &str = "tocsin.detection/v1";

/// What produced a detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionKind {
    /// A Sigma detection rule.
    Sigma,
    /// An indicator of compromise from a feed.
    Indicator,
    /// A Sigma correlation rule.
    Correlation,
}

/// Sigma rule levels.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Informational.
    Informational,
    /// Low.
    Low,
    /// Medium (the default when a rule gives none).
    #[default]
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Level {
    /// Parse a Sigma level name.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "informational" => Level::Informational,
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    /// The Sigma spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
}

/// The rule (or feed) that produced a detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    /// Rule id (a Sigma id, or `ioc:<feed>` for indicator matches).
    pub id: String,
    /// Rule title.
    pub title: String,
    /// Rule level.
    pub level: Level,
}

/// An entity seen in the event (host, user, address, hash...).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entity {
    /// What the value is: `host`, `user`, `ip`, `domain`, `sha256`, `process`...
    pub kind: String,
    /// The value.
    pub value: String,
}

/// Indicator types Tocsin matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IndicatorType {
    /// An IPv4 address.
    Ipv4,
    /// An IPv6 address.
    Ipv6,
    /// A domain name (also matches its subdomains).
    Domain,
    /// An MD5 file hash.
    Md5,
    /// A SHA-1 file hash.
    Sha1,
    /// A SHA-256 file hash.
    Sha256,
    /// A SHA-512 file hash.
    Sha512,
    /// A URL.
    Url,
    /// An e-mail address.
    Email,
    /// A file name (matched against the last path component of file and image fields).
    Filename,
}

impl IndicatorType {
    /// The stable spelling used in correlation keys and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorType::Ipv4 => "ipv4",
            IndicatorType::Ipv6 => "ipv6",
            IndicatorType::Domain => "domain",
            IndicatorType::Md5 => "md5",
            IndicatorType::Sha1 => "sha1",
            IndicatorType::Sha256 => "sha256",
            IndicatorType::Sha512 => "sha512",
            IndicatorType::Url => "url",
            IndicatorType::Email => "email",
            IndicatorType::Filename => "filename",
        }
    }

    /// Parse the stable spelling (and a few common aliases: ip, ip-dst, hostname...).
    pub fn parse(s: &str) -> Option<IndicatorType> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "ipv4" | "ip" | "ipv4-addr" | "ip-dst" | "ip-src" => IndicatorType::Ipv4,
            "ipv6" | "ipv6-addr" => IndicatorType::Ipv6,
            "domain" | "hostname" | "domain-name" | "fqdn" => IndicatorType::Domain,
            "md5" => IndicatorType::Md5,
            "sha1" | "sha-1" => IndicatorType::Sha1,
            "sha256" | "sha-256" => IndicatorType::Sha256,
            "sha512" | "sha-512" => IndicatorType::Sha512,
            "url" | "uri" | "link" => IndicatorType::Url,
            "email" | "email-src" | "email-dst" | "email-addr" => IndicatorType::Email,
            "filename" | "file-name" => IndicatorType::Filename,
            _ => return None,
        })
    }
}

/// An indicator that matched, with where it came from and how it may be shared.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MatchedIndicator {
    /// The indicator type.
    #[serde(rename = "type")]
    pub kind: IndicatorType,
    /// The normalised indicator value.
    pub value: String,
    /// The feed it came from.
    pub feed: String,
    /// Its TLP.
    pub tlp: Tlp,
    /// The event field it was found in.
    pub field: String,
}

/// Where a detection's event was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// File name, `-` for stdin, or a Kafka topic.
    pub name: String,
    /// Line number (files) or offset (Kafka).
    pub position: u64,
}

/// One detection (`tocsin.detection/v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Always [`DETECTION_SCHEMA`].
    pub schema: String,
    /// Deterministic id: a hash of the rule id and the event's bytes.
    pub id: String,
    /// What produced it.
    pub kind: DetectionKind,
    /// The rule or feed.
    pub rule: RuleRef,
    /// Event time.
    pub event_time: Timestamp,
    /// Sector, member state, organisation, sensor.
    pub context: Context,
    /// Host, user, addresses, hashes... read from the event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<Entity>,
    /// Matched indicators with feed and TLP.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indicators: Vec<MatchedIndicator>,
    /// Reference Security Incident Taxonomy class and type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taxonomy: Option<Taxonomy>,
    /// ATT&CK technique ids (`T1059.001`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attack: Vec<String>,
    /// The rule's tags as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Keys under which the correlator groups this detection.
    #[serde(default)]
    pub correlation_keys: Vec<String>,
    /// The most restrictive TLP of what the detection carries.
    pub tlp: Tlp,
    /// Where the event was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    /// Event field values that Sigma correlation rules group or aggregate by (`group-by`
    /// and `condition.field`, by the names the correlation rules use).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub fields: std::collections::BTreeMap<String, String>,
    /// False for detections that only feed correlation rules (`generate: false`): they are
    /// correlated but not published on their own.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub standalone: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The correlation key of a Sigma correlation rule's group: `correlation:<id>:<values>`,
/// the group-by values joined by U+001F (unit separator).
pub fn correlation_rule_key(correlation_id: &str, group_values: &[&str]) -> String {
    let mut key = format!("correlation:{correlation_id}:");
    for (i, v) in group_values.iter().enumerate() {
        if i > 0 {
            key.push('\u{1f}');
        }
        key.push_str(v);
    }
    key
}
