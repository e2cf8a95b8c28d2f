//! Country codes for the Member States (and other countries) an incident touches.
//!
//! NIS2 Art. 23(1), 23(6) and 23(8) turn on *which* Member States are affected:
//! two or more make an incident cross-border, and the single points of contact
//! of every affected Member State must be told. A warning therefore lists the
//! affected countries as ISO 3166-1 alpha-2 codes, the form STIX `location`
//! objects and IntelMQ's `*.geolocation.cc` fields use (`coordination.md` §1, §4).
//!
//! [`MemberState`] accepts any of the 249 officially assigned ISO 3166-1
//! alpha-2 codes, because incidents also reach third countries;
//! [`MemberState::is_eu`] tells the 27 EU Member States apart. The table below
//! is the list of assigned codes as shipped in Debian's `iso-codes` 4.15
//! (`iso_3166-1.json`), cross-checked against tzdata 2025b's `iso3166.tab`.
//! The EU's own usage `EL` (Greece) and `UK` (United Kingdom) is read as the
//! ISO codes `GR` and `GB`.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Every officially assigned ISO 3166-1 alpha-2 code, sorted for binary search.
const ASSIGNED_CODES: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// An ISO 3166-1 alpha-2 country code, validated against the assigned codes.
///
/// Always holds two upper-case ASCII letters that are an assigned code, so
/// [`MemberState::as_str`] and the ordering (alphabetical) are cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberState([u8; 2]);

impl MemberState {
    /// The 27 Member States of the European Union, sorted by code.
    pub const EU: [MemberState; 27] = [
        MemberState(*b"AT"),
        MemberState(*b"BE"),
        MemberState(*b"BG"),
        MemberState(*b"CY"),
        MemberState(*b"CZ"),
        MemberState(*b"DE"),
        MemberState(*b"DK"),
        MemberState(*b"EE"),
        MemberState(*b"ES"),
        MemberState(*b"FI"),
        MemberState(*b"FR"),
        MemberState(*b"GR"),
        MemberState(*b"HR"),
        MemberState(*b"HU"),
        MemberState(*b"IE"),
        MemberState(*b"IT"),
        MemberState(*b"LT"),
        MemberState(*b"LU"),
        MemberState(*b"LV"),
        MemberState(*b"MT"),
        MemberState(*b"NL"),
        MemberState(*b"PL"),
        MemberState(*b"PT"),
        MemberState(*b"RO"),
        MemberState(*b"SE"),
        MemberState(*b"SI"),
        MemberState(*b"SK"),
    ];

    /// The two-letter code, e.g. `"DE"`.
    pub fn as_str(&self) -> &str {
        // The field only ever holds two ASCII capitals (see `from_str`), so
        // this never falls back; the fallback keeps the accessor panic-free.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// True for the 27 Member States of the European Union.
    pub fn is_eu(&self) -> bool {
        MemberState::EU.binary_search(self).is_ok()
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for text that is not an assigned ISO 3166-1 alpha-2 code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an assigned ISO 3166-1 alpha-2 country code (such as DE or FR)")]
pub struct InvalidMemberState(pub String);

impl FromStr for MemberState {
    type Err = InvalidMemberState;

    /// Parses a two-letter code: trimmed, case-insensitive, with the EU
    /// spellings `EL` → `GR` and `UK` → `GB`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidMemberState(text.to_owned());
        let code = match text.trim().as_bytes() {
            &[first, second] if first.is_ascii_alphabetic() && second.is_ascii_alphabetic() => {
                [first.to_ascii_uppercase(), second.to_ascii_uppercase()]
            }
            _ => return Err(invalid()),
        };
        let code = match &code {
            b"EL" => *b"GR",
            b"UK" => *b"GB",
            _ => code,
        };
        ASSIGNED_CODES
            .binary_search_by(|assigned| assigned.as_bytes().cmp(&code[..]))
            .map(|_| MemberState(code))
            .map_err(|_| invalid())
    }
}

impl Serialize for MemberState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MemberState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(MemberStateVisitor)
    }
}

/// Deserializes a country code through `FromStr`, without allocating for it.
struct MemberStateVisitor;

impl Visitor<'_> for MemberStateVisitor {
    type Value = MemberState;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an ISO 3166-1 alpha-2 country code such as \"DE\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<MemberState, E> {
        text.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(code: &str) -> MemberState {
        code.parse().expect("test codes are valid")
    }

    #[test]
    fn table_is_sorted_unique_and_two_capitals_each() {
        assert!(ASSIGNED_CODES.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(ASSIGNED_CODES
            .iter()
            .all(|code| code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase())));
    }

    #[test]
    fn every_assigned_code_round_trips() {
        for code in ASSIGNED_CODES {
            let parsed = state(code);
            assert_eq!(parsed.as_str(), code);
            assert_eq!(parsed.to_string(), code);
            let json = serde_json::to_string(&parsed).expect("serialize");
            assert_eq!(json, format!("\"{code}\""));
            let back: MemberState = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, parsed);
        }
    }

    #[test]
    fn eu_has_the_27_member_states_sorted_and_assigned() {
        assert!(MemberState::EU.windows(2).all(|pair| pair[0] < pair[1]));
        for member in MemberState::EU {
            assert_eq!(state(member.as_str()), member);
            assert!(member.is_eu());
        }
        let assigned_eu = ASSIGNED_CODES
            .iter()
            .filter(|code| state(code).is_eu())
            .count();
        assert_eq!(assigned_eu, 27);
    }

    #[test]
    fn is_eu_excludes_other_european_countries() {
        for code in ["GB", "CH", "NO", "IS", "LI", "UA", "RS", "US"] {
            assert!(!state(code).is_eu(), "{code}");
        }
        for code in ["DE", "FR", "GR", "CY", "MT", "HR"] {
            assert!(state(code).is_eu(), "{code}");
        }
    }

    #[test]
    fn parsing_trims_and_upper_cases() {
        assert_eq!(state(" de "), state("DE"));
        assert_eq!(state("fR"), state("FR"));
        assert_eq!(state("\tit\n").as_str(), "IT");
    }

    #[test]
    fn eu_spellings_el_and_uk_map_to_iso() {
        assert_eq!(state("EL").as_str(), "GR");
        assert_eq!(state("el").as_str(), "GR");
        assert_eq!(state("UK").as_str(), "GB");
        assert!(state("EL").is_eu());
        assert!(!state("uk").is_eu());
    }

    #[test]
    fn unassigned_and_malformed_codes_are_rejected() {
        for text in [
            "", " ", "D", "DEU", "XX", "ZZ", "EU", "XK", "AA", "D1", "1D", "É", "DE,FR", "D E",
        ] {
            assert_eq!(
                text.parse::<MemberState>(),
                Err(InvalidMemberState(text.to_owned())),
                "{text:?}"
            );
        }
        let message = InvalidMemberState("XX".into()).to_string();
        assert!(message.contains("ISO 3166-1 alpha-2"), "{message}");
    }

    #[test]
    fn json_rejects_invalid_codes_with_a_clear_message() {
        let error = serde_json::from_str::<MemberState>("\"XX\"").expect_err("must fail");
        assert!(error.to_string().contains("ISO 3166-1 alpha-2"), "{error}");
        assert!(serde_json::from_str::<MemberState>("7").is_err());
    }

    #[test]
    fn ordering_is_alphabetical() {
        assert!(state("AT") < state("BE"));
        assert!(state("DE") < state("DK"));
    }
}
