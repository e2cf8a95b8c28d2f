//! Hand-written scenarios with exact expected warnings.

use tocsin_core::{
    Detection, EarlyWarning, ImpactSeverity, Level, Sector, Severity, Timestamp, Tlp, WarningStatus,
};

use crate::{Correlator, CorrelatorConfig};
use tocsin_core::Audience;

const H: i64 = 3_600_000;

fn t0() -> Timestamp {
    Timestamp::from_civil(2026, 3, 2, 8, 0, 0)
}

fn det(id: &str, org: &str, sector: &str, ms: &str, at: i64, tlp: Tlp) -> Detection {
    let mut d = tocsin_core::samples::indicator_detection(
        id.into(),
        "c2.example",
        "cert",
        org,
        Timestamp(t0().0 + at),
    );
    d.context.sector = Some(sector.parse().unwrap());
    d.context.member_state = Some(ms.parse().unwrap());
    d.indicators[0].tlp = tlp;
    d.tlp = tlp;
    d
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
    // 7 h later: the 6 h window is over; its warning is closed and a new incident with a
    // new id starts.
    c.push(&det("b1", "A", "health", "DE", 7 * H, Tlp::Green), &mut out);
    c.push(&det("b2", "C", "health", "AT", 8 * H, Tlp::Green), &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(out[1].status, WarningStatus::Closed);
    assert_eq!(out[1].warning_id, out[0].warning_id);
    assert_ne!(out[0].warning_id, out[2].warning_id);
    // Far older than the current window: late.
    c.push(
        &det("old", "D", "energy", "FR", -2 * H, Tlp::Green),
        &mut out,
    );
    assert_eq!(c.stats().late, 1);
    assert_eq!(out.len(), 3);
    // A redelivered copy of the closed window's detection (at-least-once delivery): it
    // belongs to that window, so it is late here, not a new organisation of this one.
    c.push(&det("a2", "B", "health", "DE", H, Tlp::Green), &mut out);
    assert_eq!(c.stats().late, 2);
    assert_eq!(out.len(), 3);

    // The canonical warning carries the TLP:RED organisation; no AMBER rendering may: with
    // it removed, one organisation is left, which is no warning at all.
    let mut c = Correlator::new(CorrelatorConfig::default());
    let mut out = Vec::new();
    c.push(&det("r1", "A", "health", "DE", 0, Tlp::Red), &mut out);
    c.push(&det("r2", "B", "energy", "FR", 1, Tlp::Green), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].tlp, Tlp::Red);
    let policy = tocsin_rules::EscalationPolicy::default();
    for audience in [
        Audience::Technical,
        Audience::Operational,
        Audience::Strategic,
    ] {
        assert!(crate::audience::render(&out[0], audience, Tlp::AmberStrict, &policy).is_none());
    }
    assert!(crate::audience::render(&out[0], Audience::Technical, Tlp::Red, &policy).is_some());
}

/// A full correlator refuses new keys until a window can expire, then makes room by
/// dropping the expired ones; the window's end is known from the last look at the keys.
#[test]
fn a_full_correlator_refuses_new_keys_until_a_window_expires() {
    let policy = tocsin_rules::EscalationPolicy {
        window: tocsin_core::DurationMs(H),
        ..Default::default()
    };
    let mut c = Correlator::new(CorrelatorConfig {
        policy,
        max_keys: 3,
        ..CorrelatorConfig::default()
    });
    let keyed = |key: &str, at: i64| {
        let mut d = det(&format!("{key}-{at}"), "A", "health", "DE", at, Tlp::Green);
        d.correlation_keys = vec![format!("indicator:domain:{key}")];
        d
    };
    let mut out = Vec::new();
    for (key, at) in [("a", 0), ("b", 10 * 60_000), ("c", 20 * 60_000)] {
        c.push(&keyed(key, at), &mut out);
    }
    assert_eq!(c.live_keys(), 3);
    // Before a's window ends (60 minutes): refused, twice.
    c.push(&keyed("d", 30 * 60_000), &mut out);
    c.push(&keyed("e", 59 * 60_000), &mut out);
    assert_eq!((c.stats().refused_keys, c.stats().evicted), (2, 0));
    // At 60 minutes a's window is over: it goes, f takes its place.
    c.push(&keyed("f", 60 * 60_000), &mut out);
    assert_eq!((c.stats().refused_keys, c.stats().evicted), (2, 1));
    assert_eq!(c.live_keys(), 3);
    // Full again; b's window ends at 70 minutes.
    c.push(&keyed("g", 70 * 60_000 - 1), &mut out);
    assert_eq!(c.stats().refused_keys, 3);
    c.push(&keyed("h", 70 * 60_000), &mut out);
    assert_eq!((c.stats().refused_keys, c.stats().evicted), (3, 2));
    assert!(out.is_empty(), "one organisation never warns");
}

