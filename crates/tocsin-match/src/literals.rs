//! Finding every occurrence of thousands of literals in one short field value.
//!
//! Why not one Aho-Corasick automaton per field: with the SigmaHQ Windows rules a field
//! such as `CommandLine` carries ten thousand literals. As a DFA that is tens of MB, so
//! nearly every byte of the scan is a cache miss; as an NFA it is small but each byte
//! walks sparse transitions and failure links. Either way the scan cost several ns per
//! byte, and the DFAs made memory grow with every rule.
//!
//! A [`LiteralSet`] instead picks from each literal of five bytes or more two *fragments*,
//! two four-byte windows side by side least likely to occur in ordinary values, and keeps
//! a small bit filter and hash table over the fragments (a few bytes per literal, and a
//! copy of its bytes beside each of its fragments, where the comparison reads them). The
//! scan reads the value once, four bytes at a time at every second position: one multiply
//! and one bit test that nearly always says "no fragment here" (eight positions per step
//! where the processor has AVX2, see [`avx2`]). Every second position suffices because one
//! of a literal's two fragments starts at an even position wherever the literal occurs.
//! Where a fragment does occur, the literals that carry it are compared in place.
//! Literals shorter than five bytes are few and go to a small Aho-Corasick automaton that
//! stays in cache. (Giving the shortest fragments of their own width was tried: the extra
//! filter tests at every byte cost more than the automaton.) Where no literal is shorter
//! than four bytes but some have four, the automaton would be a pass of its own: then each
//! literal carries one fragment and the scan tests every position. Where no literal is
//! shorter than seven bytes, each carries four fragments and the scan tests every fourth
//! position (call traces: half the filter tests). Sets whose literals all have eight bytes
//! or more (hashes) take eight-byte fragments instead, up to four side by side (see
//! [`LiteralSet::new`]).
//!
//! A set of at most four literals searches values of 64 bytes or more with `memchr`'s
//! `memmem` instead, one SIMD pass per literal ([`FewLiterals`]), where the processor has
//! AVX2 (the switch the vector filter test uses gates it too): the fragment scan's cost
//! per byte pays for thousands of literals, not for one.
//!
//! Matching is ASCII case-insensitive: literals are stored lower-cased and the caller
//! lower-cases the value first (byte for byte, so positions are those of the value); a
//! Sigma value with letters outside ASCII comes here as one literal per case spelling
//! (`compile::case_spellings`). Every occurrence of every literal is reported (overlapping): the same occurrences
//! as an overlapping Aho-Corasick search, in another order.
//!
//! Cost: one filter test per byte or per second byte, plus, at each position where a fragment occurs, one
//! comparison per literal carrying it. Choosing fragments penalises those shared by many
//! literals, which keeps the longest list short (`TOCSIN_DEBUG_STATS=1` prints it per
//! field); a value made of one fragment repeated costs bytes × that list, a bounded
//! constant factor, not a blow-up.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use aho_corasick::{AhoCorasick, MatchKind};
use memchr::memmem;

/// Width of a fragment in bytes: shorter literals need the automaton when scanned.
pub(crate) const FRAGMENT: usize = 4;

/// Width of the fragments of a set whose literals are all long (or shorter than
/// [`FRAGMENT`]): hashes (`Hashes|contains: 'IMPHASH=…'`) are made of hex digits, where
/// every four-byte window of a value is some literal's fragment one time in a dozen; eight
/// bytes tell them apart.
const LONG_FRAGMENT: usize = 8;

/// The most positions an eight-byte fragment scan steps over at once (see
/// [`LiteralSet::new`]): each literal gets as many fragments, a few bytes of table each.
const LONG_STRIDE: usize = 4;

/// The positions a four-byte fragment scan steps over at once where no literal is shorter
/// than seven bytes (see [`LiteralSet::new`]): the vector test's eight windows are then the
/// eight words of 32 bytes as loaded, with no shuffle.
const WIDE_STRIDE: usize = 4;

/// Multiplier of the fragment hash (Knuth's multiplicative hashing).
const HASH_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// How much a byte counts against choosing it for a fragment: the characters that fill
/// Windows paths and command lines (and English text) score high, so fragments fall on
/// the distinctive parts of a literal (`mimikatz`, not `.exe `).
pub(crate) fn commonness(b: u8) -> u32 {
    match b {
        b' ' | b'\\' | b'.' | b'e' => 8,
        b'/' | b'-' | b':' | b'"' | b's' | b't' | b'x' | b'i' | b'o' | b'n' => 6,
        b'a' | b'r' | b'c' | b'l' | b'm' | b'w' | b'd' | b'p' | b'0'..=b'9' => 4,
        b'u' | b'h' | b'g' | b'y' | b'b' | b'f' | b'=' | b'_' | b',' | b'\'' => 2,
        _ => 0,
    }
}

/// One place of the open-addressed fragment table: the fragment's [`slot_key`] and where
/// its group starts in [`LiteralSet`]'s `groups`; [`FREE`] marks a free slot.
#[derive(Clone, Copy)]
struct Slot {
    key: u32,
    group: u32,
}

/// The `group` of a free [`Slot`].
const FREE: u32 = u32::MAX;

/// Bytes of a group's header: the number of its literals (`u32`), then the fragment
/// (`u64`).
const GROUP_HEADER: usize = 12;

/// Bytes of a literal's header in a group: its pattern id, the offset of the fragment in
/// it and its length (`u32` each), followed by its bytes.
const ENTRY_HEADER: usize = 12;

