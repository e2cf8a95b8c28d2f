//! MISP rendering of an early warning: one event in the MISP core format
//! (`MISP/misp-rfc:misp-core-format`), ready for `POST /events/add` or a MISP feed.
//!
//! Why MISP besides STIX: most European national CSIRTs share through MISP, and MISP
//! classifies with taxonomy tags rather than objects. So the warning's vocabularies become
//! tags (`tlp:*`, `PAP:*`, `rsit:*`, `nis2:*`) and its indicators become attributes with
//! a valid category/type pair (RFC §Attribute/type), each tagged with its own TLP.
//!
//! Ids and updates: MISP updates an event in place when the same `uuid` arrives with a newer
//! `timestamp`. The event uuid therefore derives from the warning id and the rendering (the
//! audience and TLP ceiling) only, so every version of a warning updates one event per
//! rendering (two renderings of a version differ under one timestamp, so they are events of
//! their own, which instances that synchronise keep apart); attribute and report uuids
//! derive from the same and their own key, so an indicator keeps its attribute across
//! versions. The `timestamp` is
//! the version's `issued_at` (event time, so replays give the same bytes), which grows by
//! at least a second with each version (the correlator dates a version caused by a late
//! detection a second after the one before), so MISP never sees an update as older.
//!
//! The creator: `Orgc` names the warning's issuer (its name and UUID; the issuer's UUID is
//! part of every uuid here too) when the escalation policy names one, as a MISP feed needs
//! and as synchronised instances keep. Without one it is left out, and the receiving
//! instance's organisation becomes the creator. Instance-local fields (`id`, `event_id`,
//! `org_id`, `orgc_id`) are always left out: the receiving instance assigns them.
//!
//! Invariant: no I/O; a pure function of the warning.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use tocsin_core::{
    EarlyWarning, ImpactSeverity, IndicatorType, Outlook, Severity, ThreatSeverity, Tlp,
    WarningIndicator, WarningStatus,
};

use tocsin_core::id::uuid_v4_shaped;

use crate::stix::{rendering_hasher, status_name};

/// Longest `info` the MISP core format recommends, in characters.
pub const MISP_INFO_MAX_CHARS: usize = 256;

/// The tag that marks exercise traffic.
pub const EXERCISE_TAG: &str = "tocsin:exercise";

/// Render one version of a warning as a MISP event (`{"Event": {...}}`).
pub fn to_event(w: &EarlyWarning) -> Value {
    let timestamp = unix_seconds(w);
    let (year, month, day, ..) = w.first_seen.civil();
    let attributes: Vec<Value> = unique_indicators(&w.indicators)
        .map(|indicator| attribute(w, indicator, &timestamp))
        .collect();
    let mut event = json!({
        "Event": {
            "uuid": uuid(w, "event", ""),
            "info": info(&w.headline),
            "date": format!("{year:04}-{month:02}-{day:02}"),
            "timestamp": timestamp,
            "publish_timestamp": "0",
            "published": false,
            "threat_level_id": threat_level_id(w.severity),
            "analysis": analysis(w.status),
            "distribution": distribution(w.tlp),
            "sharing_group_id": "0",
            "Tag": event_tags(w),
            "Attribute": attributes,
            "EventReport": [{
                "uuid": uuid(w, "event-report", ""),
                "name": format!("Tocsin early warning {}", w.warning_id),
                "content": report_markdown(w),
                "distribution": "5",
                "sharing_group_id": "0",
                "timestamp": timestamp,
                "deleted": false,
            }],
        }
    });
    if let Some(issuer) = &w.issuer {
        event["Event"]["Orgc"] = json!({"name": issuer.name, "uuid": issuer.uuid});
    }
    event
}

/// The MISP attribute type and category for an indicator type. Every pair is valid in the
/// RFC's category/type matrix: network indicators under "Network activity", file hashes and
/// names under "Payload delivery".
pub fn attribute_type_and_category(kind: IndicatorType) -> (&'static str, &'static str) {
    const NETWORK: &str = "Network activity";
    const PAYLOAD: &str = "Payload delivery";
    match kind {
        IndicatorType::Ipv4 | IndicatorType::Ipv6 => ("ip-dst", NETWORK),
        IndicatorType::Domain => ("domain", NETWORK),
        IndicatorType::Url => ("url", NETWORK),
        IndicatorType::Email => ("email-src", NETWORK),
        IndicatorType::Md5 => ("md5", PAYLOAD),
        IndicatorType::Sha1 => ("sha1", PAYLOAD),
        IndicatorType::Sha256 => ("sha256", PAYLOAD),
        IndicatorType::Sha512 => ("sha512", PAYLOAD),
        IndicatorType::Filename => ("filename", PAYLOAD),
    }
}