/// A key added to a full correlator with an old event time (a late sensor) can expire
/// before the windows the last look at the keys saw: the next new key finds room then.
#[test]
fn a_key_added_in_the_past_expires_in_its_own_time() {
    let policy = tocsin_rules::EscalationPolicy {
        window: tocsin_core::DurationMs(H),
        closed_after: tocsin_core::DurationMs(5 * 60_000),
        ..Default::default()
    };
    let mut c = Correlator::new(CorrelatorConfig {
        policy,
        max_keys: 2,
        ..CorrelatorConfig::default()
    });
    let keyed = |key: &str, org: &str, minute: i64| {
        let mut d = det(
            &format!("{key}-{org}-{minute}"),
            org,
            "health",
            "DE",
            minute * 60_000,
            Tlp::Green,
        );
        d.correlation_keys = vec![format!("indicator:domain:{key}")];
        d
    };
    let mut out = Vec::new();
    // a warns (two organisations); b fills the correlator; c is refused after a look at
    // the keys, whose earliest window ends at 60 minutes.
    c.push(&keyed("a", "A", 0), &mut out);
    c.push(&keyed("a", "B", 1), &mut out);
    assert_eq!(out.len(), 1);
    c.push(&keyed("b", "A", 2), &mut out);
    c.push(&keyed("c", "A", 3), &mut out);
    assert_eq!(c.stats().refused_keys, 1);
    // b again at 7 minutes: a has been quiet for its 5 minutes and closes, which frees a
    // place without a look at the keys.
    c.push(&keyed("b", "A", 7), &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(c.live_keys(), 1);
    // g from 30 minutes before the start takes it; its window ends at 30 minutes.
    c.push(&keyed("g", "A", -30), &mut out);
    assert_eq!(c.live_keys(), 2);
    // At 31 minutes g's window is over: h finds room.
    c.push(&keyed("h", "A", 31), &mut out);
    assert_eq!((c.stats().refused_keys, c.stats().evicted), (1, 1));
    assert_eq!(c.live_keys(), 2);
}

#[test]
fn audiences_redact_and_recipients_route() {
    let mut c = Correlator::new(CorrelatorConfig::default());
    let mut out = Vec::new();
    c.push(&det("a", "Klinik", "health", "DE", 0, Tlp::Green), &mut out);
    c.push(&det("b", "Grid", "energy", "FR", 1, Tlp::Green), &mut out);
    c.push(
        &det(
            "c",
            "Secret Ministry",
            "public-administration",
            "IT",
            2,
            Tlp::Red,
        ),
        &mut out,
    );
    let canonical = out.last().unwrap();
    let policy = tocsin_rules::EscalationPolicy::default();
    let tech =
        crate::audience::render(canonical, Audience::Technical, Tlp::Amber, &policy).unwrap();
    // A rendering names its ceiling; the canonical warning names none.
    assert_eq!(
        (canonical.tlp_ceiling, tech.tlp_ceiling),
        (None, Some(Tlp::Amber))
    );
    let json = serde_json::to_string(&tech).unwrap();
    assert!(
        !json.contains("Secret Ministry")
            && !json.contains("\"IT\"")
            && !json.contains("public-administration")
    );
    assert_eq!(tech.affected.organisation_count, 2);
    assert_eq!(tech.tlp, Tlp::Green);
    // The indicator also came in under TLP:RED, so it is RED (most restrictive input).
    assert!(tech.indicators.is_empty());
    assert!(
        tech.correlation_key.contains("redacted-"),
        "{}",
        tech.correlation_key
    );
    let ops =
        crate::audience::render(canonical, Audience::Operational, Tlp::Green, &policy).unwrap();
    let json = serde_json::to_string(&ops).unwrap();
    assert!(
        ops.indicators.is_empty() && !json.contains("c2.example") && !json.contains("Klinik"),
        "{json}"
    );
    assert!(ops
        .correlation_key
        .starts_with("indicator:domain:redacted-"));
    let strategic = crate::audience::render(canonical, Audience::Strategic, Tlp::Clear, &policy);
    assert!(
        strategic.is_none(),
        "GREEN inputs never reach a CLEAR rendering"
    );

    let recipients = crate::audience::parse_recipients(
        "recipients.yaml",
        "recipients:\n  - {id: 'csirt:DE', audience: technical, tlp: AMBER, member_states: [DE]}\n  - {id: 'csirt:AT', audience: technical, tlp: AMBER, member_states: [AT]}\n  - {id: 'csirt:ES', audience: technical, tlp: AMBER, member_states: [ES], cross_border: true}\n  - {id: coordination-centre, audience: technical, tlp: RED, all: true}\n",
    )
    .unwrap();
    let got: Vec<(&str, u32)> = recipients
        .iter()
        .filter_map(|r| {
            r.rendering(canonical, &policy)
                .map(|w| (r.id.as_str(), w.affected.organisation_count))
        })
        .collect();
    assert_eq!(
        got,
        vec![("csirt:DE", 2), ("csirt:ES", 2), ("coordination-centre", 3)]
    );
    assert_eq!(recipients[0].slug(), "csirt.de");
    let err = crate::audience::parse_recipients(
        "r.yaml",
        "recipients:\n  - {id: x, audience: technical, tlp: AMBER}\n",
    )
    .unwrap_err();
    assert!(err.message.contains("would receive nothing"), "{err}");
    // Two ids, one file and topic name.
    let err = crate::audience::parse_recipients(
        "r.yaml",
        "recipients:\n  - {id: 'csirt:DE', audience: technical, tlp: AMBER, all: true}\n  - {id: csirt.de, audience: technical, tlp: AMBER, all: true}\n",
    )
    .unwrap_err();
    assert!(
        err.message
            .contains("would share the file and topic name 'csirt.de'"),
        "{err}"
    );
}

/// What the warning keeps for the whole candidate (rules, levels, techniques, taxonomy,
/// latest detection) may come from an organisation a rendering withholds: such a rendering
/// leaves it out, and judges severity on what remains.
#[test]
fn a_rendering_that_withholds_an_organisation_says_nothing_of_its_rules() {
    let mut c = Correlator::new(CorrelatorConfig::default());
    let mut out = Vec::new();
    c.push(&det("a", "Klinik", "health", "DE", 0, Tlp::Green), &mut out);
    c.push(&det("b", "Grid", "energy", "FR", H, Tlp::Green), &mut out);
    let mut secret = det("c", "Secret Ministry", "health", "DE", 5 * H, Tlp::Red);
    secret.indicators[0].tlp = Tlp::Green;
    secret.rule = tocsin_core::RuleRef {
        id: "sigma:secret-tooling".into(),
        title: "Secret tooling".into(),
        level: Level::Critical,
    };
    secret.attack = vec!["T1486".into()];
    c.push(&secret, &mut out);
    let canonical = out.last().unwrap();
    assert_eq!(canonical.timeline.len(), 3);
    assert!(canonical
        .rules
        .iter()
        .any(|r| r.id == "sigma:secret-tooling"));
    assert_eq!(canonical.last_seen, Timestamp(t0().0 + 5 * H));
    let policy = tocsin_rules::EscalationPolicy::default();
    let tech =
        crate::audience::render(canonical, Audience::Technical, Tlp::Amber, &policy).unwrap();
    let json = serde_json::to_string(&tech).unwrap();
    assert!(
        !json.contains("secret") && !json.contains("Secret") && !json.contains("T1486"),
        "{json}"
    );
    assert!(tech.rules.is_empty() && tech.attack.is_empty() && tech.taxonomy.is_none());
    assert_eq!(tech.last_seen, Timestamp(t0().0 + H), "Grid's detection");
    assert_eq!(tech.detection_count, 2);
    assert_eq!(tech.severity, Severity::High);
    assert_eq!(tech.eu_taxonomy.impact_severity, ImpactSeverity::Yellow);
    assert_eq!(
        tech.eu_taxonomy.threat_severity,
        crate::threat_severity(Level::Medium)
    );
    // The coordination centre (RED) sees it all.
    let all = crate::audience::render(canonical, Audience::Technical, Tlp::Red, &policy).unwrap();
    assert_eq!(all.rules, canonical.rules);
    assert_eq!(all.last_seen, canonical.last_seen);
    assert_eq!(all.eu_taxonomy, canonical.eu_taxonomy);

    // A RED detection that names no organisation has no timeline entry to withhold; the
    // warning's label still says something above the ceiling went in.
    let mut c = Correlator::new(CorrelatorConfig::default());
    let mut out = Vec::new();
    c.push(&det("a", "Klinik", "health", "DE", 0, Tlp::Green), &mut out);
    c.push(&det("b", "Grid", "energy", "FR", H, Tlp::Green), &mut out);
    let mut anonymous = secret.clone();
    anonymous.id = "d".into();
    anonymous.context.organisation = None;
    c.push(&anonymous, &mut out);
    let w = out.last().unwrap();
    assert_eq!((w.version, w.affected.organisation_count), (2, 2));
    assert!(w.rules.iter().any(|r| r.id == "sigma:secret-tooling"));
    assert_eq!(w.tlp, Tlp::Red);
    let tech = crate::audience::render(w, Audience::Technical, Tlp::Amber, &policy).unwrap();
    let json = serde_json::to_string(&tech).unwrap();
    assert!(
        !json.contains("secret") && !json.contains("T1486") && tech.severity <= w.severity,
        "{json}"
    );
}

/// An indicator only a withheld organisation saw is withheld with it, whatever its feed's
/// label: its presence in the warning would say what that organisation saw.
#[test]
fn an_indicator_only_a_withheld_organisation_saw_is_withheld() {
    let mut c = Correlator::new(CorrelatorConfig::default());
    let mut out = Vec::new();
    let with_indicator = |mut d: Detection, value: &str| {
        d.indicators[0].value = value.into();
        d.indicators[0].tlp = Tlp::Clear;
        d
    };
    c.push(&det("a", "Klinik", "health", "DE", 0, Tlp::Green), &mut out);
    c.push(&det("b", "Grid", "energy", "FR", H, Tlp::Green), &mut out);
    // Seen by Grid while its label was GREEN, then Grid turns RED.
    c.push(
        &with_indicator(
            det("c", "Grid", "energy", "FR", H, Tlp::Green),
            "grid.example",
        ),
        &mut out,
    );
    c.push(
        &with_indicator(
            det("d", "Ministry", "health", "DE", 2 * H, Tlp::Red),
            "only-red.example",
        ),
        &mut out,
    );
    let mut turns_red = det("e", "Grid", "energy", "FR", 3 * H, Tlp::Red);
    turns_red.indicators[0].tlp = Tlp::Green;
    c.push(&turns_red, &mut out);
    c.push(
        &det("f", "Port", "transport", "NL", 4 * H, Tlp::Green),
        &mut out,
    );
    let w = out.last().unwrap();
    let values = |w: &EarlyWarning| -> Vec<String> {
        let mut v: Vec<String> = w.indicators.iter().map(|i| i.value.clone()).collect();
        v.sort();
        v
    };
    assert_eq!(
        values(w),
        ["c2.example", "grid.example", "only-red.example"],
        "the whole warning names all three"
    );
    let policy = tocsin_rules::EscalationPolicy::default();
    let tech = crate::audience::render(w, Audience::Technical, Tlp::Amber, &policy).unwrap();
    assert_eq!(
        tech.affected.organisations,
        ["Klinik".to_owned(), "Port".to_owned()]
    );
    assert_eq!(values(&tech), ["c2.example"], "seen by Klinik and Port");
    let all = crate::audience::render(w, Audience::Technical, Tlp::Red, &policy).unwrap();
    assert_eq!(values(&all), values(w));
}

mod redaction_properties {
    use proptest::prelude::*;
    use tocsin_core::{Audience, Tlp};

    use super::det;
    use crate::{Correlator, CorrelatorConfig};

    fn tlp(i: u8) -> Tlp {
        Tlp::ALL[(i % 5) as usize]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn no_rendering_carries_anything_above_its_ceiling(
            orgs in proptest::collection::vec((0u8..5, 0u8..3, 0u8..4), 2..8),
            audience in 0u8..3,
            ceiling in 0u8..5,
        ) {
            let sectors = ["health", "energy", "banking"];
            let states = ["DE", "FR", "IT", "AT"];
            let mut c = Correlator::new(CorrelatorConfig::default());
            let mut out = Vec::new();
            for (i, (t, s, m)) in orgs.iter().enumerate() {
                c.push(&det(&format!("d{i}"), &format!("Org-{i}-{}", tlp(*t).label()), sectors[*s as usize], states[*m as usize], i as i64 * 1000, tlp(*t)), &mut out);
            }
            let audience = [Audience::Technical, Audience::Operational, Audience::Strategic][audience as usize];
            let ceiling = tlp(ceiling);
            let policy = tocsin_rules::EscalationPolicy::default();
            for w in &out {
                let Some(r) = crate::audience::render(w, audience, ceiling, &policy) else { continue };
                prop_assert!(r.tlp.permits(ceiling));
                prop_assert!(r.indicators.iter().all(|i| i.tlp.permits(ceiling)));
                prop_assert!(r.timeline.iter().all(|e| e.tlp.permits(ceiling)));
                let json = serde_json::to_string(&r).unwrap();
                for (i, (t, _, _)) in orgs.iter().enumerate() {
                    if !tlp(*t).permits(ceiling) {
                        let name = format!("Org-{i}-{}", tlp(*t).label());
                        prop_assert!(!json.contains(&name), "{} leaked into {}", name, json);
                    }
                }
                if audience != Audience::Technical {
                    prop_assert!(!json.contains("Org-"), "organisation names in a non-technical rendering");
                    prop_assert!(!json.contains("c2.example"), "indicator value in a non-technical rendering");
                }
                let visible = orgs.iter().filter(|(t, _, _)| tlp(*t).permits(ceiling)).count();
                prop_assert_eq!(r.affected.organisation_count as usize, visible.min(r.affected.organisation_count as usize));
            }
        }
    }
}

#[test]
fn warnings_close_after_quiet_and_updates_are_rate_limited() {
    let policy = tocsin_rules::EscalationPolicy {
        closed_after: tocsin_core::DurationMs(2 * H),
        min_update_interval: tocsin_core::DurationMs(30 * 60_000),
        window: tocsin_core::DurationMs(24 * H),
        ..Default::default()
    };
    let mut c = Correlator::new(CorrelatorConfig {
        policy,
        ..CorrelatorConfig::default()
    });
    let mut out = Vec::new();
    c.push(&det("a", "A", "health", "DE", 0, Tlp::Green), &mut out);
    c.push(&det("b", "B", "health", "FR", 60_000, Tlp::Green), &mut out);
    // Two more organisations within 30 minutes: held back (same severity).
    c.push(
        &det("c", "C", "health", "AT", 2 * 60_000, Tlp::Green),
        &mut out,
    );
    c.push(
        &det("d", "D", "health", "BE", 3 * 60_000, Tlp::Green),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(c.stats().deferred, 2);
    // The next detection after the interval carries the accumulated change.
    c.push(
        &det("e", "D", "health", "BE", 40 * 60_000, Tlp::Green),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].version, 2);
    assert_eq!(out[1].affected.organisation_count, 4);
    // Another key's detection 3 hours later moves event time past the quiet period.
    let mut other = det("x", "X", "energy", "IT", 4 * H, Tlp::Green);
    other.correlation_keys = vec!["indicator:domain:other.example".into()];
    c.push(&other, &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(out[2].status, WarningStatus::Closed);
    assert_eq!(out[2].version, 3);
    assert_eq!(out[2].warning_id, out[0].warning_id);
    assert_eq!(out[2].eu_taxonomy.outlook, tocsin_core::Outlook::Improving);
    assert_eq!(c.stats().closed, 1);
}

/// A warning whose input went quiet closes when event time is moved on without a
/// detection (the correlate worker's idle partitions), as it would on another key's.
#[test]
fn an_advance_without_detections_closes_quiet_warnings() {
    let policy = tocsin_rules::EscalationPolicy {
        closed_after: tocsin_core::DurationMs(2 * H),
        ..Default::default()
    };
    let mut c = Correlator::new(CorrelatorConfig {
        policy,
        ..CorrelatorConfig::default()
    });
    assert_eq!(c.watermark(), None);
    let mut out = Vec::new();
    c.push(&det("a", "A", "health", "DE", 0, Tlp::Green), &mut out);
    c.push(&det("b", "B", "health", "FR", 60_000, Tlp::Green), &mut out);
    assert_eq!(out.len(), 1);
    let seen = c.watermark().unwrap();
    // Not past the watermark, then not past the quiet period: nothing changes.
    assert!(!c.advance(seen, &mut out));
    assert!(!c.advance(Timestamp(seen.0 + H), &mut out));
    assert_eq!(out.len(), 1);
    assert_eq!(c.watermark(), Some(Timestamp(seen.0 + H)));
    // Past it: the closing version, dated at the end of the quiet period.
    assert!(c.advance(Timestamp(seen.0 + 3 * H), &mut out));
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].status, WarningStatus::Closed);
    assert_eq!(out[1].version, 2);
    assert_eq!(out[1].issued_at, Timestamp(seen.0 + 2 * H));
    assert_eq!(c.live_keys(), 0);
    assert!(c.take_derived().is_empty());
}

