//! Correlation: detections that share a correlation key across organisations become
//! incident candidates; the escalation policy turns candidates into early warnings.
//!
//! Why here and not in the matcher: one organisation's SOC sees one detection; the point of
//! Tocsin is to notice that the same indicator or campaign shows up at a hospital in one
//! member state and a grid operator in another. The correlator keeps, per correlation key,
//! one event-time window (`policy.window`, starting at the first detection of the key) and
//! aggregates into it the distinct organisations, sectors, member states, rules and
//! indicators. When the window holds enough organisations it is a candidate; when the
//! policy says so it becomes a warning, re-issued as a new `version` of the same id only when
//! something material changes (breadth, severity, indicators, rules), never per detection,
//! so a busy incident does not flood its topic.
//!
//! Event time only: ids and `issued_at` derive from event times, so replaying the same input
//! gives byte-identical output. Detections older than their key's window are counted as late
//! and not merged (see [`CorrelatorStats::late`]); a detection id seen before in a window is
//! counted as a duplicate and ignored.
//!
//! Invariant: no I/O. The same code runs in `tocsin run`, the Kafka workers and benches.

pub mod audience;
pub mod misp;
mod recent_ids;
pub mod sigma_correlations;
pub mod stix;
mod tracked;

use std::collections::HashSet;

use tocsin_core::id::{incident_id, warning_id};
use tocsin_core::{
    Affected, Audience, Detection, DetectionKind, EarlyWarning, EuTaxonomy, ImpactSeverity,
    IncidentCandidate, IndicatorSighting, IndicatorType, Level, Outlook, Pap, ReportingClock,
    RootCause, RuleSummary, Severity, ThreatSeverity, TimelineEntry, Timestamp, Tlp,
    WarningIndicator, WarningRule, WarningStatus, EARLY_WARNING_SCHEMA,
};
use tocsin_core::{MemberState, Sector, SortedMap, SortedSet};
use tocsin_rules::{CorrelationRule, EscalationPolicy};

use crate::sigma_correlations::CorrelationRules;
use crate::tracked::TrackedMap;

/// Limits and rendering choices.
#[derive(Debug, Clone)]
pub struct CorrelatorConfig {
    /// The escalation policy.
    pub policy: EscalationPolicy,
    /// Most correlation keys held at once; beyond it, expired windows are evicted, and if
    /// none is expired the new key is refused and counted.
    pub max_keys: usize,
    /// Most detection ids remembered per key for de-duplication.
    pub max_detections_per_key: usize,
    /// Sigma correlation rules.
    pub correlation_rules: Vec<CorrelationRule>,
    /// Most groups the correlation rules hold at once (the oldest is evicted beyond).
    pub max_correlation_groups: usize,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        CorrelatorConfig {
            policy: EscalationPolicy::default(),
            max_keys: 1_000_000,
            max_detections_per_key: 10_000,
            correlation_rules: Vec::new(),
            max_correlation_groups: 1_000_000,
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CorrelatorStats {
    /// Detections received.
    pub detections: u64,
    /// (detection, key) pairs merged into a window.
    pub merged: u64,
    /// Detections without a correlation key (kept only in the detections output).
    pub unkeyed: u64,
    /// Repeats of a detection id already in the window.
    pub duplicates: u64,
    /// Detections older than their key's current window.
    pub late: u64,
    /// Detections without organisation, sector or member state.
    pub incomplete_context: u64,
    /// Windows evicted for the key limit.
    pub evicted: u64,
    /// New keys refused because the key limit was reached.
    pub refused_keys: u64,
    /// Warning versions issued.
    pub warnings: u64,
    /// Updates held back by the update interval (issued later, merged).
    pub deferred: u64,
    /// Warnings closed after their quiet period.
    pub closed: u64,
    /// Warning versions withheld because the candidate's TLP is above the ceiling.
    pub withheld: u64,
}

/// What makes a warning change material.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Fingerprint {
    organisations: usize,
    sectors: usize,
    member_states: usize,
    indicators: usize,
    rules: usize,
    severity: Severity,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyState {
    candidate: IncidentCandidate,
    /// Detection ids merged, as 128-bit digests (16 bytes each, no allocation per id).
    /// Written in order, so that one state is always the same bytes.
    #[serde(serialize_with = "sorted_digests")]
    seen: HashSet<u128>,
    timeline: SortedMap<String, TimelineEntry>,
    suspected_malicious: bool,
    issued: Option<(u32, Fingerprint)>,
    /// `issued_at` of the last version issued.
    #[serde(default)]
    last_issued_at: Option<Timestamp>,
    /// `issued_at` of version 1 (absent from states written before it was kept: then the
    /// next version takes its own date as the first, once).
    #[serde(default)]
    first_issued_at: Option<Timestamp>,
    /// The issuer of the warning's first version: every later version is issued by it,
    /// whatever the policy says since (STIX lets only an object's creator version it, and
    /// MISP keeps an event's uuid, which the issuer is part of). Boxed: most keys never warn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer: Option<Box<tocsin_core::Issuer>>,
    /// A material change was held back by the update interval.
    #[serde(default)]
    pending: bool,
    /// End of the key's previous window: older detections belonged to it (a redelivered
    /// copy, say) and are late here, not new.
    #[serde(default)]
    not_before: Option<Timestamp>,
    /// Changed since the last state write ([`TrackedMap`]); not part of the state.
    #[serde(skip)]
    changed: bool,
}

impl tracked::ChangeFlag for KeyState {
    fn change_flag(&mut self) -> &mut bool {
        &mut self.changed
    }
}

/// The snapshot format this version writes and reads.
pub const SNAPSHOT_FORMAT: &str = "tocsin.correlator-state/v2";

/// The formats this version reads: v1 wrote each Sigma window item's evidence whole; v2
/// writes it only where it differs from the item before's.
pub const SNAPSHOT_FORMATS_READ: [&str; 2] = ["tocsin.correlator-state/v1", SNAPSHOT_FORMAT];

/// The format of a state delta ([`Correlator::take_delta`]).
pub const DELTA_FORMAT: &str = "tocsin.correlator-delta/v1";

/// Why a snapshot cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot, or damaged.
    #[error("invalid correlator snapshot: {0}")]
    Invalid(String),
    /// Written by a version whose format this one does not read.
    #[error("correlator snapshot format {0:?} is not one this version reads ({SNAPSHOT_FORMATS_READ:?})")]
    Version(String),
}

#[derive(serde::Serialize)]
struct SnapshotRef<'a> {
    format: &'a str,
    watermark_ms: i64,
    next_sweep_ms: i64,
    stats: CorrelatorStats,
    keys: Vec<(&'a String, &'a KeyState)>,
    sigma: sigma_correlations::SigmaStateRef<'a>,
}

