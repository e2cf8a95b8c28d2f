//! Sigma correlation rules (specification 2.1.0): the parsed form and its validation.
//!
//! A correlation rule names detection rules (or other correlations) by id or `name`, groups
//! their matches by field values (`group-by`, with per-rule `aliases`), and fires when a
//! condition holds within a `timespan`: a count of events (`event_count`), of distinct values
//! (`value_count`), all rules seen (`temporal`, `temporal_ordered`), or an aggregate of a
//! numeric field (`value_sum`, `value_avg`, `value_percentile`). The evaluation is
//! tocsin-correlate's; this module checks everything that can be checked from the YAML and
//! reports problems at file:line.

use std::collections::BTreeMap;

use serde_yaml::Value;

use tocsin_core::{DurationMs, Level};

use crate::diagnostic::{Diagnostic, Location};
use crate::yaml::YamlDocument;

/// The seven correlation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrelationType {
    /// Number of matching events per group.
    EventCount,
    /// Number of distinct values of `condition.field` per group.
    ValueCount,
    /// Every referenced rule matched, in any order.
    Temporal,
    /// Every referenced rule matched, in the order listed.
    TemporalOrdered,
    /// Sum of a numeric field.
    ValueSum,
    /// Average of a numeric field.
    ValueAvg,
    /// Share, in percent, of the group's events that carry a given value of the field (the
    /// specification's example: a process name seen in at most 1 % of a host's processes).
    ValuePercentile,
}

impl CorrelationType {
    /// Parse the specification's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "event_count" => CorrelationType::EventCount,
            "value_count" => CorrelationType::ValueCount,
            "temporal" => CorrelationType::Temporal,
            "temporal_ordered" => CorrelationType::TemporalOrdered,
            "value_sum" => CorrelationType::ValueSum,
            "value_avg" => CorrelationType::ValueAvg,
            "value_percentile" => CorrelationType::ValuePercentile,
            _ => return None,
        })
    }

    /// The specification's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CorrelationType::EventCount => "event_count",
            CorrelationType::ValueCount => "value_count",
            CorrelationType::Temporal => "temporal",
            CorrelationType::TemporalOrdered => "temporal_ordered",
            CorrelationType::ValueSum => "value_sum",
            CorrelationType::ValueAvg => "value_avg",
            CorrelationType::ValuePercentile => "value_percentile",
        }
    }

    /// Whether the type aggregates `condition.field`.
    pub fn needs_field(self) -> bool {
        matches!(
            self,
            CorrelationType::ValueCount
                | CorrelationType::ValueSum
                | CorrelationType::ValueAvg
                | CorrelationType::ValuePercentile
        )
    }
}

/// A comparison of the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparison {
    /// `gt`
    Gt,
    /// `gte`
    Gte,
    /// `lt`
    Lt,
    /// `lte`
    Lte,
    /// `eq`
    Eq,
    /// `neq`
    Neq,
}

impl Comparison {
    /// Whether `value` satisfies `value <op> bound`.
    pub fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Comparison::Gt => value > bound,
            Comparison::Gte => value >= bound,
            Comparison::Lt => value < bound,
            Comparison::Lte => value <= bound,
            Comparison::Eq => value == bound,
            Comparison::Neq => value != bound,
        }
    }

    /// True for `gt` and `gte`: once they hold, more events cannot make them false, so
    /// they may fire as soon as they hold; the others are judged when the window closes.
    pub fn is_lower_bound(self) -> bool {
        matches!(self, Comparison::Gt | Comparison::Gte)
    }
}

/// The condition: one or two comparisons (a range), and the field for value types.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationCondition {
    /// The comparisons, all of which must hold.
    pub comparisons: Vec<(Comparison, f64)>,
    /// `field` (several fields are ANDed: their values form a tuple).
    pub fields: Vec<String>,
}

impl CorrelationCondition {
    /// Whether `value` satisfies every comparison.
    pub fn holds(&self, value: f64) -> bool {
        self.comparisons.iter().all(|(c, b)| c.holds(value, *b))
    }

    /// Whether the condition may fire as soon as it holds (only lower bounds).
    pub fn is_eager(&self) -> bool {
        self.comparisons.iter().all(|(c, _)| c.is_lower_bound())
    }
}

