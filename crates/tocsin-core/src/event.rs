//! Borrowed, on-demand access to the fields of one JSON event.
//!
//! Why not a DOM: an event of ~2 KB has ~30 fields, and the rules routed to it read a
//! handful of them. Building a tree (serde_json::Value) costs allocations and most of the
//! per-event budget. Instead [`Event::parse`] makes one validating pass over the bytes and
//! records, for the top-level object only, where each member's key and value sit
//! ([`EventIndex`], reused across events, so no allocation once warm). A field is then read
//! by flat name (`CommandLine`) or dotted path (`process.command_line`, descending into nested
//! objects on demand), as a [`FieldValue`] that borrows the raw bytes; strings are unescaped
//! only when they contain escapes, into a caller-owned buffer.
//!
//! The pass runs in two steps: a `StringIndex` of the whole event first (where its
//! strings end, from 64-byte block masks), then the members, checked byte by byte only
//! between strings. A line the index or the compact layout cannot take (control
//! characters, whitespace, errors) is scanned again by the general `Scanner`.
//!
//! The validating pass rejects anything that is not one well-formed JSON object in UTF-8,
//! so every malformed line is caught here, named by a [`DecodeError`], and can go to the
//! dead-letter sink.

use std::fmt;

use crate::bytescan::{self, BlockClasses, BLOCK};

/// Nesting deeper than this is rejected: it bounds the recursion of the validator.
pub const MAX_DEPTH: usize = 64;

/// Why a line is not a usable event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not valid UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The line holds nothing but whitespace.
    #[error("empty event")]
    Empty,
    /// The JSON is well formed but its top level is not an object.
    #[error("event is not a JSON object")]
    NotAnObject,
    /// The JSON text is malformed.
    #[error("malformed JSON at byte {offset}: {what}")]
    Syntax {
        /// Offset of the offending byte.
        offset: usize,
        /// What the parser expected or found.
        what: &'static str,
    },
    /// The JSON text ended early.
    #[error("truncated JSON: input ends inside {what}")]
    Truncated {
        /// The construct left open.
        what: &'static str,
    },
    /// Objects or arrays are nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

impl DecodeError {
    /// A stable label for dead letters and metrics: `invalid-utf8`, `empty`, `not-an-object`
    /// or `invalid-json`.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::InvalidUtf8 { .. } => "invalid-utf8",
            DecodeError::Empty => "empty",
            DecodeError::NotAnObject => "not-an-object",
            DecodeError::Syntax { .. } | DecodeError::Truncated { .. } | DecodeError::TooDeep => {
                "invalid-json"
            }
        }
    }
}

/// The JSON type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A string; `escaped` says whether it contains backslash escapes.
    String {
        /// True when the raw text holds `\` escapes and must be unescaped before use.
        escaped: bool,
    },
    /// A number, kept as its source text.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
    /// A nested object.
    Object,
    /// An array.
    Array,
}

/// Where one top-level member sits in the raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member {
    key_start: u32,
    key_end: u32,
    key_escaped: bool,
    value_start: u32,
    value_end: u32,
    kind: ValueKind,
    /// A string value whose escapes are all of [`escape_json_into`]'s two-byte forms.
    canonical: bool,
}

impl Member {
    /// A member from the spans of its key and value (events are under 4 GiB: checked by
    /// [`Event::parse`]).
    fn new(
        key: std::ops::Range<usize>,
        key_escaped: bool,
        value: std::ops::Range<usize>,
        kind: ValueKind,
        canonical: bool,
    ) -> Self {
        Member {
            key_start: key.start as u32,
            key_end: key.end as u32,
            key_escaped,
            value_start: value.start as u32,
            value_end: value.end as u32,
            kind,
            canonical,
        }
    }
}

/// Reusable storage for the member table of an event; keep one per worker thread.
///
/// Besides the members in order, it keeps an open-addressing hash table from key to member,
/// so that reading a field costs one hash and (usually) one comparison instead of a scan of
/// every key: rules read a dozen fields of a 30-field event.
#[derive(Debug, Default)]
pub struct EventIndex {
    members: Vec<Member>,
    /// Member index + 1 per slot; 0 is empty. Length is a power of two.
    table: Vec<u32>,
    /// Some key holds escapes: lookups that miss the table fall back to a scan.
    escaped_keys: bool,
    /// One bit per unescaped key, at [`key_bit`] of its hash: when the event has no escaped
    /// keys, a name whose bit is clear is not a key of the event, known without probing the
    /// table. (Escaped keys set no bit; then the bits are not consulted.)
    key_bits: u128,
    /// Some member is an object: dotted paths may lead into it.
    has_objects: bool,
    /// Where the event's strings are, from [`StringIndex::build`].
    strings: StringIndex,
}

/// The bit of [`EventIndex::key_bits`] for a key hash: from its top bits, which the
/// table's slot index (the low bits) does not use in practice (tables under 2^25 slots).
#[inline]
fn key_bit(hash: u32) -> u128 {
    1u128 << (hash >> 25)
}

/// A hash of a key from its length and its first and last eight bytes: a few integer
/// operations instead of a loop over every byte (this runs for every member of every
/// event, and for every field a rule reads). Keys that share both ends only collide and
/// are told apart by the comparison in the probe; the table is rebuilt per event from the
/// event's own keys, so there is no flooding concern worth a keyed hash.
#[inline]
fn key_hash(key: &[u8]) -> u32 {
    let n = key.len();
    let (head, tail) = if n >= 8 {
        (
            u64::from_le_bytes(key[..8].try_into().expect("eight bytes")),
            u64::from_le_bytes(key[n - 8..].try_into().expect("eight bytes")),
        )
    } else {
        let mut buf = [0u8; 8];
        buf[..n].copy_from_slice(key);
        (u64::from_le_bytes(buf), 0)
    };
    mix_key_hash(head, tail, n)
}

/// [`key_hash`] of the key at `raw[start..end]`. A key shorter than eight bytes is read
/// as the eight bytes from its start with the excess masked off, where the event has them
/// (it always does but for a key in the last few bytes): the same number as the zero-padded
/// copy, without the copy, whose variable length cost a `memcpy` call per short key.
#[inline]
fn key_hash_at(raw: &[u8], start: usize, end: usize) -> u32 {
    let n = end - start;
    match raw.get(start..start + 8) {
        Some(eight) if n < 8 => {
            let head = u64::from_le_bytes(eight.try_into().expect("eight bytes"));
            mix_key_hash(head & ((1u64 << (8 * n)) - 1), 0, n)
        }
        _ => key_hash(&raw[start..end]),
    }
}

#[inline]
fn mix_key_hash(head: u64, tail: u64, n: usize) -> u32 {
    let mixed = (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 32) as u32
}

impl EventIndex {
    fn build_table(&mut self, raw: &[u8]) {
        let want = (self.members.len() * 2).next_power_of_two().max(16);
        self.table.clear();
        self.table.resize(want, 0);
        self.escaped_keys = false;
        self.key_bits = 0;
        self.has_objects = false;
        let mask = want - 1;
        for (i, m) in self.members.iter().enumerate() {
            self.has_objects |= m.kind == ValueKind::Object;
            if m.key_escaped {
                self.escaped_keys = true;
                continue;
            }
            let key = &raw[m.key_start as usize..m.key_end as usize];
            let hash = key_hash_at(raw, m.key_start as usize, m.key_end as usize);
            self.key_bits |= key_bit(hash);
            let mut slot = hash as usize & mask;
            loop {
                let entry = self.table[slot];
                if entry == 0 {
                    self.table[slot] = i as u32 + 1;
                    break;
                }
                let other = &self.members[entry as usize - 1];
                if &raw[other.key_start as usize..other.key_end as usize] == key {
                    // Duplicate key: the last one wins.
                    self.table[slot] = i as u32 + 1;
                    break;
                }
                slot = (slot + 1) & mask;
            }
        }
    }
}

impl EventIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }
}

/// One parsed event: the raw bytes plus the table of its top-level members.
#[derive(Clone, Copy)]
pub struct Event<'a> {
    raw: &'a [u8],
    members: &'a [Member],
    table: &'a [u32],
    escaped_keys: bool,
    key_bits: u128,
    has_objects: bool,
    uncommon_escapes: bool,
}

impl fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("bytes", &self.raw.len())
            .field("members", &self.members.len())
            .finish()
    }
}

/// A value read out of an event, borrowing its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FieldValue<'a> {
    /// For strings, the text between the quotes (still escaped); otherwise the JSON text.
    raw: &'a [u8],
    kind: ValueKind,
    /// Whether the escapes of a string are all canonical (see [`FieldValue::escaped_text`]).
    canonical: bool,
}

impl fmt::Debug for FieldValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({})", self.kind, String::from_utf8_lossy(self.raw))
    }
}

/// A field name or dotted path prepared for reading from many events: its lookup hash
/// and whether it has dots are worked out once, not at every read (rules read the same
/// dozen names from every event, most of them absent). Cloning shares the name.
#[derive(Clone, PartialEq, Eq)]
pub struct FieldName {
    name: std::sync::Arc<str>,
    hash: u32,
    dotted: bool,
}

impl FieldName {
    /// Prepare `name` (a flat key or a dotted path, as for [`Event::get`]).
    pub fn new(name: &str) -> Self {
        FieldName {
            name: name.into(),
            hash: key_hash(name.as_bytes()),
            dotted: name.contains('.'),
        }
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.name, f)
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Many field names to read from each event at once ([`Event::locate_all`]).
///
/// Why: a matcher reads every field any of its rules tests, a hundred names when every
/// rule applies to every event, from events of about thirty members. Probing the event
/// once per name costs a hundred probes; walking the event's members and looking each
/// key up among the names costs thirty.
#[derive(Clone, Default)]
pub struct FieldNames {
    names: Box<[FieldName]>,
    /// Open-addressed by [`key_hash`]: index into `names` + 1; 0 is empty. Twice as many
    /// slots as names, at least 16, a power of two.
    table: Box<[u32]>,
}

impl FieldNames {
    /// The set of `names`, in this order (a name given twice keeps its first place).
    pub fn new(names: impl IntoIterator<Item = FieldName>) -> Self {
        let mut distinct: Vec<FieldName> = Vec::new();
        for name in names {
            if !distinct.contains(&name) {
                distinct.push(name);
            }
        }
        let size = (distinct.len() * 2).next_power_of_two().max(16);
        let mut table = vec![0u32; size].into_boxed_slice();
        for (i, name) in distinct.iter().enumerate() {
            let mut slot = name.hash as usize & (size - 1);
            while table[slot] != 0 {
                slot = (slot + 1) & (size - 1);
            }
            table[slot] = i as u32 + 1;
        }
        FieldNames {
            names: distinct.into_boxed_slice(),
            table,
        }
    }