/// A delta as written: what changed since the state before it.
#[derive(serde::Serialize)]
struct DeltaRef<'a> {
    format: &'a str,
    watermark_ms: i64,
    next_sweep_ms: i64,
    stats: CorrelatorStats,
    removed_keys: Vec<String>,
    keys: Vec<(&'a String, &'a KeyState)>,
    sigma: sigma_correlations::SigmaDeltaRef<'a>,
}

/// A delta's body, read once its format is known.
#[derive(serde::Deserialize)]
struct DeltaOwned {
    watermark_ms: i64,
    next_sweep_ms: i64,
    stats: CorrelatorStats,
    removed_keys: Vec<String>,
    keys: Vec<(String, KeyState)>,
    sigma: sigma_correlations::SigmaDelta,
}

/// The `format` of a snapshot or delta, read first, on its own: a later format's body need
/// not read as this one's.
fn format_of(bytes: &[u8]) -> Result<String, SnapshotError> {
    #[derive(serde::Deserialize)]
    struct Head {
        format: String,
    }
    let head: Head =
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::Invalid(e.to_string()))?;
    Ok(head.format)
}

/// A snapshot's body, read once its format is known (`format` is read first, on its own).
#[derive(serde::Deserialize)]
struct SnapshotOwned {
    watermark_ms: i64,
    #[serde(default = "min_time")]
    next_sweep_ms: i64,
    stats: CorrelatorStats,
    keys: Vec<(String, KeyState)>,
    sigma: sigma_correlations::SigmaState,
}

/// A set of digests as an ascending array.
fn sorted_digests<S: serde::Serializer>(
    set: &HashSet<u128>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut digests: Vec<u128> = set.iter().copied().collect();
    digests.sort_unstable();
    serde::Serialize::serialize(&digests, serializer)
}

/// A detection id as 128 bits: Tocsin ids are `det-<32 hex digits>`; any other id is hashed.
pub(crate) fn id_digest(id: &str) -> u128 {
    id.strip_prefix("det-")
        .filter(|h| h.len() == 32)
        .and_then(|h| u128::from_str_radix(h, 16).ok())
        .unwrap_or_else(|| {
            tocsin_core::id::IdHasher::new("foreign-detection-id")
                .part(id.as_bytes())
                .digest()
        })
}

fn min_time() -> i64 {
    i64::MIN
}

/// The `issued_at` of a warning's next version, caused at event time `at`: `at`, or one
/// second after the version before when that is later. Detections may arrive out of order
/// (an escalation caused by an earlier one), and consumers order versions by time: MISP
/// takes an event update only with a newer `timestamp`, in seconds.
fn version_time(previous: Option<Timestamp>, at: Timestamp) -> Timestamp {
    match previous {
        Some(p) => Timestamp(at.0.max(p.0.saturating_add(1_000))),
        None => at,
    }
}

/// The correlator. Feed it detections with [`Correlator::push`].
pub struct Correlator {
    config: CorrelatorConfig,
    sigma: CorrelationRules,
    /// Correlation detections produced and not yet taken by the caller.
    derived: Vec<Detection>,
    /// Boxed: a hash table's empty slots then cost a pointer, not a whole key's state
    /// (about half a kilobyte; at 10^6 keys the table has 2^21 slots). Tracked, so that a state delta
    /// ([`Correlator::take_delta`]) writes only the keys changed since the last one.
    keys: TrackedMap<Box<KeyState>>,
    watermark: Timestamp,
    /// Event time at which the next sweep for quiet warnings is due.
    next_sweep: Timestamp,
    /// With `max_keys` live keys, the earliest watermark at which one of them can expire
    /// (ms): until then a new key is refused without looking at every key again, so that a
    /// full correlator costs O(1), not O(keys), per detection of an unknown key.
    no_room_until: i64,
    /// Where a detection's indicator keys (`kind:value`) are written to be looked up, so
    /// that one already in its candidate costs no allocation.
    indicator_key: String,
    stats: CorrelatorStats,
}

