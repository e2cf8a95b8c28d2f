//! Sigma correlation rules, evaluated over detections in event time.
//!
//! The match stage gives every detection of a rule that a correlation refers to the key
//! `correlation:<correlation id>:<group-by values>` and copies the `group-by` and
//! `condition.field` values into `Detection::fields`, so this engine never reads events.
//! Per key it keeps the detections of the last `timespan`:
//!
//! - conditions with lower bounds only (`gt`, `gte`) — and `temporal` / `temporal_ordered` —
//!   are checked on every arrival over a sliding window and fire as soon as they hold;
//! - conditions with an upper bound (`lt`, `lte`, `eq`, `neq`, ranges) and
//!   `value_percentile` can only be judged on a complete window: the window opens at the
//!   first detection of the group and is judged when the watermark (latest event time
//!   minus the allowed lateness) passes its end, or at the end of the input.
//!
//! After firing, a group starts afresh (no alert storms from one burst). A detection older
//! than its group's open window minus the allowed lateness is counted as late, never merged
//! silently. A firing is a detection of kind `correlation`, which can itself feed other
//! correlation rules (chaining, bounded depth) and the cross-organisation correlator.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use tocsin_core::id::IdHasher;
use tocsin_core::{
    correlation_rule_key, Context, Detection, DetectionKind, DurationMs, Entity, MatchedIndicator,
    RuleRef, Taxonomy, Timestamp, Tlp, DETECTION_SCHEMA,
};
use tocsin_rules::{CorrelationRule, CorrelationType};

use crate::recent_ids::RecentIds;
use crate::tracked::TrackedMap;

/// Counters of the correlation-rule engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CorrelationRuleStats {
    /// Detections received under a correlation key.
    pub received: u64,
    /// Correlation detections produced.
    pub fired: u64,
    /// Detections too old for their group's window.
    pub late: u64,
    /// Detections under a key of an unknown correlation rule.
    pub unknown: u64,
    /// Groups evicted for the group limit.
    pub evicted: u64,
    /// Detections the group had counted already (redeliveries; for the aggregating types
    /// also an event counted under another of the correlation's rules), ignored.
    #[serde(default)]
    pub duplicates: u64,
    /// Groups dropped, with what they had counted, because their correlation rule changed
    /// what its windows mean or was removed (a reload, or a restore under other rules).
    #[serde(default)]
    pub discarded: u64,
}

/// One detection a window counted (written to snapshots by [`compact_items`]).
#[derive(Debug, Clone)]
struct Item {
    time: Timestamp,
    /// Position of the matched rule in the correlation's `rules`.
    position: usize,
    value: Option<String>,
    tlp: Tlp,
    /// Shared with the group's other items that say the same ([`Evidence::shared`]).
    detection: Arc<Evidence>,
}

/// What a window keeps of a detection: what a firing reads of it (its kind and rule id, to
/// name a chained correlation's fields; the group-by values; the context; indicators and
/// taxonomy), not its id, title, tags, keys or source, which a busy group would hold once
/// per detection. The field names are the detection's, so a snapshot that kept whole
/// detections (before this was kept) reads as well.
///
/// The detections of one group mostly say the same: its group-by values by definition, and
/// usually one context and rule. So an item shares the evidence of the group's newest item
/// when it is equal, and a busy window holds one copy, not one per detection.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Evidence {
    kind: DetectionKind,
    rule: EvidenceRule,
    context: Context,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    indicators: Vec<MatchedIndicator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    taxonomy: Option<Taxonomy>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    fields: BTreeMap<String, String>,
}

/// Of the detection's rule, its id (a whole [`RuleRef`] reads as well).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct EvidenceRule {
    id: String,
}

impl Evidence {
    /// What a window keeps of `d`.
    fn of(d: &Detection) -> Self {
        Evidence {
            kind: d.kind,
            rule: EvidenceRule {
                id: d.rule.id.clone(),
            },
            context: d.context.clone(),
            indicators: d.indicators.clone(),
            taxonomy: d.taxonomy,
            fields: d.fields.clone(),
        }
    }

    /// What a window keeps of `d`: the evidence of the group's newest item, `newest`, when
    /// it is what `d` says too, else a copy of `d`'s.
    fn shared(d: &Detection, newest: Option<&Item>) -> Arc<Evidence> {
        match newest {
            Some(item) if item.detection.describes(d) => {
                debug_assert!(*item.detection == Evidence::of(d));
                Arc::clone(&item.detection)
            }
            _ => Arc::new(Evidence::of(d)),
        }
    }

    /// Whether this is what a window would keep of `d` (compared without copying it).
    /// Every field is named, so that one added to [`Evidence`] must be compared here too.
    fn describes(&self, d: &Detection) -> bool {
        let Evidence {
            kind,
            rule: EvidenceRule { id },
            context,
            indicators,
            taxonomy,
            fields,
        } = self;
        *kind == d.kind
            && *taxonomy == d.taxonomy
            && *id == d.rule.id
            && *context == d.context
            && *fields == d.fields
            && *indicators == d.indicators
    }
}

