//! Sigma detection rules: the parsed form and the parser from YAML.
//!
//! The parser turns one YAML document into a [`SigmaRule`] whose detection is a list of
//! named selections and a [`Condition`] over them. It checks what can be checked without
//! knowing the event schema — modifier names and chains, condition syntax, selection
//! references, value types — and reports each problem as a [`Diagnostic`] at the line of
//! the offending key. Whether the matcher supports a construct is the compiler's business
//! (tocsin-match), which reports unsupported features the same way.

pub mod condition;
pub mod correlation;
pub mod value;

use serde_yaml::Value;

use tocsin_core::{Level, Taxonomy};

use crate::diagnostic::{Diagnostic, Location};
use crate::yaml::YamlDocument;
pub use condition::{parse_condition, Condition, ConditionError};
pub use value::{Modifier, SigmaString, SigmaValue, StrPart};

/// A rule's `logsource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LogSource {
    /// e.g. `process_creation`.
    pub category: Option<String>,
    /// e.g. `windows`.
    pub product: Option<String>,
    /// e.g. `sysmon`, `security`.
    pub service: Option<String>,
}

/// One field test in a selection: `CommandLine|contains|all: [a, b]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldTest {
    /// The Sigma field name, or `None` for keyword (whole-event) searches.
    pub field: Option<String>,
    /// Modifiers in the order written.
    pub modifiers: Vec<Modifier>,
    /// The values (ORed, or ANDed with `all`).
    pub values: Vec<SigmaValue>,
    /// Where the key is written, when it could be found.
    pub location: Option<Location>,
}

impl FieldTest {
    /// Whether `modifier` is present.
    pub fn has(&self, modifier: Modifier) -> bool {
        self.modifiers.contains(&modifier)
    }

    /// The key as written in the rule (`CommandLine|contains|all`).
    pub fn key(&self) -> String {
        let mut k = self.field.clone().unwrap_or_default();
        for m in &self.modifiers {
            k.push('|');
            k.push_str(m.name());
        }
        k
    }
}

/// A named selection: alternatives (a list of maps is ORed), each a conjunction of tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The name used in the condition.
    pub name: String,
    /// OR over alternatives; each alternative is an AND of field tests.
    pub alternatives: Vec<Vec<FieldTest>>,
    /// Where it is defined.
    pub location: Location,
}

/// A parsed Sigma detection rule.
#[derive(Debug, Clone, PartialEq)]
pub struct SigmaRule {
    /// `id` (a UUID in SigmaHQ; we accept any non-empty string).
    pub id: String,
    /// `name`, used by correlation rules to refer to it.
    pub name: Option<String>,
    /// `title`.
    pub title: String,
    /// `status`.
    pub status: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `level` (medium when absent).
    pub level: Level,
    /// `tags` as written (`attack.t1059.001`, `campaign.nightglass`).
    pub tags: Vec<String>,
    /// `logsource`.
    pub logsource: LogSource,
    /// Selections in declaration order.
    pub selections: Vec<Selection>,
    /// The condition (several conditions in a list are ORed).
    pub condition: Condition,
    /// `falsepositives`.
    pub falsepositives: Vec<String>,
    /// Optional Tocsin extension: RSIT taxonomy (`taxonomy: malicious-code/infected-system`).
    pub taxonomy: Option<Taxonomy>,
    /// Where the rule starts.
    pub location: Location,
}

impl SigmaRule {
    /// ATT&CK technique ids from `attack.tNNNN[.NNN]` tags, upper-cased.
    pub fn attack_techniques(&self) -> Vec<String> {
        self.tags
            .iter()
            .filter_map(|t| t.strip_prefix("attack."))
            .filter(|t| {
                let b = t.as_bytes();
                b.len() >= 5
                    && (b[0] == b't' || b[0] == b'T')
                    && b[1..5].iter().all(u8::is_ascii_digit)
            })
            .map(|t| t.to_ascii_uppercase())
            .collect()
    }

