//! The demo scenario end to end through the real binary, with exact expected warnings.

mod common;

use common::*;

const LOADER_STATES: [&str; 6] = ["CZ", "DE", "ES", "FR", "IT", "NL"];
const SECTORS: [&str; 3] = ["energy", "health", "public-administration"];

#[test]
fn demo_finds_the_campaign_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("warnings.jsonl");
    let out = run_ok(
        tocsin()
            .args(["demo", "--seed", "1", "--output"])
            .arg(&out_path),
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("Campaign 'nightglass'"), "{table}");
    assert!(table.contains("100048 events"), "{table}");

    let warnings = json_lines(&out_path);
    assert!(warnings
        .iter()
        .all(|w| w["exercise"] == true && w["schema"] == "tocsin.early-warning/v1"));
    let latest = latest_versions(&warnings);
    let mut by_key: std::collections::BTreeMap<String, serde_json::Value> = latest
        .values()
        .map(|w| (w["correlation_key"].as_str().unwrap().to_owned(), w.clone()))
        .collect();
    let keys: Vec<&String> = by_key.keys().collect();
    assert_eq!(
        keys,
        vec![
            "campaign:nightglass",
            "indicator:domain:invoice-viewer.example",
            "indicator:ipv4:203.0.113.47",
            "indicator:sha256:9f2c4b7e1d3a5c6b8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f",
        ],
        "exactly the campaign's four correlation keys warn; background noise never does"
    );

    for key in [
        "indicator:domain:invoice-viewer.example",
        "indicator:ipv4:203.0.113.47",
        "indicator:sha256:9f2c4b7e1d3a5c6b8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f",
    ] {
        let w = &by_key[key];
        assert_eq!(w["affected"]["organisation_count"], 6, "{key}");
        assert_eq!(
            strings(&w["affected"]["member_states"]),
            LOADER_STATES,
            "{key}"
        );
        assert_eq!(strings(&w["affected"]["sectors"]), SECTORS, "{key}");
        assert_eq!(w["cross_border"], true);
        assert_eq!(w["cross_sector"], true);
        assert_eq!(w["suspected_malicious"], true);
        assert_eq!(w["severity"], "critical");
        assert_eq!(
            w["version"], 5,
            "new at 2 organisations, then one version per new organisation"
        );
        assert_eq!(w["taxonomy"]["class"], "malicious-code");
    }
    let domain = by_key
        .remove("indicator:domain:invoice-viewer.example")
        .unwrap();
    let values: Vec<&str> = domain["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, vec!["invoice-viewer.example", "203.0.113.47"]);
    let hash = &by_key
        ["indicator:sha256:9f2c4b7e1d3a5c6b8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f"];
    assert_eq!(hash["indicators"][0]["type"], "sha256");

    let campaign = &by_key["campaign:nightglass"];
    assert_eq!(campaign["affected"]["organisation_count"], 4);
    assert_eq!(
        strings(&campaign["affected"]["member_states"]),
        ["CZ", "DE", "IT", "NL"]
    );
    assert_eq!(strings(&campaign["affected"]["sectors"]), SECTORS);
    assert_eq!(
        campaign["rules"][0]["title"],
        "NIGHTGLASS Ransom Note Written"
    );
    assert_eq!(strings(&campaign["attack"]), ["T1486"]);
    assert!(campaign["indicators"].as_array().unwrap().is_empty());

    // The lifecycle: new, then updates, escalated once to critical.
    let statuses: Vec<&str> = warnings
        .iter()
        .filter(|w| w["correlation_key"] == "campaign:nightglass")
        .map(|w| w["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["new", "update", "escalated"]);
}

#[test]
fn same_input_gives_byte_identical_output_and_run_agrees_with_demo() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    run_ok(
        tocsin()
            .args(["demo", "--seed", "7", "--events", "20000", "--output"])
            .arg(&a),
    );
    run_ok(
        tocsin()
            .args(["demo", "--seed", "7", "--events", "20000", "--output"])
            .arg(&b),
    );
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());

    // The same workload through `gen | run` (rules from the repository) gives the same bytes.
    let events = dir.path().join("events.jsonl");
    generate_events(&events, 20000, 7);
    let c = dir.path().join("c.jsonl");
    run_ok(
        tocsin()
            .args(["run", "--exercise", "--quiet", "--rules"])
            .arg(repo().join("rules"))
            .arg("--input")
            .arg(&events)
            .arg("--output")
            .arg(&c),
    );
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());
}

#[test]
fn background_noise_alone_raises_detections_but_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("noise.jsonl");
    run_ok(
        tocsin()
            .args([
                "gen",
                "--events",
                "50000",
                "--seed",
                "3",
                "--no-campaign",
                "--output",
            ])
            .arg(&events),
    );
    let warnings = dir.path().join("w.jsonl");
    let detections = dir.path().join("d.jsonl");
    run_ok(
        tocsin()
            .args(["run", "--quiet", "--rules"])
            .arg(repo().join("rules"))
            .arg("--input")
            .arg(&events)
            .arg("--output")
            .arg(&warnings)
            .arg("--detections")
            .arg(&detections),
    );
    assert!(json_lines(&warnings).is_empty());
    let dets = json_lines(&detections);
    assert!(
        dets.len() > 50,
        "generic rules flag admin noise: {}",
        dets.len()
    );
    assert!(
        dets.iter().all(|d| d["kind"] == "sigma"),
        "no indicator ever hits background traffic"
    );
}
