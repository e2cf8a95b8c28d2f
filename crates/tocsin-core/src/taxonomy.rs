//! The Reference Security Incident Taxonomy (RSIT): what kind of incident this is.
//!
//! CSIRTs exchange incidents classified by RSIT, the taxonomy of ENISA and the
//! TF-CSIRT working group; MISP tags it as `rsit:<class>="<type>"` and IntelMQ
//! stores it in `classification.taxonomy` / `classification.type`. A warning
//! carries one RSIT class and type (`coordination.md` §2.1 and §7).
//!
//! The classes, types, machine values and display names are those of RSIT
//! version 1003, as published in `MISP/misp-taxonomies:rsit/machinetag.json`
//! (namespace `rsit`, version 1003) and
//! `enisaeu/Reference-Security-Incident-Taxonomy-Task-Force`. The machine value
//! and the display name differ in several places (`ids-alert` is "Exploitation
//! of Known Vulnerabilities", `scanner` is "Scanning"): slugs are for machines,
//! display names for people.
//!
//! Parsing also accepts IntelMQ's spellings (`c2server`, `c&c`, `botnet drone`,
//! values with spaces, `unauthorized-…` with a z) and the legacy IntelMQ types
//! that have a single RSIT counterpart, so feeds from IntelMQ can be read
//! as they are; Tocsin always writes the RSIT machine values.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// An RSIT class (the first column of the taxonomy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaxonomyClass {
    /// `abusive-content`: Abusive Content.
    AbusiveContent,
    /// `malicious-code`: Malicious Code.
    MaliciousCode,
    /// `information-gathering`: Information Gathering.
    InformationGathering,
    /// `intrusion-attempts`: Intrusion Attempts.
    IntrusionAttempts,
    /// `intrusions`: Intrusions.
    Intrusions,
    /// `availability`: Availability.
    Availability,
    /// `information-content-security`: Information Content Security.
    InformationContentSecurity,
    /// `fraud`: Fraud.
    Fraud,
    /// `vulnerable`: Vulnerable.
    Vulnerable,
    /// `other`: Other.
    Other,
    /// `test`: Test.
    Test,
}

impl TaxonomyClass {
    /// Every class, in the order of the taxonomy.
    pub const ALL: [TaxonomyClass; 11] = [
        TaxonomyClass::AbusiveContent,
        TaxonomyClass::MaliciousCode,
        TaxonomyClass::InformationGathering,
        TaxonomyClass::IntrusionAttempts,
        TaxonomyClass::Intrusions,
        TaxonomyClass::Availability,
        TaxonomyClass::InformationContentSecurity,
        TaxonomyClass::Fraud,
        TaxonomyClass::Vulnerable,
        TaxonomyClass::Other,
        TaxonomyClass::Test,
    ];

    /// The RSIT machine value (the MISP predicate), e.g. `"malicious-code"`.
    pub const fn slug(self) -> &'static str {
        match self {
            TaxonomyClass::AbusiveContent => "abusive-content",
            TaxonomyClass::MaliciousCode => "malicious-code",
            TaxonomyClass::InformationGathering => "information-gathering",
            TaxonomyClass::IntrusionAttempts => "intrusion-attempts",
            TaxonomyClass::Intrusions => "intrusions",
            TaxonomyClass::Availability => "availability",
            TaxonomyClass::InformationContentSecurity => "information-content-security",
            TaxonomyClass::Fraud => "fraud",
            TaxonomyClass::Vulnerable => "vulnerable",
            TaxonomyClass::Other => "other",
            TaxonomyClass::Test => "test",
        }
    }

    /// The RSIT display name, e.g. `"Malicious Code"`.
    pub const fn display_name(self) -> &'static str {
        match self {
            TaxonomyClass::AbusiveContent => "Abusive Content",
            TaxonomyClass::MaliciousCode => "Malicious Code",
            TaxonomyClass::InformationGathering => "Information Gathering",
            TaxonomyClass::IntrusionAttempts => "Intrusion Attempts",
            TaxonomyClass::Intrusions => "Intrusions",
            TaxonomyClass::Availability => "Availability",
            TaxonomyClass::InformationContentSecurity => "Information Content Security",
            TaxonomyClass::Fraud => "Fraud",
            TaxonomyClass::Vulnerable => "Vulnerable",
            TaxonomyClass::Other => "Other",
            TaxonomyClass::Test => "Test",
        }
    }

    /// The types of this class, in the order of the taxonomy.
    pub const fn types(self) -> &'static [TaxonomyType] {
        use TaxonomyType as T;
        match self {
            TaxonomyClass::AbusiveContent => &[T::Spam, T::HarmfulSpeech, T::Violence],
            TaxonomyClass::MaliciousCode => &[
                T::InfectedSystem,
                T::C2Server,
                T::MalwareDistribution,
                T::MalwareConfiguration,
            ],
            TaxonomyClass::InformationGathering => &[T::Scanner, T::Sniffing, T::SocialEngineering],
            TaxonomyClass::IntrusionAttempts => &[T::IdsAlert, T::BruteForce, T::Exploit],
            TaxonomyClass::Intrusions => &[
                T::PrivilegedAccountCompromise,
                T::UnprivilegedAccountCompromise,
                T::ApplicationCompromise,
                T::SystemCompromise,
                T::Burglary,
            ],
            TaxonomyClass::Availability => {
                &[T::Dos, T::Ddos, T::Misconfiguration, T::Sabotage, T::Outage]
            }
            TaxonomyClass::InformationContentSecurity => &[
                T::UnauthorisedInformationAccess,
                T::UnauthorisedInformationModification,
                T::DataLoss,
                T::DataLeak,
            ],
            TaxonomyClass::Fraud => &[
                T::UnauthorisedUseOfResources,
                T::Copyright,
                T::Masquerade,
                T::Phishing,
            ],
            TaxonomyClass::Vulnerable => &[
                T::WeakCrypto,
                T::DdosAmplifier,
                T::PotentiallyUnwantedAccessible,
                T::InformationDisclosure,
                T::VulnerableSystem,
            ],
            TaxonomyClass::Other => &[T::Other, T::Undetermined],
            TaxonomyClass::Test => &[T::Test],
        }
    }
}

