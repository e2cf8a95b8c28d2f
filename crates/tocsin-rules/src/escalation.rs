//! The escalation policy (`rules/escalation.yaml`): when an incident candidate becomes an
//! early warning, and how severe it is.
//!
//! Coordinators decide this, not programmers, so it is a small YAML file validated at load
//! with errors at file:line. The severity rules are tried top to bottom; the first whose
//! `when` holds sets the severity. See `rules/README.md` for the format.

use serde::Deserialize;

use tocsin_core::{DurationMs, Issuer, Level, Severity};

use crate::diagnostic::{Diagnostic, Location};
use crate::yaml::{documents, YamlDocument};

/// Conditions on a candidate; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// The candidate spans ≥ `cross_border.min_member_states` member states.
    #[serde(default)]
    pub cross_border: Option<bool>,
    /// The candidate spans ≥ `cross_sector.min_sectors` sectors.
    #[serde(default)]
    pub cross_sector: Option<bool>,
    /// An NIS2 Annex I (high-criticality) sector is affected.
    #[serde(default)]
    pub essential_sector: Option<bool>,
    /// At least this many organisations.
    #[serde(default)]
    pub min_organisations: Option<u32>,
    /// At least this many sectors.
    #[serde(default)]
    pub min_sectors: Option<u32>,
    /// At least this many member states.
    #[serde(default)]
    pub min_member_states: Option<u32>,
    /// At least one detection of at least this rule level.
    #[serde(default)]
    pub min_level: Option<String>,
    /// The candidate's Reference Security Incident Taxonomy class (e.g. `malicious-code`):
    /// thresholds per taxonomy class.
    #[serde(default)]
    pub taxonomy_class: Option<String>,
}

/// One severity rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityRule {
    /// Conditions (empty = always).
    #[serde(default)]
    pub when: When,
    /// The severity when they hold.
    pub severity: String,
}

/// Thresholds that make a flag true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberStateThreshold {
    /// Member states needed.
    pub min_member_states: u32,
}

/// Thresholds that make a flag true.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectorThreshold {
    /// Sectors needed.
    pub min_sectors: u32,
}

/// When a candidate exists and when it becomes a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Distinct organisations needed.
    pub min_organisations: u32,
}

/// Who issues the warnings, as written in the policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerFile {
    name: String,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    contact: Option<String>,
}

/// Longest issuer name, in characters: what MISP takes for an organisation's name.
pub const ISSUER_NAME_MAX_CHARS: usize = 255;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    window: DurationMs,
    candidate: Threshold,
    warning: Threshold,
    cross_border: MemberStateThreshold,
    cross_sector: SectorThreshold,
    #[serde(default)]
    essential_sector_raises_severity: bool,
    severity: Vec<SeverityRule>,
    #[serde(default)]
    recommended_actions: Vec<String>,
    #[serde(default)]
    exercise: bool,
    #[serde(default)]
    closed_after: Option<DurationMs>,
    #[serde(default)]
    min_update_interval: Option<DurationMs>,
    #[serde(default)]
    allowed_lateness: Option<DurationMs>,
    #[serde(default)]
    issuer: Option<IssuerFile>,
}

/// The validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationPolicy {
    /// Event-time window per correlation key.
    pub window: DurationMs,
    /// Organisations needed for an incident candidate.
    pub candidate_min_organisations: u32,
    /// Organisations needed for a warning.
    pub warning_min_organisations: u32,
    /// Member states for `cross_border`.
    pub cross_border_min_member_states: u32,
    /// Sectors for `cross_sector`.
    pub cross_sector_min_sectors: u32,
    /// Raise severity one step when an Annex I sector is affected.
    pub essential_sector_raises_severity: bool,
    /// Severity rules, first match wins.
    pub severity: Vec<(When, Severity, Option<Level>)>,
    /// Actions recommended in every warning.
    pub recommended_actions: Vec<String>,
    /// Mark every warning as exercise traffic.
    pub exercise: bool,
    /// A warning with no new detection for this long (event time) is closed.
    pub closed_after: DurationMs,
    /// Updates of a warning come at most this often; escalations and closings come at once.
    pub min_update_interval: DurationMs,
    /// How far behind the latest event time a detection may arrive and still count in the
    /// windows of Sigma correlation rules; later ones are counted as late.
    pub allowed_lateness: DurationMs,
    /// Who issues the warnings (their renderings' author); `None`: Tocsin itself.
    pub issuer: Option<Issuer>,
}

