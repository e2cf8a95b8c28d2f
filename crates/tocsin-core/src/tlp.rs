//! Traffic Light Protocol 2.0: who may see a piece of information.
//!
//! Every input and every warning carries a TLP label, and Tocsin enforces it:
//! a correlated incident inherits the most restrictive label of its inputs,
//! and a consumer never receives anything above its clearance
//! (`coordination.md` §3, "Rules for Tocsin").
//!
//! The labels and their order come from FIRST's TLP 2.0 standard
//! (<https://www.first.org/tlp/>), authoritative since August 2022: CLEAR,
//! GREEN, AMBER, AMBER+STRICT, RED; CLEAR replaces TLP 1.0's WHITE. The MISP
//! tags come from `MISP/misp-taxonomies:tlp/machinetag.json`. TLP 2.0 is not
//! predefined in STIX 2.1: the marking-definition ids below come from
//! `oasis-open/cti-stix-common-objects:extension-definition-specifications/tlp-2.0/marking-definition.json`,
//! and a bundle that refers to them must carry the marking-definition objects.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The id of the STIX 2.1 extension definition that the TLP 2.0 markings use.
pub const STIX_TLP_2_0_EXTENSION_ID: &str =
    "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d";

/// The `created` timestamp of the five TLP 2.0 STIX marking-definition objects.
pub const STIX_TLP_2_0_CREATED: &str = "2022-10-01T00:00:00.000Z";

/// A TLP 2.0 label, ordered from least (`Clear`) to most (`Red`) restrictive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Tlp {
    /// TLP:CLEAR: no limit on disclosure (formerly TLP:WHITE).
    #[default]
    Clear,
    /// TLP:GREEN: the recipient's community, not via public channels.
    Green,
    /// TLP:AMBER: need-to-know within the recipient's organisation and its clients.
    Amber,
    /// TLP:AMBER+STRICT: need-to-know within the recipient's organisation only.
    AmberStrict,
    /// TLP:RED: the individual recipients only.
    Red,
}

impl Tlp {
    /// Every label, from least to most restrictive.
    pub const ALL: [Tlp; 5] = [
        Tlp::Clear,
        Tlp::Green,
        Tlp::Amber,
        Tlp::AmberStrict,
        Tlp::Red,
    ];

    /// The label as FIRST writes it, without the `TLP:` prefix, e.g. `"AMBER+STRICT"`.
    pub const fn label(self) -> &'static str {
        match self {
            Tlp::Clear => "CLEAR",
            Tlp::Green => "GREEN",
            Tlp::Amber => "AMBER",
            Tlp::AmberStrict => "AMBER+STRICT",
            Tlp::Red => "RED",
        }
    }

    /// The MISP tag, e.g. `"tlp:amber+strict"`.
    pub const fn misp_tag(self) -> &'static str {
        match self {
            Tlp::Clear => "tlp:clear",
            Tlp::Green => "tlp:green",
            Tlp::Amber => "tlp:amber",
            Tlp::AmberStrict => "tlp:amber+strict",
            Tlp::Red => "tlp:red",
        }
    }

    /// The id of the STIX 2.1 TLP 2.0 marking-definition object for this label.
    pub const fn stix_marking_id(self) -> &'static str {
        match self {
            Tlp::Clear => "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
            Tlp::Green => "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
            Tlp::Amber => "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
            Tlp::AmberStrict => "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
            Tlp::Red => "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
        }
    }

    /// The `tlp_2_0` value inside the STIX marking's extension, e.g. `"amber+strict"`.
    pub const fn stix_tlp_2_0_value(self) -> &'static str {
        match self {
            Tlp::Clear => "clear",
            Tlp::Green => "green",
            Tlp::Amber => "amber",
            Tlp::AmberStrict => "amber+strict",
            Tlp::Red => "red",
        }
    }

    /// The more restrictive of two labels: what a combination of both inherits.
    pub fn most_restrictive(a: Tlp, b: Tlp) -> Tlp {
        a.max(b)
    }

    /// True when information marked `self` may go to an audience cleared up
    /// to `ceiling`, that is when `self` is no more restrictive than `ceiling`.
    pub fn permits(self, ceiling: Tlp) -> bool {
        self <= ceiling
    }
}

