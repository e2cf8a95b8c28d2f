//! Whether any keyword of a rule set can occur in an event, told from its raw bytes.
//!
//! Sigma keywords match any value of an event, so before scanning each value of each event
//! for them, the matcher asks whether one of them occurs in the raw JSON at all (nearly
//! always it does not). That question is asked of every event of a Windows stream, whose
//! events average two kilobytes: for `product: windows` rules it was the costliest step of
//! matching, more than all the field scans together.
//!
//! It used to be asked by lower-casing the event into a buffer and running an Aho-Corasick
//! automaton over its copy, whose SIMD prefilter (Teddy) compares four bytes of every
//! position with the first four bytes of every keyword. A [`KeywordPresence`] instead picks
//! for each keyword one rare *pair* of its adjacent bytes (rare by [`commonness`], or by
//! how often it occurred when calibrated; pairs shared by several keywords are preferred),
//! and searches the raw event, as received, for the pairs in every
//! combination of ASCII case (`::` once; `iw` as `iw`, `iW`, `Iw` and `IW`). Two-byte
//! patterns let Teddy test two bytes per position instead of four, and searching every
//! case makes the lower-cased copy unnecessary. Where a pair occurs, the keywords that
//! chose it are compared in place, ignoring ASCII case.
//!
//! The answer is exact: a keyword occurs (ignoring ASCII case) if and only if one of its
//! pair's occurrences starts it. That holds of the raw bytes; a value written with `\u`
//! escapes (`\u006dimikatz`) holds text its raw bytes do not show, so the matcher does not
//! ask this test of an event holding a `\u` escape of a character that keywords are
//! searched by ([`tocsin_core::Event::has_uncommon_escapes`], then a look at the
//! escapes).
//!
//! When the case combinations of the pairs would be too many for Teddy (more than
//! [`MAX_PATTERNS`]), or a keyword is shorter than a pair, the event is lower-cased and
//! searched ([`KeywordPresence::Lowered`]): keywords of five bytes or more with a
//! [`LiteralSet`], the fragment filter the field scans use, and the few shorter ones with
//! Teddy. That is the case of a route holding many keyword rules (all
//! of them, when a profile gates no rule by its logsource). One automaton over more than a
//! hundred keywords has no SIMD prefilter left and walked its states at every byte of
//! every event, most of the matching time; the fragment filter tests eight positions per
//! step whatever the number of keywords.

use aho_corasick::packed::{self, MatchKind as PackedMatchKind};
use aho_corasick::{AhoCorasick, MatchKind, Span};

use crate::calibrate::LiteralFrequencies;
use crate::literals::{commonness, LiteralSet, FRAGMENT};

/// Most case combinations of pairs searched for at once: above 32 Teddy spreads them over
/// twice the buckets at half the width, above 64 it gives up (the crate falls back to
/// Rabin-Karp, slower than the lower-cased event's fragment scan).
const MAX_PATTERNS: usize = 32;

/// A test for "one of these keywords occurs in the raw event", ASCII case-insensitively.
pub(crate) enum KeywordPresence {
    /// Pairs of bytes searched for in every case, then the keywords compared in place.
    Pairs(PairSearch),
    /// The event lower-cased, then searched for the (lower-cased) keywords.
    Lowered(LoweredSearch),
}

/// The keywords searched for in the lower-cased event: see the module documentation.
pub(crate) struct LoweredSearch {
    /// The keywords of [`FRAGMENTED`] bytes or more.
    fragmented: Option<LiteralSet>,
    /// The shorter ones.
    short: Option<ShortSearch>,
}

/// A search for a few short keywords that stops at the first occurrence.
enum ShortSearch {
    /// Teddy (and the number of keywords), comparing a few bytes of every position with
    /// every keyword at once. (An
    /// automaton would choose its prefilter by bytes rare in English text, such as `:`,
    /// which stops at every member of a JSON event.)
    Teddy(packed::Searcher, usize),
    /// Where Teddy cannot be built (too many keywords, no vector instructions).
    Automaton(AhoCorasick),
}

impl ShortSearch {
    fn new(keywords: &[Vec<u8>]) -> Option<Self> {
        let mut teddy = packed::Config::new()
            .match_kind(PackedMatchKind::LeftmostFirst)
            .builder();
        teddy.extend(keywords);
        if let Some(searcher) = teddy.build() {
            return Some(ShortSearch::Teddy(searcher, keywords.len()));
        }
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(keywords)
            .ok()
            .map(ShortSearch::Automaton)
    }

