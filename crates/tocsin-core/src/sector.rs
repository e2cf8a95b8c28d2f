//! NIS2 sectors and subsectors: which part of the economy an incident hits.
//!
//! A warning names the sectors of the affected entities because NIS2 treats
//! them differently: Annex I sectors are of *high criticality*, Annex II
//! sectors are *other critical sectors*, and an incident that spans several
//! sectors is cross-sectoral and must reach the single points of contact.
//!
//! The list and the display names come from Directive (EU) 2022/2555, Annex I
//! (11 sectors) and Annex II (7 sectors), in the Annex order. The stable slugs
//! are the keys of the MISP taxonomy `nis2`, predicate
//! `impact-sectors-impacted` (`MISP/misp-taxonomies:nis2/machinetag.json`).
//! The display names are taken from the Directive, not from MISP, whose
//! expansions are wrong in places (see `coordination.md` §1.1 and §1.2).
//!
//! STIX 2.1 has no NIS2 vocabulary: [`Sector::stix_sector`] gives a lossy
//! mapping onto `industry-sector-ov`, so the exact NIS2 slug must always travel
//! alongside it (as a MISP tag or an `x_` property).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The NIS2 Annex that lists a sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Annex {
    /// Annex I: sectors of high criticality.
    I,
    /// Annex II: other critical sectors.
    II,
}

impl Annex {
    /// The Annex number as written in the Directive: `"I"` or `"II"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Annex::I => "I",
            Annex::II => "II",
        }
    }
}

impl fmt::Display for Annex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sector of NIS2 Annex I or Annex II, in the Annex order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sector {
    /// Annex I.1: Energy.
    Energy,
    /// Annex I.2: Transport.
    Transport,
    /// Annex I.3: Banking.
    Banking,
    /// Annex I.4: Financial market infrastructures.
    FinancialMarketInfrastructures,
    /// Annex I.5: Health.
    Health,
    /// Annex I.6: Drinking water.
    DrinkingWater,
    /// Annex I.7: Waste water.
    WasteWater,
    /// Annex I.8: Digital infrastructure.
    DigitalInfrastructure,
    /// Annex I.9: ICT service management (business-to-business).
    IctServiceManagement,
    /// Annex I.10: Public administration.
    PublicAdministration,
    /// Annex I.11: Space.
    Space,
    /// Annex II.1: Postal and courier services.
    PostalAndCourier,
    /// Annex II.2: Waste management.
    WasteManagement,
    /// Annex II.3: Manufacture, production and distribution of chemicals.
    Chemicals,
    /// Annex II.4: Production, processing and distribution of food.
    Food,
    /// Annex II.5: Manufacturing.
    Manufacturing,
    /// Annex II.6: Digital providers.
    DigitalProviders,
    /// Annex II.7: Research.
    Research,
}

/// The sector slugs, comma-separated, for error messages.
const SECTOR_SLUG_LIST: &str = "energy, transport, banking, financial, health, drinking-water, \
     waste-water, digital-infrastructure, ict-services, public-administration, space, courier, \
     waste-management, chemical, food, manufacturing, digital-providers, research";

/// Extra spellings accepted by `Sector::from_str`, besides the slugs.
const SECTOR_ALIASES: [(&str, Sector); 7] = [
    ("healthcare", Sector::Health),
    ("government", Sector::PublicAdministration),
    ("public-admin", Sector::PublicAdministration),
    ("finance", Sector::FinancialMarketInfrastructures),
    ("water", Sector::DrinkingWater),
    ("ict", Sector::IctServiceManagement),
    ("postal", Sector::PostalAndCourier),
];

impl Sector {
    /// Every sector: the 11 of Annex I, then the 7 of Annex II.
    pub const ALL: [Sector; 18] = [
        Sector::Energy,
        Sector::Transport,
        Sector::Banking,
        Sector::FinancialMarketInfrastructures,
        Sector::Health,
        Sector::DrinkingWater,
        Sector::WasteWater,
        Sector::DigitalInfrastructure,
        Sector::IctServiceManagement,
        Sector::PublicAdministration,
        Sector::Space,
        Sector::PostalAndCourier,
        Sector::WasteManagement,
        Sector::Chemicals,
        Sector::Food,
        Sector::Manufacturing,
        Sector::DigitalProviders,
        Sector::Research,
    ];

