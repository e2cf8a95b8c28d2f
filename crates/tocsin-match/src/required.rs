//! Literals a regex cannot match without: the prefilter of `|re` tests.
//!
//! Why: a rule whose only test is a regex had no atom for the prefilter, so it was
//! verified on every event of its route. With the SigmaHQ rules that is a few dozen
//! regexes (the Invoke-Obfuscation family, over command lines and PowerShell payloads of
//! kilobytes), and they cost more than all the other rules of those routes together. Most of
//! them cannot match without some word (`powershell`, `invoke`, `&&`): scanning the field for
//! those words with the other literals costs next to nothing, and the regex then runs only
//! on the events that have one.
//!
//! [`required_literal_sets`] walks the regex's syntax tree and returns sets of literals, each
//! a set of which at least one occurs in every match. It is sound for any regex: a literal
//! is only taken from parts every match must contain (concatenations, repetitions of at
//! least one, every branch of an alternation). The literals are compared ASCII
//! case-insensitively by the prefilter, which can only let more events through; the regex
//! itself decides.
//!
//! Why several sets: any one of them will do, and the compiler picks the one least likely
//! to occur in events, as it picks among the tests a rule ANDs. Length alone cannot tell:
//! `^C:\Windows\SYSTEM32\ntdll\.dll\+[a-z0-9]{4,6}\|...\|UNKNOWN\(` holds a long path
//! that begins nearly every call trace, and the short `|unknown(` that almost none holds.

use regex_syntax::hir::{Class, Hir, HirKind};

use crate::literals::FRAGMENT;

/// Shortest literal worth prefiltering on: shorter ones occur in most values.
const MIN_LEN: usize = 3;

/// At most this many alternatives in one set (an alternation of many words).
const MAX_ALTERNATIVES: usize = 64;

/// At most this many sets are offered for one regex.
const MAX_SETS: usize = 8;

/// Sets of literals, lower-cased, of each of which every match of `hir` contains at least
/// one, every literal at least [`MIN_LEN`] bytes: the most selective by length first, then
/// the others whose literals are long enough for the fragment scan, at most [`MAX_SETS`].
/// Empty when there is none.
pub(crate) fn required_literal_sets(hir: &Hir) -> Vec<Vec<Vec<u8>>> {
    let mut sets = Vec::new();
    collect_required(hir, &mut sets);
    sets.retain(|set| set.iter().all(|l| l.len() >= MIN_LEN));
    // Stable: of equally selective sets, the first in the regex stays first.
    sets.sort_by_key(|set| std::cmp::Reverse(selectivity(set)));
    let mut distinct: Vec<Vec<Vec<u8>>> = Vec::new();
    for set in sets {
        // Past the first, only sets of literals long enough for the fragment scan: a
        // shorter one is cheap to choose by its frequency and dear to scan for, as it
        // adds an automaton's pass over the field.
        let long = set.iter().all(|l| l.len() > FRAGMENT);
        if (distinct.is_empty() || long) && !distinct.contains(&set) {
            distinct.push(set);
        }
    }
    distinct.truncate(MAX_SETS);
    distinct
}

/// The most selective set of [`required_literal_sets`], by length alone.
#[cfg(test)]
pub(crate) fn required_literals(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    required_literal_sets(hir).into_iter().next()
}

/// Push every required set of `hir` onto `out`, in the order of the regex. In a
/// concatenation, runs of adjacent parts that match a finite set of strings join into one
/// set (their product: `i(?:nvoke|ex)` gives `invoke` and `iex`); every run and every other
/// part's own sets are candidates.
fn collect_required(hir: &Hir, out: &mut Vec<Vec<Vec<u8>>>) {
    if let Some(set) = exact(hir) {
        out.push(set);
        return;
    }
    match hir.kind() {
        HirKind::Capture(cap) => collect_required(&cap.sub, out),
        HirKind::Repetition(rep) if rep.min >= 1 => collect_required(&rep.sub, out),
        // Each branch needs one of its sets: its best one, with the others' best ones.
        HirKind::Alternation(alts) => out.extend(union(alts, required)),
        HirKind::Concat(parts) => {
            let mut run: Vec<Vec<u8>> = vec![Vec::new()];
            for part in parts {
                match exact(part) {
                    Some(set) if run.len() * set.len() <= MAX_ALTERNATIVES => {
                        run = product(&run, &set);
                    }
                    // Too many combinations: close the run, start one from this part.
                    Some(set) => out.push(std::mem::replace(&mut run, set)),
                    None => {
                        out.push(std::mem::replace(&mut run, vec![Vec::new()]));
                        collect_required(part, out);
                    }
                }
            }
            out.push(run);
        }
        _ => {}
    }
}

/// The best required set of `hir` by [`better`], without the length floor: what an
/// alternation's branch contributes.
fn required(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    let mut sets = Vec::new();
    collect_required(hir, &mut sets);
    sets.into_iter()
        .fold(None, |best, set| better(best, Some(set)))
}

/// The finite set of strings `hir` matches, lower-cased (ASCII), when it is small: a literal,
/// a class of a few characters (`(?i)k` is `k`, `K` and the Kelvin sign), and
/// concatenations, alternations and captures of those.
fn exact(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    let set = match hir.kind() {
        HirKind::Literal(lit) => vec![lit.0.to_ascii_lowercase()],
        HirKind::Class(class) => class_strings(class)?,
        HirKind::Capture(cap) => exact(&cap.sub)?,
        HirKind::Concat(parts) => {
            let mut set = vec![Vec::new()];
            for part in parts {
                set = product(&set, &exact(part)?);
                if set.len() > MAX_ALTERNATIVES {
                    return None;
                }
            }
            set
        }
        HirKind::Alternation(alts) => union(alts, exact)?,
        _ => return None,
    };
    let mut set = set;
    set.sort();
    set.dedup();
    Some(set)
}