impl fmt::Display for TaxonomyClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// An RSIT type (the second column of the taxonomy); each belongs to one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaxonomyType {
    /// `spam`: Spam.
    Spam,
    /// `harmful-speech`: Harmful Speech.
    HarmfulSpeech,
    /// `violence`: (Child) Sexual Exploitation/Sexual/Violent Content.
    Violence,
    /// `infected-system`: Infected System.
    InfectedSystem,
    /// `c2-server`: C2 Server.
    C2Server,
    /// `malware-distribution`: Malware Distribution.
    MalwareDistribution,
    /// `malware-configuration`: Malware Configuration.
    MalwareConfiguration,
    /// `scanner`: Scanning.
    Scanner,
    /// `sniffing`: Sniffing.
    Sniffing,
    /// `social-engineering`: Social Engineering.
    SocialEngineering,
    /// `ids-alert`: Exploitation of Known Vulnerabilities.
    IdsAlert,
    /// `brute-force`: Login Attempts.
    BruteForce,
    /// `exploit`: New Attack Signature.
    Exploit,
    /// `privileged-account-compromise`: Privileged Account Compromise.
    PrivilegedAccountCompromise,
    /// `unprivileged-account-compromise`: Unprivileged Account Compromise.
    UnprivilegedAccountCompromise,
    /// `application-compromise`: Application Compromise.
    ApplicationCompromise,
    /// `system-compromise`: System Compromise.
    SystemCompromise,
    /// `burglary`: Burglary.
    Burglary,
    /// `dos`: Denial of Service.
    Dos,
    /// `ddos`: Distributed Denial of Service.
    Ddos,
    /// `misconfiguration`: Misconfiguration.
    Misconfiguration,
    /// `sabotage`: Sabotage.
    Sabotage,
    /// `outage`: Outage.
    Outage,
    /// `unauthorised-information-access`: Unauthorised Access to Information.
    UnauthorisedInformationAccess,
    /// `unauthorised-information-modification`: Unauthorised Modification of Information.
    UnauthorisedInformationModification,
    /// `data-loss`: Data Loss.
    DataLoss,
    /// `data-leak`: Leak of Confidential Information.
    DataLeak,
    /// `unauthorised-use-of-resources`: Unauthorised Use of Resources.
    UnauthorisedUseOfResources,
    /// `copyright`: Copyright.
    Copyright,
    /// `masquerade`: Masquerade.
    Masquerade,
    /// `phishing`: Phishing.
    Phishing,
    /// `weak-crypto`: Weak Cryptography.
    WeakCrypto,
    /// `ddos-amplifier`: DDoS Amplifier.
    DdosAmplifier,
    /// `potentially-unwanted-accessible`: Potentially Unwanted Accessible Services.
    PotentiallyUnwantedAccessible,
    /// `information-disclosure`: Information disclosure.
    InformationDisclosure,
    /// `vulnerable-system`: Vulnerable System.
    VulnerableSystem,
    /// `other` (class other): Uncategorised.
    Other,
    /// `undetermined` (class other): Undetermined.
    Undetermined,
    /// `test`: Test.
    Test,
}

