//! Compiling Sigma rules and indicators into one [`CompiledRules`].
//!
//! The pipeline, rule by rule:
//! 1. **Route.** The rule's logsource is resolved through the profile into a
//!    [`RouteCondition`]; rules with the same condition share a route.
//! 2. **Tests.** Each `field|modifiers: values` becomes a [`Test`] over a field slot (the
//!    profile's candidate paths for that Sigma field). Plain literals — equals, contains,
//!    startswith, endswith — become *atoms*: (route, field, bytes, cased) entries that the
//!    route's per-field Aho-Corasick automaton finds; the position of the hit (at the start,
//!    at the end, the whole value) is all it takes to verify them. Values with inner
//!    wildcards become globs, prefiltered by their longest literal; `re` values become
//!    regex-automata meta regexes with a size limit.
//! 3. **Prefilter.** From the condition we derive a set of atoms of which at least one must
//!    hit for the rule to possibly match (`not` and regex-only tests give none). Rules with
//!    such a set are evaluated only when one of its atoms hits; the others are evaluated on
//!    every event of their route.
//!
//! Anything a rule uses that the matcher cannot evaluate exactly is an error for that rule,
//! which is skipped; nothing is approximated silently.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex_automata::meta::Regex;
use regex_automata::util::syntax;

use tocsin_core::{Level, Taxonomy, Tlp};
use tocsin_rules::sigma::{Condition, FieldTest, Modifier, SigmaString, SigmaValue, StrPart};
use tocsin_rules::{Diagnostic, Indicator, Location, Profile, RouteCondition, SigmaRule};

use crate::glob::{Glob, GlobPart};
use crate::ioc::IocTable;

/// Limits applied while compiling.
#[derive(Debug, Clone)]
pub struct MatchConfig {
    /// Largest compiled regex (NFA) in bytes; bigger ones are rejected.
    pub regex_size_limit: usize,
    /// Most rules loaded; the rest are reported and skipped.
    pub max_rules: usize,
}

impl Default for MatchConfig {
    fn default() -> Self {
        MatchConfig {
            regex_size_limit: 1 << 20,
            max_rules: 100_000,
        }
    }
}

/// Index of a compiled rule.
pub type RuleIdx = u32;
/// Index of an atom.
pub type AtomId = u32;
/// Index of a field slot.
pub type FieldSlot = u32;

/// Hit bits recorded per atom and event.
pub(crate) const HIT_ANY: u8 = 1;
pub(crate) const HIT_START: u8 = 2;
pub(crate) const HIT_END: u8 = 4;
pub(crate) const HIT_WHOLE: u8 = 8;

/// A literal searched by a route's automaton for one field.
#[derive(Debug, Clone)]
pub(crate) struct Atom {
    /// Original bytes (case kept, for `cased` checks).
    pub bytes: Box<[u8]>,
    pub cased: bool,
}

/// Numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum CmpOp {
    Lt,
    Lte,
    Gt,
    Gte,
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
    /// A regex (index into the regex table).
    Regex(u32),
    /// `null`: absent, null or empty.
    Null,
    /// Numeric comparison.
    Cmp { op: CmpOp, value: f64 },
    /// An address in a CIDR range.
    Cidr { network: IpAddr, prefix: u8 },
    /// One of several expansions (windash variants).
    Any(Vec<ValueTest>),
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
    pub(crate) selections: Vec<CompiledSelection>,
    pub(crate) condition: Condition,
    pub(crate) route: u32,
}

/// A route: the event condition of a logsource, and the automata of its rules' fields.
pub(crate) struct Route {
    pub condition: Vec<Vec<Vec<(String, String)>>>,
    pub scanners: Vec<Scanner>,
    /// Rules evaluated on every event of the route (no prefilter set).
    pub always: Vec<RuleIdx>,
    pub description: String,
}

/// One field's automaton within a route.
pub(crate) struct Scanner {
    pub field: FieldSlot,
    pub automaton: AhoCorasick,
    /// Pattern id → atoms with those bytes (case-insensitively).
    pub pattern_atoms: Vec<Vec<AtomId>>,
}

