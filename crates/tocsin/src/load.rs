//! Loading rule sources from disk (the I/O the library crates leave to the binary).
//!
//! Layout of a rules directory (see rules/README.md):
//! - `profiles/*.yaml` — field-mapping profiles;
//! - `escalation.yaml` — the escalation policy;
//! - `iocs/**` — indicator feeds: plain lists (`*.txt`, `*.ioc`, `*.list`), CSV, MISP event
//!   exports and STIX 2.1 bundles (`*.json`, format detected), and MISP feed directories (a
//!   directory with a `manifest.json`);
//! - `placeholders.yaml` — values of `%placeholders%` for `expand`;
//! - `*.tests.yml` — rule test cases (for `tocsin rules test`, not loaded as rules);
//! - every other `*.yml` / `*.yaml` — Sigma rules and filters.
//!
//! Feeds may also be given with `--iocs PATH...`. On a reload, a file that fails as a whole
//! (invalid YAML or JSON, unreadable) keeps the last version that loaded ([`LastGood`]), so a
//! broken update never empties a rule set or a feed.
//!
//! The rules shipped in the repository are also embedded in the binary, so that `tocsin
//! demo` works from any directory.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use tocsin_match::{CompiledRules, LiteralFrequencies, MatchConfig};
use tocsin_rules::{
    parse_placeholders, parse_policy, parse_profile, parse_sigma_source, CorrelationRule,
    Diagnostic, Diagnostics, EscalationPolicy, Indicator, Location, Profile, SigmaFilter,
    SigmaRule,
};

use crate::feeds::FeedFormat;

/// Everything read from rule sources.
#[derive(Default)]
pub struct RuleSources {
    pub sigma: Vec<SigmaRule>,
    pub filters: Vec<SigmaFilter>,
    pub correlations: Vec<CorrelationRule>,
    pub placeholders: BTreeMap<String, Vec<String>>,
    pub indicators: Vec<Indicator>,
    pub profiles: Vec<Profile>,
    pub policy: Option<EscalationPolicy>,
    pub recipients: Vec<tocsin_correlate::audience::Recipient>,
    pub diagnostics: Diagnostics,
    pub files: usize,
    /// Forced format for feeds (`--iocs-format`); detected when `None`.
    pub feed_format: Option<FeedFormat>,
}

/// One source file read and parsed on its own ([`ParsedFile::parse`]), not yet taken in.
struct ParsedFile {
    rel: PathBuf,
    display: String,
    /// Its text, what it holds and how that went; or why it could not be read.
    read: std::result::Result<(String, RuleSources, FileOutcome), Diagnostic>,
}

impl ParsedFile {
    fn parse(path: &Path, rel: &Path, feed_format: Option<FeedFormat>) -> Self {
        let display = path.display().to_string();
        let read = match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => {
                    // Parsed into a set of its own, so that a file that fails as a whole
                    // can be replaced by its previous version.
                    let mut attempt = RuleSources {
                        feed_format,
                        ..RuleSources::default()
                    };
                    let outcome = attempt.add(rel, &display, &text);
                    Ok((text, attempt, outcome))
                }
                Err(e) => Err(Diagnostic::error(
                    Location::line(&display, 1),
                    "encoding",
                    format!(
                        "file is not UTF-8 (invalid byte at offset {})",
                        e.utf8_error().valid_up_to()
                    ),
                )),
            },
            Err(e) => Err(Diagnostic::error(
                Location::line(&display, 0),
                "io",
                format!("cannot read: {e}"),
            )),
        };
        ParsedFile {
            rel: rel.to_path_buf(),
            display,
            read,
        }
    }
}

/// Read and parse `files` (path, path relative to its root) on as many threads as there
/// are cores, and return them in the given order. Parsing the YAML of the SigmaHQ
/// Windows rules is about half of the start-up (and of each reload); files are independent
/// until they are taken in, which is done in order so that the result (diagnostics
/// included) is the same as one file after another.
fn parse_files(files: &[(PathBuf, PathBuf)], feed_format: Option<FeedFormat>) -> Vec<ParsedFile> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(files.len() / PARSE_FILES_PER_THREAD)
        .max(1);
    parse_files_on(files, feed_format, threads)
}