/// Spellings accepted by `TaxonomyType::from_str` besides the RSIT machine
/// values, already folded (lower case, `-` for `_` and space). They are
/// IntelMQ's spellings and its legacy types with a single RSIT counterpart
/// (`intelmq/lib/harmonization.py`, `ClassificationType`), and the American
/// `unauthorized-…` spellings of RSIT before 1003.
const TYPE_ALIASES: [(&str, TaxonomyType); 16] = [
    ("c2server", TaxonomyType::C2Server),
    ("c&c", TaxonomyType::C2Server),
    ("botnet-drone", TaxonomyType::InfectedSystem),
    ("ransomware", TaxonomyType::InfectedSystem),
    ("compromised", TaxonomyType::SystemCompromise),
    ("backdoor", TaxonomyType::SystemCompromise),
    ("unauthorized-login", TaxonomyType::SystemCompromise),
    ("unauthorized-command", TaxonomyType::SystemCompromise),
    (
        "defacement",
        TaxonomyType::UnauthorisedInformationModification,
    ),
    ("leak", TaxonomyType::DataLeak),
    ("vulnerable-service", TaxonomyType::VulnerableSystem),
    ("vulnerable-client", TaxonomyType::VulnerableSystem),
    ("unknown", TaxonomyType::Undetermined),
    (
        "unauthorized-information-access",
        TaxonomyType::UnauthorisedInformationAccess,
    ),
    (
        "unauthorized-information-modification",
        TaxonomyType::UnauthorisedInformationModification,
    ),
    (
        "unauthorized-use-of-resources",
        TaxonomyType::UnauthorisedUseOfResources,
    ),
];

impl TaxonomyType {
    /// Every type, grouped by class in the order of the taxonomy.
    pub const ALL: [TaxonomyType; 39] = [
        TaxonomyType::Spam,
        TaxonomyType::HarmfulSpeech,
        TaxonomyType::Violence,
        TaxonomyType::InfectedSystem,
        TaxonomyType::C2Server,
        TaxonomyType::MalwareDistribution,
        TaxonomyType::MalwareConfiguration,
        TaxonomyType::Scanner,
        TaxonomyType::Sniffing,
        TaxonomyType::SocialEngineering,
        TaxonomyType::IdsAlert,
        TaxonomyType::BruteForce,
        TaxonomyType::Exploit,
        TaxonomyType::PrivilegedAccountCompromise,
        TaxonomyType::UnprivilegedAccountCompromise,
        TaxonomyType::ApplicationCompromise,
        TaxonomyType::SystemCompromise,
        TaxonomyType::Burglary,
        TaxonomyType::Dos,
        TaxonomyType::Ddos,
        TaxonomyType::Misconfiguration,
        TaxonomyType::Sabotage,
        TaxonomyType::Outage,
        TaxonomyType::UnauthorisedInformationAccess,
        TaxonomyType::UnauthorisedInformationModification,
        TaxonomyType::DataLoss,
        TaxonomyType::DataLeak,
        TaxonomyType::UnauthorisedUseOfResources,
        TaxonomyType::Copyright,
        TaxonomyType::Masquerade,
        TaxonomyType::Phishing,
        TaxonomyType::WeakCrypto,
        TaxonomyType::DdosAmplifier,
        TaxonomyType::PotentiallyUnwantedAccessible,
        TaxonomyType::InformationDisclosure,
        TaxonomyType::VulnerableSystem,
        TaxonomyType::Other,
        TaxonomyType::Undetermined,
        TaxonomyType::Test,
    ];

