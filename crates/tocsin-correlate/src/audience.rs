//! Renderings of a warning per audience, each under a TLP ceiling, and routing to recipients.
//!
//! The correlator issues one canonical warning per change, carrying everything with its TLP:
//! each organisation's timeline entry has the most restrictive TLP of that organisation's
//! detections, each indicator its own. [`render`] derives what one audience may see:
//!
//! - **technical** (CSIRTs): organisations, indicators and rules, all at or below the ceiling;
//! - **operational** (impact by sector and member state): no organisation names, no raw
//!   indicators, no indicator values in the key or headline;
//! - **strategic** (a situation summary): the same, without rules and timeline detail; with a
//!   CLEAR ceiling it is the summary for coordinated public communication.
//!
//! Anything above the ceiling is dropped before anything is derived from it: the affected
//! sectors, member states, counts, flags, severity (and the EU taxonomy's severities) and
//! headline are recomputed from what remains, so a TLP:RED organisation's existence does not
//! leak through a count or a `cross_border` flag. What the warning does not keep per
//! organisation (its rules, ATT&CK techniques, taxonomy, latest detection time) is left out
//! of a rendering that withholds an organisation, and an indicator only withheld
//! organisations saw goes with them (for warnings the correlator issues: one read back from
//! JSON carries no sightings, and its indicators are kept by their labels alone). When too
//! little remains for a warning, there is no rendering at all.
//! Nothing is ever downgraded: the rendering's TLP is the most restrictive of what it carries.

use std::collections::BTreeSet;

use serde::Deserialize;

use tocsin_core::id::IdHasher;
use tocsin_core::{Audience, EarlyWarning, Level, MemberState, Sector, SortedSet, Tlp};
use tocsin_rules::EscalationPolicy;

/// Render `w` for `audience` under `ceiling`; `None` when nothing reportable remains.
pub fn render(
    w: &EarlyWarning,
    audience: Audience,
    ceiling: Tlp,
    policy: &EscalationPolicy,
) -> Option<EarlyWarning> {
    let mut r = w.clone();
    r.audience = audience;
    r.tlp_ceiling = Some(ceiling);
    r.timeline.retain(|e| e.tlp.permits(ceiling));
    if (r.timeline.len() as u32) < policy.warning_min_organisations {
        return None;
    }
    // The warning keeps its rules (with their levels and detection counts), ATT&CK
    // techniques, taxonomy and latest detection time for the whole candidate, not per
    // organisation: when anything is withheld here (an organisation, or a detection above
    // the ceiling without one: the warning's own label says so), any of them may come from
    // it, so none is rendered. The severity is then judged on the breadth that remains, and
    // `last_seen` is the latest first detection of the organisations shown.
    let shown_first = r.timeline.iter().map(|e| e.time).min();
    let shown_last = r.timeline.iter().map(|e| e.time).max();
    if r.timeline.len() < w.timeline.len() || !w.tlp.permits(ceiling) {
        r.rules.clear();
        r.attack.clear();
        r.taxonomy = None;
        r.last_seen = shown_last.unwrap_or(w.first_seen);
    }
    let sectors: SortedSet<Sector> = r.timeline.iter().filter_map(|e| e.sector).collect();
    let member_states: SortedSet<MemberState> =
        r.timeline.iter().filter_map(|e| e.member_state).collect();
    r.affected.sectors = sectors.iter().copied().collect();
    r.affected.member_states = member_states.iter().copied().collect();
    r.affected.organisation_count = r.timeline.len() as u32;
    r.detection_count = r.timeline.iter().map(|e| e.detections).sum();
    r.first_seen = shown_first.unwrap_or(w.first_seen);
    r.reporting = tocsin_core::ReportingClock::from_awareness(r.first_seen);
    r.cross_border = policy.is_cross_border(member_states.len());
    r.cross_sector = policy.is_cross_sector(sectors.len());
    let max_level = r
        .rules
        .iter()
        .map(|x| x.level)
        .max()
        .unwrap_or(Level::Medium);
    // Judged on less than the whole warning, never above what the whole warning says (the
    // rules' levels, when left out, count as the policy's default).
    r.severity = crate::severity_for(
        policy,
        r.timeline.len(),
        &sectors,
        member_states.len(),
        max_level,
        r.taxonomy.map(|t| t.class),
    )
    .min(w.severity);
    r.eu_taxonomy.threat_severity =
        crate::threat_severity(max_level).min(w.eu_taxonomy.threat_severity);
    r.eu_taxonomy.impact_severity = crate::impact_severity(r.severity);
    r.eu_taxonomy.outlook = crate::outlook(r.status, r.first_seen, r.last_seen, policy);
    let technical = audience == Audience::Technical;
    if technical {
        // An indicator only a withheld organisation (or detection) saw is withheld with it.
        let shown: BTreeSet<&str> = r
            .timeline
            .iter()
            .filter_map(|e| e.organisation.as_deref())
            .collect();
        r.indicators.retain(|i| {
            i.tlp.permits(ceiling) && i.seen_by.seen_within(|o| shown.contains(o), ceiling)
        });
    } else {
        // Other audiences see no raw indicators.
        r.indicators.clear();
    }
    // A key or headline that names an indicator value the audience may not see is redacted.
    let key_value_visible = match w.correlation_key.strip_prefix("indicator:") {
        Some(rest) => {
            technical
                && rest
                    .split_once(':')
                    .is_some_and(|(_, value)| r.indicators.iter().any(|i| i.value == value))
        }
        None => true,
    };
    if !key_value_visible {
        r.correlation_key = redacted_key(&w.correlation_key);
        r.recommended_actions
            .retain(|a| !a.starts_with("Block ") && !a.starts_with("Hunt for "));
        r.recommended_actions.insert(
            0,
            "Ask your national CSIRT for the indicators of this incident".to_owned(),
        );
    }
    if !technical {
        r.affected.organisations.clear();
        for e in &mut r.timeline {
            e.organisation = None;
        }
    } else {
        r.affected.organisations = r
            .timeline
            .iter()
            .filter_map(|e| e.organisation.clone())
            .collect();
        r.affected.organisations.sort();
    }
    if audience == Audience::Strategic {
        r.rules.clear();
        r.timeline.clear();
    }
    r.headline = crate::headline_for(
        &r.correlation_key,
        r.affected.organisation_count as usize,
        &sectors,
        &member_states,
    );
    r.tlp = w
        .timeline
        .iter()
        .filter(|e| e.tlp.permits(ceiling))
        .map(|e| e.tlp)
        .chain(r.indicators.iter().map(|i| i.tlp))
        .max()
        .unwrap_or(Tlp::Clear);
    Some(r)
}

