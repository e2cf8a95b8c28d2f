//! Regexes that only ask for a long enough run of one character class (`.{1000,}`,
//! `(.){200,}`, `[^/]{100,}`), answered by counting.
//!
//! Why: Sigma rules flag unusually long command lines this way. Searched unanchored, such a
//! regex has a lazy-DFA state per count (each holding every count up to it), which does not
//! fit the DFA cache; the engine falls back to simulating the NFA, ~30 µs for one
//! PowerShell command line. Whether a match exists is simply whether some run of
//! consecutive characters of the class is at least `min` long (a longer run, or an upper
//! bound, changes where a match ends, not whether there is one).

use regex_syntax::hir::{Class, Hir, HirKind};

/// A regex of the form `X{min,}` or `X{min,max}` (possibly in a group), for one character
/// class `X`, not anchored.
#[derive(Debug, Clone)]
pub(crate) struct ClassRun {
    /// Inclusive ranges of the class, sorted: code points, or bytes for a byte class (an
    /// ASCII class under `(?-u)`: byte classes that could match part of a character are
    /// rejected by the parser).
    ranges: Box<[(u32, u32)]>,
    /// The class is over bytes (`(?-u)`), not characters.
    bytes: bool,
    /// Shortest run that matches.
    min: u32,
}

impl ClassRun {
    /// The run that `hir` asks for, when it is nothing else.
    pub(crate) fn of(hir: &Hir) -> Option<ClassRun> {
        fn ungrouped(mut hir: &Hir) -> &Hir {
            while let HirKind::Capture(cap) = hir.kind() {
                hir = &cap.sub;
            }
            hir
        }
        let hir = ungrouped(hir);
        // `X{1}` is parsed as `X` itself.
        let (class, min) = match hir.kind() {
            HirKind::Repetition(rep) => (ungrouped(&rep.sub), rep.min),
            _ => (hir, 1),
        };
        let (ranges, bytes): (Box<[(u32, u32)]>, bool) = match class.kind() {
            HirKind::Class(Class::Unicode(c)) => (
                c.ranges()
                    .iter()
                    .map(|r| (u32::from(r.start()), u32::from(r.end())))
                    .collect(),
                false,
            ),
            HirKind::Class(Class::Bytes(c)) => (
                c.ranges()
                    .iter()
                    .map(|r| (u32::from(r.start()), u32::from(r.end())))
                    .collect(),
                true,
            ),
            _ => return None,
        };
        Some(ClassRun { ranges, bytes, min })
    }

    fn contains(&self, unit: u32) -> bool {
        // The ranges are sorted and disjoint (regex-syntax's canonical form); `\w` has
        // hundreds.
        let i = self.ranges.partition_point(|&(_, end)| end < unit);
        self.ranges.get(i).is_some_and(|&(start, _)| start <= unit)
    }

    /// Whether `text` holds a run of at least `min` characters (bytes) of the class.
    pub(crate) fn is_match(&self, text: &str) -> bool {
        if self.min == 0 {
            return true;
        }
        let min = self.min as usize;
        // Fewer bytes than `min` cannot hold the run (a character is at least one byte).
        if text.len() < min {
            return false;
        }
        let mut run = 0usize;
        let mut step = |inside: bool| {
            run = if inside { run + 1 } else { 0 };
            run >= min
        };
        if self.bytes {
            text.bytes().any(|b| step(self.contains(u32::from(b))))
        } else {
            text.chars().any(|c| step(self.contains(u32::from(c))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use regex_automata::meta::Regex;

    fn run(pattern: &str) -> Option<ClassRun> {
        ClassRun::of(&regex_syntax::parse(pattern).unwrap())
    }

    #[test]
    fn only_a_bare_counted_class_is_a_run() {
        for p in [
            ".{3,}",
            "(.){3,}",
            "[^/]{3}",
            "(?-u:\\w){3,5}",
            "((?:.)){2,}",
        ] {
            assert!(run(p).is_some(), "{p}");
        }
        for p in ["^.{3,}", ".{3,}$", "a.{3,}", ".{3,}|b", "(?:ab){3,}", "abc"] {
            assert!(run(p).is_none(), "{p}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The run answers as the regex engine does.
        #[test]
        fn agrees_with_the_regex_engine(
            class in prop::sample::select(vec![".", "[^/]", "[a-c]", "(?-u:[a-c/])", "(?-u:\\w)", "(?s:.)", "\\w", "[^\\\\ ]"]),
            group in any::<bool>(),
            min in 0u32..6,
            extra in prop::option::of(0u32..3),
            text in "[abc/ \\\\\\né€]{0,12}",
        ) {
            let atom = if group { format!("({class})") } else { class.to_owned() };
            let pattern = match extra {
                Some(e) => format!("{atom}{{{min},{}}}", min + e),
                None => format!("{atom}{{{min},}}"),
            };
            // `X{0}` and `X{0,0}` are parsed as the empty regex: not a run.
            let Some(r) = run(&pattern) else {
                prop_assert_eq!(extra.map(|e| min + e), Some(0), "{}", pattern);
                return Ok(());
            };
            let want = Regex::new(&pattern).unwrap().is_match(&text);
            prop_assert_eq!(r.is_match(&text), want, "{} on {:?}", pattern, text);
        }
    }
}