    /// The RSIT machine value (the MISP tag value), e.g. `"c2-server"`.
    pub const fn slug(self) -> &'static str {
        match self {
            TaxonomyType::Spam => "spam",
            TaxonomyType::HarmfulSpeech => "harmful-speech",
            TaxonomyType::Violence => "violence",
            TaxonomyType::InfectedSystem => "infected-system",
            TaxonomyType::C2Server => "c2-server",
            TaxonomyType::MalwareDistribution => "malware-distribution",
            TaxonomyType::MalwareConfiguration => "malware-configuration",
            TaxonomyType::Scanner => "scanner",
            TaxonomyType::Sniffing => "sniffing",
            TaxonomyType::SocialEngineering => "social-engineering",
            TaxonomyType::IdsAlert => "ids-alert",
            TaxonomyType::BruteForce => "brute-force",
            TaxonomyType::Exploit => "exploit",
            TaxonomyType::PrivilegedAccountCompromise => "privileged-account-compromise",
            TaxonomyType::UnprivilegedAccountCompromise => "unprivileged-account-compromise",
            TaxonomyType::ApplicationCompromise => "application-compromise",
            TaxonomyType::SystemCompromise => "system-compromise",
            TaxonomyType::Burglary => "burglary",
            TaxonomyType::Dos => "dos",
            TaxonomyType::Ddos => "ddos",
            TaxonomyType::Misconfiguration => "misconfiguration",
            TaxonomyType::Sabotage => "sabotage",
            TaxonomyType::Outage => "outage",
            TaxonomyType::UnauthorisedInformationAccess => "unauthorised-information-access",
            TaxonomyType::UnauthorisedInformationModification => {
                "unauthorised-information-modification"
            }
            TaxonomyType::DataLoss => "data-loss",
            TaxonomyType::DataLeak => "data-leak",
            TaxonomyType::UnauthorisedUseOfResources => "unauthorised-use-of-resources",
            TaxonomyType::Copyright => "copyright",
            TaxonomyType::Masquerade => "masquerade",
            TaxonomyType::Phishing => "phishing",
            TaxonomyType::WeakCrypto => "weak-crypto",
            TaxonomyType::DdosAmplifier => "ddos-amplifier",
            TaxonomyType::PotentiallyUnwantedAccessible => "potentially-unwanted-accessible",
            TaxonomyType::InformationDisclosure => "information-disclosure",
            TaxonomyType::VulnerableSystem => "vulnerable-system",
            TaxonomyType::Other => "other",
            TaxonomyType::Undetermined => "undetermined",
            TaxonomyType::Test => "test",
        }
    }

    /// The RSIT display name, e.g. `"Exploitation of Known Vulnerabilities"`
    /// for `ids-alert`.
    pub const fn display_name(self) -> &'static str {
        match self {
            TaxonomyType::Spam => "Spam",
            TaxonomyType::HarmfulSpeech => "Harmful Speech",
            TaxonomyType::Violence => "(Child) Sexual Exploitation/Sexual/Violent Content",
            TaxonomyType::InfectedSystem => "Infected System",
            TaxonomyType::C2Server => "C2 Server",
            TaxonomyType::MalwareDistribution => "Malware Distribution",
            TaxonomyType::MalwareConfiguration => "Malware Configuration",
            TaxonomyType::Scanner => "Scanning",
            TaxonomyType::Sniffing => "Sniffing",
            TaxonomyType::SocialEngineering => "Social Engineering",
            TaxonomyType::IdsAlert => "Exploitation of Known Vulnerabilities",
            TaxonomyType::BruteForce => "Login Attempts",
            TaxonomyType::Exploit => "New Attack Signature",
            TaxonomyType::PrivilegedAccountCompromise => "Privileged Account Compromise",
            TaxonomyType::UnprivilegedAccountCompromise => "Unprivileged Account Compromise",
            TaxonomyType::ApplicationCompromise => "Application Compromise",
            TaxonomyType::SystemCompromise => "System Compromise",
            TaxonomyType::Burglary => "Burglary",
            TaxonomyType::Dos => "Denial of Service",
            TaxonomyType::Ddos => "Distributed Denial of Service",
            TaxonomyType::Misconfiguration => "Misconfiguration",
            TaxonomyType::Sabotage => "Sabotage",
            TaxonomyType::Outage => "Outage",
            TaxonomyType::UnauthorisedInformationAccess => "Unauthorised Access to Information",
            TaxonomyType::UnauthorisedInformationModification => {
                "Unauthorised Modification of Information"
            }
            TaxonomyType::DataLoss => "Data Loss",
            TaxonomyType::DataLeak => "Leak of Confidential Information",
            TaxonomyType::UnauthorisedUseOfResources => "Unauthorised Use of Resources",
            TaxonomyType::Copyright => "Copyright",
            TaxonomyType::Masquerade => "Masquerade",
            TaxonomyType::Phishing => "Phishing",
            TaxonomyType::WeakCrypto => "Weak Cryptography",
            TaxonomyType::DdosAmplifier => "DDoS Amplifier",
            TaxonomyType::PotentiallyUnwantedAccessible => {
                "Potentially Unwanted Accessible Services"
            }
            TaxonomyType::InformationDisclosure => "Information disclosure",
            TaxonomyType::VulnerableSystem => "Vulnerable System",
            TaxonomyType::Other => "Uncategorised",
            TaxonomyType::Undetermined => "Undetermined",
            TaxonomyType::Test => "Test",
        }
    }

    /// The class this type belongs to.
    pub const fn class(self) -> TaxonomyClass {
        use TaxonomyType as T;
        match self {
            T::Spam | T::HarmfulSpeech | T::Violence => TaxonomyClass::AbusiveContent,
            T::InfectedSystem | T::C2Server | T::MalwareDistribution | T::MalwareConfiguration => {
                TaxonomyClass::MaliciousCode
            }
            T::Scanner | T::Sniffing | T::SocialEngineering => TaxonomyClass::InformationGathering,
            T::IdsAlert | T::BruteForce | T::Exploit => TaxonomyClass::IntrusionAttempts,
            T::PrivilegedAccountCompromise
            | T::UnprivilegedAccountCompromise
            | T::ApplicationCompromise
            | T::SystemCompromise
            | T::Burglary => TaxonomyClass::Intrusions,
            T::Dos | T::Ddos | T::Misconfiguration | T::Sabotage | T::Outage => {
                TaxonomyClass::Availability
            }
            T::UnauthorisedInformationAccess
            | T::UnauthorisedInformationModification
            | T::DataLoss
            | T::DataLeak => TaxonomyClass::InformationContentSecurity,
            T::UnauthorisedUseOfResources | T::Copyright | T::Masquerade | T::Phishing => {
                TaxonomyClass::Fraud
            }
            T::WeakCrypto
            | T::DdosAmplifier
            | T::PotentiallyUnwantedAccessible
            | T::InformationDisclosure
            | T::VulnerableSystem => TaxonomyClass::Vulnerable,
            T::Other | T::Undetermined => TaxonomyClass::Other,
            T::Test => TaxonomyClass::Test,
        }
    }
}