    fn is_match(&self, hay: &[u8]) -> bool {
        match self {
            ShortSearch::Teddy(searcher, _) => searcher.find(hay).is_some(),
            ShortSearch::Automaton(ac) => ac.is_match(hay),
        }
    }

    fn len(&self) -> usize {
        match self {
            ShortSearch::Teddy(_, keywords) => *keywords,
            ShortSearch::Automaton(ac) => ac.patterns_len(),
        }
    }

    fn memory_usage(&self) -> usize {
        match self {
            ShortSearch::Teddy(searcher, _) => searcher.memory_usage(),
            ShortSearch::Automaton(ac) => ac.memory_usage(),
        }
    }
}

/// The shortest keyword given to the fragment filter: a fragment and one byte more, so
/// that it tests every second position (see [`LiteralSet::new`]).
const FRAGMENTED: usize = FRAGMENT + 1;

/// See the module documentation.
pub(crate) struct PairSearch {
    searcher: packed::Searcher,
    /// Per searcher pattern (a case combination of a pair): the pair's index.
    pattern_pair: Vec<u32>,
    /// Per pair: the keywords that chose it, with the offset of the pair in each.
    pair_keywords: Vec<Vec<(u32, u32)>>,
    /// The keywords, lower-cased.
    keywords: Vec<Box<[u8]>>,
}

impl KeywordPresence {
    /// A test for `keywords` (pieces that appear verbatim in the raw JSON whenever the
    /// keyword they come from appears in a value). `None` when a keyword is empty: the
    /// test could not rule anything out.
    ///
    /// With `frequencies` (from calibration), pairs are chosen by how often they occurred
    /// in the sample's raw events; without, by [`commonness`].
    pub(crate) fn new(
        keywords: &[Vec<u8>],
        frequencies: Option<&LiteralFrequencies>,
    ) -> Option<Self> {
        if keywords.iter().any(|k| k.is_empty()) {
            return None;
        }
        let keywords: Vec<Box<[u8]>> = keywords
            .iter()
            .map(|k| k.to_ascii_lowercase().into_boxed_slice())
            .collect();
        let pair_cost = |pair: [u8; 2]| match frequencies.and_then(|f| f.pair_share(pair)) {
            Some(share) => (share * OBSERVED_WEIGHT as f64).round() as u32,
            None => {
                // Two letters in a row are the inside of some word more often than not.
                let word = pair.iter().all(u8::is_ascii_alphabetic);
                commonness(pair[0]) + commonness(pair[1]) + if word { WORD_COST } else { 0 }
            }
        };
        match PairSearch::new(&keywords, pair_cost) {
            Some(pairs) => Some(KeywordPresence::Pairs(pairs)),
            None => Self::lowered(&keywords),
        }
    }

    /// The [`KeywordPresence::Lowered`] test for (non-empty, lower-cased) `keywords`;
    /// `None` when an automaton cannot be built.
    fn lowered(keywords: &[Box<[u8]>]) -> Option<Self> {
        let (long, short): (Vec<Vec<u8>>, Vec<Vec<u8>>) = keywords
            .iter()
            .map(|k| k.to_vec())
            .partition(|k| k.len() >= FRAGMENTED);
        let fragmented = match long.is_empty() {
            true => None,
            false => Some(LiteralSet::new(&long).ok()?),
        };
        let short = match short.is_empty() {
            true => None,
            false => Some(ShortSearch::new(&short)?),
        };
        Some(KeywordPresence::Lowered(LoweredSearch {
            fragmented,
            short,
        }))
    }

    /// Whether a keyword occurs in `raw`, ignoring ASCII case. `lowered` is a buffer for
    /// the lower-cased event; it is filled (when empty) only if this test needs it, and
    /// may be shared by the tests of one event.
    pub(crate) fn is_match(&self, raw: &[u8], lowered: &mut Vec<u8>) -> bool {
        match self {
            KeywordPresence::Pairs(pairs) => pairs.is_match(raw),
            KeywordPresence::Lowered(search) => {
                let lowered = self::lowered(raw, lowered);
                search
                    .short
                    .as_ref()
                    .is_some_and(|short| short.is_match(lowered))
                    || search
                        .fragmented
                        .as_ref()
                        .is_some_and(|set| set.is_match(lowered))
            }
        }
    }

