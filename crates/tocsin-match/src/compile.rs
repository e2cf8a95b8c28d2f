//! Compiling Sigma rules and indicators into one [`CompiledRules`].
//!
//! The pipeline, rule by rule:
//! 1. **Route.** The rule's logsource is resolved through the profile into a
//!    [`RouteCondition`]; rules with the same condition share a route.
//! 2. **Tests.** Each `field|modifiers: values` becomes a `Test` over a field slot (the
//!    profile's candidate paths for that Sigma field). Plain literals — equals, contains,
//!    startswith, endswith — become *atoms*: (route, field, bytes, cased) entries that the
//!    field's literal set (see `literals`) finds; the position of the hit (at the start,
//!    at the end, the whole value) is all it takes to verify them. Values with inner
//!    wildcards become globs, prefiltered by their longest literal; `re` values become
//!    regex-automata meta regexes with a size limit, prefiltered by literals every match
//!    contains (see `required`) when the regex has some: of the sets it offers, the one
//!    least likely to occur, as for the tests a rule ANDs.
//! 3. **Prefilter.** From the condition we derive a set of atoms of which at least one must
//!    hit for the rule to possibly match (`not` tests, and regexes without required literals,
//!    give none). Rules with
//!    such a set are evaluated only when one of its atoms hits; the others are evaluated on
//!    every event of their route.
//!
//! Anything a rule uses that the matcher cannot evaluate exactly is an error for that rule,
//! which is skipped; nothing is approximated silently.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use regex_automata::meta::Regex;
use regex_automata::util::syntax;

use tocsin_core::{FieldName, Level, Taxonomy, Tlp};
use tocsin_rules::sigma::{Condition, FieldTest, Modifier, SigmaString, SigmaValue, StrPart};
use tocsin_rules::{
    Diagnostic, Indicator, Location, Profile, RouteCondition, SigmaFilter, SigmaRule,
};

use crate::calibrate::LiteralFrequencies;
use crate::class_run::ClassRun;
use crate::glob::{Glob, GlobPart};
use crate::guard::Guard;
use crate::ioc::{mask_v4, mask_v6, IocTable};
use crate::literals::{Anchor, AnchoredValues, LiteralSet, FRAGMENT};
use crate::presence::KeywordPresence;
use crate::required::required_literal_sets;
use tocsin_core::encoding::base64;

/// Limits applied while compiling.
#[derive(Debug, Clone)]
pub struct MatchConfig {
    /// Largest compiled regex (NFA) in bytes; bigger ones are rejected.
    pub regex_size_limit: usize,
    /// Most rules loaded; the rest are reported and skipped.
    pub max_rules: usize,
    /// Values of `%placeholder%`s for the `expand` modifier (name without `%`).
    pub placeholders: BTreeMap<String, Vec<String>>,
    /// Most values one Sigma value may expand into (windash, base64offset, placeholders).
    pub max_expansions: usize,
    /// How often literals occurred in the events seen so far: each rule's prefilter set is
    /// then chosen among its alternatives by those frequencies, not by the literals'
    /// length (see [`crate::calibrate`]). Matches are the same either way.
    pub literal_frequencies: Option<std::sync::Arc<LiteralFrequencies>>,
    /// Search every literal in every event, not only those of prefilter sets, and rule no
    /// rule out by its routing values: slower, for observing literal frequencies
    /// ([`CompiledRules::observe_literals`]).
    pub scan_every_literal: bool,
    /// Entries of each matching thread's memo of literal scans (rounded up to a power of
    /// two; 0 turns it off): a field value that its literal set scanned recently is not
    /// scanned again, its hits are replayed (`crate::scan_memo`). Matches are the same
    /// either way. Memory per thread: at most this many times 2 KiB of values, and their
    /// hits.
    pub scan_memo_slots: usize,
}

impl Default for MatchConfig {
    fn default() -> Self {
        MatchConfig {
            regex_size_limit: 8 << 20,
            max_rules: 100_000,
            placeholders: BTreeMap::new(),
            max_expansions: 4096,
            literal_frequencies: None,
            scan_every_literal: false,
            scan_memo_slots: 4096,
        }
    }
}

/// Index of a compiled rule.
pub type RuleIdx = u32;
/// Index of an atom.
pub type AtomId = u32;
/// Index of a field slot.
pub type FieldSlot = u32;
/// The pseudo field slot of keyword (field-less) searches: every value of the event.
pub(crate) const KEYWORD_SLOT: FieldSlot = u32::MAX;

/// How common each atom is, for choosing among the alternatives of an AND: prefilter
/// choices minimise its share, observed ([`LiteralFrequencies`]) when the compile has
/// them, guessed from the rule set ([`crate::prior`]) when not.
#[derive(Clone, Copy)]
struct AtomWeights<'w> {
    /// The share of events holding it, guessed ([`crate::prior`]) or observed
    /// ([`crate::calibrate`]).
    share: &'w [f64],
    /// The share of routes whose rules test its field: of alternatives alike in share and
    /// shape, the one whose literals are searched for in fewer kinds of events is taken
    /// (`.exe` in `TargetFilename`, not in `Image`, for a rule on files an executable
    /// writes).
    breadth: &'w [f64],
}

/// Hit bits recorded per atom and event.
pub(crate) const HIT_ANY: u8 = 1;
pub(crate) const HIT_START: u8 = 2;
pub(crate) const HIT_END: u8 = 4;
pub(crate) const HIT_WHOLE: u8 = 8;

/// A literal tested in one field.
///
/// Literals that put a rule on the candidate list (its prefilter set) are *scanned*: the
/// field's literal set finds them in every event, and their tests read the hit bits. The
/// rest (those only in filters, `not` branches, or beside a more selective literal in an
/// `and`) are needed only when a candidate rule is verified, which is rare: they are
/// compared with the field's text then, instead of being searched for in every event.
#[derive(Debug, Clone)]
pub(crate) struct Atom {
    /// The bytes as written for `cased` literals, lower-cased otherwise.
    pub bytes: Box<[u8]>,
    /// For a `cased` literal whose JSON-escaped form differs from `bytes`: that form, which
    /// a scan (searching escaped text, see [`Scanner`]) compares hits with.
    pub cased_escaped: Option<Box<[u8]>>,
    pub cased: bool,
    /// Whether the field's literal set searches for it (see above).
    pub scanned: bool,
    /// Offset of its least common byte: a comparison looks for that byte first.
    pub rare: u32,
}

impl Atom {
    /// The literal as a comparison reads it.
    pub(crate) fn literal(&self) -> LiteralRef<'_> {
        LiteralRef {
            bytes: &self.bytes,
            rare: self.rare as usize,
            cased: self.cased,
        }
    }
}

/// A literal to compare with a value's text: an [`Atom`]'s, or a copy of one in a rule's
/// [`Guard`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiteralRef<'a> {
    /// As written for `cased` literals, lower-cased otherwise.
    pub bytes: &'a [u8],
    /// Offset of its least common byte.
    pub rare: usize,
    pub cased: bool,
}

/// Numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CmpOp {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl CmpOp {
    pub(crate) fn holds(self, got: f64, want: f64) -> bool {
        match self {
            CmpOp::Eq => got == want,
            CmpOp::Lt => got < want,
            CmpOp::Lte => got <= want,
            CmpOp::Gt => got > want,
            CmpOp::Gte => got >= want,
        }
    }
}

/// How a `fieldref` compares the two fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefMode {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
}

/// Which part of a timestamp a time modifier extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimePart {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// How one value is checked against a field.
#[derive(Debug, Clone)]
pub(crate) enum ValueTest {
    /// Verified by the atom's hit bits (`need` ⊆ bits).
    Atom { atom: AtomId, need: u8 },
    /// `''`: the field is present and empty.
    Empty,
    /// Wildcards in the middle.
    Glob {
        glob: Glob,
        prefilter: Option<AtomId>,
    },
    /// A regex: its index in the regex table, and sets of atoms of each of which one must
    /// hit for it to match (literals every match contains; see `required`), when there are
    /// some: the prefilter takes the set least likely to hit.
    Regex {
        index: u32,
        prefilters: Box<[Box<[AtomId]>]>,
    },
    /// A regex that only asks for a run of one character class (`.{1000,}`), counted.
    ClassRun(ClassRun),
    /// `null`: absent, null or empty.
    Null,
    /// Numeric comparison.
    Cmp { op: CmpOp, value: f64 },
    /// An address in a CIDR range.
    Cidr { network: IpAddr, prefix: u8 },
    /// One of several expansions (windash, base64offset, placeholders).
    Any(Vec<ValueTest>),
    /// Compare with another field of the same event.
    FieldRef {
        field: FieldSlot,
        mode: RefMode,
        cased: bool,
    },
    /// A part of the field's timestamp, compared with a number.
    TimePart {
        part: TimePart,
        op: CmpOp,
        value: f64,
    },
}

/// One `field|modifiers: values` test.
#[derive(Debug, Clone)]
pub(crate) struct Test {
    pub field: FieldSlot,
    pub values: Vec<ValueTest>,
    /// `all`: every value must match.
    pub all: bool,
    /// `neq`: the field is present and matches none of the values.
    pub negate: bool,
    /// `exists: true|false`.
    pub exists: Option<bool>,
    /// As written, for explanations.
    pub key: String,
    /// When the test holds if any one of many values holds, and every value is a scanned
    /// literal: the (literal, hit bits needed) pairs, sorted. The test is then answered
    /// from the few literals that hit in this event instead of value by value (a rule
    /// listing two hundred DLL names).
    pub scanned_values: Option<Box<[(AtomId, u8)]>>,
    /// Its place among the tests of its alternative as written (for explanations: the
    /// tests are evaluated cheapest first, see [`Test::cost`]).
    pub written_at: usize,
}

/// In which order compared literals are tried, by where they must occur (`need`): a whole
/// value first (0: it seldom holds, and a length tells most values apart), then a prefix
/// or suffix (1), then a search (2).
pub(crate) fn compare_order(need: u8) -> u8 {
    if need & HIT_ANY != 0 {
        2
    } else if need & (HIT_START | HIT_END) != 0 {
        1
    } else {
        0
    }
}

/// Fewest values for which a test is answered from the event's hits
/// ([`Test::scanned_values`]) rather than value by value.
const MANY_VALUES: usize = 8;

impl Test {
    /// A rough cost of evaluating the test, once every literal's `scanned` is known: the
    /// tests of an alternative (an `and`) are evaluated cheapest first, so a regex over a
    /// long call trace runs only when the exact `GrantedAccess` beside it holds.
    fn cost(&self, atoms: &[Atom]) -> u8 {
        fn value_cost(v: &ValueTest, atoms: &[Atom]) -> u8 {
            match v {
                ValueTest::Atom { atom, .. } if atoms[*atom as usize].scanned => 1,
                ValueTest::Atom { need, .. } => 2 + compare_order(*need),
                ValueTest::Empty | ValueTest::Null => 2,
                ValueTest::Cmp { .. } | ValueTest::Cidr { .. } | ValueTest::TimePart { .. } => 5,
                ValueTest::FieldRef { .. } | ValueTest::Glob { .. } | ValueTest::ClassRun(_) => 6,
                ValueTest::Regex { .. } => 7,
                ValueTest::Any(vs) => vs.iter().map(|v| value_cost(v, atoms)).max().unwrap_or(0),
            }
        }
        if self.exists.is_some() {
            return 0;
        }
        let cost = self
            .values
            .iter()
            .map(|v| value_cost(v, atoms))
            .max()
            .unwrap_or(0);
        // A keyword test that is not a scanned literal reads every value of the event.
        if self.field == KEYWORD_SLOT && cost > 1 {
            cost + 5
        } else {
            cost
        }
    }