/// [`parse_files`] on `threads` threads.
fn parse_files_on(
    files: &[(PathBuf, PathBuf)],
    feed_format: Option<FeedFormat>,
    threads: usize,
) -> Vec<ParsedFile> {
    if threads <= 1 {
        return files
            .iter()
            .map(|(path, rel)| ParsedFile::parse(path, rel, feed_format))
            .collect();
    }
    // Thread `t` takes files t, t + threads, …: neighbouring files (a folder of similar
    // rules) are spread over the threads.
    let mut per_thread: Vec<Vec<ParsedFile>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    files
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .map(|(path, rel)| ParsedFile::parse(path, rel, feed_format))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut iters: Vec<_> = per_thread.iter_mut().map(|v| v.drain(..)).collect();
    let mut out = Vec::with_capacity(files.len());
    for i in 0..files.len() {
        out.extend(iters[i % threads].next());
    }
    out
}

/// Fewer files than this per thread are parsed on one thread: starting threads would
/// cost more than it saves.
const PARSE_FILES_PER_THREAD: usize = 16;

/// The text of the last version of each source that loaded, by path.
pub type LastGood = HashMap<String, String>;

/// What one file contributed.
#[derive(Debug, Clone, Copy, Default)]
struct FileOutcome {
    items: usize,
    errors: usize,
}

macro_rules! embedded {
    ($($rel:literal),* $(,)?) => {
        &[$(($rel, include_str!(concat!("../../../rules/", $rel)))),*]
    };
}

/// The rules directory shipped with Tocsin, embedded at build time.
const EMBEDDED: &[(&str, &str)] = embedded!(
    "profiles/ecs.yaml",
    "profiles/sysmon.yaml",
    "escalation.yaml",
    "recipients.yaml",
    "iocs/cert-eu-sample.txt",
    "sigma/office_spawns_powershell.yml",
    "sigma/encoded_powershell.yml",
    "sigma/shadow_copy_deletion.yml",
    "sigma/nightglass_ransom_note.yml",
    "sigma/whoami_discovery.yml",
    "sigma/executable_in_temp.yml",
);

enum Kind {
    Recipients,
    Placeholders,
    Profile,
    Policy,
    Iocs,
    Sigma,
    Other,
}

fn classify(rel: &Path) -> Kind {
    let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let ext = rel.extension().and_then(|e| e.to_str()).unwrap_or_default();
    let first = rel
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default();
    let yaml = matches!(ext, "yml" | "yaml");
    if crate::author::is_test_file(rel) {
        Kind::Other
    } else if name == "recipients.yaml" || name == "recipients.yml" {
        Kind::Recipients
    } else if name == "placeholders.yaml" || name == "placeholders.yml" {
        Kind::Placeholders
    } else if first == "profiles" && yaml {
        Kind::Profile
    } else if name == "escalation.yaml" || name == "escalation.yml" {
        Kind::Policy
    } else if first == "iocs" || matches!(ext, "ioc" | "list") {
        if matches!(ext, "txt" | "ioc" | "list" | "csv" | "json") {
            Kind::Iocs
        } else {
            Kind::Other
        }
    } else if yaml {
        Kind::Sigma
    } else {
        Kind::Other
    }
}

impl RuleSources {
    fn add(&mut self, rel: &Path, display: &str, text: &str) -> FileOutcome {
        self.files += 1;
        let errors_before = self.diagnostics.error_count();
        let items = match classify(rel) {
            Kind::Profile => match parse_profile(display, text) {
                Ok(p) => {
                    self.profiles.push(p);
                    1
                }
                Err(d) => {
                    self.diagnostics.push(d);
                    0
                }
            },
            Kind::Policy => match parse_policy(display, text) {
                Ok(p) => {
                    self.policy = Some(p);
                    1
                }
                Err(d) => {
                    self.diagnostics.push(d);
                    0
                }
            },
            Kind::Iocs => {
                let feed = rel.file_stem().and_then(|s| s.to_str()).unwrap_or("feed");
                let (iocs, diags) =
                    crate::feeds::parse_feed_text(display, text, self.feed_format, feed);
                let n = iocs.len();
                self.indicators.extend(iocs);
                self.diagnostics.extend(diags);
                n
            }
            Kind::Sigma => {
                let src = parse_sigma_source(display, text);
                let n = src.rules.len() + src.filters.len() + src.correlations.len();
                self.sigma.extend(src.rules);
                self.filters.extend(src.filters);
                self.correlations.extend(src.correlations);
                self.diagnostics.extend(src.diagnostics.0);
                n
            }
            Kind::Recipients => match tocsin_correlate::audience::parse_recipients(display, text) {
                Ok(r) => {
                    let n = r.len();
                    self.recipients = r;
                    n
                }
                Err(d) => {
                    self.diagnostics.push(d);
                    0
                }
            },
            Kind::Placeholders => match parse_placeholders(display, text) {
                Ok(p) => {
                    let n = p.len();
                    self.placeholders.extend(p);
                    n
                }
                Err(d) => {
                    self.diagnostics.push(d);
                    0
                }
            },
            Kind::Other => {
                self.files -= 1;
                0
            }
        };
        FileOutcome {
            items,
            errors: self.diagnostics.error_count() - errors_before,
        }
    }