/// A set of byte literals, searched ASCII case-insensitively. Pattern ids are the indexes
/// of the literals given to [`LiteralSet::new`].
pub(crate) struct LiteralSet {
    /// Number of literals.
    len: usize,
    /// Ids of empty literals (they occur at every position).
    empty: Vec<u32>,
    /// Non-empty literals too short for fragments, and their pattern ids.
    short: Option<(AhoCorasick, Vec<u32>)>,
    /// When the set holds only a few literals: a search for them all at once, for values
    /// long enough (see [`FewLiterals`]).
    few: Option<FewLiterals>,
    /// The scan tests the windows at every `stride`-th position of the value (see
    /// [`LiteralSet::new`]).
    stride: usize,
    /// One bit per [`filter_hash`] of a fragment: clear means no literal has a fragment
    /// with this hash. (32-bit words, for the vector gather of [`avx2`].)
    filter: Box<[u32]>,
    /// Bits of the filter index.
    filter_bits: u32,
    /// Open-addressed table, indexed by fragment hash, of the fragments in use.
    slots: Box<[Slot]>,
    /// Per fragment in use, one group: a header ([`GROUP_HEADER`]), then each literal that
    /// carries the fragment, with its bytes ([`ENTRY_HEADER`]). Where a fragment occurs,
    /// the comparisons read this one place: the table's slot, then the group (the
    /// literals kept apart, each found through its id, cost four dependent reads from
    /// memory, each likely a cache miss, where this costs two).
    groups: Box<[u8]>,
    /// Bits of the slot index.
    slot_bits: u32,
    /// Bytes per fragment: [`FRAGMENT`] or [`LONG_FRAGMENT`].
    width: usize,
    /// The processor has AVX2: four-byte fragments are tested eight positions at a time.
    avx2: bool,
}

impl LiteralSet {
    /// Build the set. Literals may be empty or repeated; each keeps its own id.
    pub(crate) fn new(literals: &[Vec<u8>]) -> Result<Self, aho_corasick::BuildError> {
        let patterns: Vec<Box<[u8]>> = literals
            .iter()
            .map(|l| l.to_ascii_lowercase().into_boxed_slice())
            .collect();
        let empty = (0..patterns.len() as u32)
            .filter(|&i| patterns[i as usize].is_empty())
            .collect();
        let width = if patterns
            .iter()
            .all(|p| p.len() < FRAGMENT || p.len() >= LONG_FRAGMENT)
        {
            LONG_FRAGMENT
        } else {
            FRAGMENT
        };
        // The filter test is most of the scan's cost, one per tested position. A literal
        // with `k` windows side by side has one that starts at a multiple of `k` in any
        // value it occurs in: giving it those `k` windows as fragments lets the scan test
        // every `k`-th position only. With four-byte fragments `k` is 2, and four-byte
        // literals (one window) go to the automaton instead: where it runs anyway (for
        // literals of one to three bytes) or where there are none of them. Where no literal
        // is shorter than `WIDE_STRIDE + 3` bytes (and some are shorter than eight, or the
        // set would take eight-byte fragments), `k` is `WIDE_STRIDE` (giving the shorter
        // ones to the automaton costs more than it saves: its pass over every byte is
        // slower than the filter's). With eight-byte fragments (hashes of 32 hex digits and
        // more) `k` is what the shortest literal allows, at most `LONG_STRIDE`.
        let has_short = patterns.iter().any(|p| !p.is_empty() && p.len() < FRAGMENT);
        let has_four = patterns.iter().any(|p| p.len() == FRAGMENT);
        let all_wide = patterns
            .iter()
            .all(|p| p.is_empty() || p.len() >= FRAGMENT + WIDE_STRIDE - 1);
        let stride = match width {
            FRAGMENT if all_wide => WIDE_STRIDE,
            FRAGMENT if has_short || !has_four => 2,
            FRAGMENT => 1,
            _ => patterns
                .iter()
                .filter(|p| p.len() >= width)
                .map(|p| p.len() - width + 1)
                .min()
                .unwrap_or(1)
                .min(LONG_STRIDE),
        };
        // The shortest literal given fragments.
        let fragmented = width + stride - 1;
        let (short_ids, short_patterns): (Vec<u32>, Vec<&[u8]>) = patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty() && p.len() < fragmented)
            .map(|(i, p)| (i as u32, &p[..]))
            .unzip();
        let short = if short_patterns.is_empty() {
            None
        } else {
            // Case-sensitive over lower-cased literals and values: the automaton may then
            // use its prefilters.
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .build(&short_patterns)?;
            Some((ac, short_ids))
        };

        // How many literals contain each gram: a fragment shared by many literals costs a
        // comparison with each of them whenever it occurs. Counted by sorting every
        // literal's distinct grams: with the SigmaHQ command-line literals that is a few
        // hundred thousand grams, and a hash map of them (17 bytes an entry at half load
        // and more) was the largest allocation of the whole compilation.
        let (mut grams, mut own): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
        for p in patterns.iter().filter(|p| p.len() >= fragmented) {
            own.clear();
            own.extend(p.windows(width).map(gram));
            own.sort_unstable();
            own.dedup();
            grams.extend_from_slice(&own);
        }
        grams.sort_unstable();
        // How many literals contain `g`, one of the grams counted.
        let shared = |g: u64| -> u32 {
            let first = grams.partition_point(|&x| x < g);
            let end = first + grams[first..].partition_point(|&x| x == g);
            (end - first) as u32
        };
        let mut by_fragment: HashMap<u64, Vec<(u32, u32)>, BuildHasherDefault<WordHasher>> =
            HashMap::default();
        let mut window_cost = Vec::new();
        for (id, p) in patterns.iter().enumerate() {
            if p.len() < fragmented {
                continue;
            }
            // The `stride` windows side by side that are together least common.
            window_cost.clear();
            window_cost.extend(p.windows(width).map(|w| {
                let common: u32 = w.iter().map(|&b| commonness(b)).sum();
                common + 4 * (shared(gram(w)) - 1)
            }));
            let first = (0..=p.len() - width - (stride - 1))
                .min_by_key(|&o| (window_cost[o..o + stride].iter().sum::<u32>(), o))
                .expect("a literal of `fragmented` bytes or more has `stride` windows");
            for offset in first..first + stride {
                by_fragment
                    .entry(gram(&p[offset..offset + width]))
                    .or_default()
                    .push((id as u32, offset as u32));
            }
        }

