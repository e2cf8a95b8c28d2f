//! The hot path allocates nothing per event: once the scratch space is warm, decoding and
//! matching an event that raises no detection performs zero heap allocations. Proven with a
//! counting global allocator (this test binary only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use tocsin_core::{Event, EventIndex};
use tocsin_match::{CompiledRules, MatchConfig};
use tocsin_rules::{parse_plain_list, parse_profile, parse_sigma_source};

struct Counting;

thread_local! {
    // Only this thread's allocations count: the test harness runs other threads.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting(on: bool) {
    COUNTING.with(|c| c.set(on));
}

fn is_counting() -> bool {
    COUNTING.try_with(|c| c.get()).unwrap_or(false)
}
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if is_counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn repo_file(rel: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    std::fs::read_to_string(root.join(rel)).unwrap()
}

#[test]
fn matching_non_detecting_events_allocates_nothing() {
    let mut rules = Vec::new();
    for name in [
        "office_spawns_powershell.yml",
        "encoded_powershell.yml",
        "shadow_copy_deletion.yml",
        "nightglass_ransom_note.yml",
        "whoami_discovery.yml",
        "executable_in_temp.yml",
    ] {
        let src = parse_sigma_source(name, &repo_file(&format!("sigma/{name}")));
        assert_eq!(src.diagnostics.error_count(), 0);
        rules.extend(src.rules);
    }
    // Keywords, plain and wildcard, which read the values inside nested objects.
    let keywords = parse_sigma_source(
        "keywords.yml",
        "title: Keywords\nid: 4f1c2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f\nlogsource:\n  product: windows\ndetection:\n  keywords:\n    - 'mimikatz'\n    - 'rm *sh_history'\n  condition: keywords\nlevel: high\n",
    );
    assert_eq!(keywords.diagnostics.error_count(), 0);
    rules.extend(keywords.rules);
    let (iocs, _) = parse_plain_list("iocs", &repo_file("iocs/cert-eu-sample.txt"), "sample");
    let profile = parse_profile("sysmon.yaml", &repo_file("profiles/sysmon.yaml")).unwrap();
    let (compiled, _) =
        CompiledRules::compile(&rules, &[], &iocs, &profile, &MatchConfig::default());

    // Events that exercise every kind of test (literals, globs, regexes, indicator
    // lookups with escaped strings) without matching.
    let events = [
        r#"{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","Image":"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe","CommandLine":"powershell.exe -NoProfile -Command Get-ChildItem","ParentImage":"C:\\Windows\\explorer.exe","Hashes":"SHA256=00AA,IMPHASH=11"}"#,
        r#"{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","Image":"C:\\Users\\a\\AppData\\Local\\Temp\\setup.exe","ParentImage":"C:\\Windows\\explorer.exe","CommandLine":"vssadmin list shadows"}"#,
        r#"{"EventID":22,"Channel":"Microsoft-Windows-Sysmon/Operational","QueryName":"www.example.org","Image":"C:\\chrome.exe"}"#,
        r#"{"EventID":3,"Channel":"Microsoft-Windows-Sysmon/Operational","DestinationIp":"198.51.100.1","DestinationHostname":"a.b.c.example.net"}"#,
        r#"{"EventID":11,"Channel":"Microsoft-Windows-Sysmon/Operational","TargetFilename":"C:\\Users\\Public\\Documents\\README.txt"}"#,
        // A keyword in a nested key, not a value: the object is walked value by value.
        r#"{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","process":{"mimikatz":{"args":["rm x","sh_history"],"n":null}}}"#,
    ];
    let mut index = EventIndex::new();
    let mut scratch = compiled.new_scratch();
    // Warm up: buffers grow to their working size.
    for _ in 0..3 {
        for e in &events {
            let ev = Event::parse(e.as_bytes(), &mut index).unwrap();
            compiled.match_event(&ev, &mut scratch);
        }
    }
    ALLOCATIONS.store(0, Ordering::SeqCst);
    counting(true);
    let mut matched = 0;
    let mut per_event = [0u64; 6];
    for _ in 0..100 {
        for (i, e) in events.iter().enumerate() {
            let before = ALLOCATIONS.load(Ordering::SeqCst);
            let ev = Event::parse(e.as_bytes(), &mut index).unwrap();
            compiled.match_event(&ev, &mut scratch);
            matched += scratch.matched().len() + scratch.ioc_hits().len();
            per_event[i] += ALLOCATIONS.load(Ordering::SeqCst) - before;
        }
    }
    counting(false);
    assert_eq!(matched, 0, "these events must not match");
    assert_eq!(per_event, [0; 6], "allocations on the hot path, per event");
}