    /// Number of (distinct) names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The `i`-th name.
    pub fn get(&self, i: usize) -> &FieldName {
        &self.names[i]
    }

    /// The index of `name` among the names, if it is one.
    pub fn index_of(&self, name: &FieldName) -> Option<usize> {
        self.find(name.name.as_bytes(), name.hash)
    }

    /// The index of the name spelled by the (unescaped) key `key` whose [`key_hash`] is
    /// `hash`.
    #[inline]
    fn find(&self, key: &[u8], hash: u32) -> Option<usize> {
        let mask = self.table.len() - 1;
        let mut slot = hash as usize & mask;
        loop {
            let entry = self.table[slot];
            if entry == 0 {
                return None;
            }
            let name = &self.names[entry as usize - 1];
            if name.hash == hash && name.name.as_bytes() == key {
                return Some(entry as usize - 1);
            }
            slot = (slot + 1) & mask;
        }
    }
}

impl fmt::Debug for FieldNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names.iter()).finish()
    }
}

/// What [`Event::locate_all`] found for a name: not in the event.
pub const LOCATED_ABSENT: u32 = u32::MAX;

/// What [`Event::locate_all`] found for a name: not a top-level key, but a dotted path that
/// may lead into one of the event's objects; [`Event::get_named`] tells.
pub const LOCATED_NESTED: u32 = u32::MAX - 1;

impl<'a> Event<'a> {
    /// Scan the scanner's bytes as one JSON object, its top-level members into `members`.
    fn scan_object(
        scanner: &mut Scanner<'_>,
        members: &mut Vec<Member>,
    ) -> Result<(), DecodeError> {
        let raw = scanner.bytes;
        scanner.skip_ws();
        match scanner.peek() {
            None => return Err(DecodeError::Empty),
            Some(b'{') => {}
            Some(_) => {
                // Still validate, so that garbage is reported as a syntax error.
                scanner.value(0)?;
                scanner.skip_ws();
                if scanner.pos != raw.len() {
                    return Err(scanner.syntax("trailing characters after the JSON value"));
                }
                return Err(DecodeError::NotAnObject);
            }
        }
        scanner.pos += 1;
        scanner.object_members(1, |m| members.push(m))?;
        scanner.skip_ws();
        if scanner.pos != raw.len() {
            return Err(scanner.syntax("trailing characters after the JSON object"));
        }
        Ok(())
    }

    /// Validate `raw` as one JSON object and index its top-level members into `index`.
    pub fn parse(raw: &'a [u8], index: &'a mut EventIndex) -> Result<Event<'a>, DecodeError> {
        if raw.len() > u32::MAX as usize {
            return Err(DecodeError::Syntax {
                offset: u32::MAX as usize,
                what: "event larger than 4 GiB",
            });
        }
        index.members.clear();
        // The fast way: strings found in advance, then the members scanned around them,
        // compactly written or not. Anything unusual (control characters, invalid escapes)
        // leaves the index unbuilt, and any error is found again by the scan without it,
        // which names it exactly.
        let indexed = index.strings.build(raw).filter(|_| {
            scan_compact_object(raw, &index.strings, &mut index.members) || {
                index.members.clear();
                let mut scanner = Scanner::new(raw, Some(&index.strings));
                Self::scan_object(&mut scanner, &mut index.members).is_ok()
            }
        });
        let (scanned, non_ascii, uncommon_escapes) = match indexed {
            Some(high) => (Ok(()), high, !index.strings.uncommon.is_empty()),
            None => {
                index.members.clear();
                let mut scanner = Scanner::new(raw, None);
                let scanned = Self::scan_object(&mut scanner, &mut index.members);
                (scanned, scanner.non_ascii, scanner.any_uncommon_escape)
            }
        };
        // UTF-8 is validated only when a string held a byte above ASCII (most events are
        // ASCII; the block classification tells, without a pass of its own), or when the
        // scan failed: then invalid UTF-8 is the error to report, as it would be had it
        // been checked first. `simdutf8` checks at SIMD speed (an image-load event, its
        // `Microsoft® Windows®` non-ASCII, decodes in 690 ns instead of 745; events of a
        // localised Windows hold such bytes throughout); the standard library's check,
        // which says where the text goes wrong, runs only on a failure.
        if (scanned.is_err() || non_ascii) && simdutf8::basic::from_utf8(raw).is_err() {
            if let Err(e) = std::str::from_utf8(raw) {
                return Err(DecodeError::InvalidUtf8 {
                    offset: e.valid_up_to(),
                });
            }
        }
        scanned?;
        index.build_table(raw);
        Ok(Event {
            raw,
            members: &index.members,
            table: &index.table,
            escaped_keys: index.escaped_keys,
            key_bits: index.key_bits,
            has_objects: index.has_objects,
            uncommon_escapes,
        })
    }

    /// The raw bytes of the event, as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Number of top-level members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when the event is `{}`.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether some string of the event (a key or a value, at any depth) is written with
    /// an escape other than the two-byte ones of [`escape_json_into`] (`\u0041`, `\/`):
    /// its text then differs from its raw bytes by more than that escaping, so a test of
    /// the raw event alone (such as a search for keywords) can miss what a value holds.
    /// JSON writers seldom do this but for characters outside ASCII.
    pub fn has_uncommon_escapes(&self) -> bool {
        self.uncommon_escapes
    }

    /// The value of a top-level member whose key is exactly `name` (last one wins, as in
    /// most JSON readers).
    pub fn get_flat(&self, name: &str) -> Option<FieldValue<'a>> {
        self.get_flat_hashed(name.as_bytes(), key_hash(name.as_bytes()))
    }

    /// [`Event::get_flat`] with the name's [`key_hash`] already computed.
    #[inline]
    fn get_flat_hashed(&self, name: &[u8], hash: u32) -> Option<FieldValue<'a>> {
        if self.key_bits & key_bit(hash) == 0 && !self.escaped_keys {
            return None;
        }
        let value = |m: &Member| FieldValue {
            raw: &self.raw[m.value_start as usize..m.value_end as usize],
            kind: m.kind,
            canonical: m.canonical,
        };
        let mask = self.table.len().wrapping_sub(1);
        if !self.table.is_empty() {
            let mut slot = hash as usize & mask;
            loop {
                let entry = self.table[slot];
                if entry == 0 {
                    break;
                }
                let m = &self.members[entry as usize - 1];
                if same_key(&self.raw[m.key_start as usize..m.key_end as usize], name) {
                    // An escaped duplicate of this key later in the object would win.
                    if !self.escaped_keys {
                        return Some(value(m));
                    }
                    break;
                }
                slot = (slot + 1) & mask;
            }
            if !self.escaped_keys {
                return None;
            }
        }
        self.members
            .iter()
            .rev()
            .find(|m| key_equals(self.raw, m, name))
            .map(value)
    }

    /// The value at `path`: a top-level key equal to the whole path wins; otherwise the
    /// path is split at dots and nested objects are searched (`process.command_line`).
    pub fn get(&self, path: &str) -> Option<FieldValue<'a>> {
        self.get_flat(path)
            .or_else(|| self.get_nested(path, path.contains('.')))
    }

    /// [`Event::get`] by a [`FieldName`], whose hash and dots were found once.
    #[inline]
    pub fn get_named(&self, name: &FieldName) -> Option<FieldValue<'a>> {
        self.get_flat_hashed(name.name.as_bytes(), name.hash)
            .or_else(|| self.get_nested(&name.name, name.dotted))
    }

    /// The value at a `path` with dots (`dotted`) inside the event's objects, not as a
    /// top-level key.
    fn get_nested(&self, path: &str, dotted: bool) -> Option<FieldValue<'a>> {
        if !dotted || !self.has_objects {
            return None;
        }
        let bytes = path.as_bytes();
        for m in self.members.iter().rev() {
            if m.kind != ValueKind::Object {
                continue;
            }
            let key = &self.raw[m.key_start as usize..m.key_end as usize];
            let Some(n) = key_prefix_of(key, m.key_escaped, bytes) else {
                continue;
            };
            // A dot, then at least one byte of the rest of the path.
            if bytes.get(n) == Some(&b'.') && n + 1 < bytes.len() {
                let object = &self.raw[m.value_start as usize..m.value_end as usize];
                if let Some(v) = find_in_object(object, &path[n + 1..]) {
                    return Some(v);
                }
            }
        }
        None
    }

    /// Where each name of `names` is in this event, into `found` (one entry per name, in
    /// order): the index of the member [`Event::get_named`] would read (for
    /// [`Event::member_value`]), [`LOCATED_NESTED`] or [`LOCATED_ABSENT`]. Walks the
    /// members once instead of probing once per name, so it pays when there are more
    /// names than members. Returns false, leaving `found` empty, for an event with
    /// escaped keys (read those names with [`Event::get_named`]).
    pub fn locate_all(&self, names: &FieldNames, found: &mut Vec<u32>) -> bool {
        found.clear();
        if self.escaped_keys {
            return false;
        }
        found.resize(names.len(), LOCATED_ABSENT);
        for (i, m) in self.members.iter().enumerate() {
            let (start, end) = (m.key_start as usize, m.key_end as usize);
            let hash = key_hash_at(self.raw, start, end);
            if let Some(n) = names.find(&self.raw[start..end], hash) {
                // Members in order: of duplicate keys, the last one wins, as in a lookup.
                found[n] = i as u32;
            }
        }
        if self.has_objects {
            for (n, name) in names.names.iter().enumerate() {
                if found[n] == LOCATED_ABSENT && name.dotted {
                    found[n] = LOCATED_NESTED;
                }
            }
        }
        true
    }

    /// The value of the `i`-th top-level member (an index from [`Event::locate_all`]).
    #[inline]
    pub fn member_value(&self, i: u32) -> FieldValue<'a> {
        let m = &self.members[i as usize];
        FieldValue {
            raw: &self.raw[m.value_start as usize..m.value_end as usize],
            kind: m.kind,
            canonical: m.canonical,
        }
    }

    /// Iterate over the top-level members as (raw key, value). Keys with escapes are
    /// returned raw (still escaped).
    pub fn members(&self) -> impl Iterator<Item = (&'a [u8], FieldValue<'a>)> + '_ {
        let raw = self.raw;
        self.members.iter().map(move |m| {
            (
                &raw[m.key_start as usize..m.key_end as usize],
                FieldValue {
                    raw: &raw[m.value_start as usize..m.value_end as usize],
                    kind: m.kind,
                    canonical: m.canonical,
                },
            )
        })
    }
}

