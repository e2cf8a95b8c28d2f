//! The per-event hot path: route → prefilter → verify.
//!
//! [`CompiledRules::match_event`] reads top to bottom:
//! 1. **route** — evaluate each route's logsource condition on the event, once per
//!    distinct tuple of routing values (cached); leave out the rules of those routes whose
//!    condition fails on the tuple's values alone (`EventID: 4663` on event 4658 of the
//!    `Security` channel, for a rule of the whole channel): no candidates, and the fields
//!    only they read are not scanned;
//! 2. **prefilter** — for each active route, scan each field that its rules reference once
//!    with that field's literal set, recording per atom whether it hit anywhere, at the start,
//!    at the end, or as the whole value; every rule listed under a hit atom becomes a
//!    candidate, as do the route's rules without a prefilter (those left in);
//! 3. **verify** — check each candidate's guard, one test its rule needs kept in a flat
//!    array (`crate::guard`), and turn it away when that fails; evaluate the others'
//!    conditions exactly (atom tests read the hit bits, globs and regexes read the field
//!    again);
//! 4. **indicators** — look the profile's indicator fields up in the IOC tables.
//!
//! All per-event state lives in [`MatchScratch`] and is reused: once warm, matching an
//! event that raises no detection allocates nothing.

use regex_automata::{meta, Input};

use tocsin_core::{
    Event, FieldName, FieldNames, FieldValue, IndicatorType, ValueKind, LOCATED_ABSENT,
    LOCATED_NESTED,
};
use tocsin_rules::sigma::Condition;

use crate::compile::{
    in_cidr, AtomId, CompiledRules, CompiledSelection, LiteralRef, RefMode, RuleIdx, Test,
    TimePart, ValueTest, HIT_ANY, HIT_END, HIT_START, HIT_WHOLE, KEYWORD_SLOT,
};
use crate::guard::GuardValue;
use crate::ioc::each_listed_hash;
use crate::presence;
use crate::scan_memo::{self, Lookup, ScanMemo};
use crate::text_cache::TextCache;

/// An indicator found in an event: which indicator, and in which profile field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IocHit {
    /// Indicator id in the IOC table.
    pub indicator: u32,
    /// Index into the profile's indicator fields.
    pub field: u32,
    /// Index of the path within that field entry.
    pub path: u32,
}

/// Per-thread mutable state for matching. Create with [`CompiledRules::new_scratch`].
pub struct MatchScratch {
    atom_bits: Vec<u8>,
    touched: Vec<u32>,
    candidate_mark: Vec<bool>,
    candidates: Vec<RuleIdx>,
    matched: Vec<RuleIdx>,
    ioc_hits: Vec<IocHit>,
    text_buf: String,
    /// A field value rewritten in canonical JSON-escaped form, when its own escapes are
    /// not (rare; see [`FieldValue::escaped_text`]).
    escaped_buf: Vec<u8>,
    /// The texts of the event's escaped values that verification has read.
    texts: TextCache,
    norm_buf: String,
    regex_caches: Vec<meta::Cache>,
    /// Routes whose condition holds for the current event.
    route_active: Vec<bool>,
    /// Active routes and the scanners they need, per distinct tuple of routing values
    /// (an event's channel and event id, typically): routing costs one hash lookup.
    route_cache: std::collections::HashMap<Box<[u8]>, usize, RouteKeyHash>,
    route_sets: Vec<RouteSet>,
    route_key: Vec<u8>,
    /// Routes marked active for the current event (to clear them for the next).
    active_list: Vec<u32>,
    /// The raw event, lower-cased, for keyword presence checks (filled on demand).
    lower_event: Vec<u8>,
    /// Per name of the route set's [`RouteSet::names`]: where it is in the current event
    /// (see [`Event::locate_all`]), when it has more names than members.
    located: Vec<u32>,
    /// The field value being scanned, lower-cased.
    scan_lower: Vec<u8>,
    /// What the literal scans found in recent values, per literal set (`crate::scan_memo`).
    scan_memo: ScanMemo,
    /// The field value that unscanned literals were last compared with, lower-cased (its
    /// text, or for a long value its canonical JSON-escaped form), and which value it was
    /// (start and length of its raw bytes in the current event): a filter of many
    /// literals on one field reads it once.
    compared_lower: Vec<u8>,
    compared_value: Option<(usize, usize)>,
    /// A literal in JSON-escaped form, to compare with `compared_lower`.
    escaped_literal: Vec<u8>,
    /// Per routing field: its text in the current event (when present).
    route_values: Vec<String>,
    route_present: Vec<bool>,
    /// Counters since creation (for metrics and benches).
    pub stats: ScratchStats,
}

/// Work counters: how much the prefilter saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScratchStats {
    /// Events matched.
    pub events: u64,
    /// Candidate rules, those their guard turned away included (see `guard_rejections`).
    pub candidates: u64,
    /// Rules that matched.
    pub matches: u64,
    /// Routes whose condition held.
    pub active_routes: u64,
    /// Bytes of field values scanned for literals.
    pub scanned_bytes: u64,
    /// Field values not scanned because the same literal set scanned the same value
    /// recently: its hits were replayed (see [`crate::MatchConfig::scan_memo_slots`]).
    pub memo_replays: u64,
    /// Literal occurrences found by the scans.
    pub literal_hits: u64,
    /// Candidates turned away by their rule's guard (a test the rule needs, checked
    /// before the rule is read), of `candidates`.
    pub guard_rejections: u64,
}

impl ScratchStats {
    /// The work counted since `earlier`, a snapshot of the same counters: what a metrics
    /// exporter adds to its totals each time it publishes.
    pub fn since(&self, earlier: &ScratchStats) -> ScratchStats {
        ScratchStats {
            events: self.events.saturating_sub(earlier.events),
            candidates: self.candidates.saturating_sub(earlier.candidates),
            matches: self.matches.saturating_sub(earlier.matches),
            active_routes: self.active_routes.saturating_sub(earlier.active_routes),
            scanned_bytes: self.scanned_bytes.saturating_sub(earlier.scanned_bytes),
            memo_replays: self.memo_replays.saturating_sub(earlier.memo_replays),
            literal_hits: self.literal_hits.saturating_sub(earlier.literal_hits),
            guard_rejections: self
                .guard_rejections
                .saturating_sub(earlier.guard_rejections),
        }
    }
}

impl MatchScratch {
    /// Whether a scanned literal hit this event where `need` says (its hit bits cover it).
    fn atom_hit(&self, atom: AtomId, need: u8) -> bool {
        self.atom_bits[atom as usize] & need == need
    }

    /// Rules that matched the last event.
    pub fn matched(&self) -> &[RuleIdx] {
        &self.matched
    }

    /// The literals found in the last event (each once), for observing frequencies.
    pub(crate) fn touched_atoms(&self) -> &[u32] {
        &self.touched
    }