#[test]
fn slow_campaign_over_days_with_a_long_window() {
    let policy = tocsin_rules::EscalationPolicy {
        window: tocsin_core::DurationMs(4 * 24 * H),
        closed_after: tocsin_core::DurationMs(5 * 24 * H),
        ..Default::default()
    };
    let mut c = Correlator::new(CorrelatorConfig {
        policy,
        ..CorrelatorConfig::default()
    });
    let mut out = Vec::new();
    // One organisation a day, three member states, over three days.
    c.push(
        &det("d1", "Hospital", "health", "DE", 0, Tlp::Green),
        &mut out,
    );
    c.push(
        &det("d2", "Grid", "energy", "FR", 24 * H, Tlp::Green),
        &mut out,
    );
    c.push(
        &det(
            "d3",
            "Ministry",
            "public-administration",
            "IT",
            48 * H,
            Tlp::Green,
        ),
        &mut out,
    );
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].warning_id, out[1].warning_id);
    assert_eq!(out[1].affected.member_states.len(), 3);
    assert_eq!(out[1].last_seen.0 - out[1].first_seen.0, 48 * H);
}

#[test]
fn skewed_clocks_and_out_of_order_arrivals() {
    let mut c = Correlator::new(CorrelatorConfig::default());
    let mut out = Vec::new();
    // Organisation B's sensor runs two hours ahead, so its detection arrives "from the
    // future"; A's arrives later with an earlier time. Both fall in one 6 h window.
    c.push(&det("b", "B", "energy", "FR", 3 * H, Tlp::Green), &mut out);
    c.push(&det("a", "A", "health", "DE", H, Tlp::Green), &mut out);
    assert_eq!(out.len(), 1);
    let w = &out[0];
    assert_eq!(
        w.first_seen,
        Timestamp(t0().0 + H),
        "first seen is the earliest event time"
    );
    assert_eq!(
        w.timeline[0].organisation.as_deref(),
        Some("A"),
        "timeline in event-time order"
    );
    assert_eq!(
        w.issued_at,
        Timestamp(t0().0 + H),
        "issued at the completing detection's time"
    );
    // The same two detections again (a re-delivery) change nothing.
    c.push(&det("b", "B", "energy", "FR", 3 * H, Tlp::Green), &mut out);
    c.push(&det("a", "A", "health", "DE", H, Tlp::Green), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(c.stats().duplicates, 2);
}

/// A version caused by a detection that arrived out of order is dated one second after the
/// version before, not at its detection's earlier time: consumers order versions by
/// `issued_at` (MISP takes an update only with a newer timestamp, in seconds).
#[test]
fn versions_of_a_warning_are_strictly_ordered_by_issued_at() {
    let mut config = CorrelatorConfig::default();
    // Four organisations are critical (rules/escalation.yaml says so across borders).
    config.policy.severity = vec![
        (
            tocsin_rules::escalation::When {
                min_organisations: Some(4),
                ..Default::default()
            },
            Severity::Critical,
            None,
        ),
        (
            tocsin_rules::escalation::When::default(),
            Severity::Medium,
            None,
        ),
    ];
    let mut c = Correlator::new(config);
    let mut out = Vec::new();
    c.push(&det("b", "B", "energy", "FR", 3 * H, Tlp::Green), &mut out);
    c.push(&det("a", "A", "health", "DE", H, Tlp::Green), &mut out);
    c.push(
        &det("c", "C", "public-administration", "IT", 4 * H, Tlp::Green),
        &mut out,
    );
    // A fourth organisation, seen before the third: the escalation it causes (never held
    // back by the update interval) comes after the third's update.
    c.push(
        &det("d", "D", "transport", "NL", 2 * H, Tlp::Green),
        &mut out,
    );
    let versions: Vec<(u32, WarningStatus, Timestamp)> = out
        .iter()
        .map(|w| (w.version, w.status, w.issued_at))
        .collect();
    assert_eq!(
        versions,
        [
            (1, WarningStatus::New, Timestamp(t0().0 + H)),
            (2, WarningStatus::Update, Timestamp(t0().0 + 4 * H)),
            (
                3,
                WarningStatus::Escalated,
                Timestamp(t0().0 + 4 * H + 1_000)
            ),
        ]
    );
    // Every version names the first one's date (the STIX rendering's `created`).
    for w in &out {
        assert_eq!(
            w.first_issued_at,
            Some(Timestamp(t0().0 + H)),
            "{}",
            w.version
        );
    }
    // The end of input issues nothing new. A warning quiet for a millisecond closes at its
    // last detection's time plus that, before the escalation's date: the closing version is
    // dated a second after the escalation instead.
    c.finish(&mut out);
    assert_eq!(out.len(), 3);
    c.config.policy.closed_after = tocsin_core::DurationMs(1);
    c.advance(Timestamp(t0().0 + 5 * H), &mut out);
    let closed = out.last().unwrap();
    assert_eq!((closed.version, closed.status), (4, WarningStatus::Closed));
    assert_eq!(closed.issued_at, Timestamp(t0().0 + 4 * H + 2_000));
    assert_eq!(closed.first_issued_at, Some(Timestamp(t0().0 + H)));
}

/// A state kept before `first_issued_at` existed: the next version takes its own date as
/// the first, and the versions after it keep that.
#[test]
fn a_state_without_the_first_date_dates_from_the_next_version() {
    let mut config = CorrelatorConfig::default();
    config.policy.min_update_interval = tocsin_core::DurationMs(0);
    let mut c = Correlator::new(config.clone());
    let mut out = Vec::new();
    c.push(&det("a", "A", "health", "DE", H, Tlp::Green), &mut out);
    c.push(&det("b", "B", "energy", "FR", 2 * H, Tlp::Green), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].first_issued_at, Some(Timestamp(t0().0 + 2 * H)));
    // (Edited as text: the snapshot's 128-bit digests do not survive a `serde_json::Value`.)
    let snapshot = String::from_utf8(c.snapshot()).unwrap();
    let field = snapshot.find(",\"first_issued_at\":").expect("the field");
    let value_end = field + snapshot[field + 1..].find([',', '}']).unwrap() + 1;
    let older = format!("{}{}", &snapshot[..field], &snapshot[value_end..]);
    assert!(!older.contains("first_issued_at"), "{older}");
    let mut c = Correlator::restore(config, older.as_bytes()).unwrap();
    c.push(&det("c", "C", "banking", "IT", 3 * H, Tlp::Green), &mut out);
    c.push(
        &det("d", "D", "transport", "NL", 4 * H, Tlp::Green),
        &mut out,
    );
    let dates: Vec<(u32, Timestamp, Option<Timestamp>)> = out
        .iter()
        .map(|w| (w.version, w.issued_at, w.first_issued_at))
        .collect();
    let third = Some(Timestamp(t0().0 + 3 * H));
    assert_eq!(
        dates[1..],
        [
            (2, Timestamp(t0().0 + 3 * H), third),
            (3, Timestamp(t0().0 + 4 * H), third)
        ]
    );
}