/// Whether the key of `m` (escaped or not) spells `name`.
fn key_equals(raw: &[u8], m: &Member, name: &[u8]) -> bool {
    let key = &raw[m.key_start as usize..m.key_end as usize];
    key_prefix_of(key, m.key_escaped, name) == Some(name.len())
}

/// When the key (raw, `escaped` or not) spells the start of `name`: how many bytes of
/// `name` it spells. Escaped keys are compared piece by piece as they unescape, without
/// allocating (`"comm\u0061nd_line"` spells `command_line`).
fn key_prefix_of(key: &[u8], escaped: bool, name: &[u8]) -> Option<usize> {
    if !escaped {
        return name.starts_with(key).then_some(key.len());
    }
    let mut rest = name;
    let mut spelled = true;
    unescape_pieces(key, |piece| {
        if spelled {
            match rest.strip_prefix(piece.as_bytes()) {
                Some(r) => rest = r,
                None => spelled = false,
            }
        }
    });
    spelled.then(|| name.len() - rest.len())
}

/// Byte equality of a key and a name, word by word inline: keys are short, and a call to
/// `memcmp` for each field read cost more than the comparison.
#[inline]
fn same_key(key: &[u8], name: &[u8]) -> bool {
    if key.len() != name.len() {
        return false;
    }
    let mut a = key.chunks_exact(8);
    let mut b = name.chunks_exact(8);
    for (x, y) in (&mut a).zip(&mut b) {
        if x != y {
            return false;
        }
    }
    a.remainder().iter().zip(b.remainder()).all(|(x, y)| x == y)
}

/// Whether `f` holds for a scalar of the (validated) object or array `raw`, for
/// [`FieldValue::any_scalar`]. Once one holds, `f` is not called again and nested
/// containers are no longer read (the container's own text is still stepped over).
fn scalars_of<'a>(raw: &'a [u8], f: &mut impl FnMut(FieldValue<'a>) -> bool) -> bool {
    let mut scanner = Scanner::new(raw, None);
    let mut found = false;
    let mut visit = |span: std::ops::Range<usize>, kind: ValueKind, canonical: bool| {
        if !found {
            let value = FieldValue {
                raw: &raw[span],
                kind,
                canonical,
            };
            found = value.any_scalar(f);
        }
    };
    scanner.skip_ws();
    // Validated when the event was parsed: an error cannot occur, and would only end the
    // walk. `raw` is an object or an array.
    let first = scanner.peek();
    scanner.pos += 1;
    let _ = if first == Some(b'{') {
        scanner.object_members(1, |m| {
            visit(
                m.value_start as usize..m.value_end as usize,
                m.kind,
                m.canonical,
            )
        })
    } else {
        scanner.array_values(1, &mut visit)
    };
    found
}

/// Search an already validated object (`{...}` text) for `path`, descending into nested
/// objects. Used for dotted paths; it re-scans only the nested object's bytes.
fn find_in_object<'a>(object: &'a [u8], path: &str) -> Option<FieldValue<'a>> {
    let mut scanner = Scanner::new(object, None);
    scanner.skip_ws();
    if scanner.peek() != Some(b'{') {
        return None;
    }
    scanner.pos += 1;
    let mut exact: Option<FieldValue<'a>> = None;
    let mut nested: Option<FieldValue<'a>> = None;
    let bytes = path.as_bytes();
    // The object was validated when the event was parsed: errors cannot occur here, and
    // if they did we would simply report the field as absent.
    let _ = scanner.object_members(1, |m| {
        let key = &object[m.key_start as usize..m.key_end as usize];
        let value = FieldValue {
            raw: &object[m.value_start as usize..m.value_end as usize],
            kind: m.kind,
            canonical: m.canonical,
        };
        let Some(n) = key_prefix_of(key, m.key_escaped, bytes) else {
            return;
        };
        if n == bytes.len() {
            exact = Some(value);
        } else if m.kind == ValueKind::Object && bytes[n] == b'.' && n + 1 < bytes.len() {
            if let Some(v) = find_in_object(value.raw, &path[n + 1..]) {
                nested = Some(v);
            }
        }
    });
    exact.or(nested)
}

impl<'a> FieldValue<'a> {
    /// The JSON type of the value.
    pub fn kind(&self) -> ValueKind {
        self.kind
    }

    /// True for `null`.
    pub fn is_null(&self) -> bool {
        self.kind == ValueKind::Null
    }

    /// The raw text: a string's bytes between the quotes (escapes kept), or the JSON text
    /// of any other value.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The value as text for matching: strings unescaped (into `buf` only when they hold
    /// escapes), numbers and booleans as written, `null` as the empty string. Objects and
    /// arrays yield `None`: Sigma compares scalar field values.
    pub fn text<'b>(&self, buf: &'b mut String) -> Option<&'b str>
    where
        'a: 'b,
    {
        match self.kind {
            ValueKind::String { escaped: false }
            | ValueKind::Number
            | ValueKind::Bool
            | ValueKind::Null => {
                // Validated as UTF-8 when the event was parsed.
                let raw: &'a [u8] = if self.kind == ValueKind::Null {
                    b""
                } else {
                    self.raw
                };
                // SAFETY: a FieldValue is only made by this module, from an event whose bytes
                // were validated as UTF-8 by `Event::parse`, cut at ASCII delimiters (quotes,
                // commas, brackets), so the slice is valid UTF-8 too.
                Some(unsafe { std::str::from_utf8_unchecked(raw) })
            }
            ValueKind::String { escaped: true } => {
                buf.clear();
                unescape_into(self.raw, buf);
                Some(buf.as_str())
            }
            ValueKind::Object | ValueKind::Array => None,
        }
    }

    /// The value as text in its canonical JSON-escaped form ([`escape_json_into`]): what
    /// [`FieldValue::text`] gives, escaped again. A string written with only the escapes
    /// that form uses (`\\`, `\"`, `\n`, `\r`, `\t`, `\b`, `\f`: what JSON writers emit
    /// for paths, quotes and line breaks) is its own raw bytes, borrowed; one with other
    /// escapes (`\/`, `\u00e9`) is rewritten into `buf`. Objects and arrays yield `None`.
    ///
    /// Why: a literal occurs in a value's text exactly where its escaped form occurs in
    /// the escaped text at an escape boundary, so a scan can search the raw bytes for
    /// escaped literals instead of unescaping every value first.
    pub fn escaped_text<'b>(&self, buf: &'b mut Vec<u8>) -> Option<&'b [u8]>
    where
        'a: 'b,
    {
        match self.kind {
            ValueKind::String { escaped: false } | ValueKind::Number | ValueKind::Bool => {
                Some(self.raw)
            }
            ValueKind::Null => Some(b""),
            ValueKind::String { escaped: true } => {
                if self.canonical {
                    return Some(self.raw);
                }
                buf.clear();
                escape_canonically(self.raw, buf);
                Some(buf.as_slice())
            }
            ValueKind::Object | ValueKind::Array => None,
        }
    }

    /// Call `f` with every scalar value inside this object or array, at any depth, in
    /// order (not the keys); a scalar value is its own only one. The keyword scan reads
    /// values so, nested ones included. Allocates nothing: nested containers are scanned
    /// again where they lie.
    pub fn for_each_scalar(&self, f: &mut impl FnMut(FieldValue<'a>)) {
        self.any_scalar(&mut |v| {
            f(v);
            false
        });
    }

    /// Whether `f` holds for a scalar value inside this object or array, at any depth (or
    /// for this value, a scalar): [`FieldValue::for_each_scalar`], asking no more once one
    /// holds (how wildcard and regex keywords test an event's values). A nested container
    /// is read once per level above it, so a walk costs the value's size times its depth
    /// (events nest a few levels).
    pub fn any_scalar(&self, f: &mut impl FnMut(FieldValue<'a>) -> bool) -> bool {
        match self.kind {
            ValueKind::Object | ValueKind::Array => scalars_of(self.raw, f),
            _ => f(*self),
        }
    }

    /// The value as an owned string (allocates; for output, not the hot path).
    pub fn to_text(&self) -> Option<String> {
        let mut buf = String::new();
        self.text(&mut buf).map(str::to_owned)
    }

    /// The value as a signed integer, for numbers and numeric strings.
    pub fn as_i64(&self) -> Option<i64> {
        match self.kind {
            ValueKind::Number | ValueKind::String { escaped: false } => {
                std::str::from_utf8(self.raw).ok()?.trim().parse().ok()
            }
            _ => None,
        }
    }

    /// The value as a float, for numbers and numeric strings.
    pub fn as_f64(&self) -> Option<f64> {
        match self.kind {
            ValueKind::Number | ValueKind::String { escaped: false } => {
                std::str::from_utf8(self.raw).ok()?.trim().parse().ok()
            }
            _ => None,
        }
    }
}

/// Append the unescaped form of a validated JSON string body to `out`.
///
/// Sixteen bytes at a time: each block is copied whole into space reserved up front, and
/// the output advances only up to the block's first backslash, where one escape is decoded
/// in place. Windows paths hold an escape every few bytes and rendered messages one per
/// line (`\r\n\t`): copying run by run cost more than the text itself.
fn unescape_into(raw: &[u8], out: &mut String) {
    const STEP: usize = 16;
    let mut bytes = std::mem::take(out).into_bytes();
    let start = bytes.len();
    // A valid escape never decodes to more bytes than it is written with, so the output
    // fits in `raw.len()`, plus the slack of one whole block copied past its end. An
    // invalid one (`\q`, two bytes) becomes U+FFFD (three): half as much again covers it.
    bytes.resize(start + raw.len() + raw.len() / 2 + STEP, 0);
    let mut len = start;
    let mut i = 0;
    while i < raw.len() {
        let block = raw
            .get(i..i + STEP)
            .map(|b| <&[u8; STEP]>::try_from(b).expect("a block of STEP bytes"));
        let run = match block {
            Some(block) => {
                bytes[len..len + STEP].copy_from_slice(block);
                let at = bytescan::backslashes(block);
                if at == 0 {
                    STEP
                } else {
                    at.trailing_zeros() as usize
                }
            }
            None => {
                let tail = &raw[i..];
                let run = tail.iter().position(|&b| b == b'\\').unwrap_or(tail.len());
                bytes[len..len + run].copy_from_slice(&tail[..run]);
                run
            }
        };
        i += run;
        len += run;
        if i >= raw.len() || raw[i] != b'\\' {
            continue;
        }
        // The escapes of paths and messages inline; `\u` (and anything invalid) out of line.
        let simple = match raw.get(i + 1) {
            Some(&c @ (b'\\' | b'"' | b'/')) => Some(c),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            bytes[len] = c;
            len += 1;
            i += 2;
            continue;
        }
        let Some((c, used)) = decode_escape(&raw[i + 1..]) else {
            break;
        };
        i += 1 + used;
        len += c.encode_utf8(&mut bytes[len..]).len();
    }
    bytes.truncate(len);
    // SAFETY: `raw` is a string body of a validated event; the bytes kept are its runs cut
    // at ASCII backslashes (valid UTF-8) and whole characters encoded by `encode_utf8`.
    *out = unsafe { String::from_utf8_unchecked(bytes) };
}

/// Append `text` to `out` in canonical JSON-escaped form: `"` and `\` and the control
/// characters escaped (`\n`, `\r`, `\t`, `\b`, `\f`, otherwise `\u00XX` in lower-case
/// hex), everything else as it is (UTF-8 included), as serde_json and most writers do.
pub fn escape_json_into(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x00..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            _ => out.push(b),
        }
    }
}

