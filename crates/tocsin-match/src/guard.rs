//! Guards: one test every match of a rule needs, kept for all rules in one flat array, so
//! that most candidates are turned away without reading their rule.
//!
//! Why: a candidate is verified by walking its rule (condition, selections, alternatives,
//! tests, values, literals), each behind its own pointer. Over the SigmaHQ Windows rules
//! and the OTRF events nearly every candidate fails, and about half of verification's time
//! was cache misses on the first touch of those structures, not the comparisons (verifying
//! every candidate a second time, with the structures now in cache, cost only half as much
//! again). Most candidates fail on a cheap test (`GrantedAccess: '0x1440'` beside the call
//! trace that made `HandleKatz` a candidate).
//!
//! So each rule gets a [`Guard`]: one test its condition cannot hold without (a test of a
//! selection of one alternative, reached from the condition only through `and` and
//! `all of`), copied with its field and values into one cache line. A candidate whose
//! guard fails cannot match, and its rule is not read; one whose guard holds is verified
//! in full as before, the guard's test included. The guard answers as the test would: a
//! literal the scan searched for reads its hit bits, another is compared with the field's
//! text by the same function verification uses (`compare_literal` in [`crate::matcher`]).
//! The exhaustive matcher
//! ([`CompiledRules::match_event_unfiltered`](crate::CompiledRules::match_event_unfiltered))
//! skips guards, and the tests compare the two.
//!
//! A rule with no such test (its selections all behind `not`, or tested by regular
//! expressions, wildcards or field references) may still need a field to be there at all:
//! `TargetFilename|fieldref: Image` cannot hold without `TargetFilename`, nor
//! `not 1 of filter_*` with a `filter_null: Image: null` without `Image`. Its guard is then
//! that field's presence ([`needed_fields`]). Such rules are often ones without a
//! prefilter, candidates in every event of their route; where a profile does not route by
//! logsource, that is every event, and six of them took a fifth of the matching time.

use tocsin_rules::sigma::Condition;

use crate::compile::{
    compare_order, Atom, AtomId, CompiledRule, CompiledSelection, FieldSlot, LiteralRef, Test,
    ValueTest, KEYWORD_SLOT,
};

/// Bytes for a guard's values: its cache line less the field slot (4 bytes) and the
/// number of bytes used (1). It also keeps every length and offset in an entry under 256.
const ENTRY_BYTES: usize = 59;

/// An entry's first byte holds the hit bits its value needs (`HIT_*`) in these bits…
const NEED_BITS: u8 = 0x0f;
/// …and these flags: the value is a scanned literal (read from the hit bits), or a
/// compared one that is case-sensitive…
const SCANNED: u8 = 0x40;
const CASED: u8 = 0x80;
/// …or the guard's only entry, which holds when the field has a value (`null` included).
const PRESENT: u8 = 0x20;

/// One rule's guard: the field of a test its condition needs, and the test's values, one
/// of which must hold. Each value is an entry in `entries`: a scanned literal as
/// `[SCANNED | need, atom id (4 bytes)]`, a compared one as `[CASED? | need, offset of its
/// rarest byte, length, bytes…]`; a guard that asks only for the field's presence holds
/// the one entry `[PRESENT]`. `len` 0: the rule has no guard.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Guard {
    field: FieldSlot,
    len: u8,
    entries: [u8; ENTRY_BYTES],
}

// One cache line per rule.
const _: () = assert!(std::mem::size_of::<Guard>() == 64);

/// One value of a guard's test.
pub(crate) enum GuardValue<'g> {
    /// A literal the field's scan searches for: it holds when its hit bits cover `need`.
    Scanned { atom: AtomId, need: u8 },
    /// A literal compared with the field's text where `need` says.
    Compared { literal: LiteralRef<'g>, need: u8 },
    /// The field has a value, `null` included.
    Present,
}

impl Guard {
    /// A rule without a guard: every candidate is verified.
    const NONE: Guard = Guard {
        field: 0,
        len: 0,
        entries: [0; ENTRY_BYTES],
    };

    /// The field its test reads; `None` when the rule has no guard.
    pub fn field(&self) -> Option<FieldSlot> {
        (self.len != 0).then_some(self.field)
    }