    /// Fill in [`Test::scanned_values`] once every literal's `scanned` is known.
    fn index_scanned_values(&mut self, atoms: &[Atom]) {
        if self.all || self.field == KEYWORD_SLOT || self.values.len() < MANY_VALUES {
            return;
        }
        let pairs: Option<Vec<(AtomId, u8)>> = self
            .values
            .iter()
            .map(|v| match v {
                ValueTest::Atom { atom, need } if atoms[*atom as usize].scanned => {
                    Some((*atom, *need))
                }
                _ => None,
            })
            .collect();
        self.scanned_values = pairs.map(|mut p| {
            p.sort_unstable();
            p.dedup();
            p.into_boxed_slice()
        });
    }
}

/// A selection: OR over alternatives, each an AND of tests.
#[derive(Debug, Clone)]
pub(crate) struct CompiledSelection {
    pub name: String,
    pub alternatives: Vec<Vec<Test>>,
}

/// Metadata and logic of one rule.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// Rule id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Level.
    pub level: Level,
    /// Tags as written.
    pub tags: Vec<String>,
    /// ATT&CK technique ids.
    pub attack: Vec<String>,
    /// Campaign names (`campaign.<name>` tags).
    pub campaigns: Vec<String>,
    /// RSIT taxonomy, when the rule sets one.
    pub taxonomy: Option<Taxonomy>,
    /// TLP from a `tlp.<label>` tag, else GREEN.
    pub tlp: Tlp,
    /// Where the rule is defined.
    pub location: Location,
    /// `name`, by which correlation rules may refer to it.
    pub name: Option<String>,
    /// Correlation rules that use this rule's detections, with the event fields they need.
    pub correlation_uses: Vec<CorrelationUse>,
    /// Whether its detections are published on their own: false when every correlation
    /// rule that refers to it has `generate: false` (the specification's default).
    pub standalone: bool,
    pub(crate) selections: Vec<CompiledSelection>,
    pub(crate) condition: Condition,
    pub(crate) route: u32,
}

impl CompiledRule {
    /// Every test of every selection, in order (a test of several alternatives once each).
    pub(crate) fn tests(&self) -> impl Iterator<Item = &Test> {
        self.selections
            .iter()
            .flat_map(|s| s.alternatives.iter().flatten())
    }
}

/// One correlation rule's use of a detection rule: which event fields to copy into the
/// detection (`group-by`, after aliases, and `condition.field`).
#[derive(Debug, Clone)]
pub struct CorrelationUse {
    /// The correlation rule's id.
    pub correlation_id: String,
    /// (group-by name as the correlation writes it, event paths to read).
    pub group_fields: Vec<(String, Vec<String>)>,
    /// (condition field name, event paths to read).
    pub value_fields: Vec<(String, Vec<String>)>,
}

/// A route: the event condition of a logsource, and the rules that share it.
pub(crate) struct Route {
    /// AND over dimensions of OR over alternatives of AND of (routing field, value).
    pub condition: Vec<Vec<Vec<(u32, String)>>>,
    /// Rules evaluated on every event of the route (no prefilter set).
    pub always: Vec<RuleIdx>,
    pub description: String,
}

/// One field's literals, shared by every route: a field is scanned at most once per event.
///
/// The literals are searched for in their JSON-escaped form (`c:\\\\windows\\\\`), in the
/// value's text escaped the same way ([`tocsin_core::FieldValue::escaped_text`]): that is
/// nearly always the raw bytes of the event as received, so values need not be unescaped
/// to be scanned. An occurrence counts only where it starts at an escape boundary (the
/// `n` of an escaped line break `\\n` is not an `n`).
pub(crate) struct Scanner {
    pub field: FieldSlot,
    /// Literals searched for anywhere in the value.
    pub literals: LiteralSet,
    /// Literals only ever tested at one place of the value (the whole value, or the start
    /// or end for short ones): looked up there, not scanned for. Their pattern ids follow
    /// those of `literals`.
    pub anchored: Vec<AnchoredValues>,
    /// Pattern id → atoms with those bytes (case-insensitively).
    pub pattern_atoms: Lists<AtomId>,
    /// Routes with rules that test this field; the field is scanned only when one is active.
    pub routes: Vec<u32>,
    /// Every rule with a test of this field (for keywords: with a keyword search), sorted:
    /// the rules that read its hits. Where routing values rule all of them out, the field
    /// is not scanned ([`CompiledRules::route_tested_rules`]).
    pub readers: Vec<RuleIdx>,
    /// For keyword searches: a test over pieces of the keywords that appear verbatim in the
    /// raw JSON whenever the keyword appears in a value; when it finds nothing in the raw
    /// event, the value-by-value scan is skipped.
    pub presence: Option<KeywordPresence>,
}

/// Rules and indicators compiled for matching. Immutable; share it behind an `Arc` and
/// give each thread its own [`crate::MatchScratch`].
pub struct CompiledRules {
    pub(crate) rules: Vec<CompiledRule>,
    /// Per rule: a test its condition needs, checked before the rule is read.
    pub(crate) guards: Vec<Guard>,
    pub(crate) routes: Vec<Route>,
    pub(crate) atoms: Vec<Atom>,
    /// Atom → the field it is tested in.
    pub(crate) atom_fields: Vec<FieldSlot>,
    /// Atom → (rule, its route) for the rules whose prefilter set contains it.
    pub(crate) atom_rules: Lists<(RuleIdx, u32)>,
    /// One literal set per field, for all routes.
    pub(crate) scanners: Vec<Scanner>,
    pub(crate) regexes: Vec<Regex>,
    /// Per field slot: the event paths to read, first present wins.
    pub(crate) fields: Vec<Box<[FieldName]>>,
    /// Event fields that route conditions read; each is read once per event.
    pub(crate) route_fields: Vec<FieldName>,
    /// Per field slot, the index in `route_fields` of its one event path when that is a
    /// routing field (`u32::MAX` otherwise): the field's value, and so a comparison of it
    /// with literals, is the same for every event of a routing tuple.
    pub(crate) slot_route_field: Vec<u32>,
    /// The rules with a test of such a field, in order: when a tuple's scans are planned,
    /// those whose condition fails on the tuple's values alone are ruled out there (no
    /// field is scanned for them alone, and they are dropped from the candidates). Empty
    /// with [`MatchConfig::scan_every_literal`]: a calibration observes every literal in
    /// every event.
    pub(crate) route_tested_rules: Vec<RuleIdx>,
    pub(crate) iocs: IocTable,
    pub(crate) profile: Profile,
    /// Indicator fields resolved: (type, paths).
    pub(crate) indicator_fields: Vec<(tocsin_core::IndicatorType, Box<[FieldName]>)>,
    /// The profile's fields that list hashes (Sysmon `Hashes`), prepared.
    pub(crate) hash_list_fields: Box<[FieldName]>,
    pub(crate) not_applicable: usize,
    /// [`MatchConfig::scan_memo_slots`], for each new scratch space.
    pub(crate) scan_memo_slots: usize,
}

impl std::fmt::Debug for CompiledRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledRules")
            .field("rules", &self.rules.len())
            .field("routes", &self.routes.len())
            .field("atoms", &self.atoms.len())
            .field("regexes", &self.regexes.len())
            .field("indicators", &self.iocs.len())
            .finish()
    }
}

/// Counts describing a compiled set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileStats {
    /// Rules compiled.
    pub rules: usize,
    /// Distinct routes.
    pub routes: usize,
    /// Distinct literals tested.
    pub atoms: usize,
    /// Of those, the literals in the literal sets (searched for in every event); the others
    /// are compared when a rule that tests them is verified.
    pub scanned_atoms: usize,
    /// Regexes.
    pub regexes: usize,
    /// Rules with no prefilter (evaluated on every event of their route).
    pub unfiltered_rules: usize,
    /// Indicators loaded.
    pub indicators: usize,
    /// Rules set aside because their logsource is not covered by the profile.
    pub not_applicable: usize,
}

struct Builder<'p> {
    profile: &'p Profile,
    config: &'p MatchConfig,
    fields: Vec<Vec<String>>,
    field_names: Vec<String>,
    field_index: HashMap<String, FieldSlot>,
    atoms: Vec<Atom>,
    /// (field, route for keyword atoms only, bytes (lower-cased unless cased), cased) → atom.
    atom_index: HashMap<(FieldSlot, Option<u32>, Vec<u8>, bool), AtomId>,
    /// Field of each atom, and the routes of the rules that use it.
    atom_home: Vec<(FieldSlot, std::collections::BTreeSet<u32>)>,
    /// Per atom, the union of the hit bits its tests need (`HIT_ANY` for a glob's
    /// prefilter): an atom only ever needed as the whole value is looked up, not scanned for.
    atom_need: Vec<u8>,
    regexes: Vec<Regex>,
    routes: Vec<(RouteCondition, String)>,
    route_index: BTreeMap<RouteCondition, u32>,
}

/// An error for one rule, with the location of the test that caused it when known.
struct RuleProblem {
    code: &'static str,
    message: String,
    location: Option<Location>,
}

fn problem(code: &'static str, message: impl Into<String>) -> RuleProblem {
    RuleProblem {
        code,
        message: message.into(),
        location: None,
    }
}

