//! Hand-written scenarios with exact expected warnings.

use tocsin_core::{
    Context, Detection, DetectionKind, IndicatorType, Level, MatchedIndicator, RuleRef, Sector,
    Severity, Timestamp, Tlp, WarningStatus, DETECTION_SCHEMA,
};

use crate::{Correlator, CorrelatorConfig};

const H: i64 = 3_600_000;

fn t0() -> Timestamp {
    Timestamp::from_civil(2026, 3, 2, 8, 0, 0)
}

fn det(id: &str, org: &str, sector: &str, ms: &str, at: i64, tlp: Tlp) -> Detection {
    Detection {
        schema: DETECTION_SCHEMA.into(),
        id: id.into(),
        kind: DetectionKind::Indicator,
        rule: RuleRef {
            id: "ioc:cert".into(),
            title: "Indicator from feed cert".into(),
            level: Level::High,
        },
        event_time: Timestamp(t0().0 + at),
        context: Context {
            sector: Some(sector.parse().unwrap()),
            member_state: Some(ms.parse().unwrap()),
            organisation: Some(org.into()),
            sensor: None,
        },
        entities: vec![],
        indicators: vec![MatchedIndicator {
            kind: IndicatorType::Domain,
            value: "c2.example".into(),
            feed: "cert".into(),
            tlp,
            field: "QueryName".into(),
        }],
        taxonomy: None,
        attack: vec![],
        tags: vec![],
        correlation_keys: vec!["indicator:domain:c2.example".into()],
        tlp,
        source: None,
    }
}

#[test]
fn slow_campaign_across_member_states_escalates_once_per_change() {
    let mut c = Correlator::new(CorrelatorConfig::default());
    let mut out = Vec::new();
    c.push(
        &det("d1", "Klinikum Nord", "health", "DE", 0, Tlp::Green),
        &mut out,
    );
    assert!(out.is_empty(), "one organisation is not a warning");
    c.push(
        &det("d2", "Klinikum Nord", "health", "DE", H, Tlp::Green),
        &mut out,
    );
    assert!(out.is_empty());
    c.push(
        &det("d3", "Réseau Sud", "energy", "FR", 2 * H, Tlp::Green),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    let w = &out[0];
    assert_eq!((w.version, w.status), (1, WarningStatus::New));
    assert!(w.cross_border && w.cross_sector && w.suspected_malicious);
    assert_eq!(w.affected.organisation_count, 2);
    // Annex I sectors raise the default policy's medium to high.
    assert_eq!(w.severity, Severity::High);
    assert_eq!(w.indicators.len(), 1);
    assert_eq!(w.issued_at, Timestamp(t0().0 + 2 * H));
    assert_eq!(w.first_seen, t0());

    // Same breadth again: no new version.
    c.push(
        &det("d4", "Réseau Sud", "energy", "FR", 3 * H, Tlp::Green),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    // A duplicate detection id changes nothing.
    c.push(
        &det("d3", "Réseau Sud", "energy", "FR", 2 * H, Tlp::Green),
        &mut out,
    );
    assert_eq!(c.stats().duplicates, 1);
    // A third member state and sector: a new version of the same warning.
    c.push(
        &det(
            "d5",
            "Ministero",
            "public-administration",
            "IT",
            4 * H,
            Tlp::Green,
        ),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].warning_id, out[0].warning_id);
    assert_eq!(out[1].version, 2);
    assert_eq!(out[1].status, WarningStatus::Update);
    assert_eq!(
        out[1].affected.sectors,
        vec![Sector::Energy, Sector::Health, Sector::PublicAdministration]
    );
    assert_eq!(out[1].timeline.len(), 3);
    assert_eq!(
        out[1].timeline[0].organisation.as_deref(),
        Some("Klinikum Nord")
    );
}

#[test]
fn benign_burst_in_one_organisation_never_warns() {
    let mut c = Correlator::new(CorrelatorConfig::default());
    let mut out = Vec::new();
    for i in 0..1000 {
        c.push(
            &det(
                &format!("d{i}"),
                "Org A",
                "health",
                "DE",
                i * 1000,
                Tlp::Green,
            ),
            &mut out,
        );
    }
    assert!(out.is_empty());
    assert_eq!(c.candidates().len(), 0);
}

#[test]
fn windows_expire_late_detections_are_counted_and_red_is_withheld() {
    let mut c = Correlator::new(CorrelatorConfig::default());
    let mut out = Vec::new();
    c.push(&det("a1", "A", "health", "DE", 0, Tlp::Green), &mut out);
    c.push(&det("a2", "B", "health", "DE", H, Tlp::Green), &mut out);
    assert_eq!(out.len(), 1);
    // 7 h later: the 6 h window is over, a new incident with a new id starts.
    c.push(&det("b1", "A", "health", "DE", 7 * H, Tlp::Green), &mut out);
    c.push(&det("b2", "C", "health", "AT", 8 * H, Tlp::Green), &mut out);
    assert_eq!(out.len(), 2);
    assert_ne!(out[0].warning_id, out[1].warning_id);
    // Far older than the current window: late.
    c.push(
        &det("old", "D", "energy", "FR", -2 * H, Tlp::Green),
        &mut out,
    );
    assert_eq!(c.stats().late, 1);
    assert_eq!(out.len(), 2);

    // A TLP:RED input is never rendered for the technical audience (ceiling AMBER).
    let mut c = Correlator::new(CorrelatorConfig::default());
    let mut out = Vec::new();
    c.push(&det("r1", "A", "health", "DE", 0, Tlp::Red), &mut out);
    c.push(&det("r2", "B", "energy", "FR", 1, Tlp::Green), &mut out);
    assert!(out.is_empty());
    assert_eq!(c.stats().withheld, 1);
}

#[test]
fn same_input_same_output() {
    let run = || {
        let mut c = Correlator::new(CorrelatorConfig::default());
        let mut out = Vec::new();
        for (i, (org, s, m)) in [
            ("A", "health", "DE"),
            ("B", "energy", "FR"),
            ("C", "health", "IT"),
        ]
        .iter()
        .enumerate()
        {
            c.push(
                &det(&format!("d{i}"), org, s, m, i as i64 * H, Tlp::Amber),
                &mut out,
            );
        }
        serde_json::to_string(&out).unwrap()
    };
    assert_eq!(run(), run());
}