    /// The rules embedded in the binary.
    pub fn embedded() -> Self {
        let mut s = RuleSources::default();
        for (rel, text) in EMBEDDED {
            let _ = s.add(Path::new(rel), &format!("<embedded>/rules/{rel}"), text);
        }
        s
    }

    /// Load rule sources from files and directories (recursively, in sorted order).
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        Self::load_all(paths, &[], None, &mut LastGood::new())
    }

    /// Load rules from `rule_paths` and feeds from `feed_paths` (files, directories, MISP
    /// feed directories). A source that now fails as a whole falls back to its text in
    /// `last_good`; every source that loads is remembered there.
    pub fn load_all(
        rule_paths: &[PathBuf],
        feed_paths: &[PathBuf],
        feed_format: Option<FeedFormat>,
        last_good: &mut LastGood,
    ) -> Result<Self> {
        let mut s = RuleSources {
            feed_format,
            ..RuleSources::default()
        };
        for root in rule_paths {
            let meta = std::fs::metadata(root)
                .with_context(|| format!("cannot read rules path {}", root.display()))?;
            if meta.is_file() {
                let rel = root.file_name().map(PathBuf::from).unwrap_or_default();
                s.add_file(root, &rel, last_good);
                continue;
            }
            let mut files = Vec::new();
            walk(root, &mut files)?;
            files.sort();
            // Files are parsed side by side, then taken in with the feed folders in
            // this order.
            let entries: Vec<(PathBuf, bool)> = files
                .into_iter()
                .map(|f| {
                    let dir = f.is_dir();
                    (f, dir)
                })
                .collect();
            let jobs: Vec<(PathBuf, PathBuf)> = entries
                .iter()
                .filter(|(_, dir)| !dir)
                .map(|(f, _)| (f.clone(), f.strip_prefix(root).unwrap_or(f).to_path_buf()))
                .collect();
            let mut parsed = parse_files(&jobs, feed_format).into_iter();
            for (f, dir) in entries {
                if dir {
                    s.add_misp_feed_dir(&f, last_good);
                } else if let Some(file) = parsed.next() {
                    s.absorb_parsed(file, last_good);
                }
            }
        }
        for root in feed_paths {
            let meta = std::fs::metadata(root)
                .with_context(|| format!("cannot read indicator feed {}", root.display()))?;
            let mut files = Vec::new();
            if meta.is_dir() && !root.join("manifest.json").is_file() {
                walk(root, &mut files)?;
                files.sort();
            } else {
                files.push(root.clone());
            }
            for f in files {
                if f.is_dir() {
                    s.add_misp_feed_dir(&f, last_good);
                } else {
                    let rel = Path::new("iocs").join(f.file_name().unwrap_or_default());
                    s.add_file(&f, &rel, last_good);
                }
            }
        }
        if s.files == 0 {
            bail!(
                "no rule files found in {}",
                rule_paths
                    .iter()
                    .chain(feed_paths)
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(s)
    }

    /// A MISP feed directory: `manifest.json` plus one JSON file per event.
    fn add_misp_feed_dir(&mut self, dir: &Path, last_good: &mut LastGood) {
        let display = dir.display().to_string();
        let mut files = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for p in entries.flatten().map(|e| e.path()) {
                    if p.extension().is_some_and(|x| x == "json") {
                        match std::fs::read_to_string(&p) {
                            Ok(text) => files.push((p.display().to_string(), text)),
                            Err(e) => self.diagnostics.push(Diagnostic::error(
                                Location::line(&p.display().to_string(), 0),
                                "io",
                                format!("cannot read: {e}"),
                            )),
                        }
                    }
                }
            }
            Err(e) => self.diagnostics.push(Diagnostic::error(
                Location::line(&display, 0),
                "io",
                format!("cannot list: {e}"),
            )),
        }
        files.sort();
        self.files += 1;
        let feed = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("misp-feed");
        let (iocs, diags) = crate::feeds::parse_misp_dir(&files, feed);
        let failed = iocs.is_empty() && diags.iter().any(Diagnostic::is_error);
        let key = format!("{display}/");
        self.diagnostics.extend(diags);
        if failed {
            if let Some(previous) = last_good.get(&key) {
                let previous_files: Vec<(String, String)> =
                    serde_json::from_str(previous).unwrap_or_default();
                let (old, _) = crate::feeds::parse_misp_dir(&previous_files, feed);
                self.diagnostics.push(Diagnostic::warning(
                    Location::line(&display, 0),
                    "kept-previous",
                    format!(
                        "feed failed to load; keeping its previous version ({} indicators)",
                        old.len()
                    ),
                ));
                self.indicators.extend(old);
            }
            return;
        }
        if let Ok(snapshot) = serde_json::to_string(&files) {
            last_good.insert(key, snapshot);
        }
        self.indicators.extend(iocs);
    }

    fn add_file(&mut self, path: &Path, rel: &Path, last_good: &mut LastGood) {
        let parsed = ParsedFile::parse(path, rel, self.feed_format);
        self.absorb_parsed(parsed, last_good);
    }

    /// Take in one file parsed on its own: its items, or, when it failed as a whole and
    /// an earlier version of it loaded, that version.
    fn absorb_parsed(&mut self, parsed: ParsedFile, last_good: &mut LastGood) {
        let ParsedFile { rel, display, read } = parsed;
        match read {
            Err(error) => {
                self.diagnostics.push(error);
                self.fall_back(&rel, &display, last_good);
            }
            Ok((text, attempt, outcome)) => {
                let failed_whole = outcome.items == 0 && outcome.errors > 0;
                if failed_whole && last_good.get(&display).is_some_and(|old| *old != text) {
                    self.diagnostics.extend(attempt.diagnostics.0);
                    return self.fall_back(&rel, &display, last_good);
                }
                if !failed_whole {
                    last_good.insert(display, text);
                }
                self.absorb(attempt);
            }
        }
    }

    /// Load the last good version of a source, if there is one, with a warning.
    fn fall_back(&mut self, rel: &Path, display: &str, last_good: &LastGood) {
        let Some(old) = last_good.get(display) else {
            return;
        };
        let mut previous = RuleSources {
            feed_format: self.feed_format,
            ..RuleSources::default()
        };
        let outcome = previous.add(rel, display, old);
        self.diagnostics.push(Diagnostic::warning(
            Location::line(display, 0),
            "kept-previous",
            format!(
                "this version failed to load; keeping the previous version ({} items)",
                outcome.items
            ),
        ));
        previous.diagnostics = Diagnostics::default();
        self.absorb(previous);
    }

    fn absorb(&mut self, other: RuleSources) {
        self.sigma.extend(other.sigma);
        self.filters.extend(other.filters);
        self.correlations.extend(other.correlations);
        self.placeholders.extend(other.placeholders);
        self.indicators.extend(other.indicators);
        self.profiles.extend(other.profiles);
        if other.policy.is_some() {
            self.policy = other.policy;
        }
        if !other.recipients.is_empty() {
            self.recipients = other.recipients;
        }
        self.diagnostics.extend(other.diagnostics.0);
        self.files += other.files;
    }

    /// Pick the profile: by name, else `sysmon`, else the first, else an empty profile
    /// (Sigma field names used as event field names, no logsource conditions).
    pub fn profile(&self, name: Option<&str>) -> Result<Profile> {
        if let Some(name) = name {
            return self
                .profiles
                .iter()
                .find(|p| p.name == name)
                .cloned()
                .with_context(|| {
                    format!(
                        "no profile named '{name}' (loaded: {})",
                        self.profiles
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
        }
        Ok(self
            .profiles
            .iter()
            .find(|p| p.name == "sysmon")
            .or(self.profiles.first())
            .cloned()
            .unwrap_or_else(|| Profile {
                name: "default".into(),
                ..Profile::default()
            }))
    }

    /// How often each literal of the rules occurs in `sample` (raw events), with the
    /// sources' placeholders (see `tocsin_match::calibrate`).
    pub fn observe_literals(
        &self,
        profile: &Profile,
        sample: &[Vec<u8>],
    ) -> tocsin_match::LiteralFrequencies {
        let mut config = MatchConfig::default();
        config.placeholders.extend(self.placeholders.clone());
        tocsin_match::LiteralFrequencies::observe(
            &self.sigma,
            &self.filters,
            profile,
            &config,
            sample.iter().map(Vec::as_slice),
        )
    }

    /// Compile; compile diagnostics are added to `self.diagnostics`.
    pub fn compile(&mut self, profile: &Profile, config: &MatchConfig) -> CompiledRules {
        let mut config = config.clone();
        config.placeholders.extend(self.placeholders.clone());
        let (mut compiled, diags) = CompiledRules::compile(
            &self.sigma,
            &self.filters,
            &self.indicators,
            profile,
            &config,
        );
        self.diagnostics.extend(diags);
        let diags = reject_correlation_cycles(&mut self.correlations);
        self.diagnostics.extend(diags);
        let diags = reject_unchainable_group_by(&mut self.correlations);
        self.diagnostics.extend(diags);
        let diags = compiled.attach_correlations(&self.correlations);
        self.diagnostics.extend(diags);
        compiled.resolve_rule_names(&mut self.correlations);
        compiled
    }
}

/// A correlation rule that refers to another correlation rule groups by its own
/// `group-by` (the specification: "the correlation rule only uses its own group-by"), so
/// each of its fields must be one the other's firings carry: one the other groups by,
/// directly or through an alias for it. A firing carries its group-by values, not those
/// of each event it counted (which may differ: many failed logins on one computer, by
/// several users), so a correlation that groups by anything else would key every firing
/// by an empty value: it is an error and is set aside. The others load.
fn reject_unchainable_group_by(correlations: &mut Vec<CorrelationRule>) -> Vec<Diagnostic> {
    let problems = correlations
        .iter()
        .map(|c| {
            c.rules.iter().find_map(|reference| {
                let inner = &correlations[referred(correlations, reference)?];
                let missing: Vec<&str> = c
                    .group_by
                    .iter()
                    .map(|g| c.field_for(g, &inner.id, inner.name.as_deref()))
                    .filter(|field| !inner.group_by.iter().any(|g| g == field))
                    .collect();
                (!missing.is_empty()).then(|| format!(
                    "correlation rule '{}' groups by {}, which the correlation rule '{reference}' it refers to does not group by (its firings carry only its own group-by: {}); group by those, or map them with aliases; it is not loaded",
                    c.name.as_deref().unwrap_or(&c.id),
                    missing.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(", "),
                    if inner.group_by.is_empty() {
                        "none".to_owned()
                    } else {
                        inner.group_by.join(", ")
                    },
                ))
            })
        })
        .collect();
    set_aside(correlations, "correlation-group-by", problems)
}

/// Where the correlation rule a `rules` entry names (by id or name) is among
/// `correlations`; `None` for a detection rule.
fn referred(correlations: &[CorrelationRule], reference: &str) -> Option<usize> {
    correlations
        .iter()
        .position(|t| t.id == reference || t.name.as_deref() == Some(reference))
}

/// Remove the correlation rules with a problem (`problems`, one per rule in order), each
/// reported as an error under `code`.
fn set_aside(
    correlations: &mut Vec<CorrelationRule>,
    code: &'static str,
    problems: Vec<Option<String>>,
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut problems = problems.into_iter();
    correlations.retain(|c| match problems.next().flatten() {
        None => true,
        Some(message) => {
            diags.push(
                Diagnostic::error(c.location.clone(), code, message)
                    .for_rule(Some(&c.id), Some(&c.title)),
            );
            false
        }
    });
    diags
}

/// Correlation rules that refer to themselves, directly or through other correlation rules,
/// are errors and are set aside: each firing would feed the next without end (on the Kafka
/// path, round and round through the detections topic). The others load.
fn reject_correlation_cycles(correlations: &mut Vec<CorrelationRule>) -> Vec<Diagnostic> {
    let edges: Vec<Vec<usize>> = correlations
        .iter()
        .map(|c| {
            c.rules
                .iter()
                .filter_map(|r| referred(correlations, r))
                .collect()
        })
        .collect();
    // A rule is on a cycle when it can reach itself.
    let reaches_itself = |start: usize| {
        let mut seen = vec![false; edges.len()];
        let mut stack = edges[start].clone();
        while let Some(n) = stack.pop() {
            if n == start {
                return true;
            }
            if !std::mem::replace(&mut seen[n], true) {
                stack.extend(&edges[n]);
            }
        }
        false
    };
    let problems = correlations
        .iter()
        .enumerate()
        .map(|(i, c)| {
            reaches_itself(i).then(|| {
                format!(
                    "correlation rule '{}' refers back to itself through {}; it is not loaded",
                    c.name.as_deref().unwrap_or(&c.id),
                    c.rules.join(", ")
                )
            })
        })
        .collect();
    set_aside(correlations, "correlation-cycle", problems)
}

/// Files under `dir`, recursively; a directory holding a `manifest.json` (a MISP feed) is
/// listed as one entry instead of being entered.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            if path.join("manifest.json").is_file() {
                out.push(path);
            } else {
                walk(&path, out)?;
            }
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Read a literal-frequency table written by `tocsin rules calibrate` (`--frequencies`),
/// plain or gzip-compressed (recognised by content, as inputs are: [`crate::input::open`]).
pub fn read_frequencies(path: &Path) -> Result<LiteralFrequencies> {
    let cannot = || format!("cannot read literal frequencies from {}", path.display());
    let mut text = String::new();
    crate::input::open(&path.to_string_lossy())
        .with_context(cannot)?
        .read_to_string(&mut text)
        .with_context(cannot)?;
    LiteralFrequencies::from_json(&text)
        .with_context(|| format!("{}: not a literal-frequency table", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a parsed file holds, as text: its name, rule ids, item count and diagnostics,
    /// or why it could not be read.
    fn summary(parsed: Vec<ParsedFile>) -> Vec<String> {
        parsed
            .into_iter()
            .map(|p| match p.read {
                Ok((_, src, outcome)) => format!(
                    "{} {:?} {} {}",
                    p.display,
                    src.sigma.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
                    outcome.items,
                    src.diagnostics
                        .0
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" | ")
                ),
                Err(d) => format!("{} unread: {d}", p.display),
            })
            .collect()
    }

    #[test]
    fn files_parsed_side_by_side_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut jobs = Vec::new();
        for i in 0..50 {
            let rel = PathBuf::from(format!("r{i:02}.yml"));
            let path = dir.path().join(&rel);
            let text = match i % 7 {
                3 => b"title: [unclosed\n".to_vec(),
                5 => vec![b't', 0xff, 0xfe],
                _ => format!(
                    "title: rule {i}\nid: 00000000-0000-4000-8000-{i:012}\nlogsource:\n  product: windows\ndetection:\n  sel:\n    Image|endswith: '\\x{i}.exe'\n  condition: sel\n"
                )
                .into_bytes(),
            };
            std::fs::write(&path, text).unwrap();
            jobs.push((path, rel));
        }
        jobs.push((dir.path().join("gone.yml"), PathBuf::from("gone.yml")));
        let one_by_one = summary(parse_files_on(&jobs, None, 1));
        assert_eq!(one_by_one.len(), 51);
        // A rule, a file of broken YAML (no items, its error), one not UTF-8, one missing.
        let expected: [(usize, &[&str]); 4] = [
            (0, &["00000000-0000-4000-8000-000000000000"]),
            (3, &["[] 0 ", "r03.yml:"]),
            (5, &["unread", "not UTF-8"]),
            (50, &["unread", "cannot read"]),
        ];
        for (i, needles) in expected {
            let got = &one_by_one[i];
            assert!(needles.iter().all(|n| got.contains(n)), "{got}");
        }
        for threads in [2, 3, 8] {
            assert_eq!(
                summary(parse_files_on(&jobs, None, threads)),
                one_by_one,
                "{threads} threads"
            );
        }
    }
}
