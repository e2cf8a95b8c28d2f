//! The JSON Schemas in schemas/ accept their examples and the binary's real output, and
//! reject documents that break the contract.

mod common;

use common::*;

fn validator(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join("schemas").join(name)).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(v: &jsonschema::Validator, doc: &serde_json::Value, what: &str) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?}");
}

#[test]
fn examples_are_valid() {
    let det = validator("detection.schema.json");
    let ew = validator("early-warning.schema.json");
    for (v, file) in [
        (&det, "detection-sigma.json"),
        (&det, "detection-indicator.json"),
        (&ew, "early-warning.json"),
    ] {
        let text = std::fs::read_to_string(repo().join("schemas/examples").join(file)).unwrap();
        assert_valid(v, &serde_json::from_str(&text).unwrap(), file);
    }
}

#[test]
fn real_output_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("e.jsonl");
    generate_events(&events, 20000, 5);
    let w = dir.path().join("w.jsonl");
    let d = dir.path().join("d.jsonl");
    run_ok(
        tocsin()
            .args(["run", "--quiet", "--input"])
            .arg(&events)
            .arg("--output")
            .arg(&w)
            .arg("--detections")
            .arg(&d),
    );
    let det = validator("detection.schema.json");
    let ew = validator("early-warning.schema.json");
    let detections = json_lines(&d);
    let warnings = json_lines(&w);
    assert!(detections.len() > 20 && warnings.len() >= 4);
    for x in &detections {
        assert_valid(&det, x, "detection");
    }
    for x in &warnings {
        assert_valid(&ew, x, "warning");
    }
}

#[test]
fn contract_violations_are_rejected() {
    let ew = validator("early-warning.schema.json");
    let text = std::fs::read_to_string(repo().join("schemas/examples/early-warning.json")).unwrap();
    let good: serde_json::Value = serde_json::from_str(&text).unwrap();
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "unknown sector",
            Box::new(|w| w["affected"]["sectors"][0] = "bakery".into()),
        ),
        (
            "lower-case member state",
            Box::new(|w| w["affected"]["member_states"][0] = "de".into()),
        ),
        ("TLP 1.0 label", Box::new(|w| w["tlp"] = "WHITE".into())),
        (
            "missing cross_border",
            Box::new(|w| {
                w.as_object_mut().unwrap().remove("cross_border");
            }),
        ),
        ("extra field", Box::new(|w| w["surprise"] = true.into())),
        ("version 0", Box::new(|w| w["version"] = 0.into())),
        (
            "issuer without a name",
            Box::new(|w| {
                w["issuer"].as_object_mut().unwrap().remove("name");
            }),
        ),
        (
            "issuer's UUID in capitals",
            Box::new(|w| w["issuer"]["uuid"] = "4F3C1B2A-9D8E-4C7B-A6F5-E4D3C2B1A090".into()),
        ),
    ];
    for (what, mutate) in mutations {
        let mut doc = good.clone();
        mutate(&mut doc);
        assert!(!ew.is_valid(&doc), "{what} was accepted");
    }
}

/// `tocsin rules calibrate` writes what its schema describes; the schema refuses a table
/// that breaks it.
#[test]
fn saved_literal_frequencies_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("e.jsonl");
    generate_events(&events, 2000, 9);
    let table = dir.path().join("f.json");
    run_ok(
        tocsin()
            .args(["rules", "calibrate", "--events", "800", "--input"])
            .arg(&events)
            .arg("--output")
            .arg(&table),
    );
    let schema = validator("literal-frequencies.schema.json");
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&table).unwrap()).unwrap();
    assert_valid(&schema, &good, "frequencies");
    assert_eq!(good["events"], 800);
    assert!(good["pairs"].as_object().unwrap().len() > 100);
    type Mutation = Box<dyn Fn(&mut serde_json::Value)>;
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "another version",
            Box::new(|t| t["format"] = "tocsin.literal-frequencies/v2".into()),
        ),
        (
            "upper-case pair",
            Box::new(|t| t["pairs"]["4D69"] = 1.into()),
        ),
        (
            "text and hex",
            Box::new(|t| t["literals"][0]["hex"] = "6d69".into()),
        ),
        (
            "negative count",
            Box::new(|t| t["literals"][0]["events"] = (-1).into()),
        ),
        (
            "extra field",
            Box::new(|t| t["literals"][0]["share"] = 0.5.into()),
        ),
    ];
    for (what, mutate) in mutations {
        let mut doc = good.clone();
        mutate(&mut doc);
        assert!(!schema.is_valid(&doc), "{what} was accepted");
    }
}