    /// The stable machine key: the MISP `nis2:impact-sectors-impacted` value.
    pub const fn slug(self) -> &'static str {
        match self {
            Sector::Energy => "energy",
            Sector::Transport => "transport",
            Sector::Banking => "banking",
            Sector::FinancialMarketInfrastructures => "financial",
            Sector::Health => "health",
            Sector::DrinkingWater => "drinking-water",
            Sector::WasteWater => "waste-water",
            Sector::DigitalInfrastructure => "digital-infrastructure",
            Sector::IctServiceManagement => "ict-services",
            Sector::PublicAdministration => "public-administration",
            Sector::Space => "space",
            Sector::PostalAndCourier => "courier",
            Sector::WasteManagement => "waste-management",
            Sector::Chemicals => "chemical",
            Sector::Food => "food",
            Sector::Manufacturing => "manufacturing",
            Sector::DigitalProviders => "digital-providers",
            Sector::Research => "research",
        }
    }

    /// The sector's name as written in the Directive's Annex.
    pub const fn display_name(self) -> &'static str {
        match self {
            Sector::Energy => "Energy",
            Sector::Transport => "Transport",
            Sector::Banking => "Banking",
            Sector::FinancialMarketInfrastructures => "Financial market infrastructures",
            Sector::Health => "Health",
            Sector::DrinkingWater => "Drinking water",
            Sector::WasteWater => "Waste water",
            Sector::DigitalInfrastructure => "Digital infrastructure",
            Sector::IctServiceManagement => "ICT service management (business-to-business)",
            Sector::PublicAdministration => "Public administration",
            Sector::Space => "Space",
            Sector::PostalAndCourier => "Postal and courier services",
            Sector::WasteManagement => "Waste management",
            Sector::Chemicals => "Manufacture, production and distribution of chemicals",
            Sector::Food => "Production, processing and distribution of food",
            Sector::Manufacturing => "Manufacturing",
            Sector::DigitalProviders => "Digital providers",
            Sector::Research => "Research",
        }
    }

    /// The Annex that lists this sector.
    pub const fn annex(self) -> Annex {
        match self {
            Sector::Energy
            | Sector::Transport
            | Sector::Banking
            | Sector::FinancialMarketInfrastructures
            | Sector::Health
            | Sector::DrinkingWater
            | Sector::WasteWater
            | Sector::DigitalInfrastructure
            | Sector::IctServiceManagement
            | Sector::PublicAdministration
            | Sector::Space => Annex::I,
            Sector::PostalAndCourier
            | Sector::WasteManagement
            | Sector::Chemicals
            | Sector::Food
            | Sector::Manufacturing
            | Sector::DigitalProviders
            | Sector::Research => Annex::II,
        }
    }

    /// True for the sectors of high criticality (Annex I).
    pub const fn is_high_criticality(self) -> bool {
        matches!(self.annex(), Annex::I)
    }

    /// The closest STIX 2.1 `industry-sector-ov` value (lossy; one value each).
    ///
    /// Follows the proposal in `coordination.md` §4. Where it offers several
    /// values, this picks: digital infrastructure → `telecommunications`
    /// (networks, IXPs, DNS), public administration → `government` (the
    /// parent of the national, regional and local values, since the level is
    /// not known here), water sectors → `water`.
    pub const fn stix_sector(self) -> &'static str {
        match self {
            Sector::Energy => "energy",
            Sector::Transport => "transportation",
            Sector::Banking => "financial-services",
            Sector::FinancialMarketInfrastructures => "financial-services",
            Sector::Health => "healthcare",
            Sector::DrinkingWater => "water",
            Sector::WasteWater => "water",
            Sector::DigitalInfrastructure => "telecommunications",
            Sector::IctServiceManagement => "technology",
            Sector::PublicAdministration => "government",
            Sector::Space => "aerospace",
            Sector::PostalAndCourier => "transportation",
            Sector::WasteManagement => "utilities",
            Sector::Chemicals => "chemical",
            Sector::Food => "agriculture",
            Sector::Manufacturing => "manufacturing",
            Sector::DigitalProviders => "technology",
            Sector::Research => "education",
        }
    }

    /// The MISP machine tag, e.g. `nis2:impact-sectors-impacted="energy"`.
    pub fn misp_tag(self) -> String {
        format!("nis2:impact-sectors-impacted=\"{}\"", self.slug())
    }

    /// The subsectors the Annex lists for this sector (empty for most).
    pub const fn subsectors(self) -> &'static [Subsector] {
        match self {
            Sector::Energy => &[
                Subsector::Electricity,
                Subsector::DistrictHeatingAndCooling,
                Subsector::Oil,
                Subsector::Gas,
                Subsector::Hydrogen,
            ],
            Sector::Transport => &[
                Subsector::Air,
                Subsector::Rail,
                Subsector::Water,
                Subsector::Road,
            ],
            Sector::Manufacturing => &[
                Subsector::MedicalDevices,
                Subsector::ElectronicOptical,
                Subsector::ElectricalEquipment,
                Subsector::Machinery,
                Subsector::MotorVehicles,
                Subsector::OtherTransportEquipment,
            ],
            _ => &[],
        }
    }
}