    /// Indicators found in the last event.
    pub fn ioc_hits(&self) -> &[IocHit] {
        &self.ioc_hits
    }
}

/// Read the first present path of a field.
fn field_value<'a>(event: &Event<'a>, paths: &[FieldName]) -> Option<FieldValue<'a>> {
    paths.iter().find_map(|p| event.get_named(p))
}

/// Whether `at` falls inside an escape of the JSON-escaped text `hay`: just after the
/// backslash of a two-byte escape (the `n` of `\n`), or after the backslash of a
/// `\uXXXX` escape up to its last digit (the `1f` of `\u001f`, as a control character
/// is written in canonical text). There the escaped forms of literals may occur without
/// the literals. A backslash starts an escape unless it is itself escaped: the backslashes
/// before it pair up into escaped backslashes unless there is an odd number of them.
fn inside_escape(hay: &[u8], at: usize) -> bool {
    let odd_backslashes_before =
        |end: usize| hay[..end].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1;
    if odd_backslashes_before(at) {
        return true;
    }
    // Or `at` is 2 to 5 bytes after the backslash of a `\u` escape.
    (2..=5).any(|k| {
        at.checked_sub(k).is_some_and(|backslash| {
            hay[backslash] == b'\\'
                && hay[backslash + 1] == b'u'
                && !odd_backslashes_before(backslash)
        })
    })
}

/// Whether the raw event holds a `\u` escape of a byte that keywords are searched for
/// verbatim ([`crate::compile::verbatim_safe`]): then a keyword can occur in a value's
/// text without occurring in the raw bytes. Writers escape other characters (Go's `<`,
/// `>` and `&`, anything outside ASCII), which hide nothing the search looks for.
/// (A `\u` after an escaped backslash counts too: that costs a search, never a match.)
fn escapes_verbatim_bytes(raw: &[u8]) -> bool {
    memchr::memchr_iter(b'\\', raw).any(|at| {
        raw.get(at + 1) == Some(&b'u')
            && raw
                .get(at + 2..at + 6)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .is_some_and(crate::compile::verbatim_safe)
    })
}

/// What routing decided for one tuple of routing values.
#[derive(Default)]
struct RouteSet {
    routes: Box<[u32]>,
    /// The rules of those routes verified on every event (they have no prefilter set),
    /// less those the routing values rule out.
    always: Box<[RuleIdx]>,
    /// The rules the routing values rule out, one bit each (empty when none are): a hit
    /// in a field that is scanned for other rules still makes one a candidate, and it is
    /// dropped before verification, whose hit bits of the fields it alone reads were never
    /// scanned for.
    ruled_out: Box<[u64]>,
    /// The fields to scan, in one contiguous plan: an event of a common type reads it
    /// from cache, and a field absent from the event (most are) is told by
    /// [`Event::get_named`] (usually from the event's key bits) without touching the
    /// scanner or the compiled field table.
    scans: Box<[PlannedScan]>,
    /// The paths of the scanned fields, each once. When they outnumber the event's
    /// members they are found by walking the members ([`Event::locate_all`]), otherwise
    /// one by one.
    names: FieldNames,
    /// Per path of each scanned field in turn, its index in `names`;
    /// `PlannedScan::paths` indexes into it.
    scan_paths: Box<[u32]>,
}

/// One field to scan for the routes of a [`RouteSet`].
struct PlannedScan {
    scanner: u32,
    /// Range of the field's paths in [`RouteSet::scan_paths`], in the order they are
    /// read (empty for keywords).
    paths: std::ops::Range<u32>,
    keywords: bool,
}

/// The hash of the routing cache's keys: XXH3 with a seed drawn per scratch space.
///
/// Why not the standard library's SipHash: routing keys are some fifty bytes, hashed once
/// per event, and SipHash took a percent of the matching time. Why seeded: the keys come
/// from events, and a sender who could predict the hash could fill the cache with keys
/// that collide.
#[derive(Clone)]
struct RouteKeyHash {
    seed: u64,
}

impl RouteKeyHash {
    fn new() -> Self {
        use std::hash::BuildHasher;
        RouteKeyHash {
            seed: std::collections::hash_map::RandomState::new().hash_one(0u64),
        }
    }
}

impl std::hash::BuildHasher for RouteKeyHash {
    type Hasher = RouteKeyHasher;

    fn build_hasher(&self) -> RouteKeyHasher {
        RouteKeyHasher(self.seed)
    }
}

/// See [`RouteKeyHash`]; each write is hashed with the hash so far as its seed.
struct RouteKeyHasher(u64);

