//! Reading indicator feeds: the format is forced (`--iocs-format`) or detected from the
//! file, and the text is handed to the feed parsers of tocsin-rules.

use tocsin_rules::{
    detect_format, parse_feed, parse_misp_feed, Diagnostic, FeedOptions, Indicator,
};

/// A feed format, as `--iocs-format` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FeedFormat {
    /// A MISP event export or feed directory.
    Misp,
    /// A STIX 2.1 bundle.
    Stix,
    /// CSV with a header row (columns `value`, `type`, `tlp`).
    Csv,
    /// One indicator per line.
    Plain,
}

impl From<FeedFormat> for tocsin_rules::FeedFormat {
    fn from(f: FeedFormat) -> Self {
        match f {
            FeedFormat::Misp => tocsin_rules::FeedFormat::Misp,
            FeedFormat::Stix => tocsin_rules::FeedFormat::Stix,
            FeedFormat::Csv => tocsin_rules::FeedFormat::Csv,
            FeedFormat::Plain => tocsin_rules::FeedFormat::Plain,
        }
    }
}

/// Parse one feed file; `feed` names it unless the feed names itself.
pub fn parse_feed_text(
    display: &str,
    text: &str,
    format: Option<FeedFormat>,
    feed: &str,
) -> (Vec<Indicator>, Vec<Diagnostic>) {
    let format = match format
        .map(Into::into)
        .or_else(|| detect_format(display, text))
    {
        Some(f) => f,
        None => {
            let err = Diagnostic::error(
                tocsin_rules::Location::line(display, 1),
                "unknown-feed-format",
                "JSON that is neither a MISP event export nor a STIX 2.1 bundle; skipped (use --iocs-format to force a format)",
            );
            return (Vec::new(), vec![err]);
        }
    };
    let options = FeedOptions {
        feed_name: feed.to_owned(),
        ..FeedOptions::default()
    };
    parse_feed(display, text, format, &options)
}

/// Parse a MISP feed directory given as (file name, text) pairs.
pub fn parse_misp_dir(files: &[(String, String)], feed: &str) -> (Vec<Indicator>, Vec<Diagnostic>) {
    let options = FeedOptions {
        feed_name: feed.to_owned(),
        ..FeedOptions::default()
    };
    parse_misp_feed(files, &options)
}