/// Append the string body `raw` (its JSON escapes as written) to `out` in canonical
/// escaped form ([`escape_json_into`] of its text).
fn escape_canonically(raw: &[u8], out: &mut Vec<u8>) {
    unescape_pieces(raw, |piece| escape_json_into(piece.as_bytes(), out));
}

/// Decode the escape whose backslash precedes `rest`: the character it stands for and the
/// bytes it used after the backslash. `None` when `rest` is empty (a dangling backslash).
/// Invalid escapes and lone surrogates decode to U+FFFD.
fn decode_escape(rest: &[u8]) -> Option<(char, usize)> {
    let c = match *rest.first()? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hi = hex4(rest.get(1..5));
            return Some(match hi {
                Some(hi @ 0xD800..=0xDBFF) if rest.get(5..7) == Some(b"\\u") => {
                    match hex4(rest.get(7..11)) {
                        Some(lo @ 0xDC00..=0xDFFF) => {
                            let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                            (char::from_u32(cp).unwrap_or('\u{FFFD}'), 11)
                        }
                        _ => ('\u{FFFD}', 5),
                    }
                }
                Some(cp) => (char::from_u32(cp).unwrap_or('\u{FFFD}'), 5),
                None => ('\u{FFFD}', rest.len().min(5)),
            });
        }
        _ => '\u{FFFD}',
    };
    Some((c, 1))
}

/// Hand the unescaped form of a validated JSON string body to `emit`, piece by piece
/// (runs of plain text and single unescaped characters), without allocating. Used to
/// compare escaped keys in place.
///
/// `raw` must be part of an event validated by [`Event::parse`]: its runs between escapes
/// are then valid UTF-8, since they are cut at ASCII backslashes.
fn unescape_pieces(raw: &[u8], mut emit: impl FnMut(&str)) {
    // SAFETY: `raw` is a string body of a validated event and each run is cut at ASCII
    // bytes, so it is valid UTF-8.
    fn plain(run: &[u8]) -> &str {
        unsafe { std::str::from_utf8_unchecked(run) }
    }
    let mut char_buf = [0u8; 4];
    let mut i = 0;
    while i < raw.len() {
        let Some(rel) = raw[i..].iter().position(|&b| b == b'\\') else {
            emit(plain(&raw[i..]));
            return;
        };
        if rel > 0 {
            emit(plain(&raw[i..i + rel]));
        }
        i += rel + 1;
        let Some((c, used)) = decode_escape(&raw[i..]) else {
            return;
        };
        i += used;
        emit(c.encode_utf8(&mut char_buf));
    }
}

fn hex4(digits: Option<&[u8]>) -> Option<u32> {
    let digits = digits?;
    let mut v = 0u32;
    for &d in digits {
        v = v * 16 + (d as char).to_digit(16)?;
    }
    Some(v)
}

/// The bytes that may follow a backslash as a two-byte escape.
const SIMPLE_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let simple = b"\"\\/bfnrt";
    let mut i = 0;
    while i < simple.len() {
        table[simple[i] as usize] = true;
        i += 1;
    }
    table
};

/// Scan `raw` as one JSON object written without whitespace (as event pipelines write
/// them), its top-level members into `members`; false when it is not one, and then it is
/// for [`Scanner`] to scan (it allows whitespace) or to say what is wrong.
///
/// Why a second scanner: this one is most of the decoding. Written compactly, a member is
/// `"key":value` and the next byte is `,` or `}`: the bytes to check are known in advance,
/// strings end where the [`StringIndex`] says, and only values other than strings
/// (numbers, literals, nested objects and arrays) go through the general scanner.
fn scan_compact_object(raw: &[u8], strings: &StringIndex, members: &mut Vec<Member>) -> bool {
    if raw.first() != Some(&b'{') {
        return false;
    }
    if raw.get(1) == Some(&b'}') {
        return raw.len() == 2;
    }
    let mut scanner = Scanner::new(raw, Some(strings));
    let mut quotes = QuoteCursor::new(&strings.quotes);
    let mut pos = 1;
    loop {
        // The key's opening quote is the next quote: the ones before it were consumed.
        if raw.get(pos) != Some(&b'"') || quotes.next() != Some(pos) {
            return false;
        }
        let key_start = pos + 1;
        let Some(key_end) = quotes.next() else {
            return false;
        };
        let key_escaped = strings.escapes_between(key_start, key_end);
        if raw.get(key_end + 1) != Some(&b':') {
            return false;
        }
        let at = key_end + 2;
        let (value_start, value_end, kind, canonical, after) = match raw.get(at) {
            Some(b'"') => {
                // Unescaped (a colon precedes it), so the next quote.
                if quotes.next() != Some(at) {
                    return false;
                }
                let Some(end) = quotes.next() else {
                    return false;
                };
                let (escaped, uncommon) = strings.escapes_in(at + 1, end);
                (
                    at + 1,
                    end,
                    ValueKind::String { escaped },
                    !uncommon,
                    end + 1,
                )
            }
            // A whole number (`"EventID":10`) is read here, where the general scanner's
            // dispatch cost more than its digits; any other value goes to that scanner.
            Some(_) => match whole_number_end(raw, at) {
                Some(end) => (at, end, ValueKind::Number, true, end),
                None => {
                    scanner.pos = at;
                    let Ok((start, end, kind)) = scanner.value(1) else {
                        return false;
                    };
                    // The quotes of strings nested in the value are behind us.
                    quotes.skip_to(scanner.pos);
                    (start, end, kind, true, scanner.pos)
                }
            },
            None => return false,
        };
        members.push(Member::new(
            key_start..key_end,
            key_escaped,
            value_start..value_end,
            kind,
            canonical,
        ));
        match raw.get(after) {
            Some(b',') => pos = after + 1,
            Some(b'}') => return after + 1 == raw.len(),
            _ => return false,
        }
    }
}

/// Where the whole number at `at` ends, when one starts there: digits, no leading zero
/// unless alone, followed by a member's delimiter (`,` or `}`). `None` for anything else
/// (a sign, a fraction, an exponent, not a number), which the general scanner reads or
/// rejects.
#[inline(always)]
fn whole_number_end(raw: &[u8], at: usize) -> Option<usize> {
    let digits = raw[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    let end = at + digits;
    let delimited = matches!(raw.get(end), Some(b',' | b'}'));
    let no_leading_zero = digits == 1 || raw[at] != b'0';
    (digits > 0 && no_leading_zero && delimited).then_some(end)
}

/// The unescaped quotes of an event in order, read from the [`StringIndex`] masks.
///
/// Why not [`StringIndex::string_from`] for each string: there, where a string ends is
/// looked up from where it starts, which is known only once the string before it has been
/// found, so each member of an event waits for a chain of dependent loads (a mask, its
/// lowest bit, the byte after it). Read in order, the next quote depends only on the mask
/// in hand, and the checks on the bytes around it run alongside. Decoding the OTRF events
/// went from 611 to 581 ns each.
struct QuoteCursor<'a> {
    quotes: &'a [u64],
    block: usize,
    /// The quotes of `block` not read yet.
    mask: u64,
}

impl<'a> QuoteCursor<'a> {
    fn new(quotes: &'a [u64]) -> Self {
        QuoteCursor {
            quotes,
            block: 0,
            mask: quotes.first().copied().unwrap_or(0),
        }
    }

    /// The position of the next quote; `None` past the last.
    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.block += 1;
            self.mask = *self.quotes.get(self.block)?;
        }
        let at = self.block * BLOCK + self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(at)
    }

    /// Pass over the quotes before `pos` (which is not before the next quote's block).
    #[inline]
    fn skip_to(&mut self, pos: usize) {
        let block = pos / BLOCK;
        if block != self.block {
            self.block = block;
            self.mask = self.quotes.get(block).copied().unwrap_or(0);
        }
        self.mask &= !0u64 << (pos % BLOCK);
    }
}