        // Table at most half full. Filter with 128 to 256 bits per fragment, at most 2 Mbit
        // (256 KiB, within the core's L2): with the SigmaHQ rules it lets through about one
        // position per event where no fragment is (32 to 64 bits per fragment let through eight,
        // for a few percent of the matching time).
        let slot_bits = (by_fragment.len().max(1) * 2)
            .next_power_of_two()
            .trailing_zeros()
            .max(4);
        let filter_bits = (slot_bits + 6).min(21);
        let mut filter = vec![0u32; 1 << (filter_bits - 5)].into_boxed_slice();
        let mut slots = vec![
            Slot {
                key: 0,
                group: FREE
            };
            1 << slot_bits
        ]
        .into_boxed_slice();
        let mut groups = Vec::new();
        let mask = (1usize << slot_bits) - 1;
        let mut fragments: Vec<(u64, Vec<(u32, u32)>)> = by_fragment.into_iter().collect();
        fragments.sort_unstable_by_key(|(f, _)| *f);
        for (fragment, list) in fragments {
            let h = filter_hash(fragment, width, filter_bits);
            filter[h >> 5] |= 1 << (h & 31);
            let mut i = hash(fragment, slot_bits);
            while slots[i].group != FREE {
                i = (i + 1) & mask;
            }
            slots[i] = Slot {
                key: slot_key(fragment),
                group: u32::try_from(groups.len()).expect("literal groups under 4 GiB"),
            };
            groups.extend_from_slice(&(list.len() as u32).to_le_bytes());
            groups.extend_from_slice(&fragment.to_le_bytes());
            for (id, offset) in list {
                let pattern = &patterns[id as usize];
                groups.extend_from_slice(&id.to_le_bytes());
                groups.extend_from_slice(&offset.to_le_bytes());
                groups.extend_from_slice(&(pattern.len() as u32).to_le_bytes());
                groups.extend_from_slice(pattern);
            }
        }
        let few = FewLiterals::new(&patterns);
        Ok(LiteralSet {
            len: patterns.len(),
            empty,
            short,
            few,
            stride,
            filter,
            filter_bits,
            slots,
            // Exactly as long as written: a vector's spare capacity was 1.6 MiB of the
            // SigmaHQ set's 22.7.
            groups: groups.into_boxed_slice(),
            slot_bits,
            width,
            avx2: avx2::available(),
        })
    }

    /// Heap bytes held (printed with `TOCSIN_DEBUG_STATS`).
    pub(crate) fn memory_usage(&self) -> usize {
        self.empty.len() * 4
            + self
                .short
                .as_ref()
                .map_or(0, |(ac, ids)| ac.memory_usage() + ids.len() * 4)
            + self.few.as_ref().map_or(0, FewLiterals::memory_usage)
            + std::mem::size_of_val(&*self.filter)
            + self.slots.len() * std::mem::size_of::<Slot>()
            + self.groups.len()
    }

    /// Number of literals.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Positions the fragment scan steps over at once (1, 2, or up to [`LONG_STRIDE`]).
    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// Number of literals left to the automaton.
    pub(crate) fn short_len(&self) -> usize {
        self.short.as_ref().map_or(0, |(_, ids)| ids.len())
    }

    /// The most literals that share one fragment: the comparisons one occurrence may cost.
    pub(crate) fn longest_fragment_list(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.group != FREE)
            .map(|s| read_u32(&self.groups, s.group as usize) as usize)
            .max()
            .unwrap_or(0)
    }

    /// Call `found(pattern id, start, end)` for every occurrence of every literal in
    /// `hay`, the value ASCII lower-cased.
    pub(crate) fn for_each_match(&self, hay: &[u8], found: impl FnMut(u32, usize, usize)) {
        self.for_each_match_with(hay, self.avx2, found)
    }

    /// Whether some literal occurs in `hay`, the value ASCII lower-cased.
    pub(crate) fn is_match(&self, hay: &[u8]) -> bool {
        // Occurrences are rare where this is asked (keyword presence); the scan is not
        // cut short at the first.
        let mut found = false;
        self.for_each_match(hay, |_, _, _| found = true);
        found
    }

    /// [`LiteralSet::for_each_match`], with or without the vector paths (`vector` only
    /// where the processor has AVX2): the fragment filter's vector test and the `memmem`
    /// search of a few literals.
    fn for_each_match_with(
        &self,
        hay: &[u8],
        vector: bool,
        mut found: impl FnMut(u32, usize, usize),
    ) {
        for &id in &self.empty {
            for pos in 0..=hay.len() {
                found(id, pos, pos);
            }
        }
        if let Some(few) = self
            .few
            .as_ref()
            .filter(|_| vector && hay.len() >= FEW_MIN_VALUE)
        {
            few.for_each_match(hay, &mut found);
            return;
        }
        if let Some((ac, ids)) = &self.short {
            for m in ac.find_overlapping_iter(hay) {
                found(ids[m.pattern().as_usize()], m.start(), m.end());
            }
        }
        if self.width == LONG_FRAGMENT {
            self.scan::<LONG_FRAGMENT>(hay, 0, &mut found);
        } else {
            let from = if vector {
                self.scan_vectorised(hay, &mut found)
            } else {
                0
            };
            self.scan::<FRAGMENT>(hay, from, &mut found);
        }
    }

    /// The fragment scan, for fragments of `W` bytes, at the positions from `from` on.
    #[inline]
    fn scan<const W: usize>(
        &self,
        hay: &[u8],
        from: usize,
        found: &mut impl FnMut(u32, usize, usize),
    ) {
        if self.groups.is_empty() || hay.len() < W {
            return;
        }
        debug_assert!(from.is_multiple_of(self.stride));
        for pos in (from..=hay.len() - W).step_by(self.stride) {
            let fragment = gram(&hay[pos..pos + W]);
            let h = filter_hash(fragment, W, self.filter_bits);
            if self.filter[h >> 5] & (1 << (h & 31)) != 0 {
                self.verify(hay, pos, fragment, found);
            }
        }
    }

    /// The four-byte fragment scan eight tested positions at a time where the processor
    /// can ([`avx2::filter_candidates`]); returns the first position it did not test.
    #[inline]
    fn scan_vectorised(&self, hay: &[u8], found: &mut impl FnMut(u32, usize, usize)) -> usize {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 && !self.groups.is_empty() && hay.len() >= FRAGMENT {
            let on = |pos: usize| {
                let fragment = gram(&hay[pos..pos + FRAGMENT]);
                self.verify(hay, pos, fragment, found);
            };
            // SAFETY: `avx2` is set only when the processor has AVX2; the filter has
            // `1 << (filter_bits - 5)` words, `filter_bits` between 10 and 21.
            return unsafe {
                if self.stride == WIDE_STRIDE {
                    avx2::filter_candidates::<WIDE_STRIDE>(hay, &self.filter, self.filter_bits, on)
                } else if self.stride == 2 {
                    avx2::filter_candidates::<2>(hay, &self.filter, self.filter_bits, on)
                } else {
                    avx2::filter_candidates::<1>(hay, &self.filter, self.filter_bits, on)
                }
            };
        }
        let _ = (hay, found);
        0
    }

    /// The filter let `fragment` through at `pos`: compare the literals that carry it.
    #[inline(never)]
    fn verify(
        &self,
        hay: &[u8],
        pos: usize,
        fragment: u64,
        found: &mut impl FnMut(u32, usize, usize),
    ) {
        let mask = self.slots.len() - 1;
        let key = slot_key(fragment);
        let mut i = hash(fragment, self.slot_bits);
        let group = loop {
            let slot = self.slots[i];
            if slot.group == FREE {
                // The filter let a fragment through that no literal has.
                return;
            }
            // Four-byte fragments are their key; eight-byte ones are folded into it, and
            // told apart by the group's copy.
            let group = &self.groups[slot.group as usize..];
            if slot.key == key && (self.width == FRAGMENT || read_u64(group, 4) == fragment) {
                break group;
            }
            i = (i + 1) & mask;
        };
        let mut at = GROUP_HEADER;
        for _ in 0..read_u32(group, 0) {
            let id = read_u32(group, at);
            let offset = read_u32(group, at + 4) as usize;
            let len = read_u32(group, at + 8) as usize;
            let pattern = &group[at + ENTRY_HEADER..at + ENTRY_HEADER + len];
            at += ENTRY_HEADER + len;
            let Some(start) = pos.checked_sub(offset) else {
                continue;
            };
            let end = start + len;
            if end <= hay.len() && same_bytes(&hay[start..end], pattern) {
                found(id, start, end);
            }
        }
    }
}

