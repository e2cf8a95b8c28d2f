//! The early-warning contract `tocsin.early-warning/v1`.
//!
//! An early warning is what the coordination layer (national CSIRTs, a coordination centre,
//! MISP/OpenCTI, SIEMs) consumes. Its fields follow what NIS2 Article 23(4)(a) asks of an
//! early warning — whether the incident is suspected of malicious acts and whether it could
//! have cross-border impact — plus what a coordinator needs to act: headline, taxonomy,
//! severity, affected sectors and member states, timeline, indicators (filtered by TLP for
//! the audience), recommended actions and the TLP of the whole. Each change of a warning is a
//! new `version` of the same `warning_id`, so consumers key by id and keep the highest
//! version. Schema: `schemas/early-warning.schema.json`.

use serde::{Deserialize, Serialize};

use crate::detection::IndicatorType;
use crate::member_state::MemberState;
use crate::sector::Sector;
use crate::taxonomy::Taxonomy;
use crate::time::Timestamp;
use crate::tlp::Tlp;

/// The schema name and version carried in every warning.
pub const EARLY_WARNING_SCHEMA: &str = "tocsin.early-warning/v1";

/// Lifecycle of a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningStatus {
    /// First version.
    New,
    /// More detections, organisations or indicators; same severity.
    Update,
    /// Severity went up.
    Escalated,
    /// Quiet for the configured period.
    Closed,
}

/// Severity of a warning.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Low.
    Low,
    /// Medium.
    #[default]
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Parse the lower-case spelling.
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    /// One step more severe (critical stays critical).
    pub fn raised(self) -> Severity {
        match self {
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        }
    }

    /// The lower-case spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Who a rendering of a warning is for; each audience has a TLP ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// CSIRTs: full indicators.
    #[default]
    Technical,
    /// Impact by sector and member state, no raw indicators.
    Operational,
    /// A situation summary.
    Strategic,
}

impl Audience {
    /// The spelling of the data contract and the topic names: `technical`, `operational`,
    /// `strategic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Technical => "technical",
            Audience::Operational => "operational",
            Audience::Strategic => "strategic",
        }
    }
}

/// Permissible Actions Protocol: what recipients may do with the information.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub enum Pap {
    /// No restriction.
    #[serde(rename = "CLEAR")]
    Clear,
    /// Active actions allowed (block, ping).
    #[serde(rename = "GREEN")]
    #[default]
    Green,
    /// Passive cross-checks only.
    #[serde(rename = "AMBER")]
    Amber,
    /// Non-detectable actions only.
    #[serde(rename = "RED")]
    Red,
}

impl Pap {
    /// The MISP tag (`PAP:GREEN`).
    pub fn misp_tag(self) -> &'static str {
        match self {
            Pap::Clear => "PAP:CLEAR",
            Pap::Green => "PAP:GREEN",
            Pap::Amber => "PAP:AMBER",
            Pap::Red => "PAP:RED",
        }
    }
}

/// Root cause categories of the EU cybersecurity incident taxonomy (NIS Cooperation Group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RootCause {
    /// System failures.
    SystemFailures,
    /// Natural phenomena.
    NaturalPhenomena,
    /// Human errors.
    HumanErrors,
    /// Malicious actions (NIS2's "unlawful or malicious acts").
    MaliciousActions,
    /// Third-party failures.
    ThirdPartyFailures,
}

/// Technical severity of the threat (EU taxonomy `nature-severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreatSeverity {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
}

/// Real-world impact severity (EU taxonomy `impact-severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImpactSeverity {
    /// No impact.
    White,
    /// Minor.
    Green,
    /// Large.
    Yellow,
    /// Very large.
    Red,
}

/// Prognosis for the next hours (EU taxonomy `impact-outlook`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outlook {
    /// Improving.
    Improving,
    /// Stable.
    Stable,
    /// Worsening.
    Worsening,
}