impl EscalationPolicy {
    /// Whether an incident touching `member_states` member states counts as cross-border.
    pub fn is_cross_border(&self, member_states: usize) -> bool {
        member_states as u64 >= u64::from(self.cross_border_min_member_states)
    }

    /// Whether an incident touching `sectors` sectors counts as cross-sector.
    pub fn is_cross_sector(&self, sectors: usize) -> bool {
        sectors as u64 >= u64::from(self.cross_sector_min_sectors)
    }
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        EscalationPolicy {
            window: DurationMs(6 * 3_600_000),
            candidate_min_organisations: 2,
            warning_min_organisations: 2,
            cross_border_min_member_states: 2,
            cross_sector_min_sectors: 2,
            essential_sector_raises_severity: true,
            severity: vec![(When::default(), Severity::Medium, None)],
            recommended_actions: Vec::new(),
            exercise: false,
            closed_after: DurationMs(24 * 3_600_000),
            min_update_interval: DurationMs(0),
            allowed_lateness: DurationMs(0),
            issuer: None,
        }
    }
}

/// Parse and validate `escalation.yaml`.
pub fn parse_policy(file: &str, text: &str) -> Result<EscalationPolicy, Diagnostic> {
    let (docs, mut errs) = documents(file, text);
    if let Some(e) = errs.pop() {
        return Err(e);
    }
    let Some(doc) = docs.into_iter().next() else {
        return Err(Diagnostic::error(
            Location::line(file, 1),
            "empty",
            "policy file is empty",
        ));
    };
    let parsed: PolicyFile = serde_yaml::from_value(doc.value.clone()).map_err(|e| {
        // serde_yaml::from_value loses positions; find the key it names, if any.
        let msg = e.to_string();
        let loc = msg
            .split('`')
            .nth(1)
            .map(|k| doc.locate(&format!("{k}:")))
            .unwrap_or_else(|| doc.start());
        Diagnostic::error(
            loc,
            "bad-policy",
            format!("invalid escalation policy: {msg}"),
        )
    })?;
    if parsed.version != 1 {
        return Err(Diagnostic::error(
            doc.locate("version:"),
            "bad-policy",
            format!(
                "unsupported policy version {} (this Tocsin reads version 1)",
                parsed.version
            ),
        ));
    }
    if parsed.window.0 <= 0 {
        return Err(Diagnostic::error(
            doc.locate("window:"),
            "bad-policy",
            "window must be positive",
        ));
    }
    for (key, v) in [
        ("candidate:", parsed.candidate.min_organisations),
        ("warning:", parsed.warning.min_organisations),
        ("cross_border:", parsed.cross_border.min_member_states),
        ("cross_sector:", parsed.cross_sector.min_sectors),
    ] {
        if v == 0 {
            return Err(Diagnostic::error(
                doc.locate(key),
                "bad-policy",
                format!(
                    "{} thresholds must be at least 1",
                    key.trim_end_matches(':')
                ),
            ));
        }
    }
    if parsed.warning.min_organisations < parsed.candidate.min_organisations {
        return Err(Diagnostic::error(
            doc.locate("warning:"),
            "bad-policy",
            "warning.min_organisations cannot be below candidate.min_organisations",
        ));
    }
    let mut severity = Vec::new();
    for rule in parsed.severity {
        let Some(s) = Severity::parse(&rule.severity) else {
            return Err(Diagnostic::error(
                doc.locate_text(&format!("severity: {}", rule.severity)),
                "bad-policy",
                format!(
                    "unknown severity '{}' (expected low, medium, high, critical)",
                    rule.severity
                ),
            ));
        };
        let level = match &rule.when.min_level {
            None => None,
            Some(l) => match Level::parse(l) {
                Some(l) => Some(l),
                None => {
                    return Err(Diagnostic::error(
                        doc.locate("min_level:"),
                        "bad-policy",
                        format!("unknown rule level '{l}'"),
                    ))
                }
            },
        };
        if let Some(class) = &rule.when.taxonomy_class {
            if class.parse::<tocsin_core::TaxonomyClass>().is_err() {
                return Err(Diagnostic::error(
                    doc.locate_text(&format!("taxonomy_class: {class}")),
                    "bad-policy",
                    format!("unknown taxonomy class '{class}' (Reference Security Incident Taxonomy machine names, e.g. malicious-code, intrusions, availability)"),
                ));
            }
        }
        severity.push((rule.when, s, level));
    }
    if severity.is_empty() {
        return Err(Diagnostic::error(
            doc.locate("severity:"),
            "bad-policy",
            "at least one severity rule is needed",
        ));
    }
    let issuer = match parsed.issuer {
        None => None,
        Some(i) => Some(issuer(i, &doc)?),
    };
    Ok(EscalationPolicy {
        window: parsed.window,
        candidate_min_organisations: parsed.candidate.min_organisations,
        warning_min_organisations: parsed.warning.min_organisations,
        cross_border_min_member_states: parsed.cross_border.min_member_states,
        cross_sector_min_sectors: parsed.cross_sector.min_sectors,
        essential_sector_raises_severity: parsed.essential_sector_raises_severity,
        severity,
        recommended_actions: parsed.recommended_actions,
        exercise: parsed.exercise,
        closed_after: parsed.closed_after.unwrap_or(DurationMs(24 * 3_600_000)),
        min_update_interval: parsed.min_update_interval.unwrap_or(DurationMs(0)),
        allowed_lateness: parsed.allowed_lateness.unwrap_or(DurationMs(0)),
        issuer,
    })
}

