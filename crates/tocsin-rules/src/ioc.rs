//! Plain indicator lists: one indicator per line.
//!
//! The simplest feed a CSIRT can hand over: a text file of IP addresses, domains and file
//! hashes. Each line holds a value, optionally preceded by its type (`domain evil.example`,
//! `sha256:ab…`); without one, the type is inferred (IP address, 32/40/64/128 hex digits,
//! otherwise a domain). Header lines `#! feed: NAME` and `#! tlp: AMBER` set the feed's
//! name and TLP; other `#` lines and blank lines are comments. Values are normalised
//! (lower case; domains without a trailing dot) so that lookups are exact hash lookups.
//! Bad lines are reported with file:line and skipped; the rest loads.

use std::net::IpAddr;

use tocsin_core::{IndicatorType, Tlp};

use crate::diagnostic::{Diagnostic, Location};

/// One indicator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indicator {
    /// Its type.
    pub kind: IndicatorType,
    /// Its normalised value (for IP ranges, `address/prefix`).
    pub value: String,
    /// The feed it came from.
    pub feed: String,
    /// Its TLP.
    pub tlp: Tlp,
    /// Its id in the source (MISP attribute uuid, STIX indicator id), when it has one.
    pub source_id: Option<String>,
    /// Not valid before this time, when known.
    pub valid_from: Option<tocsin_core::Timestamp>,
    /// Expired after this time: events later than it do not match.
    pub valid_until: Option<tocsin_core::Timestamp>,
    /// Confidence 0–100, when the source gives one.
    pub confidence: Option<u8>,
    /// Tags from the source (MISP tags, STIX labels).
    pub tags: Vec<String>,
    /// Where it was read.
    pub location: Location,
}

/// Normalise a value of a given type; `None` if it is not a valid value of that type.
pub fn normalise(kind: IndicatorType, raw: &str) -> Option<String> {
    let v = raw.trim();
    match kind {
        IndicatorType::Ipv4 => match v.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) => Some(a.to_string()),
            IpAddr::V6(_) => None,
        },
        IndicatorType::Ipv6 => match v.parse::<IpAddr>().ok()? {
            IpAddr::V6(a) => Some(a.to_string()),
            IpAddr::V4(_) => None,
        },
        IndicatorType::Md5
        | IndicatorType::Sha1
        | IndicatorType::Sha256
        | IndicatorType::Sha512 => {
            let want = match kind {
                IndicatorType::Md5 => 32,
                IndicatorType::Sha1 => 40,
                IndicatorType::Sha256 => 64,
                _ => 128,
            };
            (v.len() == want && v.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| v.to_ascii_lowercase())
        }
        IndicatorType::Domain => {
            let d = v.trim_end_matches('.').to_ascii_lowercase();
            let valid = !d.is_empty()
                && d.len() <= 253
                && d.contains('.')
                && d.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                });
            valid.then_some(d)
        }
        IndicatorType::Url => (!v.is_empty() && v.contains("://")).then(|| v.to_owned()),
        IndicatorType::Email => {
            let (local, domain) = v.rsplit_once('@')?;
            let domain = normalise(IndicatorType::Domain, domain)?;
            (!local.is_empty()).then(|| format!("{}@{domain}", local.to_ascii_lowercase()))
        }
        IndicatorType::Filename => {
            (!v.is_empty() && !v.contains(['/', '\\'])).then(|| v.to_ascii_lowercase())
        }
    }
}

/// Infer the type of an untyped value.
pub fn infer_type(v: &str) -> Option<IndicatorType> {
    let v = v.trim();
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Some(if ip.is_ipv4() {
            IndicatorType::Ipv4
        } else {
            IndicatorType::Ipv6
        });
    }
    if v.contains("://") {
        return Some(IndicatorType::Url);
    }
    if v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return match v.len() {
            32 => Some(IndicatorType::Md5),
            40 => Some(IndicatorType::Sha1),
            64 => Some(IndicatorType::Sha256),
            128 => Some(IndicatorType::Sha512),
            _ => None,
        };
    }
    normalise(IndicatorType::Domain, v).map(|_| IndicatorType::Domain)
}

/// Parse a plain list. `default_feed` names the feed when no `#! feed:` header does.
pub fn parse_plain_list(
    file: &str,
    text: &str,
    default_feed: &str,
) -> (Vec<Indicator>, Vec<Diagnostic>) {
    let mut feed = default_feed.to_owned();
    let mut tlp = Tlp::Green;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let location = Location::line(file, i + 1);
        let line = line.trim();
        if let Some(header) = line.strip_prefix("#!") {
            let Some((key, value)) = header.split_once(':') else {
                problems.push(Diagnostic::error(
                    location,
                    "bad-header",
                    format!("header '{line}' is not 'key: value'"),
                ));
                continue;
            };
            match key.trim() {
                "feed" => feed = value.trim().to_owned(),
                "tlp" => match value.parse::<Tlp>() {
                    Ok(t) => tlp = t,
                    Err(e) => problems.push(Diagnostic::error(location, "bad-tlp", e.to_string())),
                },
                other => problems.push(Diagnostic::warning(
                    location,
                    "unknown-header",
                    format!("unknown header '{other}' (known: feed, tlp)"),
                )),
            }
            continue;
        }
        let line = line.split(" #").next().unwrap_or_default().trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (declared, value) = match line.split_once(|c: char| c == ':' || c.is_whitespace()) {
            Some((t, v)) if IndicatorType::parse(t).is_some() && !v.trim().is_empty() => {
                (IndicatorType::parse(t), v.trim())
            }
            _ => (None, line),
        };
        let kind = match declared.or_else(|| infer_type(value)) {
            Some(k) => k,
            None => {
                problems.push(Diagnostic::error(
                    location,
                    "bad-indicator",
                    format!("cannot tell the type of '{value}'; write it as 'TYPE VALUE'"),
                ));
                continue;
            }
        };
        match normalise(kind, value) {
            Some(v) => out.push(Indicator {
                kind,
                value: v,
                feed: feed.clone(),
                tlp,
                source_id: None,
                valid_from: None,
                valid_until: None,
                confidence: None,
                tags: Vec::new(),
                location,
            }),
            None => problems.push(Diagnostic::error(
                location,
                "bad-indicator",
                format!("'{value}' is not a valid {}", kind.as_str()),
            )),
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_typed_and_untyped_lines() {
        let text = "#! feed: cert-x\n#! tlp: amber\n# comment\n203.0.113.7\nEvil.Example.\nsha256 ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789\ndomain: c2.test # trailing\n2001:db8::1\nnot a thing\nipv4 300.1.1.1\n";
        let (iocs, problems) = parse_plain_list("f.txt", text, "f");
        assert_eq!(iocs.len(), 5, "{iocs:?}");
        assert!(iocs
            .iter()
            .all(|i| i.feed == "cert-x" && i.tlp == Tlp::Amber));
        assert_eq!(iocs[1].value, "evil.example");
        assert_eq!(iocs[2].kind, IndicatorType::Sha256);
        assert!(iocs[2].value.starts_with("abcdef"));
        assert_eq!(iocs[3].value, "c2.test");
        assert_eq!(iocs[4].kind, IndicatorType::Ipv6);
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].location.line, 9);
        assert_eq!(problems[1].location.line, 10);
    }
}