/// Most literals a [`FewLiterals`] search takes: one pass over the value each.
const FEW: usize = 4;

/// The shortest value a [`FewLiterals`] search is run on: below it, the fragment scan
/// costs a few steps anyway.
const FEW_MIN_VALUE: usize = 64;

/// A few literals, each searched for with `memchr`'s `memmem` (SIMD: a vector compare of
/// two of its rarest bytes, then a comparison where both sit; tens of bytes per
/// nanosecond).
///
/// Why: the fragment scan tests one or two positions per byte whatever the number of
/// literals, about 6 bytes per nanosecond with AVX2, and eight-byte fragments (sets of
/// long literals) one position at a time, without the vector test. That pays for
/// thousands of literals; for a field that a rule or two test, such as a `Message` of 700
/// bytes in nearly every event (one literal, with `--profile any`), the scan was testing
/// positions for nothing. (Teddy over the literals' first bytes was tried for up to 32
/// literals: slower on call traces, where every frame begins like the literals do.)
struct FewLiterals {
    /// (pattern id, its finder) for each non-empty literal.
    finders: Vec<(u32, memmem::Finder<'static>)>,
}

impl FewLiterals {
    /// `None` for none or more than [`FEW`] non-empty literals.
    fn new(patterns: &[Box<[u8]>]) -> Option<Self> {
        let finders: Vec<(u32, memmem::Finder<'static>)> = (0u32..)
            .zip(patterns)
            .filter(|(_, p)| !p.is_empty())
            .map(|(id, p)| (id, memmem::Finder::new(&p[..]).into_owned()))
            .collect();
        (!finders.is_empty() && finders.len() <= FEW).then_some(FewLiterals { finders })
    }

    /// Every occurrence of every literal in `hay` (lower-cased), overlapping ones too.
    fn for_each_match(&self, hay: &[u8], found: &mut impl FnMut(u32, usize, usize)) {
        for (id, finder) in &self.finders {
            let len = finder.needle().len();
            for at in overlapping_finds(finder, hay) {
                found(*id, at, at + len);
            }
        }
    }

    fn memory_usage(&self) -> usize {
        self.finders
            .iter()
            .map(|(_, f)| f.needle().len() + std::mem::size_of::<memmem::Finder<'static>>())
            .sum()
    }
}

/// Where `finder`'s needle starts in `hay`, overlapping occurrences too: `memmem`'s own
/// iterator resumes after each occurrence, so one that a caller rejects (inside a JSON
/// escape: the `n` of `\nnn` for `nn`) would hide the one after it that counts.
pub(crate) fn overlapping_finds<'h>(
    finder: &'h memmem::Finder<'_>,
    hay: &'h [u8],
) -> impl Iterator<Item = usize> + 'h {
    let mut from = 0;
    std::iter::from_fn(move || {
        let at = from + finder.find(hay.get(from..)?)?;
        from = at + 1;
        Some(at)
    })
}

/// Where the literals of an [`AnchoredValues`] must sit in the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// The literal is the whole value (`Image: 'C:\x.exe'`, `EventID: 4688`).
    Whole,
    /// The value starts with the literal.
    Start,
    /// The value ends with the literal (`GrantedAccess|endswith: '10'`).
    End,
}

