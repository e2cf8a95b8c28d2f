//! Field-mapping profiles: how Sigma's logsources and field names map onto one event shape.
//!
//! Sigma rules name abstract log sources (`category: process_creation`) and field names
//! (`Image`); events come from Sysmon, Windows Security auditing, ECS-shaped agents and so
//! on. A profile is data (YAML in `rules/profiles/`), not code, so SOC engineers can add one
//! for their own collector. It says:
//! - which event conditions each logsource value means (`process_creation` ⇒
//!   `EventID: 1` in the Sysmon channel, or `EventID: 4688` in Security),
//! - where each Sigma field lives in the event (a list of candidate paths, first present wins),
//! - which fields hold the context (time, sector, member state, organisation),
//! - which fields are checked against which indicator types.
//!
//! Logsource dimensions compose as pySigma's pipelines do: the rule's category, product and
//! service each add their conditions (ANDed). A rule whose logsource names a value the
//! profile does not map (a Linux rule under a Windows profile) does not apply to this
//! profile's events and is set aside with a warning, never run on everything.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml::Value;

use tocsin_core::{ContextFields, IndicatorType};

use crate::diagnostic::{Diagnostic, Location};
use crate::sigma::LogSource;
use crate::yaml::documents;

/// One alternative of a logsource condition: all these fields must equal these values
/// (case-insensitively).
pub type FieldEquals = Vec<(String, String)>;

/// A profile.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    /// Its name (`sysmon`, `ecs`).
    pub name: String,
    /// Where the context lives.
    pub context: ContextFields,
    /// Sigma field → candidate event paths.
    pub fields: BTreeMap<String, Vec<String>>,
    /// `category` value → alternatives.
    pub categories: BTreeMap<String, Vec<FieldEquals>>,
    /// `product` value → alternatives.
    pub products: BTreeMap<String, Vec<FieldEquals>>,
    /// `service` value → alternatives.
    pub services: BTreeMap<String, Vec<FieldEquals>>,
    /// Indicator type → fields holding such values.
    pub indicator_fields: BTreeMap<IndicatorType, Vec<String>>,
    /// Fields holding `ALGO=hex,ALGO=hex` hash lists (Sysmon's `Hashes`).
    pub hash_list_fields: Vec<String>,
    /// Fields that name the entities of a detection (entity kind → fields).
    pub entity_fields: BTreeMap<String, Vec<String>>,
}

/// The conditions a rule's logsource puts on events: every dimension (AND) must match one
/// of its alternatives (OR). Empty = every event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteCondition {
    /// One entry per constrained dimension.
    pub dimensions: Vec<Vec<FieldEquals>>,
}

impl Profile {
    /// The event paths to read for a Sigma field: the mapped ones, else the name itself.
    pub fn paths_for(&self, sigma_field: &str) -> Vec<String> {
        match self.fields.get(sigma_field) {
            Some(paths) if !paths.is_empty() => paths.clone(),
            _ => vec![sigma_field.to_owned()],
        }
    }