    /// Campaign names from `campaign.<name>` tags: detections of such rules correlate by
    /// campaign across organisations.
    pub fn campaigns(&self) -> Vec<String> {
        self.tags
            .iter()
            .filter_map(|t| t.strip_prefix("campaign."))
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// What one YAML document turned out to be.
#[derive(Debug)]
pub enum SigmaDocument {
    /// A detection rule.
    Rule(Box<SigmaRule>),
    /// A correlation rule.
    Correlation(Box<correlation::CorrelationRule>),
    /// A global filter (`filter:` document).
    Filter(Box<SigmaFilter>),
}

/// A Sigma global filter: extra conditions that suppress matches of the rules it names
/// (by id or name). The filtered rule matches when its own condition holds and the filter's
/// condition does not (`rule and not filter`), as pySigma applies them.
#[derive(Debug, Clone, PartialEq)]
pub struct SigmaFilter {
    /// `id`, when present.
    pub id: Option<String>,
    /// `title`.
    pub title: String,
    /// `logsource`; the filter applies only to rules whose logsource it covers.
    pub logsource: LogSource,
    /// `filter.rules`: ids or names of the rules to filter.
    pub rules: Vec<String>,
    /// The filter's selections.
    pub selections: Vec<Selection>,
    /// The filter's condition over its selections.
    pub condition: Condition,
    /// Where it starts.
    pub location: Location,
}

fn str_field<'v>(map: &'v serde_yaml::Mapping, key: &str) -> Option<&'v str> {
    map.get(key).and_then(Value::as_str)
}

fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Sequence(xs)) => xs
            .iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Parse one YAML document as a Sigma rule. Errors mean the rule is skipped; warnings are
/// returned alongside a loaded rule.
pub fn parse_document(
    doc: &YamlDocument<'_>,
) -> Result<(SigmaDocument, Vec<Diagnostic>), Diagnostic> {
    let Value::Mapping(map) = &doc.value else {
        return Err(Diagnostic::error(
            doc.start(),
            "not-a-rule",
            "a Sigma rule must be a YAML mapping",
        ));
    };
    let id = str_field(map, "id").map(str::to_owned);
    let title = str_field(map, "title").map(str::to_owned);
    let tag = |d: Diagnostic| d.for_rule(id.as_deref(), title.as_deref());
    if map.contains_key("correlation") {
        return correlation::parse_correlation(doc)
            .map(|(c, warnings)| (SigmaDocument::Correlation(Box::new(c)), warnings));
    }
    if map.contains_key("filter") && !map.contains_key("detection") {
        return parse_filter(doc, map).map(|f| (SigmaDocument::Filter(Box::new(f)), vec![]));
    }
    let mut warnings = Vec::new();
    let Some(title) = title.clone() else {
        return Err(tag(Diagnostic::error(
            doc.start(),
            "missing-title",
            "rule has no 'title'",
        )));
    };
    let id = match id.clone() {
        Some(id) if !id.trim().is_empty() => id,
        _ => {
            return Err(tag(Diagnostic::error(
                doc.start(),
                "missing-id",
                "rule has no 'id': Tocsin needs a stable id to name its detections",
            )))
        }
    };
    let level = match map.get("level") {
        None => Level::Medium,
        Some(Value::String(s)) => match Level::parse(s) {
            Some(l) => l,
            None => {
                warnings.push(tag(Diagnostic::warning(
                    doc.locate("level:"),
                    "unknown-level",
                    format!("unknown level '{s}'; using medium"),
                )));
                Level::Medium
            }
        },
        Some(_) => Level::Medium,
    };
    let logsource = parse_logsource(doc, map).map_err(tag)?;
    let taxonomy = match str_field(map, "taxonomy") {
        None => None,
        Some(t) => match t.parse::<Taxonomy>() {
            Ok(t) => Some(t),
            Err(e) => {
                return Err(tag(Diagnostic::error(
                    doc.locate("taxonomy:"),
                    "bad-taxonomy",
                    e.to_string(),
                )))
            }
        },
    };
    let Some(Value::Mapping(detection)) = map.get("detection") else {
        return Err(tag(Diagnostic::error(
            doc.locate("detection:"),
            "missing-detection",
            "rule has no 'detection' mapping",
        )));
    };
    let (selections, condition) = parse_detection(doc, detection, &["condition"]).map_err(tag)?;
    Ok((
        SigmaDocument::Rule(Box::new(SigmaRule {
            id,
            name: str_field(map, "name").map(str::to_owned),
            title,
            status: str_field(map, "status").map(str::to_owned),
            description: str_field(map, "description").map(str::to_owned),
            level,
            tags: string_list(map.get("tags")),
            logsource,
            selections,
            condition,
            falsepositives: string_list(map.get("falsepositives")),
            taxonomy,
            location: doc.start(),
        })),
        warnings,
    ))
}

