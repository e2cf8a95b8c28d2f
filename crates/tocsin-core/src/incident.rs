//! The incident candidate: detections that share a correlation key within a window,
//! seen across organisations.
//!
//! A candidate is the correlator's unit of state and the input of the escalation policy.
//! It keeps sets (organisations, sectors, member states, rules, indicators) in sorted
//! containers so that its serialisation — and every id and warning derived from it — is
//! deterministic.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::detection::{IndicatorType, Level};
use crate::member_state::MemberState;
use crate::sector::Sector;
use crate::taxonomy::Taxonomy;
use crate::time::Timestamp;
use crate::tlp::Tlp;

/// An indicator seen in a candidate, with the feeds that listed it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IndicatorSighting {
    /// The indicator type.
    #[serde(rename = "type")]
    pub kind: IndicatorType,
    /// The normalised value.
    pub value: String,
    /// The most restrictive TLP under which it was received.
    pub tlp: Tlp,
    /// Feeds that listed it.
    pub feeds: BTreeSet<String>,
}

/// A rule that contributed to a candidate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RuleSummary {
    /// Rule id.
    pub id: String,
    /// Rule title.
    pub title: String,
    /// Rule level.
    pub level: Level,
    /// Detections it contributed.
    pub detections: u64,
}

/// An incident candidate (`tocsin.incident-candidate/v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentCandidate {
    /// Deterministic id: a hash of the correlation key and the window start.
    pub id: String,
    /// The key its detections share (`indicator:domain:evil.example`, `campaign:x`).
    pub correlation_key: String,
    /// Start of its event-time window.
    pub window_start: Timestamp,
    /// Earliest detection's event time.
    pub first_seen: Timestamp,
    /// Latest detection's event time.
    pub last_seen: Timestamp,
    /// Distinct organisations, each with its first detection time.
    pub organisations: BTreeMap<String, Timestamp>,
    /// Distinct NIS2 sectors.
    pub sectors: BTreeSet<Sector>,
    /// Distinct member states.
    pub member_states: BTreeSet<MemberState>,
    /// Number of detections merged (duplicates by id excluded).
    pub detection_count: u64,
    /// Detections whose context lacked organisation, sector or member state.
    pub incomplete_context: u64,
    /// Rules that contributed, by id.
    pub rules: BTreeMap<String, RuleSummary>,
    /// Indicators seen, by `type:value`.
    pub indicators: BTreeMap<String, IndicatorSighting>,
    /// ATT&CK technique ids.
    pub attack: BTreeSet<String>,
    /// The taxonomy of its most severe rule, when one is set.
    pub taxonomy: Option<Taxonomy>,
    /// Highest rule level among its detections.
    pub max_level: Level,
    /// A score from breadth and severity (see the correlator's docs).
    pub score: u32,
    /// Most restrictive TLP of its inputs; never lowered automatically.
    pub tlp: Tlp,
    /// Increments with every material change.
    pub version: u32,
}