impl Builder<'_> {
    /// The fields the profile routes events by (`Channel`, `EventID`), each once, in the
    /// order the routes first name them: the compiled routes refer to them by position.
    fn routing_fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = Vec::new();
        for (field, _) in self
            .routes
            .iter()
            .flat_map(|(condition, _)| condition.dimensions.iter().flatten().flatten())
        {
            if !fields.contains(&field.as_str()) {
                fields.push(field);
            }
        }
        fields
    }

    /// Per atom: whether it is only ever tested as the whole value of a field of few
    /// values (see [`crate::prior::atom_weights`]).
    fn categorical_atoms(&self) -> Vec<bool> {
        let routing = self.routing_fields();
        let routed = |slot: FieldSlot| {
            self.fields
                .get(slot as usize)
                .is_some_and(|paths| paths.iter().any(|p| routing.contains(&p.as_str())))
        };
        self.atoms
            .iter()
            .zip(&self.atom_home)
            .zip(&self.atom_need)
            .map(|((atom, (field, _)), &need)| {
                need == HIT_WHOLE
                    && (routed(*field)
                        || atom.bytes.eq_ignore_ascii_case(b"true")
                        || atom.bytes.eq_ignore_ascii_case(b"false"))
            })
            .collect()
    }

    /// Per atom: the share of routes whose rules test its field for a literal. A field
    /// tested under many logsources (`Image`) is in many kinds of events, one tested under
    /// few (`TargetFilename`) in few; and a field's literals are searched for in every
    /// event that has it, whichever rules need them.
    fn field_breadths(&self) -> Vec<f64> {
        let mut field_routes: HashMap<FieldSlot, std::collections::BTreeSet<u32>> = HashMap::new();
        for (field, routes) in &self.atom_home {
            field_routes.entry(*field).or_default().extend(routes);
        }
        let all_routes = self.routes.len().max(1) as f64;
        self.atom_home
            .iter()
            .map(|(field, _)| field_routes[field].len() as f64 / all_routes)
            .collect()
    }

    fn slot(&mut self, sigma_field: &str) -> FieldSlot {
        if let Some(&s) = self.field_index.get(sigma_field) {
            return s;
        }
        let s = self.fields.len() as FieldSlot;
        self.fields.push(self.profile.paths_for(sigma_field));
        self.field_names.push(sigma_field.to_owned());
        self.field_index.insert(sigma_field.to_owned(), s);
        s
    }

    fn atom(
        &mut self,
        route: u32,
        field: FieldSlot,
        bytes: &[u8],
        cased: bool,
        need: u8,
    ) -> AtomId {
        // Keyword atoms stay per route: a keyword scan reads the whole event, so its
        // literal set should hold only the keywords of the routes that are active.
        let keyword_route = (field == KEYWORD_SLOT).then_some(route);
        let bytes = if cased {
            bytes.to_vec()
        } else {
            bytes.to_ascii_lowercase()
        };
        let key = (field, keyword_route, bytes.clone(), cased);
        if let Some(&a) = self.atom_index.get(&key) {
            self.atom_home[a as usize].1.insert(route);
            self.atom_need[a as usize] |= need;
            return a;
        }
        let id = self.atoms.len() as AtomId;
        let rare = (0..bytes.len())
            .min_by_key(|&i| crate::literals::commonness(bytes[i].to_ascii_lowercase()))
            .unwrap_or(0) as u32;
        let escaped = json_escaped(&bytes);
        self.atoms.push(Atom {
            cased_escaped: (cased && escaped != bytes).then(|| escaped.into()),
            bytes: bytes.into(),
            cased,
            scanned: true,
            rare,
        });
        self.atom_home.push((field, [route].into_iter().collect()));
        self.atom_need.push(need);
        self.atom_index.insert(key, id);
        id
    }

    fn route(&mut self, rule: &SigmaRule) -> Result<u32, String> {
        let cond = self.profile.route_for(&rule.logsource)?;
        if let Some(&r) = self.route_index.get(&cond) {
            return Ok(r);
        }
        let id = self.routes.len() as u32;
        let ls = &rule.logsource;
        let description = [
            ls.product.as_deref().map(|p| format!("product:{p}")),
            ls.category.as_deref().map(|c| format!("category:{c}")),
            ls.service.as_deref().map(|s| format!("service:{s}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        self.routes.push((cond.clone(), description));
        self.route_index.insert(cond, id);
        Ok(id)
    }

    fn compile_rule(&mut self, rule: &SigmaRule, route: u32) -> Result<CompiledRule, RuleProblem> {
        let mut selections = Vec::new();
        for sel in &rule.selections {
            let mut alternatives = Vec::new();
            for alt in &sel.alternatives {
                let mut tests = Vec::new();
                for (written_at, t) in alt.iter().enumerate() {
                    let mut compiled = self.compile_test(t, route).map_err(|mut p| {
                        p.location = p.location.or_else(|| t.location.clone());
                        p
                    })?;
                    compiled.written_at = written_at;
                    tests.push(compiled);
                }
                alternatives.push(tests);
            }
            selections.push(CompiledSelection {
                name: sel.name.clone(),
                alternatives,
            });
        }
        let tlp = rule
            .tags
            .iter()
            .filter_map(|t| t.strip_prefix("tlp."))
            .filter_map(|t| t.parse::<Tlp>().ok())
            .max()
            .unwrap_or(Tlp::Green);
        Ok(CompiledRule {
            id: rule.id.clone(),
            title: rule.title.clone(),
            level: rule.level,
            tags: rule.tags.clone(),
            attack: rule.attack_techniques(),
            campaigns: rule.campaigns(),
            taxonomy: rule.taxonomy,
            tlp,
            location: rule.location.clone(),
            name: rule.name.clone(),
            correlation_uses: Vec::new(),
            standalone: true,
            selections,
            condition: rule.condition.clone(),
            route,
        })
    }

    fn compile_test(&mut self, t: &FieldTest, route: u32) -> Result<Test, RuleProblem> {
        let key = t.key();
        let slot = match &t.field {
            Some(field) => self.slot(field),
            None => KEYWORD_SLOT,
        };
        let keyword = slot == KEYWORD_SLOT;
        let cased = t.has(Modifier::Cased);
        let mut test = Test {
            field: slot,
            values: Vec::new(),
            all: t.has(Modifier::All),
            negate: t.has(Modifier::Neq),
            exists: None,
            key: key.clone(),
            scanned_values: None,
            written_at: 0,
        };
        if keyword
            && t.modifiers.iter().any(|m| {
                !matches!(
                    m,
                    Modifier::All
                        | Modifier::Cased
                        | Modifier::Contains
                        | Modifier::Re
                        | Modifier::ReIgnoreCase
                        | Modifier::ReMultiLine
                        | Modifier::ReDotAll
                )
            })
        {
            return Err(problem(
                "bad-modifier-chain",
                format!("'{key}': keyword searches take only all, cased, contains and re"),
            ));
        }
        if t.has(Modifier::Exists) {
            return match t.values.as_slice() {
                [SigmaValue::Bool(b)] if !keyword => {
                    test.exists = Some(*b);
                    Ok(test)
                }
                _ => Err(problem(
                    "bad-value",
                    format!("'{key}': exists takes true or false"),
                )),
            };
        }
        let cmp = t.modifiers.iter().find_map(|m| match m {
            Modifier::Lt => Some(CmpOp::Lt),
            Modifier::Lte => Some(CmpOp::Lte),
            Modifier::Gt => Some(CmpOp::Gt),
            Modifier::Gte => Some(CmpOp::Gte),
            _ => None,
        });
        let time_part = t.modifiers.iter().find_map(|m| match m {
            Modifier::Minute => Some(TimePart::Minute),
            Modifier::Hour => Some(TimePart::Hour),
            Modifier::Day => Some(TimePart::Day),
            Modifier::Week => Some(TimePart::Week),
            Modifier::Month => Some(TimePart::Month),
            Modifier::Year => Some(TimePart::Year),
            _ => None,
        });
        let ref_mode = if t.has(Modifier::Contains) {
            RefMode::Contains
        } else if t.has(Modifier::StartsWith) {
            RefMode::StartsWith
        } else if t.has(Modifier::EndsWith) {
            RefMode::EndsWith
        } else {
            RefMode::Equals
        };
        for v in &t.values {
            let vt = if let Some(part) = time_part {
                match v {
                    SigmaValue::Number { value, .. } => ValueTest::TimePart {
                        part,
                        op: cmp.unwrap_or(CmpOp::Eq),
                        value: *value,
                    },
                    _ => {
                        return Err(problem(
                            "bad-value",
                            format!(
                                "'{key}': a time-part modifier compares with a number, got {v}"
                            ),
                        ))
                    }
                }
            } else if let Some(op) = cmp {
                match v {
                    SigmaValue::Number { value, .. } => ValueTest::Cmp { op, value: *value },
                    _ => {
                        return Err(problem(
                            "bad-value",
                            format!("'{key}': numeric comparison needs a number, got {v}"),
                        ))
                    }
                }
            } else if t.has(Modifier::Cidr) {
                let SigmaValue::String(s) = v else {
                    return Err(problem(
                        "bad-value",
                        format!("'{key}': cidr needs a network"),
                    ));
                };
                let text = s.to_string();
                let (network, prefix) = parse_cidr(&text).ok_or_else(|| {
                    problem(
                        "bad-value",
                        format!("'{key}': '{text}' is not a CIDR network"),
                    )
                })?;
                ValueTest::Cidr { network, prefix }
            } else if t.has(Modifier::FieldRef) {
                let name = match v {
                    SigmaValue::String(s) => s.as_literal().map(str::to_owned),
                    _ => None,
                };
                let Some(name) = name.filter(|n| !n.is_empty()) else {
                    return Err(problem(
                        "bad-value",
                        format!("'{key}': fieldref names a field, got {v}"),
                    ));
                };
                ValueTest::FieldRef {
                    field: self.slot(&name),
                    mode: ref_mode,
                    cased,
                }
            } else if t.has(Modifier::Re) {
                let SigmaValue::String(s) = v else {
                    return Err(problem("bad-value", format!("'{key}': re needs a string")));
                };
                let written = s.as_literal().unwrap_or_default();
                let ascii = pcre_ascii_classes(written);
                let pattern = ascii.as_str();
                let syntax = syntax::Config::new()
                    .case_insensitive(t.has(Modifier::ReIgnoreCase))
                    .multi_line(t.has(Modifier::ReMultiLine))
                    .dot_matches_new_line(t.has(Modifier::ReDotAll));
                // Parsed once: the syntax tree gives the prefilter and builds the regex.
                let bad_regex = |e: &dyn std::fmt::Display| {
                    problem(
                        "bad-regex",
                        format!("'{key}': regex '{pattern}' cannot be compiled: {e}"),
                    )
                };
                let hir = syntax::parse_with(pattern, &syntax).map_err(|e| bad_regex(&e))?;
                self.regex_test(&hir, route, slot, keyword)
                    .map_err(|e| bad_regex(&e))?
            } else {
                let s = match v {
                    SigmaValue::Null if keyword => {
                        return Err(problem(
                            "bad-value",
                            format!("'{key}': null is not a keyword"),
                        ))
                    }
                    SigmaValue::Null => {
                        test.values.push(ValueTest::Null);
                        continue;
                    }
                    SigmaValue::String(s) => s.clone(),
                    SigmaValue::Number { text, .. } => SigmaString::literal(text),
                    SigmaValue::Bool(b) => SigmaString::literal(if *b { "true" } else { "false" }),
                };
                let variants = self.transform(t, &key, s)?;
                let mut tests = Vec::new();
                for mut s in variants {
                    if keyword || t.has(Modifier::Contains) {
                        s.star_before();
                        s.star_after();
                    } else if t.has(Modifier::StartsWith) {
                        s.star_after();
                    } else if t.has(Modifier::EndsWith) {
                        s.star_before();
                    }
                    // Letters outside ASCII: one literal per case spelling, or past
                    // their limit a case-insensitive regex (`None` when not needed).
                    let caseless = (!cased && has_unicode_case(&s))
                        .then(|| case_spellings(&s, MAX_CASE_SPELLINGS));
                    match caseless {
                        None => tests.push(self.string_test(&s, route, slot, cased)),
                        Some(Some(spellings)) => {
                            for spelling in &spellings {
                                tests.push(self.string_test(spelling, route, slot, cased));
                            }
                        }
                        Some(None) => {
                            let test = self.caseless_unicode_test(&s, route, slot, keyword);
                            tests.push(test.map_err(|e| {
                                problem(
                                    "bad-value",
                                    format!("'{key}': '{s}' cannot be matched without regard to case: {e}"),
                                )
                            })?);
                        }
                    }
                }
                if tests.len() == 1 {
                    tests.pop().unwrap_or(ValueTest::Empty)
                } else {
                    ValueTest::Any(tests)
                }
            };
            test.values.push(vt);
        }
        Ok(test)
    }

    /// Apply the value-changing modifiers, in the order written: placeholders (`expand`),
    /// `windash`, UTF-16 encodings, `base64` / `base64offset`.
    fn transform(
        &self,
        t: &FieldTest,
        key: &str,
        value: SigmaString,
    ) -> Result<Vec<SigmaString>, RuleProblem> {
        enum Form {
            Text(SigmaString),
            Bytes(Vec<u8>),
        }
        let literal_of = |s: &SigmaString, m: Modifier| -> Result<String, RuleProblem> {
            s.as_literal().map(str::to_owned).ok_or_else(|| {
                problem(
                    "bad-value",
                    format!(
                        "'{key}': '{s}' has wildcards, which '{}' cannot encode",
                        m.name()
                    ),
                )
            })
        };
        let too_many = |limit: usize| {
            problem(
                "limit",
                format!("'{key}': expands into more than {limit} values"),
            )
        };
        let mut forms = vec![Form::Text(value)];
        if t.has(Modifier::Expand) {
            let mut expanded = Vec::new();
            for f in forms {
                let Form::Text(s) = f else { continue };
                for e in
                    expand_placeholders(&s, &self.config.placeholders, self.config.max_expansions)
                        .map_err(|m| problem("unknown-placeholder", format!("'{key}': {m}")))?
                {
                    expanded.push(Form::Text(e));
                }
            }
            forms = expanded;
        }
        for &m in &t.modifiers {
            forms = match m {
                Modifier::Windash => {
                    let mut out = Vec::new();
                    for f in forms {
                        match f {
                            Form::Text(s) => {
                                let variants = windash_variants(&s, self.config.max_expansions)
                                    .ok_or_else(|| too_many(self.config.max_expansions))?;
                                out.extend(variants.into_iter().map(Form::Text));
                            }
                            b => out.push(b),
                        }
                    }
                    out
                }
                Modifier::Utf16Le | Modifier::Utf16Be | Modifier::Utf16 => {
                    let mut out = Vec::new();
                    for f in forms {
                        let Form::Text(s) = f else { continue };
                        let text = literal_of(&s, m)?;
                        let mut bytes = Vec::new();
                        if m == Modifier::Utf16 {
                            bytes.extend_from_slice(&[0xFF, 0xFE]);
                        }
                        for unit in text.encode_utf16() {
                            let pair = if m == Modifier::Utf16Be {
                                unit.to_be_bytes()
                            } else {
                                unit.to_le_bytes()
                            };
                            bytes.extend_from_slice(&pair);
                        }
                        out.push(Form::Bytes(bytes));
                    }
                    out
                }
                Modifier::Base64 | Modifier::Base64Offset => {
                    let mut out = Vec::new();
                    for f in forms {
                        let bytes = match f {
                            Form::Text(s) => literal_of(&s, m)?.into_bytes(),
                            Form::Bytes(b) => b,
                        };
                        if m == Modifier::Base64 {
                            out.push(Form::Text(SigmaString::literal(&base64(&bytes))));
                        } else {
                            for v in base64_offsets(&bytes) {
                                out.push(Form::Text(SigmaString::literal(&v)));
                            }
                        }
                    }
                    out
                }
                _ => forms,
            };
            if forms.len() > self.config.max_expansions {
                return Err(too_many(self.config.max_expansions));
            }
        }
        forms
            .into_iter()
            .map(|f| match f {
                Form::Text(s) => Ok(s),
                Form::Bytes(_) => Err(problem(
                    "bad-modifier-chain",
                    format!("'{key}': UTF-16 bytes must be base64-encoded to be matched"),
                )),
            })
            .collect()
    }

    /// A regular expression's test (or a run of one class, counted), prefiltered by the
    /// literals every match contains (field tests only: keyword regexes keep scanning
    /// every value).
    fn regex_test(
        &mut self,
        hir: &regex_syntax::hir::Hir,
        route: u32,
        slot: FieldSlot,
        keyword: bool,
    ) -> Result<ValueTest, String> {
        if let Some(run) = ClassRun::of(hir) {
            return Ok(ValueTest::ClassRun(run));
        }
        let regex = Regex::builder()
            .configure(
                Regex::config()
                    .nfa_size_limit(Some(self.config.regex_size_limit))
                    .hybrid_cache_capacity(2 * (1 << 20)),
            )
            .build_from_hir(hir)
            .map_err(|e| e.to_string())?;
        let prefilters = if keyword {
            Box::default()
        } else {
            required_literal_sets(hir)
                .iter()
                .map(|set| {
                    set.iter()
                        .map(|l| self.atom(route, slot, l, false, HIT_ANY))
                        .collect()
                })
                .collect()
        };
        self.regexes.push(regex);
        Ok(ValueTest::Regex {
            index: self.regexes.len() as u32 - 1,
            prefilters,
        })
    }

    /// A string with letters outside ASCII, matched without regard to case as the
    /// specification asks of every value (`\Système` finds `AUTORITE NT\SYSTÈME`,
    /// `СИСТЕМА` finds `система`): the literal scans fold ASCII letters only, so the value
    /// becomes a case-insensitive regular expression of its text and wildcards, anchored
    /// as the value is, prefiltered by the literals it requires (its ASCII runs; field
    /// tests only, as for any regex).
    fn caseless_unicode_test(
        &mut self,
        s: &SigmaString,
        route: u32,
        slot: FieldSlot,
        keyword: bool,
    ) -> Result<ValueTest, String> {
        // Searched for, as regexes are: a value's leading and trailing `*` leave that end
        // open, where `.*` would keep the regex engine from looking for its literal first.
        let parts = s.parts.as_slice();
        let open_start = matches!(parts.first(), Some(StrPart::AnyRun));
        let open_end = parts.len() > 1 && matches!(parts.last(), Some(StrPart::AnyRun));
        let inner = &parts[usize::from(open_start)..parts.len() - usize::from(open_end)];
        let mut pattern = String::from(if open_start { "" } else { "^" });
        for part in inner {
            match part {
                StrPart::Literal(l) => pattern.push_str(&regex_syntax::escape(l)),
                StrPart::AnyRun => pattern.push_str(".*"),
                StrPart::AnyOne => pattern.push('.'),
            }
        }
        if !open_end {
            pattern.push('$');
        }
        let syntax = syntax::Config::new()
            .case_insensitive(true)
            .dot_matches_new_line(true);
        let hir = syntax::parse_with(&pattern, &syntax).map_err(|e| e.to_string())?;
        self.regex_test(&hir, route, slot, keyword)
    }

    fn string_test(
        &mut self,
        s: &SigmaString,
        route: u32,
        field: FieldSlot,
        cased: bool,
    ) -> ValueTest {
        use StrPart::*;
        let (lit, need) = match s.parts.as_slice() {
            [] => return ValueTest::Empty,
            [Literal(l)] => (l, HIT_WHOLE),
            [Literal(l), AnyRun] => (l, HIT_START),
            [AnyRun, Literal(l)] => (l, HIT_END),
            [AnyRun, Literal(l), AnyRun] => (l, HIT_ANY),
            parts => {
                let longest = parts
                    .iter()
                    .filter_map(|p| match p {
                        Literal(l) => Some(l),
                        _ => None,
                    })
                    .max_by_key(|l| l.len());
                let prefilter =
                    longest.map(|l| self.atom(route, field, l.as_bytes(), cased, HIT_ANY));
                let glob_parts = parts
                    .iter()
                    .map(|p| match p {
                        Literal(l) => GlobPart::Literal(l.as_bytes().into()),
                        AnyRun => GlobPart::AnyRun,
                        AnyOne => GlobPart::AnyOne,
                    })
                    .collect();
                return ValueTest::Glob {
                    glob: Glob::new(glob_parts, cased),
                    prefilter,
                };
            }
        };
        let atom = self.atom(route, field, lit.as_bytes(), cased, need);
        ValueTest::Atom { atom, need }
    }
}

/// At most this many spellings of a value by the cases of its letters outside ASCII
/// ([`case_spellings`]); a value with more (a word in Cyrillic) becomes a case-insensitive
/// regular expression instead.
const MAX_CASE_SPELLINGS: usize = 16;

/// The spellings of `s` by the cases of its letters outside ASCII (`Système`, `SystÈme`),
/// each letter in each of its one-character case forms, every combination: the literal
/// scans fold ASCII letters themselves, so these cover the value without regard to case
/// and keep it a literal that is scanned for. `None` past `limit` spellings.
fn case_spellings(s: &SigmaString, limit: usize) -> Option<Vec<SigmaString>> {
    respell(s, limit, |chars, i| {
        let c = chars[i];
        let mut forms = vec![c];
        if !c.is_ascii() {
            for form in [one_char(c.to_lowercase()), one_char(c.to_uppercase())]
                .into_iter()
                .flatten()
            {
                if !forms.contains(&form) {
                    forms.push(form);
                }
            }
        }
        forms
    })
}

/// Every spelling of `s` with each character of its literal parts replaced by each of
/// its `forms` (given the part's characters and the character's index; one form keeps
/// the character as it is), all the combinations; wildcards are kept. `None` past `limit`
/// spellings. The `windash` variants and the case spellings are made so.
fn respell(
    s: &SigmaString,
    limit: usize,
    forms: impl Fn(&[char], usize) -> Vec<char>,
) -> Option<Vec<SigmaString>> {
    let mut out = vec![SigmaString::default()];
    for part in &s.parts {
        let StrPart::Literal(lit) = part else {
            out.iter_mut().for_each(|o| o.parts.push(part.clone()));
            continue;
        };
        let chars: Vec<char> = lit.chars().collect();
        // The characters since the last one with several forms, the same in every spelling.
        let mut run = String::new();
        for i in 0..chars.len() {
            let forms = forms(&chars, i);
            if let [only] = forms.as_slice() {
                run.push(*only);
                continue;
            }
            if out.len() * forms.len() > limit {
                return None;
            }
            out = out
                .iter()
                .flat_map(|o| {
                    forms.iter().map(|&form| {
                        let mut spelling = o.clone();
                        push_literal(&mut spelling, &format!("{run}{form}"));
                        spelling
                    })
                })
                .collect();
            run.clear();
        }
        if !run.is_empty() {
            out.iter_mut().for_each(|o| push_literal(o, &run));
        }
    }
    Some(out)
}

/// The one character of a case mapping; `None` when it maps to several (`ß` to `SS`).
fn one_char(mut chars: impl Iterator<Item = char>) -> Option<char> {
    let first = chars.next()?;
    chars.next().is_none().then_some(first)
}

/// Whether a literal part of `s` holds a letter outside ASCII that has another case
/// (`è`/`È`, `с`/`С`): matching it without regard to case takes Unicode's case folding.
fn has_unicode_case(s: &SigmaString) -> bool {
    let cased = |c: char| {
        !c.is_ascii()
            && (c.to_lowercase().ne(std::iter::once(c)) || c.to_uppercase().ne(std::iter::once(c)))
    };
    s.parts
        .iter()
        .any(|p| matches!(p, StrPart::Literal(l) if l.chars().any(cased)))
}

/// The `windash` variants of a value: each `-` or `/` that starts a command-line flag (after
/// the start or a character that is not a word character, before a word character, as
/// pySigma's `\B[-/]\b`) is replaced by each of `-`, `/`, `–`, `—`, `―`, every flag
/// independently of the others: all the combinations, as the specification asks, so that
/// `psexec -s /i` is found by ` -s -i`. `None` when there would be more than `limit`.
fn windash_variants(s: &SigmaString, limit: usize) -> Option<Vec<SigmaString>> {
    const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    let word = |c: char| c.is_alphanumeric() || c == '_';
    respell(s, limit, |chars, i| {
        let c = chars[i];
        let flag_start = (c == '-' || c == '/')
            && (i == 0 || !word(chars[i - 1]))
            && chars.get(i + 1).is_some_and(|&n| word(n));
        if flag_start {
            DASHES.to_vec()
        } else {
            vec![c]
        }
    })
}

/// Sigma regexes are PCRE, where `\w`, `\d`, `\s`, their negations and `\b` are ASCII;
/// Rust's are Unicode (and `\w{1,64}` then compiles to a huge automaton). Rewrite them to
/// their ASCII forms, inside brackets too, so that both the meaning and the size match
/// PCRE: `\w` becomes `(?-u:\w)`, `\W` `[^0-9A-Za-z_]` (a character that is not an ASCII
/// word character, letters outside ASCII included, as PCRE reads it), `\b` `(?-u:\b)`.
pub(crate) fn pcre_ascii_classes(pattern: &str) -> String {
    /// The members of each ASCII class, as written inside brackets.
    fn members(class: char) -> Option<&'static str> {
        match class.to_ascii_lowercase() {
            'w' => Some("0-9A-Za-z_"),
            'd' => Some("0-9"),
            's' => Some(r"\t\n\x0B\x0C\r "),
            _ => None,
        }
    }
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => match members(e) {
                    Some(_) if !in_class && e.is_ascii_lowercase() => {
                        out.push_str("(?-u:\\");
                        out.push(e);
                        out.push(')');
                    }
                    Some(set) if e.is_ascii_lowercase() => out.push_str(set),
                    // A negation: the characters outside the set (inside brackets, a
                    // nested class, which Rust unites with the rest).
                    Some(set) => {
                        out.push_str("[^");
                        out.push_str(set);
                        out.push(']');
                    }
                    None if e == 'b' && !in_class => out.push_str(r"(?-u:\b)"),
                    None => {
                        out.push('\\');
                        out.push(e);
                    }
                },
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A ']' right after '[' or '[^' is literal.
                let rest = chars.as_str();
                if let Some(r) = rest.strip_prefix('^') {
                    out.push('^');
                    chars = r.chars();
                }
                if chars.as_str().starts_with(']') {
                    out.push(']');
                    chars.next();
                }
            }
            // Inside brackets, a POSIX class (`[:alpha:]`) is kept: Rust reads it alike.
            '[' if chars.as_str().starts_with(':') && chars.as_str().contains(":]") => {
                let rest = chars.as_str();
                let end = rest.find(":]").unwrap_or_default() + 2;
                out.push('[');
                out.push_str(&rest[..end]);
                chars = rest[end..].chars();
            }
            // Any other '[' inside brackets is a literal for PCRE, a nested class for Rust.
            '[' => out.push_str(r"\["),
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` in canonical JSON-escaped form ([`tocsin_core::escape_json_into`]).
fn json_escaped(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    tocsin_core::escape_json_into(text, &mut out);
    out
}

/// Whether JSON writers write `b` as it is (ASCII letters, digits and a few safe
/// punctuation marks): keywords are searched for in the raw event by their runs of these.
pub(crate) fn verbatim_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" .,:;-_=+*!?#$%()[]{}@|~^`".contains(&b)
}

