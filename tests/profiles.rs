//! The same rule matches the same activity whether it arrives Sysmon-shaped (flat names)
//! or ECS-shaped (nested, dotted names) — routing and fields come from the profile.

mod common;

use common::*;

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
        String::from_utf8(out.stdout)
            .unwrap()
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
