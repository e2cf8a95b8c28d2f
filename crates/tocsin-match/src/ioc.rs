//! Indicator lookups: constant cost in the number of indicators.
//!
//! Each distinct (type, normalised value) is stored once, with the provenance of every feed
//! that listed it (feed, TLP, source id, validity, confidence), so duplicates across feeds
//! are merged and every hit can still say where it came from and how it may be shared.
//!
//! Lookups are hash lookups, never scans:
//! - addresses: one hash table of exact addresses, and for CIDR ranges one table per prefix
//!   length present (longest prefix first), so the cost is the number of distinct prefix
//!   lengths, not of ranges;
//! - domains: the value and each parent (`a.b.evil.example` finds `evil.example`);
//! - hashes, e-mail addresses, file names (the last path component of the field), URLs
//!   (normalised first): exact.
//!
//! Expiry is checked when a detection is built, against the event's time.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;

use tocsin_core::{IndicatorType, Timestamp, Tlp};
use tocsin_rules::Indicator;

/// Where one feed listed an indicator (a view into the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provenance<'a> {
    /// Feed name.
    pub feed: &'a str,
    /// TLP under which that feed shared it.
    pub tlp: Tlp,
    /// Id in the source (MISP attribute, STIX indicator).
    pub source_id: Option<&'a str>,
    /// Not valid before.
    pub valid_from: Option<Timestamp>,
    /// Not valid after.
    pub valid_until: Option<Timestamp>,
    /// Confidence 0–100.
    pub confidence: Option<u8>,
}

impl Provenance<'_> {
    /// Whether this listing is valid at event time `t`.
    pub fn valid_at(&self, t: Timestamp) -> bool {
        self.valid_from.is_none_or(|f| t >= f) && self.valid_until.is_none_or(|u| t <= u)
    }
}

/// One distinct indicator (a view into the table).
#[derive(Debug, Clone, Copy)]
pub struct IndicatorEntry<'a> {
    table: &'a IocTable,
    id: u32,
    /// Type.
    pub kind: IndicatorType,
    /// Normalised value (`address/prefix` for ranges).
    pub value: &'a str,
}

impl<'a> IndicatorEntry<'a> {
    /// Every feed that listed it.
    pub fn provenance(&self) -> impl Iterator<Item = Provenance<'a>> + 'a {
        let table = self.table;
        let mut next = table.entries[self.id as usize].first_provenance;
        std::iter::from_fn(move || {
            let r = table.provenance.get(next as usize)?;
            next = r.next;
            Some(Provenance {
                feed: &table.feeds[r.feed as usize],
                tlp: r.tlp,
                source_id: r.source_id.as_deref(),
                valid_from: (r.valid_from != i64::MIN).then_some(Timestamp(r.valid_from)),
                valid_until: (r.valid_until != i64::MAX).then_some(Timestamp(r.valid_until)),
                confidence: r.confidence,
            })
        })
    }
}

/// Compact storage: one record per distinct indicator, provenance in a shared array linked
/// per indicator, feed names interned. About 150 bytes per indicator in all.
#[derive(Debug)]
struct Entry {
    value: Box<str>,
    kind: IndicatorType,
    first_provenance: u32,
    /// Next entry whose value has the same 64-bit hash (collisions are chained).
    next_same_hash: u32,
}

#[derive(Debug)]
struct ProvenanceRecord {
    feed: u32,
    next: u32,
    /// `i64::MIN` when unbounded.
    valid_from: i64,
    /// `i64::MAX` when unbounded.
    valid_until: i64,
    source_id: Option<Box<str>>,
    tlp: Tlp,
    confidence: Option<u8>,
}

const NONE: u32 = u32::MAX;

/// A hasher for keys that are already 64-bit hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type HashIndex = HashMap<u64, u32, BuildHasherDefault<PassThrough>>;

fn value_hash(kind: IndicatorType, value: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (kind as u8).hash(&mut h);
    value.hash(&mut h);
    h.finish()
}

/// The indicator tables. Immutable once built.
#[derive(Debug, Default)]
pub struct IocTable {
    feeds: Vec<Box<str>>,
    entries: Vec<Entry>,
    provenance: Vec<ProvenanceRecord>,
    exact_ips: HashMap<IpAddr, u32>,
    /// (prefix length, masked network → entry), longest prefix first.
    v4_ranges: Vec<(u8, HashMap<u32, u32>)>,
    v6_ranges: Vec<(u8, HashMap<u128, u32>)>,
    /// Value hash → first entry, per string type.
    strings: [HashIndex; 8],
}