/// Rules and indicators compiled for matching. Immutable; share it behind an `Arc` and
/// give each thread its own [`crate::MatchScratch`].
pub struct CompiledRules {
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) routes: Vec<Route>,
    pub(crate) atoms: Vec<Atom>,
    /// Atom → rules whose prefilter set contains it.
    pub(crate) atom_rules: Vec<Vec<RuleIdx>>,
    pub(crate) regexes: Vec<Regex>,
    pub(crate) fields: Vec<Vec<String>>,
    pub(crate) field_names: Vec<String>,
    pub(crate) iocs: IocTable,
    pub(crate) profile: Profile,
    /// Indicator fields resolved: (type, paths).
    pub(crate) indicator_fields: Vec<(tocsin_core::IndicatorType, Vec<String>)>,
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
    /// Distinct literals in the automata.
    pub atoms: usize,
    /// Regexes.
    pub regexes: usize,
    /// Rules with no prefilter (evaluated on every event of their route).
    pub unfiltered_rules: usize,
    /// Indicators loaded.
    pub indicators: usize,
}

struct Builder<'p> {
    profile: &'p Profile,
    config: &'p MatchConfig,
    fields: Vec<Vec<String>>,
    field_names: Vec<String>,
    field_index: HashMap<String, FieldSlot>,
    atoms: Vec<Atom>,
    atom_index: HashMap<(u32, FieldSlot, Vec<u8>, bool), AtomId>,
    /// (route, field) of each atom.
    atom_home: Vec<(u32, FieldSlot)>,
    regexes: Vec<Regex>,
    routes: Vec<(RouteCondition, String)>,
    route_index: BTreeMap<RouteCondition, u32>,
}

/// An error for one rule (message and the key to locate).
struct RuleProblem {
    code: &'static str,
    message: String,
}

fn problem(code: &'static str, message: impl Into<String>) -> RuleProblem {
    RuleProblem {
        code,
        message: message.into(),
    }
}