/// The event's MISP `distribution` for a TLP label.
///
/// MISP distribution says which instances an event travels to, TLP says who may read it, and
/// the two do not map one to one. TLP:CLEAR and TLP:GREEN allow sharing within the
/// recipient's community, which is "1" (This Community Only); we do not go wider for
/// TLP:CLEAR, since pushing to connected communities is a sharing decision for the operator.
/// TLP:AMBER and stricter are need-to-know within the recipient's organisation, which MISP
/// can only express as "0" (Your Organisation Only); the recipient may then share further by
/// hand, as TLP allows.
pub fn distribution(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear | Tlp::Green => "1",
        Tlp::Amber | Tlp::AmberStrict | Tlp::Red => "0",
    }
}

/// `threat_level_id`: "1" high, "2" medium, "3" low.
fn threat_level_id(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "1",
        Severity::Medium => "2",
        Severity::Low => "3",
    }
}

/// `analysis`: "1" ongoing, "2" complete once the warning is closed.
fn analysis(status: WarningStatus) -> &'static str {
    match status {
        WarningStatus::Closed => "2",
        WarningStatus::New | WarningStatus::Update | WarningStatus::Escalated => "1",
    }
}

/// Unix seconds of `issued_at`, as the JSON string MISP expects.
fn unix_seconds(w: &EarlyWarning) -> String {
    w.issued_at.millis().div_euclid(1000).to_string()
}

/// A deterministic uuid within one rendering of a warning (its audience and TLP ceiling);
/// `kind` and `key` say what it names.
fn uuid(w: &EarlyWarning, kind: &str, key: &str) -> String {
    let digest = rendering_hasher("tocsin.misp", w)
        .part(kind.as_bytes())
        .part(key.as_bytes())
        .digest();
    uuid_v4_shaped(digest)
}

/// The headline as MISP `info`: control characters (new lines included) become spaces, and
/// at most [`MISP_INFO_MAX_CHARS`] characters are kept, the last one an ellipsis when cut.
fn info(headline: &str) -> String {
    let single_line: String = headline
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if single_line.chars().count() <= MISP_INFO_MAX_CHARS {
        return single_line;
    }
    let mut cut: String = single_line.chars().take(MISP_INFO_MAX_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// A tag, with the colour of its taxonomy where it defines one.
fn tag(name: &str) -> Value {
    match tag_colour(name) {
        Some(colour) => json!({"name": name, "colour": colour, "exportable": true}),
        None => json!({"name": name, "exportable": true}),
    }
}

/// Colours of the `tlp` and `PAP` taxonomies (`MISP/misp-taxonomies`).
fn tag_colour(name: &str) -> Option<&'static str> {
    Some(match name {
        "tlp:red" | "PAP:RED" => "#CC0033",
        "tlp:amber+strict" | "tlp:amber" | "PAP:AMBER" => "#FFC000",
        "tlp:green" | "PAP:GREEN" => "#339900",
        "tlp:clear" | "PAP:CLEAR" => "#ffffff",
        _ => return None,
    })
}

fn event_tags(w: &EarlyWarning) -> Vec<Value> {
    let mut names: Vec<String> = vec![w.tlp.misp_tag().to_owned(), w.pap.misp_tag().to_owned()];
    if let Some(taxonomy) = w.taxonomy {
        names.push(taxonomy.misp_tag());
    }
    names.extend(w.affected.sectors.iter().map(|sector| sector.misp_tag()));
    if w.suspected_malicious {
        names.push("nis2:nature-root-cause=\"malicious-actions\"".to_owned());
    }
    names.push(format!(
        "nis2:nature-severity=\"{}\"",
        threat_severity_value(w.eu_taxonomy.threat_severity)
    ));
    names.push(format!(
        "nis2:impact-severity=\"{}\"",
        impact_severity_value(w.eu_taxonomy.impact_severity)
    ));
    names.push(format!(
        "nis2:impact-outlook=\"{}\"",
        outlook_value(w.eu_taxonomy.outlook)
    ));
    // Not a MISP taxonomy: member states have no machine tag outside galaxies, which this
    // renderer leaves out; the tag lets recipients filter cross-border warnings.
    names.extend(
        w.affected
            .member_states
            .iter()
            .map(|member_state| format!("tocsin:member-state=\"{member_state}\"")),
    );
    if w.exercise {
        names.push(EXERCISE_TAG.to_owned());
    }
    names.iter().map(|name| tag(name)).collect()
}

fn threat_severity_value(severity: ThreatSeverity) -> &'static str {
    match severity {
        ThreatSeverity::Low => "low",
        ThreatSeverity::Medium => "medium",
        ThreatSeverity::High => "high",
    }
}

fn impact_severity_value(severity: ImpactSeverity) -> &'static str {
    match severity {
        ImpactSeverity::White => "white",
        ImpactSeverity::Green => "green",
        ImpactSeverity::Yellow => "yellow",
        ImpactSeverity::Red => "red",
    }
}

fn outlook_value(outlook: Outlook) -> &'static str {
    match outlook {
        Outlook::Improving => "improving",
        Outlook::Stable => "stable",
        Outlook::Worsening => "worsening",
    }
}

/// The indicators without repeats of the same (type, value), in order.
pub(crate) fn unique_indicators(
    indicators: &[WarningIndicator],
) -> impl Iterator<Item = &WarningIndicator> {
    let mut seen = BTreeSet::new();
    indicators
        .iter()
        .filter(move |indicator| seen.insert((indicator.kind, indicator.value.as_str())))
}