fn level_weight(l: Level) -> u32 {
    match l {
        Level::Informational => 0,
        Level::Low => 5,
        Level::Medium => 10,
        Level::High => 20,
        Level::Critical => 30,
    }
}

impl Correlator {
    /// A correlator with this configuration.
    pub fn new(mut config: CorrelatorConfig) -> Self {
        let sigma = CorrelationRules::new(
            &config.correlation_rules,
            config.policy.allowed_lateness,
            config.max_correlation_groups,
        );
        // `sigma` holds the correlation rules from now on (a reload replaces them there).
        config.correlation_rules = Vec::new();
        Correlator {
            sigma,
            derived: Vec::new(),
            config,
            keys: TrackedMap::default(),
            watermark: Timestamp(i64::MIN),
            next_sweep: Timestamp(i64::MIN),
            no_room_until: i64::MIN,
            indicator_key: String::new(),
            stats: CorrelatorStats::default(),
        }
    }

    /// The whole state as bytes, in a versioned format ([`SNAPSHOT_FORMAT`]): windows,
    /// warnings issued, Sigma correlation groups, watermark and counters. Restoring it and
    /// replaying the rest of the input gives the same warnings as an uninterrupted run.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut keys: Vec<(&String, &KeyState)> =
            self.keys.iter().map(|(k, s)| (k, &**s)).collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        let snapshot = SnapshotRef {
            format: SNAPSHOT_FORMAT,
            watermark_ms: self.watermark.0,
            next_sweep_ms: self.next_sweep.0,
            stats: self.stats,
            keys,
            sigma: self.sigma.snapshot_state(),
        };
        serde_json::to_vec(&snapshot).unwrap_or_default()
    }

    /// What changed since the last delta was taken or the whole state was written
    /// ([`Correlator::whole_state_written`]), as bytes in a versioned format
    /// ([`DELTA_FORMAT`]): the keys and Sigma correlation groups changed (each whole) or
    /// removed, and the watermark and counters. Applied ([`Correlator::apply_delta`]) to a
    /// correlator in the state it was taken after, it gives this one's state:
    /// [`Correlator::snapshot`] then writes the same bytes. Its cost is that of the keys
    /// changed, not of the keys held. Changes are recorded anew from here. `None` before the
    /// whole state was first written: there is nothing for a delta to go on from.
    pub fn take_delta(&mut self) -> Option<Vec<u8>> {
        // Both record from the same call on; checked first, so that neither gives up its
        // changes for a delta that is not taken.
        if !(self.keys.is_recording() && self.sigma.is_recording()) {
            return None;
        }
        let changes = self.keys.take_changes()?;
        let sigma = self.sigma.take_delta_state()?;
        let delta = DeltaRef {
            format: DELTA_FORMAT,
            watermark_ms: self.watermark.0,
            next_sweep_ms: self.next_sweep.0,
            stats: self.stats,
            removed_keys: changes.removed,
            keys: changes
                .changed
                .into_iter()
                .map(|(k, s)| (k, &**s))
                .collect(),
            sigma,
        };
        Some(serde_json::to_vec(&delta).unwrap_or_default())
    }

    /// The whole state was written ([`Correlator::snapshot`]): the next delta is taken
    /// after it. Changes are recorded from the first call on (a correlator whose state is
    /// never written, as in `tocsin run`, spends nothing on them).
    pub fn whole_state_written(&mut self) {
        self.keys.start_recording();
        self.sigma.start_recording();
    }

    /// Whether a key or a Sigma correlation group changed since the changes were last taken
    /// or the whole state written (the watermark and counters aside).
    pub fn has_changes(&self) -> bool {
        self.keys.has_changes() || self.sigma.has_changes()
    }

    /// Take over a delta's changes ([`Correlator::take_delta`]), on top of the state it was
    /// taken after: a correlator restored from the snapshot before it, with the deltas
    /// between applied in order. Nothing is recorded as changed.
    pub fn apply_delta(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let format = format_of(bytes)?;
        if format != DELTA_FORMAT {
            return Err(SnapshotError::Version(format));
        }
        let delta: DeltaOwned =
            serde_json::from_slice(bytes).map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        self.watermark = Timestamp(delta.watermark_ms);
        self.next_sweep = Timestamp(delta.next_sweep_ms);
        self.stats = delta.stats;
        // Found again from the next detection, as after a restore.
        self.no_room_until = i64::MIN;
        let keys = delta.keys.into_iter().map(|(k, s)| (k, Box::new(s)));
        self.keys.apply(delta.removed_keys, keys);
        self.sigma.apply_delta_state(delta.sigma);
        Ok(())
    }

    /// Judge by `policy` from now on (a reloaded `escalation.yaml`): its windows, thresholds,
    /// severities, intervals and lateness apply to what comes next (a window open now ends
    /// when the new window length says); versions already issued stay as they were. Returns
    /// whether it differs from the policy in use.
    pub fn replace_policy(&mut self, policy: EscalationPolicy) -> bool {
        if self.config.policy == policy {
            return false;
        }
        self.sigma.set_allowed_lateness(policy.allowed_lateness);
        self.config.policy = policy;
        // Deadlines computed with the old window and quiet period: found again from the
        // next detection or advance on.
        self.next_sweep = Timestamp(i64::MIN);
        self.no_room_until = i64::MIN;
        true
    }

    /// A correlator with `config` and the state of `bytes` (from [`Correlator::snapshot`]).
    pub fn restore(config: CorrelatorConfig, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let format = format_of(bytes)?;
        if !SNAPSHOT_FORMATS_READ.contains(&format.as_str()) {
            return Err(SnapshotError::Version(format));
        }
        let snapshot: SnapshotOwned =
            serde_json::from_slice(bytes).map_err(|e| SnapshotError::Invalid(e.to_string()))?;
        let mut c = Correlator::new(config);
        c.watermark = Timestamp(snapshot.watermark_ms);
        c.next_sweep = Timestamp(snapshot.next_sweep_ms);
        c.stats = snapshot.stats;
        c.keys = snapshot
            .keys
            .into_iter()
            .map(|(k, s)| (k, Box::new(s)))
            .collect();
        c.sigma.restore_state(snapshot.sigma);
        Ok(c)
    }

    /// Counters so far.
    pub fn stats(&self) -> CorrelatorStats {
        self.stats
    }

    /// Live correlation keys.
    pub fn live_keys(&self) -> usize {
        self.keys.len()
    }

    /// Live groups of the Sigma correlation rules (one per correlation and group-by values).
    pub fn live_correlation_groups(&self) -> usize {
        self.sigma.live_groups()
    }

    /// Current candidates (windows with at least the policy's organisations), sorted by id.
    pub fn candidates(&self) -> Vec<&IncidentCandidate> {
        let min = self.config.policy.candidate_min_organisations as usize;
        let mut out: Vec<&IncidentCandidate> = self
            .keys
            .values()
            .map(|s| &s.candidate)
            .filter(|c| c.organisations.len() >= min)
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Merge one detection; warnings it causes (new versions) are appended to `out`.
    /// Detections that Sigma correlation rules produce meanwhile are merged too, and kept
    /// for [`Correlator::take_derived`].
    pub fn push(&mut self, d: &Detection, out: &mut Vec<EarlyWarning>) {
        self.push_at_depth(d, None, out, 0);
    }

    /// Merge one detection under one of its correlation keys only: the partitioned form of
    /// [`Correlator::push`], for a worker that owns some partitions of a topic keyed by
    /// correlation key (a detection with several keys arrives once per key, each copy where
    /// its key lives). Detections that Sigma correlation rules produce are *not* merged here,
    /// since their keys may live elsewhere; they wait in [`Correlator::take_derived`] for the
    /// caller to route them like any other detection. A `key` that is not one of the
    /// detection's keys (a keyless detection routed by its id) counts as unkeyed.
    pub fn push_keyed(&mut self, d: &Detection, key: &str, out: &mut Vec<EarlyWarning>) {
        self.push_at_depth(d, Some(key), out, 0);
    }

    /// Correlation detections produced since the last call (for the detections output).
    pub fn take_derived(&mut self) -> Vec<Detection> {
        std::mem::take(&mut self.derived)
    }

    /// Close the warnings whose key saw no detection for `closed_after` (event time): a final
    /// version with status `closed`, and the key's state is dropped. Runs when the watermark
    /// moves, in key order so that output is deterministic.
    fn close_quiet(&mut self, out: &mut Vec<EarlyWarning>) {
        let quiet = self.config.policy.closed_after.0;
        let watermark = self.watermark.0;
        let mut due: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, s)| {
                s.issued.is_some() && s.candidate.last_seen.0.saturating_add(quiet) < watermark
            })
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        due.sort();
        for key in due {
            if let Some(state) = self.keys.remove(&key) {
                let at = Timestamp(state.candidate.last_seen.0.saturating_add(quiet));
                self.close(&state, at, out);
            }
        }
    }

    /// Issue the closing version of a key's warning (if one was issued) dated `at`.
    fn close(&mut self, state: &KeyState, at: Timestamp, out: &mut Vec<EarlyWarning>) {
        if let Some((v, fp)) = &state.issued {
            let at = version_time(state.last_issued_at, at);
            out.push(self.render(state, v + 1, WarningStatus::Closed, fp.severity, at));
            self.stats.warnings += 1;
            self.stats.closed += 1;
        }
    }

    /// End of input: judge the correlation windows still open, and issue the updates that
    /// the update interval held back. (Warnings are not closed: the end of a file is not a
    /// quiet period.)
    pub fn finish(&mut self, out: &mut Vec<EarlyWarning>) {
        let mut pending: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, s)| s.pending)
            .map(|(k, _)| k.clone())
            .collect();
        pending.sort();
        for key in pending {
            let at = self
                .keys
                .get(&key)
                .map(|s| s.candidate.last_seen)
                .unwrap_or(self.watermark);
            // What the update interval held back is issued now, without it.
            if let Some(w) = self.maybe_warn_with(&key, at, false) {
                out.push(w);
            }
        }
        let mut fired = Vec::new();
        self.sigma.finish(&mut fired);
        for f in fired {
            self.derived.push(f.clone());
            self.push_at_depth(&f, None, out, 1);
        }
    }

    /// Take `rules` in place of the Sigma correlation rules in use (a reload between two
    /// detections); see [`CorrelationRules::replace_rules`] for what is kept.
    pub fn replace_correlation_rules(
        &mut self,
        rules: &[CorrelationRule],
    ) -> sigma_correlations::CorrelationRulesReplaced {
        self.sigma.replace_rules(rules)
    }

    /// Counters of the Sigma correlation rules.
    pub fn correlation_rule_stats(&self) -> sigma_correlations::CorrelationRuleStats {
        self.sigma.stats()
    }

    /// The latest event time seen (or reached by [`Correlator::advance`]); `None` before
    /// the first detection.
    pub fn watermark(&self) -> Option<Timestamp> {
        (self.watermark.0 != i64::MIN).then_some(self.watermark)
    }

    /// Event time has reached `to` though no detection says so: the input went quiet, and
    /// the caller (the correlate worker, for a partition idle longer than
    /// `correlate.idle_grace_s`) moves event time on with the wall clock. What a detection
    /// at `to` would end ends: warnings quiet for the policy's `closed_after` get their
    /// closing version in `out`, and Sigma correlation windows judged at their close whose
    /// end (plus the allowed lateness) is before `to` are judged. Their firings wait in
    /// [`Correlator::take_derived`] for the caller to route, as after
    /// [`Correlator::push_keyed`]. Returns whether the state changed beyond the watermark
    /// (a warning closed or a window judged), so that the caller knows to save it. Nothing
    /// happens when `to` is not past the watermark.
    pub fn advance(&mut self, to: Timestamp, out: &mut Vec<EarlyWarning>) -> bool {
        if to <= self.watermark {
            return false;
        }
        let warnings = out.len();
        // A key goes only with its closing version (`close_quiet`), so output tells it all.
        self.move_watermark(to, out);
        let judged = self.sigma.advance(to, &mut self.derived);
        judged > 0 || out.len() > warnings
    }

    /// Move the watermark to `t` if it is later, closing the quiet warnings.
    fn move_watermark(&mut self, t: Timestamp, out: &mut Vec<EarlyWarning>) {
        if t <= self.watermark {
            return;
        }
        self.watermark = t;
        // Sweeping every key costs O(keys): do it when event time has moved by a
        // twentieth of the quiet period (at most an hour) since the last sweep.
        let step = (self.config.policy.closed_after.0 / 20).clamp(1, 3_600_000);
        if self.watermark.0 >= self.next_sweep.0 {
            self.next_sweep = Timestamp(self.watermark.0.saturating_add(step));
            self.close_quiet(out);
        }
    }

    /// Merge `d` under its keys, or under `only` that key (partitioned: derived detections
    /// are then left to the caller instead of merged).
    fn push_at_depth(
        &mut self,
        d: &Detection,
        only: Option<&str>,
        out: &mut Vec<EarlyWarning>,
        depth: usize,
    ) {
        self.stats.detections += 1;
        self.move_watermark(d.event_time, out);
        let keyed = match only {
            None => !d.correlation_keys.is_empty(),
            Some(k) => d.correlation_keys.iter().any(|c| c == k),
        };
        if !keyed {
            self.stats.unkeyed += 1;
            return;
        }
        let complete = d.context.organisation.is_some()
            && d.context.sector.is_some()
            && d.context.member_state.is_some();
        if !complete {
            self.stats.incomplete_context += 1;
        }
        let mut fired = Vec::new();
        for key in &d.correlation_keys {
            if only.is_some_and(|k| k != key) {
                continue;
            }
            if key.starts_with("correlation:") {
                self.sigma.push(key, d, &mut fired);
            } else if d.standalone {
                self.merge(key, d, complete, out);
            }
        }
        if only.is_some() {
            self.derived.extend(fired);
            return;
        }
        for f in fired {
            self.derived.push(f.clone());
            // Chains of correlations are bounded (the specification's examples chain two).
            if depth < 10 {
                self.push_at_depth(&f, None, out, depth + 1);
            }
        }
    }

    fn make_room(&mut self) -> bool {
        if self.keys.len() < self.config.max_keys {
            return true;
        }
        let watermark = self.watermark.0;
        if watermark < self.no_room_until {
            return false;
        }
        let window = self.config.policy.window.0;
        let before = self.keys.len();
        let mut next_expiry = i64::MAX;
        self.keys.retain(|_, s| {
            let expiry = s.candidate.window_start.0.saturating_add(window);
            let live = expiry > watermark;
            if live {
                next_expiry = next_expiry.min(expiry);
            }
            live
        });
        self.stats.evicted += (before - self.keys.len()) as u64;
        self.no_room_until = next_expiry;
        self.keys.len() < self.config.max_keys
    }

    fn merge(&mut self, key: &str, d: &Detection, complete: bool, out: &mut Vec<EarlyWarning>) {
        let window = self.config.policy.window;
        let t = d.event_time;
        let (mut present, expired) = match self.keys.get(key) {
            Some(s)
                if t.0 < s.candidate.window_start.0 - window.0
                    || s.not_before.is_some_and(|nb| t < nb) =>
            {
                self.stats.late += 1;
                return;
            }
            Some(s) => (true, t.0 >= s.candidate.window_start.0 + window.0),
            None => (false, false),
        };
        let mut not_before = None;
        if expired {
            // The window is over: its warning, if any, is closed before a new one opens.
            if let Some(state) = self.keys.remove(key) {
                let at = Timestamp(state.candidate.window_start.0 + window.0);
                self.close(&state, at, out);
                not_before = Some(at);
                present = false;
            }
        }
        if !present {
            if !self.make_room() {
                self.stats.refused_keys += 1;
                return;
            }
            let mut state = Box::new(new_state(key, t));
            state.not_before = not_before;
            self.keys.insert(key.to_owned(), state);
            // A window opened in the past may expire before those the last full scan saw.
            self.no_room_until = self.no_room_until.min(t.0.saturating_add(window.0));
        }
        let max_seen = self.config.max_detections_per_key;
        let Some(state) = self.keys.get_mut(key) else {
            return;
        };
        let id = id_digest(&d.id);
        if state.seen.contains(&id) {
            self.stats.duplicates += 1;
            return;
        }
        if state.seen.len() < max_seen {
            state.seen.insert(id);
        }
        self.stats.merged += 1;
        absorb(state, d, complete, &mut self.indicator_key);
        if let Some(w) = self.maybe_warn(key, d.event_time) {
            out.push(w);
        }
    }

    fn severity(&self, c: &IncidentCandidate) -> Severity {
        severity_for(
            &self.config.policy,
            c.organisations.len(),
            &c.sectors,
            c.member_states.len(),
            c.max_level,
            c.taxonomy.map(|t| t.class),
        )
    }

    fn maybe_warn(&mut self, key: &str, at: Timestamp) -> Option<EarlyWarning> {
        self.maybe_warn_with(key, at, true)
    }

    fn maybe_warn_with(
        &mut self,
        key: &str,
        at: Timestamp,
        rate_limited: bool,
    ) -> Option<EarlyWarning> {
        let p = &self.config.policy;
        let state = self.keys.get(key)?;
        let c = &state.candidate;
        // The threshold makes a warning; one issued goes on (to its closing) under a policy
        // reloaded since with a higher one.
        if state.issued.is_none() && (c.organisations.len() as u32) < p.warning_min_organisations {
            return None;
        }
        let severity = self.severity(c);
        let fp = Fingerprint {
            organisations: c.organisations.len(),
            sectors: c.sectors.len(),
            member_states: c.member_states.len(),
            indicators: c.indicators.len(),
            rules: c.rules.len(),
            severity,
        };
        let (version, status) = match &state.issued {
            None => (1, WarningStatus::New),
            Some((_, last)) if *last == fp => return None,
            Some((v, last)) if severity > last.severity => (v + 1, WarningStatus::Escalated),
            Some((v, _)) => (v + 1, WarningStatus::Update),
        };
        // Rate limit: an update within the interval waits for the next detection after it
        // (or the closing); escalations are never held back.
        // (`last_issued_at` may be a second past its detection, `version_time`: no interval
        // means no waiting, even then.)
        if rate_limited
            && status == WarningStatus::Update
            && p.min_update_interval.0 > 0
            && state
                .last_issued_at
                .is_some_and(|t| at.0 - t.0 < p.min_update_interval.0)
        {
            self.stats.deferred += 1;
            if let Some(s) = self.keys.get_mut(key) {
                s.pending = true;
            }
            return None;
        }
        let issued_at = version_time(state.last_issued_at, at);
        let warning = self.render(state, version, status, severity, issued_at);
        self.stats.warnings += 1;
        if let Some(s) = self.keys.get_mut(key) {
            if s.issued.is_none() {
                s.issuer = warning.issuer.clone().map(Box::new);
            }
            s.issued = Some((version, fp));
            s.last_issued_at = Some(issued_at);
            s.first_issued_at.get_or_insert(issued_at);
            s.pending = false;
        }
        Some(warning)
    }

    fn render(
        &self,
        state: &KeyState,
        version: u32,
        status: WarningStatus,
        severity: Severity,
        issued_at: Timestamp,
    ) -> EarlyWarning {
        let p = &self.config.policy;
        let c = &state.candidate;
        // The canonical rendering: everything, each part with its TLP. Audiences and
        // recipients get redacted renderings of it (`audience::render`).
        let cross_border = p.is_cross_border(c.member_states.len());
        let cross_sector = p.is_cross_sector(c.sectors.len());
        let indicators: Vec<WarningIndicator> = c
            .indicators
            .values()
            .map(|i| WarningIndicator {
                kind: i.kind,
                value: i.value.clone(),
                tlp: i.tlp,
                feeds: i.feeds.iter().cloned().collect(),
                seen_by: i.seen_by.clone(),
            })
            .collect();
        let mut timeline: Vec<TimelineEntry> = state.timeline.values().cloned().collect();
        timeline.sort_by(|a, b| {
            a.time
                .cmp(&b.time)
                .then(a.organisation.cmp(&b.organisation))
        });
        let mut recommended_actions = key_actions(&c.correlation_key);
        recommended_actions.extend(p.recommended_actions.iter().cloned());
        EarlyWarning {
            schema: EARLY_WARNING_SCHEMA.to_owned(),
            warning_id: warning_id(&c.correlation_key, c.window_start.0),
            incident_id: c.id.clone(),
            version,
            status,
            issued_at,
            first_issued_at: Some(state.first_issued_at.unwrap_or(issued_at)),
            // The policy's for a first version; the first version's for the others (none
            // for a warning first issued without one, or before issuers were kept).
            issuer: match state.issued {
                None => p.issuer.clone(),
                Some(_) => state.issuer.as_deref().cloned(),
            },
            exercise: p.exercise,
            audience: Audience::Technical,
            headline: headline_for(
                &c.correlation_key,
                c.organisations.len(),
                &c.sectors,
                &c.member_states,
            ),
            taxonomy: c.taxonomy,
            severity,
            suspected_malicious: state.suspected_malicious,
            cross_border,
            cross_sector,
            correlation_key: c.correlation_key.clone(),
            first_seen: c.first_seen,
            last_seen: c.last_seen,
            affected: Affected {
                sectors: c.sectors.iter().copied().collect(),
                member_states: c.member_states.iter().copied().collect(),
                organisation_count: c.organisations.len() as u32,
                organisations: c.organisations.keys().cloned().collect(),
            },
            detection_count: c.detection_count,
            rules: c
                .rules
                .values()
                .map(|r| WarningRule {
                    id: r.id.clone(),
                    title: r.title.clone(),
                    level: r.level,
                    detections: r.detections,
                })
                .collect(),
            attack: c.attack.iter().cloned().collect(),
            indicators,
            timeline,
            recommended_actions,
            reporting: ReportingClock::from_awareness(c.first_seen),
            tlp: c.tlp,
            tlp_ceiling: None,
            pap: Pap::Green,
            eu_taxonomy: EuTaxonomy {
                root_cause: if state.suspected_malicious {
                    RootCause::MaliciousActions
                } else {
                    RootCause::SystemFailures
                },
                threat_severity: threat_severity(c.max_level),
                impact_severity: impact_severity(severity),
                outlook: outlook(status, c.first_seen, c.last_seen, p),
            },
        }
    }
}