/// With no update interval, an update is never held back, not even one that follows a
/// version dated a second after its own detection.
#[test]
fn without_an_update_interval_no_update_waits() {
    let mut config = CorrelatorConfig::default();
    config.policy.min_update_interval = tocsin_core::DurationMs(0);
    let mut c = Correlator::new(config);
    let mut out = Vec::new();
    c.push(&det("b", "B", "energy", "FR", 3 * H, Tlp::Green), &mut out);
    c.push(&det("a", "A", "health", "DE", H, Tlp::Green), &mut out);
    c.push(
        &det(
            "c",
            "C",
            "public-administration",
            "IT",
            H - 600_000,
            Tlp::Green,
        ),
        &mut out,
    );
    c.push(
        &det("d", "D", "transport", "NL", H + 500, Tlp::Green),
        &mut out,
    );
    let versions: Vec<(u32, Timestamp)> = out.iter().map(|w| (w.version, w.issued_at)).collect();
    assert_eq!(
        versions,
        [
            (1, Timestamp(t0().0 + H)),
            (2, Timestamp(t0().0 + H + 1_000)),
            (3, Timestamp(t0().0 + H + 2_000)),
        ]
    );
    assert_eq!(c.stats().deferred, 0);
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

mod sigma_correlation_rules {
    use std::collections::{BTreeMap, BTreeSet};

    use tocsin_core::{
        correlation_rule_key, Context, Detection, DetectionKind, Level, RuleRef, Timestamp, Tlp,
        DETECTION_SCHEMA,
    };
    use tocsin_rules::{parse_sigma_source, CorrelationRule};

    use crate::{Correlator, CorrelatorConfig};

    const MIN: i64 = 60_000;

    fn correlation(yaml: &str) -> CorrelationRule {
        let src = parse_sigma_source("c.yml", yaml);
        assert_eq!(src.diagnostics.error_count(), 0, "{:?}", src.diagnostics);
        src.correlations.into_iter().next().unwrap()
    }

    /// A detection of `rule` at minute `at`, grouped for `c` by `group`, with `fields`.
    fn det(c: &CorrelationRule, rule: &str, at: i64, fields: &[(&str, &str)]) -> Detection {
        let fields: BTreeMap<String, String> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let values: Vec<&str> = c
            .group_by
            .iter()
            .map(|g| fields.get(g).map(String::as_str).unwrap_or_default())
            .collect();
        Detection {
            schema: DETECTION_SCHEMA.into(),
            id: format!("det-{rule}-{at}-{:?}", fields),
            kind: DetectionKind::Sigma,
            rule: RuleRef {
                id: rule.into(),
                title: rule.into(),
                level: Level::Low,
            },
            event_time: Timestamp(1_772_438_400_000 + at * MIN),
            context: Context {
                organisation: Some("Org A".into()),
                sector: Some(tocsin_core::Sector::Health),
                member_state: Some("DE".parse().unwrap()),
                sensor: None,
            },
            entities: vec![],
            indicators: vec![],
            taxonomy: None,
            attack: vec![],
            tags: vec![],
            correlation_keys: vec![correlation_rule_key(&c.id, &values)],
            tlp: Tlp::Green,
            source: None,
            fields,
            standalone: false,
        }
    }

    fn run(rules: &[CorrelationRule], detections: &[Detection]) -> Vec<Detection> {
        let mut c = Correlator::new(CorrelatorConfig {
            correlation_rules: rules.to_vec(),
            ..CorrelatorConfig::default()
        });
        let mut warnings = Vec::new();
        let mut out = Vec::new();
        for d in detections {
            c.push(d, &mut warnings);
            out.extend(c.take_derived());
        }
        c.finish(&mut warnings);
        out.extend(c.take_derived());
        out
    }

    /// As [`run`], the way the correlate workers do it: `n` correlators, each owning the keys
    /// that hash to it, fed one copy of a detection per key; derived detections go back
    /// through the same routing instead of being merged where they fired.
    fn run_partitioned(
        rules: &[CorrelationRule],
        detections: &[Detection],
        n: usize,
    ) -> Vec<Detection> {
        let mut parts: Vec<Correlator> = (0..n)
            .map(|_| {
                Correlator::new(CorrelatorConfig {
                    correlation_rules: rules.to_vec(),
                    ..CorrelatorConfig::default()
                })
            })
            .collect();
        let owner = |key: &str| key.bytes().map(usize::from).sum::<usize>() % n;
        let mut warnings = Vec::new();
        let mut out = Vec::new();
        let mut queue: std::collections::VecDeque<Detection> = detections.iter().cloned().collect();
        while let Some(d) = queue.pop_front() {
            for key in &d.correlation_keys {
                let p = &mut parts[owner(key)];
                p.push_keyed(&d, key, &mut warnings);
                for f in p.take_derived() {
                    out.push(f.clone());
                    queue.push_front(f);
                }
            }
        }
        for p in &mut parts {
            p.finish(&mut warnings);
            out.extend(p.take_derived());
        }
        out
    }

    #[test]
    fn event_count_fires_once_per_burst_and_resets() {
        let c = correlation("title: Brute force\nid: bf\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  group-by: [IpAddress]\n  timespan: 10m\n  condition: {gte: 5}\nlevel: high\n");
        let mut ds = Vec::new();
        for i in 0..12 {
            ds.push(det(&c, "failed_logon", i, &[("IpAddress", "10.0.0.9")]));
        }
        // Another source never reaches 5 within 10 minutes.
        for i in 0..6 {
            ds.push(det(
                &c,
                "failed_logon",
                100 + i * 3,
                &[("IpAddress", "10.0.0.7")],
            ));
        }
        // Redelivered copies (same ids) after the burst fired change nothing.
        let mut again = ds.clone();
        again.extend(ds.iter().take(12).cloned());
        assert_eq!(run(std::slice::from_ref(&c), &again).len(), 2);
        let out = run(&[c], &ds);
        assert_eq!(out.len(), 2, "{out:#?}");
        assert!(out
            .iter()
            .all(|d| d.kind == DetectionKind::Correlation && d.rule.id == "bf"));
        assert_eq!(out[0].fields["IpAddress"], "10.0.0.9");
        assert_eq!(out[0].fields["event_count"], "5");
        assert_eq!(out[0].rule.level, Level::High);
        assert_eq!(
            out[0].event_time.0 - out[0].event_time.0 % MIN,
            1_772_438_400_000 + 4 * MIN
        );
    }

    /// A sliding window takes a detection that arrives out of order, within the allowed
    /// lateness, into the windows it falls in: two failures 30 s apart fire a two-in-a-
    /// minute rule even when a later one arrived between them.
    #[test]
    fn a_sliding_window_takes_a_detection_that_arrives_out_of_order() {
        let burst = correlation("title: Burst\nid: burst\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  group-by: [Host]\n  timespan: 1m\n  condition: {gte: 2}\n");
        let at = |seconds: i64| {
            let mut d = det(&burst, "failed_logon", 0, &[("Host", "h1")]);
            d.event_time = Timestamp(d.event_time.0 + seconds * 1000);
            d.id = format!("det-{seconds}");
            d
        };
        let mut c = Correlator::new(CorrelatorConfig {
            correlation_rules: vec![burst.clone()],
            policy: tocsin_rules::EscalationPolicy {
                allowed_lateness: tocsin_core::DurationMs(5 * MIN),
                ..Default::default()
            },
            ..CorrelatorConfig::default()
        });
        let (mut warnings, mut out) = (Vec::new(), Vec::new());
        for d in [at(0), at(180), at(30)] {
            c.push(&d, &mut warnings);
            out.extend(c.take_derived());
        }
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].fields["event_count"], "2");
        assert_eq!(out[0].event_time, at(30).event_time);
        assert_eq!(c.correlation_rule_stats().late, 0);
    }

    /// A busy window keeps one copy of what its detections share (their group-by values,
    /// context and rule), also after a restore, yet a firing still reads each detection's
    /// own: here the context of the newest, which differs.
    #[test]
    fn a_busy_window_shares_what_its_detections_say_alike() {
        let quiet = correlation("title: Quiet host\nid: quiet\ncorrelation:\n  type: event_count\n  rules: [heartbeat]\n  group-by: [Host]\n  timespan: 1h\n  condition: {lt: 1000}\n");
        let config = || CorrelatorConfig {
            correlation_rules: vec![quiet.clone()],
            ..CorrelatorConfig::default()
        };
        let beat = |host: &str, second: i64| {
            let mut d = det(&quiet, "heartbeat", 0, &[("Host", host)]);
            d.event_time = Timestamp(d.event_time.0 + second * 1000);
            d.id = format!("det-{host}-{second}");
            d
        };
        let mut c = Correlator::new(config());
        let mut warnings = Vec::new();
        for second in 0..100 {
            c.push(&beat("h1", second), &mut warnings);
        }
        assert_eq!(c.sigma.evidence_copies(), 1);
        let mut elsewhere = beat("h1", 100);
        elsewhere.context.organisation = Some("Org B".into());
        c.push(&elsewhere, &mut warnings);
        assert_eq!(c.sigma.evidence_copies(), 2);
        // A detection that says the same as the group's newest shares it: Org B's.
        let mut again = beat("h1", 101);
        again.context.organisation = Some("Org B".into());
        c.push(&again, &mut warnings);
        assert_eq!(c.sigma.evidence_copies(), 2);

        let mut c = Correlator::restore(config(), &c.snapshot()).unwrap();
        assert_eq!(c.sigma.evidence_copies(), 2, "shared again after a restore");
        // Two hours on, h1's window is judged: 102 heartbeats, the newest from Org B.
        c.push(&beat("h2", 7_200), &mut warnings);
        let fired = c.take_derived();
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].fields["event_count"], "102");
        assert_eq!(fired[0].context.organisation.as_deref(), Some("Org B"));
        assert_eq!(fired[0].fields["Host"], "h1");
    }

    /// A snapshot writes a busy window's shared evidence once (format v2) and reads one that
    /// wrote it for every item (v1) into the same state.
    #[test]
    fn a_windows_evidence_is_written_once_and_v1_snapshots_still_read() {
        let quiet = correlation("title: Quiet host\nid: quiet\ncorrelation:\n  type: event_count\n  rules: [heartbeat]\n  group-by: [Host]\n  timespan: 1h\n  condition: {lt: 1000}\n");
        let config = || CorrelatorConfig {
            correlation_rules: vec![quiet.clone()],
            ..CorrelatorConfig::default()
        };
        let mut c = Correlator::new(config());
        let mut warnings = Vec::new();
        for second in 0..50 {
            let mut d = det(&quiet, "heartbeat", 0, &[("Host", "h1")]);
            d.event_time = Timestamp(d.event_time.0 + second * 1000);
            d.id = format!("det-{second}");
            c.push(&d, &mut warnings);
        }
        let v2 = String::from_utf8(c.snapshot()).unwrap();
        assert!(v2.contains("\"format\":\"tocsin.correlator-state/v2\""));
        assert_eq!(v2.matches("\"detection\":{").count(), 1, "{v2}");
        // As v1 wrote it: the evidence in every item.
        let start = v2.find("\"detection\":").unwrap() + "\"detection\":".len();
        let mut depth = 0;
        let end = start
            + v2[start..]
                .char_indices()
                .find_map(|(i, ch)| {
                    depth += i32::from(ch == '{') - i32::from(ch == '}');
                    (depth == 0).then_some(i + 1)
                })
                .unwrap();
        let evidence = &v2[start..end];
        let v1 = v2
            .replace(
                "\"tlp\":\"GREEN\"}",
                &format!("\"tlp\":\"GREEN\",\"detection\":{evidence}}}"),
            )
            .replace("correlator-state/v2", "correlator-state/v1");
        assert_eq!(v1.matches("\"detection\":{").count(), 50);
        let restored = Correlator::restore(config(), v1.as_bytes()).unwrap();
        assert_eq!(restored.sigma.evidence_copies(), 1);
        assert_eq!(String::from_utf8(restored.snapshot()).unwrap(), v2);
        // A first item without evidence is an error, not a guess.
        let broken = v2.replacen(&format!(",\"detection\":{evidence}"), "", 1);
        let err = Correlator::restore(config(), broken.as_bytes())
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("first item of a window has no evidence"),
            "{err}"
        );
    }

    /// A detection that arrives after its key's window was judged is late: it does not open
    /// a window in the past, judged at once on it alone (an hour with five heartbeats is
    /// not "fewer than three" because the fifth came late).
    #[test]
    fn a_detection_after_its_window_was_judged_is_late() {
        let quiet = correlation("title: Quiet host\nid: quiet\ncorrelation:\n  type: event_count\n  rules: [heartbeat]\n  group-by: [Host]\n  timespan: 1h\n  condition: {lt: 3}\n");
        let beat = |host: &str, at: i64| det(&quiet, "heartbeat", at, &[("Host", host)]);
        let ds = vec![
            beat("h1", 0),
            beat("h1", 10),
            beat("h1", 20),
            beat("h1", 30),
            // Event time moves two hours on: h1's window is judged (four, not quiet).
            beat("h2", 120),
            beat("h2", 121),
            beat("h2", 122),
            // h1's fifth heartbeat of that hour arrives now.
            beat("h1", 40),
        ];
        let mut c = Correlator::new(CorrelatorConfig {
            correlation_rules: vec![quiet],
            ..CorrelatorConfig::default()
        });
        let (mut warnings, mut out) = (Vec::new(), Vec::new());
        for d in &ds {
            c.push(d, &mut warnings);
            out.extend(c.take_derived());
        }
        c.finish(&mut warnings);
        out.extend(c.take_derived());
        let fired: Vec<String> = out.iter().map(|d| d.fields["Host"].clone()).collect();
        assert!(fired.is_empty(), "{fired:?}");
        assert_eq!(c.correlation_rule_stats().late, 1);
    }

    /// A window judged at its close is judged when event time is moved past its end
    /// without a detection (an idle partition), less the allowed lateness; the firing waits
    /// for the caller as after `push_keyed`, and a window not yet ended stays open.
    #[test]
    fn an_advance_without_detections_judges_the_windows_that_ended() {
        let quiet = correlation("title: Quiet host\nid: quiet\ncorrelation:\n  type: event_count\n  rules: [heartbeat]\n  group-by: [Host]\n  timespan: 1h\n  condition: {lt: 3}\n");
        let mut c = Correlator::new(CorrelatorConfig {
            correlation_rules: vec![quiet.clone()],
            policy: tocsin_rules::EscalationPolicy {
                allowed_lateness: tocsin_core::DurationMs(5 * MIN),
                ..Default::default()
            },
            ..CorrelatorConfig::default()
        });
        let mut warnings = Vec::new();
        let h1 = det(&quiet, "heartbeat", 0, &[("Host", "h1")]);
        let h2 = det(&quiet, "heartbeat", 30, &[("Host", "h2")]);
        for d in [&h1, &h2] {
            let key = d.correlation_keys[0].clone();
            c.push_keyed(d, &key, &mut warnings);
        }
        assert!(c.take_derived().is_empty());
        let start = h1.event_time.0;
        // h1's window ends at 60 minutes; with 5 minutes of lateness it is judged after 65.
        assert!(!c.advance(Timestamp(start + 65 * MIN), &mut warnings));
        assert!(c.take_derived().is_empty());
        assert!(c.advance(Timestamp(start + 65 * MIN + 1), &mut warnings));
        let fired = c.take_derived();
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].fields["Host"], "h1");
        assert_eq!(fired[0].fields["event_count"], "1");
        // h2's window (30 to 90 minutes) is still open; a later advance judges it.
        assert!(c.advance(Timestamp(start + 100 * MIN), &mut warnings));
        let fired = c.take_derived();
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].fields["Host"], "h2");
        assert!(!c.advance(Timestamp(start + 200 * MIN), &mut warnings));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn value_count_and_upper_bounds_wait_for_the_window() {
        let spray = correlation("title: Spray\nid: spray\ncorrelation:\n  type: value_count\n  rules: [failed_logon]\n  group-by: [IpAddress]\n  timespan: 1h\n  condition: {field: TargetUserName, gte: 3}\n");
        let quiet = correlation("title: Quiet host\nid: quiet\ncorrelation:\n  type: event_count\n  rules: [heartbeat]\n  group-by: [Host]\n  timespan: 1h\n  condition: {lt: 3}\n");
        let ds = vec![
            det(
                &spray,
                "failed_logon",
                0,
                &[("IpAddress", "a"), ("TargetUserName", "u1")],
            ),
            det(
                &spray,
                "failed_logon",
                1,
                &[("IpAddress", "a"), ("TargetUserName", "u1")],
            ),
            det(
                &spray,
                "failed_logon",
                2,
                &[("IpAddress", "a"), ("TargetUserName", "u2")],
            ),
            det(&quiet, "heartbeat", 5, &[("Host", "h1")]),
            det(&quiet, "heartbeat", 6, &[("Host", "h2")]),
            det(&quiet, "heartbeat", 7, &[("Host", "h2")]),
            det(&quiet, "heartbeat", 8, &[("Host", "h2")]),
            det(
                &spray,
                "failed_logon",
                3,
                &[("IpAddress", "a"), ("TargetUserName", "u3")],
            ),
        ];
        let out = run(&[spray, quiet], &ds);
        let ids: Vec<(&str, &str)> = out
            .iter()
            .map(|d| {
                (
                    d.rule.id.as_str(),
                    d.fields.values().next().unwrap().as_str(),
                )
            })
            .collect();
        // spray fires on the third distinct user; quiet judges h1 (1 < 3) at the end, not h2 (3).
        assert_eq!(out.len(), 2, "{ids:?}");
        assert_eq!(out[0].rule.id, "spray");
        assert_eq!(out[0].fields["value_count"], "3");
        assert_eq!(out[1].rule.id, "quiet");
        assert_eq!(out[1].fields["Host"], "h1");
    }

    #[test]
    fn temporal_ordered_sum_avg_percentile_and_chaining() {
        let recon = correlation("title: Recon\nid: recon\nname: recon_sequence\ncorrelation:\n  type: temporal_ordered\n  rules: [whoami, net_user, ipconfig]\n  group-by: [Host]\n  timespan: 5m\n");
        let any = correlation("title: Recon any order\nid: recon_any\ncorrelation:\n  type: temporal\n  rules: [whoami, net_user, ipconfig]\n  group-by: [Host]\n  timespan: 5m\n");
        let exfil = correlation("title: Exfil\nid: exfil\ncorrelation:\n  type: value_sum\n  rules: [upload]\n  group-by: [Host]\n  timespan: 1h\n  condition: {field: Bytes, gt: 1000}\n");
        let avg = correlation("title: Big avg\nid: avg\ncorrelation:\n  type: value_avg\n  rules: [upload]\n  group-by: [Host]\n  timespan: 1h\n  condition: {field: Bytes, gte: 400}\n");
        let rare = correlation("title: Rare process\nid: rare\ncorrelation:\n  type: value_percentile\n  rules: [proc]\n  group-by: [Host]\n  timespan: 1h\n  condition: {field: Image, lte: 10}\n");
        let chained = correlation("title: Recon then exfil\nid: chain\ncorrelation:\n  type: temporal\n  rules: [recon_sequence, exfil]\n  group-by: [Host]\n  timespan: 1h\n");
        let h = [("Host", "ws1")];
        let mut ds = vec![
            // Out of order: ipconfig first does not complete the ordered sequence...
            det(&recon, "ipconfig", 0, &h),
            det(&recon, "whoami", 1, &h),
            det(&recon, "net_user", 2, &h),
            // ...until ipconfig comes again after net_user.
            det(&recon, "ipconfig", 3, &h),
            det(&exfil, "upload", 10, &[("Host", "ws1"), ("Bytes", "600")]),
            det(&exfil, "upload", 11, &[("Host", "ws1"), ("Bytes", "500")]),
        ];
        // The temporal (any order) rule sees the same detections under its own key.
        for d in ds.clone().iter().take(4) {
            let mut d = d.clone();
            d.correlation_keys = vec![correlation_rule_key("recon_any", &["ws1"])];
            ds.push(d);
        }
        // A copy of the uploads for the average rule.
        for d in ds.clone().iter().filter(|d| d.rule.id == "upload") {
            let mut d = d.clone();
            d.correlation_keys = vec![correlation_rule_key("avg", &["ws1"])];
            ds.push(d);
        }
        for i in 0..20 {
            let image = if i == 7 {
                "C:\\Temp\\odd.exe"
            } else {
                "C:\\Windows\\explorer.exe"
            };
            ds.push(det(
                &rare,
                "proc",
                20 + i,
                &[("Host", "ws1"), ("Image", image)],
            ));
        }
        ds.sort_by_key(|d| d.event_time);
        let rules = [recon, any, exfil, avg, rare, chained];
        let out = run(&rules, &ds);
        // Partitioned by key, with derived detections routed back, the same rules fire.
        let ids = |v: &[Detection]| {
            let mut ids: Vec<String> = v
                .iter()
                .map(|d| format!("{} {}", d.rule.id, d.id))
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&run_partitioned(&rules, &ds, 3)), ids(&out));
        let fired: Vec<&str> = out.iter().map(|d| d.rule.id.as_str()).collect();
        assert!(fired.contains(&"recon_any"), "{fired:?}");
        assert_eq!(
            out.iter().filter(|d| d.rule.id == "recon").count(),
            1,
            "{fired:?}"
        );
        let recon_det = out.iter().find(|d| d.rule.id == "recon").unwrap();
        assert_eq!(
            recon_det.event_time.0 % (60 * MIN) / MIN,
            3,
            "fires at the second ipconfig"
        );
        let sum = out.iter().find(|d| d.rule.id == "exfil").unwrap();
        assert_eq!(sum.fields["value_sum"], "1100");
        // gte is a lower bound: the average fires as soon as it holds (600 on the first).
        let mean = out.iter().find(|d| d.rule.id == "avg").unwrap();
        assert_eq!(mean.fields["value_avg"], "600");
        let rare_hits: Vec<&Detection> = out.iter().filter(|d| d.rule.id == "rare").collect();
        assert_eq!(rare_hits.len(), 1, "{fired:?}");
        assert_eq!(rare_hits[0].fields["Image"], "C:\\Temp\\odd.exe");
        assert_eq!(rare_hits[0].fields["value_percent"], "5");
        // recon (by name) and exfil together in one hour: the chained rule fires; recon's
        // own detection is consumed by a generate:false chain, so it is not standalone.
        assert!(fired.contains(&"chain"), "{fired:?}");
        assert!(!recon_det.standalone);
        assert!(
            out.iter()
                .find(|d| d.rule.id == "chain")
                .unwrap()
                .standalone
        );
    }

    /// A group knows a detection by where its event lies: an event two of an
    /// `event_count`'s rules match counts once, two byte-identical lines (the same
    /// detection id) at two places count twice, a redelivery (same place, same rule) not
    /// at all; a temporal correlation still sees both rules of one event.
    #[test]
    fn events_count_once_by_their_place_not_their_bytes() {
        let count = correlation("title: Three events\nid: three\ncorrelation:\n  type: event_count\n  rules: [rule_a, rule_b]\n  group-by: [Host]\n  timespan: 1h\n  condition: {gte: 3}\n");
        let both = correlation("title: Both\nid: both\ncorrelation:\n  type: temporal\n  rules: [rule_a, rule_b]\n  group-by: [Host]\n  timespan: 1h\n");
        let at = |c: &CorrelationRule, rule: &str, host: &str, line: u64| {
            let mut d = det(c, rule, line as i64, &[("Host", host)]);
            d.source = Some(tocsin_core::SourceRef {
                name: "events.jsonl".into(),
                position: line,
            });
            d
        };
        // h1: line 1 matched by both rules, line 2 by one: two events, no firing; a
        // redelivery of line 2 changes nothing; line 3 is the third event.
        let mut ds = vec![
            at(&count, "rule_a", "h1", 1),
            at(&count, "rule_b", "h1", 1),
            at(&count, "rule_a", "h1", 2),
            at(&count, "rule_a", "h1", 2),
        ];
        let before_third = run(std::slice::from_ref(&count), &ds);
        assert!(before_third.is_empty(), "{before_third:#?}");
        ds.push(at(&count, "rule_a", "h1", 3));
        // h2: three byte-identical lines, so one detection id, at lines 10 to 12.
        for line in 10..13 {
            let mut d = at(&count, "rule_a", "h2", line);
            d.id = "det-0123456789abcdef0123456789abcdef".into();
            d.event_time = ds[0].event_time;
            ds.push(d);
        }
        let fired: Vec<(String, String)> = run(std::slice::from_ref(&count), &ds)
            .iter()
            .map(|d| (d.fields["Host"].clone(), d.fields["event_count"].clone()))
            .collect();
        assert_eq!(
            fired,
            vec![("h1".into(), "3".into()), ("h2".into(), "3".into())]
        );
        // The same place of another input of the same name (a second file read from stdin)
        // at another time is another event: h3's lines 1 and 2, then line 1 again a
        // minute later, are three.
        let mut again = at(&count, "rule_a", "h3", 1);
        again.event_time = Timestamp(again.event_time.0 + MIN);
        let stdin_twice = [
            at(&count, "rule_a", "h3", 1),
            at(&count, "rule_a", "h3", 2),
            again,
        ];
        assert_eq!(run(std::slice::from_ref(&count), &stdin_twice).len(), 1);
        // One event matched by both rules is both rules matched.
        let one_event = [at(&both, "rule_a", "h1", 1), at(&both, "rule_b", "h1", 1)];
        assert_eq!(run(&[both], &one_event).len(), 1);
    }

    /// A snapshot of a version that remembered detections by their id (without
    /// `definitions`) still recognises a redelivery of what it counted, by that id.
    #[test]
    fn a_snapshot_of_the_previous_version_still_recognises_redeliveries() {
        let count = correlation("title: Three\nid: three\ncorrelation:\n  type: event_count\n  rules: [rule_a]\n  group-by: [Host]\n  timespan: 1h\n  condition: {gte: 3}\n");
        let config = || CorrelatorConfig {
            correlation_rules: vec![count.clone()],
            ..CorrelatorConfig::default()
        };
        let at = |line: u64, source: bool| {
            let mut d = det(&count, "rule_a", line as i64, &[("Host", "h1")]);
            d.source = source.then(|| tocsin_core::SourceRef {
                name: "events.jsonl".into(),
                position: line,
            });
            d
        };
        let mut before = Correlator::new(config());
        let mut warnings = Vec::new();
        // Without a source, a detection is known by its id: what the previous version
        // remembered for every detection.
        before.push(&at(1, false), &mut warnings);
        before.push(&at(2, false), &mut warnings);
        // Cut as text: its 128-bit digests do not survive a serde_json::Value.
        let state = String::from_utf8(before.snapshot()).unwrap();
        let start = state.find(",\"definitions\":{").unwrap();
        let end = start + state[start..].find('}').unwrap() + 1;
        let old = format!("{}{}", &state[..start], &state[end..]);
        assert!(!old.contains("definitions"), "{old}");
        // That version kept each counted detection whole, not only what a firing reads.
        assert!(old.contains("\"detection\":{"), "{old}");
        let old = old.replace(
            "\"detection\":{",
            "\"detection\":{\"schema\":\"tocsin.detection/1\",\"id\":\"det-old\",\"event_time\":\"2026-03-02T08:00:00Z\",\"tags\":[\"attack.t1110\"],\"correlation_keys\":[\"correlation:three:h1\"],\"tlp\":\"green\",\"standalone\":false,",
        );
        let old = old.into_bytes();
        let mut after = Correlator::restore(config(), &old).unwrap();
        // The same two detections again, now with their source: redeliveries.
        after.push(&at(1, true), &mut warnings);
        after.push(&at(2, true), &mut warnings);
        assert!(after.take_derived().is_empty());
        assert_eq!(after.correlation_rule_stats().duplicates, 2);
        after.push(&at(3, true), &mut warnings);
        assert_eq!(after.take_derived().len(), 1);
    }

    /// A reload replaces the correlation rules between two detections: a correlation whose
    /// windows mean the same keeps what its groups counted (a new title is used from the next
    /// firing on), one whose condition changed starts afresh under the new one, a new one
    /// counts from the reload on, and a removed one no longer fires.
    #[test]
    fn replaced_correlation_rules_keep_the_groups_of_unchanged_windows() {
        let rule = |id: &str, title: &str, gte: u32| {
            correlation(&format!("title: {title}\nid: {id}\ncorrelation:\n  type: event_count\n  rules: [failed_logon]\n  group-by: [Host]\n  timespan: 1h\n  condition: {{gte: {gte}}}\n"))
        };
        let (same, changed, removed) = (
            rule("same", "Same", 4),
            rule("changed", "Changed", 4),
            rule("removed", "Removed", 4),
        );
        let fail = |c: &CorrelationRule, at: i64| det(c, "failed_logon", at, &[("Host", "h1")]);
        let mut correlator = Correlator::new(CorrelatorConfig {
            correlation_rules: vec![same.clone(), changed.clone(), removed.clone()],
            ..CorrelatorConfig::default()
        });
        let feed = |correlator: &mut Correlator, rules: &[&CorrelationRule], at: i64| {
            let mut warnings = Vec::new();
            for c in rules {
                correlator.push(&fail(c, at), &mut warnings);
            }
            correlator.take_derived()
        };
        let mut out = Vec::new();
        let old: [&CorrelationRule; 3] = [&same, &changed, &removed];
        for at in 0..3 {
            out.extend(feed(&mut correlator, &old, at));
        }
        assert!(out.is_empty(), "{out:?}");
        let snapshot = correlator.snapshot();

        let renamed = rule("same", "Same, renamed", 4);
        let stricter = rule("changed", "Changed", 5);
        let added = rule("added", "Added", 2);
        let replaced = correlator.replace_correlation_rules(&[
            renamed.clone(),
            stricter.clone(),
            added.clone(),
        ]);
        assert_eq!(
            (
                replaced.kept,
                replaced.changed,
                replaced.added,
                replaced.removed
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(replaced.groups_dropped, 2, "{replaced:?}");
        assert!(replaced.differs());

        let new: [&CorrelationRule; 4] = [&renamed, &stricter, &added, &removed];
        for at in 3..5 {
            out.extend(feed(&mut correlator, &new, at));
        }
        let fired: Vec<(&str, &str, &str)> = out
            .iter()
            .map(|d| {
                (
                    d.rule.id.as_str(),
                    d.rule.title.as_str(),
                    d.fields["event_count"].as_str(),
                )
            })
            .collect();
        // `same` counted 3 before the reload: its fourth fires, under its new title;
        // `changed` counts 2 since the reload, short of 5; `added` reaches 2.
        assert_eq!(
            fired,
            vec![("same", "Same, renamed", "4"), ("added", "Added", "2")],
            "{out:#?}"
        );
        assert!(correlator.correlation_rule_stats().unknown >= 2);
        assert_eq!(correlator.correlation_rule_stats().discarded, 2);

        // A restart under the new rules, from the state saved before the change, drops
        // and keeps the same groups.
        let mut restarted = Correlator::restore(
            CorrelatorConfig {
                correlation_rules: vec![renamed.clone(), stricter.clone(), added.clone()],
                ..CorrelatorConfig::default()
            },
            &snapshot,
        )
        .unwrap();
        let mut after_restart = Vec::new();
        for at in 3..5 {
            after_restart.extend(feed(&mut restarted, &new, at));
        }
        assert_eq!(
            after_restart
                .iter()
                .map(|d| (d.rule.id.as_str(), d.fields["event_count"].as_str()))
                .collect::<Vec<_>>(),
            vec![("same", "4"), ("added", "2")],
            "{after_restart:#?}"
        );
        assert_eq!(restarted.correlation_rule_stats().discarded, 2);

        let again = correlator.replace_correlation_rules(&[renamed, stricter, added]);
        assert!(!again.differs(), "{again:?}");
        assert_eq!(again.groups_dropped, 0);
    }

    /// A window judged at its close is judged once the watermark passes its end: after a
    /// reload that kept its group, and after it was judged and opened again by a later
    /// arrival (the first window's end no longer counts for it).
    #[test]
    fn windows_judged_at_close_end_across_reloads_and_reopenings() {
        let quiet = correlation("title: Quiet host\nid: quiet\ncorrelation:\n  type: event_count\n  rules: [heartbeat]\n  group-by: [Host]\n  timespan: 1h\n  condition: {lt: 3}\n");
        let beat = |host: &str, at: i64| det(&quiet, "heartbeat", at, &[("Host", host)]);
        let mut c = Correlator::new(CorrelatorConfig {
            correlation_rules: vec![quiet.clone()],
            ..CorrelatorConfig::default()
        });
        let mut warnings = Vec::new();
        let mut push = |c: &mut Correlator, d: Detection| {
            c.push(&d, &mut warnings);
            c.take_derived()
                .iter()
                .map(|f| (f.fields["Host"].clone(), f.fields["event_count"].clone()))
                .collect::<Vec<_>>()
        };
        assert!(push(&mut c, beat("h1", 0)).is_empty());
        assert!(push(&mut c, beat("h2", 30)).is_empty());
        // A reload that keeps the correlation keeps both groups and their ends.
        let replaced = c.replace_correlation_rules(std::slice::from_ref(&quiet));
        assert_eq!((replaced.kept, replaced.groups_dropped), (1, 0));
        // h2 again past its window's end (90): judged (one beat), and a new window opens
        // at 95; event time at 95 also ends h1's window (0 to 60).
        assert_eq!(
            push(&mut c, beat("h2", 95)),
            [("h2".into(), "1".into()), ("h1".into(), "1".into())]
        );
        assert_eq!(c.live_correlation_groups(), 1);
        // The old end of h2's first window (90) is behind; its new window ends at 155.
        assert!(push(&mut c, beat("h3", 150)).is_empty());
        assert_eq!(c.live_correlation_groups(), 2);
        assert_eq!(push(&mut c, beat("h3", 156)), [("h2".into(), "1".into())]);
    }

    /// A detection that is not counted (here: of a correlation no longer loaded) still moves
    /// event time on, and the windows it ends are judged then, not at the next detection.
    #[test]
    fn an_uncounted_detection_still_ends_windows() {
        let quiet = correlation("title: Quiet host\nid: quiet\ncorrelation:\n  type: event_count\n  rules: [heartbeat]\n  group-by: [Host]\n  timespan: 1h\n  condition: {lt: 3}\n");
        let gone = correlation("title: Gone\nid: gone\ncorrelation:\n  type: event_count\n  rules: [heartbeat]\n  group-by: [Host]\n  timespan: 1h\n  condition: {gte: 3}\n");
        let mut c = Correlator::new(CorrelatorConfig {
            correlation_rules: vec![quiet.clone()],
            ..CorrelatorConfig::default()
        });
        let mut warnings = Vec::new();
        c.push(
            &det(&quiet, "heartbeat", 0, &[("Host", "h1")]),
            &mut warnings,
        );
        c.push(
            &det(&gone, "heartbeat", 120, &[("Host", "h1")]),
            &mut warnings,
        );
        assert_eq!(c.correlation_rule_stats().unknown, 1);
        let fired = c.take_derived();
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].fields["Host"], "h1");
    }

    /// A full engine evicts the least recently seen share of its groups (1/64, at least
    /// one) to make room for a new group.
    #[test]
    fn a_full_engine_evicts_its_least_recently_seen_groups() {
        let quiet = correlation("title: Quiet host\nid: quiet\ncorrelation:\n  type: event_count\n  rules: [heartbeat]\n  group-by: [Host]\n  timespan: 1d\n  condition: {lt: 3}\n");
        let beat =
            |host: usize, at: i64| det(&quiet, "heartbeat", at, &[("Host", &format!("h{host}"))]);
        let engine = |max_groups: usize| {
            Correlator::new(CorrelatorConfig {
                correlation_rules: vec![quiet.clone()],
                max_correlation_groups: max_groups,
                ..CorrelatorConfig::default()
            })
        };
        let mut warnings = Vec::new();
        // Two groups at most: the third evicts the one seen least recently (h0, though it
        // was created first, was seen again after h1).
        let mut c = engine(2);
        for (host, at) in [(0, 0), (1, 1), (0, 2), (2, 3)] {
            c.push(&beat(host, at), &mut warnings);
        }
        assert_eq!(c.live_correlation_groups(), 2);
        assert_eq!(c.correlation_rule_stats().evicted, 1);
        c.finish(&mut warnings);
        let mut judged: Vec<String> = c
            .take_derived()
            .iter()
            .map(|d| d.fields["Host"].clone())
            .collect();
        judged.sort();
        assert_eq!(judged, ["h0", "h2"]);
        // 128 groups: a new one evicts the two oldest (128 / 64).
        let mut c = engine(128);
        for host in 0..129 {
            c.push(&beat(host, host as i64), &mut warnings);
        }
        assert_eq!(c.live_correlation_groups(), 127);
        assert_eq!(c.correlation_rule_stats().evicted, 2);
        c.finish(&mut warnings);
        let judged: BTreeSet<String> = c
            .take_derived()
            .iter()
            .map(|d| d.fields["Host"].clone())
            .collect();
        assert!(!judged.contains("h0") && !judged.contains("h1") && judged.contains("h2"));
        assert!(warnings.is_empty());
    }

    #[test]
    fn late_detections_are_counted_not_merged() {
        let c = correlation("title: Count\nid: cnt\ncorrelation:\n  type: event_count\n  rules: [r]\n  group-by: [Host]\n  timespan: 10m\n  condition: {gte: 3}\n");
        let mut corr = Correlator::new(CorrelatorConfig {
            correlation_rules: vec![c.clone()],
            ..CorrelatorConfig::default()
        });
        let mut w = Vec::new();
        for at in [100, 101, 40] {
            corr.push(&det(&c, "r", at, &[("Host", "h")]), &mut w);
        }
        assert_eq!(corr.correlation_rule_stats().late, 1);
        assert!(corr.take_derived().is_empty());
    }
}