impl std::hash::Hasher for RouteKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }

    /// The length a slice's hash writes first: folded into the seed of the bytes' hash
    /// that follows, not hashed on its own (a second XXH3 call per event).
    fn write_usize(&mut self, n: usize) {
        self.0 ^= (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Most distinct routing tuples remembered per scratch; beyond it, routing is computed
/// without caching (bounded memory against hostile input).
const ROUTE_CACHE_LIMIT: usize = 4096;

/// The parts of the scratch space a scan writes (borrowed apart from the text buffer).
struct ScanState<'s> {
    atom_bits: &'s mut [u8],
    touched: &'s mut Vec<u32>,
    candidate_mark: &'s mut [bool],
    candidates: &'s mut Vec<RuleIdx>,
    route_active: &'s [bool],
    stats: &'s mut ScratchStats,
}

impl CompiledRules {
    /// Look `hay` up among one field's whole values and run its literal set over it,
    /// recording atom hits and candidate rules. `hay` is the value's text in canonical
    /// JSON-escaped form ([`FieldValue::escaped_text`]), which the literals are searched
    /// for in; no occurrence starts inside one of its escapes. With `memo`, a value this
    /// literal set scanned recently is not scanned: its remembered hits are recorded
    /// again; a value scanned now is remembered.
    fn scan(
        &self,
        scanner_index: u32,
        hay: &[u8],
        lower: &mut Vec<u8>,
        memo: Option<&mut ScanMemo>,
        st: &mut ScanState<'_>,
    ) {
        let lookup = memo.map_or(Lookup::Skip, |m| m.lookup(scanner_index, hay));
        let mut remembered = match lookup {
            Lookup::Hit(hits) => {
                st.stats.memo_replays += 1;
                for &hit in hits {
                    let (atom, bits) = scan_memo::unpack(hit);
                    self.note_hit(atom, bits, st);
                }
                return;
            }
            Lookup::Miss(recording) => Some(recording),
            Lookup::Skip => None,
        };
        let scanner = &self.scanners[scanner_index as usize];
        st.stats.scanned_bytes += hay.len() as u64;
        lower.clear();
        lower.extend(hay.iter().map(u8::to_ascii_lowercase));
        let mut found = |pattern: u32, start: usize, end: usize| {
            if inside_escape(hay, start) {
                return;
            }
            st.stats.literal_hits += 1;
            for &a in scanner.pattern_atoms.get(pattern as usize) {
                let atom = &self.atoms[a as usize];
                if atom.cased
                    && hay[start..end] != *atom.cased_escaped.as_deref().unwrap_or(&atom.bytes)
                {
                    continue;
                }
                let mut bits = HIT_ANY;
                if start == 0 {
                    bits |= HIT_START;
                }
                if end == hay.len() {
                    bits |= HIT_END;
                }
                if start == 0 && end == hay.len() {
                    bits |= HIT_WHOLE;
                }
                if let Some(recording) = remembered.as_mut() {
                    recording.push(a, bits);
                }
                self.note_hit(a, bits, st);
            }
        };
        for anchored in &scanner.anchored {
            anchored.for_each_match(lower, &mut found);
        }
        scanner.literals.for_each_match(lower, found);
    }

    /// Record that literal `a` occurred where `bits` say, and make the rules of active
    /// routes whose prefilter set holds it candidates (on its first hit in the event).
    #[inline]
    fn note_hit(&self, a: AtomId, bits: u8, st: &mut ScanState<'_>) {
        let old = st.atom_bits[a as usize];
        if old == 0 {
            st.touched.push(a);
            for &(r, route) in self.atom_rules.get(a as usize) {
                if st.route_active[route as usize] && !st.candidate_mark[r as usize] {
                    st.candidate_mark[r as usize] = true;
                    st.candidates.push(r);
                }
            }
        }
        st.atom_bits[a as usize] = old | bits;
    }

    /// Fresh scratch space sized for these rules.
    pub fn new_scratch(&self) -> MatchScratch {
        MatchScratch {
            atom_bits: vec![0; self.atoms.len()],
            touched: Vec::new(),
            candidate_mark: vec![false; self.rules.len()],
            candidates: Vec::new(),
            matched: Vec::new(),
            ioc_hits: Vec::new(),
            text_buf: String::new(),
            escaped_buf: Vec::new(),
            texts: TextCache::default(),
            norm_buf: String::new(),
            regex_caches: self.regexes.iter().map(|r| r.create_cache()).collect(),
            route_values: vec![String::new(); self.route_fields.len()],
            route_active: vec![false; self.routes.len()],
            lower_event: Vec::new(),
            located: Vec::new(),
            scan_lower: Vec::new(),
            scan_memo: ScanMemo::new(self.scan_memo_slots),
            compared_lower: Vec::new(),
            escaped_literal: Vec::new(),
            compared_value: None,
            route_cache: std::collections::HashMap::with_hasher(RouteKeyHash::new()),
            route_sets: Vec::new(),
            route_key: Vec::new(),
            active_list: Vec::new(),
            route_present: vec![false; self.route_fields.len()],
            stats: ScratchStats::default(),
        }
    }

    /// Read every routing field of the event once.
    fn read_route_values(&self, event: &Event<'_>, scratch: &mut MatchScratch) {
        for (i, path) in self.route_fields.iter().enumerate() {
            let value = &mut scratch.route_values[i];
            value.clear();
            let text = event
                .get_named(path)
                .and_then(|v| v.text(&mut scratch.text_buf));
            scratch.route_present[i] = text.is_some();
            if let Some(t) = text {
                value.push_str(t);
            }
        }
    }

    /// The routing cache's key for `event`: per routing field, its value's kind and raw
    /// bytes (length first). Two events with the same key have the same routing values.
    fn write_route_key(&self, event: &Event<'_>, key: &mut Vec<u8>) {
        key.clear();
        for path in &self.route_fields {
            // Objects and arrays are no routing value (`text` has none): as if absent.
            let value = event.get_named(path);
            let kind = match value.as_ref().map(FieldValue::kind) {
                None | Some(ValueKind::Object | ValueKind::Array) => 0,
                Some(ValueKind::String { .. }) => 1,
                Some(ValueKind::Number) => 2,
                Some(ValueKind::Bool) => 3,
                Some(ValueKind::Null) => 4,
            };
            key.push(kind);
            let Some(value) = value.filter(|_| kind != 0) else {
                continue;
            };
            let raw = value.raw();
            key.extend_from_slice(&(raw.len() as u32).to_le_bytes());
            key.extend_from_slice(raw);
        }
    }

    fn route_matches(&self, route: usize, scratch: &MatchScratch) -> bool {
        self.routes[route].condition.iter().all(|alternatives| {
            alternatives.iter().any(|alt| {
                alt.iter().all(|(f, want)| {
                    scratch.route_present[*f as usize]
                        && scratch.route_values[*f as usize].eq_ignore_ascii_case(want)
                })
            })
        })
    }

    /// Match one event; afterwards `scratch.matched()` lists the rules that hit and
    /// `scratch.ioc_hits()` the indicators found.
    pub fn match_event(&self, event: &Event<'_>, scratch: &mut MatchScratch) {
        self.match_event_inner(event, scratch, false)
    }

    /// Like [`CompiledRules::match_event`], but verifies every rule of every active route,
    /// ignoring the prefilter. Slow; it exists so that tests can prove the prefilter never
    /// loses a match.
    #[doc(hidden)]
    pub fn match_event_unfiltered(&self, event: &Event<'_>, scratch: &mut MatchScratch) {
        self.match_event_inner(event, scratch, true)
    }

    fn match_event_inner(&self, event: &Event<'_>, scratch: &mut MatchScratch, verify_all: bool) {
        // Reset what the previous event touched.
        for &a in &scratch.touched {
            scratch.atom_bits[a as usize] = 0;
        }
        scratch.touched.clear();
        for &r in &scratch.candidates {
            scratch.candidate_mark[r as usize] = false;
        }
        scratch.candidates.clear();
        scratch.matched.clear();
        scratch.ioc_hits.clear();
        scratch.lower_event.clear();
        scratch.compared_value = None;
        scratch.texts.clear();
        scratch.stats.events += 1;

        // 1. Route: which logsources does this event belong to? Cached by the routing
        // values as the event writes them (escaped, in its case): events that write them
        // alike route alike, and the values are read as text only on a miss.
        for &r in &scratch.active_list {
            scratch.route_active[r as usize] = false;
        }
        scratch.active_list.clear();
        self.write_route_key(event, &mut scratch.route_key);
        let cached = scratch
            .route_cache
            .get(scratch.route_key.as_slice())
            .copied();
        if cached.is_none() || verify_all {
            // A miss computes the route set from the values; the exhaustive matcher tests
            // each rule's route itself.
            self.read_route_values(event, scratch);
        }
        // The set, and the cache slot it goes back to. A cached set is borrowed out of the
        // scratch while the rest of it is written (a move of a few boxes, no allocation).
        let (set, slot) = match cached {
            Some(i) if !verify_all => (std::mem::take(&mut scratch.route_sets[i]), Some(i)),
            _ => {
                // The exhaustive matcher rules nothing out by routing values, and shares
                // no set with the prefiltered one; past the cache's limit a set is used
                // once.
                let set = self.compute_route_set(event, scratch, !verify_all);
                let keep = !verify_all && scratch.route_cache.len() < ROUTE_CACHE_LIMIT;
                let slot = keep.then(|| {
                    scratch.route_sets.push(RouteSet::default());
                    let i = scratch.route_sets.len() - 1;
                    scratch
                        .route_cache
                        .insert(scratch.route_key.clone().into_boxed_slice(), i);
                    i
                });
                (set, slot)
            }
        };
        self.activate(&set, scratch);
        self.scan_fields(event, &set, scratch, !verify_all);
        drop_ruled_out(&set, scratch);
        if let Some(i) = slot {
            scratch.route_sets[i] = set;
        }
        self.verify(event, scratch, verify_all)
    }

    /// The routes whose condition holds for the current routing values, and the scanners
    /// (fields) their rules need. With `rule_out`, rules whose condition fails on the
    /// routing values alone ([`CompiledRules::routed_condition`]) are ruled out: no field
    /// is scanned for them alone, they are not verified on every event, and a hit of
    /// theirs in a field scanned for others makes no candidate of them. (The set
    /// serves every event with the same routing key, which holds the routing values' kinds
    /// and bytes; a test is answered only from a value the key holds, a present string,
    /// number, boolean or `null`.)
    fn compute_route_set(
        &self,
        event: &Event<'_>,
        scratch: &mut MatchScratch,
        rule_out: bool,
    ) -> RouteSet {
        let routes: Vec<u32> = (0..self.routes.len())
            .filter(|&r| self.route_matches(r, scratch))
            .map(|r| r as u32)
            .collect();
        let active = |rule: RuleIdx| {
            routes
                .binary_search(&self.rules[rule as usize].route)
                .is_ok()
        };
        let mut ruled_out: Vec<u64> = Vec::new();
        for &r in self.route_tested_rules.iter().filter(|_| rule_out) {
            let rule = &self.rules[r as usize];
            if active(r)
                && self.routed_condition(&rule.condition, &rule.selections, event, scratch)
                    == Some(false)
            {
                if ruled_out.is_empty() {
                    ruled_out = vec![0; self.rules.len().div_ceil(64)];
                }
                ruled_out[r as usize / 64] |= 1 << (r % 64);
            }
        }
        let live = |rule: RuleIdx| active(rule) && !bit_set(&ruled_out, rule);
        let always: Box<[RuleIdx]> = routes
            .iter()
            .flat_map(|&r| self.routes[r as usize].always.iter().copied())
            .filter(|&r| live(r))
            .collect();
        // Every scanned field's paths in turn (a path may serve several fields).
        let mut paths: Vec<FieldName> = Vec::new();
        let scans: Box<[PlannedScan]> = self
            .scanners
            .iter()
            .enumerate()
            .filter(|(_, sc)| {
                sc.routes.iter().any(|r| routes.binary_search(r).is_ok())
                    && sc.readers.iter().any(|&r| live(r))
            })
            .map(|(sid, scanner)| {
                let start = paths.len() as u32;
                let keywords = scanner.field == KEYWORD_SLOT;
                if !keywords {
                    paths.extend(self.fields[scanner.field as usize].iter().cloned());
                }
                PlannedScan {
                    scanner: sid as u32,
                    paths: start..paths.len() as u32,
                    keywords,
                }
            })
            .collect();
        let names = FieldNames::new(paths.iter().cloned());
        let scan_paths = paths
            .iter()
            .map(|p| names.index_of(p).expect("every path is one of the names") as u32)
            .collect();
        RouteSet {
            routes: routes.into_boxed_slice(),
            always,
            ruled_out: ruled_out.into_boxed_slice(),
            scans,
            names,
            scan_paths,
        }
    }

    /// What `cond` comes to from its tests of routing fields alone, the others unknown
    /// (`None`): `Some(false)` when no event with these routing values can match, as
    /// `EventID: 4663` in a rule for the `Security` channel on event 4658. Answered as
    /// [`CompiledRules::eval_condition`] would, in three-valued logic.
    fn routed_condition(
        &self,
        cond: &Condition,
        selections: &[CompiledSelection],
        event: &Event<'_>,
        scratch: &mut MatchScratch,
    ) -> Option<bool> {
        let selection = |i: usize, scratch: &mut MatchScratch| {
            any_known(selections[i].alternatives.iter().map(|alternative| {
                all_known(
                    alternative
                        .iter()
                        .map(|t| self.routed_test(t, event, scratch)),
                )
            }))
        };
        match cond {
            Condition::Selection(i) => selection(*i, scratch),
            Condition::Not(c) => self
                .routed_condition(c, selections, event, scratch)
                .map(|b| !b),
            Condition::And(cs) => all_known(
                cs.iter()
                    .map(|c| self.routed_condition(c, selections, event, scratch)),
            ),
            Condition::Or(cs) => any_known(
                cs.iter()
                    .map(|c| self.routed_condition(c, selections, event, scratch)),
            ),
            Condition::AllOf(ss) => all_known(ss.iter().map(|&i| selection(i, scratch))),
            Condition::AnyOf(ss) => any_known(ss.iter().map(|&i| selection(i, scratch))),
        }
    }

    /// [`CompiledRules::eval_test`] where the test reads a routing field whose value the
    /// routing key holds (a string, number, boolean or `null`), and its values can be
    /// compared with it alone; `None` elsewhere.
    fn routed_test(&self, t: &Test, event: &Event<'_>, scratch: &mut MatchScratch) -> Option<bool> {
        let route_field = *self.slot_route_field.get(t.field as usize)?;
        let path = self.route_fields.get(route_field as usize)?;
        let value = event
            .get_named(path)
            .filter(|v| !matches!(v.kind(), ValueKind::Object | ValueKind::Array))?;
        // `exists` asks whether the field is there, whatever its value, `null` too.
        if let Some(want) = t.exists {
            return Some(want);
        }
        let present = !value.is_null();
        if t.negate && !present {
            return Some(false);
        }
        let values = t
            .values
            .iter()
            .map(|v| self.routed_value(v, value, event, scratch));
        let hit = if t.all {
            all_known(values)
        } else {
            any_known(values)
        }?;
        Some(if t.negate { present && !hit } else { hit })
    }

    /// [`CompiledRules::eval_value`] on a present `value`, for the values that need
    /// nothing else of the event; `None` for the others. A literal is compared with the
    /// value (verification reads a scanned one's hit bits, which routing has not got).
    fn routed_value(
        &self,
        v: &ValueTest,
        value: FieldValue<'_>,
        event: &Event<'_>,
        scratch: &mut MatchScratch,
    ) -> Option<bool> {
        match v {
            ValueTest::Atom { atom, need } => Some(compare_literal(
                self.atoms[*atom as usize].literal(),
                *need,
                value,
                scratch,
            )),
            ValueTest::Null | ValueTest::Empty | ValueTest::Cmp { .. } => {
                Some(self.eval_value(v, Some(value), event, scratch))
            }
            ValueTest::Any(vs) => any_known(
                vs.iter()
                    .map(|v| self.routed_value(v, value, event, scratch)),
            ),
            _ => None,
        }
    }

    fn activate(&self, set: &RouteSet, scratch: &mut MatchScratch) {
        for &route_idx in set.routes.iter() {
            scratch.route_active[route_idx as usize] = true;
            scratch.active_list.push(route_idx);
            scratch.stats.active_routes += 1;
        }
        for &r in set.always.iter() {
            if !scratch.candidate_mark[r as usize] {
                scratch.candidate_mark[r as usize] = true;
                scratch.candidates.push(r);
            }
        }
    }

    /// 2. Prefilter: each field that a rule of an active route tests, scanned once.
    ///
    /// With `remember`, values scanned recently are answered from the scan memo (the
    /// exhaustive matcher scans every value: it is what the memo is checked against).
    fn scan_fields(
        &self,
        event: &Event<'_>,
        set: &RouteSet,
        scratch: &mut MatchScratch,
        remember: bool,
    ) {
        // Whether the event's `\u` escapes hide bytes keywords are searched by: looked at
        // once per event, for the first keyword scan that asks.
        let mut hides_verbatim_bytes = None;
        let located =
            set.names.len() > event.len() && event.locate_all(&set.names, &mut scratch.located);
        for planned in set.scans.iter() {
            let value = if planned.keywords {
                None
            } else {
                let paths =
                    &set.scan_paths[planned.paths.start as usize..planned.paths.end as usize];
                let value = paths.iter().find_map(|&n| {
                    let name = set.names.get(n as usize);
                    if !located {
                        return event.get_named(name);
                    }
                    match scratch.located[n as usize] {
                        LOCATED_ABSENT => None,
                        LOCATED_NESTED => event.get_named(name),
                        member => Some(event.member_value(member)),
                    }
                });
                let Some(value) = value else {
                    continue;
                };
                Some(value)
            };
            let scanner = &self.scanners[planned.scanner as usize];
            let MatchScratch {
                escaped_buf,
                lower_event,
                scan_lower,
                scan_memo,
                atom_bits,
                touched,
                candidate_mark,
                candidates,
                route_active,
                stats,
                ..
            } = &mut *scratch;
            let mut state = ScanState {
                atom_bits,
                touched,
                candidate_mark,
                candidates,
                route_active,
                stats,
            };
            let mut scan = |hay: &[u8], state: &mut ScanState<'_>| {
                let memo = remember.then_some(&mut *scan_memo);
                self.scan(planned.scanner, hay, scan_lower, memo, state);
            };
            if planned.keywords {
                // Keyword searches look at every value of the event; skip them when no
                // keyword can be present in the raw bytes at all. (Unless a value is
                // written with `\u` escapes of the characters the test looks for:
                // `\u006dimikatz` holds `mimikatz`.)
                if let Some(presence) = &scanner.presence {
                    let hidden = event.has_uncommon_escapes()
                        && *hides_verbatim_bytes
                            .get_or_insert_with(|| escapes_verbatim_bytes(event.raw()));
                    if !hidden && !presence.is_match(event.raw(), lower_event) {
                        continue;
                    }
                }
                // Every value, those inside objects and arrays one by one (not their keys,
                // as at the top level), as each keyword test reads them. Most objects
                // hold no keyword: one search of their raw text says so first (a literal
                // of a value inside is in that text, unless the event writes it with
                // uncommon escapes), and only one that may is walked value by value.
                // (Keyword scanners have no anchored values: their literals are searched
                // for anywhere, so the literal set alone says.)
                let whole_text_first = !event.has_uncommon_escapes();
                for (_, value) in event.members() {
                    if whole_text_first
                        && matches!(value.kind(), ValueKind::Object | ValueKind::Array)
                    {
                        // The object's text, lower-cased where the raw event lower-cased
                        // (shared with the presence tests) holds it.
                        let lowered = presence::lowered(event.raw(), lower_event);
                        let start = value.raw().as_ptr() as usize - event.raw().as_ptr() as usize;
                        if !scanner
                            .literals
                            .is_match(&lowered[start..start + value.raw().len()])
                        {
                            continue;
                        }
                    }
                    value.for_each_scalar(&mut |scalar| {
                        // A null scans as no text: nothing to look for.
                        if !scalar.is_null() {
                            if let Some(hay) = scalar.escaped_text(escaped_buf) {
                                scan(hay, &mut state);
                            }
                        }
                    });
                }
                continue;
            }
            let Some(value) = value else {
                continue;
            };
            let Some(hay) = value.escaped_text(escaped_buf) else {
                continue;
            };
            scan(hay, &mut state);
        }
    }

    /// 3. Verify the candidates; 4. look indicators up.
    fn verify(&self, event: &Event<'_>, scratch: &mut MatchScratch, verify_all: bool) {
        if verify_all {
            for (r, rule) in self.rules.iter().enumerate() {
                let active = scratch.candidate_mark.get(r).copied().unwrap_or(false);
                if !active && self.route_matches(rule.route as usize, scratch) {
                    scratch.candidate_mark[r] = true;
                    scratch.candidates.push(r as RuleIdx);
                }
            }
        }
        scratch.stats.candidates += scratch.candidates.len() as u64;
        for i in 0..scratch.candidates.len() {
            let r = scratch.candidates[i];
            // The exhaustive matcher skips guards: it is what they are checked against.
            if !verify_all && !self.guard_admits(r, event, scratch) {
                scratch.stats.guard_rejections += 1;
                continue;
            }
            let rule = &self.rules[r as usize];
            if self.eval_condition(&rule.condition, &rule.selections, event, scratch) {
                scratch.matched.push(r);
            }
        }
        // Deterministic output order: load order.
        scratch.matched.sort_unstable();
        scratch.stats.matches += scratch.matched.len() as u64;

        if !self.iocs.is_empty() {
            self.match_indicators(event, scratch);
        }
    }

    fn match_indicators(&self, event: &Event<'_>, scratch: &mut MatchScratch) {
        let MatchScratch {
            texts,
            norm_buf,
            ioc_hits,
            ..
        } = scratch;
        for (fi, (kind, paths)) in self.indicator_fields.iter().enumerate() {
            if !self.iocs.has_type(*kind) {
                // No indicator of this type is loaded: do not read (or unescape) its fields.
                continue;
            }
            for (pi, path) in paths.iter().enumerate() {
                let Some(text) = event.get_named(path).and_then(|v| texts.text(v)) else {
                    continue;
                };
                self.iocs.lookup(*kind, text, norm_buf, |id| {
                    ioc_hits.push(IocHit {
                        indicator: id,
                        field: fi as u32,
                        path: pi as u32,
                    })
                });
            }
        }
        for (pi, path) in self.hash_list_fields.iter().enumerate() {
            let Some(text) = event.get_named(path).and_then(|v| texts.text(v)) else {
                continue;
            };
            each_listed_hash(text, |kind, value| {
                self.iocs.lookup(kind, value, norm_buf, |id| {
                    ioc_hits.push(IocHit {
                        indicator: id,
                        field: u32::MAX,
                        path: pi as u32,
                    })
                });
            });
        }
        ioc_hits.sort_unstable_by_key(|h| (h.indicator, h.field, h.path));
        ioc_hits.dedup_by_key(|h| h.indicator);
    }

    /// Whether rule `r`'s guard holds (or it has none): when not, the rule cannot match.
    fn guard_admits(&self, r: RuleIdx, event: &Event<'_>, scratch: &mut MatchScratch) -> bool {
        let guard = &self.guards[r as usize];
        let Some(field) = guard.field() else {
            return true;
        };
        // The field is read for the first compared value (scanned ones read hit bits).
        let mut value = None;
        guard.values().any(|v| match v {
            GuardValue::Scanned { atom, need } => {
                debug_assert!(self.atoms[atom as usize].scanned);
                scratch.atom_hit(atom, need)
            }
            GuardValue::Compared { literal, need } => value
                .get_or_insert_with(|| field_value(event, &self.fields[field as usize]))
                .is_some_and(|v| compare_literal(literal, need, v, scratch)),
            GuardValue::Present => value
                .get_or_insert_with(|| field_value(event, &self.fields[field as usize]))
                .is_some(),
        })
    }

    pub(crate) fn eval_condition(
        &self,
        cond: &Condition,
        selections: &[CompiledSelection],
        event: &Event<'_>,
        scratch: &mut MatchScratch,
    ) -> bool {
        match cond {
            Condition::Selection(i) => self.eval_selection(&selections[*i], event, scratch),
            Condition::Not(c) => !self.eval_condition(c, selections, event, scratch),
            Condition::And(cs) => cs
                .iter()
                .all(|c| self.eval_condition(c, selections, event, scratch)),
            Condition::Or(cs) => cs
                .iter()
                .any(|c| self.eval_condition(c, selections, event, scratch)),
            Condition::AnyOf(ss) => ss
                .iter()
                .any(|&i| self.eval_selection(&selections[i], event, scratch)),
            Condition::AllOf(ss) => ss
                .iter()
                .all(|&i| self.eval_selection(&selections[i], event, scratch)),
        }
    }

    pub(crate) fn eval_selection(
        &self,
        sel: &CompiledSelection,
        event: &Event<'_>,
        scratch: &mut MatchScratch,
    ) -> bool {
        sel.alternatives
            .iter()
            .any(|alt| alt.iter().all(|t| self.eval_test(t, event, scratch)))
    }

    pub(crate) fn eval_test(
        &self,
        t: &Test,
        event: &Event<'_>,
        scratch: &mut MatchScratch,
    ) -> bool {
        if t.field == KEYWORD_SLOT {
            return if t.all {
                t.values
                    .iter()
                    .all(|v| self.eval_keyword(v, event, scratch))
            } else {
                t.values
                    .iter()
                    .any(|v| self.eval_keyword(v, event, scratch))
            };
        }
        if let Some(pairs) = &t.scanned_values {
            let hit = any_scanned_value_hit(pairs, scratch);
            if !t.negate {
                return hit;
            }
            let present =
                field_value(event, &self.fields[t.field as usize]).is_some_and(|v| !v.is_null());
            return present && !hit;
        }
        let value = field_value(event, &self.fields[t.field as usize]);
        // `exists` asks whether the field is there, whatever its value: "the presence of
        // a field, not its value, be it empty or null" (the specification's modifiers
        // appendix). rsigma and pySigma's SQLite backend take a `null` as absent.
        if let Some(want) = t.exists {
            return value.is_some() == want;
        }
        let present = value.is_some_and(|v| !v.is_null());
        let hit = if t.all {
            t.values
                .iter()
                .all(|v| self.eval_value(v, value, event, scratch))
        } else {
            t.values
                .iter()
                .any(|v| self.eval_value(v, value, event, scratch))
        };
        if t.negate {
            present && !hit
        } else {
            hit
        }
    }

    /// A keyword value holds when any value of the event matches it, the values inside its
    /// objects and arrays included, one by one (a literal by the scan's hits, a wildcard
    /// or regex keyword tested on each value).
    fn eval_keyword(&self, v: &ValueTest, event: &Event<'_>, scratch: &mut MatchScratch) -> bool {
        match v {
            ValueTest::Atom { atom, need } => scratch.atom_hit(*atom, *need),
            ValueTest::Any(vs) => vs.iter().any(|v| self.eval_keyword(v, event, scratch)),
            _ => event.members().any(|(_, value)| {
                value.any_scalar(&mut |scalar| self.eval_value(v, Some(scalar), event, scratch))
            }),
        }
    }

    /// Whether the literal `atom` occurs in `value` where `need` says: by its hit bits
    /// when the scans looked for it, else compared with the value.
    fn atom_holds(
        &self,
        atom: AtomId,
        need: u8,
        value: Option<FieldValue<'_>>,
        scratch: &mut MatchScratch,
    ) -> bool {
        let literal = &self.atoms[atom as usize];
        if literal.scanned {
            scratch.atom_hit(atom, need)
        } else {
            value.is_some_and(|v| compare_literal(literal.literal(), need, v, scratch))
        }
    }

    fn eval_value(
        &self,
        v: &ValueTest,
        value: Option<FieldValue<'_>>,
        event: &Event<'_>,
        scratch: &mut MatchScratch,
    ) -> bool {
        // A JSON `null` has no text: only the `null` test holds for it (`exists` was
        // decided before), as in pySigma's SQLite backend, where it is absent. Its text
        // would otherwise be empty, which `'*'`, `re: '^$'` and `fieldref|contains` take.
        let value = match v {
            ValueTest::Null => value,
            _ => value.filter(|v| !v.is_null()),
        };
        match v {
            ValueTest::Atom { atom, need } => self.atom_holds(*atom, *need, value, scratch),
            ValueTest::Null => match value {
                None => true,
                Some(v) if v.is_null() => true,
                Some(v) => matches!(v.kind(), ValueKind::String { .. }) && v.raw().is_empty(),
            },
            ValueTest::Empty => value.is_some_and(|v| {
                matches!(v.kind(), ValueKind::String { .. }) && v.raw().is_empty()
            }),
            ValueTest::Glob { glob, .. } if glob.matches_every_text() => {
                value.is_some_and(|v| !matches!(v.kind(), ValueKind::Object | ValueKind::Array))
            }
            ValueTest::Glob { glob, .. } => value
                .and_then(|v| scratch.texts.text(v))
                .is_some_and(|t| glob.is_match(t.as_bytes())),
            ValueTest::Regex {
                index: i,
                prefilters,
            } => {
                let Some(v) = value else { return false };
                // On a long value (a script block), each literal set the regex requires is
                // looked for first: the prefilter checked one of them, a comparison each
                // checks the others, and the regex and the unescaping it needs cost far
                // more (10,000 cycles over a 17 KB payload).
                if v.raw().len() >= LONG_VALUE
                    && !prefilters.iter().all(|set| {
                        set.iter()
                            .any(|&a| self.atom_holds(a, HIT_ANY, Some(v), scratch))
                    })
                {
                    return false;
                }
                let MatchScratch {
                    texts,
                    regex_caches,
                    ..
                } = scratch;
                let Some(text) = texts.text(v) else {
                    return false;
                };
                // Whether it matches, not where: the search stops at the first match state
                // and skips the reverse scan for the start.
                self.regexes[*i as usize]
                    .search_half_with(
                        &mut regex_caches[*i as usize],
                        &Input::new(text).earliest(true),
                    )
                    .is_some()
            }
            ValueTest::ClassRun(run) => value
                .and_then(|v| scratch.texts.text(v))
                .is_some_and(|t| run.is_match(t)),
            ValueTest::Cmp { op, value: want } => value
                .and_then(|v| v.as_f64())
                .is_some_and(|got| op.holds(got, *want)),
            ValueTest::TimePart {
                part,
                op,
                value: want,
            } => value
                .and_then(|v| time_part(scratch.texts.text(v)?, *part))
                .is_some_and(|got| op.holds(got as f64, *want)),
            ValueTest::FieldRef { field, mode, cased } => {
                let Some(v) = value else { return false };
                let Some(other) =
                    field_value(event, &self.fields[*field as usize]).filter(|o| !o.is_null())
                else {
                    return false;
                };
                let MatchScratch {
                    texts, text_buf, ..
                } = scratch;
                let (Some(a), Some(b)) = (texts.text(v), other.text(text_buf)) else {
                    return false;
                };
                ref_matches(a, b, *mode, *cased)
            }
            ValueTest::Cidr { network, prefix } => value
                .and_then(|v| scratch.texts.text(v))
                .and_then(|t| {
                    t.trim()
                        .strip_prefix("::ffff:")
                        .unwrap_or(t.trim())
                        .parse()
                        .ok()
                })
                .is_some_and(|ip| in_cidr(ip, *network, *prefix)),
            ValueTest::Any(vs) => vs.iter().any(|v| self.eval_value(v, value, event, scratch)),
        }
    }

    /// The (type, path) of an indicator hit's field, for detections.
    pub fn ioc_hit_field(&self, hit: &IocHit) -> (Option<IndicatorType>, &str) {
        if hit.field == u32::MAX {
            return (None, self.hash_list_fields[hit.path as usize].as_str());
        }
        let (kind, paths) = &self.indicator_fields[hit.field as usize];
        (Some(*kind), paths[hit.path as usize].as_str())
    }
}