    /// How the test is made, for `TOCSIN_DEBUG_STATS`.
    pub(crate) fn describe(&self) -> String {
        match self {
            KeywordPresence::Pairs(p) => format!(
                "{} pairs in {} cases ({})",
                p.pair_keywords.len(),
                p.pattern_pair.len(),
                p.pair_keywords
                    .iter()
                    .map(|chosen| {
                        // Every pair is chosen by at least one keyword, which holds it.
                        let (k, offset) = chosen[0];
                        let at = offset as usize;
                        String::from_utf8_lossy(&p.keywords[k as usize][at..at + 2]).into_owned()
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            KeywordPresence::Lowered(search) => format!(
                "the lower-cased event, {} keywords by fragments and {} by {}",
                search.fragmented.as_ref().map_or(0, LiteralSet::len),
                search.short.as_ref().map_or(0, ShortSearch::len),
                match search.short {
                    Some(ShortSearch::Automaton(_)) => "automaton",
                    _ => "Teddy",
                },
            ),
        }
    }

    /// Bytes held on the heap.
    pub(crate) fn memory_usage(&self) -> usize {
        match self {
            KeywordPresence::Pairs(p) => {
                p.searcher.memory_usage()
                    + p.pattern_pair.len() * 4
                    + p.pair_keywords
                        .iter()
                        .map(|k| 24 + k.len() * 8)
                        .sum::<usize>()
                    + p.keywords.iter().map(|k| 16 + k.len()).sum::<usize>()
            }
            KeywordPresence::Lowered(search) => {
                search
                    .fragmented
                    .as_ref()
                    .map_or(0, LiteralSet::memory_usage)
                    + search.short.as_ref().map_or(0, ShortSearch::memory_usage)
            }
        }
    }
}

impl PairSearch {
    fn new(keywords: &[Box<[u8]>], pair_cost: impl Fn([u8; 2]) -> u32) -> Option<Self> {
        let pairs = choose_pairs(keywords, pair_cost)?;
        let mut pair_keywords: Vec<Vec<(u32, u32)>> = vec![Vec::new(); pairs.len()];
        for (k, keyword) in keywords.iter().enumerate() {
            // The first chosen pair the keyword holds, at its first place in it.
            let (p, offset) = pairs.iter().enumerate().find_map(|(p, pair)| {
                keyword
                    .windows(2)
                    .position(|w| w == pair)
                    .map(|offset| (p, offset))
            })?;
            pair_keywords[p].push((k as u32, offset as u32));
        }
        let mut builder = packed::Config::new()
            .match_kind(PackedMatchKind::LeftmostFirst)
            .builder();
        let mut pattern_pair = Vec::new();
        for (p, pair) in pairs.iter().enumerate() {
            for variant in case_variants(*pair) {
                builder.add(variant);
                pattern_pair.push(p as u32);
            }
        }
        if pattern_pair.len() > MAX_PATTERNS {
            return None;
        }
        let searcher = builder.build()?;
        Some(PairSearch {
            searcher,
            pattern_pair,
            pair_keywords,
            keywords: keywords.to_vec(),
        })
    }

    fn is_match(&self, raw: &[u8]) -> bool {
        let mut at = 0;
        while at < raw.len() {
            let Some(m) = self.searcher.find_in(raw, Span::from(at..raw.len())) else {
                return false;
            };
            let pair = self.pattern_pair[m.pattern().as_usize()];
            for &(k, offset) in &self.pair_keywords[pair as usize] {
                let keyword = &self.keywords[k as usize];
                let Some(start) = m.start().checked_sub(offset as usize) else {
                    continue;
                };
                if raw
                    .get(start..start + keyword.len())
                    .is_some_and(|window| window.eq_ignore_ascii_case(keyword))
                {
                    return true;
                }
            }
            // Every pattern is two bytes and at most one starts at a position: the next
            // occurrence, overlapping or not, starts after this one's start.
            at = m.start() + 1;
        }
        false
    }
}

/// What one more case combination of a pair costs, against [`commonness`]: a pattern
/// more for Teddy to tell apart.
const VARIANT_COST: u32 = 6;

/// What a pair of two letters costs, unobserved, on top of [`commonness`].
const WORD_COST: u32 = 8;

/// What a pair found in every event costs, against [`VARIANT_COST`]: each occurrence
/// stops the search to compare keywords (about 12 ns, measured over the OTRF events; the
/// search itself takes about 100 ns for two kilobytes).
const OBSERVED_WEIGHT: u32 = 60;

/// Pairs of adjacent bytes such that every keyword holds one: chosen greedily, each time
/// the pair with the least cost per keyword it covers (a weighted set cover), where a
/// pair's cost is its case combinations plus `pair_cost` (how common it is). Sharing
/// matters: one `::` covers every `module::command` of Mimikatz. `None` when a keyword
/// is shorter than a pair.
fn choose_pairs(
    keywords: &[Box<[u8]>],
    pair_cost: impl Fn([u8; 2]) -> u32,
) -> Option<Vec<[u8; 2]>> {
    if keywords.iter().any(|k| k.len() < 2) {
        return None;
    }
    let mut uncovered: Vec<&[u8]> = keywords.iter().map(|k| &**k).collect();
    let mut chosen = Vec::new();
    while !uncovered.is_empty() {
        let mut candidates: Vec<[u8; 2]> = uncovered
            .iter()
            .flat_map(|k| k.windows(2).map(|w| [w[0], w[1]]))
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let holds = |pair: &[u8; 2], k: &[u8]| k.windows(2).any(|w| w == pair);
        let best = candidates
            .into_iter()
            .map(|pair| {
                let covered = uncovered.iter().filter(|k| holds(&pair, k)).count() as u32;
                let cost = case_variants(pair).len() as u32 * VARIANT_COST + pair_cost(pair);
                // Least cost per keyword covered, compared without division.
                (pair, cost, covered)
            })
            .min_by(|a, b| (a.1 * b.2).cmp(&(b.1 * a.2)).then(a.0.cmp(&b.0)))
            .expect("an uncovered keyword has a pair");
        uncovered.retain(|k| !holds(&best.0, k));
        chosen.push(best.0);
    }
    Some(chosen)
}

/// Every ASCII-case combination of a lower-cased pair (one to four).
fn case_variants(pair: [u8; 2]) -> Vec<[u8; 2]> {
    let cases = |b: u8| {
        if b.is_ascii_lowercase() {
            vec![b, b.to_ascii_uppercase()]
        } else {
            vec![b]
        }
    };
    let mut out = Vec::new();
    for a in cases(pair[0]) {
        for b in cases(pair[1]) {
            out.push([a, b]);
        }
    }
    out
}

/// The raw event lower-cased, made in `buf` on the first call for an event (the caller
/// clears `buf` between events) and read from it after.
pub(crate) fn lowered<'b>(raw: &[u8], buf: &'b mut Vec<u8>) -> &'b [u8] {
    if buf.is_empty() {
        buf.extend(raw.iter().map(u8::to_ascii_lowercase));
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(keywords: &[Vec<u8>], raw: &[u8]) -> bool {
        let lowered = raw.to_ascii_lowercase();
        keywords.iter().any(|k| {
            let k = k.to_ascii_lowercase();
            lowered.windows(k.len()).any(|w| w == k.as_slice())
        })
    }

    fn presence(keywords: &[&str]) -> KeywordPresence {
        let keywords: Vec<Vec<u8>> = keywords.iter().map(|k| k.as_bytes().to_vec()).collect();
        KeywordPresence::new(&keywords, None).expect("a presence test")
    }

    #[test]
    fn finds_keywords_in_any_case_where_their_pair_occurs_more_than_once() {
        let p = presence(&["sekurlsa::", "Kiwi Legit Printer", "::."]);
        assert!(matches!(p, KeywordPresence::Pairs(_)));
        let mut buf = Vec::new();
        assert!(p.is_match(br#"{"CommandLine":"SEKURLSA::logonpasswords"}"#, &mut buf));
        assert!(p.is_match(br#"{"a":"x","b":"kiwi LEGIT printer"}"#, &mut buf));
        // The pair `::` occurs at 1 and 2; the keyword starts at the second.
        assert!(p.is_match(b"a:::.", &mut buf));
        assert!(!p.is_match(br#"{"a":"::1","b":"sekurlsa:"}"#, &mut buf));
        assert!(!p.is_match(b"", &mut buf));
        // The pairs path never fills the lower-cased buffer.
        assert!(buf.is_empty());
    }

    #[test]
    fn a_keyword_is_found_at_every_place_of_a_long_event() {
        // Every place in and around three 64-byte blocks, the last position included;
        // cut by one byte, or with its pair broken, it is not found.
        let p = presence(&["MiMi::Katz", "zz"]);
        assert!(matches!(p, KeywordPresence::Pairs(_)));
        let mut buf = Vec::new();
        for len in [2usize, 63, 64, 65, 127, 128, 129, 200] {
            for at in 0..=len.saturating_sub(10) {
                let mut raw = vec![b'.'; len];
                if len >= 10 {
                    raw[at..at + 10].copy_from_slice(b"mImI::kAtZ");
                }
                assert_eq!(p.is_match(&raw, &mut buf), len >= 10, "{len} {at}");
                if len >= 10 {
                    assert!(!p.is_match(&raw[..at + 9], &mut buf), "{len} {at}: cut");
                    raw[at + 4] = b';';
                    assert!(!p.is_match(&raw, &mut buf), "{len} {at}: broken");
                }
            }
            // The other keyword in the event's last two bytes.
            let mut raw = vec![b'.'; len];
            raw[len - 2..].copy_from_slice(b"ZZ");
            assert!(p.is_match(&raw, &mut buf), "{len}: at the end");
        }
    }

    #[test]
    fn too_many_case_combinations_fall_back_to_the_lowered_event() {
        // Twenty-five keywords, pairs of rare letters, each in four cases.
        let rare = "jkqvz";
        let words: Vec<String> = rare
            .chars()
            .flat_map(|a| rare.chars().map(move |b| format!("{a}{b}")))
            .collect();
        let refs: Vec<&str> = words.iter().map(String::as_str).collect();
        let p = presence(&refs);
        assert!(matches!(p, KeywordPresence::Lowered(_)));
        let mut buf = Vec::new();
        assert!(p.is_match(b"...QZ...", &mut buf));
        assert!(!buf.is_empty());
        buf.clear();
        assert!(!p.is_match(b"...q-z...", &mut buf));
        // A keyword of one byte has no pair.
        assert!(matches!(
            presence(&["sekurlsa::", "!"]),
            KeywordPresence::Lowered(_)
        ));
    }

    #[test]
    fn observed_pair_frequencies_steer_the_choice() {
        let keywords = vec![b"mimidrv.sys".to_vec(), b"mimilib.dll".to_vec()];
        let describe = |p: KeywordPresence| p.describe();
        let fixed = KeywordPresence::new(&keywords, None).expect("a presence test");
        assert_eq!(describe(fixed), "2 pairs in 4 cases (v. b.)");
        // Observed: every pair of both keywords in every event, except `dr` and `li`.
        let mut seen: Vec<([u8; 2], f64)> = keywords
            .iter()
            .flat_map(|k| k.windows(2).map(|w| ([w[0], w[1]], 1.0)))
            .filter(|(pair, _)| pair != b"dr" && pair != b"li")
            .collect();
        seen.push((*b"zz", 0.5));
        let observed = LiteralFrequencies::from_pair_shares(100, &seen);
        let calibrated = KeywordPresence::new(&keywords, Some(&observed)).expect("a test");
        assert_eq!(describe(calibrated), "2 pairs in 8 cases (dr li)");
    }

    proptest! {
        #[test]
        fn agrees_with_searching_the_lowered_event(
            keywords in proptest::collection::vec("[a-dA-D:. \\\\]{1,6}", 1..12),
            // Longer than a few of Teddy's 32-byte steps.
            raw in "[a-dA-D:. \\\\\"{}]{0,200}",
        ) {
            let keywords: Vec<Vec<u8>> = keywords.iter().map(|k| k.as_bytes().to_vec()).collect();
            let expected = naive(&keywords, raw.as_bytes());
            let p = KeywordPresence::new(&keywords, None).expect("no empty keyword");
            let mut buf = Vec::new();
            prop_assert_eq!(p.is_match(raw.as_bytes(), &mut buf), expected);
            // The fallback for many keywords, whichever way these would be searched.
            let boxed: Vec<Box<[u8]>> = keywords
                .iter()
                .map(|k| k.to_ascii_lowercase().into_boxed_slice())
                .collect();
            let lowered = KeywordPresence::lowered(&boxed).expect("an automaton");
            buf.clear();
            prop_assert_eq!(lowered.is_match(raw.as_bytes(), &mut buf), expected);
        }
    }
}