impl Builder<'_> {
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

    fn atom(&mut self, route: u32, field: FieldSlot, bytes: &[u8], cased: bool) -> AtomId {
        let key = (route, field, bytes.to_vec(), cased);
        if let Some(&a) = self.atom_index.get(&key) {
            return a;
        }
        let id = self.atoms.len() as AtomId;
        self.atoms.push(Atom {
            bytes: bytes.into(),
            cased,
        });
        self.atom_home.push((route, field));
        self.atom_index.insert(key, id);
        id
    }

    fn route(&mut self, rule: &SigmaRule) -> (u32, Vec<String>) {
        let (cond, warnings) = self.profile.route_for(&rule.logsource);
        if let Some(&r) = self.route_index.get(&cond) {
            return (r, warnings);
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
        (id, warnings)
    }

    fn compile_rule(&mut self, rule: &SigmaRule, route: u32) -> Result<CompiledRule, RuleProblem> {
        let mut selections = Vec::new();
        for sel in &rule.selections {
            let mut alternatives = Vec::new();
            for alt in &sel.alternatives {
                let mut tests = Vec::new();
                for t in alt {
                    tests.push(self.compile_test(t, route)?);
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
            selections,
            condition: rule.condition.clone(),
            route,
        })
    }

    fn compile_test(&mut self, t: &FieldTest, route: u32) -> Result<Test, RuleProblem> {
        let key = t.key();
        let Some(field) = &t.field else {
            return Err(problem(
                "unsupported",
                "keyword (field-less) searches are not supported yet",
            ));
        };
        for m in &t.modifiers {
            use Modifier::*;
            if matches!(
                m,
                Base64
                    | Base64Offset
                    | Utf16Le
                    | Utf16Be
                    | Utf16
                    | Expand
                    | FieldRef
                    | Minute
                    | Hour
                    | Day
                    | Week
                    | Month
                    | Year
            ) {
                return Err(problem(
                    "unsupported-modifier",
                    format!("modifier '{}' in '{key}' is not supported yet", m.name()),
                ));
            }
        }
        let slot = self.slot(field);
        let cased = t.has(Modifier::Cased);
        let mut test = Test {
            field: slot,
            values: Vec::new(),
            all: t.has(Modifier::All),
            negate: t.has(Modifier::Neq),
            exists: None,
            key: key.clone(),
        };
        if t.has(Modifier::Exists) {
            match t.values.as_slice() {
                [SigmaValue::Bool(b)] => {
                    test.exists = Some(*b);
                    return Ok(test);
                }
                _ => {
                    return Err(problem(
                        "bad-value",
                        format!("'{key}': exists takes true or false"),
                    ))
                }
            }
        }
        let cmp = t.modifiers.iter().find_map(|m| match m {
            Modifier::Lt => Some(CmpOp::Lt),
            Modifier::Lte => Some(CmpOp::Lte),
            Modifier::Gt => Some(CmpOp::Gt),
            Modifier::Gte => Some(CmpOp::Gte),
            _ => None,
        });
        for v in &t.values {
            let vt = if let Some(op) = cmp {
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
            } else if t.has(Modifier::Re) {
                let SigmaValue::String(s) = v else {
                    return Err(problem("bad-value", format!("'{key}': re needs a string")));
                };
                let pattern = s.as_literal().unwrap_or_default();
                let syntax = syntax::Config::new()
                    .case_insensitive(t.has(Modifier::ReIgnoreCase))
                    .multi_line(t.has(Modifier::ReMultiLine))
                    .dot_matches_new_line(t.has(Modifier::ReDotAll));
                let regex = Regex::builder()
                    .syntax(syntax)
                    .configure(
                        Regex::config()
                            .nfa_size_limit(Some(self.config.regex_size_limit))
                            .hybrid_cache_capacity(2 * (1 << 20)),
                    )
                    .build(pattern)
                    .map_err(|e| {
                        problem(
                            "bad-regex",
                            format!("'{key}': regex '{pattern}' cannot be compiled: {e}"),
                        )
                    })?;
                self.regexes.push(regex);
                ValueTest::Regex(self.regexes.len() as u32 - 1)
            } else {
                let s = match v {
                    SigmaValue::Null => {
                        test.values.push(ValueTest::Null);
                        continue;
                    }
                    SigmaValue::String(s) => s.clone(),
                    SigmaValue::Number { text, .. } => SigmaString::literal(text),
                    SigmaValue::Bool(b) => SigmaString::literal(if *b { "true" } else { "false" }),
                };
                let variants = if t.has(Modifier::Windash) {
                    windash_variants(&s)
                } else {
                    vec![s]
                };
                let mut tests = Vec::new();
                for mut s in variants {
                    if t.has(Modifier::Contains) {
                        s.star_before();
                        s.star_after();
                    } else if t.has(Modifier::StartsWith) {
                        s.star_after();
                    } else if t.has(Modifier::EndsWith) {
                        s.star_before();
                    }
                    tests.push(self.string_test(&s, route, slot, cased));
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
                let prefilter = longest.map(|l| self.atom(route, field, l.as_bytes(), cased));
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
        let atom = self.atom(route, field, lit.as_bytes(), cased);
        ValueTest::Atom { atom, need }
    }
}

/// The `windash` variants of a value: each `-` or `/` that starts a command-line flag is
/// replaced by each of `-`, `/`, `–`, `—`, `―` (the same character throughout a variant).
fn windash_variants(s: &SigmaString) -> Vec<SigmaString> {
    const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    DASHES
        .iter()
        .map(|&d| {
            let mut v = s.clone();
            v.map_literals(|lit| {
                let chars: Vec<char> = lit.chars().collect();
                let mut out = String::with_capacity(lit.len());
                for (i, &c) in chars.iter().enumerate() {
                    let flag_start = (c == '-' || c == '/')
                        && (i == 0 || !chars[i - 1].is_alphanumeric())
                        && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
                    out.push(if flag_start { d } else { c });
                }
                out
            });
            v
        })
        .collect()
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
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            (u32::from(a) & mask) == (u32::from(n) & mask)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            (u128::from(a) & mask) == (u128::from(n) & mask)
        }
        _ => false,
    }
}

/// Prefilter analysis: a set of atoms of which one must hit for `cond` to hold, or `None`
/// when no such set exists (negations, regex-only or null tests).
fn need_condition(rule: &CompiledRule, cond: &Condition, atoms: &[Atom]) -> Option<Vec<AtomId>> {
    match cond {
        Condition::Selection(i) => need_selection(&rule.selections[*i], atoms),
        Condition::Not(_) => None,
        Condition::And(cs) => best(cs.iter().map(|c| need_condition(rule, c, atoms)), atoms),
        Condition::Or(cs) => union(cs.iter().map(|c| need_condition(rule, c, atoms))),
        Condition::AnyOf(sels) => union(
            sels.iter()
                .map(|&i| need_selection(&rule.selections[i], atoms)),
        ),
        Condition::AllOf(sels) => best(
            sels.iter()
                .map(|&i| need_selection(&rule.selections[i], atoms)),
            atoms,
        ),
    }
}

fn need_selection(sel: &CompiledSelection, atoms: &[Atom]) -> Option<Vec<AtomId>> {
    union(
        sel.alternatives
            .iter()
            .map(|alt| best(alt.iter().map(|t| need_test(t, atoms)), atoms)),
    )
}

fn need_test(t: &Test, atoms: &[Atom]) -> Option<Vec<AtomId>> {
    if t.negate || t.exists.is_some() || t.values.is_empty() {
        return None;
    }
    if t.all {
        best(t.values.iter().map(need_value), atoms)
    } else {
        union(t.values.iter().map(need_value))
    }
}

fn need_value(v: &ValueTest) -> Option<Vec<AtomId>> {
    match v {
        ValueTest::Atom { atom, .. } => Some(vec![*atom]),
        ValueTest::Glob { prefilter, .. } => prefilter.map(|a| vec![a]),
        ValueTest::Any(vs) => union(vs.iter().map(need_value)),
        _ => None,
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

/// The most selective of several alternatives that must all hold: fewest atoms, then
/// longest shortest atom.
fn best(sets: impl Iterator<Item = Option<Vec<AtomId>>>, atoms: &[Atom]) -> Option<Vec<AtomId>> {
    sets.flatten().min_by_key(|s| {
        let shortest = s
            .iter()
            .map(|&a| atoms[a as usize].bytes.len())
            .min()
            .unwrap_or(0);
        (s.len(), usize::MAX - shortest)
    })
}

impl CompiledRules {
    /// Compile `rules` and `indicators` under `profile`. Rules that cannot be compiled are
    /// reported (file:line, id, title) and skipped.
    pub fn compile(
        rules: &[SigmaRule],
        indicators: &[Indicator],
        profile: &Profile,
        config: &MatchConfig,
    ) -> (CompiledRules, Vec<Diagnostic>) {
        let mut b = Builder {
            profile,
            config,
            fields: Vec::new(),
            field_names: Vec::new(),
            field_index: HashMap::new(),
            atoms: Vec::new(),
            atom_index: HashMap::new(),
            atom_home: Vec::new(),
            regexes: Vec::new(),
            routes: Vec::new(),
            route_index: BTreeMap::new(),
        };
        let mut diags = Vec::new();
        let mut compiled: Vec<CompiledRule> = Vec::new();
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
            let (route, warnings) = b.route(rule);
            for w in warnings {
                diags.push(tag(Diagnostic::warning(
                    rule.location.clone(),
                    "unmapped-logsource",
                    w,
                )));
            }
            // Atoms and regexes added by a failing rule stay unused; harmless.
            match b.compile_rule(rule, route) {
                Ok(c) => {
                    seen_ids.insert(&rule.id, &rule.location);
                    compiled.push(c);
                }
                Err(p) => diags.push(tag(Diagnostic::error(
                    rule.location.clone(),
                    p.code,
                    p.message,
                ))),
            }
        }

        // Prefilter sets.
        let mut atom_rules: Vec<Vec<RuleIdx>> = vec![Vec::new(); b.atoms.len()];
        let mut always: Vec<Vec<RuleIdx>> = vec![Vec::new(); b.routes.len()];
        for (i, rule) in compiled.iter().enumerate() {
            match need_condition(rule, &rule.condition, &b.atoms) {
                Some(set) if !set.is_empty() => {
                    for a in set {
                        atom_rules[a as usize].push(i as RuleIdx);
                    }
                }
                _ => always[rule.route as usize].push(i as RuleIdx),
            }
        }

        // One automaton per (route, field), over the distinct case-folded literals.
        let mut per_scanner: BTreeMap<(u32, FieldSlot), Vec<AtomId>> = BTreeMap::new();
        for (a, &(route, field)) in b.atom_home.iter().enumerate() {
            per_scanner
                .entry((route, field))
                .or_default()
                .push(a as AtomId);
        }
        let mut route_scanners: Vec<Vec<Scanner>> =
            (0..b.routes.len()).map(|_| Vec::new()).collect();
        for ((route, field), atom_ids) in per_scanner {
            let mut patterns: Vec<Vec<u8>> = Vec::new();
            let mut pattern_atoms: Vec<Vec<AtomId>> = Vec::new();
            let mut by_folded: HashMap<Vec<u8>, usize> = HashMap::new();
            for a in atom_ids {
                let folded = b.atoms[a as usize].bytes.to_ascii_lowercase();
                let p = *by_folded.entry(folded.clone()).or_insert_with(|| {
                    patterns.push(folded);
                    pattern_atoms.push(Vec::new());
                    patterns.len() - 1
                });
                pattern_atoms[p].push(a);
            }
            let automaton = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(if patterns.len() <= 5_000 {
                    Some(AhoCorasickKind::DFA)
                } else {
                    None
                })
                .build(&patterns);
            let automaton = match automaton {
                Ok(a) => a,
                Err(_) => match AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                {
                    Ok(a) => a,
                    Err(e) => {
                        diags.push(Diagnostic::error(
                            Location::line("<compiled rules>", 0),
                            "automaton",
                            format!(
                                "cannot build the automaton for field '{}': {e}",
                                b.field_names[field as usize]
                            ),
                        ));
                        continue;
                    }
                },
            };
            route_scanners[route as usize].push(Scanner {
                field,
                automaton,
                pattern_atoms,
            });
        }
        let routes = b
            .routes
            .iter()
            .zip(route_scanners)
            .zip(always)
            .map(|(((cond, description), scanners), always)| Route {
                condition: cond.dimensions.clone(),
                scanners,
                always,
                description: description.clone(),
            })
            .collect();
        let indicator_fields = profile
            .indicator_fields
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        (
            CompiledRules {
                rules: compiled,
                routes,
                atoms: b.atoms,
                atom_rules,
                regexes: b.regexes,
                fields: b.fields,
                field_names: b.field_names,
                iocs: IocTable::build(indicators),
                profile: profile.clone(),
                indicator_fields,
            },
            diags,
        )
    }

    /// Counts for reports and benches.
    pub fn stats(&self) -> CompileStats {
        CompileStats {
            rules: self.rules.len(),
            routes: self.routes.len(),
            atoms: self.atoms.len(),
            regexes: self.regexes.len(),
            unfiltered_rules: self.routes.iter().map(|r| r.always.len()).sum(),
            indicators: self.iocs.len(),
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
    fn windash_replaces_flag_dashes_only() {
        let v = windash_variants(&SigmaString::literal(" -enc x-y"));
        let texts: Vec<String> = v
            .iter()
            .map(|s| s.as_literal().unwrap().to_owned())
            .collect();
        assert_eq!(texts[1], " /enc x-y");
        assert_eq!(texts.len(), 5);
    }
}
