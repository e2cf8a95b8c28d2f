//! Reading rule sources: Sigma detection rules, indicator lists, field-mapping profiles and
//! the escalation policy.
//!
//! Everything here parses text that the caller has read (this crate does no I/O, so the same
//! code serves files, ConfigMaps and tests) and returns what it could read plus
//! [`Diagnostic`]s that name the file, line, rule id and title. A bad rule never stops the
//! rest from loading. Compiling rules into a matcher is `tocsin-match`'s job.

// Parse errors are `Diagnostic`s (file, line, rule id and title, message): large, but built
// only when a rule is bad, never on a per-event path. Boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod diagnostic;
pub mod escalation;
pub mod feeds;
pub mod ioc;
pub mod placeholders;
pub mod profile;
pub mod sigma;
pub mod yaml;

pub use diagnostic::{Diagnostic, Diagnostics, Location, Severity};
pub use escalation::{parse_policy, EscalationPolicy};
pub use feeds::{
    detect_format, parse_feed, parse_misp_feed, CsvColumn, CsvOptions, FeedFormat, FeedLimits,
    FeedOptions,
};
pub use ioc::{parse_plain_list, Indicator};
pub use placeholders::parse_placeholders;
pub use profile::{parse_profile, Profile, RouteCondition};
pub use sigma::correlation::{CorrelationRule, CorrelationType};
pub use sigma::{SigmaDocument, SigmaFilter, SigmaRule};

/// What one Sigma source file holds.
#[derive(Debug, Default)]
pub struct SigmaSource {
    /// Detection rules.
    pub rules: Vec<SigmaRule>,
    /// Global filters.
    pub filters: Vec<SigmaFilter>,
    /// Correlation rules.
    pub correlations: Vec<sigma::correlation::CorrelationRule>,
    /// Problems; the documents they concern were skipped (errors) or loaded (warnings).
    pub diagnostics: Diagnostics,
}

/// Parse every YAML document of one Sigma source file.
pub fn parse_sigma_source(file: &str, text: &str) -> SigmaSource {
    let (docs, problems) = yaml::documents(file, text);
    let mut out = SigmaSource {
        diagnostics: Diagnostics(problems),
        ..SigmaSource::default()
    };
    for doc in &docs {
        match sigma::parse_document(doc) {
            Ok((SigmaDocument::Rule(rule), warnings)) => {
                out.diagnostics.extend(warnings);
                out.rules.push(*rule);
            }
            Ok((SigmaDocument::Correlation(c), warnings)) => {
                out.diagnostics.extend(warnings);
                out.correlations.push(*c);
            }
            Ok((SigmaDocument::Filter(filter), _)) => out.filters.push(*filter),
            Err(d) => out.diagnostics.push(d),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RULE: &str = "title: t\nid: r1\nlogsource: {category: process_creation, product: windows}\ndetection:\n  sel:\n    CommandLine|contains: [a, b]\n  condition: sel\n";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn parser_never_panics_on_mutated_rules(at in 0usize..200, byte in any::<u8>(), cut in 0usize..200) {
            let mut bytes = RULE.as_bytes().to_vec();
            let at = at % bytes.len();
            bytes[at] = byte;
            bytes.truncate(cut.max(1));
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_sigma_source("m.yml", &text);
        }

        #[test]
        fn parser_never_panics_on_generated_yaml(text in "[a-z|:{}\\[\\], \\n*?'\"-]{0,200}") {
            let _ = parse_sigma_source("g.yml", &text);
            let _ = parse_policy("g.yml", &text);
            let _ = parse_profile("g.yml", &text);
            let _ = parse_plain_list("g.txt", &text, "g");
        }
    }

    #[test]
    fn filters_are_parsed() {
        let text = "title: Filter admins\nlogsource: {category: process_creation, product: windows}\nfilter:\n  rules: [r1, some_name]\n  selection:\n    User|startswith: adm_\n  condition: selection\n";
        let src = parse_sigma_source("mf_admins.yml", text);
        assert_eq!(src.diagnostics.error_count(), 0, "{:?}", src.diagnostics);
        assert_eq!(src.filters.len(), 1);
        assert_eq!(src.filters[0].rules, vec!["r1", "some_name"]);
        assert_eq!(src.filters[0].selections[0].name, "selection");
        let bad = parse_sigma_source("mf.yml", "title: F\nlogsource: {product: windows}\nfilter:\n  selection: {User: x}\n  condition: selection\n");
        assert_eq!(bad.diagnostics.0[0].code, "bad-filter");
    }

    #[test]
    fn one_bad_rule_does_not_stop_the_others() {
        let text = format!("{RULE}---\ntitle: broken\nid: r2\nlogsource: {{product: windows}}\ndetection:\n  sel:\n    A|bogus: x\n  condition: sel\n---\n{}", RULE.replace("id: r1", "id: r3"));
        let src = parse_sigma_source("multi.yml", &text);
        assert_eq!(src.rules.len(), 2);
        assert_eq!(src.diagnostics.error_count(), 1);
        let d = &src.diagnostics.0[0];
        assert_eq!(d.rule_id.as_deref(), Some("r2"));
        assert_eq!(d.location.line, 14);
        assert!(d.to_string().starts_with("multi.yml:14:"), "{d}");
    }
}