impl fmt::Display for TaxonomyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// The error for text that names no RSIT class or type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an RSIT (Reference Security Incident Taxonomy) class or type")]
pub struct UnknownTaxonomy(pub String);

/// The error for an RSIT type given with a class it does not belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("RSIT type `{kind}` belongs to class `{}`, not `{class}`", kind.class())]
pub struct TaxonomyMismatch {
    /// The class that was given.
    pub class: TaxonomyClass,
    /// The type that was given, which belongs to another class.
    pub kind: TaxonomyType,
}

/// The error for text that is not a valid RSIT classification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseTaxonomyError {
    /// A class or type that RSIT does not have.
    #[error(transparent)]
    Unknown(#[from] UnknownTaxonomy),
    /// A type paired with the wrong class.
    #[error(transparent)]
    Mismatch(#[from] TaxonomyMismatch),
}

impl FromStr for TaxonomyClass {
    type Err = UnknownTaxonomy;

    /// Parses a class machine value case-insensitively, reading `_` and
    /// spaces as `-` (so IntelMQ's old `abusive content` is accepted).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim();
        TaxonomyClass::ALL
            .into_iter()
            .find(|class| matches_folded(wanted, class.slug()))
            .ok_or_else(|| UnknownTaxonomy(text.to_owned()))
    }
}

impl FromStr for TaxonomyType {
    type Err = UnknownTaxonomy;

    /// Parses a type machine value case-insensitively, reading `_` and spaces
    /// as `-`; also accepts IntelMQ's spellings (`c2server`, `c&c`,
    /// `botnet drone`, …) and the American `unauthorized-…`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim();
        TaxonomyType::ALL
            .iter()
            .map(|&kind| (kind.slug(), kind))
            .chain(TYPE_ALIASES)
            .find(|&(spelling, _)| matches_folded(wanted, spelling))
            .map(|(_, kind)| kind)
            .ok_or_else(|| UnknownTaxonomy(text.to_owned()))
    }
}

impl Serialize for TaxonomyClass {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.slug())
    }
}

impl<'de> Deserialize<'de> for TaxonomyClass {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(FromStrVisitor::new(
            "an RSIT class such as \"malicious-code\"",
        ))
    }
}

impl Serialize for TaxonomyType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.slug())
    }
}

impl<'de> Deserialize<'de> for TaxonomyType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(FromStrVisitor::new(
            "an RSIT type such as \"infected-system\"",
        ))
    }
}

/// An RSIT classification: a type together with its class.
///
/// Serializes as `{"class": "malicious-code", "type": "infected-system"}`;
/// deserializing rejects a type that does not belong to the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "TaxonomyFields")]
pub struct Taxonomy {
    /// The RSIT class; always `kind.class()`.
    pub class: TaxonomyClass,
    /// The RSIT type.
    #[serde(rename = "type")]
    pub kind: TaxonomyType,
}

impl Taxonomy {
    /// The classification of `kind`, with the class it belongs to.
    pub const fn new(kind: TaxonomyType) -> Taxonomy {
        Taxonomy {
            class: kind.class(),
            kind,
        }
    }