/// Literals that only ever need to be found at one place of the value: found by a hash
/// lookup of that place (one per distinct literal length for prefixes and suffixes)
/// instead of a scan, so a field tested against hundreds of values costs about the same
/// as against one. Used for all whole-value literals and for short prefixes and suffixes,
/// which would otherwise need the automaton for literals shorter than a fragment.
pub(crate) struct AnchoredValues {
    anchor: Anchor,
    /// Distinct literal lengths, ascending.
    lengths: Box<[usize]>,
    /// Bit `n` set when some literal has `n` bytes, for `n` below 128: whether a value
    /// can be a whole literal, told without a search of `lengths` (most values cannot).
    short_lengths: u128,
    /// Lower-cased literal → pattern id.
    ids: HashMap<Box<[u8]>, u32, BuildHasherDefault<WordHasher>>,
}

impl AnchoredValues {
    /// The set of `values` (distinct once lower-cased) at `anchor`; the first has pattern
    /// id `first_id`, the next `first_id + 1`, and so on.
    pub(crate) fn new(anchor: Anchor, values: &[Vec<u8>], first_id: u32) -> Self {
        let ids: HashMap<_, _, _> = values
            .iter()
            .zip(first_id..)
            .map(|(v, id)| (v.to_ascii_lowercase().into_boxed_slice(), id))
            .collect();
        let mut lengths: Vec<usize> = ids.keys().map(|k| k.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let short_lengths = lengths
            .iter()
            .filter(|&&len| len < 128)
            .fold(0u128, |bits, &len| bits | 1 << len);
        AnchoredValues {
            anchor,
            short_lengths,
            lengths: lengths.into_boxed_slice(),
            ids,
        }
    }

    /// Call `found(pattern id, start, end)` for each literal at its anchor in `hay`, the
    /// value ASCII lower-cased.
    #[inline]
    pub(crate) fn for_each_match(&self, hay: &[u8], mut found: impl FnMut(u32, usize, usize)) {
        if self.ids.is_empty() {
            return;
        }
        let n = hay.len();
        match self.anchor {
            Anchor::Whole => {
                // Hash the value only when some literal is as long: a call trace of half
                // a kilobyte is not hashed to learn that it is not `Ente`.
                let some_as_long = match n {
                    0..128 => self.short_lengths & 1 << n != 0,
                    _ => self.lengths.binary_search(&n).is_ok(),
                };
                if some_as_long {
                    if let Some(&id) = self.ids.get(hay) {
                        found(id, 0, n);
                    }
                }
            }
            Anchor::Start => {
                for &len in self.lengths.iter().take_while(|&&len| len <= n) {
                    if let Some(&id) = self.ids.get(&hay[..len]) {
                        found(id, 0, len);
                    }
                }
            }
            Anchor::End => {
                for &len in self.lengths.iter().take_while(|&&len| len <= n) {
                    if let Some(&id) = self.ids.get(&hay[n - len..]) {
                        found(id, n - len, n);
                    }
                }
            }
        }
    }

    /// Number of literals.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Heap bytes held, roughly (printed with `TOCSIN_DEBUG_STATS`).
    pub(crate) fn memory_usage(&self) -> usize {
        self.ids.keys().map(|k| k.len() + 24).sum::<usize>() + self.lengths.len() * 8
    }
}

/// A hasher for short byte strings, eight bytes per multiply. The keys are rule literals
/// fixed at compile time; events only look them up, so a keyed hash against flooding buys
/// nothing here.
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(26) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        // The product's high bits are mixed from every input bit, its low bits only from
        // the low ones; the table indexes by the low bits.
        self.0.rotate_left(26)
    }
}

/// Byte equality of two slices of the same length; short ones compared inline (most
/// literals are short, and a call to `memcmp` for each candidate cost more than the
/// comparison).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() <= 16 {
        a.iter().zip(b).all(|(x, y)| x == y)
    } else {
        a == b
    }
}

/// The `u32` at `at` in a group (written little-endian by [`LiteralSet::new`]).
#[inline]
fn read_u32(group: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(group[at..at + 4].try_into().expect("four bytes"))
}

/// The `u64` at `at` in a group.
#[inline]
fn read_u64(group: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(group[at..at + 8].try_into().expect("eight bytes"))
}

/// A fragment's key in its [`Slot`]: a four-byte fragment itself, an eight-byte one
/// folded (the group holds it whole).
#[inline]
fn slot_key(fragment: u64) -> u32 {
    (fragment ^ (fragment >> 32)) as u32
}

/// The bytes of a fragment (four or eight) as one number.
#[inline]
fn gram(bytes: &[u8]) -> u64 {
    match bytes.len() {
        FRAGMENT => u64::from(u32::from_le_bytes(
            bytes.try_into().expect("a four-byte fragment"),
        )),
        _ => u64::from_le_bytes(bytes.try_into().expect("an eight-byte fragment")),
    }
}

/// The filter's hash of a fragment of `width` bytes: for four-byte fragments the top
/// `bits` bits of a 32-bit multiplicative hash, which the vector scan computes eight at a
/// time; eight-byte fragments (scalar only) keep the 64-bit [`hash`].
#[inline]
fn filter_hash(fragment: u64, width: usize, bits: u32) -> usize {
    if width == FRAGMENT {
        ((fragment as u32).wrapping_mul(FILTER_MUL) >> (32 - bits)) as usize
    } else {
        hash(fragment, bits)
    }
}

/// Multiplier of [`filter_hash`] (the 32-bit golden ratio, odd).
const FILTER_MUL: u32 = 0x9E37_79B1;

/// The top `bits` bits of the multiplicative hash of a fragment.
#[inline]
fn hash(fragment: u64, bits: u32) -> usize {
    (fragment.wrapping_mul(HASH_MUL) >> (64 - bits)) as usize
}

