//! The STIX 2.1 and MISP renderings of a hand-built early warning.
//!
//! The warning is what the correlator gives a technical audience for a cross-border,
//! cross-sector campaign: three organisations in two member states and two sectors, and
//! indicators of every type under three TLP labels. The tests check the structure each
//! format requires (object types and counts, references that resolve, the pinned TLP 2.0
//! marking ids, valid MISP category/type pairs), determinism, and — when a Python with the
//! OASIS `stix2-validator` is named by `TOCSIN_STIX_VALIDATOR_PYTHON` — validity according
//! to that independent validator.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};
use tocsin_core::{
    Affected, Audience, EarlyWarning, EuTaxonomy, ImpactSeverity, IndicatorType, Issuer, Outlook,
    Pap, ReportingClock, RootCause, Severity, Taxonomy, TaxonomyType, ThreatSeverity,
    TimelineEntry, Timestamp, Tlp, WarningIndicator, WarningRule, WarningStatus,
    EARLY_WARNING_SCHEMA,
};
use tocsin_correlate::{misp, stix};

/// The TLP 2.0 marking-definition ids, pinned from
/// `oasis-open/cti-stix-common-objects:extension-definition-specifications/tlp-2.0`
/// (`coordination.md` §3), not from `Tlp::stix_marking_id`.
const PINNED_TLP_2_0_MARKINGS: [(&str, &str, &str); 5] = [
    (
        "TLP:CLEAR",
        "clear",
        "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
    ),
    (
        "TLP:GREEN",
        "green",
        "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    ),
    (
        "TLP:AMBER",
        "amber",
        "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
    ),
    (
        "TLP:AMBER+STRICT",
        "amber+strict",
        "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
    ),
    (
        "TLP:RED",
        "red",
        "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
    ),
];

const MD5: &str = "44d88612fea8a8f36de82e1278abb02f";
const SHA1: &str = "3395856ce81f2b7382dee72602f798b642f14140";
const SHA256: &str = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
const SHA512: &str = "cc805d5fab1fd71a4ab352a9c533e65fb2d5b885518f4e565e68847223b8e6b8\
                      5cb48f3afad842726d99239c9e36505c64b0dc9a061d9e507d833277ada336ab";

fn at(hour: u32, minute: u32) -> Timestamp {
    Timestamp::from_civil(2026, 3, 2, hour, minute, 0)
}

fn indicator(kind: IndicatorType, value: &str, tlp: Tlp, feeds: &[&str]) -> WarningIndicator {
    WarningIndicator {
        kind,
        value: value.to_owned(),
        tlp,
        feeds: feeds.iter().map(|feed| (*feed).to_owned()).collect(),
        seen_by: Default::default(),
    }
}

fn timeline_entry(
    minute: u32,
    organisation: &str,
    sector: &str,
    member_state: &str,
) -> TimelineEntry {
    TimelineEntry {
        time: at(8, minute),
        organisation: Some(organisation.to_owned()),
        sector: Some(sector.parse().expect("sector")),
        member_state: Some(member_state.parse().expect("member state")),
        detections: 5,
        tlp: tocsin_core::Tlp::Green,
    }
}

/// A technical-audience warning: 3 organisations, 2 member states, 2 sectors, 11 indicators
/// of every type under TLP:CLEAR, GREEN and AMBER, exercise traffic.
fn campaign_warning() -> EarlyWarning {
    let first_seen = at(8, 0);
    EarlyWarning {
        schema: EARLY_WARNING_SCHEMA.to_owned(),
        warning_id: "ew-6f1d2c3b4a5968778695a4b3c2d1e0f1".to_owned(),
        incident_id: "inc-0a1b2c3d4e5f60718293a4b5c6d7e8f9".to_owned(),
        version: 2,
        status: WarningStatus::Escalated,
        issued_at: at(9, 30),
        first_issued_at: Some(at(9, 0)),
        issuer: None,
        exercise: true,
        audience: Audience::Technical,
        headline: "Domain c2.example seen at 3 organisations in 2 sectors (energy, health) \
                   across 2 member states (DE, FR)"
            .to_owned(),
        taxonomy: Some(Taxonomy::new(TaxonomyType::C2Server)),
        eu_taxonomy: EuTaxonomy {
            root_cause: RootCause::MaliciousActions,
            threat_severity: ThreatSeverity::High,
            impact_severity: ImpactSeverity::Yellow,
            outlook: Outlook::Worsening,
        },
        severity: Severity::High,
        suspected_malicious: true,
        cross_border: true,
        cross_sector: true,
        correlation_key: "indicator:domain:c2.example".to_owned(),
        first_seen,
        last_seen: at(9, 30),
        affected: Affected {
            sectors: vec![
                "energy".parse().expect("energy"),
                "health".parse().expect("health"),
            ],
            member_states: vec!["DE".parse().expect("DE"), "FR".parse().expect("FR")],
            organisation_count: 3,
            organisations: vec![
                "Klinikum Nord".to_owned(),
                "Réseau Sud".to_owned(),
                "Stadtwerke Ost".to_owned(),
            ],
        },
        detection_count: 17,
        rules: vec![WarningRule {
            id: "ioc:cert-eu".to_owned(),
            title: "Indicator from feed cert-eu".to_owned(),
            level: tocsin_core::Level::High,
            detections: 17,
        }],
        attack: vec!["T1071.004".to_owned(), "T1568".to_owned()],
        indicators: vec![
            indicator(
                IndicatorType::Domain,
                "c2.example",
                Tlp::Green,
                &["cert-eu"],
            ),
            indicator(
                IndicatorType::Ipv4,
                "198.51.100.7",
                Tlp::Green,
                &["cert-eu", "misp"],
            ),
            indicator(
                IndicatorType::Ipv4,
                "203.0.113.0/24",
                Tlp::Clear,
                &["abuse"],
            ),
            indicator(
                IndicatorType::Ipv6,
                "2001:db8::dead:beef",
                Tlp::Amber,
                &["misp"],
            ),
            indicator(
                IndicatorType::Url,
                "http://c2.example/gate.php?id=1",
                Tlp::Amber,
                &["misp"],
            ),
            indicator(IndicatorType::Md5, MD5, Tlp::Clear, &["abuse"]),
            indicator(IndicatorType::Sha1, SHA1, Tlp::Clear, &["abuse"]),
            indicator(IndicatorType::Sha256, SHA256, Tlp::Green, &["cert-eu"]),
            indicator(IndicatorType::Sha512, SHA512, Tlp::Green, &["cert-eu"]),
            indicator(
                IndicatorType::Email,
                "invoice@c2.example",
                Tlp::Amber,
                &["misp"],
            ),
            indicator(
                IndicatorType::Filename,
                "invoice's.pdf.exe",
                Tlp::Amber,
                &["misp"],
            ),
        ],
        timeline: vec![
            timeline_entry(0, "Klinikum Nord", "health", "DE"),
            timeline_entry(40, "Réseau Sud", "energy", "FR"),
            timeline_entry(55, "Stadtwerke Ost", "energy", "DE"),
        ],
        recommended_actions: vec![
            "Block domain c2.example at the perimeter and on endpoints".to_owned(),
            "Hunt for c2.example in logs of the last 30 days and report sightings to your CSIRT"
                .to_owned(),
        ],
        reporting: ReportingClock::from_awareness(first_seen),
        tlp: Tlp::Amber,
        tlp_ceiling: Some(Tlp::Amber),
        pap: Pap::Green,
    }
}

fn objects(bundle: &Value) -> &Vec<Value> {
    bundle["objects"].as_array().expect("objects is an array")
}

fn objects_of_type<'b>(bundle: &'b Value, object_type: &str) -> Vec<&'b Value> {
    objects(bundle)
        .iter()
        .filter(|object| object["type"] == object_type)
        .collect()
}

