//! What the benches share: where the repository and the `tocsin` binary are, and the
//! generated workload.
//!
//! The benches live in their own package so that `cargo bench -p tocsin-benches` runs the
//! whole suite and `cargo bench -p tocsin-benches --bench NAME` one part of it. Cargo only
//! hands a package its own binaries (`CARGO_BIN_EXE_*`), so the benches that run `tocsin`
//! look for it next to themselves in the target directory, or at `TOCSIN_BIN`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tocsin_core::{Event, EventIndex};
use tocsin_match::{CompiledRules, MatchScratch, ScratchStats};
use tocsin_rules::{
    parse_plain_list, parse_profile, parse_sigma_source, Indicator, Profile, SigmaRule,
};

/// A global allocator that keeps count of the bytes live on the heap, for exact memory
/// figures: the resident set also holds what the allocator keeps after frees, so a
/// structure's resident figure depended on what ran before it (the compiled rule set
/// measured 1.9 MiB at 1,000 rules and 7–13 MiB in other runs). A bench installs it with
/// `#[global_allocator] static HEAP: CountingAllocator = CountingAllocator;` and reads
/// [`live_heap_bytes`]. The count is per thread, a plain add rather than an atomic one
/// (the compile bench makes two million allocations): what a thread allocates and frees
/// itself, which is what a bench measures around `CompiledRules::compile`.
pub struct CountingAllocator;

thread_local! {
    static LIVE_HEAP: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
    /// The most `LIVE_HEAP` has been since [`reset_peak_heap`].
    static PEAK_HEAP: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

fn count_heap(delta: isize) {
    // `try_with`: a thread's last frees may come after its counter is gone.
    let _ = LIVE_HEAP.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        if delta > 0 {
            let _ = PEAK_HEAP.try_with(|peak| peak.set(peak.get().max(now)));
        }
    });
}