/// A window's items in snapshots. An item's evidence is written only where it is not the
/// item before's (format v2): a busy window's detections mostly say the same, and writing
/// it for each was most of the state. Snapshots that wrote it for every item (v1) read the
/// same way.
mod compact_items {
    use std::collections::VecDeque;
    use std::sync::Arc;

    use serde::de::Error as _;
    use tocsin_core::{Timestamp, Tlp};

    use super::{Evidence, Item};

    #[derive(serde::Serialize)]
    struct Written<'a> {
        time: Timestamp,
        position: usize,
        value: &'a Option<String>,
        tlp: Tlp,
        #[serde(skip_serializing_if = "Option::is_none")]
        detection: Option<&'a Evidence>,
    }

    #[derive(serde::Deserialize)]
    struct Read {
        time: Timestamp,
        position: usize,
        value: Option<String>,
        tlp: Tlp,
        #[serde(default)]
        detection: Option<Evidence>,
    }

    pub(super) fn serialize<S: serde::Serializer>(
        items: &VecDeque<Item>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut previous: Option<&Arc<Evidence>> = None;
        serializer.collect_seq(items.iter().map(|item| {
            let same =
                previous.is_some_and(|p| Arc::ptr_eq(p, &item.detection) || **p == *item.detection);
            previous = Some(&item.detection);
            Written {
                time: item.time,
                position: item.position,
                value: &item.value,
                tlp: item.tlp,
                detection: (!same).then_some(&*item.detection),
            }
        }))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<VecDeque<Item>, D::Error> {
        let read: Vec<Read> = serde::Deserialize::deserialize(deserializer)?;
        let mut items = VecDeque::with_capacity(read.len());
        let mut previous: Option<Arc<Evidence>> = None;
        for r in read {
            let detection = match (r.detection, &previous) {
                (Some(evidence), Some(p)) if **p == evidence => Arc::clone(p),
                (Some(evidence), _) => Arc::new(evidence),
                (None, Some(p)) => Arc::clone(p),
                (None, None) => {
                    return Err(D::Error::custom(
                        "the first item of a window has no evidence",
                    ))
                }
            };
            previous = Some(Arc::clone(&detection));
            items.push_back(Item {
                time: r.time,
                position: r.position,
                value: r.value,
                tlp: r.tlp,
                detection,
            });
        }
        Ok(items)
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Group {
    correlation: String,
    /// Start of the open window (window-close mode).
    window_start: Option<Timestamp>,
    #[serde(with = "compact_items")]
    items: VecDeque<Item>,
    last_seen: Timestamp,
    /// The [`item_identity`] of the latest detections the group took (at most
    /// [`RecentIds::CAPACITY`]), so that a redelivered detection is not counted twice, even
    /// after its window fired.
    #[serde(default)]
    recent: RecentIds,
    /// Changed since the last state write ([`TrackedMap`]); not part of the state.
    #[serde(skip)]
    changed: bool,
}

impl crate::tracked::ChangeFlag for Group {
    fn change_flag(&mut self) -> &mut bool {
        &mut self.changed
    }
}

/// The engine's state, for snapshots: groups (sorted by key), watermark, counters.
#[derive(Debug, serde::Deserialize)]
pub struct SigmaState {
    groups: Vec<(String, Group)>,
    watermark_ms: i64,
    stats: CorrelationRuleStats,
    /// Correlation id → [`window_digest`] of the rule the groups were counted under, so that
    /// a restore under changed rules drops what no longer means the same. Absent from
    /// snapshots written before it was kept: their groups of correlations still loaded
    /// are all taken.
    #[serde(default)]
    definitions: BTreeMap<String, u128>,
}

/// [`SigmaState`] as written, borrowed from the engine: a snapshot (one per state write of
/// a correlate worker) serialises the groups where they are, without copying them first.
#[derive(serde::Serialize)]
pub struct SigmaStateRef<'a> {
    groups: Vec<(&'a String, &'a Group)>,
    watermark_ms: i64,
    stats: CorrelationRuleStats,
    definitions: &'a BTreeMap<String, u128>,
}

/// What changed in the engine since the last state write, as a state delta writes it: the
/// groups removed and the groups changed (sorted by key), and the engine's watermark,
/// counters and definitions.
#[derive(serde::Serialize)]
pub struct SigmaDeltaRef<'a> {
    removed_groups: Vec<String>,
    groups: Vec<(&'a String, &'a Group)>,
    watermark_ms: i64,
    stats: CorrelationRuleStats,
    definitions: &'a BTreeMap<String, u128>,
}

/// [`SigmaDeltaRef`] read back.
#[derive(Debug, serde::Deserialize)]
pub struct SigmaDelta {
    removed_groups: Vec<String>,
    groups: Vec<(String, Group)>,
    watermark_ms: i64,
    stats: CorrelationRuleStats,
    definitions: BTreeMap<String, u128>,
}

