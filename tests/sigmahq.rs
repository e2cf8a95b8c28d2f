//! Conformance against the real SigmaHQ corpus and its labelled regression events.
//!
//! Needs the shared test data: `TOCSIN_TEST_DATA` pointing at `../shared/data` (tests/run.sh
//! sets it when the folder exists). Without it these tests say so and return.
//! Counts are printed and written to `target/conformance/`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use tocsin_core::{Event, EventIndex};
use tocsin_match::{CompiledRules, MatchConfig};
use tocsin_rules::{parse_profile, parse_sigma_source, Profile, SigmaFilter, SigmaRule};

const CORPUS_DIRS: [&str; 3] = ["rules", "rules-emerging-threats", "rules-threat-hunting"];

/// Rejections the specification requires: a placeholder whose values the environment has
/// not defined must make the rule fail ("a tool that cannot handle placeholders must reject
/// the rule").
const ALLOWED_REJECTIONS: [&str; 1] = ["unknown-placeholder"];

fn test_data() -> Option<PathBuf> {
    match std::env::var_os("TOCSIN_TEST_DATA") {
        Some(p) if Path::new(&p).join("sigma").is_dir() => Some(PathBuf::from(p)),
        _ => {
            eprintln!("SKIPPED: TOCSIN_TEST_DATA is not set (or has no sigma/): SigmaHQ conformance not checked");
            None
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            out.push(p);
        }
    }
}

struct Corpus {
    files: usize,
    rules: Vec<SigmaRule>,
    filters: Vec<SigmaFilter>,
    parse_errors: Vec<tocsin_rules::Diagnostic>,
}

fn load_corpus(data: &Path) -> Corpus {
    let mut files = Vec::new();
    for d in CORPUS_DIRS {
        walk(&data.join("sigma").join(d), &mut files);
    }
    files.sort();
    let mut corpus = Corpus {
        files: files.len(),
        rules: Vec::new(),
        filters: Vec::new(),
        parse_errors: Vec::new(),
    };
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let src = parse_sigma_source(&f.display().to_string(), &text);
        corpus.rules.extend(src.rules);
        corpus.filters.extend(src.filters);
        corpus
            .parse_errors
            .extend(src.diagnostics.0.into_iter().filter(|d| d.is_error()));
    }
    corpus
}