impl fmt::Display for Sector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// The error for text that names no NIS2 sector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a NIS2 sector slug (expected one of: {list})", list = SECTOR_SLUG_LIST)]
pub struct UnknownSector(pub String);

impl FromStr for Sector {
    type Err = UnknownSector;

    /// Parses a slug, case-insensitively, reading `_` as `-`, plus a few
    /// common aliases (`healthcare`, `government`, `public-admin`, `finance`,
    /// `water`, `ict`, `postal`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim();
        Sector::ALL
            .iter()
            .map(|&sector| (sector.slug(), sector))
            .chain(SECTOR_ALIASES)
            .find(|&(spelling, _)| matches_slug(wanted, spelling))
            .map(|(_, sector)| sector)
            .ok_or_else(|| UnknownSector(text.to_owned()))
    }
}

impl Serialize for Sector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.slug())
    }
}

impl<'de> Deserialize<'de> for Sector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(SlugVisitor::new("a NIS2 sector slug such as \"energy\""))
    }
}

/// A subsector listed in NIS2 Annex I (energy, transport) or Annex II
/// (manufacturing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subsector {
    /// Energy (a): Electricity.
    Electricity,
    /// Energy (b): District heating and cooling.
    DistrictHeatingAndCooling,
    /// Energy (c): Oil.
    Oil,
    /// Energy (d): Gas.
    Gas,
    /// Energy (e): Hydrogen.
    Hydrogen,
    /// Transport (a): Air.
    Air,
    /// Transport (b): Rail.
    Rail,
    /// Transport (c): Water.
    Water,
    /// Transport (d): Road.
    Road,
    /// Manufacturing (a): medical devices and in vitro diagnostic medical devices.
    MedicalDevices,
    /// Manufacturing (b): computer, electronic and optical products.
    ElectronicOptical,
    /// Manufacturing (c): electrical equipment.
    ElectricalEquipment,
    /// Manufacturing (d): machinery and equipment n.e.c.
    Machinery,
    /// Manufacturing (e): motor vehicles, trailers and semi-trailers.
    MotorVehicles,
    /// Manufacturing (f): other transport equipment.
    OtherTransportEquipment,
}

/// The subsector slugs, comma-separated, for error messages.
const SUBSECTOR_SLUG_LIST: &str = "electricity, district-heating-and-cooling, oil, gas, \
     hydrogen, air, rail, water, road, medical-devices, electronic-optical, \
     electrical-equipment, machinery, motor-vehicles, other-transport-equipment";