fn string_slot(kind: IndicatorType) -> Option<usize> {
    Some(match kind {
        IndicatorType::Domain => 0,
        IndicatorType::Md5 => 1,
        IndicatorType::Sha1 => 2,
        IndicatorType::Sha256 => 3,
        IndicatorType::Sha512 => 4,
        IndicatorType::Url => 5,
        IndicatorType::Email => 6,
        IndicatorType::Filename => 7,
        IndicatorType::Ipv4 | IndicatorType::Ipv6 => return None,
    })
}

/// `a` with all but its first `prefix` bits cleared.
pub(crate) fn mask_v4(a: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        a & (u32::MAX << (32 - prefix))
    }
}

/// `a` with all but its first `prefix` bits cleared.
pub(crate) fn mask_v6(a: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        a & (u128::MAX << (128 - prefix))
    }
}

/// Where an indicator lives in the lookup structures.
enum Slot {
    String(usize, u64),
    Ip(IpAddr),
    V4(u8, u32),
    V6(u8, u128),
}

impl IocTable {
    /// Build from parsed indicators. The same (type, value) from several feeds becomes one
    /// entry with several provenances; a feed listing it twice keeps its first listing.
    pub fn build(indicators: &[Indicator]) -> Self {
        let mut table = IocTable::default();
        let mut feed_ids: HashMap<&str, u32> = HashMap::new();
        let mut v4: HashMap<u8, HashMap<u32, u32>> = HashMap::new();
        let mut v6: HashMap<u8, HashMap<u128, u32>> = HashMap::new();
        for ind in indicators {
            let slot = match string_slot(ind.kind) {
                Some(s) => Slot::String(s, value_hash(ind.kind, &ind.value)),
                None => match ind.value.split_once('/') {
                    None => match ind.value.parse::<IpAddr>() {
                        Ok(ip) => Slot::Ip(ip),
                        Err(_) => continue,
                    },
                    Some((addr, prefix)) => match (addr.parse::<IpAddr>(), prefix.parse::<u8>()) {
                        (Ok(IpAddr::V4(a)), Ok(p)) if p <= 32 => {
                            Slot::V4(p, mask_v4(u32::from(a), p))
                        }
                        (Ok(IpAddr::V6(a)), Ok(p)) if p <= 128 => {
                            Slot::V6(p, mask_v6(u128::from(a), p))
                        }
                        _ => continue,
                    },
                },
            };
            let existing = match &slot {
                Slot::String(s, h) => table.find_string(*s, *h, ind.kind, &ind.value),
                Slot::Ip(ip) => table.exact_ips.get(ip).copied(),
                Slot::V4(p, n) => v4.get(p).and_then(|m| m.get(n)).copied(),
                Slot::V6(p, n) => v6.get(p).and_then(|m| m.get(n)).copied(),
            };
            let feed = match feed_ids.get(ind.feed.as_str()) {
                Some(&f) => f,
                None => {
                    table.feeds.push(ind.feed.as_str().into());
                    let f = table.feeds.len() as u32 - 1;
                    feed_ids.insert(&ind.feed, f);
                    f
                }
            };
            let id = match existing {
                Some(id) => {
                    // One listing per feed.
                    let mut p = table.entries[id as usize].first_provenance;
                    let mut listed = false;
                    while let Some(r) = table.provenance.get(p as usize) {
                        if r.feed == feed {
                            listed = true;
                            break;
                        }
                        p = r.next;
                    }
                    if listed {
                        continue;
                    }
                    id
                }
                None => {
                    let id = table.entries.len() as u32;
                    let mut next_same_hash = NONE;
                    match slot {
                        Slot::String(s, h) => {
                            if let Some(first) = table.strings[s].insert(h, id) {
                                next_same_hash = first;
                            }
                        }
                        Slot::Ip(ip) => {
                            table.exact_ips.insert(ip, id);
                        }
                        Slot::V4(p, n) => {
                            v4.entry(p).or_default().insert(n, id);
                        }
                        Slot::V6(p, n) => {
                            v6.entry(p).or_default().insert(n, id);
                        }
                    }
                    table.entries.push(Entry {
                        value: ind.value.as_str().into(),
                        kind: ind.kind,
                        first_provenance: NONE,
                        next_same_hash,
                    });
                    id
                }
            };
            let entry = &mut table.entries[id as usize];
            table.provenance.push(ProvenanceRecord {
                feed,
                next: entry.first_provenance,
                valid_from: ind.valid_from.map_or(i64::MIN, |t| t.0),
                valid_until: ind.valid_until.map_or(i64::MAX, |t| t.0),
                source_id: ind.source_id.as_deref().map(Into::into),
                tlp: ind.tlp,
                confidence: ind.confidence,
            });
            entry.first_provenance = table.provenance.len() as u32 - 1;
        }
        table.v4_ranges = v4.into_iter().collect();
        table.v4_ranges.sort_by_key(|r| std::cmp::Reverse(r.0));
        table.v6_ranges = v6.into_iter().collect();
        table.v6_ranges.sort_by_key(|r| std::cmp::Reverse(r.0));
        table.entries.shrink_to_fit();
        table.provenance.shrink_to_fit();
        table
    }