/// Whether bit `i` of `bits` is set (bits past the end are not).
fn bit_set(bits: &[u64], i: RuleIdx) -> bool {
    bits.get(i as usize / 64)
        .is_some_and(|word| word & (1 << (i % 64)) != 0)
}

/// Drop the candidates `set` rules out (see [`RouteSet::ruled_out`]), unmarking them.
fn drop_ruled_out(set: &RouteSet, scratch: &mut MatchScratch) {
    if set.ruled_out.is_empty() {
        return;
    }
    let MatchScratch {
        candidates,
        candidate_mark,
        ..
    } = scratch;
    candidates.retain(|&r| {
        let out = bit_set(&set.ruled_out, r);
        if out {
            candidate_mark[r as usize] = false;
        }
        !out
    });
}

/// Three-valued `and`: false if one part is, true if all are, else unknown.
fn all_known(parts: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    let mut known = true;
    for part in parts {
        match part {
            Some(false) => return Some(false),
            Some(true) => {}
            None => known = false,
        }
    }
    known.then_some(true)
}

/// Three-valued `or`: true if one part is, false if all are, else unknown.
fn any_known(parts: impl IntoIterator<Item = Option<bool>>) -> Option<bool> {
    all_known(parts.into_iter().map(|p| p.map(|b| !b))).map(|b| !b)
}