    /// Its test's values: the test holds when one of them does.
    pub fn values(&self) -> impl Iterator<Item = GuardValue<'_>> {
        let mut rest = &self.entries[..self.len as usize];
        std::iter::from_fn(move || {
            let (&flags, tail) = rest.split_first()?;
            if flags == PRESENT {
                rest = tail;
                return Some(GuardValue::Present);
            }
            let need = flags & NEED_BITS;
            if flags & SCANNED != 0 {
                let (id, tail) = tail.split_at(4);
                rest = tail;
                let atom = AtomId::from_le_bytes(id.try_into().expect("four bytes"));
                return Some(GuardValue::Scanned { atom, need });
            }
            let (&[rare, len], tail) = tail.split_first_chunk::<2>().expect("an entry");
            let (bytes, tail) = tail.split_at(len as usize);
            rest = tail;
            let literal = LiteralRef {
                bytes,
                rare: rare as usize,
                cased: flags & CASED != 0,
            };
            Some(GuardValue::Compared { literal, need })
        })
    }

    /// The guard of `rule`, whose prefilter set is `prefilter`: of the tests its condition
    /// needs whose values fit, the one most likely to fail. With observed frequencies
    /// (`weights`, per atom), the one whose values occurred least; without, by shape: whole
    /// values before prefixes or suffixes before searches, then fewer values, then longer.
    /// A literal of the prefilter set is left out: it holds for most candidates.
    ///
    /// When no test fits, the presence of a field the condition needs, the one fewest
    /// tests of the rule set read (`field_tests`, per field slot): a field few rules read
    /// is one few events have.
    pub fn for_rule(
        rule: &CompiledRule,
        prefilter: &[AtomId],
        atoms: &[Atom],
        weights: Option<&[f64]>,
        field_tests: &[u32],
    ) -> Guard {
        let mut needed = Vec::new();
        needed_tests(&rule.condition, &rule.selections, &mut needed);
        let mut choices: Vec<(FieldSlot, Vec<(AtomId, u8)>)> = Vec::new();
        for test in needed {
            let Some(values) = atom_values(test) else {
                continue;
            };
            if test.all {
                // Every value is needed: each is a test of its own.
                choices.extend(values.iter().map(|&v| (test.field, vec![v])));
            } else {
                choices.push((test.field, values));
            }
        }
        choices.retain(|(_, values)| {
            !values.is_empty()
                && values.iter().all(|(a, _)| !prefilter.contains(a))
                && encoded_len(values, atoms).is_some_and(|len| len <= ENTRY_BYTES)
        });
        let shape = |values: &[(AtomId, u8)]| {
            let worst = values
                .iter()
                .map(|&(_, n)| compare_order(n))
                .max()
                .unwrap_or(0);
            let shortest = values
                .iter()
                .map(|&(a, _)| atoms[a as usize].bytes.len())
                .min()
                .unwrap_or(0);
            (worst, values.len(), usize::MAX - shortest)
        };
        let share = |values: &[(AtomId, u8)]| {
            weights.map_or(0.0, |w| values.iter().map(|&(a, _)| w[a as usize]).sum())
        };
        choices
            .iter()
            .min_by(|(_, x), (_, y)| {
                share(x)
                    .total_cmp(&share(y))
                    .then_with(|| shape(x).cmp(&shape(y)))
            })
            .map(|(field, values)| Guard::encode(*field, values, atoms))
            .or_else(|| {
                let needed = needed_fields(&rule.condition, &rule.selections);
                let field = needed
                    .into_iter()
                    .min_by_key(|&f| (field_tests.get(f as usize).copied(), f))?;
                Some(Guard::present(field))
            })
            .unwrap_or(Guard::NONE)
    }

    /// The guard that holds when `field` has a value.
    fn present(field: FieldSlot) -> Guard {
        let mut guard = Guard {
            field,
            len: 1,
            ..Guard::NONE
        };
        guard.entries[0] = PRESENT;
        guard
    }

    fn encode(field: FieldSlot, values: &[(AtomId, u8)], atoms: &[Atom]) -> Guard {
        let mut out = Vec::with_capacity(ENTRY_BYTES);
        for &(a, need) in values {
            debug_assert_eq!(need & !NEED_BITS, 0, "hit bits only");
            let atom = &atoms[a as usize];
            if atom.scanned {
                out.push(SCANNED | need);
                out.extend_from_slice(&a.to_le_bytes());
            } else {
                out.push(if atom.cased { CASED | need } else { need });
                out.push(atom.rare as u8);
                out.push(atom.bytes.len() as u8);
                out.extend_from_slice(&atom.bytes);
            }
        }
        debug_assert!(out.len() <= ENTRY_BYTES, "checked by encoded_len");
        let mut guard = Guard {
            field,
            len: out.len() as u8,
            ..Guard::NONE
        };
        guard.entries[..out.len()].copy_from_slice(&out);
        guard
    }
}

/// Bytes the entries of `values` take (see [`Guard`]); `None` when one cannot be encoded
/// (the empty literal, which holds anywhere).
fn encoded_len(values: &[(AtomId, u8)], atoms: &[Atom]) -> Option<usize> {
    values
        .iter()
        .map(|&(a, _)| {
            let atom = &atoms[a as usize];
            match atom.bytes.len() {
                _ if atom.scanned => Some(1 + 4),
                0 => None,
                len => Some(3 + len),
            }
        })
        .sum()
}

