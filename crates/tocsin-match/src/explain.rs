//! Why a rule matched an event: for rule authors (`tocsin match --explain`).
//!
//! Re-evaluates one rule on one event outside the hot path and records, for each selection,
//! each alternative and each test, the field, the modifier chain as written, the value
//! read from the event and whether it held; then the condition's verdict. Allocation is
//! fine here: this runs only on demand.

use std::fmt::Write;

use tocsin_core::{Event, FieldName};
use tocsin_rules::sigma::Condition;

use crate::compile::{CompiledRules, RuleIdx};
use crate::matcher::MatchScratch;

/// One test's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestTrace {
    /// `field|modifiers` as written.
    pub key: String,
    /// The event path it was read from and the value, when present.
    pub value: Option<(String, String)>,
    /// Whether the test held.
    pub matched: bool,
}

/// One selection's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionTrace {
    /// Selection name.
    pub name: String,
    /// Per alternative, its tests.
    pub alternatives: Vec<Vec<TestTrace>>,
    /// Whether the selection held.
    pub matched: bool,
}

/// The explanation of one rule on one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Rule id.
    pub rule_id: String,
    /// Rule title.
    pub title: String,
    /// Logsource route the rule runs on.
    pub route: String,
    /// Selections.
    pub selections: Vec<SelectionTrace>,
    /// The condition with selection names.
    pub condition: String,
    /// The verdict.
    pub matched: bool,
}

impl CompiledRules {
    /// Explain rule `r` on `event`. `scratch` must hold the state of
    /// [`CompiledRules::match_event`] for this same event (atom hits are read from it).
    pub fn explain(
        &self,
        r: RuleIdx,
        event: &Event<'_>,
        scratch: &mut MatchScratch,
    ) -> Explanation {
        let rule = &self.rules[r as usize];
        let mut selections = Vec::new();
        for sel in &rule.selections {
            let mut alternatives = Vec::new();
            for alt in &sel.alternatives {
                let mut tests = Vec::new();
                // As written, not in evaluation order.
                let mut written: Vec<_> = alt.iter().collect();
                written.sort_by_key(|t| t.written_at);
                for t in written {
                    let no_paths: &[FieldName] = &[];
                    let paths = if t.field == crate::compile::KEYWORD_SLOT {
                        no_paths
                    } else {
                        &self.fields[t.field as usize]
                    };
                    let value = paths.iter().find_map(|p| {
                        event.get_named(p).map(|v| {
                            (
                                p.to_string(),
                                v.to_text().unwrap_or_else(|| {
                                    String::from_utf8_lossy(v.raw()).into_owned()
                                }),
                            )
                        })
                    });
                    tests.push(TestTrace {
                        key: t.key.clone(),
                        value,
                        matched: self.eval_test(t, event, scratch),
                    });
                }
                alternatives.push(tests);
            }
            selections.push(SelectionTrace {
                name: sel.name.clone(),
                matched: self.eval_selection(sel, event, scratch),
                alternatives,
            });
        }
        let names: Vec<&str> = rule.selections.iter().map(|s| s.name.as_str()).collect();
        Explanation {
            rule_id: rule.id.clone(),
            title: rule.title.clone(),
            route: self.routes[rule.route as usize].description.clone(),
            condition: render_condition(&rule.condition, &names),
            matched: self.eval_condition(&rule.condition, &rule.selections, event, scratch),
            selections,
        }
    }
}

fn render_condition(c: &Condition, names: &[&str]) -> String {
    let list = |xs: &[usize]| xs.iter().map(|&i| names[i]).collect::<Vec<_>>().join(", ");
    match c {
        Condition::Selection(i) => names[*i].to_owned(),
        Condition::Not(c) => format!("not {}", render_condition(c, names)),
        Condition::And(cs) => format!(
            "({})",
            cs.iter()
                .map(|c| render_condition(c, names))
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        Condition::Or(cs) => format!(
            "({})",
            cs.iter()
                .map(|c| render_condition(c, names))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        Condition::AnyOf(xs) => format!("1 of [{}]", list(xs)),
        Condition::AllOf(xs) => format!("all of [{}]", list(xs)),
    }
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        let verdict = |b: bool| if b { "MATCH" } else { "no match" };
        let _ = writeln!(
            out,
            "rule {} ({}) on [{}]: {}",
            self.rule_id,
            self.title,
            self.route,
            verdict(self.matched)
        );
        for s in &self.selections {
            let _ = writeln!(out, "  selection {}: {}", s.name, verdict(s.matched));
            for (i, alt) in s.alternatives.iter().enumerate() {
                if s.alternatives.len() > 1 {
                    let _ = writeln!(out, "    alternative {}:", i + 1);
                }
                for t in alt {
                    let shown = match &t.value {
                        Some((path, v)) => format!("{path} = '{v}'"),
                        None => "field absent".to_owned(),
                    };
                    let _ = writeln!(
                        out,
                        "      {} {}: {shown}",
                        if t.matched { "✓" } else { "✗" },
                        t.key
                    );
                }
            }
        }
        let _ = write!(
            out,
            "  condition: {} => {}",
            self.condition,
            verdict(self.matched)
        );
        f.write_str(&out)
    }
}
