//! Audiences, TLP ceilings, formats and recipients through `tocsin run`.

mod common;

use common::*;

fn events(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("events.jsonl");
    generate_events(&p, 5000, 2);
    p
}

#[test]
fn audiences_formats_and_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let input = events(dir.path());
    let run = |extra: &[&str]| -> Vec<serde_json::Value> {
        let out = dir.path().join("out.jsonl");
        run_ok(
            tocsin()
                .args(["run", "--quiet", "--rules"])
                .arg(repo().join("rules"))
                .arg("--input")
                .arg(&input)
                .arg("--output")
                .arg(&out)
                .args(extra),
        );
        json_lines(&out)
    };
    let technical = run(&[]);
    assert!(!technical.is_empty());
    assert!(technical.iter().all(|w| w["audience"] == "technical"));
    assert!(technical
        .iter()
        .any(|w| !w["indicators"].as_array().unwrap().is_empty()));

    let operational = run(&["--audience", "operational"]);
    assert_eq!(operational.len(), technical.len());
    for w in &operational {
        let text = w.to_string();
        assert!(w["indicators"].as_array().unwrap().is_empty());
        assert!(
            !text.contains("invoice-viewer.example") && !text.contains("203.0.113.47"),
            "{text}"
        );
        assert!(!text.contains("Klinikum"), "no organisation names: {text}");
    }
    // GREEN inputs never reach a CLEAR rendering: the public summary is empty here.
    assert!(run(&["--audience", "strategic", "--tlp-ceiling", "CLEAR"]).is_empty());

    let stix = run(&["--warning-format", "stix"]);
    assert_eq!(stix.len(), technical.len());
    assert!(stix.iter().all(|b| b["type"] == "bundle"));
    let types: std::collections::BTreeSet<&str> = stix[0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["type"].as_str().unwrap())
        .collect();
    for t in [
        "incident",
        "indicator",
        "sighting",
        "identity",
        "marking-definition",
        "relationship",
    ] {
        assert!(types.contains(t), "{t} missing from {types:?}");
    }
    // The versions of a warning are versions of one incident: the same id, created at the
    // first version's date, modified at each version's.
    let mut incidents: std::collections::BTreeMap<String, Vec<(String, String, String, u64)>> =
        Default::default();
    for bundle in &stix {
        let incident = bundle["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["type"] == "incident")
            .unwrap();
        let text = |key: &str| incident[key].as_str().unwrap().to_owned();
        let version = incident["x_tocsin_version"].as_u64().unwrap();
        let dates = (text("id"), text("created"), text("modified"), version);
        incidents
            .entry(text("x_tocsin_warning_id"))
            .or_default()
            .push(dates);
    }
    assert!(
        incidents.values().any(|versions| versions.len() > 1),
        "no warning with several versions: {incidents:?}"
    );
    for versions in incidents.values() {
        // (A version the rendering withholds is missing from the stream.)
        let (id, created, first_modified, first_version) = &versions[0];
        if *first_version == 1 {
            assert_eq!(created, first_modified, "{versions:?}");
        }
        for pair in versions.windows(2) {
            assert_eq!((&pair[1].0, &pair[1].1), (id, created), "{versions:?}");
            assert!(pair[1].2 > pair[0].2, "{versions:?}");
        }
    }
    let misp = run(&["--warning-format", "misp"]);
    assert!(misp.iter().all(|e| e["Event"]["info"].as_str().is_some()));

    // Recipients: one file each, every warning that touches them, never above their TLP.
    let rdir = dir.path().join("recipients");
    run(&["--recipients-out", rdir.to_str().unwrap()]);
    let de = json_lines(&rdir.join("csirt.de.jsonl"));
    let public = json_lines(&rdir.join("public-summary.jsonl"));
    let operational_file = json_lines(&rdir.join("operational.jsonl"));
    let centre = json_lines(&rdir.join("coordination-centre.jsonl"));
    assert_eq!(centre.len(), technical.len());
    assert!(!de.is_empty() && de.len() <= centre.len());
    assert!(public.is_empty());
    assert!(operational_file
        .iter()
        .all(|w| w["audience"] == "operational"));
}

#[test]
fn the_policys_issuer_authors_every_rendering() {
    let dir = tempfile::tempdir().unwrap();
    let input = events(dir.path());
    let rules = dir.path().join("rules");
    copy_dir(&repo().join("rules"), &rules);
    let policy = rules.join("escalation.yaml");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("issuer:\n  name: CSIRTs Network coordination centre\n  contact: mailto:cc@csirts.example\n");
    std::fs::write(&policy, text).unwrap();
    let run = |format: &str| -> Vec<serde_json::Value> {
        let out = dir.path().join(format!("{format}.jsonl"));
        run_ok(
            tocsin()
                .args(["run", "--quiet", "--rules"])
                .arg(&rules)
                .arg("--input")
                .arg(&input)
                .arg("--output")
                .arg(&out)
                .args(["--warning-format", format]),
        );
        json_lines(&out)
    };
    let warnings = run("json");
    assert!(!warnings.is_empty());
    let issuer = &warnings[0]["issuer"];
    assert_eq!(issuer["name"], "CSIRTs Network coordination centre");
    assert_eq!(issuer["contact"], "mailto:cc@csirts.example");
    let uuid = issuer["uuid"].as_str().unwrap();
    assert!(warnings.iter().all(|w| w["issuer"] == *issuer));

    let bundles = run("stix");
    assert_eq!(bundles.len(), warnings.len());
    for bundle in &bundles {
        let objects = bundle["objects"].as_array().unwrap();
        let own = objects
            .iter()
            .find(|o| o["name"] == "CSIRTs Network coordination centre")
            .unwrap();
        assert_eq!(own["identity_class"], "organization");
        let incident = objects.iter().find(|o| o["type"] == "incident").unwrap();
        assert_eq!(incident["created_by_ref"], own["id"]);
    }
    let events = run("misp");
    assert_eq!(events.len(), warnings.len());
    for event in &events {
        assert_eq!(event["Event"]["Orgc"]["uuid"], uuid);
        assert_eq!(
            event["Event"]["Orgc"]["name"],
            "CSIRTs Network coordination centre"
        );
    }
}