fn new_state(key: &str, start: Timestamp) -> KeyState {
    KeyState {
        candidate: IncidentCandidate {
            id: incident_id(key, start.0),
            correlation_key: key.to_owned(),
            window_start: start,
            first_seen: start,
            last_seen: start,
            organisations: SortedMap::new(),
            sectors: SortedSet::new(),
            member_states: SortedSet::new(),
            detection_count: 0,
            incomplete_context: 0,
            rules: SortedMap::new(),
            indicators: SortedMap::new(),
            attack: SortedSet::new(),
            taxonomy: None,
            max_level: Level::Informational,
            score: 0,
            tlp: Tlp::Clear,
            version: 0,
        },
        seen: HashSet::new(),
        timeline: SortedMap::new(),
        suspected_malicious: false,
        issued: None,
        last_issued_at: None,
        first_issued_at: None,
        issuer: None,
        pending: false,
        not_before: None,
        changed: false,
    }
}

/// Fold one detection into a window.
fn absorb(state: &mut KeyState, d: &Detection, complete: bool, indicator_key: &mut String) {
    let c = &mut state.candidate;
    c.detection_count += 1;
    if !complete {
        c.incomplete_context += 1;
    }
    c.first_seen = c.first_seen.min(d.event_time);
    c.last_seen = c.last_seen.max(d.event_time);
    if let Some(org) = &d.context.organisation {
        let first = c
            .organisations
            .get_or_insert_with(org.as_str(), str::to_owned, || d.event_time);
        *first = (*first).min(d.event_time);
        let entry = state
            .timeline
            .get_or_insert_with(org.as_str(), str::to_owned, || TimelineEntry {
                time: d.event_time,
                organisation: Some(org.clone()),
                sector: d.context.sector,
                member_state: d.context.member_state,
                detections: 0,
                tlp: Tlp::Clear,
            });
        if d.event_time < entry.time {
            entry.time = d.event_time;
        }
        entry.detections += 1;
        entry.tlp = entry.tlp.max(d.tlp);
    }
    if let Some(s) = d.context.sector {
        c.sectors.insert(s);
    }
    if let Some(m) = d.context.member_state {
        c.member_states.insert(m);
    }
    let rule = c
        .rules
        .get_or_insert_with(d.rule.id.as_str(), str::to_owned, || RuleSummary {
            id: d.rule.id.clone(),
            title: d.rule.title.clone(),
            level: d.rule.level,
            detections: 0,
        });
    rule.detections += 1;
    for i in &d.indicators {
        indicator_key.clear();
        indicator_key.push_str(i.kind.as_str());
        indicator_key.push(':');
        indicator_key.push_str(&i.value);
        let s = c
            .indicators
            .get_or_insert_with(indicator_key.as_str(), str::to_owned, || {
                IndicatorSighting {
                    kind: i.kind,
                    value: i.value.clone(),
                    tlp: i.tlp,
                    feeds: SortedSet::new(),
                    seen_by: Default::default(),
                }
            });
        s.tlp = s.tlp.max(i.tlp);
        s.feeds.insert_borrowed(i.feed.as_str(), str::to_owned);
        s.seen_by.record(d.context.organisation.as_deref(), d.tlp);
    }
    for technique in &d.attack {
        c.attack.insert_borrowed(technique.as_str(), str::to_owned);
    }
    if d.taxonomy.is_some() && (c.taxonomy.is_none() || d.rule.level > c.max_level) {
        c.taxonomy = d.taxonomy;
    }
    c.max_level = c.max_level.max(d.rule.level);
    c.tlp = c.tlp.max(d.tlp);
    if d.kind == DetectionKind::Indicator || d.rule.level >= Level::High {
        state.suspected_malicious = true;
    }
    c.score = 10 * c.organisations.len() as u32
        + 20 * c.sectors.len() as u32
        + 30 * c.member_states.len() as u32
        + level_weight(c.max_level);
    c.version += 1;
}