/// Parse the selections and the condition of a `detection` (or `filter`) mapping. Keys in
/// `reserved` other than `condition` are skipped (e.g. a filter's `rules`).
fn parse_detection(
    doc: &YamlDocument<'_>,
    detection: &serde_yaml::Mapping,
    reserved: &[&str],
) -> Result<(Vec<Selection>, Condition), Diagnostic> {
    let mut selections = Vec::new();
    let mut condition_texts = Vec::new();
    for (key, value) in detection {
        let Some(name) = key.as_str() else {
            return Err(Diagnostic::error(
                doc.locate("detection:"),
                "bad-selection",
                "selection names must be strings",
            ));
        };
        if name == "condition" {
            match value {
                Value::String(s) => condition_texts.push(s.clone()),
                Value::Sequence(xs) => {
                    for x in xs {
                        match x.as_str() {
                            Some(s) => condition_texts.push(s.to_owned()),
                            None => {
                                return Err(Diagnostic::error(
                                    doc.locate("condition:"),
                                    "bad-condition",
                                    "a condition list must hold strings",
                                ))
                            }
                        }
                    }
                }
                _ => {
                    return Err(Diagnostic::error(
                        doc.locate("condition:"),
                        "bad-condition",
                        "'condition' must be a string or a list of strings",
                    ))
                }
            }
            continue;
        }
        if reserved.contains(&name) {
            continue;
        }
        if name == "timeframe" {
            return Err(Diagnostic::error(
                doc.locate("timeframe:"),
                "obsolete",
                "'timeframe' in a detection is obsolete Sigma 1 syntax; use a correlation rule",
            ));
        }
        let location = doc.locate(&format!("{name}:"));
        let selection =
            parse_selection(name, value, location.clone()).map_err(|(loc_key, msg, code)| {
                let loc = match loc_key {
                    Some(k) => {
                        let l = doc.locate(&k);
                        if l.line >= location.line {
                            l
                        } else {
                            location.clone()
                        }
                    }
                    None => location.clone(),
                };
                Diagnostic::error(loc, code, format!("selection '{name}': {msg}"))
            })?;
        let mut selection = selection;
        // Pin each test to the line of its key, scanning forward through the selection.
        let mut cursor = location.line;
        for alt in &mut selection.alternatives {
            for t in alt.iter_mut() {
                let key = t.key();
                let key = if key.is_empty() {
                    "keywords".to_owned()
                } else {
                    key
                };
                match doc.locate_key_from(&key, cursor) {
                    Some(l) => {
                        cursor = l.line;
                        t.location = Some(l);
                    }
                    None => t.location = Some(location.clone()),
                }
            }
        }
        selections.push(selection);
    }
    if condition_texts.is_empty() {
        return Err(Diagnostic::error(
            doc.locate("detection:"),
            "missing-condition",
            "detection has no 'condition'",
        ));
    }
    let names: Vec<String> = selections.iter().map(|s| s.name.clone()).collect();
    let mut conditions = Vec::new();
    for text in &condition_texts {
        match parse_condition(text, &names) {
            Ok(c) => conditions.push(c),
            Err(e) => {
                return Err(Diagnostic::error(
                    doc.locate("condition:"),
                    match e {
                        ConditionError::UnknownSelection(_) => "missing-selection",
                        ConditionError::Aggregation => "obsolete",
                        _ => "bad-condition",
                    },
                    e.to_string(),
                ))
            }
        }
    }
    let condition = if conditions.len() == 1 {
        conditions.pop().unwrap_or(Condition::Or(vec![]))
    } else {
        Condition::Or(conditions)
    };
    Ok((selections, condition))
}

fn parse_logsource(
    doc: &YamlDocument<'_>,
    map: &serde_yaml::Mapping,
) -> Result<LogSource, Diagnostic> {
    match map.get("logsource") {
        Some(Value::Mapping(ls)) => Ok(LogSource {
            category: str_field(ls, "category").map(str::to_ascii_lowercase),
            product: str_field(ls, "product").map(str::to_ascii_lowercase),
            service: str_field(ls, "service").map(str::to_ascii_lowercase),
        }),
        None => Err(Diagnostic::error(
            doc.start(),
            "missing-logsource",
            "rule has no 'logsource'",
        )),
        Some(_) => Err(Diagnostic::error(
            doc.locate("logsource:"),
            "bad-logsource",
            "'logsource' must be a mapping of category/product/service",
        )),
    }
}