/// Extra spellings accepted by `Subsector::from_str`: the manufacturing keys
/// of the MISP `nis2` taxonomy, in its older (`…-manufacturing`) and newer
/// (`…-subsector`) versions.
const SUBSECTOR_ALIASES: [(&str, Subsector); 12] = [
    ("medical-devices-subsector", Subsector::MedicalDevices),
    ("electronic-optical-subsector", Subsector::ElectronicOptical),
    (
        "electrical-equipment-subsector",
        Subsector::ElectricalEquipment,
    ),
    ("machine-tool-subsector", Subsector::Machinery),
    ("vehicle-manufacturing-subsector", Subsector::MotorVehicles),
    (
        "other-transport-equipment-subsector",
        Subsector::OtherTransportEquipment,
    ),
    ("medical-devices-manufacturing", Subsector::MedicalDevices),
    ("computer-manufacturing", Subsector::ElectronicOptical),
    (
        "electrical-equipment-manufacturing",
        Subsector::ElectricalEquipment,
    ),
    ("machinery-equipment-manufacturing", Subsector::Machinery),
    ("vehicles-trailers-manufacturing", Subsector::MotorVehicles),
    (
        "other-transport-manufacturing",
        Subsector::OtherTransportEquipment,
    ),
];

impl Subsector {
    /// Every subsector, grouped by sector in the Annex order.
    pub const ALL: [Subsector; 15] = [
        Subsector::Electricity,
        Subsector::DistrictHeatingAndCooling,
        Subsector::Oil,
        Subsector::Gas,
        Subsector::Hydrogen,
        Subsector::Air,
        Subsector::Rail,
        Subsector::Water,
        Subsector::Road,
        Subsector::MedicalDevices,
        Subsector::ElectronicOptical,
        Subsector::ElectricalEquipment,
        Subsector::Machinery,
        Subsector::MotorVehicles,
        Subsector::OtherTransportEquipment,
    ];

    /// The stable machine key (MISP `nis2` keys for energy and transport).
    pub const fn slug(self) -> &'static str {
        match self {
            Subsector::Electricity => "electricity",
            Subsector::DistrictHeatingAndCooling => "district-heating-and-cooling",
            Subsector::Oil => "oil",
            Subsector::Gas => "gas",
            Subsector::Hydrogen => "hydrogen",
            Subsector::Air => "air",
            Subsector::Rail => "rail",
            Subsector::Water => "water",
            Subsector::Road => "road",
            Subsector::MedicalDevices => "medical-devices",
            Subsector::ElectronicOptical => "electronic-optical",
            Subsector::ElectricalEquipment => "electrical-equipment",
            Subsector::Machinery => "machinery",
            Subsector::MotorVehicles => "motor-vehicles",
            Subsector::OtherTransportEquipment => "other-transport-equipment",
        }
    }

    /// The subsector's name as written in the Directive's Annex.
    pub const fn display_name(self) -> &'static str {
        match self {
            Subsector::Electricity => "Electricity",
            Subsector::DistrictHeatingAndCooling => "District heating and cooling",
            Subsector::Oil => "Oil",
            Subsector::Gas => "Gas",
            Subsector::Hydrogen => "Hydrogen",
            Subsector::Air => "Air",
            Subsector::Rail => "Rail",
            Subsector::Water => "Water",
            Subsector::Road => "Road",
            Subsector::MedicalDevices => {
                "Manufacture of medical devices and in vitro diagnostic medical devices"
            }
            Subsector::ElectronicOptical => {
                "Manufacture of computer, electronic and optical products"
            }
            Subsector::ElectricalEquipment => "Manufacture of electrical equipment",
            Subsector::Machinery => "Manufacture of machinery and equipment n.e.c.",
            Subsector::MotorVehicles => "Manufacture of motor vehicles, trailers and semi-trailers",
            Subsector::OtherTransportEquipment => "Manufacture of other transport equipment",
        }
    }

    /// The sector this subsector belongs to.
    pub const fn sector(self) -> Sector {
        match self {
            Subsector::Electricity
            | Subsector::DistrictHeatingAndCooling
            | Subsector::Oil
            | Subsector::Gas
            | Subsector::Hydrogen => Sector::Energy,
            Subsector::Air | Subsector::Rail | Subsector::Water | Subsector::Road => {
                Sector::Transport
            }
            Subsector::MedicalDevices
            | Subsector::ElectronicOptical
            | Subsector::ElectricalEquipment
            | Subsector::Machinery
            | Subsector::MotorVehicles
            | Subsector::OtherTransportEquipment => Sector::Manufacturing,
        }
    }

    /// The closest STIX 2.1 `industry-sector-ov` value: the sector's, refined
    /// where the proposal in `coordination.md` §4 refines it (motor vehicles →
    /// `automotive`, medical devices → `healthcare`).
    pub const fn stix_sector(self) -> &'static str {
        match self {
            Subsector::MotorVehicles => "automotive",
            Subsector::MedicalDevices => "healthcare",
            other => other.sector().stix_sector(),
        }
    }
}