fn key_subject(key: &str) -> String {
    let mut parts = key.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("indicator"), Some(kind), Some(value)) => {
            let what = match IndicatorType::parse(kind) {
                Some(IndicatorType::Domain) => "Domain",
                Some(IndicatorType::Ipv4 | IndicatorType::Ipv6) => "IP address",
                Some(IndicatorType::Url) => "URL",
                Some(_) => "File hash",
                None => "Indicator",
            };
            format!("{what} {value}")
        }
        (Some("campaign"), Some(name), None) => format!("Campaign '{name}'"),
        _ => format!("Activity {key}"),
    }
}

/// The one-line headline of a warning from its key and breadth.
pub(crate) fn headline_for(
    key: &str,
    organisations: usize,
    sectors: &SortedSet<Sector>,
    member_states: &SortedSet<MemberState>,
) -> String {
    let sectors: Vec<&str> = sectors.iter().map(|s| s.slug()).collect();
    let states: Vec<&str> = member_states.iter().map(|m| m.as_str()).collect();
    format!(
        "{} seen at {} organisations in {} sector{} ({}) across {} member state{} ({})",
        key_subject(key),
        organisations,
        sectors.len(),
        if sectors.len() == 1 { "" } else { "s" },
        sectors.join(", "),
        states.len(),
        if states.len() == 1 { "" } else { "s" },
        states.join(", "),
    )
}

