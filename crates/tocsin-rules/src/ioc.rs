//! Plain indicator lists: one indicator per line.
//!
//! The simplest feed a CSIRT can hand over: a text file of IP addresses, domains and file
//! hashes. Each line holds a value, optionally preceded by its type (`domain evil.example`,
//! `sha256:ab…`); without one, the type is inferred (IP address, 32/40/64/128 hex digits,
//! otherwise a domain). Header lines `#! feed: NAME` and `#! tlp: AMBER` set the feed's
//! name and TLP; other `#` lines and blank lines are comments. Values are normalised
//! (lower case; domains without a trailing dot) so that lookups are exact hash lookups.
//! Bad lines are reported with file:line and skipped; the rest loads.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
///
/// Feeds spell the same indicator many ways, and the matcher only does exact hash lookups, so
/// every value is brought to one canonical text here:
/// - IPv4/IPv6: the canonical address text; a CIDR range `address/prefix` keeps its prefix,
///   with the bits beyond it zeroed (`203.0.113.9/24` → `203.0.113.0/24`); a full-length
///   prefix (`/32`, `/128`) is the plain address.
/// - domains: IDNA to ASCII (punycode, UTS #46 mapping, so also lower case), no trailing dot.
/// - URLs: parsed as WHATWG URLs (scheme and host lower case, IDNA host, default ports
///   dropped, empty path → `/`, dot segments resolved), then percent-encoding normalised
///   (unreserved characters decoded, the hex of the rest in upper case). The path, query and
///   fragment keep their case: they are case-sensitive.
/// - hashes: lower-case hex of the algorithm's length.
/// - e-mail addresses: domain as above; the local part lower case too, because the matcher
///   compares lower-cased event values.
/// - file names: lower case, no path separators.
pub fn normalise(kind: IndicatorType, raw: &str) -> Option<String> {
    let v = raw.trim();
    match kind {
        IndicatorType::Ipv4 | IndicatorType::Ipv6 => normalise_ip(kind, v),
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
        IndicatorType::Domain => normalise_domain(v),
        IndicatorType::Url => normalise_url(v),
        IndicatorType::Email => {
            let (local, domain) = v.rsplit_once('@')?;
            let domain = normalise_domain(domain)?;
            (!local.is_empty() && !local.contains(char::is_whitespace))
                .then(|| format!("{}@{domain}", local.to_ascii_lowercase()))
        }
        IndicatorType::Filename => {
            (!v.is_empty() && !v.contains(['/', '\\'])).then(|| v.to_ascii_lowercase())
        }
    }
}

/// An address, or a CIDR range with its host bits zeroed, of the family `kind` names.
fn normalise_ip(kind: IndicatorType, v: &str) -> Option<String> {
    let (address, prefix) = match v.split_once('/') {
        Some((address, prefix)) => {
            // `u8::from_str` would accept `+8`; a prefix is plain digits.
            if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            (address, Some(prefix.parse::<u8>().ok()?))
        }
        None => (v, None),
    };
    match (kind, address.parse::<IpAddr>().ok()?) {
        (IndicatorType::Ipv4, IpAddr::V4(a)) => match prefix {
            None | Some(32) => Some(a.to_string()),
            Some(p) if p < 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
                Some(format!("{}/{p}", Ipv4Addr::from(u32::from(a) & mask)))
            }
            Some(_) => None,
        },
        (IndicatorType::Ipv6, IpAddr::V6(a)) => match prefix {
            None | Some(128) => Some(a.to_string()),
            Some(p) if p < 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
                Some(format!("{}/{p}", Ipv6Addr::from(u128::from(a) & mask)))
            }
            Some(_) => None,
        },
        _ => None,
    }
}

/// A host name as the DNS sees it: IDNA to ASCII, lower case, without the root's dot.
fn normalise_domain(v: &str) -> Option<String> {
    let v = v.strip_suffix('.').unwrap_or(v);
    // UTS #46 maps (lower case, full-width forms, ideographic full stops) and encodes
    // non-ASCII labels as punycode; it also rejects malformed `xn--` labels.
    let ascii = idna::domain_to_ascii_cow(v.as_bytes(), idna::AsciiDenyList::URL).ok()?;
    let d = ascii
        .strip_suffix('.')
        .unwrap_or(&ascii)
        .to_ascii_lowercase();
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

/// A URL in one canonical spelling (see [`normalise`]).
fn normalise_url(v: &str) -> Option<String> {
    // Indicator URLs name a network location; `mailto:x` or `data:…` are not matchable ones.
    if !v.contains("://") {
        return None;
    }
    let mut url = url::Url::parse(v).ok()?;
    // Special schemes (http, https, ftp, ws, wss, file) already have a lower-case, IDNA host;
    // other schemes keep an opaque host as written.
    if let Some(url::Host::Domain(host)) = url.host() {
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            let lower = host.to_ascii_lowercase();
            url.set_host(Some(&lower)).ok()?;
        }
    }
    let text = url.as_str();
    let path_at = url::Position::BeforePath;
    let mut out = String::with_capacity(text.len());
    out.push_str(&url[..path_at]);
    push_normalised_percent_encoding(&mut out, &url[path_at..]);
    Some(out)
}

/// Append `text` with every `%XX` of an unreserved character (RFC 3986 §2.3) decoded, every
/// other `%XX` in upper-case hex and every `%` that starts no escape written as `%25`, so that
/// equivalent URLs compare equal and a second normalisation changes nothing.
fn push_normalised_percent_encoding(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex_value(*h).zip(hex_value(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(byte) if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) => {
                out.push(char::from(byte));
                i += 3;
            }
            Some(byte) => {
                out.push_str(&format!("%{byte:02X}"));
                i += 3;
            }
            None if bytes[i] == b'%' => {
                // A `%` that starts no escape stands for itself. Written as `%25`, so that a
                // second pass cannot read it together with the text after it as an escape
                // (`%%330` → `%2530`, not `%30`, which would decode again to `0`).
                out.push_str("%25");
                i += 1;
            }
            None => {
                // Copy up to the next `%` in one piece; `%` is ASCII, so this never splits a
                // UTF-8 sequence.
                let next = text[i..].find('%').map_or(text.len(), |n| i + n);
                out.push_str(&text[i..next]);
                i = next;
            }
        }
    }
}

/// The value of one hex digit.
fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
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