fn parse_filter(
    doc: &YamlDocument<'_>,
    map: &serde_yaml::Mapping,
) -> Result<SigmaFilter, Diagnostic> {
    let id = str_field(map, "id").map(str::to_owned);
    let title = str_field(map, "title").map(str::to_owned);
    let tag = |d: Diagnostic| d.for_rule(id.as_deref(), title.as_deref());
    let Some(title) = title.clone() else {
        return Err(tag(Diagnostic::error(
            doc.start(),
            "missing-title",
            "filter has no 'title'",
        )));
    };
    let logsource = parse_logsource(doc, map).map_err(tag)?;
    let Some(Value::Mapping(filter)) = map.get("filter") else {
        return Err(tag(Diagnostic::error(
            doc.locate("filter:"),
            "bad-filter",
            "'filter' must be a mapping with rules, selections and a condition",
        )));
    };
    let rules = string_list(filter.get("rules"));
    if rules.is_empty() {
        return Err(tag(Diagnostic::error(
            doc.locate("rules:"),
            "bad-filter",
            "'filter.rules' must name at least one rule (id or name)",
        )));
    }
    let (selections, condition) = parse_detection(doc, filter, &["rules"]).map_err(tag)?;
    Ok(SigmaFilter {
        id,
        title,
        logsource,
        rules,
        selections,
        condition,
        location: doc.start(),
    })
}

/// (key to locate, message, code)
type SelectionError = (Option<String>, String, &'static str);

fn parse_selection(
    name: &str,
    value: &Value,
    location: Location,
) -> Result<Selection, SelectionError> {
    let alternatives = match value {
        Value::Mapping(m) => vec![parse_map(m)?],
        Value::Sequence(items)
            if items.iter().all(|i| matches!(i, Value::Mapping(_))) && !items.is_empty() =>
        {
            let mut alts = Vec::new();
            for item in items {
                if let Value::Mapping(m) = item {
                    alts.push(parse_map(m)?);
                }
            }
            alts
        }
        Value::Sequence(items) => {
            // Keyword list: values searched over the whole event.
            let values = items
                .iter()
                .map(|v| scalar(v, &[]))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|m| (None, m, "bad-value"))?;
            vec![vec![FieldTest {
                field: None,
                modifiers: vec![],
                values,
                location: None,
            }]]
        }
        Value::String(_) | Value::Number(_) => vec![vec![FieldTest {
            field: None,
            modifiers: vec![],
            values: vec![scalar(value, &[]).map_err(|m| (None, m, "bad-value"))?],
            location: None,
        }]],
        _ => {
            return Err((
                None,
                "a selection must be a mapping, a list of mappings or a list of keywords".into(),
                "bad-selection",
            ))
        }
    };
    Ok(Selection {
        name: name.to_owned(),
        alternatives,
        location,
    })
}

fn parse_map(map: &serde_yaml::Mapping) -> Result<Vec<FieldTest>, SelectionError> {
    let mut tests = Vec::new();
    for (key, value) in map {
        let key = match key {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err((None, "field names must be strings".into(), "bad-field")),
        };
        let mut parts = key.split('|');
        let field = parts.next().unwrap_or_default().to_owned();
        let loc_key = Some(format!("{key}:"));
        let mut modifiers = Vec::new();
        for m in parts {
            match Modifier::parse(m) {
                Some(m) => modifiers.push(m),
                None => {
                    return Err((
                        loc_key,
                        format!("unknown modifier '{m}' in '{key}'"),
                        "unknown-modifier",
                    ))
                }
            }
        }
        check_chain(&key, &modifiers).map_err(|m| (loc_key.clone(), m, "bad-modifier-chain"))?;
        let values = match value {
            Value::Sequence(xs) => {
                if xs.is_empty() {
                    return Err((
                        loc_key,
                        format!("'{key}' has an empty value list"),
                        "bad-value",
                    ));
                }
                let mut vs = Vec::new();
                for x in xs {
                    if x.is_null() {
                        return Err((
                            loc_key,
                            format!("'{key}': null cannot appear inside a value list"),
                            "bad-value",
                        ));
                    }
                    vs.push(scalar(x, &modifiers).map_err(|m| (loc_key.clone(), m, "bad-value"))?);
                }
                vs
            }
            v => vec![scalar(v, &modifiers).map_err(|m| (loc_key.clone(), m, "bad-value"))?],
        };
        if modifiers.contains(&Modifier::All) && values.len() < 2 {
            return Err((
                loc_key,
                format!("'{key}': 'all' needs a list of at least two values"),
                "bad-modifier-chain",
            ));
        }
        let field = if field.is_empty() { None } else { Some(field) };
        tests.push(FieldTest {
            field,
            modifiers,
            values,
            location: None,
        });
    }
    Ok(tests)
}