fn attribute(w: &EarlyWarning, indicator: &WarningIndicator, timestamp: &str) -> Value {
    let (attribute_type, category) = attribute_type_and_category(indicator.kind);
    let key = format!("{}:{}", indicator.kind.as_str(), indicator.value);
    // An attribute inherits the event's distribution ("5") unless its own label is stricter
    // than the event's, which the correlator never produces; then it stays in the
    // organisation.
    let distribution = if indicator.tlp.permits(w.tlp) {
        "5"
    } else {
        "0"
    };
    let comment = if indicator.feeds.is_empty() {
        String::from("Tocsin early warning indicator")
    } else {
        format!("Feeds: {}", indicator.feeds.join(", "))
    };
    json!({
        "uuid": uuid(w, "attribute", &key),
        "type": attribute_type,
        "category": category,
        "value": indicator.value,
        "to_ids": true,
        "distribution": distribution,
        "sharing_group_id": "0",
        "timestamp": timestamp,
        "comment": comment,
        "deleted": false,
        "disable_correlation": false,
        "Tag": [tag(indicator.tlp.misp_tag())],
    })
}

/// The warning as a Markdown report: what the tags cannot say.
fn report_markdown(w: &EarlyWarning) -> String {
    let yes_no = |flag: bool| if flag { "yes" } else { "no" };
    let mut text = String::new();
    if w.exercise {
        text.push_str("**EXERCISE - not a real warning.**\n\n");
    }
    text.push_str(&format!("# {}\n\n", info(&w.headline)));
    text.push_str(&format!(
        "- Warning: `{}` version {} ({})\n",
        w.warning_id,
        w.version,
        status_name(w.status)
    ));
    text.push_str(&format!("- Severity: {}\n", w.severity.as_str()));
    text.push_str(&format!("- {} / {}\n", w.tlp, w.pap.misp_tag()));
    text.push_str(&format!(
        "- Suspected unlawful or malicious acts: {}\n",
        yes_no(w.suspected_malicious)
    ));
    text.push_str(&format!(
        "- Possible cross-border impact: {}\n",
        yes_no(w.cross_border)
    ));
    text.push_str(&format!("- Cross-sector: {}\n", yes_no(w.cross_sector)));
    text.push_str(&format!(
        "- {} detections at {} organisations, {} to {}\n",
        w.detection_count, w.affected.organisation_count, w.first_seen, w.last_seen
    ));
    text.push_str(&format!(
        "- Reporting: early warning due {}, notification due {}, final report due {}\n",
        w.reporting.early_warning_due, w.reporting.notification_due, w.reporting.final_report_due
    ));
    if !w.affected.sectors.is_empty() {
        text.push_str("\n## Sectors\n\n");
        for sector in &w.affected.sectors {
            text.push_str(&format!(
                "- {} (NIS2 Annex {}, `{}`)\n",
                sector.display_name(),
                sector.annex(),
                sector.slug()
            ));
        }
    }
    if !w.affected.member_states.is_empty() {
        let member_states: Vec<&str> = w
            .affected
            .member_states
            .iter()
            .map(|m| m.as_str())
            .collect();
        text.push_str(&format!(
            "\n## Member states\n\n{}\n",
            member_states.join(", ")
        ));
    }
    if !w.timeline.is_empty() {
        text.push_str("\n## Timeline\n\n");
        for entry in &w.timeline {
            let who = entry.organisation.as_deref().unwrap_or("an organisation");
            let sector = entry.sector.map(|s| s.slug()).unwrap_or("unknown sector");
            let member_state = entry.member_state.map(|m| m.to_string());
            text.push_str(&format!(
                "- {}: {who} ({sector}, {})\n",
                entry.time,
                member_state.as_deref().unwrap_or("unknown member state")
            ));
        }
    }
    if !w.rules.is_empty() {
        text.push_str("\n## Rules\n\n");
        for rule in &w.rules {
            text.push_str(&format!(
                "- {} (`{}`): {} detections\n",
                rule.title, rule.id, rule.detections
            ));
        }
    }
    if !w.attack.is_empty() {
        text.push_str(&format!("\n## ATT&CK\n\n{}\n", w.attack.join(", ")));
    }
    if !w.recommended_actions.is_empty() {
        text.push_str("\n## Recommended actions\n\n");
        for action in &w.recommended_actions {
            text.push_str(&format!("- {action}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_one_line_and_at_most_256_characters() {
        assert_eq!(info("a\nb\tc"), "a b c");
        let long = "é".repeat(300);
        let cut = info(&long);
        assert_eq!(cut.chars().count(), MISP_INFO_MAX_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(info(&"x".repeat(256)), "x".repeat(256));
    }

    #[test]
    fn distribution_follows_tlp() {
        assert_eq!(distribution(Tlp::Clear), "1");
        assert_eq!(distribution(Tlp::Green), "1");
        for tlp in [Tlp::Amber, Tlp::AmberStrict, Tlp::Red] {
            assert_eq!(distribution(tlp), "0");
        }
    }
}