    /// Parses a class and a type given separately (as in IntelMQ's
    /// `classification.taxonomy` and `classification.type`), checking that
    /// the type belongs to the class.
    ///
    /// # Errors
    ///
    /// [`ParseTaxonomyError::Unknown`] when either part is not RSIT,
    /// [`ParseTaxonomyError::Mismatch`] when the type belongs to another class.
    pub fn from_parts(class: &str, kind: &str) -> Result<Taxonomy, ParseTaxonomyError> {
        let class: TaxonomyClass = class.parse()?;
        let kind: TaxonomyType = kind.parse()?;
        Taxonomy::checked(class, kind)
    }

    /// The MISP machine tag, e.g. `rsit:malicious-code="infected-system"`.
    pub fn misp_tag(&self) -> String {
        format!("rsit:{}=\"{}\"", self.class.slug(), self.kind.slug())
    }

    /// Pairs `class` and `kind` if the type belongs to the class.
    fn checked(class: TaxonomyClass, kind: TaxonomyType) -> Result<Taxonomy, ParseTaxonomyError> {
        if kind.class() == class {
            Ok(Taxonomy { class, kind })
        } else {
            Err(TaxonomyMismatch { class, kind }.into())
        }
    }
}

impl From<TaxonomyType> for Taxonomy {
    fn from(kind: TaxonomyType) -> Taxonomy {
        Taxonomy::new(kind)
    }
}

impl fmt::Display for Taxonomy {
    /// Writes `class/type`, e.g. `malicious-code/infected-system`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.class.slug(), self.kind.slug())
    }
}

impl FromStr for Taxonomy {
    type Err = ParseTaxonomyError;

    /// Parses `class/type`, `class:type`, the MISP tag `rsit:class="type"`,
    /// or a type alone (its class is implied). Class and type are read as
    /// by their own `FromStr`, IntelMQ spellings included.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if let Some(tag) = strip_prefix_ignoring_case(trimmed, "rsit:") {
            let (class, kind) = tag
                .split_once('=')
                .ok_or_else(|| UnknownTaxonomy(text.to_owned()))?;
            let kind = kind.trim();
            let kind = kind
                .strip_prefix('"')
                .and_then(|quoted| quoted.strip_suffix('"'))
                .unwrap_or(kind);
            return Taxonomy::from_parts(class, kind);
        }
        match trimmed.split_once('/').or_else(|| trimmed.split_once(':')) {
            Some((class, kind)) => Taxonomy::from_parts(class, kind),
            None => Ok(Taxonomy::new(trimmed.parse()?)),
        }
    }
}

/// The serialized form of [`Taxonomy`], checked before it becomes one.
#[derive(Deserialize)]
struct TaxonomyFields {
    class: TaxonomyClass,
    #[serde(rename = "type")]
    kind: TaxonomyType,
}

impl TryFrom<TaxonomyFields> for Taxonomy {
    type Error = ParseTaxonomyError;

    fn try_from(fields: TaxonomyFields) -> Result<Taxonomy, ParseTaxonomyError> {
        Taxonomy::checked(fields.class, fields.kind)
    }
}

/// `text` without `prefix`, if it starts with it up to ASCII case.
fn strip_prefix_ignoring_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    match text.split_at_checked(prefix.len()) {
        Some((head, rest)) if head.eq_ignore_ascii_case(prefix) => Some(rest),
        _ => None,
    }
}

/// True when `input` spells `folded` up to ASCII case, with `_` and spaces
/// read as `-`. `folded` is lower case and uses `-` only.
fn matches_folded(input: &str, folded: &str) -> bool {
    input.len() == folded.len()
        && input.bytes().zip(folded.bytes()).all(|(got, want)| {
            let got = match got {
                b'_' | b' ' => b'-',
                other => other.to_ascii_lowercase(),
            };
            got == want
        })
}

/// Deserializes a string through `FromStr`, without allocating for it.
struct FromStrVisitor<T> {
    expecting: &'static str,
    target: PhantomData<T>,
}

impl<T> FromStrVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        FromStrVisitor {
            expecting,
            target: PhantomData,
        }
    }
}