/// Reject modifier chains the specification does not allow.
fn check_chain(key: &str, mods: &[Modifier]) -> Result<(), String> {
    use Modifier::*;
    let count = |f: &dyn Fn(&Modifier) -> bool| mods.iter().filter(|m| f(m)).count();
    let position_mods = count(&|m| matches!(m, Contains | StartsWith | EndsWith));
    if position_mods > 1 {
        return Err(format!(
            "'{key}': contains, startswith and endswith exclude each other"
        ));
    }
    for (i, m) in mods.iter().enumerate() {
        if matches!(m, ReIgnoreCase | ReMultiLine | ReDotAll) && !mods[..i].contains(&Re) {
            return Err(format!(
                "'{key}': regex flag '{}' must follow 're'",
                m.name()
            ));
        }
        if mods[..i].contains(m) {
            return Err(format!("'{key}': modifier '{}' appears twice", m.name()));
        }
    }
    let has = |m: Modifier| mods.contains(&m);
    if has(Re) && (position_mods > 0 || has(Windash) || has(Base64) || has(Base64Offset)) {
        return Err(format!(
            "'{key}': 're' cannot be combined with value-changing modifiers"
        ));
    }
    let numeric = count(&|m| matches!(m, Lt | Lte | Gt | Gte));
    if numeric > 1 {
        return Err(format!("'{key}': only one of lt, lte, gt, gte may be used"));
    }
    if count(&|m| matches!(m, Base64 | Base64Offset)) > 1 {
        return Err(format!(
            "'{key}': base64 and base64offset exclude each other"
        ));
    }
    if count(&|m| matches!(m, Utf16Le | Utf16Be | Utf16)) > 1 {
        return Err(format!("'{key}': only one UTF-16 encoding may be used"));
    }
    if count(&|m| matches!(m, Utf16Le | Utf16Be | Utf16)) == 1
        && !(has(Base64) || has(Base64Offset))
    {
        return Err(format!(
            "'{key}': utf16/utf16le/utf16be/wide produce bytes that only make sense before base64 or base64offset"
        ));
    }
    if has(Base64Offset) && !has(Contains) {
        return Err(format!("'{key}': base64offset must be used with contains"));
    }
    let time_parts = count(&|m| matches!(m, Minute | Hour | Day | Week | Month | Year));
    if time_parts > 1 {
        return Err(format!("'{key}': only one time-part modifier may be used"));
    }
    if has(Exists) && mods.len() > 1 {
        return Err(format!("'{key}': 'exists' takes no other modifier"));
    }
    if has(Cidr) && mods.iter().any(|m| !matches!(m, Cidr | Neq)) {
        return Err(format!("'{key}': 'cidr' combines only with 'neq'"));
    }
    if (numeric > 0 || time_parts > 0)
        && (position_mods > 0 || has(Re) || has(Base64) || has(Base64Offset) || has(Windash))
    {
        return Err(format!(
            "'{key}': numeric and time-part modifiers do not combine with string modifiers"
        ));
    }
    if has(FieldRef)
        && (has(Re)
            || has(Base64)
            || has(Base64Offset)
            || has(Windash)
            || has(Cidr)
            || numeric > 0
            || time_parts > 0)
    {
        return Err(format!("'{key}': 'fieldref' combines only with contains/startswith/endswith, cased, neq and all"));
    }
    // Placeholders are replaced in strings matched as text; a regex, a field name, an
    // address or a number would take `%name%` literally, which the specification says a
    // tool must not do with a placeholder it cannot resolve.
    if has(Expand) && (has(Re) || has(FieldRef) || has(Cidr) || numeric > 0 || time_parts > 0) {
        return Err(format!(
            "'{key}': 'expand' applies to strings matched as text; it does not combine with re, fieldref, cidr or numeric and time-part modifiers"
        ));
    }
    Ok(())
}