/// Whether one of `pairs` (literal, hit bits needed; sorted) hit as needed in this event,
/// found from the literals that hit at all.
fn any_scanned_value_hit(pairs: &[(AtomId, u8)], scratch: &MatchScratch) -> bool {
    scratch.touched.iter().any(|&a| {
        let bits = scratch.atom_bits[a as usize];
        let from = pairs.partition_point(|&(p, _)| p < a);
        pairs[from..]
            .iter()
            .take_while(|&&(p, _)| p == a)
            .any(|&(_, need)| bits & need == need)
    })
}

/// Whether an unscanned literal occurs in `value` where `need` says (the hit bits a scan
/// would have set), comparing with the value's text, or for a long value with its
/// escaped form as the scans read it.
fn compare_literal(
    literal: LiteralRef<'_>,
    need: u8,
    value: FieldValue<'_>,
    scratch: &mut MatchScratch,
) -> bool {
    // A value without escapes is its own text (`GrantedAccess`, `EventType`, most values
    // but paths): compared where it lies, ignoring ASCII case where the literal does,
    // without copying it.
    let plain: Option<&[u8]> = match value.kind() {
        // Objects and arrays have no text: a literal never occurs in them.
        ValueKind::Object | ValueKind::Array => return false,
        ValueKind::Null => Some(b""),
        ValueKind::String { escaped: true } => None,
        ValueKind::String { escaped: false } | ValueKind::Number | ValueKind::Bool => {
            Some(value.raw())
        }
    };
    if let Some(text) = plain.filter(|text| text.len() < LONG_VALUE) {
        return literal_holds(text, literal, need, false);
    }
    let MatchScratch {
        compared_lower,
        compared_value,
        texts,
        escaped_buf,
        escaped_literal,
        ..
    } = scratch;
    if literal.cased {
        // Rare: compared with the text as written (not lower-cased), from the text cache.
        let Some(text) = texts.text(value) else {
            return false;
        };
        return literal_holds(text.as_bytes(), literal, need, true);
    }
    // A short value with escapes (a path) is compared as its text. A long one is compared
    // as a scan reads it: in its JSON-escaped form, which is nearly always its raw bytes
    // (not unescaped first: a PowerShell context of 5 KB holds an escape every few dozen
    // bytes), with the literal escaped alike; an occurrence counts only where it starts
    // at an escape boundary. Either is lower-cased once for a run of comparisons.
    let raw = value.raw();
    let long = raw.len() >= LONG_VALUE;
    let id = (raw.as_ptr() as usize, raw.len());
    if *compared_value != Some(id) {
        compared_lower.clear();
        let bytes = if long {
            value.escaped_text(escaped_buf)
        } else {
            texts.text(value).map(str::as_bytes)
        };
        if let Some(bytes) = bytes {
            compared_lower.extend_from_slice(bytes);
            compared_lower.make_ascii_lowercase();
        }
        *compared_value = Some(id);
    }
    if !long {
        return literal_holds(compared_lower, literal, need, true);
    }
    escaped_literal.clear();
    tocsin_core::escape_json_into(literal.bytes, escaped_literal);
    escaped_holds(compared_lower, escaped_literal, need)
}