impl<T> Visitor<'_> for FromStrVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        text.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn there_are_11_classes_and_39_types_with_unique_slugs() {
        let class_slugs: HashSet<&str> = TaxonomyClass::ALL.iter().map(|c| c.slug()).collect();
        assert_eq!(class_slugs.len(), 11);
        let type_slugs: HashSet<&str> = TaxonomyType::ALL.iter().map(|t| t.slug()).collect();
        assert_eq!(type_slugs.len(), 39);
        // Aliases never shadow a machine value.
        for (alias, _) in TYPE_ALIASES {
            assert!(!type_slugs.contains(alias), "{alias}");
        }
    }

    #[test]
    fn each_class_lists_exactly_its_types() {
        let mut listed = Vec::new();
        for class in TaxonomyClass::ALL {
            for &kind in class.types() {
                assert_eq!(kind.class(), class, "{kind}");
                listed.push(kind);
            }
        }
        assert_eq!(listed, TaxonomyType::ALL);
    }

    #[test]
    fn machine_values_and_display_names_differ_where_rsit_says_so() {
        let cases = [
            (
                TaxonomyType::IdsAlert,
                "ids-alert",
                "Exploitation of Known Vulnerabilities",
            ),
            (TaxonomyType::BruteForce, "brute-force", "Login Attempts"),
            (TaxonomyType::Exploit, "exploit", "New Attack Signature"),
            (TaxonomyType::Scanner, "scanner", "Scanning"),
            (
                TaxonomyType::Violence,
                "violence",
                "(Child) Sexual Exploitation/Sexual/Violent Content",
            ),
            (
                TaxonomyType::UnauthorisedInformationAccess,
                "unauthorised-information-access",
                "Unauthorised Access to Information",
            ),
            (
                TaxonomyType::DataLeak,
                "data-leak",
                "Leak of Confidential Information",
            ),
            (TaxonomyType::WeakCrypto, "weak-crypto", "Weak Cryptography"),
            (TaxonomyType::Other, "other", "Uncategorised"),
            (TaxonomyType::C2Server, "c2-server", "C2 Server"),
            (
                TaxonomyType::InfectedSystem,
                "infected-system",
                "Infected System",
            ),
        ];
        for (kind, slug, name) in cases {
            assert_eq!(kind.slug(), slug);
            assert_eq!(kind.display_name(), name);
        }
        assert_eq!(
            TaxonomyClass::InformationContentSecurity.slug(),
            "information-content-security"
        );
        assert_eq!(
            TaxonomyClass::MaliciousCode.display_name(),
            "Malicious Code"
        );
    }

    #[test]
    fn every_class_round_trips_through_slug_from_str_and_json() {
        for class in TaxonomyClass::ALL {
            assert_eq!(class.slug().parse(), Ok(class));
            assert_eq!(class.to_string(), class.slug());
            let json = serde_json::to_string(&class).expect("serialize");
            assert_eq!(json, format!("\"{}\"", class.slug()));
            let back: TaxonomyClass = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, class);
        }
    }

    #[test]
    fn every_type_round_trips_through_slug_from_str_and_json() {
        for kind in TaxonomyType::ALL {
            assert_eq!(kind.slug().parse(), Ok(kind));
            assert_eq!(kind.to_string(), kind.slug());
            let json = serde_json::to_string(&kind).expect("serialize");
            assert_eq!(json, format!("\"{}\"", kind.slug()));
            let back: TaxonomyType = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, kind);
        }
    }

    #[test]
    fn every_taxonomy_round_trips_through_display_tag_and_json() {
        for kind in TaxonomyType::ALL {
            let taxonomy = Taxonomy::new(kind);
            assert_eq!(taxonomy.class, kind.class());
            assert_eq!(taxonomy.to_string().parse(), Ok(taxonomy));
            assert_eq!(taxonomy.misp_tag().parse(), Ok(taxonomy));
            assert_eq!(kind.slug().parse(), Ok(taxonomy));
            let json = serde_json::to_string(&taxonomy).expect("serialize");
            let back: Taxonomy = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, taxonomy);
        }
    }

    #[test]
    fn taxonomy_json_has_class_and_type_fields() {
        let taxonomy = Taxonomy::new(TaxonomyType::InfectedSystem);
        assert_eq!(
            serde_json::to_value(taxonomy).expect("serialize"),
            serde_json::json!({"class": "malicious-code", "type": "infected-system"})
        );
    }

    #[test]
    fn misp_tag_uses_the_rsit_namespace() {
        assert_eq!(
            Taxonomy::new(TaxonomyType::InfectedSystem).misp_tag(),
            "rsit:malicious-code=\"infected-system\""
        );
        assert_eq!(
            Taxonomy::new(TaxonomyType::Undetermined).misp_tag(),
            "rsit:other=\"undetermined\""
        );
    }

    #[test]
    fn taxonomy_parses_every_accepted_form() {
        let expected = Taxonomy::new(TaxonomyType::C2Server);
        for text in [
            "malicious-code/c2-server",
            "malicious-code:c2-server",
            "rsit:malicious-code=\"c2-server\"",
            "RSIT:Malicious-Code=\"C2-Server\"",
            "rsit:malicious-code=c2-server",
            "c2-server",
            "  Malicious_Code / C2_Server ",
            "malicious code/c2server",
            "c&c",
            "C&C",
        ] {
            assert_eq!(text.parse(), Ok(expected), "{text:?}");
        }
    }

    #[test]
    fn intelmq_spellings_are_accepted() {
        let cases = [
            ("c2server", TaxonomyType::C2Server),
            ("botnet drone", TaxonomyType::InfectedSystem),
            ("botnet-drone", TaxonomyType::InfectedSystem),
            ("ids alert", TaxonomyType::IdsAlert),
            ("infected system", TaxonomyType::InfectedSystem),
            ("malware configuration", TaxonomyType::MalwareConfiguration),
            ("ransomware", TaxonomyType::InfectedSystem),
            ("vulnerable service", TaxonomyType::VulnerableSystem),
            ("vulnerable client", TaxonomyType::VulnerableSystem),
            ("leak", TaxonomyType::DataLeak),
            ("unknown", TaxonomyType::Undetermined),
            ("compromised", TaxonomyType::SystemCompromise),
            ("backdoor", TaxonomyType::SystemCompromise),
            ("unauthorized-login", TaxonomyType::SystemCompromise),
            (
                "defacement",
                TaxonomyType::UnauthorisedInformationModification,
            ),
            (
                "unauthorized-use-of-resources",
                TaxonomyType::UnauthorisedUseOfResources,
            ),
            (
                "Unauthorised-information-access",
                TaxonomyType::UnauthorisedInformationAccess,
            ),
        ];
        for (text, kind) in cases {
            assert_eq!(text.parse(), Ok(kind), "{text:?}");
        }
        assert_eq!(
            Taxonomy::from_parts("malicious code", "botnet drone"),
            Ok(Taxonomy::new(TaxonomyType::InfectedSystem))
        );
        assert_eq!(
            Taxonomy::from_parts("intrusion attempts", "ids alert"),
            Ok(Taxonomy::new(TaxonomyType::IdsAlert))
        );
    }

    #[test]
    fn a_type_with_the_wrong_class_is_rejected() {
        let mismatch = TaxonomyMismatch {
            class: TaxonomyClass::Fraud,
            kind: TaxonomyType::InfectedSystem,
        };
        for text in [
            "fraud/infected-system",
            "fraud:infected-system",
            "rsit:fraud=\"infected-system\"",
        ] {
            assert_eq!(
                text.parse::<Taxonomy>(),
                Err(ParseTaxonomyError::Mismatch(mismatch)),
                "{text:?}"
            );
        }
        assert_eq!(
            mismatch.to_string(),
            "RSIT type `infected-system` belongs to class `malicious-code`, not `fraud`"
        );
        let json = r#"{"class": "fraud", "type": "infected-system"}"#;
        let error = serde_json::from_str::<Taxonomy>(json).expect_err("must fail");
        assert!(error.to_string().contains("belongs to class"), "{error}");
    }

    #[test]
    fn unknown_classes_and_types_are_rejected() {
        for text in [
            "",
            "malware",
            "blacklist",
            "dga domain",
            "malicious-code/",
            "/infected-system",
            "malicious-codes/infected-system",
            "malicious-code/infected-systems",
            "rsit:malicious-code",
            "rsit:malicious-code=\"\"",
            "ecsirt:malicious-code=\"virus\"",
            "ids--alert",
        ] {
            assert!(
                matches!(
                    text.parse::<Taxonomy>(),
                    Err(ParseTaxonomyError::Unknown(_))
                ),
                "{text:?}"
            );
        }
        assert_eq!(
            "worm".parse::<TaxonomyType>(),
            Err(UnknownTaxonomy("worm".into()))
        );
        assert_eq!(
            "virus".parse::<TaxonomyClass>(),
            Err(UnknownTaxonomy("virus".into()))
        );
        let error = serde_json::from_str::<TaxonomyType>("\"worm\"").expect_err("must fail");
        assert!(error.to_string().contains("not an RSIT"), "{error}");
        let json = r#"{"class": "malicious-code", "type": "worm"}"#;
        assert!(serde_json::from_str::<Taxonomy>(json).is_err());
    }

    #[test]
    fn parsing_multibyte_input_does_not_panic() {
        for text in ["rsité", "é", "rsit:é=\"é\"", "ü/ü"] {
            assert!(text.parse::<Taxonomy>().is_err(), "{text:?}");
        }
    }
}