/// The tests `cond` cannot hold without: every test of a selection with one alternative,
/// through `and` and `all of`; nothing through `not`, `or` or `1 of` (unless of one).
pub(crate) fn needed_tests<'r>(
    cond: &Condition,
    selections: &'r [CompiledSelection],
    out: &mut Vec<&'r Test>,
) {
    let selection = |i: usize, out: &mut Vec<&'r Test>| {
        if let [only] = selections[i].alternatives.as_slice() {
            out.extend(only.iter());
        }
    };
    match cond {
        Condition::Selection(i) => selection(*i, out),
        Condition::And(cs) => cs.iter().for_each(|c| needed_tests(c, selections, out)),
        Condition::Or(cs) if cs.len() == 1 => needed_tests(&cs[0], selections, out),
        Condition::AllOf(ss) => ss.iter().for_each(|&i| selection(i, out)),
        Condition::AnyOf(ss) if ss.len() == 1 => selection(ss[0], out),
        Condition::Not(_) | Condition::Or(_) | Condition::AnyOf(_) => {}
    }
}

/// The fields `cond` cannot hold without: those it needs to have a value (`null`
/// included), sorted. Found with their duals, the fields whose absence makes an
/// expression hold, since `not` turns one into the other (`not Image: null` needs
/// `Image`). Both sets are kept small rather than wrong: a field is in one only when the
/// rule's tests say so, and the union or intersection of sets that miss a field misses it
/// too.
fn needed_fields(cond: &Condition, selections: &[CompiledSelection]) -> Vec<FieldSlot> {
    let (mut needed, _) = field_presence(cond, selections);
    needed.sort_unstable();
    needed.dedup();
    needed
}

/// Fields an expression needs, and fields whose absence alone makes it hold.
type FieldPresence = (Vec<FieldSlot>, Vec<FieldSlot>);

/// [`FieldPresence`] of `cond`.
fn field_presence(cond: &Condition, selections: &[CompiledSelection]) -> FieldPresence {
    let selection = |i: usize| selection_field_presence(&selections[i]);
    match cond {
        Condition::Selection(i) => selection(*i),
        Condition::Not(c) => {
            let (needs, absent) = field_presence(c, selections);
            (absent, needs)
        }
        Condition::And(cs) => all_of(cs.iter().map(|c| field_presence(c, selections))),
        Condition::Or(cs) => any_of(cs.iter().map(|c| field_presence(c, selections))),
        Condition::AllOf(ss) => all_of(ss.iter().map(|&i| selection(i))),
        Condition::AnyOf(ss) => any_of(ss.iter().map(|&i| selection(i))),
    }
}

/// [`FieldPresence`] of a selection: `or` over its alternatives of `and` over their tests.
fn selection_field_presence(selection: &CompiledSelection) -> FieldPresence {
    any_of(selection.alternatives.iter().map(|alternative| {
        all_of(
            alternative
                .iter()
                .map(|test| match test_holds_when_absent(test) {
                    None => (vec![], vec![]),
                    Some(false) => (vec![test.field], vec![]),
                    Some(true) => (vec![], vec![test.field]),
                }),
        )
    }))
}

/// `and`: needs what any part needs; holds by an absence that makes every part hold.
fn all_of(parts: impl Iterator<Item = FieldPresence>) -> FieldPresence {
    let mut needs = Vec::new();
    let mut absent: Option<Vec<FieldSlot>> = None;
    for (n, a) in parts {
        needs.extend(n);
        absent = Some(match absent {
            None => a,
            Some(prev) => intersect(prev, &a),
        });
    }
    (needs, absent.unwrap_or_default())
}

/// `or`: needs what every part needs; holds by an absence that makes one part hold.
fn any_of(parts: impl Iterator<Item = FieldPresence>) -> FieldPresence {
    let (absent, needs) = all_of(parts.map(|(needs, absent)| (absent, needs)));
    (needs, absent)
}

/// Whether `test` holds on an event without its field (`None` for a keyword search,
/// which reads no one field). As the matcher evaluates it: `exists` compares presence,
/// `neq` needs a value, and of the values only `null` (or a list holding it) holds
/// without one.
fn test_holds_when_absent(test: &Test) -> Option<bool> {
    if test.field == KEYWORD_SLOT {
        return None;
    }
    if let Some(want) = test.exists {
        return Some(!want);
    }
    if test.negate {
        return Some(false);
    }
    fn holds(value: &ValueTest) -> bool {
        match value {
            ValueTest::Null => true,
            ValueTest::Any(values) => values.iter().any(holds),
            _ => false,
        }
    }
    Some(if test.all {
        test.values.iter().all(holds)
    } else {
        test.values.iter().any(holds)
    })
}

/// The members of `a` that are in `b`.
fn intersect(mut a: Vec<FieldSlot>, b: &[FieldSlot]) -> Vec<FieldSlot> {
    a.retain(|f| b.contains(f));
    a
}

/// The (literal, hit bits needed) of each value of `test`, when the test is exactly "the
/// field's value holds one (with `all`: each) of these literals where its bits say": not
/// negated, no `exists`, not a keyword search, every value a literal.
fn atom_values(test: &Test) -> Option<Vec<(AtomId, u8)>> {
    if test.field == KEYWORD_SLOT || test.negate || test.exists.is_some() {
        return None;
    }
    test.values
        .iter()
        .map(|v| match v {
            ValueTest::Atom { atom, need } => Some((*atom, *need)),
            _ => None,
        })
        .collect()
}