/// Whether the escaped literal `lit` occurs in the escaped text `hay` where `need` says,
/// both in one case, at a place where a character of the text starts (as the scans count).
fn escaped_holds(hay: &[u8], lit: &[u8], need: u8) -> bool {
    let Some(last_start) = hay.len().checked_sub(lit.len()) else {
        return false;
    };
    let at_boundary = |at: usize| !inside_escape(hay, at);
    (need & HIT_WHOLE == 0 || hay == lit)
        && (need & HIT_START == 0 || hay.starts_with(lit))
        && (need & HIT_END == 0 || (hay.ends_with(lit) && at_boundary(last_start)))
        && (need & HIT_ANY == 0
            || crate::literals::overlapping_finds(&memchr::memmem::Finder::new(lit), hay)
                .any(at_boundary))
}

/// Whether `literal` occurs in the text `hay` where `need` says. `folded`: `hay` is in
/// the literal's case already (lower-cased, or as written for a case-sensitive literal),
/// so bytes compare as they are; otherwise ASCII case is ignored where the literal does
/// (for values shorter than [`LONG_VALUE`]).
fn literal_holds(hay: &[u8], literal: LiteralRef<'_>, need: u8, folded: bool) -> bool {
    let lit = literal.bytes;
    let cased = folded || literal.cased;
    let fits = hay.len() >= lit.len();
    (need & HIT_WHOLE == 0 || (hay.len() == lit.len() && eq_bytes(hay, lit, cased)))
        && (need & HIT_START == 0 || (fits && eq_bytes(&hay[..lit.len()], lit, cased)))
        && (need & HIT_END == 0 || (fits && eq_bytes(&hay[hay.len() - lit.len()..], lit, cased)))
        && (need & HIT_ANY == 0 || contains(hay, lit, literal.rare, cased))
}