impl fmt::Display for Tlp {
    /// Writes the full label, e.g. `TLP:AMBER+STRICT`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLP:{}", self.label())
    }
}

/// The error for text that is not a TLP 2.0 label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a TLP 2.0 label (expected CLEAR, GREEN, AMBER, AMBER+STRICT or RED, \
     optionally prefixed with TLP:)"
)]
pub struct UnknownTlp(pub String);

/// The spellings `Tlp::from_str` accepts after the optional `TLP:` prefix.
const TLP_SPELLINGS: [(&str, Tlp); 8] = [
    ("CLEAR", Tlp::Clear),
    ("WHITE", Tlp::Clear),
    ("GREEN", Tlp::Green),
    ("AMBER", Tlp::Amber),
    ("AMBER+STRICT", Tlp::AmberStrict),
    ("AMBER_STRICT", Tlp::AmberStrict),
    ("AMBER-STRICT", Tlp::AmberStrict),
    ("RED", Tlp::Red),
];

impl FromStr for Tlp {
    type Err = UnknownTlp;

    /// Parses a label case-insensitively, with an optional `TLP:` prefix.
    /// Also accepts TLP 1.0's `WHITE` (as `Clear`) and the spellings
    /// `AMBER_STRICT` and `AMBER-STRICT`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let label = match trimmed.split_at_checked(4) {
            Some((prefix, rest)) if prefix.eq_ignore_ascii_case("tlp:") => rest.trim_start(),
            _ => trimmed,
        };
        TLP_SPELLINGS
            .iter()
            .find(|(spelling, _)| spelling.eq_ignore_ascii_case(label))
            .map(|&(_, tlp)| tlp)
            .ok_or_else(|| UnknownTlp(text.to_owned()))
    }
}

impl Serialize for Tlp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.label())
    }
}

impl<'de> Deserialize<'de> for Tlp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TlpVisitor)
    }
}

/// Deserializes a TLP label through `FromStr`, without allocating for it.
struct TlpVisitor;

