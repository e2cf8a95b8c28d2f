//! Agreement with a reference implementation of Sigma: pySigma with its SQLite backend
//! (tests/reference/sigma_sqlite_reference.py) converts SigmaHQ rules to SQL and runs them
//! over events; Tocsin must match exactly the same (rule, event) pairs. Three comparisons:
//! every Windows rule over the real OTRF events, and, over events made from the rules' own
//! values by tests/reference/rule_derived_events.py, the Linux, web and proxy rules (for
//! which the test data has no real logs) and every Windows rule.
//!
//! Needs `TOCSIN_TEST_DATA` and `TOCSIN_PYSIGMA_PYTHON` (a Python with pySigma and the
//! sqlite backend; tests/run.sh installs one into ~/.cache/tocsin). Without them the test
//! says so and returns. The report is written to target/conformance/reference.json.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use tocsin_core::{Event, EventIndex};
use tocsin_match::{CompiledRules, MatchConfig};
use tocsin_rules::{parse_profile, parse_sigma_source, Profile, SigmaRule};

const RULE_DIRS: [&str; 3] = [
    "rules/windows",
    "rules-emerging-threats",
    "rules-threat-hunting/windows",
];

fn walk(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, ext, out);
        } else if p.to_string_lossy().ends_with(ext) {
            out.push(p);
        }
    }
}

/// What the reference script answered.
struct Reference {
    /// (rule id, 1-based line) pairs.
    matches: BTreeSet<(String, u64)>,
    /// Rules it set aside (logsource not in the profile) or failed to convert or run.
    skipped: BTreeSet<String>,
    json: serde_json::Value,
}

