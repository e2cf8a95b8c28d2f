//! How common a literal is likely to be in events, guessed from the rule set alone: the
//! prefilter's choices when no sample of events has been observed.
//!
//! Why: each AND of a rule needs only one of its tests in the prefilter set, and the one
//! chosen decides how often the rule is verified for nothing, and how often the field
//! scans report a literal at all. Without observed frequencies ([`crate::calibrate`]) the
//! compiler used to prefer the fewest literals, then the longest: `ObjectType: 'Key'`
//! (one literal, in nearly every registry audit event) over four `ObjectName|endswith`
//! values that almost never occur, `EventType: SetValue` over the registry key a rule is
//! about, `C:\Windows\System32\ntdll.dll+` (in nearly every call trace) over the
//! `GrantedAccess: '0x1440'` that tells HandleKatz apart.
//!
//! A rule set says more than that about its literals. A literal that many rules test, in
//! any field, names something common on every machine: an event type, an access right,
//! a system binary (`\svchost.exe`, tested in `SourceImage` by one rule, in `Image`,
//! `ParentImage` and `TargetImage` by some forty more). So does one that many rules'
//! literals begin or end with: rules narrow down from `C:\Windows\`, from
//! `\Software\Microsoft\Windows\CurrentVersion` to its `\Run\` key, from `.exe` to a
//! binary. Rule authors write such a literal to narrow down, not because it is telling.
//! And a short literal occurs by chance in any long value. So the guessed share of
//! events holding a literal grows with the number of rules testing it or a literal that
//! begins or ends with it (in any field, ignoring case), and shrinks with its length.
//! Only the order of the guesses matters (each AND keeps the alternative with the
//! smallest sum), and the matches are the same whatever is chosen.
//!
//! Two kinds of value are common whatever their length or the rules testing them: the
//! whole value of a field the profile routes events by (`EventID: 4688`, `Channel`: it
//! names the event's type, and every event has one), and a boolean (`Initiated: 'true'`).
//! Where the guesses still tie (`.exe` in `Image` or in `TargetFilename`), the compiler
//! takes the literal in the field fewer logsources test ([`crate::compile`]'s breadth):
//! a field's literals are searched for in every event that has the field.
//!
//! Counting literals that contain it anywhere (`ntdll.dll` within
//! `C:\Windows\System32\ntdll.dll+`) was tried too: one Aho-Corasick search of every
//! literal for all the others added 90 ms to compiling the SigmaHQ set (a start-up of
//! 0.3 s) and made matching no faster than beginnings and endings, which two sorts find
//! in a few milliseconds.
//!
//! Guards ([`crate::guard`]) are not chosen by these guesses: they cannot tell a whole
//! value from a search, which is what makes a guard cheap and likely to fail.

use crate::compile::{prefilter_atoms, Atom, CompiledRule};

/// The guessed share of events holding a literal of one byte that one rule tests; each
/// further byte divides it by [`PER_BYTE`], down to [`FLOOR`] (from seven bytes on):
/// past a few bytes, length no longer tells how rare a literal is, and the number of
/// rules testing it decides alone.
const ONE_BYTE: f64 = 0.5;
const PER_BYTE: f64 = 3.0;
const FLOOR: f64 = 0.002;

/// The guessed share of events holding a whole value of a field of few values: all of them.
const CATEGORICAL: f64 = 1.0;

/// Per atom: the guessed share of events holding it (see the module docs). `categorical`
/// marks the atoms only ever tested as the whole value of a field of few values: one the
/// profile routes events by (`EventID`, `Channel`: they name the event's type, which every
/// event has one of), or a boolean (`true`, `false`).
pub(crate) fn atom_weights(
    rules: &[CompiledRule],
    atoms: &[Atom],
    categorical: &[bool],
) -> Vec<f64> {
    // Per atom: the rules testing it (each rule once).
    let mut rules_testing = vec![0u32; atoms.len()];
    let mut seen = Vec::new();
    for rule in rules {
        seen.clear();
        for test in rule.tests() {
            for v in &test.values {
                prefilter_atoms(v, &mut seen);
            }
        }
        seen.sort_unstable();
        seen.dedup();
        for &a in &seen {
            rules_testing[a as usize] += 1;
        }
    }
    // The distinct literals, ignoring case and field, and the rules testing each.
    let atom_literals: Vec<Box<[u8]>> = atoms.iter().map(lowered).collect();
    let mut literals = atom_literals.clone();
    literals.sort_unstable();
    literals.dedup();
    let of_atom: Vec<usize> = atom_literals
        .iter()
        .map(|l| literals.binary_search(l).expect("every literal is listed"))
        .collect();
    let mut tested = vec![0u32; literals.len()];
    for (&i, &n) in of_atom.iter().zip(&rules_testing) {
        tested[i] += n;
    }
    // Those testing a literal that begins or ends with it count too.
    let reversed: Vec<Box<[u8]>> = literals
        .iter()
        .map(|l| l.iter().rev().copied().collect())
        .collect();
    let starting = rules_extending(&literals, &tested);
    let ending = rules_extending(&reversed, &tested);
    of_atom
        .into_iter()
        .zip(atoms)
        .zip(categorical)
        .map(|((i, atom), &categorical)| {
            let rules = starting[i] + ending[i] - tested[i];
            let by_length =
                (ONE_BYTE / PER_BYTE.powi(atom.bytes.len().saturating_sub(1) as i32)).max(FLOOR);
            if categorical {
                CATEGORICAL
            } else {
                (by_length * f64::from(rules.max(1))).min(1.0)
            }
        })
        .collect()
}

/// Per literal: the rules testing it or a literal that begins with it. Sorted, the
/// literals that begin with one follow it in one run. (Given the literals reversed: the
/// rules testing it or a literal that ends with it.)
fn rules_extending(literals: &[Box<[u8]>], tested: &[u32]) -> Vec<u32> {
    let mut order: Vec<usize> = (0..literals.len()).collect();
    order.sort_unstable_by(|&a, &b| literals[a].cmp(&literals[b]));
    // The rules testing the literals before each sorted position.
    let mut before = Vec::with_capacity(order.len() + 1);
    before.push(0u32);
    for &i in &order {
        before.push(before[before.len() - 1] + tested[i]);
    }
    let mut out = vec![0u32; literals.len()];
    for (k, &i) in order.iter().enumerate() {
        let run = order[k..].partition_point(|&j| literals[j].starts_with(&literals[i]));
        out[i] = before[k + run] - before[k];
    }
    out
}

/// An atom's bytes, lower-cased (a case-insensitive atom's already are).
fn lowered(atom: &Atom) -> Box<[u8]> {
    if atom.cased {
        atom.bytes.to_ascii_lowercase().into()
    } else {
        atom.bytes.clone()
    }
}
