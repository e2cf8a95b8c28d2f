//! Who and where an event comes from: sector, member state, organisation, sensor, time.
//!
//! Cross-sector and cross-border correlation needs this context on every event. It comes
//! from configured event fields (a sensor pipeline stamps `sector`, `member_state`,
//! `organisation`) or, in the Kafka workers, from message headers. [`ContextFields`] says
//! which fields to read; [`EventContext::extract`] reads them without allocating on the
//! common path (organisation and sensor stay borrowed).

use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::member_state::MemberState;
use crate::sector::Sector;
use crate::time::Timestamp;

/// The event fields that carry context, each a list of candidates tried in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextFields {
    /// Event time.
    pub time: Vec<String>,
    /// NIS2 sector slug.
    pub sector: Vec<String>,
    /// ISO 3166-1 alpha-2 member state.
    pub member_state: Vec<String>,
    /// Organisation name or id.
    pub organisation: Vec<String>,
    /// Sensor or collector id.
    pub sensor: Vec<String>,
    /// Host name.
    pub host: Vec<String>,
}

impl Default for ContextFields {
    fn default() -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        ContextFields {
            time: v(&[
                "@timestamp",
                "UtcTime",
                "TimeCreated",
                "EventTime",
                "timestamp",
                "time",
            ]),
            sector: v(&["sector", "tocsin.sector", "organization.sector"]),
            member_state: v(&[
                "member_state",
                "tocsin.member_state",
                "organization.country",
            ]),
            organisation: v(&[
                "organisation",
                "organization",
                "tocsin.organisation",
                "organization.name",
            ]),
            sensor: v(&["sensor", "tocsin.sensor", "agent.id"]),
            host: v(&["Hostname", "Computer", "host.name", "hostname"]),
        }
    }
}

/// Context values found in one event. Unknown or absent values are `None`; invalid ones
/// are reported in `problems` so that they can be counted, never silently dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventContext<'a> {
    /// Event time, if a time field was present and readable.
    pub time: Option<Timestamp>,
    /// NIS2 sector.
    pub sector: Option<Sector>,
    /// Member state.
    pub member_state: Option<MemberState>,
    /// Organisation, borrowed when the field needs no unescaping.
    pub organisation: Option<std::borrow::Cow<'a, str>>,
    /// Sensor.
    pub sensor: Option<std::borrow::Cow<'a, str>>,
    /// Host.
    pub host: Option<std::borrow::Cow<'a, str>>,
    /// Fields that were present but unreadable (e.g. an unknown sector slug).
    pub problems: ContextProblems,
}

/// Flags for context fields that were present but invalid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContextProblems {
    /// The time field could not be parsed.
    pub bad_time: bool,
    /// The sector is not a NIS2 sector slug.
    pub bad_sector: bool,
    /// The member state is not an ISO 3166-1 alpha-2 code.
    pub bad_member_state: bool,
}

impl<'a> EventContext<'a> {
    /// Read the context of `event` through `fields`.
    pub fn extract(event: &Event<'a>, fields: &ContextFields) -> Self {
        let mut ctx = EventContext::default();
        let mut buf = String::new();
        if let Some(v) = first(event, &fields.time) {
            ctx.time = match v.kind() {
                crate::event::ValueKind::Number => {
                    v.as_f64().and_then(Timestamp::from_epoch_number)
                }
                _ => v.text(&mut buf).and_then(|t| Timestamp::parse(t).ok()),
            };
            ctx.problems.bad_time = ctx.time.is_none();
        }
        if let Some(v) = first(event, &fields.sector) {
            ctx.sector = v.text(&mut buf).and_then(|t| t.parse().ok());
            ctx.problems.bad_sector = ctx.sector.is_none();
        }
        if let Some(v) = first(event, &fields.member_state) {
            ctx.member_state = v.text(&mut buf).and_then(|t| t.parse().ok());
            ctx.problems.bad_member_state = ctx.member_state.is_none();
        }
        ctx.organisation = first_text(event, &fields.organisation);
        ctx.sensor = first_text(event, &fields.sensor);
        ctx.host = first_text(event, &fields.host);
        ctx
    }
}

fn first<'a>(event: &Event<'a>, names: &[String]) -> Option<crate::event::FieldValue<'a>> {
    use crate::event::ValueKind;
    names
        .iter()
        .filter_map(|n| event.get(n))
        .find(|v| !matches!(v.kind(), ValueKind::Object | ValueKind::Array))
}

fn first_text<'a>(event: &Event<'a>, names: &[String]) -> Option<std::borrow::Cow<'a, str>> {
    let v = first(event, names)?;
    match v.kind() {
        crate::event::ValueKind::String { escaped: false } => std::str::from_utf8(v.raw())
            .ok()
            .filter(|s| !s.is_empty())
            .map(std::borrow::Cow::Borrowed),
        _ => v
            .to_text()
            .filter(|s| !s.is_empty())
            .map(std::borrow::Cow::Owned),
    }
}

/// Context as it travels in a detection (owned, serialisable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// NIS2 sector, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sector: Option<Sector>,
    /// Member state, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_state: Option<MemberState>,
    /// Organisation, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    /// Sensor, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
}

impl From<&EventContext<'_>> for Context {
    fn from(c: &EventContext<'_>) -> Self {
        Context {
            sector: c.sector,
            member_state: c.member_state,
            organisation: c.organisation.as_deref().map(str::to_owned),
            sensor: c.sensor.as_deref().map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventIndex;

    #[test]
    fn extracts_context_from_flat_and_nested_fields() {
        let raw = br#"{"UtcTime":"2026-03-02 08:00:00.000","sector":"health","member_state":"de","organisation":"Klinikum Nord","Hostname":"ws-01"}"#;
        let mut idx = EventIndex::new();
        let ev = Event::parse(raw, &mut idx).unwrap();
        let ctx = EventContext::extract(&ev, &ContextFields::default());
        assert_eq!(ctx.sector, Some(Sector::Health));
        assert_eq!(ctx.member_state.unwrap().as_str(), "DE");
        assert_eq!(ctx.organisation.as_deref(), Some("Klinikum Nord"));
        assert_eq!(ctx.host.as_deref(), Some("ws-01"));
        assert_eq!(ctx.time, Some(Timestamp::from_civil(2026, 3, 2, 8, 0, 0)));

        let raw = br#"{"@timestamp":"2026-03-02T08:00:00Z","organization":{"name":"Grid SA","sector":"energy","country":"FR"}}"#;
        let ev = Event::parse(raw, &mut idx).unwrap();
        let ctx = EventContext::extract(&ev, &ContextFields::default());
        assert_eq!(ctx.sector, Some(Sector::Energy));
        assert_eq!(ctx.member_state.unwrap().as_str(), "FR");
        assert_eq!(ctx.organisation.as_deref(), Some("Grid SA"));
    }

    #[test]
    fn invalid_context_is_flagged() {
        let raw = br#"{"time":"soon","sector":"bakery","member_state":"XX"}"#;
        let mut idx = EventIndex::new();
        let ev = Event::parse(raw, &mut idx).unwrap();
        let ctx = EventContext::extract(&ev, &ContextFields::default());
        assert!(ctx.problems.bad_time && ctx.problems.bad_sector && ctx.problems.bad_member_state);
    }
}
