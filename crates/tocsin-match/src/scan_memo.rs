//! What a field's literal scan found in a value, remembered for the next event with the
//! same value.
//!
//! Why: security events repeat their values. In the OTRF Sysmon events, 96 % of the
//! `CallTrace` values (560 bytes on average, each scanned for the literals of the rules
//! on process access) and 99 % of the `Image` values were seen within the last thousand
//! of their field, and a scan of a long value costs more than hashing and comparing it.
//! What a scan records depends only on the literal set and the value's bytes (which
//! literals occur, and whether at the start, at the end or as the whole value), never on
//! the event's route or on other fields, so it can be replayed: the replay records the
//! same literal hits and makes the same rules candidates as the scan would.
//!
//! Shape: a two-way set-associative table of `slots` entries (a power of two) indexed by
//! an XXH3 hash of the literal set and the value. An entry keeps the value's bytes,
//! compared in full before a replay (a hash collision is a miss, never a wrong answer),
//! and its hits. A new value takes the place of the less recently used entry of its set:
//! two common values that share a set do not push each other out. The hash is not
//! seeded at random: input that collides on purpose only costs misses, which is never
//! more work than scanning, and the same events cost the same in every run. Values
//! shorter than [`MEMO_MIN_BYTES`] (cheaper to scan than to remember) or longer than
//! [`MEMO_MAX_BYTES`] (bounded memory: at most `slots` × that many bytes) are scanned
//! every time. An entry's buffers are reused, so once the entries have held values as
//! long as those that follow, remembering allocates nothing.

/// Shortest value remembered: below this, the literal scan costs about as much as a
/// hash and a comparison.
pub(crate) const MEMO_MIN_BYTES: usize = 24;

/// Longest value remembered (bounds the table's memory at `slots` × this).
pub(crate) const MEMO_MAX_BYTES: usize = 2048;

/// Most literal hits remembered for one value: a value with more (a long run of a short
/// literal) is scanned every time, so that hostile values cannot make the hit lists the
/// bulk of the memory.
const MEMO_MAX_HITS: usize = 64;

/// One remembered scan.
#[derive(Default)]
struct Entry {
    /// The hash of (scanner, value) this entry holds, with its lowest bit set; 0 when
    /// the entry holds nothing (never used, or given up).
    hash: u64,
    scanner: u32,
    value: Vec<u8>,
    /// Per literal hit, in the scan's order: the atom in the high bits, its hit bits in
    /// the low eight.
    hits: Vec<u64>,
}

/// Scan results per (literal set, value), for one thread (it lives in the
/// [`crate::MatchScratch`]).
pub(crate) struct ScanMemo {
    /// Two entries per set, side by side.
    entries: Vec<Entry>,
    /// Per set: which of its two entries was used last (the other is replaced next).
    recent: Vec<u8>,
}

/// Where a value's scan is to be found or written.
pub(crate) enum Lookup<'m> {
    /// The value was scanned before: its hits, to replay.
    Hit(&'m [u64]),
    /// Not remembered: scan, recording each hit here (the entry now holds the value).
    Miss(Recording<'m>),
    /// Not to be remembered (memo off, or the value too short or too long).
    Skip,
}

impl ScanMemo {
    /// A memo of `slots` entries (rounded up to a power of two, at least two); 0 turns it
    /// off.
    pub(crate) fn new(slots: usize) -> ScanMemo {
        let sets = if slots == 0 {
            0
        } else {
            slots.next_power_of_two().max(2) / 2
        };
        ScanMemo {
            entries: (0..sets * 2).map(|_| Entry::default()).collect(),
            recent: vec![0; sets],
        }
    }

    /// Look up what literal set `scanner` found in `value`.
    #[inline]
    pub(crate) fn lookup(&mut self, scanner: u32, value: &[u8]) -> Lookup<'_> {
        if self.recent.is_empty() || !(MEMO_MIN_BYTES..=MEMO_MAX_BYTES).contains(&value.len()) {
            return Lookup::Skip;
        }
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(value, u64::from(scanner)) | 1;
        let set = hash as usize & (self.recent.len() - 1);
        let holds = |e: &Entry| e.hash == hash && e.scanner == scanner && e.value == value;
        let way = if holds(&self.entries[2 * set]) {
            Some(0)
        } else if holds(&self.entries[2 * set + 1]) {
            Some(1)
        } else {
            None
        };
        if let Some(way) = way {
            self.recent[set] = way;
            return Lookup::Hit(&self.entries[2 * set + way as usize].hits);
        }
        // An entry given up (see [`Recording::push`]) or never used goes first; else the
        // less recently used.
        let way = if self.entries[2 * set].hash == 0 {
            0
        } else if self.entries[2 * set + 1].hash == 0 {
            1
        } else {
            1 - self.recent[set]
        };
        self.recent[set] = way;
        let entry = &mut self.entries[2 * set + way as usize];
        entry.hash = hash;
        entry.scanner = scanner;
        entry.value.clear();
        entry.value.extend_from_slice(value);
        entry.hits.clear();
        Lookup::Miss(Recording { entry })
    }
}