/// The bytes to classify for the last block of `raw`, from `base`, shorter than [`BLOCK`],
/// and how far down to shift their masks: the [`BLOCK`] bytes that end the event, where
/// the event is that long (a copy into a padded block costs a variable-length `memcpy` per
/// event; the bytes before `base` were classified already, and their high bit adds
/// nothing), else the event copied into `padded` (spaces, which are in no class).
#[inline]
fn last_block<'r>(
    raw: &'r [u8],
    base: usize,
    padded: &'r mut [u8; BLOCK],
) -> (&'r [u8; BLOCK], usize) {
    let len = raw.len() - base;
    match raw.len().checked_sub(BLOCK) {
        Some(from) => (raw[from..].try_into().expect("BLOCK bytes"), BLOCK - len),
        None => {
            padded[..len].copy_from_slice(&raw[base..]);
            (padded, 0)
        }
    }
}

/// How far ahead of the block being classified the index asks for the event's bytes.
/// Events arrive one after another from a buffer, but each is read once, front to back:
/// without the hint the first touch of each cache line waited for memory (about 40 % of
/// the index's time on the OTRF events). The hint reaches past the event's end into what
/// usually follows it, the next event.
const PREFETCH_AHEAD: usize = 512;

/// Where the strings of one event end, found for the whole event before its structure is
/// scanned: per 64-byte block, its unescaped quotes and its backslashes.
///
/// Why: the bodies of an event's strings are most of its bytes, and Windows paths put an
/// escape every few of them. Walking a string escape by escape costs a dozen instructions
/// per escape; here the escaped bytes of a whole block come from its backslash mask in a
/// few integer operations ([`bytescan::escapes`]), so the end of any string is the next
/// unescaped quote, one lookup. The masks do not know where strings are, so a quote or
/// backslash outside every string is classified too; but such a byte is a syntax error
/// that the scan meets before it reaches anything the error could have misclassified.
#[derive(Debug, Default)]
struct StringIndex {
    quotes: Vec<u64>,
    backslashes: Vec<u64>,
    /// Positions of escaped bytes that make an escape uncommon (`\/` and `\u`), in order:
    /// strings holding one are not `canonical` (see [`escape_json_into`]).
    uncommon: Vec<u32>,
}

impl StringIndex {
    /// Index `raw`; returns whether it holds a byte above ASCII, or `None` when it holds a
    /// control character or an invalid escape: then the event is left to the scan that
    /// looks at every special byte (and reports the error if there is one).
    fn build(&mut self, raw: &[u8]) -> Option<bool> {
        #[cfg(target_arch = "x86_64")]
        if bytescan::avx512_available() {
            // SAFETY: the processor has AVX-512BW.
            return unsafe { self.build_avx512(raw) };
        }
        self.build_with(raw, bytescan::classify, bytescan::escapable)
    }

    /// [`StringIndex::build`] with the blocks classified by AVX-512BW.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512bw")]
    fn build_avx512(&mut self, raw: &[u8]) -> Option<bool> {
        self.build_with(
            raw,
            |block| bytescan::classify_avx512(block),
            |block| bytescan::escapable_avx512(block),
        )
    }

    /// [`StringIndex::build`] with the blocks classified by `classify`, and by `escapable`
    /// where a byte other than a backslash is escaped.
    #[inline(always)]
    fn build_with(
        &mut self,
        raw: &[u8],
        classify: impl Fn(&[u8; BLOCK]) -> BlockClasses,
        escapable: impl Fn(&[u8; BLOCK]) -> u64,
    ) -> Option<bool> {
        let blocks = raw.len().div_ceil(BLOCK);
        self.quotes.resize(blocks, 0);
        self.backslashes.resize(blocks, 0);
        self.uncommon.clear();
        let mut high = false;
        let mut first_escaped = false;
        let mut padded = [b' '; BLOCK];
        for block_index in 0..blocks {
            let base = block_index * BLOCK;
            crate::prefetch(raw.as_ptr().wrapping_add(base + PREFETCH_AHEAD));
            let (block, shift) = match raw.get(base..base + BLOCK) {
                Some(block) => (block.try_into().expect("BLOCK bytes"), 0),
                None => last_block(raw, base, &mut padded),
            };
            let classes = classify(block).shifted_down(shift);
            if classes.controls != 0 {
                return None;
            }
            high |= classes.high;
            let (escapes, escaped) = bytescan::escapes(classes.backslashes, first_escaped);
            first_escaped = escapes >> 63 != 0;
            // An escaped backslash is always valid; any other escaped byte must be one of
            // the two-byte escapes or a `\u` with four hex digits. Messages hold a `\r\n\t`
            // per line: the common escapes are told by the block's mask, all at once, and
            // the others looked at one by one. Blocks whose escapes are all of backslashes
            // (paths) need neither. (Past the end of the event no byte is escapable: a
            // backslash ending the event is found there.)
            let others = escaped & !classes.backslashes;
            if others != 0 && others & !(escapable(block) >> shift) != 0 {
                Self::uncommon_escapes(raw, base, others, &mut self.uncommon)?;
            }
            self.quotes[block_index] = classes.quotes & !escaped;
            self.backslashes[block_index] = classes.backslashes;
        }
        // A backslash ending the event escapes nothing: the scan reports the string as cut.
        if first_escaped {
            return None;
        }
        Some(high)
    }

    /// The escaped bytes `others` of the block at `base` hold an uncommon or invalid escape:
    /// record the uncommon ones (`\/`, and `\u` with four hex digits), `None` for an
    /// invalid one or an escape that the event's end cuts.
    #[cold]
    fn uncommon_escapes(
        raw: &[u8],
        base: usize,
        mut others: u64,
        uncommon: &mut Vec<u32>,
    ) -> Option<()> {
        while others != 0 {
            let at = base + others.trailing_zeros() as usize;
            others &= others - 1;
            match *raw.get(at)? {
                b if bytescan::PLAIN_ESCAPES.contains(&b) => {}
                b'/' => uncommon.push(at as u32),
                b'u' => {
                    let digits = raw.get(at + 1..at + 5)?;
                    if !digits.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    uncommon.push(at as u32);
                }
                _ => return None,
            }
        }
        Some(())
    }

    /// For the string body from `start` (just past its opening quote): the position of
    /// its closing quote, whether it holds escapes and whether one of them is uncommon;
    /// `None` when the event ends first.
    #[inline(always)]
    fn string_from(&self, start: usize) -> Option<(usize, bool, bool)> {
        let (block, offset) = (start / BLOCK, start % BLOCK);
        let quotes = *self.quotes.get(block)? & (!0u64 << offset);
        // Most strings end in the block they start in.
        let end = if quotes == 0 {
            self.string_end_across_blocks(start)?
        } else {
            block * BLOCK + quotes.trailing_zeros() as usize
        };
        let (escaped, uncommon) = self.escapes_in(start, end);
        Some((end, escaped, uncommon))
    }

    /// Where the string body from `start` ends, for one that runs past its first block.
    #[inline(never)]
    fn string_end_across_blocks(&self, start: usize) -> Option<usize> {
        let mut block = start / BLOCK + 1;
        let mut quotes = *self.quotes.get(block)?;
        while quotes == 0 {
            block += 1;
            quotes = *self.quotes.get(block)?;
        }
        Some(block * BLOCK + quotes.trailing_zeros() as usize)
    }

    /// Whether the string body `start..end` holds escapes, and whether one of them is
    /// uncommon.
    #[inline(always)]
    fn escapes_in(&self, start: usize, end: usize) -> (bool, bool) {
        let escaped = self.escapes_between(start, end);
        (escaped, escaped && self.uncommon_between(start, end))
    }

    /// Whether a backslash lies in `start..end` (a string's body).
    #[inline(always)]
    fn escapes_between(&self, start: usize, end: usize) -> bool {
        let (first, last) = (start / BLOCK, end / BLOCK);
        let from = !0u64 << (start % BLOCK);
        let before_end = (1u64 << (end % BLOCK)) - 1;
        if first == last {
            return self.backslashes[first] & from & before_end != 0;
        }
        self.backslashes[first] & from != 0
            || self.backslashes[first + 1..last].iter().any(|&b| b != 0)
            || self
                .backslashes
                .get(last)
                .is_some_and(|&b| b & before_end != 0)
    }

    /// Whether an uncommon escape lies in `start..end`: the first one at or after `start`
    /// (they are recorded in order), found by a binary search, so an event full of `\u`
    /// escapes costs a few comparisons per string, not one per escape.
    #[inline]
    fn uncommon_between(&self, start: usize, end: usize) -> bool {
        let first = self.uncommon.partition_point(|&at| (at as usize) < start);
        self.uncommon
            .get(first)
            .is_some_and(|&at| (at as usize) < end)
    }
}

/// A validating JSON scanner over bytes already known to be UTF-8.
struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Start of the last block classified by [`bytescan::string_specials`] (blocks are
    /// aligned to multiples of [`BLOCK`] from the start of the bytes), and its mask: the
    /// strings that start in one block share one classification.
    block_at: usize,
    block_mask: u64,
    /// Set when a string holds an escape other than the canonical two-byte ones (`\/`,
    /// `\u…`); [`Scanner::value`] clears it before each string and reads it after.
    uncommon_escape: bool,
    /// Some string scanned so far held an uncommon escape (key or value, any depth).
    any_uncommon_escape: bool,
    /// Some classified block held a byte above ASCII. Every byte of every string is in a
    /// classified block, and such a byte anywhere else is a syntax error: when this stays
    /// false, the event is ASCII and needs no UTF-8 validation.
    non_ascii: bool,
    /// The event's strings, found in advance: when set, a string body ends at the next
    /// unescaped quote of the index, looked up instead of scanned.
    strings: Option<&'a StringIndex>,
}

impl<'a> Scanner<'a> {
    fn new(bytes: &'a [u8], strings: Option<&'a StringIndex>) -> Self {
        Scanner {
            bytes,
            pos: 0,
            block_at: usize::MAX,
            block_mask: 0,
            uncommon_escape: false,
            any_uncommon_escape: false,
            non_ascii: false,
            strings,
        }
    }