/// `indicator:<type>:<value>` → `indicator:<type>:redacted-<hash>`: the same for every
/// rendering of the same key, so consumers can still group, without the value.
fn redacted_key(key: &str) -> String {
    let mut parts = key.splitn(3, ':');
    let (Some(kind), Some(sub)) = (parts.next(), parts.next()) else {
        return "redacted".to_owned();
    };
    let digest = IdHasher::new("redacted-key").part(key.as_bytes()).digest();
    format!("{kind}:{sub}:redacted-{:016x}", digest as u64)
}

/// One recipient of warnings (`rules/recipients.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    /// `csirt:DE`, `coordination-centre`, ...
    pub id: String,
    /// Which rendering it receives.
    pub audience: Audience,
    /// Its TLP ceiling.
    pub tlp: Tlp,
    /// Warnings that touch these member states.
    #[serde(default)]
    pub member_states: Vec<MemberState>,
    /// Also every cross-border warning.
    #[serde(default)]
    pub cross_border: bool,
    /// Every warning.
    #[serde(default)]
    pub all: bool,
}

impl Recipient {
    /// The rendering this recipient receives, if the warning concerns it.
    pub fn rendering(&self, w: &EarlyWarning, policy: &EscalationPolicy) -> Option<EarlyWarning> {
        let r = render(w, self.audience, self.tlp, policy)?;
        let concerned = self.all
            || (self.cross_border && r.cross_border)
            || r.affected
                .member_states
                .iter()
                .any(|m| self.member_states.contains(m));
        concerned.then_some(r)
    }

    /// A name usable in file and topic names (`csirt:DE` → `csirt.de`).
    pub fn slug(&self) -> String {
        self.id
            .chars()
            .map(|c| match c {
                'a'..='z' | '0'..='9' | '-' | '_' => c,
                'A'..='Z' => c.to_ascii_lowercase(),
                _ => '.',
            })
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipientsFile {
    recipients: Vec<Recipient>,
}

/// Parse `recipients.yaml`; errors name the file and line.
#[allow(clippy::result_large_err)] // a diagnostic, built once per load
pub fn parse_recipients(
    file: &str,
    text: &str,
) -> Result<Vec<Recipient>, tocsin_rules::Diagnostic> {
    let (docs, mut errs) = tocsin_rules::yaml::documents(file, text);
    if let Some(e) = errs.pop() {
        return Err(e);
    }
    let Some(doc) = docs.into_iter().next() else {
        return Ok(Vec::new());
    };
    let parsed: RecipientsFile = serde_yaml::from_value(doc.value.clone()).map_err(|e| {
        let msg = e.to_string();
        let loc = msg
            .split('`')
            .nth(1)
            .map(|k| doc.locate(&format!("{k}:")))
            .unwrap_or_else(|| doc.start());
        tocsin_rules::Diagnostic::error(
            loc,
            "bad-recipients",
            format!("invalid recipients table: {msg}"),
        )
    })?;
    let mut seen = BTreeSet::new();
    let mut slugs = std::collections::BTreeMap::new();
    for r in &parsed.recipients {
        if !seen.insert(r.id.clone()) {
            return Err(tocsin_rules::Diagnostic::error(
                doc.locate(&format!("id: {}", r.id)),
                "bad-recipients",
                format!("recipient '{}' is listed twice", r.id),
            ));
        }
        // Its file (`--recipients-out`) and topic are named by its slug: two recipients
        // with one slug would share them.
        if let Some(other) = slugs.insert(r.slug(), r.id.clone()) {
            return Err(tocsin_rules::Diagnostic::error(
                doc.locate(&format!("id: {}", r.id)),
                "bad-recipients",
                format!(
                    "recipients '{other}' and '{}' would share the file and topic name '{}'",
                    r.id,
                    r.slug()
                ),
            ));
        }
        if !r.all && !r.cross_border && r.member_states.is_empty() {
            return Err(tocsin_rules::Diagnostic::error(
                doc.locate(&format!("id: {}", r.id)),
                "bad-recipients",
                format!(
                    "recipient '{}' would receive nothing: give member_states, cross_border or all",
                    r.id
                ),
            ));
        }
    }
    Ok(parsed.recipients)
}

/// The default TLP ceiling of an audience.
pub fn default_ceiling(audience: Audience) -> Tlp {
    match audience {
        Audience::Technical => Tlp::Amber,
        Audience::Operational | Audience::Strategic => Tlp::Green,
    }
}
