//! The same rule matches the same activity whether it arrives Sysmon-shaped (flat names)
//! or ECS-shaped (nested, dotted names) — routing and fields come from the profile.

mod common;

use common::*;

/// Detections (JSON lines) as `rule-id@input-line`, in output order.
fn rules_at_positions(detections: &str) -> Vec<String> {
    detections
        .lines()
        .map(|l| {
            let d: serde_json::Value = serde_json::from_str(l).unwrap();
            format!(
                "{}@{}",
                d["rule"]["id"].as_str().unwrap(),
                d["source"]["position"]
            )
        })
        .collect()
}

#[test]
fn ecs_and_sysmon_shapes_give_the_same_detections() {
    let dir = tempfile::tempdir().unwrap();
    let sysmon = dir.path().join("sysmon.jsonl");
    let ecs = dir.path().join("ecs.jsonl");
    std::fs::write(
        &sysmon,
        r#"{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","ParentImage":"C:\\Office\\WINWORD.EXE","Image":"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe","CommandLine":"powershell -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoA"}
{"EventID":22,"Channel":"Microsoft-Windows-Sysmon/Operational","QueryName":"cdn.invoice-viewer.example"}
"#,
    )
    .unwrap();
    std::fs::write(
        &ecs,
        r#"{"@timestamp":"2026-03-02T08:00:00Z","winlog":{"channel":"Microsoft-Windows-Sysmon/Operational","event_id":1},"process":{"executable":"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe","command_line":"powershell -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoA","parent":{"executable":"C:\\Office\\WINWORD.EXE"}}}
{"@timestamp":"2026-03-02T08:00:01Z","winlog":{"channel":"Microsoft-Windows-Sysmon/Operational","event_id":22},"dns":{"question":{"name":"cdn.invoice-viewer.example"}}}
"#,
    )
    .unwrap();
    let rules_of = |input: &std::path::Path, profile: &str| -> Vec<String> {
        let out = run_ok(
            tocsin()
                .args(["match", "--profile", profile, "--rules"])
                .arg(repo().join("rules"))
                .arg("--input")
                .arg(input),
        );
        rules_at_positions(&String::from_utf8(out.stdout).unwrap())
    };
    let from_sysmon = rules_of(&sysmon, "sysmon");
    let from_ecs = rules_of(&ecs, "ecs");
    assert_eq!(from_sysmon.len(), 3, "{from_sysmon:?}");
    assert_eq!(from_sysmon, from_ecs);
    // And a profile does not recognise the other shape's events.
    assert!(rules_of(&ecs, "sysmon")
        .iter()
        .all(|r| r.starts_with("ioc:")));
}

/// `tocsin gen --shape ecs` writes the same activity as the default Sysmon shape: the same
/// rules and indicators hit the same events, and the same early warnings come out
/// byte for byte, when each shape is read with its profile.
#[test]
fn generated_ecs_workload_gives_the_sysmon_detections_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let outputs_of = |shape: &str| -> (Vec<String>, Vec<u8>) {
        let events = dir.path().join(format!("{shape}.jsonl"));
        let detections = dir.path().join(format!("{shape}-detections.jsonl"));
        let warnings = dir.path().join(format!("{shape}-warnings.jsonl"));
        run_ok(
            tocsin()
                .args(["gen", "--events", "20000", "--seed", "7", "--shape", shape])
                .arg("--output")
                .arg(&events),
        );
        run_ok(
            tocsin()
                .args(["run", "--profile", shape, "--rules"])
                .arg(repo().join("rules"))
                .arg("--input")
                .arg(&events)
                .arg("--detections")
                .arg(&detections)
                .arg("--output")
                .arg(&warnings),
        );
        let detections = rules_at_positions(&std::fs::read_to_string(&detections).unwrap());
        (detections, std::fs::read(&warnings).unwrap())
    };
    let (sysmon, sysmon_warnings) = outputs_of("sysmon");
    let (ecs, ecs_warnings) = outputs_of("ecs");
    // The campaign alone raises rule and indicator detections at six organisations.
    assert!(sysmon.len() > 20, "{sysmon:?}");
    assert!(sysmon.iter().any(|d| d.starts_with("ioc:")), "{sysmon:?}");
    assert_eq!(sysmon, ecs);
    assert!(!sysmon_warnings.is_empty());
    assert!(
        sysmon_warnings == ecs_warnings,
        "the warnings differ between the shapes"
    );
}