    /// The block holding `pos`: its start, its special bytes from `pos` on, and whether it
    /// reaches the end of the bytes (the last block is padded with spaces, which are plain).
    #[inline]
    fn specials_from(&mut self, pos: usize) -> (usize, u64, bool) {
        let base = pos & !(BLOCK - 1);
        let rest = &self.bytes[base..];
        if base != self.block_at {
            let mut padded = [b' '; BLOCK];
            let block: &[u8; BLOCK] = match rest.get(..BLOCK) {
                Some(block) => block.try_into().expect("a block of BLOCK bytes"),
                None => {
                    padded[..rest.len()].copy_from_slice(rest);
                    &padded
                }
            };
            let (specials, high) = bytescan::string_specials(block);
            self.block_mask = specials;
            self.non_ascii |= high;
            self.block_at = base;
        }
        (
            base,
            self.block_mask & (!0u64 << (pos - base)),
            rest.len() <= BLOCK,
        )
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn syntax(&self, what: &'static str) -> DecodeError {
        DecodeError::Syntax {
            offset: self.pos,
            what,
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Scan the members of an object whose `{` has been consumed, up to and including `}`.
    fn object_members(
        &mut self,
        depth: usize,
        mut on_member: impl FnMut(Member),
    ) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'"') => {}
                None => return Err(DecodeError::Truncated { what: "an object" }),
                Some(_) => return Err(self.syntax("expected a string key")),
            }
            self.pos += 1;
            let key_start = self.pos;
            let key_escaped = self.string_body()?;
            let key_end = self.pos - 1;
            self.skip_ws();
            match self.peek() {
                Some(b':') => self.pos += 1,
                None => return Err(DecodeError::Truncated { what: "an object" }),
                Some(_) => return Err(self.syntax("expected ':' after a key")),
            }
            self.skip_ws();
            let (value_start, value_end, kind) = self.value(depth)?;
            let canonical = !self.uncommon_escape;
            on_member(Member::new(
                key_start..key_end,
                key_escaped,
                value_start..value_end,
                kind,
                canonical,
            ));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                None => return Err(DecodeError::Truncated { what: "an object" }),
                Some(_) => return Err(self.syntax("expected ',' or '}'")),
            }
        }
    }

    /// Scan one value at the current position; returns its span (string spans exclude the
    /// quotes) and kind. After a string, `uncommon_escape` tells whether it held an escape
    /// other than the canonical two-byte ones.
    fn value(&mut self, depth: usize) -> Result<(usize, usize, ValueKind), DecodeError> {
        let start = self.pos;
        match self.peek() {
            None => Err(DecodeError::Truncated { what: "a value" }),
            Some(b'"') => {
                self.pos += 1;
                self.uncommon_escape = false;
                let escaped = self.string_body()?;
                Ok((start + 1, self.pos - 1, ValueKind::String { escaped }))
            }
            Some(b'{') => {
                self.pos += 1;
                self.object_members(depth + 1, |_| {})?;
                Ok((start, self.pos, ValueKind::Object))
            }
            Some(b'[') => {
                self.pos += 1;
                self.array(depth + 1)?;
                Ok((start, self.pos, ValueKind::Array))
            }
            Some(b't') => self.literal(b"true", ValueKind::Bool),
            Some(b'f') => self.literal(b"false", ValueKind::Bool),
            Some(b'n') => self.literal(b"null", ValueKind::Null),
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Ok((start, self.pos, ValueKind::Number))
            }
            Some(_) => Err(self.syntax("expected a JSON value")),
        }
    }

    fn literal(
        &mut self,
        word: &'static [u8],
        kind: ValueKind,
    ) -> Result<(usize, usize, ValueKind), DecodeError> {
        let start = self.pos;
        let end = start + word.len();
        if end > self.bytes.len() {
            if word.starts_with(&self.bytes[start..]) {
                return Err(DecodeError::Truncated { what: "a literal" });
            }
            return Err(self.syntax("invalid literal"));
        }
        if &self.bytes[start..end] != word {
            return Err(self.syntax("invalid literal"));
        }
        self.pos = end;
        Ok((start, end, kind))
    }

    fn array(&mut self, depth: usize) -> Result<(), DecodeError> {
        self.array_values(depth, |_, _, _| {})
    }

    /// Scan an array's values after its `[`, through its `]`, calling `on_value` with each
    /// one's span, kind and whether it is written with canonical escapes only.
    fn array_values(
        &mut self,
        depth: usize,
        mut on_value: impl FnMut(std::ops::Range<usize>, ValueKind, bool),
    ) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            let (start, end, kind) = self.value(depth)?;
            on_value(start..end, kind, !self.uncommon_escape);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                None => return Err(DecodeError::Truncated { what: "an array" }),
                Some(_) => return Err(self.syntax("expected ',' or ']'")),
            }
        }
    }

    /// Scan a string body after its opening quote, through the closing quote.
    /// Returns whether it contains escapes.
    ///
    /// 64-byte blocks are classified at once ([`bytescan::string_specials`]) and their
    /// special bytes visited in order; an escape only clears the bits it covers, so a path
    /// with an escape every few bytes costs one mask per 64 bytes, not one search per run.
    /// The blocks are fixed and their masks kept ([`Scanner::specials_from`]): a key and
    /// its short value, or several short values, share one.
    fn string_body(&mut self) -> Result<bool, DecodeError> {
        if let Some(strings) = self.strings {
            let (end, escaped, uncommon) = strings
                .string_from(self.pos)
                .ok_or(DecodeError::Truncated { what: "a string" })?;
            self.uncommon_escape |= uncommon;
            self.any_uncommon_escape |= uncommon;
            self.pos = end + 1;
            return Ok(escaped);
        }
        let mut escaped = false;
        loop {
            let (base, mut specials, last) = self.specials_from(self.pos);
            while specials != 0 {
                self.pos = base + specials.trailing_zeros() as usize;
                // The two common cases inline: the closing quote and a two-byte escape.
                // (A table, not a `match` on the escaped byte: that compiled to a jump
                // table whose indirect branch mispredicts between `\\`, `\n`, `\t`...)
                let byte = self.bytes[self.pos];
                if byte == b'"' {
                    self.pos += 1;
                    return Ok(escaped);
                }
                let next = self.bytes.get(self.pos + 1).copied().unwrap_or(0);
                if byte == b'\\' && SIMPLE_ESCAPE[next as usize] {
                    escaped = true;
                    self.uncommon_escape |= next == b'/';
                    self.any_uncommon_escape |= next == b'/';
                    self.pos += 2;
                } else if self.special_byte(&mut escaped)? {
                    return Ok(escaped);
                }
                // The escape may reach past the block: then go on from the next block.
                let covered = self.pos - base;
                if covered >= BLOCK {
                    break;
                }
                specials &= !0u64 << covered;
            }
            if last && specials == 0 {
                // The event ends inside the string.
                return Err(DecodeError::Truncated { what: "a string" });
            }
            self.pos = self.pos.max(base + BLOCK);
        }
    }

    /// Handle the special byte at `pos` inside a string body: the closing quote (returns
    /// true, `pos` past it), an escape (validated, `escaped` set, `pos` past it) or a
    /// control character (an error).
    #[inline]
    fn special_byte(&mut self, escaped: &mut bool) -> Result<bool, DecodeError> {
        match self.bytes[self.pos] {
            b'"' => {
                self.pos += 1;
                return Ok(true);
            }
            b'\\' => {}
            _ => return Err(self.syntax("control character in a string")),
        }
        *escaped = true;
        self.pos += 1;
        match self.peek() {
            None => return Err(DecodeError::Truncated { what: "a string" }),
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
            Some(b'u') => {
                self.uncommon_escape = true;
                self.any_uncommon_escape = true;
                self.pos += 1;
                for _ in 0..4 {
                    match self.peek() {
                        None => return Err(DecodeError::Truncated { what: "a string" }),
                        Some(c) if c.is_ascii_hexdigit() => self.pos += 1,
                        Some(_) => return Err(self.syntax("invalid \\u escape")),
                    }
                }
            }
            Some(_) => return Err(self.syntax("invalid escape")),
        }
        Ok(false)
    }

    fn number(&mut self) -> Result<(), DecodeError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            None => return Err(DecodeError::Truncated { what: "a number" }),
            Some(_) => return Err(self.syntax("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            match self.peek() {
                Some(b'0'..=b'9') => self.digits(),
                None => return Err(DecodeError::Truncated { what: "a number" }),
                Some(_) => return Err(self.syntax("invalid number")),
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            match self.peek() {
                Some(b'0'..=b'9') => self.digits(),
                None => return Err(DecodeError::Truncated { what: "a number" }),
                Some(_) => return Err(self.syntax("invalid number")),
            }
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: Option<FieldValue<'_>>) -> Option<String> {
        v.and_then(|v| v.to_text())
    }

    #[test]
    fn flat_fields_are_found_and_unescaped() {
        let raw =
            br#"{"EventID": 1, "Image": "C:\\Windows\\System32\\cmd.exe", "ok": true, "n": null}"#;
        let mut index = EventIndex::new();
        let event = Event::parse(raw, &mut index).unwrap();
        assert_eq!(event.len(), 4);
        assert_eq!(text(event.get("EventID")).as_deref(), Some("1"));
        assert_eq!(
            text(event.get("Image")).as_deref(),
            Some(r"C:\Windows\System32\cmd.exe")
        );
        assert_eq!(text(event.get("ok")).as_deref(), Some("true"));
        assert!(event.get("n").unwrap().is_null());
        assert!(event.get("missing").is_none());
        assert_eq!(event.get("EventID").unwrap().as_i64(), Some(1));
    }

    #[test]
    fn duplicate_keys_last_wins_and_escaped_keys_are_found() {
        let raw = br#"{"a": 1, "b": 2, "a": 3, "\u0063": 4}"#;
        let mut index = EventIndex::new();
        let event = Event::parse(raw, &mut index).unwrap();
        assert_eq!(text(event.get("a")).as_deref(), Some("3"));
        assert_eq!(text(event.get("b")).as_deref(), Some("2"));
        assert_eq!(text(event.get("c")).as_deref(), Some("4"));
        assert!(event.get("d").is_none());
        // An escaped key equals a name only as a whole: not a prefix, not a longer name.
        let raw = br#"{"Image\\x": 1}"#;
        let event = Event::parse(raw, &mut index).unwrap();
        assert_eq!(text(event.get("Image\\x")).as_deref(), Some("1"));
        assert!(event.get("Image").is_none());
        assert!(event.get("Image\\xy").is_none());
    }

    #[test]
    fn dotted_paths_descend_into_objects_and_flat_dotted_keys_win() {
        let raw = br#"{"process": {"command_line": "whoami /all", "parent": {"name": "cmd.exe"}}, "host.name": "ws1", "host": {"name": "other"}}"#;
        let mut index = EventIndex::new();
        let event = Event::parse(raw, &mut index).unwrap();
        assert_eq!(
            text(event.get("process.command_line")).as_deref(),
            Some("whoami /all")
        );
        assert_eq!(
            text(event.get("process.parent.name")).as_deref(),
            Some("cmd.exe")
        );
        assert_eq!(text(event.get("host.name")).as_deref(), Some("ws1"));
        assert!(event.get("process.pid").is_none());
        assert_eq!(event.get("process").unwrap().kind(), ValueKind::Object);
    }

    #[test]
    fn unicode_escapes_and_surrogates() {
        let raw = br#"{"a": "\u00e9\ud83d\ude00\n", "b\u0031": 2}"#;
        let mut index = EventIndex::new();
        let event = Event::parse(raw, &mut index).unwrap();
        assert_eq!(text(event.get("a")).as_deref(), Some("é😀\n"));
        assert_eq!(text(event.get("b1")).as_deref(), Some("2"));
    }

    #[test]
    fn malformed_inputs_are_named() {
        let mut index = EventIndex::new();
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"   ", "empty"),
            (b"[1,2]", "not a JSON object"),
            (b"{\"a\": 1", "truncated"),
            (b"{\"a\": \"xy", "truncated"),
            (b"{\"a\" 1}", "malformed"),
            (b"{\"a\": 1} x", "malformed"),
            (b"{\"a\": tru}", "malformed"),
            (b"{\"a\": 01x}", "malformed"),
            (b"{\"a\": \"\xff\"}", "UTF-8"),
            (b"{a: 1}", "malformed"),
            (b"{\"a\": \"\x01\"}", "malformed"),
        ];
        for (input, expected) in cases {
            let err = Event::parse(input, &mut index).unwrap_err();
            assert!(
                err.to_string().contains(expected),
                "{:?}: {err}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed() {
        let mut raw = String::from("{\"a\":");
        raw.push_str(&"[".repeat(10_000));
        let mut index = EventIndex::new();
        assert_eq!(
            Event::parse(raw.as_bytes(), &mut index).unwrap_err(),
            DecodeError::TooDeep
        );
    }

    #[test]
    fn agrees_with_serde_json_on_validity() {
        let samples = [
            r#"{"a":[1,2,{"b":"c"}],"d":-1.5e3}"#,
            r#"{"a":1,}"#,
            r#"{"a":"\q"}"#,
            r#"{"a":-}"#,
            r#"{"a":1.}"#,
            r#"{"":""}"#,
            // Numbers as compact events write them, read by the compact scan's own digits.
            r#"{"a":0}"#,
            r#"{"a":10,"b":0,"c":7}"#,
            r#"{"a":01}"#,
            r#"{"a":00,"b":1}"#,
            r#"{"a":1x}"#,
            r#"{"a":12"}"#,
            r#"{"a":-0,"b":0.5,"c":1e3,"d":10E+2}"#,
            r#"{"a":1"#,
        ];
        let mut index = EventIndex::new();
        for s in samples {
            let ours = Event::parse(s.as_bytes(), &mut index).is_ok();
            let theirs =
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(s).is_ok();
            assert_eq!(ours, theirs, "{s}");
        }
    }

    #[test]
    fn dotted_paths_read_keys_written_with_escapes() {
        let mut idx = EventIndex::new();
        for raw in [
            r#"{"process":{"comm\u0061nd_line":"x"}}"#,
            r#"{"proc\u0065ss":{"command_line":"x"}}"#,
            r#"{"proc\u0065ss":{"other":1,"comm\u0061nd_line":"x"}}"#,
            r#"{ "proc\u0065ss" : { "comm\u0061nd_line" : "x" } }"#,
        ] {
            let e = Event::parse(raw.as_bytes(), &mut idx).unwrap();
            assert_eq!(
                text(e.get("process.command_line")).as_deref(),
                Some("x"),
                "{raw}"
            );
            assert_eq!(e.get("process.command"), None, "{raw}");
            assert_eq!(e.get("process.command_line_x"), None, "{raw}");
        }
        // A path ending in a dot names no member, not an empty key.
        let e = Event::parse(br#"{"a":{"":"x","b":{"":1}}}"#, &mut idx).unwrap();
        assert_eq!(e.get("a."), None);
        assert_eq!(e.get("a.b."), None);
    }

    #[test]
    fn every_scalar_inside_is_visited_in_order() {
        let raw = br#"{"a":{"b":"x\\y","c":[1,null,{"d":true}],"e":{}},"f":[],"g":"\u0041"}"#;
        let mut index = EventIndex::new();
        let event = Event::parse(raw, &mut index).unwrap();
        let mut seen = Vec::new();
        for (_, value) in event.members() {
            value.for_each_scalar(&mut |v| {
                seen.push((
                    v.kind(),
                    String::from_utf8_lossy(v.raw()).into_owned(),
                    v.to_text(),
                ))
            });
        }
        let raws: Vec<&str> = seen.iter().map(|(_, raw, _)| raw.as_str()).collect();
        assert_eq!(raws, ["x\\\\y", "1", "null", "true", "\\u0041"]);
        assert_eq!(seen[0].2.as_deref(), Some("x\\y"));
        assert_eq!(seen[4].2.as_deref(), Some("A"));
        assert!(seen[2].0 == ValueKind::Null);
    }

    #[test]
    fn nested_scalars_keep_their_canonical_spelling_or_are_rewritten() {
        let mut idx = EventIndex::new();
        let raw = r#"{"o":{"k\u0041":["\u006d\/x\"y\\z\u001F", "p\\q", {"n":null}]},"s":"t"}"#;
        let e = Event::parse(raw.as_bytes(), &mut idx).unwrap();
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        e.get_flat("o").unwrap().for_each_scalar(&mut |v| {
            seen.push(String::from_utf8_lossy(v.escaped_text(&mut buf).unwrap()).into_owned())
        });
        assert_eq!(seen, [r#"m/x\"y\\z\u001f"#, r#"p\\q"#, ""]);
    }

    #[test]
    fn values_with_uncommon_escapes_are_flagged() {
        let mut idx = EventIndex::new();
        for (raw, flagged) in [
            (r#"{"a":"C:\\x\n","b":1}"#, false),
            (r#"{"a":"\u0041","b":1}"#, true),
            (r#"{"a":"x\/y"}"#, true),
            (r#"{ "a" : "\u0041" }"#, true),
            (r#"{ "a" : "plain" , "b" : "\\" }"#, false),
            // Keys and nested values count too.
            (r#"{"\u0041":"x"}"#, true),
            (r#"{"o":{"k":"\u0041"}}"#, true),
            (r#"{ "o" : [ "x\/" ] }"#, true),
            (r#"{"o":{"k":"\n"},"a":["\\u0041"]}"#, false),
            // Line breaks between tokens: the decoder's other path.
            ("{\"o\":\n{\"k\":\"\\u0041\"}}", true),
            ("{\"o\":\n[\"x\\/\"]}", true),
            ("{\"o\":\n{\"k\":\"\\n\\\\u0041\"}}", false),
        ] {
            let e = Event::parse(raw.as_bytes(), &mut idx).unwrap();
            assert_eq!(e.has_uncommon_escapes(), flagged, "{raw}");
        }
    }

    /// Compact events take the compact scan, nested values holding quotes included (a
    /// failed compact scan is not an error, only the slower general scan: the property
    /// tests cannot tell).
    #[test]
    fn compact_events_with_nested_values_take_the_compact_scan() {
        let long = "x\\\"y".repeat(30);
        let events = [
            (r#"{"n":1,"s":"x"}"#.to_string(), 2),
            (
                r#"{"a":{"b":"c","d":["e\"f",1]},"g":"h","i":[],"j":true}"#.to_string(),
                4,
            ),
            (
                format!(r#"{{"a":["{long}",{{"b":"{long}"}}],"c":"{long}","d":null}}"#),
                3,
            ),
        ];
        for (text, members) in events {
            let mut strings = StringIndex::default();
            assert!(strings.build(text.as_bytes()).is_some(), "{text}");
            let mut found = Vec::new();
            assert!(
                scan_compact_object(text.as_bytes(), &strings, &mut found),
                "{text}"
            );
            assert_eq!(found.len(), members, "{text}");
        }
    }

    #[test]
    fn only_the_strings_holding_an_uncommon_escape_lose_their_canonical_spelling() {
        // Escaped strings before, between and after strings with `\/` and `\u` escapes,
        // compact (the string index) and with whitespace (the scanner over it).
        for raw in [
            &br#"{"a":"x\\y","b":"\/p","c":"q\"r","d":"\u0061","e":"\t"}"#[..],
            &br#"{ "a": "x\\y", "b": "\/p", "c": "q\"r", "d": "\u0061", "e": "\t" }"#[..],
        ] {
            let mut index = EventIndex::new();
            Event::parse(raw, &mut index).unwrap();
            let canonical: Vec<bool> = index.members.iter().map(|m| m.canonical).collect();
            assert_eq!(
                canonical,
                [true, false, true, false, true],
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use proptest::test_runner::TestCaseError;

        /// `text` is valid exactly when serde_json reads it as an object, and then every
        /// member reads the same text.
        fn agrees_with_serde_json(text: &[u8]) -> Result<(), TestCaseError> {
            let mut index = EventIndex::new();
            let ours = Event::parse(text, &mut index);
            let theirs = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(text);
            prop_assert_eq!(
                ours.is_ok(),
                theirs.is_ok(),
                "{:?} {:?}",
                String::from_utf8_lossy(text),
                ours.err()
            );
            if let Ok(map) = theirs {
                let event = ours.unwrap();
                for (k, v) in &map {
                    let got = event.get_flat(k).and_then(|f| f.to_text());
                    prop_assert_eq!(got.as_deref(), v.as_str());
                }
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let mut index = EventIndex::new();
                if let Ok(event) = Event::parse(&bytes, &mut index) {
                    for (_, v) in event.members() {
                        let _ = v.to_text();
                    }
                }
            }

            #[test]
            fn unescaping_agrees_with_serde_json(
                value in "[\\x00-\\x7f\u{e9}\u{20ac}\u{1f600}\\\\\"/]{0,200}",
                slash_escaped in any::<bool>(),
            ) {
                let mut text = serde_json::to_vec(&serde_json::json!({ "k": value })).unwrap();
                if slash_escaped {
                    // `\/` is a legal spelling of `/` that serde_json never writes.
                    let mut spelled = Vec::new();
                    for &b in &text {
                        if b == b'/' {
                            spelled.extend_from_slice(b"\\/");
                        } else {
                            spelled.push(b);
                        }
                    }
                    text = spelled;
                }
                let mut index = EventIndex::new();
                let event = Event::parse(&text, &mut index).unwrap();
                let mut buf = String::from("left over");
                let got = event.get_flat("k").and_then(|v| v.text(&mut buf).map(str::to_owned));
                prop_assert_eq!(got.as_deref(), Some(value.as_str()));
            }

            /// The escaped text of a value is its text escaped canonically, however the
            /// writer spelled it: serde_json's escapes, `\/`, or `\u` for ASCII letters.
            #[test]
            fn escaped_text_is_the_text_escaped_canonically(
                value in "[\\x00-\\x7f\u{e9}\u{1f600}\\\\\"/]{0,80}",
                spelling in 0usize..3,
            ) {
                let mut text = serde_json::to_vec(&serde_json::json!({ "k": value })).unwrap();
                if spelling > 0 {
                    let mut spelled = Vec::new();
                    for &b in &text[..text.len() - 1] {
                        match b {
                            b'/' if spelling == 1 => spelled.extend_from_slice(b"\\/"),
                            b'z' if spelling == 2 => spelled.extend_from_slice(b"\\u007A"),
                            _ => spelled.push(b),
                        }
                    }
                    spelled.push(b'}');
                    text = spelled;
                }
                let mut index = EventIndex::new();
                let event = Event::parse(&text, &mut index).unwrap();
                let v = event.get_flat("k").unwrap();
                let mut expected = Vec::new();
                escape_json_into(value.as_bytes(), &mut expected);
                let mut buf = b"left over".to_vec();
                prop_assert_eq!(v.escaped_text(&mut buf), Some(expected.as_slice()));
            }

            /// Prepared names read what serde_json finds: flat keys (the last of
            /// duplicates), dotted paths into objects, absent names (most of which the key
            /// bits turn away without a probe), and, in events with a key written with
            /// escapes (where the key bits are not consulted), the fallback scan.
            #[test]
            fn prepared_names_read_what_serde_json_finds(
                keys in proptest::collection::vec("[abc.]{1,3}", 0..40),
                nested in proptest::collection::btree_map("[AB]{1,2}", "[abc]{1,2}", 0..3),
                escape_one in any::<bool>(),
                names in proptest::collection::vec("[abcAB.]{1,4}", 1..20),
            ) {
                let mut text = String::from("{");
                for (i, k) in keys.iter().enumerate() {
                    let k = if escape_one && i == 0 { k.replacen('a', "\\u0061", 1) } else { k.clone() };
                    text.push_str(&format!("\"{k}\":{i},"));
                }
                for (outer, inner) in &nested {
                    text.push_str(&format!("\"{outer}\":{{\"{inner}\":\"n\"}},"));
                }
                text.push_str("\"z\":0}");
                let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
                let as_text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                let mut index = EventIndex::new();
                let event = Event::parse(text.as_bytes(), &mut index).unwrap();
                for name in names.iter().chain(&keys).map(String::as_str).chain(["z"]) {
                    let want = map.get(name).map(as_text).or_else(|| {
                        let (outer, inner) = name.split_once('.')?;
                        map.get(outer)?.as_object()?.get(inner).map(as_text)
                    });
                    let got = event.get_named(&FieldName::new(name));
                    // Objects have no text: compare their JSON (written compact here).
                    let got_text = got.map(|v| v.to_text().unwrap_or_else(|| String::from_utf8_lossy(v.raw()).into_owned()));
                    prop_assert_eq!(got_text, want, "{} in {}", name, text);
                    prop_assert_eq!(got, event.get(name));
                }
                // All the names at once, by the event's members: the same values.
                let set = FieldNames::new(
                    names.iter().chain(&keys).map(String::as_str).chain(["z"]).map(FieldName::new),
                );
                let mut found = Vec::new();
                let escaped = escape_one && keys.first().is_some_and(|k| k.contains('a'));
                prop_assert_eq!(event.locate_all(&set, &mut found), !escaped);
                if !escaped {
                    prop_assert_eq!(found.len(), set.len());
                }
                for (i, &at) in found.iter().enumerate() {
                    let name = set.get(i);
                    let got = match at {
                        LOCATED_ABSENT => None,
                        LOCATED_NESTED => {
                            prop_assert!(event.get_flat(name.as_str()).is_none());
                            event.get_named(name)
                        }
                        member => Some(event.member_value(member)),
                    };
                    prop_assert_eq!(got, event.get_named(name), "{} in {}", name, text);
                }
            }

            /// Raw string bodies dense in escapes (runs of backslashes of every length,
            /// across the scanner's 64-byte blocks), now and then with an invalid piece:
            /// validity and values as serde_json reads them.
            #[test]
            fn escapes_across_blocks_agree_with_serde_json(
                pad in 0usize..70,
                pieces in proptest::collection::vec(
                    prop_oneof![
                        80 => Just(&b"\\\\"[..]),
                        40 => Just(&b"\\\""[..]),
                        20 => Just(&b"\\n"[..]),
                        10 => Just(&b"\\u00e9"[..]),
                        80 => Just(&b"a"[..]),
                        1 => Just(&b"\\x"[..]),
                        1 => Just(&b"\\u0g"[..]),
                        1 => Just(&b"\""[..]),
                        1 => Just(&b"\x01"[..]),
                    ],
                    0..120,
                ),
                close in prop_oneof![9 => Just(true), 1 => Just(false)],
            ) {
                let mut text = format!("{{\"{}\":\"", "k".repeat(pad + 1)).into_bytes();
                text.extend_from_slice(&pieces.concat());
                if close {
                    text.extend_from_slice(b"\"}");
                }
                agrees_with_serde_json(&text)?;
            }

            #[test]
            fn validity_matches_serde_json_on_mutated_objects(
                // Values long enough to span the scanner's 64-byte blocks, escapes included.
                base in proptest::collection::btree_map("[a-zA-Z._]{0,6}", "[ -~\u{e9}]{0,150}", 0..6),
                cut in 0usize..1000,
                byte in any::<u8>(),
                mutate in any::<bool>(),
            ) {
                let mut text = serde_json::to_vec(&base).unwrap();
                if mutate && !text.is_empty() {
                    let at = cut % text.len();
                    text[at] = byte;
                }
                agrees_with_serde_json(&text)?;
            }

            /// The string index is the same whichever way its blocks are classified (the
            /// events above take the fastest way this processor has).
            #[test]
            fn string_index_agrees_across_classifiers(
                text in "[ -~\\\\\"\u{e9}]{0,300}",
            ) {
                let raw = text.as_bytes();
                let mut detected = StringIndex::default();
                let mut portable = StringIndex::default();
                let found = detected.build(raw);
                prop_assert_eq!(found, portable.build_with(raw, bytescan::classify, bytescan::escapable));
                if found.is_some() {
                    prop_assert_eq!(&detected.quotes, &portable.quotes);
                    prop_assert_eq!(&detected.backslashes, &portable.backslashes);
                    prop_assert_eq!(&detected.uncommon, &portable.uncommon);
                }
            }

            /// The fast scans (compact members, or any layout over the string index) find
            /// the members the byte-by-byte scan finds, or fail where it fails: events
            /// written compactly or pretty-printed, with escapes of every kind (`\/` and
            /// `\u` spellings included), strings across blocks, nested values, and bytes
            /// changed anywhere.
            #[test]
            fn fast_scans_find_what_the_byte_by_byte_scan_finds(
                base in proptest::collection::btree_map(
                    "[a-z\\\\\"]{0,4}",
                    prop_oneof![
                        "[ -~\\\\\"\n\t\u{1}\u{e9}]{0,150}".prop_map(serde_json::Value::from),
                        any::<i64>().prop_map(serde_json::Value::from),
                        any::<f64>().prop_map(serde_json::Value::from),
                        proptest::collection::vec("[a\\\\\"]{0,3}", 0..3)
                            .prop_map(serde_json::Value::from),
                        Just(serde_json::json!({"n": {"m": [true, null, "x\\y"]}})),
                    ],
                    0..8,
                ),
                layout in 0usize..4,
                cut in 0usize..2000,
                byte in prop_oneof![Just(b'"'), Just(b'\\'), Just(b'/'), Just(b' '), Just(b'u'), any::<u8>()],
                mutate in any::<bool>(),
            ) {
                let mut text = match layout {
                    1 => serde_json::to_vec_pretty(&base).unwrap(),
                    _ => serde_json::to_vec(&base).unwrap(),
                };
                if layout >= 2 {
                    // Uncommon spellings: `\/` for `/`, `\u0061` for `a`.
                    let mut spelled = Vec::new();
                    for &b in &text {
                        match b {
                            b'/' if layout == 2 => spelled.extend_from_slice(b"\\/"),
                            b'a' if layout == 3 => spelled.extend_from_slice(b"\\u0061"),
                            _ => spelled.push(b),
                        }
                    }
                    text = spelled;
                }
                if mutate {
                    let at = cut % text.len();
                    text[at] = byte;
                }
                let mut index = EventIndex::new();
                let fast = Event::parse(&text, &mut index).map(|_| ()).map_err(|e| e.to_string());
                let mut members = Vec::new();
                let slow = Event::scan_object(&mut Scanner::new(&text, None), &mut members)
                    .map_err(|e| e.to_string());
                if slow.is_ok() && std::str::from_utf8(&text).is_ok() {
                    prop_assert_eq!(fast, Ok(()));
                    // The byte-by-byte scan leaves `canonical` of non-strings unset.
                    let canonical_strings = |ms: &[Member]| -> Vec<Member> {
                        ms.iter()
                            .map(|m| Member {
                                canonical: m.canonical || !matches!(m.kind, ValueKind::String { .. }),
                                ..*m
                            })
                            .collect()
                    };
                    prop_assert_eq!(canonical_strings(&index.members), canonical_strings(&members));
                } else {
                    prop_assert!(fast.is_err());
                }
            }
        }
    }
}