/// The engine: correlation rules and their per-group windows.
#[derive(Debug)]
pub struct CorrelationRules {
    rules: HashMap<String, CorrelationRule>,
    /// Correlation id → [`window_digest`] of its rule, made once with the rules: what
    /// snapshots record and reloads and restores compare.
    definitions: BTreeMap<String, u128>,
    /// Correlation id → ids of the correlations that refer to it (chaining).
    consumers: HashMap<String, Vec<String>>,
    /// Tracked, so that a state delta can write the groups changed since the last one.
    groups: TrackedMap<Group>,
    /// (window end, group key) of every window judged at its close, earliest first, so that
    /// finding the windows the watermark has passed costs what it finds, not a walk over
    /// every group on every detection. Entries leave with their window (judged, evicted or
    /// opened again); one that outlived its group all the same is skipped when its time
    /// comes.
    deadlines: BTreeSet<(i64, String)>,
    watermark: Timestamp,
    allowed_lateness: DurationMs,
    max_groups: usize,
    stats: CorrelationRuleStats,
    /// Restored from a snapshot of a version that remembered detections by their id (one
    /// without `definitions`): a redelivery of what it counted is recognised by its id too.
    legacy_recent: bool,
}

/// What [`CorrelationRules::replace_rules`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CorrelationRulesReplaced {
    /// Correlations of the new set not in the old one.
    pub added: usize,
    /// Correlations in both whose windows mean the same: their groups were kept.
    pub kept: usize,
    /// Correlations in both whose windows changed: their groups were dropped.
    pub changed: usize,
    /// Correlations of the old set not in the new one.
    pub removed: usize,
    /// Groups dropped (of changed and removed correlations), with what they had counted.
    pub groups_dropped: usize,
}

impl CorrelationRulesReplaced {
    /// Whether the set differs from the one it replaced.
    pub fn differs(&self) -> bool {
        self.added + self.changed + self.removed > 0
    }
}

/// The log line of a replacement: `correlation rules replaced: 1 added, 0 changed, ...`.
impl std::fmt::Display for CorrelationRulesReplaced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "correlation rules replaced: {} added, {} changed, {} removed, {} kept; {} open groups dropped",
            self.added, self.changed, self.removed, self.kept, self.groups_dropped
        )
    }
}

/// A digest of what a correlation's groups count by: its id, type, referenced rules,
/// group-by, timespan, condition and aliases (not its title, level, tags or `generate`,
/// which only shape what a firing says). Two rules with the same digest give a group's
/// counts the same meaning. Made from the parsed rule's debug text: stable within one
/// version of Tocsin; a new version may read a snapshot's digests as changed, and then
/// drops those groups, which errs on the side of counting afresh.
fn window_digest(rule: &CorrelationRule) -> u128 {
    let definition = format!(
        "{:?}",
        (
            &rule.id,
            rule.kind,
            &rule.rules,
            &rule.group_by,
            rule.timespan,
            &rule.condition,
            &rule.aliases,
        )
    );
    IdHasher::new("correlation-windows")
        .part(definition.as_bytes())
        .digest()
}

/// What a group knows a detection by, to count it once: a redelivered detection (the same
/// event read again after a worker restart or a rebalance) must not count twice.
///
/// A detection read from a source is known by where its event lies (topic and partition
/// and offset, or file and line) and its event time, not by its id (which hashes the rule
/// and the event's bytes): two byte-identical log lines are two events, and the event time
/// tells apart the lines at one place of two inputs of the same name (two days' logs read
/// from stdin, then correlated again by `tocsin report`). For the aggregating types
/// (`event_count`, `value_count`, `value_sum`, `value_avg`, `value_percentile`) that is
/// all, so that an event two of the correlation's rules match counts once, as the types
/// count events; the temporal types count the rules an event matched, so there the rule is
/// part of it. A detection without a source (another correlation's firing) is known by its
/// id.
fn item_identity(kind: CorrelationType, d: &Detection) -> u128 {
    let Some(source) = &d.source else {
        return crate::id_digest(&d.id);
    };
    let hasher = IdHasher::new("correlation-item")
        .part(source.name.as_bytes())
        .part(&source.position.to_le_bytes())
        .part(&d.event_time.0.to_le_bytes());
    match kind {
        CorrelationType::Temporal | CorrelationType::TemporalOrdered => {
            hasher.part(d.rule.id.as_bytes()).digest()
        }
        _ => hasher.digest(),
    }
}

fn aggregate_label(kind: CorrelationType) -> &'static str {
    match kind {
        CorrelationType::EventCount => "event_count",
        CorrelationType::ValueCount => "value_count",
        CorrelationType::Temporal | CorrelationType::TemporalOrdered => "rules_matched",
        CorrelationType::ValueSum => "value_sum",
        CorrelationType::ValueAvg => "value_avg",
        CorrelationType::ValuePercentile => "value_percent",
    }
}

