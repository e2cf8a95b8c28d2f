//! The incident candidate: detections that share a correlation key within a window,
//! seen across organisations.
//!
//! A candidate is the correlator's unit of state and the input of the escalation policy.
//! It keeps sets (organisations, sectors, member states, rules, indicators) in sorted
//! containers so that its serialisation — and every id and warning derived from it — is
//! deterministic: [`SortedMap`] and [`SortedSet`], which hold a few entries in about what
//! those take (a B-tree allocates a node for eleven, most of a live key's memory when each
//! held one or two).

use serde::{Deserialize, Serialize};

use crate::detection::{IndicatorType, Level};
use crate::member_state::MemberState;
use crate::sector::Sector;
use crate::sorted::{SortedMap, SortedSet};
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
    pub feeds: SortedSet<String>,
    /// Who saw it (absent from states written before it was kept).
    #[serde(default, skip_serializing_if = "SeenBy::is_unknown")]
    pub seen_by: SeenBy,
}

/// Who saw an indicator in a candidate, so that a rendering that withholds an organisation
/// also withholds what only that organisation saw.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SeenBy {
    /// Organisations whose detections named it.
    #[serde(default, skip_serializing_if = "SortedSet::is_empty")]
    pub organisations: SortedSet<String>,
    /// The least restrictive label of the detections that named it without naming an
    /// organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_organisation: Option<Tlp>,
}

impl SeenBy {
    /// A detection of `organisation` (or of none) labelled `tlp` named the indicator.
    pub fn record(&mut self, organisation: Option<&str>, tlp: Tlp) {
        match organisation {
            Some(o) => {
                self.organisations.insert_borrowed(o, str::to_owned);
            }
            None => {
                self.without_organisation =
                    Some(self.without_organisation.map_or(tlp, |t| t.min(tlp)));
            }
        }
    }

    /// Nothing recorded: a state written before this was kept, so nobody can tell.
    pub fn is_unknown(&self) -> bool {
        self.organisations.is_empty() && self.without_organisation.is_none()
    }

    /// Whether a rendering that shows the organisations `shown` says of, under `ceiling`, may
    /// show the indicator: one of them saw it, or a detection without an organisation under
    /// the ceiling did (or nobody can tell).
    pub fn seen_within(&self, shown: impl Fn(&str) -> bool, ceiling: Tlp) -> bool {
        self.is_unknown()
            || self.organisations.iter().any(|o| shown(o))
            || self
                .without_organisation
                .is_some_and(|t| t.permits(ceiling))
    }
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
    pub organisations: SortedMap<String, Timestamp>,
    /// Distinct NIS2 sectors.
    pub sectors: SortedSet<Sector>,
    /// Distinct member states.
    pub member_states: SortedSet<MemberState>,
    /// Number of detections merged (duplicates by id excluded).
    pub detection_count: u64,
    /// Detections whose context lacked organisation, sector or member state.
    pub incomplete_context: u64,
    /// Rules that contributed, by id.
    pub rules: SortedMap<String, RuleSummary>,
    /// Indicators seen, by `type:value`.
    pub indicators: SortedMap<String, IndicatorSighting>,
    /// ATT&CK technique ids.
    pub attack: SortedSet<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_indicator_is_shown_where_one_of_those_who_saw_it_is() {
        let mut seen = SeenBy::default();
        // A state written before sightings were kept: nobody can tell, so it is shown.
        assert!(seen.is_unknown() && seen.seen_within(|_| false, Tlp::Clear));
        seen.record(Some("Klinik"), Tlp::Red);
        assert!(seen.seen_within(|o| o == "Klinik", Tlp::Green));
        assert!(!seen.seen_within(|o| o == "Grid", Tlp::Red));
        // Without an organisation, the least restrictive detection's label decides.
        seen.record(None, Tlp::Red);
        seen.record(None, Tlp::Amber);
        assert_eq!(seen.without_organisation, Some(Tlp::Amber));
        assert!(seen.seen_within(|_| false, Tlp::Amber));
        assert!(!seen.seen_within(|_| false, Tlp::Green));
        // Written back and read, it says the same.
        let json = serde_json::to_string(&seen).unwrap();
        assert_eq!(serde_json::from_str::<SeenBy>(&json).unwrap(), seen);
    }
}