fn str_of<'v>(value: &'v Value, key: &str) -> &'v str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {value}"))
}

/// Every `*_ref` and `*_refs` value anywhere inside `value`, with the key that holds it.
fn collect_refs<'v>(value: &'v Value, refs: &mut Vec<(String, &'v str)>) {
    match value {
        Value::Object(map) => {
            for (key, member) in map {
                if key.ends_with("_ref") {
                    if let Some(id) = member.as_str() {
                        refs.push((key.clone(), id));
                    }
                } else if key.ends_with("_refs") {
                    for id in member.as_array().into_iter().flatten() {
                        refs.push((key.clone(), id.as_str().unwrap_or("<not a string>")));
                    }
                }
                collect_refs(member, refs);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}

fn is_v4_shaped_uuid(uuid: &str) -> bool {
    let groups: Vec<&str> = uuid.split('-').collect();
    groups.iter().map(|group| group.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && uuid
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
        && groups[2].starts_with('4')
        && matches!(groups[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b')
}

#[test]
fn bundle_has_the_expected_objects() {
    let w = campaign_warning();
    let bundle = stix::to_bundle(&w);
    assert_eq!(bundle["type"], "bundle");
    assert!(
        bundle.get("spec_version").is_none(),
        "a 2.1 bundle has none"
    );
    let bundle_id = str_of(&bundle, "id");
    assert!(
        bundle_id
            .strip_prefix("bundle--")
            .is_some_and(is_v4_shaped_uuid),
        "{bundle_id}"
    );

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for object in objects(&bundle) {
        *counts.entry(str_of(object, "type")).or_default() += 1;
    }
    let indicators = w.indicators.len();
    let expected = BTreeMap::from([
        // CLEAR (shared objects), AMBER (the warning, and every indicator in it).
        ("marking-definition", 2),
        ("extension-definition", 1),
        // The producer and the three organisations.
        ("identity", 4),
        ("location", 2),
        ("incident", 1),
        ("indicator", indicators),
        ("sighting", indicators),
        // 3 located-at, 3 + 2 related-to, one indicates per indicator.
        ("relationship", 3 + 3 + 2 + indicators),
    ]);
    assert_eq!(counts, expected);

    let producer: Vec<&Value> = objects_of_type(&bundle, "identity")
        .into_iter()
        .filter(|identity| identity["identity_class"] == "system")
        .collect();
    assert_eq!(producer.len(), 1);
    assert_eq!(producer[0]["id"], stix::TOCSIN_IDENTITY_ID);
    assert_eq!(producer[0]["name"], "Tocsin");

    let organisations: BTreeMap<&str, &Value> = objects_of_type(&bundle, "identity")
        .into_iter()
        .filter(|identity| identity["identity_class"] == "organization")
        .map(|identity| (str_of(identity, "name"), identity))
        .collect();
    assert_eq!(
        organisations.keys().copied().collect::<Vec<_>>(),
        ["Klinikum Nord", "Réseau Sud", "Stadtwerke Ost"]
    );
    assert_eq!(
        organisations["Klinikum Nord"]["sectors"],
        json!(["healthcare"])
    );
    assert_eq!(
        organisations["Klinikum Nord"]["x_tocsin_nis2_sector"],
        "health"
    );
    assert_eq!(organisations["Réseau Sud"]["sectors"], json!(["energy"]));
    assert_eq!(
        organisations["Stadtwerke Ost"]["x_tocsin_nis2_sector"],
        "energy"
    );
    assert_eq!(organisations["Stadtwerke Ost"]["x_tocsin_nis2_annex"], "I");

    let countries: BTreeSet<&str> = objects_of_type(&bundle, "location")
        .into_iter()
        .map(|location| str_of(location, "country"))
        .collect();
    assert_eq!(countries, BTreeSet::from(["DE", "FR"]));

    // Organisations are located in their member states.
    let location_country: BTreeMap<&str, &str> = objects_of_type(&bundle, "location")
        .into_iter()
        .map(|location| (str_of(location, "id"), str_of(location, "country")))
        .collect();
    let organisation_name: BTreeMap<&str, &str> = organisations
        .iter()
        .map(|(name, identity)| (str_of(identity, "id"), *name))
        .collect();
    let located: BTreeSet<(&str, &str)> = objects_of_type(&bundle, "relationship")
        .into_iter()
        .filter(|relationship| relationship["relationship_type"] == "located-at")
        .map(|relationship| {
            (
                organisation_name[str_of(relationship, "source_ref")],
                location_country[str_of(relationship, "target_ref")],
            )
        })
        .collect();
    assert_eq!(
        located,
        BTreeSet::from([
            ("Klinikum Nord", "DE"),
            ("Réseau Sud", "FR"),
            ("Stadtwerke Ost", "DE")
        ])
    );
}

#[test]
fn incident_carries_incident_core_and_tocsin_properties() {
    let w = campaign_warning();
    let bundle = stix::to_bundle(&w);
    let incidents = objects_of_type(&bundle, "incident");
    let incident = incidents[0];
    assert_eq!(incident["name"], w.headline.as_str());
    assert!(str_of(incident, "description").starts_with("EXERCISE"));
    let core = &incident["extensions"][stix::INCIDENT_CORE_EXTENSION_ID];
    assert_eq!(
        core,
        &json!({
            "extension_type": "property-extension",
            "determination": "suspected",
            "investigation_status": "open",
        })
    );
    assert_eq!(
        incident["extensions"][stix::TOCSIN_EXTENSION_ID]["extension_type"],
        "toplevel-property-extension"
    );
    assert_eq!(incident["x_tocsin_warning_id"], w.warning_id.as_str());
    assert_eq!(incident["x_tocsin_version"], 2);
    assert_eq!(incident["x_tocsin_status"], "escalated");
    assert_eq!(incident["x_tocsin_severity"], "high");
    assert_eq!(incident["x_tocsin_suspected_malicious"], true);
    assert_eq!(incident["x_tocsin_cross_border"], true);
    assert_eq!(incident["x_tocsin_cross_sector"], true);
    assert_eq!(incident["x_tocsin_exercise"], true);
    assert_eq!(
        incident["x_tocsin_correlation_key"],
        "indicator:domain:c2.example"
    );
    assert_eq!(incident["x_tocsin_rsit_class"], "malicious-code");
    assert_eq!(incident["x_tocsin_rsit_type"], "c2-server");
    assert_eq!(incident["x_tocsin_pap"], "GREEN");
    assert_eq!(
        incident["x_tocsin_nis2_sectors"],
        json!(["energy", "health"])
    );
    assert_eq!(incident["x_tocsin_member_states"], json!(["DE", "FR"]));
    assert_eq!(
        incident["x_tocsin_eu_taxonomy"],
        json!({
            "root_cause": "malicious-actions",
            "threat_severity": "high",
            "impact_severity": "yellow",
            "outlook": "worsening",
        })
    );
    let reporting = &incident["x_tocsin_reporting"];
    assert_eq!(reporting["stage"], "early-warning");
    assert_eq!(reporting["aware_at"], "2026-03-02T08:00:00.000Z");
    assert_eq!(reporting["early_warning_due"], "2026-03-03T08:00:00.000Z");
    assert_eq!(reporting["notification_due"], "2026-03-05T08:00:00.000Z");
    assert_eq!(
        incident["external_references"],
        json!([
            {"source_name": "mitre-attack", "external_id": "T1071.004"},
            {"source_name": "mitre-attack", "external_id": "T1568"},
        ])
    );

    // Every x_tocsin_* property used anywhere is declared by the Tocsin extension.
    let declared: BTreeSet<&str> = stix::TOCSIN_PROPERTIES.iter().copied().collect();
    let extension = objects_of_type(&bundle, "extension-definition")[0];
    assert_eq!(
        extension["extension_properties"],
        json!(stix::TOCSIN_PROPERTIES)
    );
    for object in objects(&bundle) {
        let map = object.as_object().expect("object");
        let custom: Vec<&String> = map.keys().filter(|k| k.starts_with("x_")).collect();
        for key in &custom {
            assert!(declared.contains(key.as_str()), "{key} is not declared");
        }
        if !custom.is_empty() {
            assert_eq!(
                object["extensions"][stix::TOCSIN_EXTENSION_ID]["extension_type"],
                "toplevel-property-extension",
                "{} uses x_tocsin_* without the extension",
                object["id"]
            );
        }
    }
}

#[test]
fn investigation_status_follows_the_warning_status() {
    for (status, expected) in [
        (WarningStatus::New, "new"),
        (WarningStatus::Update, "open"),
        (WarningStatus::Escalated, "open"),
        (WarningStatus::Closed, "closed"),
    ] {
        let mut w = campaign_warning();
        w.status = status;
        let bundle = stix::to_bundle(&w);
        let incident = objects_of_type(&bundle, "incident")[0];
        assert_eq!(
            incident["extensions"][stix::INCIDENT_CORE_EXTENSION_ID]["investigation_status"],
            expected
        );
    }
}

#[test]
fn indicators_have_patterns_markings_and_sightings() {
    let w = campaign_warning();
    let bundle = stix::to_bundle(&w);
    let patterns: BTreeMap<&str, (&str, &Value)> = objects_of_type(&bundle, "indicator")
        .into_iter()
        .map(|indicator| {
            assert_eq!(indicator["pattern_type"], "stix");
            assert_eq!(indicator["indicator_types"], json!(["malicious-activity"]));
            assert_eq!(indicator["valid_from"], "2026-03-02T08:00:00.000Z");
            (
                str_of(indicator, "pattern"),
                (str_of(indicator, "id"), &indicator["object_marking_refs"]),
            )
        })
        .collect();
    // Each indicator says what the AMBER warning saw: marked AMBER whatever its own label
    // (CLEAR, GREEN or AMBER here), as its sighting and relationship are.
    assert_eq!(w.tlp, Tlp::Amber);
    let amber = json!([Tlp::Amber.stix_marking_id()]);
    for pattern in [
        "[domain-name:value = 'c2.example']",
        "[ipv4-addr:value = '198.51.100.7']",
        "[ipv4-addr:value = '203.0.113.0/24']",
        "[ipv6-addr:value = '2001:db8::dead:beef']",
        "[url:value = 'http://c2.example/gate.php?id=1']",
        "[file:hashes.MD5 = '44d88612fea8a8f36de82e1278abb02f']",
        "[file:hashes.'SHA-1' = '3395856ce81f2b7382dee72602f798b642f14140']",
        "[email-addr:value = 'invoice@c2.example']",
        r"[file:name = 'invoice\'s.pdf.exe']",
    ] {
        let (_, refs) = patterns
            .get(pattern)
            .unwrap_or_else(|| panic!("no indicator with {pattern}: {patterns:#?}"));
        assert_eq!(*refs, &amber, "{pattern}");
    }
    assert!(patterns.contains_key(format!("[file:hashes.'SHA-256' = '{SHA256}']").as_str()));
    assert!(patterns.contains_key(format!("[file:hashes.'SHA-512' = '{SHA512}']").as_str()));

    let organisation_ids: BTreeSet<&str> = objects_of_type(&bundle, "identity")
        .into_iter()
        .filter(|identity| identity["identity_class"] == "organization")
        .map(|identity| str_of(identity, "id"))
        .collect();
    let indicator_ids: BTreeSet<&str> = patterns.values().map(|(id, _)| *id).collect();
    let sighted: BTreeSet<&str> = objects_of_type(&bundle, "sighting")
        .into_iter()
        .map(|sighting| {
            assert_eq!(sighting["count"], 17);
            assert_eq!(sighting["first_seen"], "2026-03-02T08:00:00.000Z");
            assert_eq!(sighting["last_seen"], "2026-03-02T09:30:00.000Z");
            let where_sighted: BTreeSet<&str> = sighting["where_sighted_refs"]
                .as_array()
                .expect("where_sighted_refs")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(where_sighted, organisation_ids);
            str_of(sighting, "sighting_of_ref")
        })
        .collect();
    assert_eq!(sighted, indicator_ids);

    let incident_id = str_of(objects_of_type(&bundle, "incident")[0], "id");
    let indicating: BTreeSet<&str> = objects_of_type(&bundle, "relationship")
        .into_iter()
        .filter(|relationship| relationship["relationship_type"] == "indicates")
        .map(|relationship| {
            assert_eq!(relationship["target_ref"], incident_id);
            str_of(relationship, "source_ref")
        })
        .collect();
    assert_eq!(indicating, indicator_ids);
}

/// `w` as issued under a policy that names its issuer.
fn issued_by_a_coordination_centre(mut w: EarlyWarning) -> EarlyWarning {
    w.issuer = Some(Issuer::new(
        "CSIRTs Network coordination centre".to_owned(),
        None,
        Some("mailto:cc@csirts.example".to_owned()),
    ));
    w
}

#[test]
fn renderings_name_the_issuer_as_their_author() {
    let tocsin = campaign_warning();
    let w = issued_by_a_coordination_centre(campaign_warning());
    let issuer = w.issuer.clone().expect("an issuer");
    let issuer_id = stix::issuer_identity_id(&issuer);
    // Another name or contact under the same UUID is another identity (its timestamps are
    // fixed, so it could not be a version of this one).
    let mut renamed = issuer.clone();
    renamed.name.push_str(" (CSIRTs Network)");
    let mut reached = issuer.clone();
    reached.contact = None;
    let ids = [&issuer, &renamed, &reached].map(stix::issuer_identity_id);
    assert!(
        ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2],
        "{ids:?}"
    );
    let bundle = stix::to_bundle(&w);
    let identity = objects(&bundle)
        .iter()
        .find(|o| o["id"] == issuer_id.as_str())
        .expect("the issuer's identity is in the bundle");
    assert_eq!(identity["identity_class"], "organization");
    assert_eq!(identity["name"], "CSIRTs Network coordination centre");
    assert_eq!(identity["contact_information"], "mailto:cc@csirts.example");
    assert_eq!(
        identity["object_marking_refs"],
        json!([Tlp::Clear.stix_marking_id()])
    );
    // The warning's objects are the issuer's; the Tocsin extension stays Tocsin's.
    let mut authored = 0;
    for object in objects(&bundle) {
        let id = str_of(object, "id");
        match str_of(object, "type") {
            "marking-definition" => {}
            "extension-definition" => {
                assert_eq!(object["created_by_ref"], stix::TOCSIN_IDENTITY_ID)
            }
            "identity" if id == issuer_id || id == stix::TOCSIN_IDENTITY_ID => {}
            _ => {
                assert_eq!(object["created_by_ref"], issuer_id.as_str(), "{id}");
                authored += 1;
            }
        }
    }
    assert!(authored > 20, "only {authored} objects");
    // Another author's objects are other objects (only a creator versions its own); every
    // version of the issuer's warning keeps their ids.
    let ids_of = |bundle: &Value| -> BTreeSet<String> {
        objects(bundle)
            .iter()
            .filter(|o| o["type"] != "marking-definition")
            .map(|o| str_of(o, "id").to_owned())
            .collect()
    };
    let by_tocsin = ids_of(&stix::to_bundle(&tocsin));
    let by_issuer = ids_of(&bundle);
    let shared: Vec<&String> = by_tocsin.intersection(&by_issuer).collect();
    assert_eq!(
        shared,
        [stix::TOCSIN_EXTENSION_ID, stix::TOCSIN_IDENTITY_ID],
        "only the shared objects are common"
    );
    let mut next = w.clone();
    next.version += 1;
    next.issued_at = Timestamp(w.issued_at.millis() + 60_000);
    assert_eq!(ids_of(&stix::to_bundle(&next)), by_issuer);

    // MISP: the issuer is the creator organisation, by name and UUID.
    let event = &misp::to_event(&w)["Event"];
    assert_eq!(
        event["Orgc"],
        json!({"name": "CSIRTs Network coordination centre", "uuid": issuer.uuid})
    );
    let anonymous = &misp::to_event(&tocsin)["Event"];
    assert!(anonymous.get("Orgc").is_none(), "no issuer, no Orgc");
    assert_ne!(event["uuid"], anonymous["uuid"]);
}

#[test]
fn every_reference_resolves_within_the_bundle() {
    for w in [
        campaign_warning(),
        issued_by_a_coordination_centre(campaign_warning()),
    ] {
        let bundle = stix::to_bundle(&w);
        let mut ids = BTreeSet::new();
        for object in objects(&bundle) {
            assert!(
                ids.insert(str_of(object, "id")),
                "duplicate id {}",
                object["id"]
            );
        }
        let mut refs = Vec::new();
        for object in objects(&bundle) {
            collect_refs(object, &mut refs);
        }
        assert!(refs.len() > 50, "only {} references", refs.len());
        for (key, id) in refs {
            assert!(ids.contains(id), "{key} {id} is not in the bundle");
        }
    }
}

#[test]
fn objects_have_the_common_properties() {
    let w = campaign_warning();
    let bundle = stix::to_bundle(&w);
    let issued_at = w.issued_at.to_string();
    assert_eq!(issued_at, "2026-03-02T09:30:00.000Z");
    // Created when the warning's first version was issued, in every version.
    let first_issued_at = "2026-03-02T09:00:00.000Z";
    let shared = [stix::TOCSIN_IDENTITY_ID, stix::TOCSIN_EXTENSION_ID];
    for object in objects(&bundle) {
        let object_type = str_of(object, "type");
        let id = str_of(object, "id");
        assert_eq!(object["spec_version"], "2.1", "{id}");
        let uuid = id
            .strip_prefix(object_type)
            .and_then(|rest| rest.strip_prefix("--"))
            .unwrap_or_else(|| panic!("{id} does not start with {object_type}--"));
        assert!(is_v4_shaped_uuid(uuid), "{id}");
        if object_type == "marking-definition" {
            continue;
        }
        let refs = object["object_marking_refs"]
            .as_array()
            .unwrap_or_else(|| panic!("{id} has no object_marking_refs"));
        assert_eq!(refs.len(), 1, "{id}");
        if shared.contains(&id) {
            assert_eq!(refs[0], Tlp::Clear.stix_marking_id(), "{id}");
            continue;
        }
        assert_eq!(object["created"], first_issued_at, "{id}");
        assert_eq!(object["modified"], issued_at.as_str(), "{id}");
        assert_eq!(object["created_by_ref"], stix::TOCSIN_IDENTITY_ID, "{id}");
        // The warning is AMBER and no indicator is stricter.
        assert_eq!(refs[0], Tlp::Amber.stix_marking_id(), "{id}");
    }
}

#[test]
fn tlp_2_0_markings_are_the_pinned_ones() {
    // A warning of each label carries the shared objects' CLEAR and its own label (every
    // indicator in it is marked at least as strictly), each definition the pinned one.
    for (i, (name, level, id)) in PINNED_TLP_2_0_MARKINGS.iter().enumerate() {
        let tlp = [
            Tlp::Clear,
            Tlp::Green,
            Tlp::Amber,
            Tlp::AmberStrict,
            Tlp::Red,
        ][i];
        let mut w = campaign_warning();
        w.tlp = tlp;
        // A warning's label is at least each of its inputs' (the correlator's rule).
        for indicator in &mut w.indicators {
            indicator.tlp = Tlp::Clear;
        }
        let bundle = stix::to_bundle(&w);
        let markings = objects_of_type(&bundle, "marking-definition");
        let expected = json!({
            "type": "marking-definition",
            "spec_version": "2.1",
            "id": id,
            "created": "2022-10-01T00:00:00.000Z",
            "name": name,
            "extensions": {
                "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d": {
                    "extension_type": "property-extension",
                    "tlp_2_0": level,
                }
            }
        });
        assert_eq!(markings.last(), Some(&&expected), "{name}: {markings:#?}");
        let carried: Vec<&str> = markings
            .into_iter()
            .map(|marking| str_of(marking, "id"))
            .collect();
        let want: Vec<&str> = if tlp == Tlp::Clear {
            vec![PINNED_TLP_2_0_MARKINGS[0].2]
        } else {
            vec![PINNED_TLP_2_0_MARKINGS[0].2, id]
        };
        assert_eq!(carried, want, "{name}");
    }
    assert_eq!(
        stix::tlp_marking_definition(Tlp::Green)["id"],
        PINNED_TLP_2_0_MARKINGS[1].2
    );
}

#[test]
fn renderings_are_deterministic() {
    let first = serde_json::to_string(&stix::to_bundle(&campaign_warning())).expect("json");
    let second = serde_json::to_string(&stix::to_bundle(&campaign_warning())).expect("json");
    assert_eq!(first, second);
    let first = serde_json::to_string(&misp::to_event(&campaign_warning())).expect("json");
    let second = serde_json::to_string(&misp::to_event(&campaign_warning())).expect("json");
    assert_eq!(first, second);
}

/// A warning's versions are versions of the same STIX objects: the same ids, `created` the
/// first version's date, `modified` the version's (STIX 2.1 §3.6), so that OpenCTI or a
/// TAXII collection keeps one incident per warning, updated in place. Each bundle has an
/// id of its own, and another audience's rendering other objects. MISP, too, updates one
/// event in place.
#[test]
fn versions_of_a_warning_are_versions_of_its_objects() {
    let mut next = campaign_warning();
    next.version = 3;
    next.issued_at = at(9, 45);
    let v2 = stix::to_bundle(&campaign_warning());
    let v3 = stix::to_bundle(&next);
    assert_ne!(v2["id"], v3["id"]);
    let dated = |bundle: &Value| -> BTreeMap<String, (Value, Value)> {
        objects(bundle)
            .iter()
            .map(|object| {
                let dates = (object["created"].clone(), object["modified"].clone());
                (str_of(object, "id").to_owned(), dates)
            })
            .collect()
    };
    let (v2, v3) = (dated(&v2), dated(&v3));
    assert_eq!(
        v2.keys().collect::<Vec<_>>(),
        v3.keys().collect::<Vec<_>>(),
        "the two versions have different objects"
    );
    let shared = [stix::TOCSIN_IDENTITY_ID, stix::TOCSIN_EXTENSION_ID];
    let mut versioned = 0;
    for (id, (created, modified)) in &v3 {
        let (created_before, modified_before) = &v2[id];
        assert_eq!(created, created_before, "{id}");
        if id.starts_with("marking-definition--") || shared.contains(&id.as_str()) {
            assert_eq!(modified, modified_before, "{id}");
            continue;
        }
        assert_eq!(created, "2026-03-02T09:00:00.000Z", "{id}");
        assert_eq!(modified_before, "2026-03-02T09:30:00.000Z", "{id}");
        assert_eq!(modified, "2026-03-02T09:45:00.000Z", "{id}");
        versioned += 1;
    }
    assert!(versioned > 30, "only {versioned} versioned objects");

    // Another rendering of a version (another audience, or the same under another
    // ceiling) shares only the fixed objects with this one (the two TLP markings, the
    // producer, the extension): its content differs under the same `modified`, and in MISP
    // it is another event. A warning from before `first_issued_at` existed, which has no
    // date common to its versions, keeps ids per version, created at its own date: no id
    // gets two `created`.
    let mut strategic = campaign_warning();
    strategic.audience = Audience::Strategic;
    let mut strict = campaign_warning();
    strict.tlp_ceiling = Some(Tlp::AmberStrict);
    let mut unknown_first = campaign_warning();
    unknown_first.first_issued_at = None;
    let mut unknown_first_next = next.clone();
    unknown_first_next.first_issued_at = None;
    let unknown_first_ids = dated(&stix::to_bundle(&unknown_first));
    for (what, ids, other) in [
        ("strategic", &v2, &strategic),
        ("AMBER+STRICT", &v2, &strict),
        ("without first_issued_at", &v2, &unknown_first),
        (
            "the next version without first_issued_at",
            &unknown_first_ids,
            &unknown_first_next,
        ),
    ] {
        let other_ids = dated(&stix::to_bundle(other));
        let common: Vec<&String> = other_ids
            .keys()
            .filter(|id| ids.contains_key(*id))
            .collect();
        assert!(
            common
                .iter()
                .all(|id| id.starts_with("marking-definition--") || shared.contains(&id.as_str())),
            "{what}: {common:?}"
        );
        assert_eq!(common.len(), 4, "{what}: {common:?}");
    }
    for other in [&strategic, &strict] {
        assert_ne!(
            misp::to_event(other)["Event"]["uuid"],
            misp::to_event(&campaign_warning())["Event"]["uuid"],
            "{:?} {:?}",
            other.audience,
            other.tlp_ceiling
        );
    }
    for object in objects(&stix::to_bundle(&unknown_first)) {
        let id = str_of(object, "id");
        if object["created_by_ref"] == stix::TOCSIN_IDENTITY_ID && !shared.contains(&id) {
            assert_eq!(object["created"], "2026-03-02T09:30:00.000Z", "{id}");
            assert_eq!(object["modified"], "2026-03-02T09:30:00.000Z", "{id}");
        }
    }

    // MISP: the same event and attributes in each version, updated in place.
    let event_v2 = misp::to_event(&campaign_warning());
    let event_v3 = misp::to_event(&next);
    assert_eq!(event_v2["Event"]["uuid"], event_v3["Event"]["uuid"]);
    assert_eq!(
        event_v2["Event"]["Attribute"]
            .as_array()
            .expect("attributes")
            .iter()
            .map(|attribute| &attribute["uuid"])
            .collect::<Vec<_>>(),
        event_v3["Event"]["Attribute"]
            .as_array()
            .expect("attributes")
            .iter()
            .map(|attribute| &attribute["uuid"])
            .collect::<Vec<_>>()
    );
}

#[test]
fn sighting_count_is_capped_and_where_sighted_falls_back_to_member_states() {
    let mut w = campaign_warning();
    w.detection_count = 5_000_000_000;
    // What an operational rendering would name: no organisations.
    w.affected.organisations.clear();
    for entry in &mut w.timeline {
        entry.organisation = None;
    }
    let bundle = stix::to_bundle(&w);
    assert!(objects_of_type(&bundle, "identity")
        .iter()
        .all(|identity| identity["identity_class"] == "system"));
    let location_ids: BTreeSet<&str> = objects_of_type(&bundle, "location")
        .into_iter()
        .map(|location| str_of(location, "id"))
        .collect();
    for sighting in objects_of_type(&bundle, "sighting") {
        assert_eq!(sighting["count"], stix::STIX_SIGHTING_COUNT_MAX);
        let where_sighted: BTreeSet<&str> = sighting["where_sighted_refs"]
            .as_array()
            .expect("where_sighted_refs")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(where_sighted, location_ids);
    }
}

#[test]
fn misp_event_has_the_expected_tags_and_attributes() {
    let w = campaign_warning();
    let rendered = misp::to_event(&w);
    let event = &rendered["Event"];
    assert!(is_v4_shaped_uuid(str_of(event, "uuid")));
    assert_eq!(event["info"], w.headline.as_str());
    assert_eq!(event["date"], "2026-03-02");
    assert_eq!(
        event["timestamp"],
        (w.issued_at.millis() / 1000).to_string().as_str()
    );
    assert_eq!(event["published"], false);
    assert_eq!(event["threat_level_id"], "1");
    assert_eq!(event["analysis"], "1");
    assert_eq!(event["distribution"], "0");
    assert_eq!(event["sharing_group_id"], "0");

    let tags: Vec<&str> = event["Tag"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|tag| str_of(tag, "name"))
        .collect();
    for expected in [
        "tlp:amber",
        "PAP:GREEN",
        "rsit:malicious-code=\"c2-server\"",
        "nis2:impact-sectors-impacted=\"energy\"",
        "nis2:impact-sectors-impacted=\"health\"",
        "nis2:nature-root-cause=\"malicious-actions\"",
        "nis2:nature-severity=\"high\"",
        "nis2:impact-severity=\"yellow\"",
        "nis2:impact-outlook=\"worsening\"",
        "tocsin:exercise",
    ] {
        assert!(tags.contains(&expected), "{expected} missing from {tags:?}");
    }
    assert!(!tags.iter().any(|tag| tag.starts_with("misp-galaxy:")));
    assert!(!tags.contains(&"tlp:white"));

    // (type, category, value, tlp tag)
    let attributes: Vec<(&str, &str, &str, &str)> = event["Attribute"]
        .as_array()
        .expect("attributes")
        .iter()
        .map(|attribute| {
            assert_eq!(attribute["to_ids"], true);
            assert!(is_v4_shaped_uuid(str_of(attribute, "uuid")));
            let tags = attribute["Tag"].as_array().expect("attribute tags");
            assert_eq!(tags.len(), 1);
            (
                str_of(attribute, "type"),
                str_of(attribute, "category"),
                str_of(attribute, "value"),
                str_of(&tags[0], "name"),
            )
        })
        .collect();
    let network = "Network activity";
    let payload = "Payload delivery";
    assert_eq!(
        attributes,
        [
            ("domain", network, "c2.example", "tlp:green"),
            ("ip-dst", network, "198.51.100.7", "tlp:green"),
            ("ip-dst", network, "203.0.113.0/24", "tlp:clear"),
            ("ip-dst", network, "2001:db8::dead:beef", "tlp:amber"),
            (
                "url",
                network,
                "http://c2.example/gate.php?id=1",
                "tlp:amber"
            ),
            ("md5", payload, MD5, "tlp:clear"),
            ("sha1", payload, SHA1, "tlp:clear"),
            ("sha256", payload, SHA256, "tlp:green"),
            ("sha512", payload, SHA512, "tlp:green"),
            ("email-src", network, "invoice@c2.example", "tlp:amber"),
            ("filename", payload, "invoice's.pdf.exe", "tlp:amber"),
        ]
    );
}

#[test]
fn misp_enums_follow_severity_status_and_tlp() {
    let mut w = campaign_warning();
    w.severity = Severity::Low;
    w.status = WarningStatus::Closed;
    w.tlp = Tlp::Green;
    w.exercise = false;
    w.suspected_malicious = false;
    w.headline = format!("line one\nline two {}", "x".repeat(300));
    let rendered = misp::to_event(&w);
    let event = &rendered["Event"];
    assert_eq!(event["threat_level_id"], "3");
    assert_eq!(event["analysis"], "2");
    assert_eq!(event["distribution"], "1");
    let info = str_of(event, "info");
    assert!(!info.contains('\n'));
    assert_eq!(info.chars().count(), misp::MISP_INFO_MAX_CHARS);
    let tags: Vec<&str> = event["Tag"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|tag| str_of(tag, "name"))
        .collect();
    assert!(tags.contains(&"tlp:green"));
    assert!(!tags.contains(&misp::EXERCISE_TAG));
    assert!(!tags
        .iter()
        .any(|tag| tag.starts_with("nis2:nature-root-cause")));
    w.severity = Severity::Medium;
    assert_eq!(misp::to_event(&w)["Event"]["threat_level_id"], "2");
    w.severity = Severity::Critical;
    assert_eq!(misp::to_event(&w)["Event"]["threat_level_id"], "1");
}

/// Runs `tests/reference/validate_stix.py` with the Python named by
/// `TOCSIN_STIX_VALIDATOR_PYTHON`; skipped (and says so) without it.
#[test]
fn stix_bundle_passes_the_oasis_validator() {
    let Some(python) = std::env::var_os("TOCSIN_STIX_VALIDATOR_PYTHON") else {
        println!(
            "SKIPPED stix_bundle_passes_the_oasis_validator: set TOCSIN_STIX_VALIDATOR_PYTHON to \
             a Python with the stix2-validator package (python3 -m venv /tmp/stixval && \
             /tmp/stixval/bin/pip install stix2-validator) to run it"
        );
        return;
    };
    let script: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "tests",
        "reference",
        "validate_stix.py",
    ]
    .iter()
    .collect();
    let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tocsin-stix-validator");
    std::fs::create_dir_all(&directory).expect("create the temporary directory");

    // The campaign warning, and the same under TLP:RED with every label and no organisations.
    let mut restricted = campaign_warning();
    restricted.tlp = Tlp::Red;
    restricted.affected.organisations.clear();
    for entry in &mut restricted.timeline {
        entry.organisation = None;
    }
    let labels = [
        Tlp::Clear,
        Tlp::Green,
        Tlp::Amber,
        Tlp::AmberStrict,
        Tlp::Red,
    ];
    for (indicator, tlp) in restricted.indicators.iter_mut().zip(labels.iter().cycle()) {
        indicator.tlp = *tlp;
    }
    let mut files = Vec::new();
    let issued = issued_by_a_coordination_centre(campaign_warning());
    for (name, warning) in [
        ("campaign", campaign_warning()),
        ("restricted", restricted),
        ("issued", issued),
    ] {
        let path = directory.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(&stix::to_bundle(&warning)).expect("json");
        std::fs::write(&path, text).expect("write the bundle");
        files.push(path);
    }

    let output = Command::new(&python)
        .arg(&script)
        .args(&files)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {python:?} {}: {error}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "stix2-validator found errors ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for file in &files {
        assert!(
            stdout.contains(&format!("{}: valid STIX 2.1", file.display())),
            "no verdict for {}:\n{stdout}",
            file.display()
        );
    }
}