impl CorrelationRules {
    /// An engine for these rules.
    pub fn new(rules: &[CorrelationRule], allowed_lateness: DurationMs, max_groups: usize) -> Self {
        let mut consumers: HashMap<String, Vec<String>> = HashMap::new();
        for c in rules {
            for r in &c.rules {
                if let Some(target) = rules
                    .iter()
                    .find(|t| &t.id == r || t.name.as_deref() == Some(r.as_str()))
                {
                    consumers
                        .entry(target.id.clone())
                        .or_default()
                        .push(c.id.clone());
                }
            }
        }
        CorrelationRules {
            rules: rules.iter().map(|r| (r.id.clone(), r.clone())).collect(),
            definitions: rules
                .iter()
                .map(|r| (r.id.clone(), window_digest(r)))
                .collect(),
            consumers,
            groups: TrackedMap::default(),
            deadlines: BTreeSet::new(),
            watermark: Timestamp(i64::MIN),
            allowed_lateness,
            max_groups,
            stats: CorrelationRuleStats::default(),
            legacy_recent: false,
        }
    }

    /// How late a detection may arrive and still count, from now on (a reloaded policy):
    /// windows are judged closed by it at the next advance.
    pub fn set_allowed_lateness(&mut self, allowed_lateness: DurationMs) {
        self.allowed_lateness = allowed_lateness;
    }

    /// Take `rules` in place of the rules in use (a reload), keeping what was counted for
    /// every correlation whose windows mean the same under both sets: same id, type,
    /// referenced rules, group-by, timespan, condition and aliases. A changed title, level,
    /// tags or `generate` keeps its groups too (they only shape what a firing says). The
    /// groups of a correlation that is gone, or whose windows changed, are dropped: their
    /// counts were made under another definition. The watermark and counters go on.
    pub fn replace_rules(&mut self, rules: &[CorrelationRule]) -> CorrelationRulesReplaced {
        let mut next = CorrelationRules::new(rules, self.allowed_lateness, self.max_groups);
        let mut replaced = CorrelationRulesReplaced::default();
        for (id, digest) in &next.definitions {
            match self.definitions.get(id) {
                None => replaced.added += 1,
                Some(old) if old == digest => replaced.kept += 1,
                Some(_) => replaced.changed += 1,
            }
        }
        replaced.removed = self
            .definitions
            .keys()
            .filter(|id| !next.definitions.contains_key(*id))
            .count();
        // The groups move over as they are, with the changes recorded since the last state
        // was written; those dropped are recorded as removed.
        let mut groups = std::mem::take(&mut self.groups);
        groups.retain(|_, group| {
            let old = self.definitions.get(&group.correlation);
            let keep = old.is_some() && old == next.definitions.get(&group.correlation);
            replaced.groups_dropped += usize::from(!keep);
            keep
        });
        next.groups = groups;
        next.watermark = self.watermark;
        next.stats = self.stats;
        next.legacy_recent = self.legacy_recent;
        next.stats.discarded += replaced.groups_dropped as u64;
        next.index_deadlines();
        *self = next;
        replaced
    }

    /// The deadlines of the groups' open windows, made again from the groups (after a
    /// reload or a restore).
    fn index_deadlines(&mut self) {
        self.deadlines = self
            .groups
            .iter()
            .filter_map(|(key, g)| Some((self.window_end(g)?, key.clone())))
            .collect();
    }

    /// Where `group`'s open window ends (window-close mode), in ms.
    fn window_end(&self, group: &Group) -> Option<i64> {
        let start = group.window_start?;
        let rule = self.rules.get(&group.correlation)?;
        Some(start.0.saturating_add(rule.timespan.0))
    }

