//! Loading a rules directory from disk (the I/O the library crates leave to the binary).
//!
//! Layout of a rules directory (see rules/README.md):
//! - `profiles/*.yaml` — field-mapping profiles;
//! - `escalation.yaml` — the escalation policy;
//! - `iocs/**` (`*.txt`, `*.ioc`, `*.list`) — plain indicator lists;
//! - every other `*.yml` / `*.yaml` — Sigma rules (several documents per file allowed).
//!
//! The rules shipped in the repository are also embedded in the binary, so that `tocsin
//! demo` works from any directory.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use tocsin_match::{CompiledRules, MatchConfig};
use tocsin_rules::{
    parse_placeholders, parse_plain_list, parse_policy, parse_profile, parse_sigma_source,
    Diagnostic, Diagnostics, EscalationPolicy, Indicator, Location, Profile, SigmaFilter,
    SigmaRule,
};

/// Everything read from rule sources.
pub struct RuleSources {
    pub sigma: Vec<SigmaRule>,
    pub filters: Vec<SigmaFilter>,
    pub placeholders: std::collections::BTreeMap<String, Vec<String>>,
    pub indicators: Vec<Indicator>,
    pub profiles: Vec<Profile>,
    pub policy: Option<EscalationPolicy>,
    pub diagnostics: Diagnostics,
    pub files: usize,
}

/// The rules directory shipped with Tocsin, embedded at build time.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "profiles/ecs.yaml",
        include_str!("../../../rules/profiles/ecs.yaml"),
    ),
    (
        "profiles/sysmon.yaml",
        include_str!("../../../rules/profiles/sysmon.yaml"),
    ),
    (
        "escalation.yaml",
        include_str!("../../../rules/escalation.yaml"),
    ),
    (
        "iocs/cert-eu-sample.txt",
        include_str!("../../../rules/iocs/cert-eu-sample.txt"),
    ),
    (
        "sigma/office_spawns_powershell.yml",
        include_str!("../../../rules/sigma/office_spawns_powershell.yml"),
    ),
    (
        "sigma/encoded_powershell.yml",
        include_str!("../../../rules/sigma/encoded_powershell.yml"),
    ),
    (
        "sigma/shadow_copy_deletion.yml",
        include_str!("../../../rules/sigma/shadow_copy_deletion.yml"),
    ),
    (
        "sigma/nightglass_ransom_note.yml",
        include_str!("../../../rules/sigma/nightglass_ransom_note.yml"),
    ),
    (
        "sigma/whoami_discovery.yml",
        include_str!("../../../rules/sigma/whoami_discovery.yml"),
    ),
    (
        "sigma/executable_in_temp.yml",
        include_str!("../../../rules/sigma/executable_in_temp.yml"),
    ),
];

enum Kind {
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
    } else if name == "placeholders.yaml" || name == "placeholders.yml" {
        Kind::Placeholders
    } else if first == "profiles" && yaml {
        Kind::Profile
    } else if name == "escalation.yaml" || name == "escalation.yml" {
        Kind::Policy
    } else if first == "iocs" || matches!(ext, "ioc" | "list") {
        if matches!(ext, "txt" | "ioc" | "list") {
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
    fn empty() -> Self {
        RuleSources {
            sigma: Vec::new(),
            filters: Vec::new(),
            placeholders: Default::default(),
            indicators: Vec::new(),
            profiles: Vec::new(),
            policy: None,
            diagnostics: Diagnostics::default(),
            files: 0,
        }
    }

    fn add(&mut self, rel: &Path, display: &str, text: &str) {
        self.files += 1;
        match classify(rel) {
            Kind::Profile => match parse_profile(display, text) {
                Ok(p) => self.profiles.push(p),
                Err(d) => self.diagnostics.push(d),
            },
            Kind::Policy => match parse_policy(display, text) {
                Ok(p) => self.policy = Some(p),
                Err(d) => self.diagnostics.push(d),
            },
            Kind::Iocs => {
                let feed = rel.file_stem().and_then(|s| s.to_str()).unwrap_or("feed");
                let (iocs, diags) = parse_plain_list(display, text, feed);
                self.indicators.extend(iocs);
                self.diagnostics.extend(diags);
            }
            Kind::Sigma => {
                let src = parse_sigma_source(display, text);
                self.sigma.extend(src.rules);
                self.filters.extend(src.filters);
                self.diagnostics.extend(src.diagnostics.0);
            }
            Kind::Placeholders => match parse_placeholders(display, text) {
                Ok(p) => self.placeholders.extend(p),
                Err(d) => self.diagnostics.push(d),
            },
            Kind::Other => self.files -= 1,
        }
    }

    /// The rules embedded in the binary.
    pub fn embedded() -> Self {
        let mut s = RuleSources::empty();
        for (rel, text) in EMBEDDED {
            s.add(Path::new(rel), &format!("<embedded>/rules/{rel}"), text);
        }
        s
    }

    /// Load rule sources from files and directories (recursively, in sorted order).
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let mut s = RuleSources::empty();
        for root in paths {
            let meta = std::fs::metadata(root)
                .with_context(|| format!("cannot read rules path {}", root.display()))?;
            if meta.is_file() {
                let rel = root.file_name().map(PathBuf::from).unwrap_or_default();
                s.add_file(root, &rel);
                continue;
            }
            let mut files = Vec::new();
            walk(root, &mut files)?;
            files.sort();
            for f in files {
                let rel = f.strip_prefix(root).unwrap_or(&f).to_path_buf();
                s.add_file(&f, &rel);
            }
        }
        if s.files == 0 {
            bail!(
                "no rule files found in {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(s)
    }

    fn add_file(&mut self, path: &Path, rel: &Path) {
        let display = path.display().to_string();
        match std::fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => self.add(rel, &display, &text),
                Err(e) => self.diagnostics.push(Diagnostic::error(
                    Location::line(&display, 1),
                    "encoding",
                    format!(
                        "file is not UTF-8 (invalid byte at offset {})",
                        e.utf8_error().valid_up_to()
                    ),
                )),
            },
            Err(e) => self.diagnostics.push(Diagnostic::error(
                Location::line(&display, 0),
                "io",
                format!("cannot read: {e}"),
            )),
        }
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

    /// Compile; compile diagnostics are added to `self.diagnostics`.
    pub fn compile(&mut self, profile: &Profile, config: &MatchConfig) -> CompiledRules {
        let mut config = config.clone();
        config.placeholders.extend(self.placeholders.clone());
        let (compiled, diags) = CompiledRules::compile(
            &self.sigma,
            &self.filters,
            &self.indicators,
            profile,
            &config,
        );
        self.diagnostics.extend(diags);
        compiled
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if entry.file_type()?.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