/// The EU cybersecurity incident taxonomy's dimensions for a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EuTaxonomy {
    /// Root cause category.
    pub root_cause: RootCause,
    /// Severity of the threat.
    pub threat_severity: ThreatSeverity,
    /// Severity of the impact.
    pub impact_severity: ImpactSeverity,
    /// Outlook.
    pub outlook: Outlook,
}

/// Stage of the NIS2 Article 23 reporting chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportingStage {
    /// Art. 23(4)(a): within 24 h.
    EarlyWarning,
    /// Art. 23(4)(b): within 72 h.
    IncidentNotification,
    /// Art. 23(4)(c): on request.
    IntermediateReport,
    /// Art. 23(4)(d): within one month of the notification.
    FinalReport,
}

/// Sectors, member states and organisations affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Affected {
    /// NIS2 sectors, sorted.
    pub sectors: Vec<Sector>,
    /// Member states (ISO 3166-1 alpha-2), sorted.
    pub member_states: Vec<MemberState>,
    /// Number of distinct organisations.
    pub organisation_count: u32,
    /// Organisation names (technical audience only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organisations: Vec<String>,
}

/// An indicator in a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarningIndicator {
    /// Indicator type.
    #[serde(rename = "type")]
    pub kind: IndicatorType,
    /// Value.
    pub value: String,
    /// Its TLP (never above the warning's audience ceiling).
    pub tlp: Tlp,
    /// Feeds that listed it.
    pub feeds: Vec<String>,
    /// Who saw it, for the renderings per audience (not published). A warning read back
    /// from JSON has none, and its renderings keep indicators by their labels alone (as
    /// `tocsin report` re-renders archived ones).
    #[serde(skip)]
    pub seen_by: crate::incident::SeenBy,
}

/// One entry of a warning's timeline: when an organisation was first hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// Event time of the first detection at that organisation.
    pub time: Timestamp,
    /// Organisation (technical audience only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    /// Its sector, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sector: Option<Sector>,
    /// Its member state, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_state: Option<MemberState>,
    /// Detections from this organisation.
    pub detections: u64,
    /// The most restrictive TLP of this organisation's detections.
    pub tlp: Tlp,
}

/// NIS2 Article 23 reporting clock, counted from awareness (the first detection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportingClock {
    /// The stage this warning serves.
    pub stage: ReportingStage,
    /// When the first detection was seen (event time).
    pub aware_at: Timestamp,
    /// Early warning due: 24 h after awareness.
    pub early_warning_due: Timestamp,
    /// Incident notification due: 72 h after awareness.
    pub notification_due: Timestamp,
    /// Final report due: one month (30 days) after the notification.
    pub final_report_due: Timestamp,
}

impl ReportingClock {
    /// The clock for an incident first seen at `aware_at`.
    pub fn from_awareness(aware_at: Timestamp) -> Self {
        let h = 3_600_000;
        ReportingClock {
            stage: ReportingStage::EarlyWarning,
            aware_at,
            early_warning_due: Timestamp(aware_at.0 + 24 * h),
            notification_due: Timestamp(aware_at.0 + 72 * h),
            final_report_due: Timestamp(aware_at.0 + 72 * h + 30 * 24 * h),
        }
    }
}

/// A rule that contributed to the warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarningRule {
    /// Rule id.
    pub id: String,
    /// Rule title.
    pub title: String,
    /// Rule level.
    pub level: crate::detection::Level,
    /// Detections it contributed.
    pub detections: u64,
}

/// Who issues the warnings: the organisation that runs this Tocsin (a coordination centre, a
/// national CSIRT), from the escalation policy's `issuer`. Renderings name it as their
/// author: the STIX objects' `created_by_ref` (an `identity` of class `organization` with
/// this UUID) and the MISP event's `Orgc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuer {
    /// The organisation's name, as its recipients know it.
    pub name: String,
    /// Its UUID, lower-case: the MISP organisation's UUID where it has one, else derived
    /// from the name. It names the STIX `identity`.
    pub uuid: String,
    /// How to reach it (an address, a telephone number, a web form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