fn reference_answers(
    python: &Path,
    rule_dirs: &[PathBuf],
    events: &Path,
    profile: Option<&Path>,
    product: &str,
    work: &Path,
) -> Reference {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = work.join("reference.json");
    let mut cmd = Command::new(python);
    cmd.arg(repo.join("tests/reference/sigma_sqlite_reference.py"));
    for d in rule_dirs {
        cmd.arg("--rules").arg(d);
    }
    if let Some(p) = profile {
        cmd.arg("--profile").arg(p);
    }
    cmd.arg("--product")
        .arg(product)
        .arg("--events")
        .arg(events)
        .arg("--output")
        .arg(&output);
    let status = cmd.status().expect("run the pySigma reference script");
    assert!(status.success(), "the reference script failed");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    let mut matches = BTreeSet::new();
    for (id, lines) in json["matches"].as_object().unwrap() {
        for l in lines.as_array().unwrap() {
            matches.insert((id.clone(), l.as_u64().unwrap()));
        }
    }
    let skipped = json["not_applicable"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .chain(
            json["conversion_errors"]
                .as_object()
                .unwrap()
                .keys()
                .cloned(),
        )
        .chain(json["query_errors"].as_object().unwrap().keys().cloned())
        .collect();
    Reference {
        matches,
        skipped,
        json,
    }
}

/// The rules of `dirs` whose product `keep` accepts, parsed by Tocsin.
fn tocsin_rules(dirs: &[PathBuf], keep: impl Fn(&SigmaRule) -> bool) -> Vec<SigmaRule> {
    let mut files = Vec::new();
    for d in dirs {
        walk(d, ".yml", &mut files);
    }
    files.sort();
    let mut rules = Vec::new();
    for f in &files {
        let src = parse_sigma_source(
            &f.display().to_string(),
            &std::fs::read_to_string(f).unwrap(),
        );
        rules.extend(src.rules.into_iter().filter(|r| keep(r)));
    }
    rules
}

/// Tocsin's (rule id, 1-based line) pairs over the events, and the ids of the rules it
/// compiled.
fn tocsin_answers(
    rules: &[SigmaRule],
    profile: &Profile,
    events: &Path,
) -> (BTreeSet<(String, u64)>, BTreeSet<String>) {
    let (compiled, _) = CompiledRules::compile(rules, &[], &[], profile, &MatchConfig::default());
    let compiled_ids = compiled.rules().iter().map(|r| r.id.clone()).collect();
    let mut ours = BTreeSet::new();
    let text = std::fs::read_to_string(events).unwrap();
    let mut scratch = compiled.new_scratch();
    let mut index = EventIndex::new();
    for (i, line) in text.lines().enumerate() {
        let Ok(event) = Event::parse(line.as_bytes(), &mut index) else {
            continue;
        };
        compiled.match_event(&event, &mut scratch);
        for &r in scratch.matched() {
            ours.insert((compiled.rules()[r as usize].id.clone(), i as u64 + 1));
        }
    }
    (ours, compiled_ids)
}

/// How the two sides compare on the rules both evaluated.
struct Comparison {
    rules_compared: usize,
    ours: usize,
    theirs: usize,
    only_ours: usize,
    only_theirs: usize,
    /// rule id -> (only Tocsin, only the reference)
    by_rule: BTreeMap<String, (usize, usize)>,
}

impl Comparison {
    /// Enough rules compared and matches found for the comparison to mean something, and
    /// no disagreement.
    fn assert_agreement(&self, min_rules: usize, min_matches: usize) {
        assert!(
            self.rules_compared > min_rules,
            "too few rules compared: {}",
            self.rules_compared
        );
        assert!(self.ours > min_matches, "too few matches: {}", self.ours);
        assert!(
            self.only_ours == 0 && self.only_theirs == 0,
            "Tocsin and pySigma disagree (rule: (only Tocsin, only pySigma)): {:#?}",
            self.by_rule
        );
    }
}

/// Compares the answers on the rules both sides evaluated and writes the report to
/// target/conformance/`report`.
fn compare(
    ours: &BTreeSet<(String, u64)>,
    ours_rules: &BTreeSet<String>,
    rules: &[SigmaRule],
    reference: &Reference,
    report: &str,
) -> Comparison {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let reference_rules: BTreeSet<String> = rules
        .iter()
        .map(|r| r.id.clone())
        .filter(|id| !reference.skipped.contains(id))
        .collect();
    let common: BTreeSet<&String> = ours_rules.intersection(&reference_rules).collect();
    let in_common = |m: &&(String, u64)| common.contains(&m.0);
    let only_ours: Vec<&(String, u64)> = ours
        .iter()
        .filter(in_common)
        .filter(|m| !reference.matches.contains(*m))
        .collect();
    let only_theirs: Vec<&(String, u64)> = reference
        .matches
        .iter()
        .filter(in_common)
        .filter(|m| !ours.contains(*m))
        .collect();
    let mut by_rule: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (id, _) in &only_ours {
        by_rule.entry(id.clone()).or_default().0 += 1;
    }
    for (id, _) in &only_theirs {
        by_rule.entry(id.clone()).or_default().1 += 1;
    }
    let json = &reference.json;
    let written = serde_json::json!({
        "reference": {"pysigma": json["pysigma_version"], "backend": json["backend_version"], "rules_converted": json["rules_converted"], "conversion_errors": json["conversion_errors"]},
        "tocsin_rules": ours_rules.len(),
        "rules_compared": common.len(),
        "only_in_tocsin_rules": ours_rules.difference(&reference_rules).collect::<Vec<_>>(),
        "only_in_reference_rules": reference_rules.difference(ours_rules).collect::<Vec<_>>(),
        "matches_tocsin": ours.len(),
        "matches_reference": reference.matches.len(),
        "disagreements_by_rule": by_rule,
        "only_tocsin": only_ours,
        "only_reference": only_theirs,
    });
    let dir = repo.join("target/conformance");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(report),
        serde_json::to_string_pretty(&written).unwrap(),
    )
    .unwrap();
    Comparison {
        rules_compared: common.len(),
        ours: ours.iter().filter(in_common).count(),
        theirs: reference.matches.iter().filter(in_common).count(),
        only_ours: only_ours.len(),
        only_theirs: only_theirs.len(),
        by_rule,
    }
}

fn test_inputs(what: &str) -> Option<(PathBuf, PathBuf)> {
    let (Some(data), Some(python)) = (
        std::env::var_os("TOCSIN_TEST_DATA").map(PathBuf::from),
        std::env::var_os("TOCSIN_PYSIGMA_PYTHON").map(PathBuf::from),
    ) else {
        eprintln!("SKIPPED: TOCSIN_TEST_DATA and TOCSIN_PYSIGMA_PYTHON are needed for the pySigma reference comparison ({what})");
        return None;
    };
    Some((data, python))
}