/// The filter test of the four-byte fragment scan, eight positions per step, with AVX2
/// (detected at run time; the scalar loop does the rest and runs everywhere else).
///
/// Why: the scalar test costs about ten instructions per byte of the value (load, hash,
/// load the filter word, test, branch), two to three cycles; here one shuffle makes the
/// eight overlapping four-byte windows, one multiply hashes them, one gather fetches
/// their filter words, and one mask says which positions need a look.
mod avx2 {
    /// Whether the vector test can run here.
    pub(super) fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Test the four-byte windows at every `STRIDE`-th position of `hay` (1, 2 or 4) against
    /// `filter` (bit [`super::filter_hash`]), eight positions at a time while their bytes
    /// can be loaded; call `on(pos)` for each position whose bit is set, in order. Returns
    /// the first position not tested (a multiple of `STRIDE`).
    ///
    /// # Safety
    /// The processor must have AVX2, and `filter` must hold `1 << (bits - 5)` words with
    /// `bits` between 5 and 32 (the gather reads the word of every hash unchecked).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn filter_candidates<const STRIDE: usize>(
        hay: &[u8],
        filter: &[u32],
        bits: u32,
        mut on: impl FnMut(usize),
    ) -> usize {
        use std::arch::x86_64::*;
        const {
            assert!(
                matches!(STRIDE, 1 | 2 | 4),
                "the steps below know strides 1, 2 and 4"
            )
        };
        debug_assert!((5..=32).contains(&bits) && filter.len() << 5 >= 1usize << bits);
        // Stride 1: lane 0 builds the windows at offsets 0..4, lane 1 those at 4..8, from
        // the same 16 bytes in both lanes. Stride 2: lane 0 those at 0, 2, 4, 6 from the
        // 16 bytes at 0, lane 1 those at 8, 10, 12, 14 from the 16 bytes at 2.
        // Stride 4: no shuffle, the windows at 0, 4, …, 28 are the 32 bytes at 0.
        let windows = if STRIDE == 1 {
            _mm256_setr_epi8(
                0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6, //
                4, 5, 6, 7, 5, 6, 7, 8, 6, 7, 8, 9, 7, 8, 9, 10,
            )
        } else {
            _mm256_setr_epi8(
                0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9, //
                6, 7, 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 15,
            )
        };
        // Bytes loaded per step.
        let span = match STRIDE {
            1 => 16,
            2 => 18,
            _ => 32,
        };
        let multiplier = _mm256_set1_epi32(super::FILTER_MUL as i32);
        let shift = _mm_cvtsi32_si128(32 - bits as i32);
        let low5 = _mm256_set1_epi32(31);
        let one = _mm256_set1_epi32(1);
        // Bit `i` set when the window at `from + STRIDE * i` passes the filter.
        let test = |from: usize| {
            // SAFETY: `span` bytes from `from` are inside `hay` (the callers check); the
            // gather's word indexes are hashes of `bits` bits shifted right by 5, below
            // `filter.len()`.
            unsafe {
                let at = hay.as_ptr().add(from);
                let grams = match STRIDE {
                    1 => _mm256_shuffle_epi8(
                        _mm256_broadcastsi128_si256(_mm_loadu_si128(at.cast())),
                        windows,
                    ),
                    2 => _mm256_shuffle_epi8(
                        _mm256_loadu2_m128i(at.add(2).cast(), at.cast()),
                        windows,
                    ),
                    _ => _mm256_loadu_si256(at.cast()),
                };
                let h = _mm256_srl_epi32(_mm256_mullo_epi32(grams, multiplier), shift);
                let words =
                    _mm256_i32gather_epi32::<4>(filter.as_ptr().cast(), _mm256_srli_epi32::<5>(h));
                let set =
                    _mm256_and_si256(_mm256_srlv_epi32(words, _mm256_and_si256(h, low5)), one);
                _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(set, one))) as u32
            }
        };
        let mut report = |from: usize, mut mask: u32| {
            while mask != 0 {
                on(from + STRIDE * mask.trailing_zeros() as usize);
                mask &= mask - 1;
            }
        };
        let mut pos = 0;
        while pos + span <= hay.len() {
            report(pos, test(pos));
            pos += 8 * STRIDE;
        }
        // The rest, but for a few positions: one more step that ends with the value,
        // keeping the lanes not tested yet.
        if pos > 0 && pos + super::FRAGMENT <= hay.len() {
            let last = (hay.len() - span) / STRIDE * STRIDE;
            let tested = (pos - last) / STRIDE;
            report(last, test(last) & (u32::MAX << tested));
            pos = last + 8 * STRIDE;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every (pattern, start, end) found, sorted; the same with and without the vector
    /// paths (where the processor has them).
    fn found(set: &LiteralSet, hay: &[u8]) -> Vec<(u32, usize, usize)> {
        let run = |vector: bool| {
            let mut out = Vec::new();
            set.for_each_match_with(&hay.to_ascii_lowercase(), vector, |p, s, e| {
                out.push((p, s, e))
            });
            out.sort_unstable();
            out
        };
        let scalar = run(false);
        if avx2::available() {
            assert_eq!(run(true), scalar, "vector and scalar scans differ");
        }
        scalar
    }

    /// A generator of pseudo-random words of a given length over `alphabet` (xorshift).
    fn words(mut state: u64, alphabet: &'static [u8]) -> impl FnMut(u64) -> Vec<u8> {
        move |len| {
            (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    alphabet[(state % alphabet.len() as u64) as usize]
                })
                .collect()
        }
    }

    /// A value made of the literals `picks` names, each after its number of `=`.
    fn made_of(literals: &[Vec<u8>], picks: &[(proptest::sample::Index, usize)]) -> Vec<u8> {
        let mut hay = Vec::new();
        for (pick, gap) in picks {
            hay.extend(std::iter::repeat_n(b'=', *gap));
            hay.extend_from_slice(&literals[pick.index(literals.len())]);
        }
        hay
    }

    /// The same, by trying every literal at every position.
    fn naive(literals: &[Vec<u8>], hay: &[u8]) -> Vec<(u32, usize, usize)> {
        let mut out = Vec::new();
        for (id, lit) in literals.iter().enumerate() {
            for start in 0..=hay.len() {
                let end = start + lit.len();
                if end <= hay.len() && hay[start..end].eq_ignore_ascii_case(lit) {
                    out.push((id as u32, start, end));
                }
            }
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn finds_overlapping_and_case_folded_occurrences() {
        let literals: Vec<Vec<u8>> = ["\\cmd.exe", "cmd.exe", "CMD", "e", "mimikatz", "md.e"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let set = LiteralSet::new(&literals).unwrap();
        let hay = b"C:\\Windows\\System32\\CMD.EXE /c mimiKatz.exe";
        assert_eq!(found(&set, hay), naive(&literals, hay));
        assert!(found(&set, hay).contains(&(0, 19, 27)));
    }

    #[test]
    fn thousands_of_literals_agree_with_trying_every_position() {
        // Pseudo-random literals over a small alphabet: many shared fragments, a table of
        // thousands of slots, literals longer than the inline comparison.
        let mut word = words(0x2545_F491_4F6C_DD1D, b"abcdeXYZ\\. -");
        let literals: Vec<Vec<u8>> = (0..3000).map(|i| word(1 + i % 30)).collect();
        let set = LiteralSet::new(&literals).unwrap();
        for len in [0, 3, 17, 200, 2000] {
            let hay = word(len);
            assert_eq!(
                found(&set, &hay),
                naive(&literals, &hay),
                "value of {len} bytes"
            );
        }
    }

    #[test]
    fn a_few_literals_are_searched_all_at_once_in_long_values() {
        // Overlapping, nested and repeated occurrences in a call trace.
        let literals: Vec<Vec<u8>> = ["ntdll.dll+", "dll", "|UNKNOWN(", "", "x"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let set = LiteralSet::new(&literals).unwrap();
        assert!(set.few.is_some());
        let hay = b"C:\\Windows\\SYSTEM32\\ntdll.dll+9c584|C:\\Windows\\System32\\KERNELBASE.dll+2c1a|UNKNOWN(00000000DEADBEEF)|ntdll.dll+1";
        assert!(hay.len() >= FEW_MIN_VALUE);
        let all = found(&set, hay);
        assert_eq!(all, naive(&literals, hay));
        // The search itself, also where `found` runs the scalar scan alone (no AVX2): every
        // occurrence but the empty literal's, which the set reports apart.
        let mut searched = Vec::new();
        let few = set.few.as_ref().expect("built above");
        few.for_each_match(&hay.to_ascii_lowercase(), &mut |p, s, e| {
            searched.push((p, s, e))
        });
        searched.sort_unstable();
        let without_empty: Vec<_> = all.iter().copied().filter(|&(p, _, _)| p != 3).collect();
        assert_eq!(searched, without_empty);
        assert_eq!(all.iter().filter(|&&(p, _, _)| p == 1).count(), 5);
        // Too many literals for it: the fragment scan alone.
        let many: Vec<Vec<u8>> = (0..=FEW)
            .map(|i| format!("literal{i}").into_bytes())
            .collect();
        assert!(LiteralSet::new(&many).unwrap().few.is_none());
    }

    /// Every (pattern, start, end) an anchored set finds, sorted.
    fn anchored(anchor: Anchor, literals: &[Vec<u8>], hay: &[u8]) -> Vec<(u32, usize, usize)> {
        // Distinct once lower-cased, as the compiler hands them over.
        let mut distinct: Vec<Vec<u8>> = literals.iter().map(|l| l.to_ascii_lowercase()).collect();
        distinct.sort();
        distinct.dedup();
        let set = AnchoredValues::new(anchor, &distinct, 0);
        let mut out = Vec::new();
        set.for_each_match(&hay.to_ascii_lowercase(), |p, s, e| out.push((p, s, e)));
        out.sort_unstable();
        let mut want: Vec<_> = naive(&distinct, hay)
            .into_iter()
            .filter(|&(_, s, e)| match anchor {
                Anchor::Whole => s == 0 && e == hay.len(),
                Anchor::Start => s == 0,
                Anchor::End => e == hay.len(),
            })
            .collect();
        want.sort_unstable();
        assert_eq!(out, want, "{anchor:?}");
        out
    }

    #[test]
    fn anchored_values_are_found_only_at_their_anchor() {
        let literals: Vec<Vec<u8>> = ["10", "0", "C:\\X.EXE", "c:", "e", "xe", ""]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        // "10", "0" and the empty literal.
        assert_eq!(anchored(Anchor::End, &literals, b"0x1410").len(), 3);
        assert_eq!(anchored(Anchor::Start, &literals, b"C:\\x.exe").len(), 3);
        assert_eq!(anchored(Anchor::Whole, &literals, b"c:\\x.EXE").len(), 1);
        assert_eq!(anchored(Anchor::Whole, &literals, b"").len(), 1);
        // Lengths of 128 bytes and more are searched for, not kept as bits.
        let long = [b"x".repeat(200), b"y".repeat(127)];
        assert_eq!(anchored(Anchor::Whole, &long, &b"X".repeat(200)).len(), 1);
        assert_eq!(anchored(Anchor::Whole, &long, &b"y".repeat(127)).len(), 1);
        assert_eq!(anchored(Anchor::Whole, &long, &b"x".repeat(201)).len(), 0);
    }

    #[test]
    fn long_literals_get_eight_byte_fragments_and_agree_with_trying_every_position() {
        // Hashes: hex literals of 8 bytes or more (plus short ones, which do not change the
        // width), searched in hex values where nearly every four-byte window is a fragment.
        let mut word = words(0x9E37_79B9_7F4A_7C15, b"0123456789ABCDEF");
        let mut literals: Vec<Vec<u8>> = (0..3000).map(|i| word(8 + i % 33)).collect();
        literals.extend([b"A".to_vec(), b"0F".to_vec(), b"MD5=".to_vec()]);
        let set = LiteralSet::new(&literals).unwrap();
        assert_eq!(
            set.width, FRAGMENT,
            "a literal of four to seven bytes keeps fragments short"
        );
        literals.pop();
        let set = LiteralSet::new(&literals).unwrap();
        assert_eq!(set.width, LONG_FRAGMENT);
        let mut hay = word(300);
        // Plant some literals: side by side, and at both ends.
        hay.splice(0..0, literals[5].iter().copied());
        hay.splice(40..40, literals[77].iter().copied());
        let after = 40 + literals[77].len();
        hay.splice(after..after, literals[78].iter().copied());
        hay.extend_from_slice(&literals[2999]);
        assert_eq!(found(&set, &hay), naive(&literals, &hay));
        assert!(found(&set, &hay).iter().any(|&(p, _, _)| p == 77));
    }

    #[test]
    fn the_scan_strides_as_far_as_the_shortest_fragmented_literal_allows() {
        let set = |literals: &[&str]| {
            let literals: Vec<Vec<u8>> = literals.iter().map(|l| l.as_bytes().to_vec()).collect();
            LiteralSet::new(&literals).unwrap()
        };
        // No literal under seven bytes: every fourth position.
        assert_eq!(set(&["\\cmd.ex", "mimikatz"]).stride, WIDE_STRIDE);
        assert_eq!(set(&["\\cmd.ex", "mimikatz"]).short_len(), 0);
        // Four-byte literals go to the automaton when it runs anyway.
        assert_eq!(set(&["-c", ".exe", "mimikatz"]).stride, 2);
        assert_eq!(set(&["-c", ".exe", "mimikatz"]).short_len(), 2);
        // Not otherwise: they keep a fragment, and every position is tested.
        assert_eq!(set(&[".exe", "mimikatz"]).stride, 1);
        assert_eq!(set(&[".exe", "mimikatz"]).short_len(), 0);
        assert_eq!(set(&["\\cmd.", "mimikatz"]).stride, 2);
        // Eight-byte fragments: as far as the shortest literal, at most LONG_STRIDE.
        assert_eq!(set(&["0123456789", "0123456789abcdef"]).stride, 3);
        assert_eq!(
            set(&["MD5=0123456789abcdef0123456789abcdef"]).stride,
            LONG_STRIDE
        );
    }

    proptest! {
        #[test]
        fn anchored_values_agree_with_trying_the_anchor(
            literals in proptest::collection::vec(proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'B'), Just(b'0')], 0..4), 1..20),
            hay in proptest::collection::vec(prop_oneof![Just(b'A'), Just(b'b'), Just(b'0')], 0..6),
        ) {
            for anchor in [Anchor::Whole, Anchor::Start, Anchor::End] {
                anchored(anchor, &literals, &hay);
            }
        }

        // Small alphabets force shared fragments, overlaps and hash collisions.
        #[test]
        fn agrees_with_trying_every_position(
            literals in proptest::collection::vec(proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'B'), Just(b'\\'), Just(b'c'), Just(0xC3u8)], 0..24), 1..40),
            // Longer than the vector step, with remainders of every length.
            hay in proptest::collection::vec(
                prop_oneof![Just(b'A'), Just(b'b'), Just(b'\\'), Just(b'c'), Just(0xC3u8)], 0..100),
        ) {
            let set = LiteralSet::new(&literals).unwrap();
            prop_assert_eq!(found(&set, &hay), naive(&literals, &hay));
        }

        // Without literals shorter than a fragment: the scan strides by two when no
        // literal has four bytes, and tests every position when some do.
        #[test]
        fn agrees_with_trying_every_position_without_short_literals(
            literals in proptest::collection::vec(proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'B'), Just(b'\\'), Just(b'c')], 4..12), 1..30),
            hay in proptest::collection::vec(
                prop_oneof![Just(b'A'), Just(b'b'), Just(b'\\'), Just(b'c')], 0..100),
        ) {
            let set = LiteralSet::new(&literals).unwrap();
            prop_assert_eq!(found(&set, &hay), naive(&literals, &hay));
        }

        // Four-byte fragments, every fourth position: literals of seven bytes or more (one
        // of seven, or the eight-byte fragments would be taken), and values made of them
        // at every offset.
        #[test]
        fn wide_strides_agree_with_trying_every_position(
            mut literals in proptest::collection::vec(proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'B'), Just(b'\\'), Just(b'c')], 7..12), 1..12),
            picks in proptest::collection::vec((any::<proptest::sample::Index>(), 0..4usize), 0..12),
        ) {
            literals[0].truncate(7);
            let hay = made_of(&literals, &picks);
            let set = LiteralSet::new(&literals).unwrap();
            prop_assert_eq!(set.stride, WIDE_STRIDE);
            prop_assert_eq!(found(&set, &hay), naive(&literals, &hay));
        }

        // Eight-byte fragments, two to four positions per step: values made of the
        // literals themselves, at every offset.
        #[test]
        fn long_literals_agree_with_trying_every_position(
            literals in proptest::collection::vec(proptest::collection::vec(
                prop_oneof![Just(b'0'), Just(b'a'), Just(b'F')], 9..20), 1..12),
            picks in proptest::collection::vec((any::<proptest::sample::Index>(), 0..3usize), 0..12),
        ) {
            let hay = made_of(&literals, &picks);
            let set = LiteralSet::new(&literals).unwrap();
            prop_assert_eq!(set.width, LONG_FRAGMENT);
            prop_assert!(set.stride >= 2);
            prop_assert_eq!(found(&set, &hay), naive(&literals, &hay));
        }
    }
}