mod snapshots {
    use proptest::prelude::*;
    use tocsin_core::{correlation_rule_key, Tlp};
    use tocsin_rules::parse_sigma_source;

    use super::det;
    use crate::{Correlator, CorrelatorConfig};

    fn config() -> CorrelatorConfig {
        let src = parse_sigma_source(
            "c.yml",
            "title: Burst\nid: burst\ncorrelation:\n  type: event_count\n  rules: [ioc:cert]\n  group-by: [Host]\n  timespan: 30m\n  condition: {gte: 3}\n---\ntitle: Few\nid: few\ncorrelation:\n  type: event_count\n  rules: [ioc:cert]\n  group-by: [Host]\n  timespan: 1h\n  condition: {lt: 2}\n",
        );
        CorrelatorConfig {
            correlation_rules: src.correlations,
            ..CorrelatorConfig::default()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Restoring a snapshot and replaying the rest gives the same warnings and correlation
        /// detections as an uninterrupted run.
        #[test]
        fn restore_then_replay_equals_uninterrupted(
            inputs in proptest::collection::vec((0u8..4, 0u8..3, 0u8..3, 0i64..600, 0u8..3), 1..40),
            split in 0usize..40,
        ) {
            let orgs = ["A", "B", "C", "D"];
            let sectors = ["health", "energy", "banking"];
            let states = ["DE", "FR", "IT"];
            let detections: Vec<_> = inputs
                .iter()
                .enumerate()
                .map(|(i, (o, s, m, minute, host))| {
                    let mut d = det(&format!("d{i}"), orgs[*o as usize], sectors[*s as usize], states[*m as usize], minute * 60_000, Tlp::Green);
                    let host = format!("h{host}");
                    d.fields.insert("Host".into(), host.clone());
                    d.correlation_keys.push(correlation_rule_key("burst", &[&host]));
                    d.correlation_keys.push(correlation_rule_key("few", &[&host]));
                    d
                })
                .collect();
            let split = split.min(detections.len());
            let run = |c: &mut Correlator, ds: &[tocsin_core::Detection], out: &mut Vec<String>| {
                for d in ds {
                    let mut w = Vec::new();
                    c.push(d, &mut w);
                    out.extend(w.iter().map(|w| serde_json::to_string(w).unwrap()));
                    out.extend(c.take_derived().iter().map(|d| serde_json::to_string(d).unwrap()));
                }
            };
            let finish = |c: &mut Correlator, out: &mut Vec<String>| {
                let mut w = Vec::new();
                c.finish(&mut w);
                out.extend(w.iter().map(|w| serde_json::to_string(w).unwrap()));
                out.extend(c.take_derived().iter().map(|d| serde_json::to_string(d).unwrap()));
            };
            let mut whole = Vec::new();
            let mut a = Correlator::new(config());
            run(&mut a, &detections, &mut whole);
            finish(&mut a, &mut whole);

            let mut resumed = Vec::new();
            let mut b = Correlator::new(config());
            run(&mut b, &detections[..split], &mut resumed);
            let bytes = b.snapshot();
            drop(b);
            let mut c = Correlator::restore(config(), &bytes).unwrap();
            // What is restored is what was saved: written again, the same bytes.
            prop_assert_eq!(String::from_utf8(c.snapshot()).unwrap(), String::from_utf8(bytes).unwrap());
            run(&mut c, &detections[split..], &mut resumed);
            finish(&mut c, &mut resumed);
            prop_assert_eq!(whole, resumed);
        }
    }

    /// What each step of [`deltas_on_a_snapshot_rebuild_the_state`] does after its detection.
    #[derive(Debug, Clone, Copy)]
    enum Then {
        Nothing,
        /// Event time moves on by this many minutes without a detection.
        Advance(i64),
        /// The correlation rules are reloaded: `few` with a window of another length (its
        /// groups are dropped), or back.
        Reload,
        /// The state is written whole.
        Snapshot,
        /// The changes since the last write are written.
        Delta,
    }

    fn then() -> impl Strategy<Value = Then> {
        prop_oneof![
            3 => Just(Then::Nothing),
            1 => (1i64..300).prop_map(Then::Advance),
            1 => Just(Then::Reload),
            1 => Just(Then::Snapshot),
            3 => Just(Then::Delta),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        /// A state written whole at some points and as deltas at others, rebuilt from the
        /// last whole one and the deltas after it, is the state: written again, the same
        /// bytes; and replaying the rest from it gives the same output. Small limits make
        /// keys and groups go every way there is: closed when quiet, ended with their
        /// window, evicted to make room, refused.
        #[test]
        fn deltas_on_a_snapshot_rebuild_the_state(
            steps in proptest::collection::vec(
                ((0u8..4, 0u8..3, 0u8..3, 0i64..900, 0u8..3, 0u8..4), 0usize..6, then()),
                1..60,
            ),
        ) {
            // `few` over one hour, and over two after each reload that changes it.
            let rules = |longer: bool| {
                let mut rules = config().correlation_rules;
                if longer {
                    for r in &mut rules {
                        if r.id == "few" {
                            r.timespan = tocsin_core::DurationMs(2 * 3_600_000);
                        }
                    }
                }
                rules
            };
            let small = || {
                let mut c = config();
                c.max_keys = 3;
                c.max_correlation_groups = 2;
                c.policy.window = tocsin_core::DurationMs(120 * 60_000);
                c.policy.closed_after = tocsin_core::DurationMs(90 * 60_000);
                c.policy.min_update_interval = tocsin_core::DurationMs(10 * 60_000);
                c
            };
            let orgs = ["A", "B", "C", "D"];
            let sectors = ["health", "energy", "banking"];
            let states = ["DE", "FR", "IT"];
            let mut live = Correlator::new(small());
            let mut out = Vec::new();
            let mut base: Option<Vec<u8>> = None;
            let mut deltas: Vec<Vec<u8>> = Vec::new();
            // The last state rebuilt, the step after which it was written (and whether `few`
            // was the longer then), and the output
            // from there on.
            let mut rebuilt: Option<(usize, bool, Correlator)> = None;
            let mut output_after: Vec<(usize, String)> = Vec::new();
            let emit = |c: &mut Correlator, step: usize, w: &[tocsin_core::EarlyWarning], out: &mut Vec<(usize, String)>| {
                out.extend(w.iter().map(|w| (step, serde_json::to_string(w).unwrap())));
                out.extend(c.take_derived().iter().map(|d| (step, serde_json::to_string(d).unwrap())));
            };
            let detection = |i: usize, (o, s, m, minute, host, campaign): (u8, u8, u8, i64, u8, u8)| {
                let mut d = det(&format!("d{i}"), orgs[o as usize], sectors[s as usize], states[m as usize], minute * 60_000, Tlp::Green);
                let host = format!("h{host}");
                d.fields.insert("Host".into(), host.clone());
                d.correlation_keys.push(format!("campaign:c{campaign}"));
                d.correlation_keys.push(correlation_rule_key("burst", &[&host]));
                d.correlation_keys.push(correlation_rule_key("few", &[&host]));
                d
            };
            // As `tocsin run` merges (under every key), or as a correlate worker does (under
            // the key of its message: `keyed` picks one of the detection's four).
            let act = |c: &mut Correlator, i: usize, input, keyed: usize, then: Then, longer: &mut bool, out: &mut Vec<tocsin_core::EarlyWarning>| {
                let d = detection(i, input);
                match keyed.checked_sub(2).and_then(|k| d.correlation_keys.get(k)) {
                    Some(key) => c.push_keyed(&d, key, out),
                    None => c.push(&d, out),
                }
                match then {
                    Then::Advance(minutes) => {
                        let to = c.watermark().unwrap().0 + minutes * 60_000;
                        c.advance(tocsin_core::Timestamp(to), out);
                    }
                    Then::Reload => {
                        *longer = !*longer;
                        c.replace_correlation_rules(&rules(*longer));
                    }
                    _ => {}
                }
            };
            let mut live_longer = false;
            for (i, (input, keyed, then)) in steps.iter().enumerate() {
                out.clear();
                act(&mut live, i, *input, *keyed, *then, &mut live_longer, &mut out);
                emit(&mut live, i, &out, &mut output_after);
                match then {
                    Then::Snapshot => {
                        base = Some(live.snapshot());
                        live.whole_state_written();
                        deltas.clear();
                    }
                    Then::Delta if base.is_some() => {
                        deltas.push(live.take_delta().expect("after a whole state"))
                    }
                    Then::Delta => {
                        prop_assert!(live.take_delta().is_none(), "a delta on no whole state");
                        continue;
                    }
                    _ => continue,
                }
                // Restored under the rules in use at the write, as the worker that wrote it.
                let mut config = small();
                config.correlation_rules = rules(live_longer);
                let mut c = Correlator::restore(config, base.as_ref().unwrap()).unwrap();
                for delta in &deltas {
                    c.apply_delta(delta).unwrap();
                }
                prop_assert_eq!(
                    String::from_utf8(c.snapshot()).unwrap(),
                    String::from_utf8(live.snapshot()).unwrap(),
                    "rebuilt after step {} from a snapshot and {} deltas", i, deltas.len()
                );
                rebuilt = Some((i, live_longer, c));
            }
            let mut w = Vec::new();
            live.finish(&mut w);
            emit(&mut live, steps.len(), &w, &mut output_after);
            if let Some((from, mut longer, mut c)) = rebuilt {
                let mut resumed = Vec::new();
                for (i, (input, keyed, then)) in steps.iter().enumerate().skip(from + 1) {
                    out.clear();
                    act(&mut c, i, *input, *keyed, *then, &mut longer, &mut out);
                    emit(&mut c, i, &out, &mut resumed);
                }
                let mut w = Vec::new();
                c.finish(&mut w);
                emit(&mut c, steps.len(), &w, &mut resumed);
                let expected: Vec<(usize, String)> =
                    output_after.into_iter().filter(|(step, _)| *step > from).collect();
                prop_assert_eq!(expected, resumed);
            }
        }
    }

    #[test]
    fn a_delta_is_not_a_snapshot_nor_the_other_way_round() {
        let mut c = Correlator::new(config());
        let mut out = Vec::new();
        let empty = c.snapshot();
        c.whole_state_written();
        c.push(&det("d0", "A", "health", "DE", 0, Tlp::Green), &mut out);
        let delta = c.take_delta().unwrap();
        assert!(
            matches!(
                Correlator::restore(config(), &delta),
                Err(crate::SnapshotError::Version(_))
            ),
            "a delta restored as a snapshot"
        );
        let snapshot = c.snapshot();
        let mut other = Correlator::restore(config(), &empty).unwrap();
        // Recording, as a worker's correlator is once it has written its state.
        other.whole_state_written();
        assert!(matches!(
            other.apply_delta(&snapshot),
            Err(crate::SnapshotError::Version(_))
        ));
        assert!(other
            .apply_delta(b"{\"format\":\"tocsin.correlator-delta/v1\"}")
            .is_err());
        other.apply_delta(&delta).unwrap();
        assert_eq!(other.snapshot(), snapshot);
        assert!(
            !other.has_changes(),
            "what a delta brings is no change of this one's"
        );
    }

    #[test]
    fn bad_snapshots_are_errors() {
        assert!(Correlator::restore(CorrelatorConfig::default(), b"not json").is_err());
        // A format this version does not read is named as such, whatever its body.
        for other in [
            r#"{"format":"tocsin.correlator-state/v0","watermark_ms":0,"stats":{},"keys":[],"sigma":{}}"#,
            r#"{"format":"tocsin.correlator-state/v3","state":"of another shape"}"#,
        ] {
            let err = Correlator::restore(CorrelatorConfig::default(), other.as_bytes());
            assert!(
                matches!(err, Err(crate::SnapshotError::Version(_))),
                "{other}"
            );
        }
    }
}

#[test]
fn interleaved_keys_each_warn_on_their_second_organisation() {
    let mut c = Correlator::new(CorrelatorConfig::default());
    let mk = |k: usize, org: &str, n: i64| {
        let mut d = det(
            &format!("det-{k}-{org}"),
            org,
            "health",
            "DE",
            n,
            Tlp::Green,
        );
        d.correlation_keys = vec![format!("indicator:domain:h{k}.bad.test")];
        d
    };
    let mut total = 0;
    for k in 0..1000usize {
        let mut out = Vec::new();
        c.push(&mk(k, "Org A", k as i64), &mut out);
        assert!(out.is_empty());
        c.push(&mk(k, "Org B", k as i64 + 1), &mut out);
        assert_eq!(out.len(), 1, "key {k}");
        total += 1;
    }
    assert_eq!(total, 1000);
}

#[test]
fn severity_thresholds_per_taxonomy_class() {
    let policy = tocsin_rules::parse_policy(
        "e.yaml",
        "version: 1\nwindow: 6h\ncandidate: {min_organisations: 2}\nwarning: {min_organisations: 2}\ncross_border: {min_member_states: 2}\ncross_sector: {min_sectors: 2}\nseverity:\n  - when: {taxonomy_class: availability}\n    severity: critical\n  - severity: low\n",
    )
    .unwrap();
    let run = |taxonomy: tocsin_core::Taxonomy| {
        let mut c = Correlator::new(CorrelatorConfig {
            policy: policy.clone(),
            ..CorrelatorConfig::default()
        });
        let mut out = Vec::new();
        for (i, org) in ["A", "B"].iter().enumerate() {
            let mut d = det(&format!("d{i}"), org, "banking", "DE", i as i64, Tlp::Green);
            d.taxonomy = Some(taxonomy);
            c.push(&d, &mut out);
        }
        out[0].severity
    };
    assert_eq!(
        run(tocsin_core::Taxonomy::new(tocsin_core::TaxonomyType::Ddos)),
        Severity::Critical
    );
    assert_eq!(
        run(tocsin_core::Taxonomy::new(
            tocsin_core::TaxonomyType::InfectedSystem
        )),
        Severity::Low
    );
    let bad = tocsin_rules::parse_policy("e.yaml", "version: 1\nwindow: 6h\ncandidate: {min_organisations: 2}\nwarning: {min_organisations: 2}\ncross_border: {min_member_states: 2}\ncross_sector: {min_sectors: 2}\nseverity:\n  - when: {taxonomy_class: mischief}\n    severity: low\n");
    assert_eq!(bad.unwrap_err().location.line, 8);
}

/// A reloaded policy judges what comes next: a key short of the old threshold warns at its
/// next detection under a lower one; the same policy again changes nothing.
#[test]
fn a_replaced_policy_judges_the_next_detection() {
    let mut config = CorrelatorConfig::default();
    config.policy.warning_min_organisations = 5;
    let mut c = Correlator::new(config.clone());
    let mut out = Vec::new();
    for (i, org) in ["A", "B", "C"].iter().enumerate() {
        let d = det(
            &format!("d{i}"),
            org,
            "health",
            "DE",
            i as i64 * H,
            Tlp::Green,
        );
        c.push(&d, &mut out);
    }
    assert!(out.is_empty());
    assert!(!c.replace_policy(config.policy.clone()), "the same policy");
    let mut lower = config.policy.clone();
    lower.warning_min_organisations = 2;
    lower.allowed_lateness = tocsin_core::DurationMs(60_000);
    assert!(c.replace_policy(lower));
    assert_eq!(
        c.config.policy.allowed_lateness,
        tocsin_core::DurationMs(60_000)
    );
    c.push(&det("d3", "D", "energy", "FR", 3 * H, Tlp::Green), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].affected.organisation_count, 4);
    // A higher threshold than it has: the warning issued goes on under it.
    let mut higher = config.policy.clone();
    higher.warning_min_organisations = 10;
    assert!(c.replace_policy(higher));
    c.push(
        &det("d4", "E", "banking", "IT", 4 * H, Tlp::Green),
        &mut out,
    );
    assert_eq!(out.len(), 2, "the issued warning is updated");
    assert_eq!((out[1].version, out[1].affected.organisation_count), (2, 5));
}

#[test]
fn warnings_carry_the_issuer_of_their_first_version() {
    let mut config = CorrelatorConfig::default();
    let mut c = Correlator::new(config.clone());
    let mut out = Vec::new();
    let other = |id: &str, org: &str, at: i64| {
        let mut d = det(id, org, "energy", "FR", at, Tlp::Green);
        d.correlation_keys = vec!["campaign:other".to_owned()];
        d
    };
    c.push(&det("d0", "A", "health", "DE", 0, Tlp::Green), &mut out);
    c.push(&det("d1", "B", "energy", "FR", H, Tlp::Green), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].issuer, None, "no issuer named: none claimed");
    let first = tocsin_core::Issuer::new("CERT-XX".to_owned(), None, None);
    config.policy.issuer = Some(first.clone());
    assert!(c.replace_policy(config.policy.clone()));
    // The warning issued before goes on without one; a new one is the policy's issuer's.
    c.push(
        &det("d2", "C", "banking", "IT", 2 * H, Tlp::Green),
        &mut out,
    );
    c.push(&other("o0", "A", 2 * H), &mut out);
    c.push(&other("o1", "B", 2 * H + 1), &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!((out[1].version, out[1].issuer.as_ref()), (2, None));
    assert_eq!((out[2].version, out[2].issuer.as_ref()), (1, Some(&first)));
    // Another issuer since: each warning keeps the one of its first version, through a
    // snapshot too.
    config.policy.issuer = Some(tocsin_core::Issuer::new("CERT-YY".to_owned(), None, None));
    assert!(c.replace_policy(config.policy.clone()));
    let mut c = Correlator::restore(config.clone(), &c.snapshot()).unwrap();
    c.push(&other("o2", "C", 3 * H), &mut out);
    assert_eq!(out.len(), 4);
    assert_eq!((out[3].version, out[3].issuer.as_ref()), (2, Some(&first)));
    // It travels in the warning's JSON; a warning without one reads as before.
    let json = serde_json::to_value(&out[3]).unwrap();
    assert_eq!(json["issuer"]["name"], "CERT-XX");
    assert!(serde_json::to_value(&out[0])
        .unwrap()
        .get("issuer")
        .is_none());
}