impl Issuer {
    /// An issuer named `name`, with the UUID derived from the name when none is given.
    pub fn new(name: String, uuid: Option<&str>, contact: Option<String>) -> Self {
        let uuid = match uuid {
            Some(u) => u.to_ascii_lowercase(),
            None => crate::id::uuid_v4_shaped(
                crate::id::IdHasher::new("tocsin.issuer")
                    .part(name.as_bytes())
                    .digest(),
            ),
        };
        Issuer {
            name,
            uuid,
            contact,
        }
    }
}

/// One version of an early warning (`tocsin.early-warning/v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyWarning {
    /// Always [`EARLY_WARNING_SCHEMA`].
    pub schema: String,
    /// Deterministic id: a hash of the correlation key and the window start.
    pub warning_id: String,
    /// The incident candidate it was raised from.
    pub incident_id: String,
    /// 1 for the first version, +1 for each change.
    pub version: u32,
    /// Lifecycle status of this version.
    pub status: WarningStatus,
    /// Event time at which this version was issued (the detection that caused it), so that
    /// replays give identical output; at least one second after the previous version's, so
    /// that versions are strictly ordered by it to the second (a version caused by a
    /// detection that arrived out of order is dated just after the one before).
    pub issued_at: Timestamp,
    /// `issued_at` of the warning's first version (of the first issued since its state was
    /// kept, for a state kept before this field existed): the same in every version, so
    /// that a rendering which versions its objects (STIX `created`) dates them all alike.
    /// Absent only from warnings written before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_issued_at: Option<Timestamp>,
    /// Who issues it; absent when the escalation policy names no issuer (renderings are
    /// then authored by Tocsin itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<Issuer>,
    /// True for exercise traffic (e.g. `tocsin demo`): never to be taken as a real warning.
    pub exercise: bool,
    /// The audience this rendering is for.
    pub audience: Audience,
    /// One line for humans.
    pub headline: String,
    /// Reference Security Incident Taxonomy class and type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taxonomy: Option<Taxonomy>,
    /// The EU cybersecurity incident taxonomy's dimensions.
    pub eu_taxonomy: EuTaxonomy,
    /// Severity from the escalation policy.
    pub severity: Severity,
    /// NIS2 Art. 23(4)(a): suspected to be caused by unlawful or malicious acts.
    pub suspected_malicious: bool,
    /// NIS2 Art. 23(4)(a): could have a cross-border impact (≥ N member states).
    pub cross_border: bool,
    /// Affects several sectors.
    pub cross_sector: bool,
    /// The correlation key shared by its detections.
    pub correlation_key: String,
    /// Earliest detection.
    pub first_seen: Timestamp,
    /// Latest detection.
    pub last_seen: Timestamp,
    /// What is affected.
    pub affected: Affected,
    /// Detections merged.
    pub detection_count: u64,
    /// Rules that contributed.
    pub rules: Vec<WarningRule>,
    /// ATT&CK technique ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attack: Vec<String>,
    /// Indicators, filtered by the audience's TLP ceiling.
    #[serde(default)]
    pub indicators: Vec<WarningIndicator>,
    /// First detection per organisation, in time order.
    pub timeline: Vec<TimelineEntry>,
    /// What recipients should do.
    pub recommended_actions: Vec<String>,
    /// NIS2 reporting clock.
    pub reporting: ReportingClock,
    /// TLP of the whole warning: the most restrictive of its inputs.
    pub tlp: Tlp,
    /// The TLP ceiling this rendering was made under; absent from the canonical warning,
    /// which carries everything. With the audience it names the rendering: two renderings
    /// of one version differ only when one of the two does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlp_ceiling: Option<Tlp>,
    /// What recipients may do with it.
    pub pap: Pap,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audience_is_spelled_as_serialised() {
        for audience in [
            Audience::Technical,
            Audience::Operational,
            Audience::Strategic,
        ] {
            let json = serde_json::to_value(audience).unwrap();
            assert_eq!(json, audience.as_str());
        }
    }
}
