//! Tocsin's domain types and data contracts. No I/O.
//!
//! Everything the other crates exchange is defined here: the borrowed [`Event`] view over
//! one JSON event, its [`EventContext`], the [`Detection`] the matcher emits, the
//! [`IncidentCandidate`] the correlator keeps and the [`EarlyWarning`] it publishes, with the
//! vocabularies they use (NIS2 [`Sector`], ISO 3166-1 [`MemberState`], TLP 2.0 [`Tlp`], the
//! Reference Security Incident [`Taxonomy`]). Ids are deterministic ([`id`]), timestamps are
//! event time ([`Timestamp`]).
//!
//! Invariant: this crate does no I/O and knows nothing of Kafka, files or rules.

mod bytescan;
pub mod context;
pub mod detection;
pub mod encoding;
pub mod event;
pub mod id;
pub mod incident;
pub mod member_state;
pub mod samples;
pub mod sector;
pub mod sorted;
pub mod taxonomy;
pub mod time;
pub mod tlp;
pub mod warning;

/// Ask the CPU to bring the cache line at `p` in: a hint, never a read, so any address
/// will do (one past the end of a buffer included). Nothing on other architectures. The
/// decoder asks for an event's bytes ahead of its scan, `tocsin gen` for the next events'
/// organisations.
#[inline(always)]
pub fn prefetch<T: ?Sized>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it reads nothing and cannot fault.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

pub use context::{Context, ContextFields, EventContext};
pub use detection::{
    correlation_rule_key, Detection, DetectionKind, Entity, IndicatorType, Level, MatchedIndicator,
    RuleRef, SourceRef, DETECTION_SCHEMA,
};
pub use event::{
    escape_json_into, DecodeError, Event, EventIndex, FieldName, FieldNames, FieldValue, ValueKind,
    LOCATED_ABSENT, LOCATED_NESTED,
};
pub use incident::{IncidentCandidate, IndicatorSighting, RuleSummary, SeenBy};
pub use member_state::MemberState;
pub use sector::Sector;
pub use sorted::{SortedMap, SortedSet};
pub use taxonomy::{Taxonomy, TaxonomyClass, TaxonomyType};
pub use time::{DurationMs, Timestamp};
pub use tlp::Tlp;
pub use warning::{
    Affected, Audience, EarlyWarning, EuTaxonomy, ImpactSeverity, Issuer, Outlook, Pap,
    ReportingClock, ReportingStage, RootCause, Severity, ThreatSeverity, TimelineEntry,
    WarningIndicator, WarningRule, WarningStatus, EARLY_WARNING_SCHEMA,
};