    fn find_string(&self, slot: usize, hash: u64, kind: IndicatorType, value: &str) -> Option<u32> {
        let mut id = *self.strings[slot].get(&hash)?;
        while let Some(e) = self.entries.get(id as usize) {
            if e.kind == kind && &*e.value == value {
                return Some(id);
            }
            id = e.next_same_hash;
        }
        None
    }

    /// Number of distinct indicators.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no indicator is loaded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry with this id.
    pub fn entry(&self, id: u32) -> IndicatorEntry<'_> {
        let e = &self.entries[id as usize];
        IndicatorEntry {
            table: self,
            id,
            kind: e.kind,
            value: &e.value,
        }
    }

    /// Whether any indicator of this type is loaded (lets callers skip reading fields).
    pub fn has_type(&self, kind: IndicatorType) -> bool {
        match string_slot(kind) {
            Some(slot) => !self.strings[slot].is_empty(),
            None => {
                !self.exact_ips.is_empty()
                    || !self.v4_ranges.is_empty()
                    || !self.v6_ranges.is_empty()
            }
        }
    }

    /// Look `text` up as a value of `kind`; call `hit` with each matching entry id. `buf`
    /// is scratch space for normalisation (no allocation once it has grown).
    pub fn lookup(
        &self,
        kind: IndicatorType,
        text: &str,
        buf: &mut String,
        mut hit: impl FnMut(u32),
    ) {
        let text = text.trim();
        if text.is_empty() || !self.has_type(kind) {
            return;
        }
        match kind {
            IndicatorType::Ipv4 | IndicatorType::Ipv6 => {
                // Sysmon writes IPv4-mapped IPv6 as ::ffff:a.b.c.d; compare the IPv4 form.
                let text = text.strip_prefix("::ffff:").unwrap_or(text);
                let Ok(ip) = text.parse::<IpAddr>() else {
                    return;
                };
                if !matches!(
                    (kind, ip),
                    (IndicatorType::Ipv4, IpAddr::V4(_)) | (IndicatorType::Ipv6, IpAddr::V6(_))
                ) {
                    return;
                }
                // Longest prefix wins: an exact address first, then ranges from the most
                // specific prefix down.
                if let Some(&id) = self.exact_ips.get(&ip) {
                    hit(id);
                    return;
                }
                match ip {
                    IpAddr::V4(a) => {
                        let a = u32::from(a);
                        for (p, table) in &self.v4_ranges {
                            if let Some(&id) = table.get(&mask_v4(a, *p)) {
                                hit(id);
                                return;
                            }
                        }
                    }
                    IpAddr::V6(a) => {
                        let a = u128::from(a);
                        for (p, table) in &self.v6_ranges {
                            if let Some(&id) = table.get(&mask_v6(a, *p)) {
                                hit(id);
                                return;
                            }
                        }
                    }
                }
            }
            IndicatorType::Url => {
                // URLs are compared in their normalised form (scheme and host case, default
                // ports, percent-encoding), as the feeds' values were.
                if let Some(norm) = tocsin_rules::ioc::normalise(IndicatorType::Url, text) {
                    if let Some(id) = self.find_string(5, value_hash(kind, &norm), kind, &norm) {
                        hit(id);
                    }
                }
            }
            _ => {
                let Some(slot) = string_slot(kind) else {
                    return;
                };
                buf.clear();
                let value = if kind == IndicatorType::Filename {
                    // The last path component of a path field.
                    text.rsplit(['\\', '/']).next().unwrap_or(text)
                } else {
                    text
                };
                buf.push_str(value);
                buf.make_ascii_lowercase();
                if kind == IndicatorType::Domain {
                    let mut d = buf.trim_end_matches('.');
                    loop {
                        if let Some(id) = self.find_string(slot, value_hash(kind, d), kind, d) {
                            hit(id);
                        }
                        match d.find('.') {
                            Some(i) if d[i + 1..].contains('.') => d = &d[i + 1..],
                            _ => break,
                        }
                    }
                } else if let Some(id) = self.find_string(slot, value_hash(kind, buf), kind, buf) {
                    hit(id);
                }
            }
        }
    }
}