fn scalar(v: &Value, mods: &[Modifier]) -> Result<SigmaValue, String> {
    let raw_string = mods.contains(&Modifier::Re);
    Ok(match v {
        Value::Null => SigmaValue::Null,
        Value::Bool(b) => SigmaValue::Bool(*b),
        Value::Number(n) => {
            let value = n.as_f64().unwrap_or(f64::NAN);
            // A whole number written as a float (`4688.0`) is that whole number, as in
            // pySigma: compared as `4688`, the text events write.
            let whole = n.is_f64() && value.fract() == 0.0 && value.abs() < 9.0e15;
            SigmaValue::Number {
                value,
                text: if whole {
                    (value as i64).to_string()
                } else {
                    n.to_string()
                },
            }
        }
        Value::String(s) if raw_string => SigmaValue::String(SigmaString::literal(s)),
        Value::String(s) => SigmaValue::String(SigmaString::parse(s)),
        Value::Sequence(_) | Value::Mapping(_) => {
            return Err("nested lists or mappings are not valid values".into())
        }
        Value::Tagged(_) => return Err("YAML tags are not valid values".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::documents;

    fn parse(text: &str) -> Result<SigmaRule, Diagnostic> {
        let (docs, errs) = documents("t.yml", text);
        assert!(errs.is_empty(), "{errs:?}");
        match parse_document(&docs[0])?.0 {
            SigmaDocument::Rule(r) => Ok(*r),
            other => panic!("{other:?}"),
        }
    }

    const RULE: &str = r#"title: Office spawns a shell
id: 5d3b1c1e-0000-4000-8000-000000000001
status: test
level: high
tags: [attack.execution, attack.t1059.001, campaign.nightglass]
logsource:
    category: process_creation
    product: windows
detection:
    selection_parent:
        ParentImage|endswith:
            - '\WINWORD.EXE'
            - '\EXCEL.EXE'
    selection_child:
        - Image|endswith: '\powershell.exe'
        - CommandLine|contains|all:
            - '-enc'
            - 'bypass'
    filter:
        CommandLine: null
    condition: all of selection_* and not filter
"#;

    #[test]
    fn parses_a_full_rule() {
        let r = parse(RULE).unwrap();
        assert_eq!(r.level, Level::High);
        assert_eq!(r.selections.len(), 3);
        assert_eq!(r.selections[1].alternatives.len(), 2);
        assert_eq!(
            r.selections[1].alternatives[1][0].modifiers,
            vec![Modifier::Contains, Modifier::All]
        );
        assert_eq!(r.attack_techniques(), vec!["T1059.001"]);
        assert_eq!(r.campaigns(), vec!["nightglass"]);
        assert_eq!(r.logsource.category.as_deref(), Some("process_creation"));
        assert_eq!(r.selections[2].location.line, 19);
    }

    #[test]
    fn errors_point_at_the_line() {
        let bad = RULE.replace("ParentImage|endswith", "ParentImage|endswoth");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.code, "unknown-modifier");
        assert_eq!(e.location.line, 11);
        assert_eq!(
            e.rule_id.as_deref(),
            Some("5d3b1c1e-0000-4000-8000-000000000001")
        );
        let bad = RULE.replace("not filter", "not filtr");
        let e = parse(&bad).unwrap_err();
        assert_eq!(e.code, "missing-selection");
        assert_eq!(e.location.line, 21);
        let bad = RULE.replace("Image|endswith: '\\powershell.exe'", "Image|re|contains: x");
        assert_eq!(parse(&bad).unwrap_err().code, "bad-modifier-chain");
        for chain in ["re|expand", "expand|fieldref", "expand|gt", "hour|expand"] {
            let bad = RULE.replace(
                "Image|endswith: '\\powershell.exe'",
                &format!("Image|{chain}: '%servers%'"),
            );
            let e = parse(&bad).unwrap_err();
            assert_eq!(e.code, "bad-modifier-chain", "{chain}");
            assert!(e.message.contains("'expand'"), "{chain}: {}", e.message);
        }
    }
}