    /// The state to snapshot (groups sorted by key), read as a [`SigmaState`].
    pub fn snapshot_state(&self) -> SigmaStateRef<'_> {
        let mut groups: Vec<(&String, &Group)> = self.groups.iter().collect();
        groups.sort_by(|a, b| a.0.cmp(b.0));
        SigmaStateRef {
            groups,
            watermark_ms: self.watermark.0,
            stats: self.stats,
            definitions: &self.definitions,
        }
    }

    /// Take over a snapshot's state. Groups of a correlation these rules do not have, or
    /// whose windows the snapshot's rule defined otherwise, are dropped (counted in
    /// `discarded`): a restart with changed rules starts those afresh, as a reload does.
    pub fn restore_state(&mut self, state: SigmaState) {
        self.watermark = Timestamp(state.watermark_ms);
        self.stats = state.stats;
        self.legacy_recent = state.definitions.is_empty() && !state.groups.is_empty();
        let mut discarded = 0;
        self.groups = state
            .groups
            .into_iter()
            .filter(|(_, group)| {
                let keep = self.counts_alike(&group.correlation, &state.definitions);
                discarded += u64::from(!keep);
                keep
            })
            .collect();
        self.stats.discarded += discarded;
        self.index_deadlines();
    }

    /// Whether a group of `correlation`, counted where the rules had the `written`
    /// definitions (a state's or delta's; none recorded in states from before they were),
    /// means the same under these rules: the correlation is loaded, with the same windows.
    fn counts_alike(&self, correlation: &str, written: &BTreeMap<String, u128>) -> bool {
        let now = self.definitions.get(correlation);
        let then = written.get(correlation);
        now.is_some() && then.is_none_or(|then| Some(then) == now)
    }

    /// Whether changes are being recorded for state deltas.
    pub fn is_recording(&self) -> bool {
        self.groups.is_recording()
    }

    /// The changes since they were last taken or recording started, for a state delta;
    /// recorded anew from here. `None` when not recording.
    pub fn take_delta_state(&mut self) -> Option<SigmaDeltaRef<'_>> {
        let changes = self.groups.take_changes()?;
        Some(SigmaDeltaRef {
            removed_groups: changes.removed,
            groups: changes.changed,
            watermark_ms: self.watermark.0,
            stats: self.stats,
            definitions: &self.definitions,
        })
    }

    /// The whole state was written: record the changes from here.
    pub fn start_recording(&mut self) {
        self.groups.start_recording();
    }

    /// Whether a group changed since the changes were last taken or recording started.
    pub fn has_changes(&self) -> bool {
        self.groups.has_changes()
    }

    /// Take over a delta's changes, on top of the state it was taken after (restored from a
    /// snapshot, and the deltas before it). As at a restore, groups whose windows the
    /// writer's rules defined otherwise than these are dropped.
    pub fn apply_delta_state(&mut self, delta: SigmaDelta) {
        self.watermark = Timestamp(delta.watermark_ms);
        self.stats = delta.stats;
        let mut removed = delta.removed_groups;
        let mut changed = Vec::with_capacity(delta.groups.len());
        let mut discarded = 0;
        for (key, group) in delta.groups {
            if self.counts_alike(&group.correlation, &delta.definitions) {
                changed.push((key, group));
            } else {
                discarded += 1;
                removed.push(key);
            }
        }
        self.groups.apply(removed, changed);
        self.stats.discarded += discarded;
        self.index_deadlines();
    }

    /// Counters.
    pub fn stats(&self) -> CorrelationRuleStats {
        self.stats
    }

    /// Live groups.
    pub fn live_groups(&self) -> usize {
        self.groups.len()
    }

    /// How many copies of evidence the windows hold (shared ones counted once).
    #[cfg(test)]
    pub(crate) fn evidence_copies(&self) -> usize {
        let shared: std::collections::HashSet<*const Evidence> = self
            .groups
            .values()
            .flat_map(|g| g.items.iter().map(|i| Arc::as_ptr(&i.detection)))
            .collect();
        shared.len()
    }

    /// The correlation keys a correlation detection of `correlation_id` gets, so that
    /// correlations that refer to it can group it.
    fn consumer_keys(
        &self,
        correlation_id: &str,
        fields: &BTreeMap<String, String>,
    ) -> Vec<String> {
        let mut keys = Vec::new();
        for consumer in self.consumers.get(correlation_id).into_iter().flatten() {
            if let Some(c) = self.rules.get(consumer) {
                let values: Vec<&str> = c
                    .group_by
                    .iter()
                    .map(|g| {
                        let field = self.firing_field(c, g, correlation_id);
                        fields.get(field).map(String::as_str).unwrap_or_default()
                    })
                    .collect();
                keys.push(correlation_rule_key(&c.id, &values));
            }
        }
        keys
    }

    /// The field of a firing of `correlation_id` that carries `group_field` of its
    /// consumer `consumer`: the consumer's own group-by, through its aliases for that
    /// correlation (loading makes sure the correlation groups by each of them).
    fn firing_field<'a>(
        &'a self,
        consumer: &'a CorrelationRule,
        group_field: &'a str,
        correlation_id: &str,
    ) -> &'a str {
        let name = self
            .rules
            .get(correlation_id)
            .and_then(|r| r.name.as_deref());
        consumer.field_for(group_field, correlation_id, name)
    }

    /// Whether detections of `correlation_id` only feed other correlations.
    fn consumed_only(&self, correlation_id: &str) -> bool {
        match self.consumers.get(correlation_id) {
            None => false,
            Some(cs) => cs
                .iter()
                .all(|c| self.rules.get(c).is_some_and(|r| !r.generate)),
        }
    }

    /// Feed one detection under one `correlation:` key; firings are appended to `out`,
    /// those of its own group first, then those of the windows its event time ended (even
    /// when the detection itself is not counted: unknown, late or a duplicate).
    pub fn push(&mut self, key: &str, d: &Detection, out: &mut Vec<Detection>) {
        self.stats.received += 1;
        if d.event_time > self.watermark {
            self.watermark = d.event_time;
        }
        self.count(key, d, out);
        self.close_expired(out);
    }

    /// Count `d` in its group (see [`CorrelationRules::push`]).
    fn count(&mut self, key: &str, d: &Detection, out: &mut Vec<Detection>) {
        let Some(rest) = key.strip_prefix("correlation:") else {
            return;
        };
        let correlation_id = rest.split(':').next().unwrap_or_default();
        let Some(rule) = self.rules.get(correlation_id) else {
            self.stats.unknown += 1;
            return;
        };
        let Some(position) = rule
            .rules
            .iter()
            .position(|r| *r == d.rule.id || self.name_matches(r, d))
        else {
            self.stats.unknown += 1;
            return;
        };
        let value = rule
            .condition
            .fields
            .iter()
            .map(|f| d.fields.get(f).cloned().unwrap_or_default())
            .reduce(|a, b| format!("{a}\u{1f}{b}"));
        // Made only for a detection that is counted, not for one found late.
        let item = move |newest: Option<&Item>| Item {
            time: d.event_time,
            position,
            value,
            tlp: d.tlp,
            detection: Evidence::shared(d, newest),
        };
        let eager = is_eager(rule);
        let timespan = rule.timespan;
        let identity = item_identity(rule.kind, d);
        // A window judged when it closes: a detection for a key without an open window,
        // whose own window would have closed already, came after that key's window was
        // judged (or would have been): late, not the start of a window in the past that
        // would be judged at once on it alone.
        let closed_before = self.watermark.0.saturating_sub(self.allowed_lateness.0);
        if !eager
            && d.event_time.0 + timespan.0 < closed_before
            && self
                .groups
                .get(key)
                .is_none_or(|g| g.window_start.is_none())
        {
            self.stats.late += 1;
            return;
        }
        if !self.groups.contains_key(key) {
            if self.groups.len() >= self.max_groups {
                self.evict_oldest();
            }
            let group = Group {
                correlation: correlation_id.to_owned(),
                window_start: None,
                items: VecDeque::new(),
                last_seen: d.event_time,
                recent: RecentIds::default(),
                changed: false,
            };
            self.groups.insert(key.to_owned(), group);
        }
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        if group.recent.contains(identity)
            || (self.legacy_recent && group.recent.contains(crate::id_digest(&d.id)))
        {
            self.stats.duplicates += 1;
            return;
        }
        group.recent.push(identity);
        group.last_seen = group.last_seen.max(d.event_time);
        let at = d.event_time;
        if eager {
            // Sliding windows of `timespan`. The detections of the last `timespan` and
            // allowed lateness are kept, so that one arriving out of order joins the
            // windows it falls in.
            let newest = group.items.back().map(|i| i.time).unwrap_or(at).max(at);
            let lateness = self.allowed_lateness.0;
            if at.0 < newest.0 - timespan.0 - lateness {
                self.stats.late += 1;
                return;
            }
            let item = item(group.items.back());
            insert_sorted(&mut group.items, item);
            let keep_from = newest.0 - timespan.0 - lateness;
            while group.items.front().is_some_and(|i| i.time.0 < keep_from) {
                group.items.pop_front();
            }
            let rule = &self.rules[correlation_id];
            let items = group.items.make_contiguous();
            let window = |from: usize| {
                let end = items.partition_point(|i| i.time.0 <= items[from].time.0 + timespan.0);
                from..end
            };
            let held = if at == newest {
                // In order: the window ending at the newest detection.
                let from = items.partition_point(|i| i.time.0 < newest.0 - timespan.0);
                evaluate(rule, &items[from..]).map(|a| (from..items.len(), a))
            } else {
                // Out of order: each window that starts within `timespan` before it and
                // holds it.
                let first = items.partition_point(|i| i.time.0 < at.0 - timespan.0);
                let last = items.partition_point(|i| i.time <= at);
                (first..last).find_map(|from| {
                    let range = window(from);
                    evaluate(rule, &items[range.clone()]).map(|a| (range, a))
                })
            };
            if let Some((range, aggregate)) = held {
                let fired_items: Vec<Item> = group.items.drain(range).collect();
                group.items.clear();
                let fired = self.fire(correlation_id, key, &fired_items, aggregate, None);
                out.extend(fired);
            }
        } else {
            let opens = group.window_start.is_none();
            let start = *group.window_start.get_or_insert(at);
            if opens {
                self.deadlines
                    .insert((start.0.saturating_add(timespan.0), key.to_owned()));
            }
            if at.0 < start.0 - self.allowed_lateness.0 {
                self.stats.late += 1;
                return;
            }
            if at.0 > start.0 + timespan.0 {
                // The arrival is past the window: judge it, then open a new one.
                let items: Vec<Item> = group.items.drain(..).collect();
                group.window_start = Some(at);
                let mut deadline = (start.0.saturating_add(timespan.0), key.to_owned());
                self.deadlines.remove(&deadline);
                deadline.0 = at.0.saturating_add(timespan.0);
                self.deadlines.insert(deadline);
                group.items.push_back(item(items.last()));
                out.extend(self.judge(correlation_id, key, &items));
            } else {
                let item = item(group.items.back());
                insert_sorted(&mut group.items, item);
            }
        }
    }

    fn name_matches(&self, reference: &str, d: &Detection) -> bool {
        // A detection of a correlation rule carries the correlation's id; references may use
        // the correlation's name.
        d.kind == DetectionKind::Correlation
            && self
                .rules
                .get(&d.rule.id)
                .is_some_and(|c| c.name.as_deref() == Some(reference))
    }

    /// Judge every window-close group whose window ended before the watermark (less the
    /// allowed lateness), earliest end first (then by key).
    fn close_expired(&mut self, out: &mut Vec<Detection>) {
        let watermark = self.watermark.0.saturating_sub(self.allowed_lateness.0);
        while self
            .deadlines
            .first()
            .is_some_and(|(end, _)| *end < watermark)
        {
            let Some((end, key)) = self.deadlines.pop_first() else {
                break;
            };
            let current = self.groups.get(&key).and_then(|g| self.window_end(g));
            if current != Some(end) {
                continue;
            }
            if let Some(group) = self.groups.remove(&key) {
                let items: Vec<Item> = group.items.into_iter().collect();
                out.extend(self.judge(&group.correlation, &key, &items));
            }
        }
    }

    /// Event time has reached `to` without a detection (see [`crate::Correlator::advance`]):
    /// judge the windows that ended before it, less the allowed lateness, appending the
    /// firings to `out`. Returns the number of windows judged.
    pub fn advance(&mut self, to: Timestamp, out: &mut Vec<Detection>) -> usize {
        if to <= self.watermark {
            return 0;
        }
        self.watermark = to;
        let before = self.groups.len();
        self.close_expired(out);
        before - self.groups.len()
    }

    /// End of input: judge every open window.
    pub fn finish(&mut self, out: &mut Vec<Detection>) {
        self.deadlines.clear();
        let keys: Vec<String> = self.groups.keys().cloned().collect();
        let mut keys = keys;
        keys.sort();
        for key in keys {
            if let Some(group) = self.groups.remove(&key) {
                if group.window_start.is_some() {
                    let items: Vec<Item> = group.items.into_iter().collect();
                    out.extend(self.judge(&group.correlation, &key, &items));
                }
            }
        }
    }

    /// Make room for a new group: evict the least recently seen 1/64 of the groups (at
    /// least one; ties broken by key, so that the same input evicts the same groups in
    /// every process). Evicting a share at once keeps a full engine's cost per new group
    /// constant instead of a walk over every group each time.
    fn evict_oldest(&mut self) {
        if self.groups.is_empty() {
            return;
        }
        let mut by_age: Vec<(Timestamp, &String)> =
            self.groups.iter().map(|(k, g)| (g.last_seen, k)).collect();
        let share = (by_age.len() / 64).max(1);
        by_age.select_nth_unstable(share - 1);
        let evicted: Vec<String> = by_age[..share].iter().map(|(_, k)| (*k).clone()).collect();
        for key in evicted {
            if let Some(end) = self.groups.remove(&key).and_then(|g| self.window_end(&g)) {
                self.deadlines.remove(&(end, key));
            }
        }
        self.stats.evicted += share as u64;
    }

    /// Judge a complete window.
    fn judge(&mut self, correlation_id: &str, key: &str, items: &[Item]) -> Vec<Detection> {
        let Some(rule) = self.rules.get(correlation_id) else {
            return Vec::new();
        };
        if items.is_empty() {
            return Vec::new();
        }
        if rule.kind == CorrelationType::ValuePercentile {
            // The share of the group's events that carry each value.
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for i in items {
                *counts
                    .entry(i.value.as_deref().unwrap_or_default())
                    .or_default() += 1;
            }
            let total = items.len() as f64;
            let qualifying: Vec<(String, f64)> = counts
                .iter()
                .map(|(v, n)| (v.to_string(), *n as f64 * 100.0 / total))
                .filter(|(_, share)| rule.condition.holds(*share))
                .collect();
            let mut out = Vec::new();
            for (value, share) in qualifying {
                let with_value: Vec<Item> = items
                    .iter()
                    .filter(|i| i.value.as_deref().unwrap_or_default() == value)
                    .cloned()
                    .collect();
                out.extend(self.fire(correlation_id, key, &with_value, share, Some(value)));
            }
            return out;
        }
        match evaluate(rule, items) {
            Some(aggregate) => self.fire(correlation_id, key, items, aggregate, None),
            None => Vec::new(),
        }
    }

    /// Build the correlation detection for a firing.
    fn fire(
        &mut self,
        correlation_id: &str,
        key: &str,
        items: &[Item],
        aggregate: f64,
        value: Option<String>,
    ) -> Vec<Detection> {
        let Some(rule) = self.rules.get(correlation_id) else {
            return Vec::new();
        };
        let (Some(first), Some(last)) = (items.first(), items.iter().max_by_key(|i| i.time)) else {
            return Vec::new();
        };
        self.stats.fired += 1;
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        // A detection rule's detections carry the group-by values under the group-by's
        // own names; a correlation's firings under their own group-by, as keyed.
        let source = &first.detection;
        for g in &rule.group_by {
            let field = if source.kind == DetectionKind::Correlation {
                self.firing_field(rule, g, &source.rule.id)
            } else {
                g
            };
            let value = source.fields.get(field).cloned().unwrap_or_default();
            fields.insert(g.clone(), value);
        }
        if let (Some(v), Some(f)) = (&value, rule.condition.fields.first()) {
            fields.insert(f.clone(), v.clone());
        }
        fields.insert(
            aggregate_label(rule.kind).to_owned(),
            format_number(aggregate),
        );
        let mut correlation_keys: Vec<String> = rule
            .tags
            .iter()
            .filter_map(|t| t.strip_prefix("campaign."))
            .map(|c| format!("campaign:{c}"))
            .collect();
        correlation_keys.extend(self.consumer_keys(correlation_id, &fields));
        let mut hasher = IdHasher::new("correlation-detection")
            .part(correlation_id.as_bytes())
            .part(key.as_bytes())
            .part(&first.time.0.to_le_bytes());
        if let Some(v) = &value {
            hasher = hasher.part(v.as_bytes());
        }
        let attack = rule
            .tags
            .iter()
            .filter_map(|t| t.strip_prefix("attack."))
            .filter(|t| {
                t.len() >= 5
                    && t.starts_with(['t', 'T'])
                    && t[1..5].bytes().all(|b| b.is_ascii_digit())
            })
            .map(|t| t.to_ascii_uppercase())
            .collect();
        let entities = rule
            .group_by
            .iter()
            .filter_map(|g| {
                fields.get(g).filter(|v| !v.is_empty()).map(|v| Entity {
                    kind: g.clone(),
                    value: v.clone(),
                })
            })
            .collect();
        vec![Detection {
            schema: DETECTION_SCHEMA.to_owned(),
            id: hasher.finish("det"),
            kind: DetectionKind::Correlation,
            rule: RuleRef {
                id: rule.id.clone(),
                title: rule.title.clone(),
                level: rule.level,
            },
            event_time: last.time,
            context: last.detection.context.clone(),
            entities,
            indicators: items
                .iter()
                .flat_map(|i| i.detection.indicators.iter().cloned())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            taxonomy: items.iter().find_map(|i| i.detection.taxonomy),
            attack,
            tags: rule.tags.clone(),
            correlation_keys,
            tlp: items.iter().map(|i| i.tlp).max().unwrap_or(Tlp::Clear),
            source: None,
            fields,
            standalone: !self.consumed_only(correlation_id),
        }]
    }
}

fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.3}")
    }
}

fn is_eager(rule: &CorrelationRule) -> bool {
    match rule.kind {
        CorrelationType::Temporal | CorrelationType::TemporalOrdered => true,
        CorrelationType::ValuePercentile => false,
        _ => rule.condition.is_eager(),
    }
}

fn insert_sorted(items: &mut VecDeque<Item>, item: Item) {
    // In order, as most arrive: at the end, without a search through a busy window's items
    // (each a cache miss when many groups are live).
    if items.back().is_none_or(|last| last.time <= item.time) {
        items.push_back(item);
        return;
    }
    let at = items.partition_point(|i| i.time <= item.time);
    items.insert(at, item);
}

/// The aggregate of a window when the rule's condition holds on it.
fn evaluate(rule: &CorrelationRule, items: &[Item]) -> Option<f64> {
    let numbers = || {
        items
            .iter()
            .filter_map(|i| i.value.as_deref()?.trim().parse::<f64>().ok())
    };
    let aggregate = match rule.kind {
        CorrelationType::EventCount => items.len() as f64,
        CorrelationType::ValueCount => items
            .iter()
            .filter_map(|i| i.value.as_deref())
            .filter(|v| !v.is_empty())
            .collect::<BTreeSet<_>>()
            .len() as f64,
        CorrelationType::ValueSum => numbers().sum(),
        CorrelationType::ValueAvg => {
            let (sum, n) = numbers().fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
            if n == 0 {
                return None;
            }
            sum / n as f64
        }
        CorrelationType::Temporal => items
            .iter()
            .map(|i| i.position)
            .collect::<BTreeSet<_>>()
            .len() as f64,
        CorrelationType::TemporalOrdered => ordered_prefix(rule, items) as f64,
        CorrelationType::ValuePercentile => return None,
    };
    rule.condition.holds(aggregate).then_some(aggregate)
}

/// The length of the longest prefix of `rules` matched in order, within the timespan.
fn ordered_prefix(rule: &CorrelationRule, items: &[Item]) -> usize {
    let n = rule.rules.len();
    let mut best = 0;
    for (s, start) in items.iter().enumerate() {
        if start.position != 0 {
            continue;
        }
        let mut next = 1;
        let mut last = start.time;
        for i in items.iter().skip(s + 1) {
            if next == n || i.time.0 - start.time.0 > rule.timespan.0 {
                break;
            }
            if i.position == next && i.time >= last {
                next += 1;
                last = i.time;
            }
        }
        best = best.max(next);
        if best == n {
            break;
        }
    }
    best
}
