//! Agreement with a reference implementation of Sigma: pySigma with its SQLite backend
//! (tests/reference/sigma_sqlite_reference.py) converts every SigmaHQ Windows rule to SQL and
//! runs it over the OTRF events; Tocsin must match exactly the same (rule, event) pairs.
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
use tocsin_rules::{parse_profile, parse_sigma_source};

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

#[test]
fn tocsin_agrees_with_pysigma_sqlite_on_sigmahq_windows_rules() {
    let (Some(data), Some(python)) = (
        std::env::var_os("TOCSIN_TEST_DATA").map(PathBuf::from),
        std::env::var_os("TOCSIN_PYSIGMA_PYTHON").map(PathBuf::from),
    ) else {
        eprintln!("SKIPPED: TOCSIN_TEST_DATA and TOCSIN_PYSIGMA_PYTHON are needed for the pySigma reference comparison");
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

    // Reference answers.
    let reference_path = work.path().join("reference.json");
    let mut cmd = Command::new(&python);
    cmd.arg(repo.join("tests/reference/sigma_sqlite_reference.py"));
    for d in RULE_DIRS {
        cmd.arg("--rules").arg(data.join("sigma").join(d));
    }
    cmd.arg("--events")
        .arg(&events_path)
        .arg("--output")
        .arg(&reference_path);
    let status = cmd.status().expect("run the pySigma reference script");
    assert!(status.success(), "the reference script failed");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&reference_path).unwrap()).unwrap();
    let mut theirs: BTreeSet<(String, u64)> = BTreeSet::new();
    for (id, lines) in reference["matches"].as_object().unwrap() {
        for l in lines.as_array().unwrap() {
            theirs.insert((id.clone(), l.as_u64().unwrap()));
        }
    }

    // Tocsin's answers, with the repository's sysmon profile.
    let mut files = Vec::new();
    for d in RULE_DIRS {
        walk(&data.join("sigma").join(d), ".yml", &mut files);
    }
    files.sort();
    let mut rules = Vec::new();
    for f in &files {
        let src = parse_sigma_source(
            &f.display().to_string(),
            &std::fs::read_to_string(f).unwrap(),
        );
        rules.extend(
            src.rules
                .into_iter()
                .filter(|r| r.logsource.product.as_deref() == Some("windows")),
        );
    }
    let profile = parse_profile(
        "sysmon.yaml",
        &std::fs::read_to_string(repo.join("rules/profiles/sysmon.yaml")).unwrap(),
    )
    .unwrap();
    let (compiled, _) = CompiledRules::compile(&rules, &[], &[], &profile, &MatchConfig::default());
    let ours_rules: BTreeSet<String> = compiled.rules().iter().map(|r| r.id.clone()).collect();
    // The rules the reference evaluated: every Windows rule it did not set aside or fail on.
    let skipped: BTreeSet<String> = reference["not_applicable"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .chain(
            reference["conversion_errors"]
                .as_object()
                .unwrap()
                .keys()
                .cloned(),
        )
        .chain(
            reference["query_errors"]
                .as_object()
                .unwrap()
                .keys()
                .cloned(),
        )
        .collect();
    let reference_rules: BTreeSet<String> = rules
        .iter()
        .map(|r| r.id.clone())
        .filter(|id| !skipped.contains(id))
        .collect();
    let mut ours: BTreeSet<(String, u64)> = BTreeSet::new();
    let text = std::fs::read_to_string(&events_path).unwrap();
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

    // Compare on the rules both sides evaluated.
    let common: BTreeSet<&String> = ours_rules.intersection(&reference_rules).collect();
    let only_ours: Vec<&(String, u64)> = ours
        .iter()
        .filter(|(id, _)| common.contains(id))
        .filter(|m| !theirs.contains(*m))
        .collect();
    let only_theirs: Vec<&(String, u64)> = theirs
        .iter()
        .filter(|(id, _)| common.contains(id))
        .filter(|m| !ours.contains(*m))
        .collect();
    let mut by_rule: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (id, _) in &only_ours {
        by_rule.entry(id).or_default().0 += 1;
    }
    for (id, _) in &only_theirs {
        by_rule.entry(id).or_default().1 += 1;
    }
    let report = serde_json::json!({
        "reference": {"pysigma": reference["pysigma_version"], "backend": reference["backend_version"], "rules_converted": reference["rules_converted"], "conversion_errors": reference["conversion_errors"]},
        "tocsin_rules": ours_rules.len(),
        "rules_compared": common.len(),
        "only_in_tocsin_rules": ours_rules.difference(&reference_rules).collect::<Vec<_>>(),
        "only_in_reference_rules": reference_rules.difference(&ours_rules).collect::<Vec<_>>(),
        "matches_tocsin": ours.len(),
        "matches_reference": theirs.len(),
        "disagreements_by_rule": by_rule,
    });
    let dir = repo.join("target/conformance");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("reference.json"),
        serde_json::to_string_pretty(&report).unwrap(),
    )
    .unwrap();
    eprintln!(
        "pySigma reference: {} rules compared, {} matches (Tocsin) vs {} (reference); {} only in Tocsin, {} only in the reference",
        common.len(),
        ours.len(),
        theirs.len(),
        only_ours.len(),
        only_theirs.len()
    );
    assert!(
        common.len() > 2500,
        "too few rules compared: {}",
        common.len()
    );
    assert!(ours.len() > 500, "too few matches: {}", ours.len());
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "Tocsin and pySigma disagree (rule: (only Tocsin, only pySigma)): {by_rule:#?}"
    );
}