/// Values this long are searched with `memmem` (see [`contains`]), and compared with
/// unscanned literals in their escaped form (see [`compare_literal`]).
const LONG_VALUE: usize = 512;

/// Whether `lit` occurs in `hay` (ignoring ASCII case unless `cased`), looking for its
/// byte at offset `rare` (its least common) with `memchr`, in either case, and comparing
/// where it occurs. Values are short and needles many: this costs no searcher set-up per
/// call, unlike `memmem`, which only pays off on long values (a PowerShell script block),
/// where one byte recurs too often (those reach here only for a `cased` literal: the
/// others are compared in escaped form, [`escaped_holds`]).
fn contains(hay: &[u8], lit: &[u8], rare: usize, cased: bool) -> bool {
    let Some(last_start) = hay.len().checked_sub(lit.len()) else {
        return false;
    };
    if hay.len() >= LONG_VALUE {
        debug_assert!(cased, "long values are lower-cased before a search");
        return memchr::memmem::find(hay, lit).is_some();
    }
    let Some(&rare_byte) = lit.get(rare) else {
        return true; // the empty literal
    };
    // A match starting at `s` has its rare byte at `s + rare`: search `hay[rare..]`, where
    // the index found is the start itself.
    let window = &hay[rare..=last_start + rare];
    let at = |start: usize| eq_bytes(&hay[start..start + lit.len()], lit, cased);
    let upper = rare_byte.to_ascii_uppercase();
    if cased || upper == rare_byte {
        memchr::memchr_iter(rare_byte, window).any(at)
    } else {
        memchr::memchr2_iter(rare_byte, upper, window).any(at)
    }
}