// SAFETY: every call is passed to the system allocator unchanged; only the sizes are
// counted on the way.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { std::alloc::System.alloc(layout) };
        if !ptr.is_null() {
            count_heap(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let ptr = unsafe { std::alloc::System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count_heap(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        count_heap(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let moved = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            count_heap(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

/// Bytes this thread has allocated and not freed, when the bench installed
/// [`CountingAllocator`] (0 otherwise).
pub fn live_heap_bytes() -> u64 {
    LIVE_HEAP.with(|live| live.get()).max(0) as u64
}

/// Start counting this thread's peak heap again from what it holds now.
pub fn reset_peak_heap() {
    let live = LIVE_HEAP.with(|live| live.get());
    PEAK_HEAP.with(|peak| peak.set(live));
}

/// The most bytes this thread held at once since [`reset_peak_heap`], when the bench
/// installed [`CountingAllocator`] (0 otherwise): what a step needed at its peak, its
/// temporaries included.
pub fn peak_heap_bytes() -> u64 {
    PEAK_HEAP.with(|peak| peak.get()).max(0) as u64
}

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ sits in the repository")
        .to_path_buf()
}

/// The shared test data (`TOCSIN_TEST_DATA`), if set. Cargo runs benches from `benches/`,
/// so a relative path is taken relative to the repository root, where the README's
/// commands are typed (`TOCSIN_TEST_DATA=../shared/data cargo bench …`).
pub fn test_data() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("TOCSIN_TEST_DATA")?);
    Some(if dir.is_relative() {
        repo().join(dir)
    } else {
        dir
    })
}

/// The `tocsin` binary: `TOCSIN_BIN`, else the release build in this bench's target
/// directory (`target/release/deps/BENCH` → `target/release/tocsin`).
///
/// # Panics
/// When there is none, with the command that builds it.
pub fn tocsin_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TOCSIN_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("the bench's own path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("tocsin"))
        .expect("the bench runs from target/PROFILE/deps");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release` before `cargo bench -p tocsin-benches`, \
         or set TOCSIN_BIN",
        bin.display()
    );
    bin
}

/// A `tocsin` command.
pub fn tocsin() -> Command {
    Command::new(tocsin_bin())
}

/// Run a `tocsin` command (stdin closed) and insist that it succeeds; its output.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("run tocsin");
    assert!(
        out.status.success(),
        "tocsin failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `tocsin gen --events N --seed SEED` (add `--output FILE` to write a file).
pub fn gen_command(events: u64, seed: u64) -> Command {
    let mut cmd = tocsin();
    cmd.args([
        "gen",
        "--events",
        &events.to_string(),
        "--seed",
        &seed.to_string(),
    ]);
    cmd
}

/// `tocsin gen --events N --seed SEED`, one event per element.
pub fn generated_events(events: u64, seed: u64) -> Vec<Vec<u8>> {
    run_ok(&mut gen_command(events, seed))
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Resident memory of this process in bytes (Linux `/proc/self/statm`; 0 elsewhere).
pub fn resident_bytes() -> u64 {
    let pages: u64 = std::fs::read_to_string("/proc/self/statm")
        .unwrap_or_default()
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The repository's own rules (rules/sigma), sample indicators and the `sysmon` profile:
/// what `tocsin run --rules rules` loads.
pub fn repo_rules() -> (Vec<SigmaRule>, Vec<Indicator>, Profile) {
    let root = repo().join("rules");
    let mut rules = Vec::new();
    for entry in std::fs::read_dir(root.join("sigma")).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".tests.yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let src = parse_sigma_source(&path.display().to_string(), &text);
        assert_eq!(src.diagnostics.error_count(), 0);
        rules.extend(src.rules);
    }
    let iocs_text = std::fs::read_to_string(root.join("iocs/cert-eu-sample.txt")).unwrap();
    let (iocs, _) = parse_plain_list("iocs", &iocs_text, "sample");
    (rules, iocs, sysmon_profile())
}

/// Match every event, with the prefilter or, when `unfiltered`, by evaluating every rule of
/// every active route (the reference), handing each event's result to `each`; returns the
/// work counters of a fresh scratch.
pub fn match_all(
    compiled: &CompiledRules,
    events: &[Vec<u8>],
    unfiltered: bool,
    each: impl FnMut(&MatchScratch),
) -> ScratchStats {
    let mut scratch = compiled.new_scratch();
    match_with(compiled, &mut scratch, events, unfiltered, each);
    scratch.stats
}

/// [`match_all`] with the caller's scratch space, which keeps its warm state (regex
/// caches, routing cache) from one call to the next, as a worker's does.
pub fn match_with(
    compiled: &CompiledRules,
    scratch: &mut MatchScratch,
    events: &[Vec<u8>],
    unfiltered: bool,
    mut each: impl FnMut(&MatchScratch),
) {
    let mut index = EventIndex::new();
    for e in events {
        let ev = Event::parse(e, &mut index).unwrap();
        if unfiltered {
            compiled.match_event_unfiltered(&ev, scratch);
        } else {
            compiled.match_event(&ev, scratch);
        }
        each(scratch);
    }
}

/// Answers over `events`: rule matches plus indicator hits (see [`match_all`]).
pub fn count_matches(compiled: &CompiledRules, events: &[Vec<u8>], unfiltered: bool) -> u64 {
    count_matches_with(compiled, &mut compiled.new_scratch(), events, unfiltered)
}

/// [`count_matches`] with the caller's scratch space (see [`match_with`]).
pub fn count_matches_with(
    compiled: &CompiledRules,
    scratch: &mut MatchScratch,
    events: &[Vec<u8>],
    unfiltered: bool,
) -> u64 {
    let mut n = 0u64;
    match_with(compiled, scratch, events, unfiltered, |s| {
        n += s.matched().len() as u64 + s.ioc_hits().len() as u64;
    });
    n
}

/// Detections `tocsin run` must report over `events`, found by exhaustive evaluation: one per
/// matched rule, and one per event in which indicators were found (the run makes one
/// indicator detection per feed, listing all of them; the repository's sample list is one
/// feed with no validity bounds).
pub fn count_detections(compiled: &CompiledRules, events: &[Vec<u8>]) -> u64 {
    let mut n = 0u64;
    match_all(compiled, events, true, |s| {
        n += s.matched().len() as u64 + u64::from(!s.ioc_hits().is_empty());
    });
    n
}

/// Append a figure that criterion does not measure (resident memory at a scale, say) to
/// `target/criterion/tocsin-figures.jsonl`, next to criterion's own estimates, for
/// `benches/scaling.py` to chart: `{"series": …, "x": …, "value": …}`.
pub fn record_figure(series: &str, x: u64, value: f64) {
    use std::io::Write as _;
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("criterion")));
    let Some(dir) = dir else { return };
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    let line = serde_json::json!({ "series": series, "x": x, "value": value });
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("tocsin-figures.jsonl"))
    {
        let _ = writeln!(f, "{line}");
    }
}

/// The Sigma rule files under `dir` (`*.yml`, not the `*.tests.yml` beside them), recursively.
fn walk_rules(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk_rules(&p, out);
        } else if p.extension().is_some_and(|x| x == "yml")
            && !p.to_string_lossy().ends_with(".tests.yml")
        {
            out.push(p);
        }
    }
}

fn collect_gz(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect_gz(&p, out);
        } else if p.to_string_lossy().ends_with(".jsonl.gz") {
            out.push(p);
        }
    }
}

/// The repository's Sysmon profile (`rules/profiles/sysmon.yaml`).
pub fn sysmon_profile() -> Profile {
    let path = repo().join("rules/profiles/sysmon.yaml");
    parse_profile("sysmon.yaml", &std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The real workload of the SigmaHQ benches, `None` without `TOCSIN_TEST_DATA`: the OTRF
/// events (one line each) and the SigmaHQ rules for `product: windows` (rules, emerging
/// threats, threat hunting), in a deterministic order that does not cluster by folder (so
/// "the first 100 rules" is a fair sample of the corpus).
pub fn sigmahq_windows() -> Option<(Vec<Vec<u8>>, Vec<SigmaRule>)> {
    use std::io::Read;
    let data = test_data()?;
    let mut gz = Vec::new();
    collect_gz(&data.join("events/otrf"), &mut gz);
    gz.sort();
    let mut events = Vec::new();
    for f in gz {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(f).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        events.extend(
            text.lines()
                .filter(|l| !l.is_empty())
                .map(|l| l.as_bytes().to_vec()),
        );
    }
    let mut files = Vec::new();
    for d in [
        "rules/windows",
        "rules-emerging-threats",
        "rules-threat-hunting/windows",
    ] {
        walk_rules(&data.join("sigma").join(d), &mut files);
    }
    files.sort();
    let mut rules = Vec::new();
    for f in files {
        let src = parse_sigma_source(
            &f.display().to_string(),
            &std::fs::read_to_string(&f).unwrap(),
        );
        rules.extend(
            src.rules
                .into_iter()
                .filter(|r| r.logsource.product.as_deref() == Some("windows")),
        );
    }
    rules.sort_by_key(|r| {
        tocsin_core::id::IdHasher::new("bench")
            .part(r.id.as_bytes())
            .digest()
    });
    Some((events, rules))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static HEAP: CountingAllocator = CountingAllocator;

    #[test]
    fn the_counting_allocator_follows_allocations_frees_and_growth() {
        const MIB: u64 = 1 << 20;
        let before = live_heap_bytes();
        let mut block: Vec<u8> = Vec::with_capacity(MIB as usize);
        block.push(1);
        assert!(live_heap_bytes() >= before + MIB);
        block.reserve_exact(3 * MIB as usize);
        assert!(live_heap_bytes() >= before + 3 * MIB);
        let zeroed = vec![0u64; (MIB / 8) as usize];
        assert!(live_heap_bytes() >= before + 4 * MIB);
        drop(block);
        drop(zeroed);
        assert!(live_heap_bytes() < before + MIB / 4);
    }
}