/// Parse a Sysmon-style hash list (`SHA1=…,MD5=…,SHA256=…,IMPHASH=…`), calling `each`
/// with the type and hex value of every recognised hash.
pub fn each_listed_hash(text: &str, mut each: impl FnMut(IndicatorType, &str)) {
    for part in text.split(',') {
        let Some((algo, value)) = part.split_once('=') else {
            continue;
        };
        let algo = algo.trim();
        let kind = if algo.eq_ignore_ascii_case("SHA256") {
            IndicatorType::Sha256
        } else if algo.eq_ignore_ascii_case("SHA1") {
            IndicatorType::Sha1
        } else if algo.eq_ignore_ascii_case("MD5") {
            IndicatorType::Md5
        } else if algo.eq_ignore_ascii_case("SHA512") {
            IndicatorType::Sha512
        } else {
            continue;
        };
        each(kind, value.trim());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tocsin_rules::parse_plain_list;

    fn hits(t: &IocTable, k: IndicatorType, v: &str) -> Vec<String> {
        let mut buf = String::new();
        let mut out = Vec::new();
        t.lookup(k, v, &mut buf, |id| out.push(t.entry(id).value.to_owned()));
        out
    }

    #[test]
    fn lookups_by_type_with_parent_domains_and_ranges() {
        let (mut iocs, _) = parse_plain_list(
            "f",
            "evil.example\n203.0.113.9\n2001:db8::9\nsha256 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nevil.example\n",
            "feed",
        );
        let (other, _) = parse_plain_list("g", "evil.example\n", "other-feed");
        iocs.extend(other);
        let mut range = iocs[1].clone();
        range.value = "198.51.100.0/24".into();
        iocs.push(range.clone());
        range.value = "198.51.100.128/25".into();
        iocs.push(range);
        let t = IocTable::build(&iocs);
        assert_eq!(t.len(), 6);
        assert_eq!(
            t.entry(0).provenance().count(),
            2,
            "merged provenance across feeds"
        );
        assert_eq!(
            hits(&t, IndicatorType::Domain, "A.B.Evil.Example."),
            ["evil.example"]
        );
        assert!(hits(&t, IndicatorType::Domain, "notevil.example").is_empty());
        assert!(hits(&t, IndicatorType::Domain, "example").is_empty());
        assert_eq!(
            hits(&t, IndicatorType::Ipv4, "::ffff:203.0.113.9"),
            ["203.0.113.9"]
        );
        assert_eq!(
            hits(&t, IndicatorType::Ipv6, "2001:0db8::9"),
            ["2001:db8::9"]
        );
        assert!(hits(&t, IndicatorType::Ipv4, "203.0.113.10").is_empty());
        assert_eq!(
            hits(&t, IndicatorType::Ipv4, "198.51.100.7"),
            ["198.51.100.0/24"]
        );
        assert_eq!(
            hits(&t, IndicatorType::Ipv4, "198.51.100.200"),
            ["198.51.100.128/25"],
            "longest prefix"
        );
        assert_eq!(hits(&t, IndicatorType::Sha256, &"A".repeat(64)).len(), 1);
        let mut found = Vec::new();
        each_listed_hash("SHA1=AB,MD5=CD,SHA256=EF,IMPHASH=00", |k, v| {
            found.push((k, v.to_owned()))
        });
        assert_eq!(found.len(), 3);
    }

    #[test]
    fn validity_windows() {
        let p = Provenance {
            feed: "f",
            tlp: Tlp::Green,
            source_id: None,
            valid_from: Some(Timestamp(100)),
            valid_until: Some(Timestamp(200)),
            confidence: None,
        };
        assert!(!p.valid_at(Timestamp(99)));
        assert!(p.valid_at(Timestamp(150)));
        assert!(!p.valid_at(Timestamp(201)));
    }
}