/// The sets of every branch of an alternation together (each branch needs one), or `None`
/// when a branch has none or there are too many.
fn union(alts: &[Hir], set_of: fn(&Hir) -> Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    let mut union = Vec::new();
    for alt in alts {
        union.extend(set_of(alt)?);
        if union.len() > MAX_ALTERNATIVES {
            return None;
        }
    }
    union.sort();
    union.dedup();
    Some(union)
}

/// Every string of `a` followed by every string of `b`.
fn product(a: &[Vec<u8>], b: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            out.push([x.as_slice(), y.as_slice()].concat());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The characters of a class of at most four, each as its UTF-8 bytes lower-cased (ASCII).
fn class_strings(class: &Class) -> Option<Vec<Vec<u8>>> {
    const MAX_CHARS: u32 = 4;
    // (first, last) code point, or byte for classes over bytes.
    let ranges: Vec<(u32, u32)> = match class {
        Class::Unicode(c) => c
            .iter()
            .map(|r| (r.start().into(), r.end().into()))
            .collect(),
        Class::Bytes(c) => c
            .iter()
            .map(|r| (r.start().into(), r.end().into()))
            .collect(),
    };
    let count: u32 = ranges.iter().map(|(first, last)| last - first + 1).sum();
    if count > MAX_CHARS {
        return None;
    }
    let mut out = Vec::new();
    for (first, last) in ranges {
        for unit in first..=last {
            let bytes = match class {
                Class::Unicode(_) => char::from_u32(unit)?.to_string().into_bytes(),
                Class::Bytes(_) => vec![u8::try_from(unit).ok()?],
            };
            out.push(bytes.to_ascii_lowercase());
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// How selective a required set is by length alone: its shortest literal's length (up to
/// eight bytes), then fewer literals.
fn selectivity(set: &[Vec<u8>]) -> (usize, std::cmp::Reverse<usize>) {
    let shortest = set.iter().map(Vec::len).min().unwrap_or(0);
    (shortest.min(8), std::cmp::Reverse(set.len()))
}

/// The more selective of two required sets by [`selectivity`] (`a` when they tie).
fn better(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if selectivity(&b) > selectivity(&a) {
            b
        } else {
            a
        }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex_automata::meta::Regex;
    use regex_automata::util::syntax;

    fn literals(pattern: &str, case_insensitive: bool) -> Option<Vec<String>> {
        let config = syntax::Config::new().case_insensitive(case_insensitive);
        let hir = syntax::parse_with(pattern, &config).unwrap();
        required_literals(&hir).map(|set| {
            set.into_iter()
                .map(|l| String::from_utf8(l).unwrap())
                .collect()
        })
    }

    #[test]
    fn picks_the_most_selective_required_literals() {
        assert_eq!(
            literals(
                r"cmd.{0,5}(?:/c|/r).+powershell.+(?:\$?\{?input\}?|noexit)",
                false
            ),
            Some(vec!["powershell".into()])
        );
        assert_eq!(
            literals(r"(?:invoke|iex)\s*\(", true),
            Some(vec!["iex".into(), "invoke".into(), "invo\u{212a}e".into()])
        );
        assert_eq!(literals(r"\$\{?[a-z]+\}?", true), None);
        assert_eq!(literals(r"(?:abc)?xyz*", false), None, "xy is too short");
        // (?i)k also matches the Kelvin sign: both spellings are kept.
        assert_eq!(
            literals(r"ok!", true),
            Some(vec!["ok!".into(), "o\u{212a}!".into()])
        );
        assert_eq!(literals(r"a|bcd", false), None, "one branch has no literal");
    }

    /// Small valid regexes: sequences of literals, classes, optional and repeated parts,
    /// alternations, sometimes an alternation of two sequences.
    fn pattern() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("a"),
            Just("b"),
            Just("k"),
            Just("A"),
            Just("[ak]"),
            Just("a*"),
            Just("b?"),
            Just("(a|b)"),
            Just("(ab)+"),
            Just("k{1,2}"),
            Just("."),
            Just("(a|bk)*"),
            Just("(?:ab|a)"),
            Just("\\b"),
        ];
        let sequence = proptest::collection::vec(piece, 1..7).prop_map(|p| p.concat());
        (sequence.clone(), proptest::option::of(sequence)).prop_map(|(a, b)| match b {
            Some(b) => format!("{a}|{b}"),
            None => a,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Soundness: whenever the regex matches a text, one of its literals is in the text
        /// (ASCII case aside, as the prefilter compares).
        #[test]
        fn every_match_contains_a_required_literal(
            pattern in pattern(),
            text in "[abkKA \u{212a}]{0,12}",
            case_insensitive in any::<bool>(),
        ) {
            let config = syntax::Config::new().case_insensitive(case_insensitive);
            let hir = syntax::parse_with(&pattern, &config).unwrap();
            let mut sets = Vec::new();
            collect_required(&hir, &mut sets);
            let regex = Regex::builder().syntax(config).build(&pattern).unwrap();
            if regex.is_match(&text) {
                let lower = text.to_ascii_lowercase();
                for set in &sets {
                    prop_assert!(
                        set.iter().any(|l| lower.contains(std::str::from_utf8(l).unwrap())),
                        "{pattern:?} matched {text:?} without any of {set:?}"
                    );
                }
            }
        }
    }
}