/// The longest run of a keyword that JSON writers never escape (ASCII letters, digits and
/// a few safe punctuation marks), so that it appears verbatim in the raw event whenever
/// the keyword appears in one of its values. Empty when there is no such run.
fn verbatim_piece(pattern: &[u8]) -> Vec<u8> {
    pattern
        .split(|&b| !verbatim_safe(b))
        .max_by_key(|run| run.len())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Per atom: whether the keyword presence test must look for it. When it finds none of
/// these, the keyword scan is skipped and every keyword literal reads as absent; each
/// rule must then answer as it would have, which takes, per rule:
///
/// - where its condition needs a keyword test to hold: that one test's literals (without
///   them the rule fails either way), the test whose literals are rarest by the length of
///   their verbatim pieces;
/// - otherwise, per keyword test, all of its literals, or, for a test that needs every
///   value (`|all`), one value's: without them the test fails either way.
///
/// Of ProxyLogon's `keywords_cmdlet|all: [OabVirtualDirectory, ' -ExternalUrl ']` and
/// `keywords_params: [..., 'http://f/<script', ...]`, both needed, that takes
/// `OabVirtualDirectory`, not the `script` (the verbatim piece of `http://f/<script`)
/// that a fifth of the OTRF events hold. Atoms of other tests are not keyword atoms.
fn presence_atoms(rules: &[CompiledRule], atoms: &[Atom]) -> Vec<bool> {
    let mut needed = vec![false; atoms.len()];
    for rule in rules {
        let mut required = Vec::new();
        crate::guard::needed_tests(&rule.condition, &rule.selections, &mut required);
        let rarest = required
            .into_iter()
            .filter(|t| t.field == KEYWORD_SLOT)
            .filter_map(|t| keyword_presence_atoms(t, atoms))
            .max_by_key(|found| weakest_piece(found, atoms));
        if let Some(found) = rarest {
            found.iter().for_each(|&a| needed[a as usize] = true);
            continue;
        }
        let keyword_tests = rule.tests().filter(|t| t.field == KEYWORD_SLOT);
        for test in keyword_tests {
            // A test that can hold without literals (a value that is a glob or a regular
            // expression without one every match contains) still reads the hits of the
            // literals it names, and its rule may be a candidate by them: all of them.
            let found = keyword_presence_atoms(test, atoms).unwrap_or_else(|| {
                let mut all = Vec::new();
                test.values
                    .iter()
                    .for_each(|v| prefilter_atoms(v, &mut all));
                all
            });
            found.iter().for_each(|&a| needed[a as usize] = true);
        }
    }
    needed
}

/// The literals of a keyword test without which it fails: all of its values' (see
/// [`needed_literals`]), or for a test needing every value (`|all`), those of the value
/// with the rarest by [`weakest_piece`]. `None` when the test can hold without any
/// literal being present (a value that is a regular expression without a literal every
/// match contains, a glob of wildcards alone).
fn keyword_presence_atoms(test: &Test, atoms: &[Atom]) -> Option<Vec<AtomId>> {
    let per_value = test.values.iter().map(needed_literals);
    if test.all {
        per_value
            .flatten()
            .filter(|found| !found.is_empty())
            .max_by_key(|found| weakest_piece(found, atoms))
    } else {
        per_value
            .collect::<Option<Vec<_>>>()
            .map(|found| found.concat())
    }
}

/// Literals of which one occurs in any keyword value that `value` holds for: a literal's
/// own, a glob's prefilter literal (a run of it between wildcards), every variant's for a
/// list of variants. `None` when the value can hold without any (a keyword regex: those
/// keep no required literals, see `Builder::regex_test`). [`need_value`] for keyword
/// values, where no regex set is to be chosen and an empty list of variants needs nothing.
fn needed_literals(value: &ValueTest) -> Option<Vec<AtomId>> {
    match value {
        ValueTest::Atom { atom, .. } => Some(vec![*atom]),
        ValueTest::Glob {
            prefilter: Some(atom),
            ..
        } => Some(vec![*atom]),
        ValueTest::Any(variants) => {
            let mut out = Vec::new();
            for v in variants {
                out.extend(needed_literals(v)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// How rare a set of literals is, any one of which may occur: the length of the shortest
/// of their verbatim pieces (what the presence test searches the raw event for).
fn weakest_piece(found: &[AtomId], atoms: &[Atom]) -> usize {
    found
        .iter()
        .map(|&a| verbatim_piece(&atoms[a as usize].bytes).len())
        .min()
        .unwrap_or(0)
}

/// The three `base64offset` variants: the value's Base64 text as it appears when the value
/// starts at offset 0, 1 or 2 of a Base64-encoded blob, with the characters that depend on
/// the surrounding bytes cut off (the algorithm of the Sigma reference implementation).
pub(crate) fn base64_offsets(value: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_CUT: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let mut shifted = vec![b' '; i];
            shifted.extend_from_slice(value);
            let encoded = base64(&shifted);
            let cut = END_CUT[(value.len() + i) % 3];
            let end = encoded.len().saturating_sub(cut);
            encoded.get(START[i]..end).unwrap_or_default().to_owned()
        })
        .filter(|v| !v.is_empty())
        .collect()
}

/// Replace `%name%` placeholders in the literal parts by each of their values.
fn expand_placeholders(
    s: &SigmaString,
    table: &BTreeMap<String, Vec<String>>,
    limit: usize,
) -> Result<Vec<SigmaString>, String> {
    let mut out = vec![SigmaString::default()];
    for part in &s.parts {
        let StrPart::Literal(lit) = part else {
            for o in &mut out {
                o.parts.push(part.clone());
            }
            continue;
        };
        // Split the literal into text and placeholder names.
        let mut pieces: Vec<Result<&str, &str>> = Vec::new();
        let mut rest = lit.as_str();
        while let Some(start) = rest.find('%') {
            match rest[start + 1..].find('%') {
                Some(len)
                    if len > 0
                        && rest[start + 1..start + 1 + len]
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
                {
                    pieces.push(Ok(&rest[..start]));
                    pieces.push(Err(&rest[start + 1..start + 1 + len]));
                    rest = &rest[start + 2 + len..];
                }
                _ => {
                    pieces.push(Ok(&rest[..start + 1]));
                    rest = &rest[start + 1..];
                }
            }
        }
        pieces.push(Ok(rest));
        for piece in pieces {
            match piece {
                Ok("") => {}
                Ok(text) => {
                    for o in &mut out {
                        push_literal(o, text);
                    }
                }
                Err(name) => {
                    let values = table.get(name).ok_or_else(|| {
                        format!(
                            "placeholder %{name}% has no values (define it in placeholders.yaml)"
                        )
                    })?;
                    let mut next = Vec::new();
                    for o in &out {
                        for v in values {
                            // A placeholder value may itself hold wildcards.
                            let mut e = o.clone();
                            for p in SigmaString::parse(v).parts {
                                match p {
                                    StrPart::Literal(l) => push_literal(&mut e, &l),
                                    p => e.parts.push(p),
                                }
                            }
                            next.push(e);
                        }
                    }
                    if next.len() > limit {
                        return Err(format!("placeholders expand into more than {limit} values"));
                    }
                    out = next;
                }
            }
        }
    }
    Ok(out)
}

fn push_literal(s: &mut SigmaString, text: &str) {
    if let Some(StrPart::Literal(last)) = s.parts.last_mut() {
        last.push_str(text);
    } else {
        s.parts.push(StrPart::Literal(text.to_owned()));
    }
}

/// Apply global filters: each filtered rule gets the filter's selections and its condition
/// becomes `rule and not filter`. Returns the rules to compile and diagnostics for filters
/// that name rules which are not loaded or whose logsource does not cover them. Only the
/// rules a filter changes are copied (a copy of the whole SigmaHQ set was 6.6 MB of the
/// compilation's peak).
pub fn apply_filters<'r>(
    rules: &'r [SigmaRule],
    filters: &[SigmaFilter],
) -> (Vec<Cow<'r, SigmaRule>>, Vec<Diagnostic>) {
    let mut out: Vec<Cow<'r, SigmaRule>> = rules.iter().map(Cow::Borrowed).collect();
    let mut diags = Vec::new();
    for f in filters {
        let tag = |d: Diagnostic| d.for_rule(f.id.as_deref(), Some(&f.title));
        for target in &f.rules {
            let found: Vec<usize> = out
                .iter()
                .enumerate()
                .filter(|(_, r)| &r.id == target || r.name.as_deref() == Some(target.as_str()))
                .map(|(i, _)| i)
                .collect();
            if found.is_empty() {
                diags.push(tag(Diagnostic::warning(
                    f.location.clone(),
                    "filter-target-missing",
                    format!("filter names rule '{target}', which is not loaded"),
                )));
            }
            for i in found {
                let rule = &out[i];
                let covers = [
                    (&f.logsource.category, &rule.logsource.category),
                    (&f.logsource.product, &rule.logsource.product),
                    (&f.logsource.service, &rule.logsource.service),
                ]
                .iter()
                .all(|(fv, rv)| fv.is_none() || fv == rv);
                if !covers {
                    diags.push(tag(Diagnostic::warning(
                        f.location.clone(),
                        "filter-logsource",
                        format!(
                            "filter's logsource does not cover rule '{target}'; not applied to it"
                        ),
                    )));
                    continue;
                }
                let rule = out[i].to_mut();
                let offset = rule.selections.len();
                for sel in &f.selections {
                    let mut sel = sel.clone();
                    sel.name = format!(
                        "_filter[{}].{}",
                        f.id.as_deref().unwrap_or(&f.title),
                        sel.name
                    );
                    rule.selections.push(sel);
                }
                let filter_cond = shift(&f.condition, offset);
                let own = std::mem::replace(&mut rule.condition, Condition::And(vec![]));
                rule.condition = Condition::And(vec![own, Condition::Not(Box::new(filter_cond))]);
            }
        }
    }
    (out, diags)
}

fn shift(c: &Condition, by: usize) -> Condition {
    match c {
        Condition::Selection(i) => Condition::Selection(i + by),
        Condition::Not(x) => Condition::Not(Box::new(shift(x, by))),
        Condition::And(xs) => Condition::And(xs.iter().map(|x| shift(x, by)).collect()),
        Condition::Or(xs) => Condition::Or(xs.iter().map(|x| shift(x, by)).collect()),
        Condition::AnyOf(xs) => Condition::AnyOf(xs.iter().map(|x| x + by).collect()),
        Condition::AllOf(xs) => Condition::AllOf(xs.iter().map(|x| x + by).collect()),
    }
}

pub(crate) fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (
            a.trim().parse::<IpAddr>().ok()?,
            p.trim().parse::<u8>().ok()?,
        ),
        None => {
            let a = text.trim().parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (prefix <= max).then_some((addr, prefix))
}

pub(crate) fn in_cidr(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            mask_v4(u32::from(a), prefix) == mask_v4(u32::from(n), prefix)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            mask_v6(u128::from(a), prefix) == mask_v6(u128::from(n), prefix)
        }
        _ => false,
    }
}

/// Prefilter analysis: a set of atoms of which one must hit for `cond` to hold, or `None`
/// when no such set exists (negations, regex-only or null tests).
fn need_condition(
    rule: &CompiledRule,
    cond: &Condition,
    atoms: &[Atom],
    weights: AtomWeights<'_>,
) -> Option<Vec<AtomId>> {
    match cond {
        Condition::Selection(i) => need_selection(&rule.selections[*i], atoms, weights),
        Condition::Not(_) => None,
        Condition::And(cs) => best(
            cs.iter().map(|c| need_condition(rule, c, atoms, weights)),
            atoms,
            weights,
        ),
        Condition::Or(cs) => union(cs.iter().map(|c| need_condition(rule, c, atoms, weights))),
        Condition::AnyOf(sels) => union(
            sels.iter()
                .map(|&i| need_selection(&rule.selections[i], atoms, weights)),
        ),
        Condition::AllOf(sels) => best(
            sels.iter()
                .map(|&i| need_selection(&rule.selections[i], atoms, weights)),
            atoms,
            weights,
        ),
    }
}

fn need_selection(
    sel: &CompiledSelection,
    atoms: &[Atom],
    weights: AtomWeights<'_>,
) -> Option<Vec<AtomId>> {
    union(sel.alternatives.iter().map(|alt| {
        best(
            alt.iter().map(|t| need_test(t, atoms, weights)),
            atoms,
            weights,
        )
    }))
}

fn need_test(t: &Test, atoms: &[Atom], weights: AtomWeights<'_>) -> Option<Vec<AtomId>> {
    if t.negate || t.exists.is_some() || t.values.is_empty() {
        return None;
    }
    if t.all {
        best(
            t.values.iter().map(|v| need_value(v, atoms, weights)),
            atoms,
            weights,
        )
    } else {
        union(t.values.iter().map(|v| need_value(v, atoms, weights)))
    }
}

/// The atoms of which one must hit for `v` to hold, or `None` when there is no such set
/// (of a regex's sets, the best by `weights`).
fn need_value(v: &ValueTest, atoms: &[Atom], weights: AtomWeights<'_>) -> Option<Vec<AtomId>> {
    match v {
        ValueTest::Atom { atom, .. } => Some(vec![*atom]),
        ValueTest::Glob { prefilter, .. } => prefilter.map(|a| vec![a]),
        ValueTest::Regex { prefilters, .. } => best(
            prefilters.iter().map(|set| Some(set.to_vec())),
            atoms,
            weights,
        ),
        ValueTest::Any(vs) => union(vs.iter().map(|v| need_value(v, atoms, weights))),
        _ => None,
    }
}

/// The atoms whose hits verification of `v` reads: its own, a regex's required ones,
/// those of every variant of a list.
fn verified_atoms(v: &ValueTest, out: &mut Vec<AtomId>) {
    match v {
        ValueTest::Atom { atom, .. } => out.push(*atom),
        ValueTest::Regex { prefilters, .. } => out.extend(prefilters.iter().flatten()),
        ValueTest::Any(vs) => vs.iter().for_each(|v| verified_atoms(v, out)),
        _ => {}
    }
}

/// Every atom `v` names as a literal to search for: its own, a glob's, those of all of a
/// regex's sets, those of every variant of a list (even where another variant has none,
/// so that no prefilter set comes of it): what the prior counts as tested.
pub(crate) fn prefilter_atoms(v: &ValueTest, out: &mut Vec<AtomId>) {
    match v {
        ValueTest::Atom { atom, .. } => out.push(*atom),
        ValueTest::Glob { prefilter, .. } => out.extend(*prefilter),
        ValueTest::Regex { prefilters, .. } => out.extend(prefilters.iter().flatten()),
        ValueTest::Any(vs) => vs.iter().for_each(|v| prefilter_atoms(v, out)),
        _ => {}
    }
}

fn union(sets: impl Iterator<Item = Option<Vec<AtomId>>>) -> Option<Vec<AtomId>> {
    let mut out = Vec::new();
    let mut any = false;
    for s in sets {
        out.extend(s?);
        any = true;
    }
    if !any {
        return None;
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// The most selective of several alternatives that must all hold: the one whose atoms
/// occur in the fewest events by `weights` (summed; a hair per atom breaks ties towards
/// fewer), then the one with fewer atoms and a longer shortest atom, then the one whose
/// fields are the narrowest.
fn best(
    sets: impl Iterator<Item = Option<Vec<AtomId>>>,
    atoms: &[Atom],
    weights: AtomWeights<'_>,
) -> Option<Vec<AtomId>> {
    let shape = |s: &Vec<AtomId>| {
        let shortest = s
            .iter()
            .map(|&a| atoms[a as usize].bytes.len())
            .min()
            .unwrap_or(0);
        (s.len(), usize::MAX - shortest)
    };
    let share = |s: &Vec<AtomId>| {
        s.iter()
            .map(|&a| weights.share[a as usize] + 1e-9)
            .sum::<f64>()
    };
    let breadth = |s: &Vec<AtomId>| s.iter().map(|&a| weights.breadth[a as usize]).sum::<f64>();
    sets.flatten().min_by(|x, y| {
        share(x)
            .total_cmp(&share(y))
            .then_with(|| shape(x).cmp(&shape(y)))
            .then_with(|| breadth(x).total_cmp(&breadth(y)))
    })
}

/// Per field slot, the index of its one path in `route_fields`, `u32::MAX` when it has
/// other paths or its path routes nothing (see [`CompiledRules::slot_route_field`]).
fn slot_route_fields(fields: &[Vec<String>], route_fields: &[FieldName]) -> Vec<u32> {
    fields
        .iter()
        .map(|paths| match paths.as_slice() {
            [path] => route_fields
                .iter()
                .position(|f| f.as_str() == path)
                .map_or(u32::MAX, |i| i as u32),
            _ => u32::MAX,
        })
        .collect()
}

/// Lists in one array: list `i` is `items[starts[i]..starts[i + 1]]`. For the many short
/// lists of a compiled set (the rules of each atom, the atoms of each scanned pattern): a
/// vector per list cost a header each and room for four items where most lists hold one
/// (the SigmaHQ Windows set's heap, 21.06 MiB with vectors, 20.09 with the atoms' rules
/// in one array).
pub(crate) struct Lists<T> {
    starts: Box<[u32]>,
    items: Box<[T]>,
}

impl<T: Copy> Lists<T> {
    pub(crate) fn new(lists: &[Vec<T>]) -> Self {
        let mut starts = Vec::with_capacity(lists.len() + 1);
        starts.push(0u32);
        let mut items = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        for list in lists {
            items.extend_from_slice(list);
            starts.push(u32::try_from(items.len()).expect("fewer than 2^32 items"));
        }
        Lists {
            starts: starts.into_boxed_slice(),
            items: items.into_boxed_slice(),
        }
    }

    /// List `i`.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &[T] {
        &self.items[self.starts[i] as usize..self.starts[i + 1] as usize]
    }
}

impl CompiledRules {
    /// Compile `rules` and `indicators` under `profile`. Rules that cannot be compiled are
    /// reported (file:line, id, title) and skipped.
    pub fn compile(
        rules: &[SigmaRule],
        filters: &[SigmaFilter],
        indicators: &[Indicator],
        profile: &Profile,
        config: &MatchConfig,
    ) -> (CompiledRules, Vec<Diagnostic>) {
        let (filtered, mut diags) = apply_filters(rules, filters);
        let rules = filtered.iter().map(|r| &**r);
        let mut b = Builder {
            profile,
            config,
            fields: Vec::new(),
            field_names: Vec::new(),
            field_index: HashMap::new(),
            atoms: Vec::new(),
            atom_index: HashMap::new(),
            atom_home: Vec::new(),
            atom_need: Vec::new(),
            regexes: Vec::new(),
            routes: Vec::new(),
            route_index: BTreeMap::new(),
        };
        let mut compiled: Vec<CompiledRule> = Vec::new();
        let mut not_applicable = 0usize;
        let mut seen_ids: HashMap<&str, &Location> = HashMap::new();
        for rule in rules {
            let tag = |d: Diagnostic| d.for_rule(Some(&rule.id), Some(&rule.title));
            if let Some(first) = seen_ids.get(rule.id.as_str()) {
                diags.push(tag(Diagnostic::error(
                    rule.location.clone(),
                    "duplicate-id",
                    format!("rule id already used at {first}; this rule is skipped"),
                )));
                continue;
            }
            if compiled.len() >= config.max_rules {
                diags.push(tag(Diagnostic::error(
                    rule.location.clone(),
                    "limit",
                    format!(
                        "more than {} rules (max_rules); this rule is skipped",
                        config.max_rules
                    ),
                )));
                continue;
            }
            let route = match b.route(rule) {
                Ok(r) => r,
                Err(why) => {
                    not_applicable += 1;
                    diags.push(tag(Diagnostic::warning(
                        rule.location.clone(),
                        "not-applicable",
                        format!("{why}; the rule is set aside for this profile"),
                    )));
                    continue;
                }
            };
            // Atoms and regexes added by a failing rule stay unused; harmless.
            match b.compile_rule(rule, route) {
                Ok(c) => {
                    seen_ids.insert(&rule.id, &rule.location);
                    compiled.push(c);
                }
                Err(p) => diags.push(tag(Diagnostic::error(
                    p.location.unwrap_or_else(|| rule.location.clone()),
                    p.code,
                    p.message,
                ))),
            }
        }

        // Prefilter sets.
        let mut atom_rules: Vec<Vec<(RuleIdx, u32)>> = vec![Vec::new(); b.atoms.len()];
        let mut always: Vec<Vec<RuleIdx>> = vec![Vec::new(); b.routes.len()];
        let atom_fields: Vec<FieldSlot> = b.atom_home.iter().map(|(field, _)| *field).collect();
        let shares = match config.literal_frequencies.as_ref() {
            Some(f) => f.atom_weights(&b.atoms, &atom_fields, |slot| {
                let paths = b.fields.get(slot as usize).into_iter().flatten();
                crate::calibrate::field_key(paths.map(String::as_str), slot)
            }),
            None => crate::prior::atom_weights(&compiled, &b.atoms, &b.categorical_atoms()),
        };
        let breadths = b.field_breadths();
        let weights = AtomWeights {
            share: &shares,
            breadth: &breadths,
        };
        // Per rule: its prefilter set (empty: verified on every event of its route).
        let mut prefilters: Vec<Vec<AtomId>> = Vec::with_capacity(compiled.len());
        for (i, rule) in compiled.iter().enumerate() {
            let set = need_condition(rule, &rule.condition, &b.atoms, weights).unwrap_or_default();
            for &a in &set {
                atom_rules[a as usize].push((i as RuleIdx, rule.route));
            }
            if set.is_empty() {
                if std::env::var_os("TOCSIN_DEBUG_STATS").is_some() {
                    eprintln!(
                        "rule without a prefilter (verified on every event of its route): {} ({})",
                        rule.title, rule.location
                    );
                }
                always[rule.route as usize].push(i as RuleIdx)
            }
            prefilters.push(set);
        }
        // Only the literals of prefilter sets are scanned for; the others are compared when
        // a candidate is verified. Keyword literals stay scanned: comparing one later would
        // read every value of the event.
        // So are the literals of rules verified on every event (no prefilter set) in a
        // field some other rule's prefilter has scanned (for that rule's routes): found by
        // the scan, not compared on every event (the seven filters of a rule whose
        // selection is `ContextInfo|contains: '*'`, each searched for in a 5 KB PowerShell
        // context). Those that verification reads: literals, and the literals a regex
        // requires, looked for before it runs on a long value (not a glob's, which the
        // glob does not read).
        let mut prefiltered_field = vec![false; b.field_names.len()];
        for (a, rules) in atom_rules.iter().enumerate() {
            if let Some(seen) = prefiltered_field.get_mut(b.atom_home[a].0 as usize) {
                *seen |= !rules.is_empty();
            }
        }
        let mut of_unfiltered_rule = vec![false; b.atoms.len()];
        let mut found = Vec::new();
        for (rule, _) in compiled
            .iter()
            .zip(&prefilters)
            .filter(|(_, p)| p.is_empty())
        {
            for test in rule.tests() {
                found.clear();
                test.values
                    .iter()
                    .for_each(|v| verified_atoms(v, &mut found));
                for &a in &found {
                    of_unfiltered_rule[a as usize] = true;
                }
            }
        }
        for (a, atom) in b.atoms.iter_mut().enumerate() {
            let field = b.atom_home[a].0;
            atom.scanned = config.scan_every_literal
                || !atom_rules[a].is_empty()
                || field == KEYWORD_SLOT
                || (of_unfiltered_rule[a]
                    && prefiltered_field
                        .get(field as usize)
                        .copied()
                        .unwrap_or(false));
        }
        for alternative in compiled
            .iter_mut()
            .flat_map(|r| r.selections.iter_mut())
            .flat_map(|s| s.alternatives.iter_mut())
        {
            for test in alternative.iter_mut() {
                test.index_scanned_values(&b.atoms);
            }
            alternative.sort_by_key(|t| t.cost(&b.atoms));
        }
        // After every literal's `scanned` is final: a guard reads a scanned literal's hit
        // bits and compares the others, as verification does. Guards are chosen by
        // observed frequencies only: the prior's guesses do not tell a whole value from a
        // search, and a guard's shape (whole values first) is what makes it cheap and
        // likely to fail (measured: 3 % slower by the prior, the same rejections).
        let observed = config.literal_frequencies.is_some().then_some(&shares[..]);
        // How many tests read each field: a guard of presence takes the least read.
        let mut field_tests = vec![0u32; b.field_names.len()];
        for test in compiled
            .iter()
            .flat_map(CompiledRule::tests)
            .filter(|t| t.field != KEYWORD_SLOT)
        {
            field_tests[test.field as usize] += 1;
        }
        let guards = compiled
            .iter()
            .zip(&prefilters)
            .map(|(rule, set)| Guard::for_rule(rule, set, &b.atoms, observed, &field_tests))
            .collect();

        // One literal set per field over the distinct case-folded literals of all routes.
        let mut per_field: BTreeMap<(FieldSlot, Option<u32>), Vec<AtomId>> = BTreeMap::new();
        for (a, (field, routes)) in b.atom_home.iter().enumerate() {
            if !b.atoms[a].scanned {
                continue;
            }
            let keyword_route = (*field == KEYWORD_SLOT)
                .then(|| routes.first().copied())
                .flatten();
            per_field
                .entry((*field, keyword_route))
                .or_default()
                .push(a as AtomId);
        }
        // Per field, the rules that test it (in order, each once).
        let mut field_readers: HashMap<FieldSlot, Vec<RuleIdx>> = HashMap::new();
        for (i, rule) in compiled.iter().enumerate() {
            for test in rule.tests() {
                let readers = field_readers.entry(test.field).or_default();
                if readers.last() != Some(&(i as RuleIdx)) {
                    readers.push(i as RuleIdx);
                }
            }
        }
        let mut scanners = Vec::new();
        let for_presence = presence_atoms(&compiled, &b.atoms);
        for ((field, _), atom_ids) in per_field {
            // Each literal is either scanned for or, when every test of it needs it at one
            // place (the whole value; the start or the end for the short ones), looked up
            // there. Scanned literals get the first pattern ids, then each anchor's in turn;
            // `pattern_atoms` covers them all. Keyword searches scan every value of the
            // event, so their literals are all scanned.
            let anchor_of = |a: AtomId| -> Option<Anchor> {
                let short = b.atoms[a as usize].bytes.len() < FRAGMENT;
                match b.atom_need[a as usize] {
                    _ if field == KEYWORD_SLOT => None,
                    HIT_WHOLE => Some(Anchor::Whole),
                    HIT_START if short => Some(Anchor::Start),
                    HIT_END if short => Some(Anchor::End),
                    _ => None,
                }
            };
            let mut patterns: Vec<Vec<u8>> = Vec::new();
            let mut pattern_atoms: Vec<Vec<AtomId>> = Vec::new();
            let mut routes = std::collections::BTreeSet::new();
            let mut groups = Vec::new();
            for anchor in [
                None,
                Some(Anchor::Whole),
                Some(Anchor::Start),
                Some(Anchor::End),
            ] {
                let first = patterns.len();
                let mut by_folded: HashMap<Vec<u8>, usize> = HashMap::new();
                for &a in atom_ids.iter().filter(|&&a| anchor_of(a) == anchor) {
                    routes.extend(b.atom_home[a as usize].1.iter().copied());
                    // Cased literals are found case-insensitively too, then compared exactly.
                    // Searched for as they are written in JSON (see `Scanner`).
                    let folded = json_escaped(&b.atoms[a as usize].bytes).to_ascii_lowercase();
                    let p = *by_folded.entry(folded.clone()).or_insert_with(|| {
                        patterns.push(folded);
                        pattern_atoms.push(Vec::new());
                        patterns.len() - 1
                    });
                    pattern_atoms[p].push(a);
                }
                groups.push((anchor, first, patterns.len()));
            }
            let anchored: Vec<AnchoredValues> = groups
                .iter()
                .filter_map(|&(anchor, first, end)| {
                    let anchor = anchor?;
                    (end > first)
                        .then(|| AnchoredValues::new(anchor, &patterns[first..end], first as u32))
                })
                .collect();
            patterns.truncate(groups[0].2);
            let name = if field == KEYWORD_SLOT {
                "<keywords>"
            } else {
                b.field_names[field as usize].as_str()
            };
            let literals = match LiteralSet::new(&patterns) {
                Ok(set) => set,
                Err(e) => {
                    diags.push(Diagnostic::error(
                        Location::line("<compiled rules>", 0),
                        "automaton",
                        format!("cannot build the literal set for field '{name}': {e}"),
                    ));
                    continue;
                }
            };
            let presence = if field == KEYWORD_SLOT {
                let needed =
                    |p: &usize| pattern_atoms[*p].iter().any(|&a| for_presence[a as usize]);
                let mut pieces: Vec<Vec<u8>> = (0..patterns.len())
                    .filter(needed)
                    .map(|p| verbatim_piece(&patterns[p]))
                    .collect();
                if pieces.is_empty() {
                    // Not met in practice (a rule with keyword literals needs some of
                    // them); an empty test would never let the scan run, so look for all.
                    pieces = patterns.iter().map(|p| verbatim_piece(p)).collect();
                }
                KeywordPresence::new(&pieces, config.literal_frequencies.as_deref())
            } else {
                None
            };
            if std::env::var_os("TOCSIN_DEBUG_STATS").is_some() {
                eprintln!(
                    "scanner {name}: {} patterns scanned ({} short), stride {}, {} looked up, {} bytes, longest fragment list {}, {} routes{}",
                    literals.len(),
                    literals.short_len(),
                    literals.stride(),
                    anchored.iter().map(AnchoredValues::len).sum::<usize>(),
                    literals.memory_usage()
                        + anchored.iter().map(AnchoredValues::memory_usage).sum::<usize>()
                        + presence.as_ref().map_or(0, KeywordPresence::memory_usage),
                    literals.longest_fragment_list(),
                    routes.len(),
                    presence
                        .as_ref()
                        .map_or(String::new(), |p| format!(", presence: {}", p.describe()))
                );
            }
            scanners.push(Scanner {
                field,
                literals,
                anchored,
                pattern_atoms: Lists::new(&pattern_atoms),
                routes: routes.into_iter().collect(),
                readers: field_readers.get(&field).cloned().unwrap_or_default(),
                presence,
            });
        }
        let mut route_fields: Vec<FieldName> =
            b.routing_fields().into_iter().map(FieldName::new).collect();
        // The profile's other routing fields join them where rules test them (the event
        // id, in rules for a whole channel): events are then told apart by their values
        // too, and rules their values rule out are left out for them (see
        // `CompiledRules::route_tested_rules`).
        let tested: std::collections::HashSet<&str> = compiled
            .iter()
            .flat_map(CompiledRule::tests)
            .filter_map(
                |t| match b.fields.get(t.field as usize).map(Vec::as_slice) {
                    Some([path]) => Some(path.as_str()),
                    _ => None,
                },
            )
            .collect();
        for (field, _) in [&profile.products, &profile.categories, &profile.services]
            .into_iter()
            .flat_map(|dimension| dimension.values().flatten().flatten())
        {
            if tested.contains(field.as_str()) && route_fields.iter().all(|f| f.as_str() != field) {
                route_fields.push(FieldName::new(field));
            }
        }
        let route_field_index = |name: &str| -> u32 {
            route_fields
                .iter()
                .position(|f| f.as_str() == name)
                .expect("every routing field is listed") as u32
        };
        let slot_route_field = slot_route_fields(&b.fields, &route_fields);
        let route_tested_rules = compiled
            .iter()
            .enumerate()
            .filter(|_| !config.scan_every_literal)
            .filter(|(_, rule)| {
                rule.tests().any(|t| {
                    slot_route_field
                        .get(t.field as usize)
                        .is_some_and(|&f| f != u32::MAX)
                })
            })
            .map(|(i, _)| i as RuleIdx)
            .collect();
        let routes = b
            .routes
            .iter()
            .zip(always)
            .map(|((cond, description), always)| Route {
                condition: cond
                    .dimensions
                    .iter()
                    .map(|alts| {
                        alts.iter()
                            .map(|alt| {
                                alt.iter()
                                    .map(|(f, v)| (route_field_index(f), v.clone()))
                                    .collect()
                            })
                            .collect()
                    })
                    .collect(),
                always,
                description: description.clone(),
            })
            .collect();
        let indicator_fields = profile
            .indicator_fields
            .iter()
            .map(|(k, paths)| (*k, paths.iter().map(|p| FieldName::new(p)).collect()))
            .collect();
        let hash_list_fields = profile
            .hash_list_fields
            .iter()
            .map(|p| FieldName::new(p))
            .collect();
        (
            CompiledRules {
                rules: compiled,
                guards,
                routes,
                atoms: b.atoms,
                atom_fields,
                atom_rules: Lists::new(&atom_rules),
                scanners,
                regexes: b.regexes,
                fields: b
                    .fields
                    .iter()
                    .map(|paths| paths.iter().map(|p| FieldName::new(p)).collect())
                    .collect(),
                route_fields,
                slot_route_field,
                route_tested_rules,
                iocs: IocTable::build(indicators),
                profile: profile.clone(),
                indicator_fields,
                hash_list_fields,
                not_applicable,
                scan_memo_slots: config.scan_memo_slots,
            },
            diags,
        )
    }

    /// Register Sigma correlation rules: every detection rule they refer to (by id or name)
    /// learns which event fields to copy into its detections and which correlation key to
    /// give them. References to rules that are not loaded (and are not other correlations,
    /// `known_correlations`) are reported.
    pub fn attach_correlations(
        &mut self,
        correlations: &[tocsin_rules::CorrelationRule],
    ) -> Vec<Diagnostic> {
        let mut diags = Vec::new();
        let correlation_names: std::collections::HashSet<&str> = correlations
            .iter()
            .flat_map(|c| std::iter::once(c.id.as_str()).chain(c.name.as_deref()))
            .collect();
        for c in correlations {
            for reference in &c.rules {
                let targets: Vec<usize> = self
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        &r.id == reference || r.name.as_deref() == Some(reference.as_str())
                    })
                    .map(|(i, _)| i)
                    .collect();
                if targets.is_empty() && !correlation_names.contains(reference.as_str()) {
                    diags.push(
                        Diagnostic::warning(
                            c.location.clone(),
                            "correlation-target-missing",
                            format!("correlation refers to rule '{reference}', which is not loaded (or not applicable to this profile)"),
                        )
                        .for_rule(Some(&c.id), Some(&c.title)),
                    );
                }
                for i in targets {
                    let (rule_id, rule_name) =
                        (self.rules[i].id.clone(), self.rules[i].name.clone());
                    let field = |name: &str| -> (String, Vec<String>) {
                        let event_field = c.field_for(name, &rule_id, rule_name.as_deref());
                        (name.to_owned(), self.profile.paths_for(event_field))
                    };
                    let usage = CorrelationUse {
                        correlation_id: c.id.clone(),
                        group_fields: c.group_by.iter().map(|g| field(g)).collect(),
                        value_fields: c.condition.fields.iter().map(|f| field(f)).collect(),
                    };
                    let rule = &mut self.rules[i];
                    rule.correlation_uses.push(usage);
                    // Standalone unless every referring correlation says generate: false.
                    let referring_generate = correlations
                        .iter()
                        .filter(|cc| {
                            cc.rules
                                .iter()
                                .any(|r| *r == rule.id || Some(r.as_str()) == rule.name.as_deref())
                        })
                        .any(|cc| cc.generate);
                    rule.standalone = referring_generate;
                }
            }
        }
        diags
    }

    /// Replace references to detection rules by `name` with their ids in `correlations`
    /// (the correlator sees detections by rule id). References to other correlations stay.
    pub fn resolve_rule_names(&self, correlations: &mut [tocsin_rules::CorrelationRule]) {
        for c in correlations {
            for reference in &mut c.rules {
                if let Some(rule) = self
                    .rules
                    .iter()
                    .find(|r| r.name.as_deref() == Some(reference.as_str()))
                {
                    *reference = rule.id.clone();
                }
            }
        }
    }

    /// Counts for reports and benches.
    pub fn stats(&self) -> CompileStats {
        CompileStats {
            rules: self.rules.len(),
            routes: self.routes.len(),
            atoms: self.atoms.len(),
            scanned_atoms: self.atoms.iter().filter(|a| a.scanned).count(),
            regexes: self.regexes.len(),
            unfiltered_rules: self.routes.iter().map(|r| r.always.len()).sum(),
            indicators: self.iocs.len(),
            not_applicable: self.not_applicable,
        }
    }

    /// The compiled rules, in load order ([`RuleIdx`] indexes this slice).
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// The profile the rules were compiled under.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The indicator tables.
    pub fn indicators(&self) -> &IocTable {
        &self.iocs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_membership() {
        let (n, p) = parse_cidr("10.0.0.0/8").unwrap();
        assert!(in_cidr("10.2.3.4".parse().unwrap(), n, p));
        assert!(!in_cidr("11.2.3.4".parse().unwrap(), n, p));
        let (n, p) = parse_cidr("2001:db8::/32").unwrap();
        assert!(in_cidr("2001:db8:1::1".parse().unwrap(), n, p));
        assert!(!in_cidr("10.2.3.4".parse().unwrap(), n, p));
        assert!(parse_cidr("10.0.0.0/33").is_none());
    }

    #[test]
    fn base64_variants_match_the_reference_algorithm() {
        // Known values from the Sigma specification's examples and pySigma.
        assert_eq!(base64(b"http://"), "aHR0cDovLw==");
        assert_eq!(
            base64_offsets(b"http://"),
            vec!["aHR0cDovL", "h0dHA6Ly", "odHRwOi8v"]
        );
        let wide: Vec<u8> = "cmd".encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        assert_eq!(base64(&wide), "YwBtAGQA");
    }

    #[test]
    fn pcre_classes_become_ascii_outside_brackets() {
        assert_eq!(
            pcre_ascii_classes(r"-k\s\w{1,64}"),
            r"-k(?-u:\s)(?-u:\w){1,64}"
        );
        assert_eq!(pcre_ascii_classes(r"[\w.]+\\d"), r"[0-9A-Za-z_.]+\\d");
        assert_eq!(pcre_ascii_classes(r"[]\d]\d"), r"[]0-9](?-u:\d)");
        assert_eq!(
            pcre_ascii_classes(r"\W\S\D\b[^\s\W][[]"),
            r"[^0-9A-Za-z_][^\t\n\x0B\x0C\r ][^0-9](?-u:\b)[^\t\n\x0B\x0C\r [^0-9A-Za-z_]][\[]"
        );
        // What the regex engine makes of them: PCRE's ASCII classes on text outside ASCII.
        let matches = |pattern: &str, text: &str| {
            regex_automata::meta::Regex::new(&pcre_ascii_classes(pattern))
                .unwrap()
                .is_match(text)
        };
        assert!(matches(r"^\W$", "é"), "é is no ASCII word character");
        assert!(!matches(r"^\w$", "é"));
        assert!(matches(r"^[\W]$", "é"));
        assert!(
            matches(r"^\S$", "\u{2003}"),
            "an em space is no ASCII space"
        );
        assert!(
            matches(r"^\D$", "\u{0663}"),
            "an Arabic-Indic three is no ASCII digit"
        );
        assert!(matches(r"x\b", "xé"), "a word boundary between x and é");
        assert!(matches(r"^[\d[]+$", "1[2"));
        assert!(matches(r"^[[:alpha:]\d]+$", "a1"));
        assert!(!matches(r"^[[:alpha:]]+$", "a1"));
    }

    #[test]
    fn placeholders_expand_with_wildcards() {
        let mut table = BTreeMap::new();
        table.insert(
            "Servers".to_owned(),
            vec!["srv-*".to_owned(), "dc01".to_owned()],
        );
        let s = SigmaString::parse("host %Servers% x");
        let out = expand_placeholders(&s, &table, 100).unwrap();
        let texts: Vec<String> = out.iter().map(|s| s.to_string()).collect();
        assert_eq!(texts, vec!["host srv-* x", "host dc01 x"]);
        assert!(expand_placeholders(&SigmaString::parse("%Nope%"), &table, 100).is_err());
        assert_eq!(
            expand_placeholders(&SigmaString::parse("100%"), &table, 100)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn letters_outside_ascii_are_spelled_in_each_case() {
        let spellings = |s: &str| -> Option<Vec<String>> {
            let all = case_spellings(&SigmaString::parse(s), MAX_CASE_SPELLINGS)?;
            Some(all.iter().map(|v| v.to_string()).collect())
        };
        assert_eq!(
            spellings("*\\Système").unwrap(),
            ["*\\Système", "*\\SystÈme"]
        );
        // A letter whose other case is two letters (`ß`, `SS`) keeps its own spelling.
        assert_eq!(spellings("straße").unwrap(), ["straße"]);
        assert_eq!(spellings("arrêté").unwrap().len(), 4);
        // Seven Cyrillic letters, 128 spellings: none (a regular expression instead).
        assert_eq!(spellings("СИСТЕМА"), None);
        assert!(has_unicode_case(&SigmaString::parse("*СИСТЕМА")));
        assert!(!has_unicode_case(&SigmaString::parse("Microsoft® ˣ ⠀")));
    }

    #[test]
    fn windash_replaces_flag_dashes_only() {
        let texts = |s: &str, limit: usize| -> Option<Vec<String>> {
            let variants = windash_variants(&SigmaString::literal(s), limit)?;
            Some(
                variants
                    .iter()
                    .map(|v| v.as_literal().unwrap().to_owned())
                    .collect(),
            )
        };
        let one = texts(" -enc x-y", 100).unwrap();
        assert_eq!(one.len(), 5);
        assert_eq!(one[1], " /enc x-y");
        // Each flag on its own: every combination of two flags' dashes.
        let two = texts(" -s /i", 100).unwrap();
        assert_eq!(two.len(), 25);
        assert_eq!(
            two.iter().collect::<std::collections::HashSet<_>>().len(),
            25
        );
        for mixed in [" /s -i", " -s /i", " \u{2013}s \u{2015}i"] {
            assert!(two.iter().any(|t| t == mixed), "{mixed}");
        }
        // `_` is a word character (pySigma's `\B[-/]\b`): after it no flag starts, before
        // it one does.
        assert_eq!(
            texts("a_-x -_y", 100).unwrap()[1],
            "a_-x /_y",
            "only the second dash starts a flag"
        );
        // More variants than the limit: none.
        assert_eq!(texts(" -a -b -c", 124), None);
        assert_eq!(texts(" -a -b -c", 125).map(|t| t.len()), Some(125));
    }
}