/// Where `key` is written in the policy's `issuer` mapping, in block or flow style: on the
/// `issuer:` line or the indented lines under it, comments left out; else the `issuer:`
/// line.
fn issuer_key(doc: &YamlDocument<'_>, key: &str) -> Location {
    let section = doc.locate("issuer:");
    let needle = format!("{key}:");
    let first = section.line.saturating_sub(doc.first_line);
    for (i, line) in doc.text.lines().enumerate().skip(first) {
        let code = line.split(" #").next().unwrap_or_default();
        let code = if code.trim_start().starts_with('#') {
            ""
        } else {
            code
        };
        let indented = line.starts_with([' ', '\t']);
        if i > first && !indented && !code.trim().is_empty() {
            break;
        }
        let from = if i == first { "issuer:".len() } else { 0 };
        if let Some(column) = code.get(from..).and_then(|rest| rest.find(&needle)) {
            return Location {
                file: doc.file.to_owned(),
                line: doc.first_line + i,
                column: from + column + 1,
            };
        }
    }
    section
}

/// The policy's `issuer`, checked: a name of one line that MISP takes, a UUID in RFC 4122
/// form when one is given, a contact that says something.
fn issuer(i: IssuerFile, doc: &YamlDocument<'_>) -> Result<Issuer, Diagnostic> {
    let at = |key: &str| issuer_key(doc, key);
    let name = i.name.trim();
    let one_line = !name
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'));
    if name.is_empty() || !one_line || name.chars().count() > ISSUER_NAME_MAX_CHARS {
        return Err(Diagnostic::error(
            at("name"),
            "bad-policy",
            format!(
                "issuer.name must be one line of 1 to {ISSUER_NAME_MAX_CHARS} characters, without control characters"
            ),
        ));
    }
    if let Some(uuid) = &i.uuid {
        if !tocsin_core::id::is_uuid(uuid) {
            return Err(Diagnostic::error(
                at("uuid"),
                "bad-policy",
                format!(
                    "issuer.uuid '{uuid}' is not a UUID as STIX and MISP take them (8-4-4-4-12 hexadecimal digits, RFC 4122, version 1 to 5, as MISP shows an organisation's)"
                ),
            ));
        }
    }
    let contact = i.contact.map(|c| c.trim().to_owned());
    if contact.as_deref() == Some("") {
        return Err(Diagnostic::error(
            at("contact"),
            "bad-policy",
            "issuer.contact is empty (leave it out instead)",
        ));
    }
    Ok(Issuer::new(name.to_owned(), i.uuid.as_deref(), contact))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "version: 1\nwindow: 6h\ncandidate: {min_organisations: 2}\nwarning: {min_organisations: 2}\ncross_border: {min_member_states: 2}\ncross_sector: {min_sectors: 2}\nessential_sector_raises_severity: true\nseverity:\n  - when: {cross_border: true, cross_sector: true}\n    severity: critical\n  - severity: medium\n";

    #[test]
    fn parses_and_validates() {
        let p = parse_policy("e.yaml", POLICY).unwrap();
        assert_eq!(p.window.0, 6 * 3_600_000);
        assert_eq!(p.severity.len(), 2);
        assert_eq!(p.severity[0].1, Severity::Critical);

        let e = parse_policy(
            "e.yaml",
            &POLICY.replace("severity: critical", "severity: dire"),
        )
        .unwrap_err();
        assert_eq!(e.location.line, 10, "{e}");
        let e =
            parse_policy("e.yaml", &POLICY.replace("window: 6h", "window: six hours")).unwrap_err();
        assert!(e.message.contains("duration"), "{e}");
        let e = parse_policy(
            "e.yaml",
            &POLICY.replace("cross_border: true,", "cross_borders: true,"),
        )
        .unwrap_err();
        assert!(e.message.contains("cross_borders"), "{e}");
    }

    #[test]
    fn the_issuer_is_read_and_checked() {
        assert_eq!(parse_policy("e.yaml", POLICY).unwrap().issuer, None);
        let with = |issuer: &str| parse_policy("e.yaml", &format!("{POLICY}issuer:\n{issuer}"));
        let p = with("  name: CSIRTs Network coordination\n  contact: cc@example.eu\n").unwrap();
        let issuer = p.issuer.unwrap();
        assert_eq!(issuer.name, "CSIRTs Network coordination");
        assert_eq!(issuer.contact.as_deref(), Some("cc@example.eu"));
        assert!(tocsin_core::id::is_uuid(&issuer.uuid), "{}", issuer.uuid);
        // Derived from the name: the same on every worker and run, another for another name.
        let again = with("  name: CSIRTs Network coordination\n")
            .unwrap()
            .issuer;
        assert_eq!(again.unwrap().uuid, issuer.uuid);
        let other = with("  name: CERT-XX\n").unwrap().issuer.unwrap();
        assert_ne!(other.uuid, issuer.uuid);
        // A given UUID (MISP's for the organisation) is kept, lower-case.
        let given = with("  name: CERT-XX\n  uuid: 5F6E7D8C-1A2B-4C3D-8E9F-0A1B2C3D4E5F\n")
            .unwrap()
            .issuer
            .unwrap();
        assert_eq!(given.uuid, "5f6e7d8c-1a2b-4c3d-8e9f-0a1b2c3d4e5f");
        // Errors name the line of the key at fault.
        let first = POLICY.lines().count() + 1;
        for (issuer, line, says) in [
            ("  name: ''\n", first + 1, "issuer.name"),
            ("  name: \"two\\nlines\"\n", first + 1, "issuer.name"),
            (
                "  name: CERT-XX\n  uuid: not-a-uuid\n",
                first + 2,
                "not a UUID",
            ),
            (
                "  name: CERT-XX\n  contact: ' '\n",
                first + 2,
                "issuer.contact",
            ),
            ("  name: CERT-XX\n  country: XX\n", first + 2, "country"),
        ] {
            let e = with(issuer).unwrap_err();
            assert!(e.message.contains(says), "{issuer}: {e}");
            assert_eq!(e.location.line, line, "{issuer}: {e}");
        }
        let long = format!("  name: {}\n", "x".repeat(ISSUER_NAME_MAX_CHARS + 1));
        assert!(with(&long).unwrap_err().message.contains("issuer.name"));
        assert!(
            with("  name: \"CERT\\tXX\"\n").is_err(),
            "a tab in the name"
        );
        // Flow style, below a commented-out example that names the same keys: the line of
        // the mapping itself.
        let commented = format!("# issuer:\n#   name: Example\n#   uuid: 4f3c1b2a-9d8e-4c7b-a6f5-e4d3c2b1a090\n{POLICY}");
        let flow = parse_policy(
            "e.yaml",
            &format!("{commented}issuer: {{name: CERT-XX, uuid: nope}}\n"),
        )
        .unwrap_err();
        assert!(flow.message.contains("not a UUID"), "{flow}");
        assert_eq!(flow.location.line, commented.lines().count() + 1, "{flow}");
        assert_eq!(flow.location.column, 25, "{flow}");
        // A version or variant STIX does not take.
        let nil = with("  name: CERT-XX\n  uuid: 00000000-0000-0000-0000-000000000000\n");
        assert!(nil.unwrap_err().message.contains("not a UUID"));
    }
}