/// The severity the escalation policy gives a candidate of this breadth (first matching
/// rule; one step more when an NIS2 Annex I sector is affected and the policy says so).
pub(crate) fn severity_for(
    p: &EscalationPolicy,
    organisations: usize,
    sectors: &SortedSet<Sector>,
    member_states: usize,
    max_level: Level,
    taxonomy_class: Option<tocsin_core::TaxonomyClass>,
) -> Severity {
    let cross_border = p.is_cross_border(member_states);
    let cross_sector = p.is_cross_sector(sectors.len());
    let essential = sectors.iter().any(|s| s.is_high_criticality());
    let mut sev = p
        .severity
        .iter()
        .find(|(w, _, level)| {
            w.cross_border.is_none_or(|b| b == cross_border)
                && w.cross_sector.is_none_or(|b| b == cross_sector)
                && w.essential_sector.is_none_or(|b| b == essential)
                && w.min_organisations
                    .is_none_or(|n| organisations as u32 >= n)
                && w.min_sectors.is_none_or(|n| sectors.len() as u32 >= n)
                && w.min_member_states
                    .is_none_or(|n| member_states as u32 >= n)
                && level.is_none_or(|l| max_level >= l)
                && w.taxonomy_class
                    .as_deref()
                    .is_none_or(|want| taxonomy_class.is_some_and(|have| have.slug() == want))
        })
        .map(|(_, s, _)| *s)
        .unwrap_or(Severity::Medium);
    if p.essential_sector_raises_severity && essential {
        sev = sev.raised();
    }
    sev
}