    /// The event condition for a rule's logsource. Every dimension the rule sets must be
    /// mapped by the profile (an empty list of alternatives means "no condition"); a value
    /// the profile does not know means the rule is written for events this profile cannot
    /// recognise, and the error says which.
    pub fn route_for(&self, ls: &LogSource) -> Result<RouteCondition, String> {
        let mut route = RouteCondition::default();
        for (dim, value, table) in [
            ("category", &ls.category, &self.categories),
            ("product", &ls.product, &self.products),
            ("service", &ls.service, &self.services),
        ] {
            let Some(value) = value else { continue };
            match table.get(value) {
                Some(alts) if alts.is_empty() => {}
                Some(alts) => route.dimensions.push(alts.clone()),
                None => {
                    return Err(format!(
                        "logsource {dim} '{value}' is not covered by profile '{}'",
                        self.name
                    ))
                }
            }
        }
        route.dimensions.sort();
        Ok(route)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    context: Option<ContextFields>,
    #[serde(default)]
    fields: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    logsources: LogsourceTables,
    #[serde(default)]
    indicators: IndicatorTables,
    #[serde(default)]
    entities: BTreeMap<String, OneOrMany>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogsourceTables {
    #[serde(default)]
    category: BTreeMap<String, Vec<BTreeMap<String, Value>>>,
    #[serde(default)]
    product: BTreeMap<String, Vec<BTreeMap<String, Value>>>,
    #[serde(default)]
    service: BTreeMap<String, Vec<BTreeMap<String, Value>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IndicatorTables {
    #[serde(default)]
    fields: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    hash_lists: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

fn alternatives(
    table: BTreeMap<String, Vec<BTreeMap<String, Value>>>,
) -> Result<BTreeMap<String, Vec<FieldEquals>>, String> {
    let mut out = BTreeMap::new();
    for (name, alts) in table {
        let mut converted = Vec::new();
        for alt in alts {
            let mut eqs = Vec::new();
            for (field, value) in alt {
                let v = match value {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(format!(
                            "logsource '{name}': field '{field}' must equal a scalar"
                        ))
                    }
                };
                eqs.push((field, v));
            }
            converted.push(eqs);
        }
        out.insert(name.to_ascii_lowercase(), converted);
    }
    Ok(out)
}

/// Parse a profile file.
pub fn parse_profile(file: &str, text: &str) -> Result<Profile, Diagnostic> {
    let (docs, mut errs) = documents(file, text);
    if let Some(e) = errs.pop() {
        return Err(e);
    }
    let Some(doc) = docs.into_iter().next() else {
        return Err(Diagnostic::error(
            Location::line(file, 1),
            "empty",
            "profile file is empty",
        ));
    };
    let parsed: ProfileFile = serde_yaml::from_value(doc.value.clone()).map_err(|e| {
        Diagnostic::error(doc.start(), "bad-profile", format!("invalid profile: {e}"))
    })?;
    let bad = |msg: String| Diagnostic::error(doc.locate("logsources:"), "bad-profile", msg);
    let mut indicator_fields = BTreeMap::new();
    for (kind, fields) in parsed.indicators.fields {
        let fields = fields.into_vec();
        if kind == "ip" {
            indicator_fields.insert(IndicatorType::Ipv4, fields.clone());
            indicator_fields.insert(IndicatorType::Ipv6, fields);
            continue;
        }
        let Some(t) = IndicatorType::parse(&kind) else {
            return Err(Diagnostic::error(
                doc.locate(&format!("{kind}:")),
                "bad-profile",
                format!("unknown indicator type '{kind}' (expected ip, ipv4, ipv6, domain, md5, sha1, sha256, sha512, url)"),
            ));
        };
        indicator_fields.insert(t, fields);
    }
    Ok(Profile {
        name: parsed.name,
        context: parsed.context.unwrap_or_default(),
        fields: parsed
            .fields
            .into_iter()
            .map(|(k, v)| (k, v.into_vec()))
            .collect(),
        categories: alternatives(parsed.logsources.category).map_err(bad)?,
        products: alternatives(parsed.logsources.product).map_err(bad)?,
        services: alternatives(parsed.logsources.service).map_err(bad)?,
        indicator_fields,
        hash_list_fields: parsed.indicators.hash_lists,
        entity_fields: parsed
            .entities
            .into_iter()
            .map(|(k, v)| (k, v.into_vec()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = r#"
name: test
fields:
  Image: [Image, NewProcessName]
logsources:
  product:
    windows: []
  category:
    process_creation:
      - {Channel: Microsoft-Windows-Sysmon/Operational, EventID: 1}
      - {Channel: Security, EventID: 4688}
indicators:
  fields:
    ip: [DestinationIp]
    domain: QueryName
  hash_lists: [Hashes]
"#;

    #[test]
    fn routes_compose_dimensions() {
        let p = parse_profile("p.yaml", PROFILE).unwrap();
        let ls = LogSource {
            category: Some("process_creation".into()),
            product: Some("windows".into()),
            service: None,
        };
        let route = p.route_for(&ls).unwrap();
        assert_eq!(route.dimensions.len(), 1);
        assert_eq!(route.dimensions[0].len(), 2);
        assert_eq!(p.paths_for("Image"), vec!["Image", "NewProcessName"]);
        assert_eq!(p.paths_for("CommandLine"), vec!["CommandLine"]);
        let err = p
            .route_for(&LogSource {
                category: Some("dns_query".into()),
                ..ls
            })
            .unwrap_err();
        assert!(err.contains("dns_query"), "{err}");
        assert!(p.indicator_fields.contains_key(&IndicatorType::Ipv6));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = parse_profile("p.yaml", "name: x\nfeilds: {}\n").unwrap_err();
        assert!(e.message.contains("feilds"), "{e}");
    }
}