impl fmt::Display for Subsector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// The error for text that names no NIS2 subsector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a NIS2 subsector slug (expected one of: {list})", list = SUBSECTOR_SLUG_LIST)]
pub struct UnknownSubsector(pub String);

impl FromStr for Subsector {
    type Err = UnknownSubsector;

    /// Parses a slug, case-insensitively, reading `_` as `-`; also accepts
    /// the MISP `nis2` manufacturing keys.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let wanted = text.trim();
        Subsector::ALL
            .iter()
            .map(|&subsector| (subsector.slug(), subsector))
            .chain(SUBSECTOR_ALIASES)
            .find(|&(spelling, _)| matches_slug(wanted, spelling))
            .map(|(_, subsector)| subsector)
            .ok_or_else(|| UnknownSubsector(text.to_owned()))
    }
}

impl Serialize for Subsector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.slug())
    }
}

impl<'de> Deserialize<'de> for Subsector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(SlugVisitor::new(
            "a NIS2 subsector slug such as \"electricity\"",
        ))
    }
}

/// True when `input` spells `slug` up to ASCII case, with `_` read as `-`.
fn matches_slug(input: &str, slug: &str) -> bool {
    input.len() == slug.len()
        && input
            .bytes()
            .zip(slug.bytes())
            .all(|(got, want)| fold_slug_byte(got) == want)
}

/// Lower-cases an ASCII byte and reads `_` as `-`.
fn fold_slug_byte(byte: u8) -> u8 {
    match byte {
        b'_' => b'-',
        other => other.to_ascii_lowercase(),
    }
}

/// Deserializes a string through `FromStr`, without allocating for it.
struct SlugVisitor<T> {
    expecting: &'static str,
    target: PhantomData<T>,
}

impl<T> SlugVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        SlugVisitor {
            expecting,
            target: PhantomData,
        }
    }
}

