//! Values for Sigma placeholders (`%Servers%`, `%DomainControllers%`...), used by the
//! `expand` modifier.
//!
//! The specification leaves placeholder values to the environment: a tool that cannot
//! resolve one must reject the rule. `placeholders.yaml` in a rules directory maps each name
//! (without `%`) to a list of values, which may hold wildcards:
//!
//! ```yaml
//! Administrators: ['ACME\Domain Admins', 'ACME\adm_*']
//! DomainControllers: [DC01, DC02]
//! ```

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::diagnostic::Diagnostic;
use crate::yaml::documents;

/// Parse `placeholders.yaml`.
pub fn parse_placeholders(
    file: &str,
    text: &str,
) -> Result<BTreeMap<String, Vec<String>>, Diagnostic> {
    let (docs, mut errs) = documents(file, text);
    if let Some(e) = errs.pop() {
        return Err(e);
    }
    let mut out = BTreeMap::new();
    let Some(doc) = docs.into_iter().next() else {
        return Ok(out);
    };
    let Value::Mapping(map) = &doc.value else {
        return Err(Diagnostic::error(
            doc.start(),
            "bad-placeholders",
            "placeholders.yaml must map names to lists of values",
        ));
    };
    for (k, v) in map {
        let Some(name) = k.as_str() else {
            return Err(Diagnostic::error(
                doc.start(),
                "bad-placeholders",
                "placeholder names must be strings",
            ));
        };
        let name = name.trim_matches('%').to_owned();
        let values = match v {
            Value::String(s) => vec![s.clone()],
            Value::Sequence(xs) => {
                let mut vals = Vec::new();
                for x in xs {
                    match x {
                        Value::String(s) => vals.push(s.clone()),
                        Value::Number(n) => vals.push(n.to_string()),
                        _ => {
                            return Err(Diagnostic::error(
                                doc.locate(&format!("{name}:")),
                                "bad-placeholders",
                                format!("placeholder '{name}': values must be strings"),
                            ))
                        }
                    }
                }
                vals
            }
            _ => {
                return Err(Diagnostic::error(
                    doc.locate(&format!("{name}:")),
                    "bad-placeholders",
                    format!("placeholder '{name}' must be a string or a list of strings"),
                ))
            }
        };
        if values.is_empty() {
            return Err(Diagnostic::error(
                doc.locate(&format!("{name}:")),
                "bad-placeholders",
                format!("placeholder '{name}' has no values"),
            ));
        }
        out.insert(name, values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lists_and_single_values() {
        let p = parse_placeholders(
            "p.yaml",
            "Servers: [a, 'b*']\n'%DomainControllers%': DC01\n",
        )
        .unwrap();
        assert_eq!(p["Servers"], vec!["a", "b*"]);
        assert_eq!(p["DomainControllers"], vec!["DC01"]);
        assert!(parse_placeholders("p.yaml", "Servers: {a: 1}\n").is_err());
    }
}