fn sysmon_profile() -> Profile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/profiles/sysmon.yaml");
    parse_profile("sysmon.yaml", &std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write_report(name: &str, value: &serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/conformance");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), serde_json::to_string_pretty(value).unwrap()).unwrap();
}

#[test]
fn every_sigmahq_rule_loads() {
    let Some(data) = test_data() else { return };
    let corpus = load_corpus(&data);
    // A profile that accepts every logsource of the corpus without conditions: this test
    // is about whether each rule's detection logic compiles, whatever its log source.
    let mut profile = Profile {
        name: "all-logsources".into(),
        ..Profile::default()
    };
    for r in &corpus.rules {
        let ls = &r.logsource;
        if let Some(c) = &ls.category {
            profile.categories.insert(c.clone(), vec![]);
        }
        if let Some(p) = &ls.product {
            profile.products.insert(p.clone(), vec![]);
        }
        if let Some(s) = &ls.service {
            profile.services.insert(s.clone(), vec![]);
        }
    }
    let started = std::time::Instant::now();
    let (compiled, diags) = CompiledRules::compile(
        &corpus.rules,
        &corpus.filters,
        &[],
        &profile,
        &MatchConfig::default(),
    );
    let compile_seconds = started.elapsed().as_secs_f64();
    let mut rejected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for d in corpus
        .parse_errors
        .iter()
        .chain(diags.iter().filter(|d| d.is_error()))
    {
        rejected.entry(d.code).or_default().push(d.to_string());
    }
    let report = serde_json::json!({
        "files": corpus.files,
        "rules_parsed": corpus.rules.len(),
        "rules_compiled": compiled.stats().rules,
        "rejected_by_reason": rejected.iter().map(|(k, v)| (k.to_string(), v.len())).collect::<BTreeMap<_, _>>(),
        "rejected": rejected,
        "compile_seconds": compile_seconds,
    });
    write_report("sigmahq-load.json", &report);
    eprintln!(
        "SigmaHQ corpus: {} files, {} rules parsed, {} compiled in {compile_seconds:.2} s; rejected by reason: {}",
        corpus.files,
        corpus.rules.len(),
        compiled.stats().rules,
        report["rejected_by_reason"]
    );
    let unexpected: Vec<&String> = rejected
        .iter()
        .filter(|(code, _)| !ALLOWED_REJECTIONS.contains(code))
        .flat_map(|(_, v)| v)
        .collect();
    assert!(
        unexpected.is_empty(),
        "rules rejected that use only specified features:\n{unexpected:#?}"
    );
    assert!(
        compiled.stats().rules > 3500,
        "suspiciously few rules: {}",
        compiled.stats().rules
    );
    assert_eq!(
        compiled.stats().rules + rejected.values().map(Vec::len).sum::<usize>(),
        corpus.rules.len()
    );
}

#[test]
fn sigmahq_regression_events_trigger_their_rules() {
    let Some(data) = test_data() else { return };
    let corpus = load_corpus(&data);
    let (compiled, _) = CompiledRules::compile(
        &corpus.rules,
        &corpus.filters,
        &[],
        &sysmon_profile(),
        &MatchConfig::default(),
    );
    let by_id: BTreeMap<&str, u32> = compiled
        .rules()
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i as u32))
        .collect();
    let all_ids: BTreeSet<&str> = corpus.rules.iter().map(|r| r.id.as_str()).collect();

    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(data.join("sigma-regression/labeled_events.jsonl.gz")).unwrap(),
    )
    .read_to_string(&mut text)
    .unwrap();
    // SigmaHQ's regression data holds, per rule, the events of one sample (an EVTX file);
    // the rule must trigger on at least one of them (some are context events of the same
    // sample). So expectations are grouped by (rule, sample).
    let mut scratch = compiled.new_scratch();
    let mut index = EventIndex::new();
    let mut samples: BTreeMap<(String, String), bool> = BTreeMap::new();
    let (mut not_applicable, mut unknown) = (BTreeSet::new(), BTreeSet::new());
    for line in text.lines() {
        let labelled: serde_json::Value = serde_json::from_str(line).unwrap();
        let raw = serde_json::to_string(&labelled["event"]).unwrap();
        let event = Event::parse(raw.as_bytes(), &mut index).unwrap();
        compiled.match_event(&event, &mut scratch);
        let sample = labelled["source_json"].as_str().unwrap().to_owned();
        for id in labelled["expect_rule_ids"].as_array().unwrap() {
            let id = id.as_str().unwrap();
            match by_id.get(id) {
                Some(r) => {
                    let hit = scratch.matched().contains(r);
                    *samples
                        .entry((id.to_owned(), sample.clone()))
                        .or_insert(false) |= hit;
                }
                None if all_ids.contains(id) => {
                    not_applicable.insert(id.to_owned());
                }
                None => {
                    unknown.insert(id.to_owned());
                }
            }
        }
    }
    let checked = samples.len();
    let missed: Vec<String> = samples
        .iter()
        .filter(|(_, hit)| !**hit)
        .map(|((id, sample), _)| format!("{id} on {sample}"))
        .collect();
    let (not_applicable, unknown) = (not_applicable.len(), unknown.len());
    write_report(
        "sigmahq-regression.json",
        &serde_json::json!({"expectations_checked": checked, "not_applicable_to_profile": not_applicable, "rule_not_in_corpus": unknown, "missed": missed}),
    );
    eprintln!("SigmaHQ regression samples: {checked} (rule, sample) pairs checked, {} missed; {not_applicable} rules outside the sysmon profile, {unknown} rules not in the corpus", missed.len());
    assert!(checked > 150, "too few samples checked: {checked}");
    assert!(
        missed.is_empty(),
        "labelled events that did not trigger their rule:\n{missed:#?}"
    );
}