impl<T> Visitor<'_> for SlugVisitor<T>
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

    /// The `industry-sector-ov` values of STIX 2.1 (`schemas/sdos/identity.json`).
    const INDUSTRY_SECTOR_OV: [&str; 35] = [
        "agriculture",
        "aerospace",
        "automotive",
        "chemical",
        "commercial",
        "communications",
        "construction",
        "defense",
        "education",
        "energy",
        "engineering",
        "entertainment",
        "financial-services",
        "government",
        "emergency-services",
        "government-local",
        "government-national",
        "government-public-services",
        "government-regional",
        "healthcare",
        "hospitality-leisure",
        "infrastructure",
        "dams",
        "nuclear",
        "water",
        "insurance",
        "manufacturing",
        "mining",
        "non-profit",
        "pharmaceuticals",
        "retail",
        "technology",
        "telecommunications",
        "transportation",
        "utilities",
    ];

    #[test]
    fn slugs_are_the_misp_nis2_keys_in_annex_order() {
        let slugs: Vec<&str> = Sector::ALL.iter().map(|sector| sector.slug()).collect();
        assert_eq!(
            slugs,
            [
                "energy",
                "transport",
                "banking",
                "financial",
                "health",
                "drinking-water",
                "waste-water",
                "digital-infrastructure",
                "ict-services",
                "public-administration",
                "space",
                "courier",
                "waste-management",
                "chemical",
                "food",
                "manufacturing",
                "digital-providers",
                "research",
            ]
        );
        assert_eq!(slugs.join(", "), SECTOR_SLUG_LIST);
    }

    #[test]
    fn annex_one_has_eleven_sectors_and_annex_two_seven() {
        let annex_one = Sector::ALL.iter().filter(|s| s.annex() == Annex::I).count();
        let annex_two = Sector::ALL
            .iter()
            .filter(|s| s.annex() == Annex::II)
            .count();
        assert_eq!((annex_one, annex_two), (11, 7));
        // Annex I comes first, so the derived order follows the Annexes.
        assert!(Sector::ALL.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(Sector::ALL[..11].iter().all(|s| s.is_high_criticality()));
        assert!(Sector::ALL[11..].iter().all(|s| !s.is_high_criticality()));
    }

    #[test]
    fn display_names_come_from_the_directive() {
        assert_eq!(
            Sector::FinancialMarketInfrastructures.display_name(),
            "Financial market infrastructures"
        );
        assert_eq!(
            Sector::IctServiceManagement.display_name(),
            "ICT service management (business-to-business)"
        );
        assert_eq!(
            Sector::Chemicals.display_name(),
            "Manufacture, production and distribution of chemicals"
        );
        assert_eq!(
            Sector::PostalAndCourier.display_name(),
            "Postal and courier services"
        );
        // MISP mislabels these two; the Directive's names win.
        assert_eq!(
            Subsector::DistrictHeatingAndCooling.display_name(),
            "District heating and cooling"
        );
        assert_eq!(
            Subsector::ElectricalEquipment.display_name(),
            "Manufacture of electrical equipment"
        );
    }

    #[test]
    fn every_sector_round_trips_through_slug_from_str_and_json() {
        for sector in Sector::ALL {
            assert_eq!(sector.slug().parse::<Sector>(), Ok(sector));
            assert_eq!(sector.to_string(), sector.slug());
            let json = serde_json::to_string(&sector).expect("serialize");
            assert_eq!(json, format!("\"{}\"", sector.slug()));
            let back: Sector = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, sector);
        }
    }

    #[test]
    fn parsing_ignores_case_whitespace_and_underscores() {
        assert_eq!("ENERGY".parse(), Ok(Sector::Energy));
        assert_eq!("  Drinking_Water ".parse(), Ok(Sector::DrinkingWater));
        assert_eq!("ICT_SERVICES".parse(), Ok(Sector::IctServiceManagement));
    }

    #[test]
    fn aliases_map_to_their_sector() {
        let cases = [
            ("healthcare", Sector::Health),
            ("government", Sector::PublicAdministration),
            ("public-admin", Sector::PublicAdministration),
            ("Public_Admin", Sector::PublicAdministration),
            ("finance", Sector::FinancialMarketInfrastructures),
            ("water", Sector::DrinkingWater),
            ("ict", Sector::IctServiceManagement),
            ("postal", Sector::PostalAndCourier),
        ];
        for (text, sector) in cases {
            assert_eq!(text.parse(), Ok(sector), "{text}");
        }
    }

    #[test]
    fn unknown_sectors_are_rejected() {
        for text in [
            "",
            "telecom",
            "hospital",
            "energies",
            "drinking water",
            "nis2:energy",
        ] {
            assert_eq!(
                text.parse::<Sector>(),
                Err(UnknownSector(text.to_owned())),
                "{text:?}"
            );
        }
        let message = UnknownSector("telecom".into()).to_string();
        assert!(message.contains("not a NIS2 sector slug"), "{message}");
        assert!(message.contains("digital-infrastructure"), "{message}");
    }

    #[test]
    fn json_rejects_unknown_sector_with_a_clear_message() {
        let error = serde_json::from_str::<Sector>("\"telecom\"").expect_err("must fail");
        assert!(
            error.to_string().contains("not a NIS2 sector slug"),
            "{error}"
        );
        let error = serde_json::from_str::<Sector>("42").expect_err("must fail");
        assert!(error.to_string().contains("NIS2 sector slug"), "{error}");
    }

    #[test]
    fn misp_tag_uses_the_nis2_namespace() {
        assert_eq!(
            Sector::Energy.misp_tag(),
            "nis2:impact-sectors-impacted=\"energy\""
        );
        assert_eq!(
            Sector::IctServiceManagement.misp_tag(),
            "nis2:impact-sectors-impacted=\"ict-services\""
        );
    }

    #[test]
    fn stix_sectors_are_industry_sector_ov_values() {
        for sector in Sector::ALL {
            assert!(
                INDUSTRY_SECTOR_OV.contains(&sector.stix_sector()),
                "{sector}"
            );
        }
        for subsector in Subsector::ALL {
            assert!(
                INDUSTRY_SECTOR_OV.contains(&subsector.stix_sector()),
                "{subsector}"
            );
        }
        assert_eq!(Sector::Transport.stix_sector(), "transportation");
        assert_eq!(Sector::Space.stix_sector(), "aerospace");
        assert_eq!(Subsector::MotorVehicles.stix_sector(), "automotive");
        assert_eq!(Subsector::Rail.stix_sector(), "transportation");
    }

    #[test]
    fn subsectors_belong_to_the_sector_that_lists_them() {
        let mut listed = Vec::new();
        for sector in Sector::ALL {
            for &subsector in sector.subsectors() {
                assert_eq!(subsector.sector(), sector);
                listed.push(subsector);
            }
        }
        assert_eq!(listed, Subsector::ALL);
        assert_eq!(Sector::Energy.subsectors().len(), 5);
        assert_eq!(Sector::Transport.subsectors().len(), 4);
        assert_eq!(Sector::Manufacturing.subsectors().len(), 6);
    }

    #[test]
    fn every_subsector_round_trips_through_slug_from_str_and_json() {
        let slugs: HashSet<&str> = Subsector::ALL.iter().map(|s| s.slug()).collect();
        assert_eq!(slugs.len(), Subsector::ALL.len());
        let joined: Vec<&str> = Subsector::ALL.iter().map(|s| s.slug()).collect();
        assert_eq!(joined.join(", "), SUBSECTOR_SLUG_LIST);
        for subsector in Subsector::ALL {
            assert_eq!(subsector.slug().parse::<Subsector>(), Ok(subsector));
            assert_eq!(subsector.to_string(), subsector.slug());
            let json = serde_json::to_string(&subsector).expect("serialize");
            let back: Subsector = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, subsector);
        }
    }

    #[test]
    fn subsector_parsing_accepts_misp_keys_and_rejects_the_rest() {
        assert_eq!("Motor_Vehicles".parse(), Ok(Subsector::MotorVehicles));
        assert_eq!("machine-tool-subsector".parse(), Ok(Subsector::Machinery));
        assert_eq!(
            "computer-manufacturing".parse(),
            Ok(Subsector::ElectronicOptical)
        );
        assert_eq!(
            "nuclear".parse::<Subsector>(),
            Err(UnknownSubsector("nuclear".into()))
        );
        let error = serde_json::from_str::<Subsector>("\"nuclear\"").expect_err("must fail");
        assert!(error.to_string().contains("not a NIS2 subsector slug"));
    }

    #[test]
    fn annex_serializes_as_roman_numeral() {
        assert_eq!(
            serde_json::to_string(&Annex::I).expect("serialize"),
            "\"I\""
        );
        assert_eq!(
            serde_json::from_str::<Annex>("\"II\"").expect("deserialize"),
            Annex::II
        );
        assert_eq!(Annex::II.to_string(), "II");
    }
}