fn eq_bytes(a: &[u8], b: &[u8], cased: bool) -> bool {
    if cased {
        a == b
    } else {
        a.eq_ignore_ascii_case(b)
    }
}

/// `fieldref`: compare a field's text `a` with the referenced field's text `b`, without
/// regard to case unless `cased` (letters outside ASCII too, see [`caseless_prefix`]).
fn ref_matches(a: &str, b: &str, mode: RefMode, cased: bool) -> bool {
    if !(cased || a.is_ascii() && b.is_ascii()) {
        // Where a prefix equal to `b` that starts at `i` ends in `a`.
        let from = |i: usize| caseless_prefix(&a[i..], b).map(|n| i + n);
        let mut starts = a.char_indices().map(|(i, _)| i).chain([a.len()]);
        return match mode {
            RefMode::Equals => from(0) == Some(a.len()),
            RefMode::StartsWith => from(0).is_some(),
            RefMode::EndsWith => starts.any(|i| from(i) == Some(a.len())),
            RefMode::Contains => starts.any(|i| from(i).is_some()),
        };
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match mode {
        RefMode::Equals => eq_bytes(a, b, cased),
        RefMode::StartsWith => a.len() >= b.len() && eq_bytes(&a[..b.len()], b, cased),
        RefMode::EndsWith => a.len() >= b.len() && eq_bytes(&a[a.len() - b.len()..], b, cased),
        RefMode::Contains => {
            b.is_empty()
                || (a.len() >= b.len() && a.windows(b.len()).any(|w| eq_bytes(w, b, cased)))
        }
    }
}

/// Where in `a` a prefix ends that equals `b` letter by letter without regard to case
/// (each letter's lower-case mapping compared, so `È` equals `è`); `None` when `a` does
/// not start so.
fn caseless_prefix(a: &str, b: &str) -> Option<usize> {
    let mut letters = a.char_indices();
    for want in b.chars() {
        let (_, got) = letters.next()?;
        if got != want && !got.to_lowercase().eq(want.to_lowercase()) {
            return None;
        }
    }
    Some(letters.next().map_or(a.len(), |(i, _)| i))
}

/// Extract a part of a timestamp field without time-zone conversion: the digits as written
/// for `YYYY-MM-DD[T ]HH:MM...` text, UTC for epoch numbers.
fn time_part(text: &str, part: TimePart) -> Option<u32> {
    let text = text.trim();
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = b.get(r)?;
        if s.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(s).ok()?.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d, h, mi) = if b.len() >= 16 && b[4] == b'-' && b[7] == b'-' && b[13] == b':' {
        (
            digits(0..4)?,
            digits(5..7)?,
            digits(8..10)?,
            digits(11..13)?,
            digits(14..16)?,
        )
    } else {
        let (y, mo, d, h, mi, _) = tocsin_core::Timestamp::parse(text).ok()?.civil();
        (y as u32, mo, d, h, mi)
    };
    Some(match part {
        TimePart::Minute => mi,
        TimePart::Hour => h,
        TimePart::Day => d,
        TimePart::Month => mo,
        TimePart::Year => y,
        TimePart::Week => tocsin_core::time::iso_week(y as i64, mo, d),
    })
}
