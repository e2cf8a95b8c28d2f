//! Turning matches into [`Detection`]s.
//!
//! This runs only for events that matched something, so it may allocate: it copies the
//! context, reads the profile's entity fields, attaches indicators with feed and TLP, and
//! derives the correlation keys — one per matched indicator (`indicator:<type>:<value>`)
//! and one per campaign tag of the rule (`campaign:<name>`).

use std::collections::BTreeMap;

use tocsin_core::id::detection_id;
use tocsin_core::{
    Context, Detection, DetectionKind, Entity, Event, EventContext, Level, MatchedIndicator,
    RuleRef, SourceRef, Taxonomy, TaxonomyType, Timestamp, Tlp, DETECTION_SCHEMA,
};

use crate::compile::CompiledRules;
use crate::matcher::MatchScratch;

/// The correlation key of an indicator.
pub fn indicator_key(kind: tocsin_core::IndicatorType, value: &str) -> String {
    format!("indicator:{}:{value}", kind.as_str())
}

impl CompiledRules {
    fn entities(&self, event: &Event<'_>) -> Vec<Entity> {
        let mut out = Vec::new();
        for (kind, paths) in &self.profile.entity_fields {
            if let Some(text) = paths
                .iter()
                .find_map(|p| event.get(p).and_then(|v| v.to_text()))
            {
                if !text.is_empty() {
                    out.push(Entity {
                        kind: kind.clone(),
                        value: text,
                    });
                }
            }
        }
        out
    }

    /// Append the detections of the last [`CompiledRules::match_event`] to `out`.
    /// `event_time` is the event's time (the caller decides the default when it has none).
    pub fn detections(
        &self,
        event: &Event<'_>,
        ctx: &EventContext<'_>,
        event_time: Timestamp,
        source: Option<&SourceRef>,
        scratch: &MatchScratch,
        out: &mut Vec<Detection>,
    ) {
        if scratch.matched().is_empty() && scratch.ioc_hits().is_empty() {
            return;
        }
        let context = Context::from(ctx);
        let entities = self.entities(event);
        for &r in scratch.matched() {
            let rule = &self.rules[r as usize];
            let mut correlation_keys: Vec<String> = rule
                .campaigns
                .iter()
                .map(|c| format!("campaign:{c}"))
                .collect();
            let mut fields = std::collections::BTreeMap::new();
            for usage in &rule.correlation_uses {
                let mut values = Vec::with_capacity(usage.group_fields.len());
                for (name, paths) in usage.group_fields.iter().chain(&usage.value_fields) {
                    // A missing field groups as the empty value (as SQL's NULL group would).
                    let v = paths
                        .iter()
                        .find_map(|p| event.get(p).and_then(|v| v.to_text()))
                        .unwrap_or_default();
                    fields.insert(name.clone(), v);
                }
                for (name, _) in &usage.group_fields {
                    values.push(fields.get(name).map(String::as_str).unwrap_or_default());
                }
                correlation_keys.push(tocsin_core::correlation_rule_key(
                    &usage.correlation_id,
                    &values,
                ));
            }
            out.push(Detection {
                schema: DETECTION_SCHEMA.to_owned(),
                id: detection_id(&rule.id, event.raw()),
                kind: DetectionKind::Sigma,
                rule: RuleRef {
                    id: rule.id.clone(),
                    title: rule.title.clone(),
                    level: rule.level,
                },
                event_time,
                context: context.clone(),
                entities: entities.clone(),
                indicators: Vec::new(),
                taxonomy: rule.taxonomy,
                attack: rule.attack.clone(),
                tags: rule.tags.clone(),
                correlation_keys,
                tlp: rule.tlp,
                source: source.cloned(),
                fields,
                standalone: rule.standalone,
            });
        }
        // One indicator detection per feed, listing every indicator of that feed found.
        let mut by_feed: BTreeMap<&str, Vec<MatchedIndicator>> = BTreeMap::new();
        for hit in scratch.ioc_hits() {
            let entry = self.iocs.entry(hit.indicator);
            let (_, field) = self.ioc_hit_field(hit);
            // Each feed's listing counts only while it is valid at the event's time.
            for p in entry.provenance().filter(|p| p.valid_at(event_time)) {
                by_feed.entry(p.feed).or_default().push(MatchedIndicator {
                    kind: entry.kind,
                    value: entry.value.to_owned(),
                    feed: p.feed.to_owned(),
                    tlp: p.tlp,
                    field: field.to_owned(),
                });
            }
        }
        for (feed, mut indicators) in by_feed {
            indicators.sort();
            let rule_id = format!("ioc:{feed}");
            let tlp = indicators.iter().map(|i| i.tlp).max().unwrap_or(Tlp::Clear);
            // The same indicator found in two fields is one key (one copy on the detections
            // topic, not two).
            let mut correlation_keys: Vec<String> = indicators
                .iter()
                .map(|i| indicator_key(i.kind, &i.value))
                .collect();
            correlation_keys.sort();
            correlation_keys.dedup();
            out.push(Detection {
                schema: DETECTION_SCHEMA.to_owned(),
                id: detection_id(&rule_id, event.raw()),
                kind: DetectionKind::Indicator,
                rule: RuleRef {
                    id: rule_id,
                    title: format!("Indicator from feed {feed}"),
                    level: Level::High,
                },
                event_time,
                context: context.clone(),
                entities: entities.clone(),
                indicators,
                taxonomy: Some(Taxonomy::new(TaxonomyType::InfectedSystem)),
                attack: Vec::new(),
                tags: Vec::new(),
                correlation_keys,
                tlp,
                source: source.cloned(),
                fields: Default::default(),
                standalone: true,
            });
        }
    }
}
