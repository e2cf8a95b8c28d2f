//! Indicator lookups: constant cost in the number of indicators.
//!
//! Indicators are stored in one hash table per type, keyed by the normalised value (IP
//! addresses as parsed addresses). An event field is normalised into the scratch buffer and
//! looked up once; a domain is also looked up at each parent (`a.b.evil.example` finds
//! `evil.example`), so the cost is the number of labels, never the number of indicators.
//! Duplicates across feeds are kept once per feed, so provenance (feed, TLP) travels with
//! every hit.

use std::collections::HashMap;
use std::net::IpAddr;

use tocsin_core::{IndicatorType, Tlp};
use tocsin_rules::Indicator;

/// One loaded indicator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndicatorEntry {
    /// Type.
    pub kind: IndicatorType,
    /// Normalised value.
    pub value: String,
    /// Feed.
    pub feed: String,
    /// TLP.
    pub tlp: Tlp,
}

/// The indicator tables.
#[derive(Debug, Default)]
pub struct IocTable {
    entries: Vec<IndicatorEntry>,
    ips: HashMap<IpAddr, Vec<u32>>,
    strings: [HashMap<Box<str>, Vec<u32>>; 8],
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

impl IocTable {
    /// Build from parsed indicators; exact duplicates (same type, value and feed) are merged.
    pub fn build(indicators: &[Indicator]) -> Self {
        let mut table = IocTable::default();
        let mut seen: HashMap<(IndicatorType, &str, &str), ()> = HashMap::new();
        for ind in indicators {
            if seen.insert((ind.kind, &ind.value, &ind.feed), ()).is_some() {
                continue;
            }
            let id = table.entries.len() as u32;
            table.entries.push(IndicatorEntry {
                kind: ind.kind,
                value: ind.value.clone(),
                feed: ind.feed.clone(),
                tlp: ind.tlp,
            });
            match string_slot(ind.kind) {
                None => {
                    if let Ok(ip) = ind.value.parse::<IpAddr>() {
                        table.ips.entry(ip).or_default().push(id);
                    }
                }
                Some(slot) => table.strings[slot]
                    .entry(ind.value.clone().into_boxed_str())
                    .or_default()
                    .push(id),
            }
        }
        table
    }

    /// Number of distinct indicators (per feed).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no indicator is loaded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry with this id.
    pub fn entry(&self, id: u32) -> &IndicatorEntry {
        &self.entries[id as usize]
    }

    /// Look `text` up as a value of `kind`; call `hit` with each matching indicator id.
    /// `buf` is scratch space for normalisation.
    pub fn lookup(
        &self,
        kind: IndicatorType,
        text: &str,
        buf: &mut String,
        mut hit: impl FnMut(u32),
    ) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        match kind {
            IndicatorType::Ipv4 | IndicatorType::Ipv6 => {
                if self.ips.is_empty() {
                    return;
                }
                // Sysmon writes IPv4-mapped IPv6 as ::ffff:a.b.c.d; compare the IPv4 form.
                let text = text.strip_prefix("::ffff:").unwrap_or(text);
                if let Ok(ip) = text.parse::<IpAddr>() {
                    let matches_kind = matches!(
                        (kind, ip),
                        (IndicatorType::Ipv4, IpAddr::V4(_)) | (IndicatorType::Ipv6, IpAddr::V6(_))
                    );
                    if matches_kind {
                        if let Some(ids) = self.ips.get(&ip) {
                            ids.iter().copied().for_each(&mut hit);
                        }
                    }
                }
            }
            _ => {
                let Some(slot) = string_slot(kind) else {
                    return;
                };
                let map = &self.strings[slot];
                if map.is_empty() {
                    return;
                }
                buf.clear();
                buf.push_str(text);
                buf.make_ascii_lowercase();
                if kind == IndicatorType::Domain {
                    let mut d = buf.trim_end_matches('.');
                    loop {
                        if let Some(ids) = map.get(d) {
                            ids.iter().copied().for_each(&mut hit);
                        }
                        match d.find('.') {
                            Some(i) if d[i + 1..].contains('.') => d = &d[i + 1..],
                            _ => break,
                        }
                    }
                } else if let Some(ids) = map.get(buf.as_str()) {
                    ids.iter().copied().for_each(&mut hit);
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

    #[test]
    fn lookups_by_type_with_parent_domains() {
        let (iocs, _) = parse_plain_list(
            "f",
            "evil.example\n203.0.113.9\n2001:db8::9\nsha256 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\nevil.example\n",
            "feed",
        );
        let t = IocTable::build(&iocs);
        assert_eq!(t.len(), 4);
        let mut buf = String::new();
        let mut hits = Vec::new();
        for (k, v) in [
            (IndicatorType::Domain, "A.B.Evil.Example."),
            (IndicatorType::Domain, "notevil.example"),
            (IndicatorType::Domain, "example"),
            (IndicatorType::Ipv4, "::ffff:203.0.113.9"),
            (IndicatorType::Ipv6, "2001:0db8::9"),
            (IndicatorType::Ipv4, "203.0.113.10"),
            (
                IndicatorType::Sha256,
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
        ] {
            let mut n = 0;
            t.lookup(k, v, &mut buf, |_| n += 1);
            hits.push(n);
        }
        assert_eq!(hits, vec![1, 0, 0, 1, 1, 0, 1]);
        let mut found = Vec::new();
        each_listed_hash("SHA1=AB,MD5=CD,SHA256=EF,IMPHASH=00", |k, v| {
            found.push((k, v.to_owned()))
        });
        assert_eq!(found.len(), 3);
    }
}
