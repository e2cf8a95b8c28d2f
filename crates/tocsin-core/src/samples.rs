//! Sample values for tests and benches: one place that spells a well-formed detection, so
//! that a change to the contract is made once rather than in every suite that needs one.
//! Not used by the engine itself.

use crate::{
    Context, Detection, DetectionKind, IndicatorType, Level, MatchedIndicator, RuleRef, Sector,
    Timestamp, Tlp, DETECTION_SCHEMA,
};

/// A detection of the domain `value` by an indicator feed `feed` (rule `ioc:FEED`, level
/// high, TLP:GREEN) at `organisation`, a health organisation in Germany, at `event_time`:
/// correlation key `indicator:domain:VALUE`. Alone, it makes a live key and no warning.
pub fn indicator_detection(
    id: String,
    value: &str,
    feed: &str,
    organisation: &str,
    event_time: Timestamp,
) -> Detection {
    Detection {
        schema: DETECTION_SCHEMA.into(),
        id,
        kind: DetectionKind::Indicator,
        rule: RuleRef {
            id: format!("ioc:{feed}"),
            title: format!("Indicator from feed {feed}"),
            level: Level::High,
        },
        event_time,
        context: Context {
            sector: Some(Sector::Health),
            member_state: "DE".parse().ok(),
            organisation: Some(organisation.into()),
            sensor: None,
        },
        entities: vec![],
        indicators: vec![MatchedIndicator {
            kind: IndicatorType::Domain,
            value: value.into(),
            feed: feed.into(),
            tlp: Tlp::Green,
            field: "QueryName".into(),
        }],
        taxonomy: None,
        attack: vec![],
        tags: vec![],
        correlation_keys: vec![format!("indicator:domain:{value}")],
        tlp: Tlp::Green,
        source: None,
        fields: Default::default(),
        standalone: true,
    }
}

/// `d` as a message of the detections topic carries it: keyed by its (first) correlation
/// key, as JSON.
pub fn keyed_message(d: &Detection) -> (String, Vec<u8>) {
    let key = d.correlation_keys.first().cloned().unwrap_or_default();
    let json = serde_json::to_vec(d).expect("a detection serialises");
    (key, json)
}