impl Visitor<'_> for TlpVisitor {
    type Value = Tlp;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a TLP 2.0 label such as \"AMBER\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Tlp, E> {
        text.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stix_marking_ids_are_the_tlp_2_0_ones() {
        // Pinned from cti-stix-common-objects; wrong ids circulate (e.g. the
        // TLP 1.0 WHITE id 613f2e26-... given for CLEAR).
        assert_eq!(
            Tlp::Clear.stix_marking_id(),
            "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"
        );
        assert_eq!(
            Tlp::Green.stix_marking_id(),
            "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
        );
        assert_eq!(
            Tlp::Amber.stix_marking_id(),
            "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
        );
        assert_eq!(
            Tlp::AmberStrict.stix_marking_id(),
            "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"
        );
        assert_eq!(
            Tlp::Red.stix_marking_id(),
            "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"
        );
        assert_eq!(
            STIX_TLP_2_0_EXTENSION_ID,
            "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
        );
    }

    #[test]
    fn labels_run_from_least_to_most_restrictive() {
        assert!(Tlp::Clear < Tlp::Green);
        assert!(Tlp::Green < Tlp::Amber);
        assert!(Tlp::Amber < Tlp::AmberStrict);
        assert!(Tlp::AmberStrict < Tlp::Red);
        assert!(Tlp::ALL.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(Tlp::default(), Tlp::Clear);
    }

    #[test]
    fn most_restrictive_wins() {
        assert_eq!(Tlp::most_restrictive(Tlp::Green, Tlp::Red), Tlp::Red);
        assert_eq!(
            Tlp::most_restrictive(Tlp::AmberStrict, Tlp::Amber),
            Tlp::AmberStrict
        );
        assert_eq!(Tlp::most_restrictive(Tlp::Clear, Tlp::Clear), Tlp::Clear);
    }

    #[test]
    fn permits_allows_only_up_to_the_ceiling() {
        assert!(Tlp::Green.permits(Tlp::Amber));
        assert!(Tlp::Amber.permits(Tlp::Amber));
        assert!(!Tlp::AmberStrict.permits(Tlp::Amber));
        assert!(!Tlp::Red.permits(Tlp::Green));
        assert!(Tlp::ALL.iter().all(|tlp| tlp.permits(Tlp::Red)));
        assert!(Tlp::ALL.iter().all(|tlp| Tlp::Clear.permits(*tlp)));
    }

    #[test]
    fn labels_tags_and_display() {
        let expected = [
            (Tlp::Clear, "CLEAR", "tlp:clear", "TLP:CLEAR"),
            (Tlp::Green, "GREEN", "tlp:green", "TLP:GREEN"),
            (Tlp::Amber, "AMBER", "tlp:amber", "TLP:AMBER"),
            (
                Tlp::AmberStrict,
                "AMBER+STRICT",
                "tlp:amber+strict",
                "TLP:AMBER+STRICT",
            ),
            (Tlp::Red, "RED", "tlp:red", "TLP:RED"),
        ];
        for (tlp, label, tag, display) in expected {
            assert_eq!(tlp.label(), label);
            assert_eq!(tlp.misp_tag(), tag);
            assert_eq!(tlp.to_string(), display);
            assert_eq!(format!("tlp:{}", tlp.stix_tlp_2_0_value()), tag);
        }
    }

    #[test]
    fn every_label_round_trips_through_text_and_json() {
        for tlp in Tlp::ALL {
            assert_eq!(tlp.label().parse(), Ok(tlp));
            assert_eq!(tlp.to_string().parse(), Ok(tlp));
            assert_eq!(tlp.misp_tag().parse(), Ok(tlp));
            let json = serde_json::to_string(&tlp).expect("serialize");
            assert_eq!(json, format!("\"{}\"", tlp.label()));
            let back: Tlp = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, tlp);
        }
        assert_eq!(
            serde_json::to_string(&Tlp::AmberStrict).expect("serialize"),
            "\"AMBER+STRICT\""
        );
    }

    #[test]
    fn parsing_accepts_prefixes_case_and_legacy_spellings() {
        let cases = [
            ("white", Tlp::Clear),
            ("TLP:WHITE", Tlp::Clear),
            ("tlp:clear", Tlp::Clear),
            (" TLP: green ", Tlp::Green),
            ("Amber", Tlp::Amber),
            ("AMBER+STRICT", Tlp::AmberStrict),
            ("amber_strict", Tlp::AmberStrict),
            ("amber-strict", Tlp::AmberStrict),
            ("TLP:Amber-Strict", Tlp::AmberStrict),
            ("tlp:RED", Tlp::Red),
        ];
        for (text, tlp) in cases {
            assert_eq!(text.parse(), Ok(tlp), "{text:?}");
        }
    }

    #[test]
    fn unknown_labels_are_rejected() {
        for text in [
            "",
            "TLP:",
            "yellow",
            "tlp:unclear",
            "tlp:ex:chr",
            "AMBER STRICT",
            "TLP:TLP:RED",
            "PAP:RED",
            "rouge",
        ] {
            assert_eq!(
                text.parse::<Tlp>(),
                Err(UnknownTlp(text.to_owned())),
                "{text:?}"
            );
        }
        let error = serde_json::from_str::<Tlp>("\"YELLOW\"").expect_err("must fail");
        assert!(error.to_string().contains("not a TLP 2.0 label"), "{error}");
    }

    #[test]
    fn parsing_multibyte_input_does_not_panic() {
        // The prefix check must not slice through a multi-byte character.
        for text in ["tlé:RED", "ééé", "TLP\u{e9}RED"] {
            assert!(text.parse::<Tlp>().is_err(), "{text:?}");
        }
    }
}