/// The EU taxonomy's threat severity for the highest rule level of a warning.
pub(crate) fn threat_severity(max_level: Level) -> ThreatSeverity {
    match max_level {
        Level::Critical | Level::High => ThreatSeverity::High,
        Level::Medium => ThreatSeverity::Medium,
        _ => ThreatSeverity::Low,
    }
}

/// The EU taxonomy's outlook of a version: an update whose detections span less than half
/// the policy's window is still spreading.
pub(crate) fn outlook(
    status: WarningStatus,
    first_seen: Timestamp,
    last_seen: Timestamp,
    policy: &EscalationPolicy,
) -> Outlook {
    match status {
        WarningStatus::New | WarningStatus::Escalated => Outlook::Worsening,
        WarningStatus::Update => {
            if last_seen.0 - first_seen.0 < policy.window.0 / 2 {
                Outlook::Worsening
            } else {
                Outlook::Stable
            }
        }
        WarningStatus::Closed => Outlook::Improving,
    }
}

/// The EU taxonomy's impact severity for a warning's severity.
pub(crate) fn impact_severity(severity: Severity) -> ImpactSeverity {
    match severity {
        Severity::Critical => ImpactSeverity::Red,
        Severity::High => ImpactSeverity::Yellow,
        Severity::Medium => ImpactSeverity::Green,
        Severity::Low => ImpactSeverity::White,
    }
}

fn key_actions(key: &str) -> Vec<String> {
    let mut parts = key.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("indicator"), Some(kind), Some(value)) => vec![
            format!("Block {kind} {value} at the perimeter and on endpoints"),
            format!(
                "Hunt for {value} in logs of the last 30 days and report sightings to your CSIRT"
            ),
        ],
        (Some("campaign"), Some(name), None) => vec![
            format!("Run the detection rules tagged campaign.{name} over your environment"),
            "Isolate affected hosts and preserve evidence for the CSIRT".to_owned(),
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests;