/// The entry a scan's hits are written to.
pub(crate) struct Recording<'m> {
    entry: &'m mut Entry,
}

impl Recording<'_> {
    /// Record that literal `atom` occurred where `bits` say. Past [`MEMO_MAX_HITS`], the
    /// entry is given up: it no longer answers for the value.
    #[inline]
    pub(crate) fn push(&mut self, atom: u32, bits: u8) {
        if self.entry.hash == 0 {
            return;
        }
        if self.entry.hits.len() == MEMO_MAX_HITS {
            self.entry.hash = 0;
            self.entry.hits.clear();
            return;
        }
        self.entry
            .hits
            .push((u64::from(atom) << 8) | u64::from(bits));
    }
}

/// A stored hit: (atom, hit bits).
#[inline]
pub(crate) fn unpack(hit: u64) -> (u32, u8) {
    ((hit >> 8) as u32, hit as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_remembered_per_scanner_and_only_its_own_bytes_replay() {
        let mut memo = ScanMemo::new(4);
        let value = b"C:\\Windows\\System32\\ntdll.dll+9d4c4";
        match memo.lookup(1, value) {
            Lookup::Miss(mut hits) => hits.push(7, 3),
            _ => panic!("the first look is a miss"),
        }
        match memo.lookup(1, value) {
            Lookup::Hit(hits) => assert_eq!(
                hits.iter().map(|&h| unpack(h)).collect::<Vec<_>>(),
                [(7, 3)]
            ),
            _ => panic!("the second look replays"),
        }
        // Another literal set over the same bytes found something else.
        assert!(matches!(memo.lookup(2, value), Lookup::Miss(_)));
        // Two values of one set both stay; a third pushes out the less recently used.
        let mut small = ScanMemo::new(2);
        let (a, b, c) = (&[b'a'; 30][..], &[b'b'; 30][..], &[b'c'; 30][..]);
        for v in [a, b] {
            assert!(matches!(small.lookup(0, v), Lookup::Miss(_)));
        }
        assert!(matches!(small.lookup(0, a), Lookup::Hit(_)));
        assert!(matches!(small.lookup(0, c), Lookup::Miss(_)));
        assert!(matches!(small.lookup(0, a), Lookup::Hit(_)));
        assert!(matches!(small.lookup(0, b), Lookup::Miss(_)));
        // A value with more hits than are kept is not remembered.
        let many = &[b'm'; 40][..];
        match memo.lookup(3, many) {
            Lookup::Miss(mut hits) => (0..=MEMO_MAX_HITS as u32).for_each(|a| hits.push(a, 1)),
            _ => panic!("the first look is a miss"),
        }
        assert!(matches!(memo.lookup(3, many), Lookup::Miss(_)));
        // A value differing in one byte is another value. (That the bytes are compared,
        // not only the hashes, would take an XXH3 collision to show.)
        let mut other = value.to_vec();
        other[3] = b'w';
        assert!(matches!(memo.lookup(1, &other), Lookup::Miss(_)));
    }

    #[test]
    fn short_and_long_values_and_a_memo_of_no_slots_are_not_remembered() {
        let mut memo = ScanMemo::new(8);
        assert!(matches!(memo.lookup(0, b"cmd.exe"), Lookup::Skip));
        assert!(matches!(
            memo.lookup(0, &vec![b'a'; MEMO_MAX_BYTES + 1]),
            Lookup::Skip
        ));
        let mut off = ScanMemo::new(0);
        assert!(matches!(off.lookup(0, &[b'a'; 100]), Lookup::Skip));
    }
}