#[test]
fn tocsin_agrees_with_pysigma_sqlite_on_sigmahq_windows_rules() {
    let Some((data, python)) = test_inputs("Windows rules") else {
        return;
    };
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();

    // The events, in one file: both sides number them by line.
    let mut gz = Vec::new();
    walk(&data.join("events/otrf"), ".jsonl.gz", &mut gz);
    gz.sort();
    let events_path = work.path().join("events.jsonl");
    let mut events_file = std::fs::File::create(&events_path).unwrap();
    for f in &gz {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(f).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        events_file.write_all(text.as_bytes()).unwrap();
        if !text.ends_with('\n') {
            events_file.write_all(b"\n").unwrap();
        }
    }
    drop(events_file);

    let dirs: Vec<PathBuf> = RULE_DIRS
        .iter()
        .map(|d| data.join("sigma").join(d))
        .collect();
    let reference = reference_answers(&python, &dirs, &events_path, None, "windows", work.path());

    // Tocsin's answers, with the repository's sysmon profile.
    let rules = tocsin_rules(&dirs, |r| r.logsource.product.as_deref() == Some("windows"));
    let profile = parse_profile(
        "sysmon.yaml",
        &std::fs::read_to_string(repo.join("rules/profiles/sysmon.yaml")).unwrap(),
    )
    .unwrap();
    let (ours, ours_rules) = tocsin_answers(&rules, &profile, &events_path);
    let c = compare(&ours, &ours_rules, &rules, &reference, "reference.json");
    eprintln!(
        "pySigma reference: {} rules compared, {} matches (Tocsin) vs {} (reference); {} only in Tocsin, {} only in the reference",
        c.rules_compared, c.ours, c.theirs, c.only_ours, c.only_theirs
    );
    c.assert_agreement(2500, 500);
}

/// The comparison over events made from the rules of `dirs` (relative to the SigmaHQ
/// checkout) by tests/reference/rule_derived_events.py, with the profile it writes: no
/// logsource conditions, field names as written. Returns the comparison, with the report in
/// target/conformance/`report`.
fn rule_derived_comparison(data: &Path, python: &Path, dirs: &[&str], report: &str) -> Comparison {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = dirs.iter().map(|d| data.join("sigma").join(d)).collect();
    let events_path = work.path().join("events.jsonl");
    let profile_path = work.path().join("profile.yaml");
    let mut make = Command::new(python);
    make.arg(repo.join("tests/reference/rule_derived_events.py"));
    for d in &dirs {
        make.arg("--rules").arg(d);
    }
    make.arg("--events")
        .arg(&events_path)
        .arg("--profile")
        .arg(&profile_path);
    assert!(
        make.status().expect("run rule_derived_events.py").success(),
        "rule_derived_events.py failed"
    );

    let reference = reference_answers(
        python,
        &dirs,
        &events_path,
        Some(&profile_path),
        "any",
        work.path(),
    );
    let rules = tocsin_rules(&dirs, |_| true);
    let profile = parse_profile(
        "profile.yaml",
        &std::fs::read_to_string(&profile_path).unwrap(),
    )
    .unwrap();
    let (ours, ours_rules) = tocsin_answers(&rules, &profile, &events_path);
    let c = compare(&ours, &ours_rules, &rules, &reference, report);
    eprintln!(
        "pySigma reference, {} over events made from the rules: {} rules compared, {} matches (Tocsin) vs {} (reference); {} only in Tocsin, {} only in the reference",
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        c.rules_compared, c.ours, c.theirs, c.only_ours, c.only_theirs
    );
    c
}

#[test]
fn tocsin_agrees_with_pysigma_sqlite_on_linux_and_web_rules_over_rule_derived_events() {
    let Some((data, python)) = test_inputs("Linux and web rules") else {
        return;
    };
    let c = rule_derived_comparison(
        &data,
        &python,
        &["rules/linux", "rules/web"],
        "reference-linux-web.json",
    );
    c.assert_agreement(200, 1000);
}

#[test]
fn tocsin_agrees_with_pysigma_sqlite_on_windows_rules_over_rule_derived_events() {
    let Some((data, python)) = test_inputs("Windows rules, rule-derived events") else {
        return;
    };
    let c = rule_derived_comparison(&data, &python, &RULE_DIRS, "reference-windows-derived.json");
    c.assert_agreement(2500, 10000);
}