/// A parsed correlation rule.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationRule {
    /// `id` (or, when absent, a stable id derived from the name or title; a warning says so).
    pub id: String,
    /// `name`, for chaining.
    pub name: Option<String>,
    /// `title`.
    pub title: String,
    /// `level` (the level of its detections).
    pub level: Level,
    /// `tags`.
    pub tags: Vec<String>,
    /// `correlation.type`.
    pub kind: CorrelationType,
    /// `correlation.rules`: ids or names.
    pub rules: Vec<String>,
    /// `correlation.group-by` (aliases allowed).
    pub group_by: Vec<String>,
    /// `correlation.timespan`.
    pub timespan: DurationMs,
    /// `correlation.condition`.
    pub condition: CorrelationCondition,
    /// `correlation.aliases`: alias → (rule id or name → field of that rule's events).
    pub aliases: BTreeMap<String, BTreeMap<String, String>>,
    /// `correlation.generate`: whether the referenced rules also produce standalone
    /// detections (default false).
    pub generate: bool,
    /// Where the document starts.
    pub location: Location,
}

impl CorrelationRule {
    /// The event field that carries `group_field` (a group-by entry or condition field) for
    /// detections of `rule` (its id or name): the alias mapping when one is defined.
    pub fn field_for<'a>(
        &'a self,
        group_field: &'a str,
        rule_id: &str,
        rule_name: Option<&str>,
    ) -> &'a str {
        match self.aliases.get(group_field) {
            Some(map) => map
                .get(rule_id)
                .or_else(|| rule_name.and_then(|n| map.get(n)))
                .map(String::as_str)
                .unwrap_or(group_field),
            None => group_field,
        }
    }
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v? {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Sequence(xs) => xs.iter().map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

/// Parse a correlation document (one that has a `correlation` key).
pub fn parse_correlation(
    doc: &YamlDocument<'_>,
) -> Result<(CorrelationRule, Vec<Diagnostic>), Diagnostic> {
    let Value::Mapping(map) = &doc.value else {
        return Err(Diagnostic::error(
            doc.start(),
            "not-a-rule",
            "a correlation rule must be a mapping",
        ));
    };
    let str_of = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_owned);
    let id = str_of("id");
    let name = str_of("name");
    let title = str_of("title");
    let tag = |d: Diagnostic| d.for_rule(id.as_deref(), title.as_deref());
    let mut warnings = Vec::new();
    let Some(title) = title.clone() else {
        return Err(tag(Diagnostic::error(
            doc.start(),
            "missing-title",
            "correlation rule has no 'title'",
        )));
    };
    let id = match id.clone() {
        Some(id) if !id.trim().is_empty() => id,
        _ => {
            let basis = name.clone().unwrap_or_else(|| title.clone());
            let derived = tocsin_core::id::IdHasher::new("correlation-rule")
                .part(basis.as_bytes())
                .finish("corr");
            warnings.push(tag(Diagnostic::warning(
                doc.start(),
                "missing-id",
                format!("correlation rule has no 'id'; using '{derived}', derived from its name or title"),
            )));
            derived
        }
    };
    let tag = |d: Diagnostic| d.for_rule(Some(&id), Some(&title));
    let Some(Value::Mapping(corr)) = map.get("correlation") else {
        return Err(tag(Diagnostic::error(
            doc.locate("correlation:"),
            "bad-correlation",
            "'correlation' must be a mapping",
        )));
    };
    let bad =
        |key: &str, msg: String| tag(Diagnostic::error(doc.locate(key), "bad-correlation", msg));
    let known = [
        "type",
        "rules",
        "group-by",
        "timespan",
        "condition",
        "aliases",
        "generate",
    ];
    for k in corr.keys() {
        let k = k.as_str().unwrap_or_default();
        if !known.contains(&k) {
            return Err(bad(
                &format!("{k}:"),
                format!(
                    "unknown key 'correlation.{k}' (known: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let kind_text = corr.get("type").and_then(Value::as_str).unwrap_or_default();
    let Some(kind) = CorrelationType::parse(kind_text) else {
        return Err(bad(
            "type:",
            format!("unknown correlation type '{kind_text}' (expected event_count, value_count, temporal, temporal_ordered, value_sum, value_avg, value_percentile)"),
        ));
    };
    let rules = strings(corr.get("rules"))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            bad(
                "rules:",
                "'correlation.rules' must list at least one rule id or name".into(),
            )
        })?;
    if kind == CorrelationType::TemporalOrdered && rules.len() < 2 {
        return Err(bad(
            "rules:",
            "temporal_ordered needs at least two rules".into(),
        ));
    }
    let group_by = match corr.get("group-by") {
        None => Vec::new(),
        Some(v) => strings(Some(v)).ok_or_else(|| {
            bad(
                "group-by:",
                "'group-by' must be a list of field names".into(),
            )
        })?,
    };
    let timespan_text = match corr.get("timespan") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(bad(
                "timespan:",
                "'correlation.timespan' is mandatory (e.g. 5m, 1h, 1d)".into(),
            ))
        }
    };
    let timespan =
        DurationMs::parse(&timespan_text).map_err(|e| bad("timespan:", e.to_string()))?;
    if timespan.0 <= 0 {
        return Err(bad("timespan:", "timespan must be positive".into()));
    }
    let mut condition = CorrelationCondition {
        comparisons: Vec::new(),
        fields: Vec::new(),
    };
    match corr.get("condition") {
        None if matches!(
            kind,
            CorrelationType::Temporal | CorrelationType::TemporalOrdered
        ) =>
        {
            // Default: every referenced rule.
            condition
                .comparisons
                .push((Comparison::Gte, rules.len() as f64));
        }
        None => {
            return Err(bad(
                "condition:",
                format!("{} needs a condition", kind.as_str()),
            ))
        }
        Some(Value::Mapping(c)) => {
            for (k, v) in c {
                let key = k.as_str().unwrap_or_default();
                if key == "field" {
                    condition.fields = strings(Some(v)).ok_or_else(|| {
                        bad(
                            "field:",
                            "'condition.field' must be a field name or a list".into(),
                        )
                    })?;
                    continue;
                }
                let op = match key {
                    "gt" => Comparison::Gt,
                    "gte" => Comparison::Gte,
                    "lt" => Comparison::Lt,
                    "lte" => Comparison::Lte,
                    "eq" => Comparison::Eq,
                    "neq" => Comparison::Neq,
                    other => {
                        return Err(bad(
                            "condition:",
                            format!("unknown condition '{other}' (expected gt, gte, lt, lte, eq, neq, field)"),
                        ))
                    }
                };
                let bound = v.as_f64().ok_or_else(|| {
                    bad(
                        &format!("{key}:"),
                        format!("condition '{key}' needs a number"),
                    )
                })?;
                condition.comparisons.push((op, bound));
            }
        }
        Some(_) => {
            return Err(bad(
                "condition:",
                "'condition' must be a mapping such as {gte: 10}".into(),
            ))
        }
    }
    if condition.comparisons.is_empty() {
        return Err(bad(
            "condition:",
            "the condition needs at least one of gt, gte, lt, lte, eq, neq".into(),
        ));
    }
    if kind.needs_field() && condition.fields.is_empty() {
        return Err(bad(
            "condition:",
            format!("{} needs 'condition.field'", kind.as_str()),
        ));
    }
    if !kind.needs_field() && !condition.fields.is_empty() {
        warnings.push(tag(Diagnostic::warning(
            doc.locate("field:"),
            "ignored-field",
            format!(
                "'condition.field' has no meaning for {} and is ignored",
                kind.as_str()
            ),
        )));
    }
    let mut aliases = BTreeMap::new();
    if let Some(a) = corr.get("aliases") {
        let Value::Mapping(a) = a else {
            return Err(bad(
                "aliases:",
                "'aliases' must map alias names to {rule: field} mappings".into(),
            ));
        };
        for (alias, per_rule) in a {
            let alias = alias.as_str().unwrap_or_default().to_owned();
            let Value::Mapping(per_rule) = per_rule else {
                return Err(bad(
                    &format!("{alias}:"),
                    format!("alias '{alias}' must map rule names to fields"),
                ));
            };
            let mut m = BTreeMap::new();
            for (r, f) in per_rule {
                match (r.as_str(), f.as_str()) {
                    (Some(r), Some(f)) => {
                        m.insert(r.to_owned(), f.to_owned());
                    }
                    _ => {
                        return Err(bad(
                            &format!("{alias}:"),
                            format!("alias '{alias}': rule and field names must be strings"),
                        ))
                    }
                }
            }
            aliases.insert(alias, m);
        }
    }
    // The specification and its schema place `generate` beside `level`, at the top of the
    // document; pySigma reads it inside `correlation`. Either is taken; both must agree.
    let generate_at = |v: Option<&Value>| match v {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad("generate:", "'generate' must be true or false".into())),
    };
    let generate = match (
        generate_at(corr.get("generate"))?,
        generate_at(map.get("generate"))?,
    ) {
        (Some(inner), Some(outer)) if inner != outer => {
            return Err(bad(
                "generate:",
                format!(
                    "'generate' is {outer} at the top of the rule and {inner} in 'correlation'"
                ),
            ))
        }
        (inner, outer) => inner.or(outer).unwrap_or(false),
    };
    let level = match map.get("level").and_then(Value::as_str) {
        None => Level::Medium,
        Some(l) => Level::parse(l).unwrap_or_else(|| {
            warnings.push(tag(Diagnostic::warning(
                doc.locate("level:"),
                "unknown-level",
                format!("unknown level '{l}'; using medium"),
            )));
            Level::Medium
        }),
    };
    Ok((
        CorrelationRule {
            id,
            name,
            title,
            level,
            tags: strings(map.get("tags")).unwrap_or_default(),
            kind,
            rules,
            group_by,
            timespan,
            condition,
            aliases,
            generate,
            location: doc.start(),
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::documents;

    fn parse(text: &str) -> Result<CorrelationRule, Diagnostic> {
        let (docs, errs) = documents("c.yml", text);
        assert!(errs.is_empty(), "{errs:?}");
        parse_correlation(&docs[0]).map(|(r, _)| r)
    }

    #[test]
    fn the_specification_examples_parse() {
        let dir = std::env::var_os("TOCSIN_TEST_DATA").map(std::path::PathBuf::from);
        let Some(dir) = dir.map(|d| d.join("sigma-spec/tests/schema/correlation")) else {
            eprintln!("SKIPPED: TOCSIN_TEST_DATA not set: the specification's correlation examples are not checked");
            return;
        };
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let text = std::fs::read_to_string(&p).unwrap();
            let r = parse(&text).unwrap_or_else(|d| panic!("{}: {d}", p.display()));
            assert!(!r.rules.is_empty());
            seen += 1;
        }
        assert_eq!(seen, 8);
    }

    /// `generate` is read at the top of the rule, where the specification and its schema
    /// put it, and inside `correlation`, where pySigma reads it; the two must agree.
    #[test]
    fn generate_is_read_where_either_puts_it() {
        let rule = |top: &str, inner: &str| {
            parse(&format!("title: t\n{top}correlation:\n  type: event_count\n  rules: [a]\n  group-by: [Host]\n  timespan: 1h\n  condition: {{gte: 2}}\n{inner}"))
        };
        assert!(!rule("", "").unwrap().generate);
        assert!(rule("generate: true\n", "").unwrap().generate);
        assert!(rule("", "  generate: true\n").unwrap().generate);
        assert!(
            rule("generate: true\n", "  generate: true\n")
                .unwrap()
                .generate
        );
        let e = rule("generate: false\n", "  generate: true\n").unwrap_err();
        assert!(e.message.contains("'generate'"), "{e}");
        assert!(rule("generate: yes please\n", "").is_err());
    }

    #[test]
    fn all_types_and_errors() {
        let r = parse("title: t\nid: c1\ncorrelation:\n  type: value_count\n  rules: [a, b]\n  group-by: [Host]\n  timespan: 1h\n  condition: {field: User, gte: 3, lt: 10}\n  aliases:\n    Host: {a: Computer, b: host.name}\n").unwrap();
        assert_eq!(r.kind, CorrelationType::ValueCount);
        assert_eq!(r.condition.fields, vec!["User"]);
        assert!(r.condition.holds(3.0) && !r.condition.holds(10.0));
        assert!(!r.condition.is_eager());
        assert_eq!(r.field_for("Host", "b", None), "host.name");
        assert_eq!(r.timespan.0, 3_600_000);
        let t = parse("title: t\ncorrelation:\n  type: temporal\n  rules: [a, b, c]\n  group-by: [Host]\n  timespan: 5m\n").unwrap();
        assert!(t.id.starts_with("corr-"));
        assert_eq!(t.condition.comparisons, vec![(Comparison::Gte, 3.0)]);
        for (bad, code_line) in [
            ("title: t\ncorrelation:\n  type: event_cnt\n  rules: [a]\n  timespan: 1h\n  condition: {gte: 1}\n", 3),
            ("title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: soon\n  condition: {gte: 1}\n", 5),
            ("title: t\ncorrelation:\n  type: value_sum\n  rules: [a]\n  timespan: 1h\n  condition: {gte: 1}\n", 6),
            ("title: t\ncorrelation:\n  type: event_count\n  rules: []\n  timespan: 1h\n  condition: {gte: 1}\n", 4),
            ("title: t\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 1h\n  condition: {most: 1}\n", 6),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.location.line, code_line, "{bad}: {e}");
        }
    }
}
