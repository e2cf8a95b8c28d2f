//! The archive: events, detections and warnings as Parquet files, and SQL over them.
//!
//! Why: when a CSIRT receives a new indicator for an attack that began days ago, the first
//! question is "where have we already seen it?"; coordinators want situational awareness
//! over weeks. A columnar archive answers both in process, with DataFusion's SQL over Arrow
//! (the only crate that links DataFusion is this one).
//!
//! Layout of an archive directory:
//!
//! ```text
//! DIR/archive.json                                  {"format": "tocsin.archive/v1"}
//! DIR/events/date=YYYY-MM-DD/sector=SECTOR/part-*.parquet
//! DIR/detections/date=YYYY-MM-DD/sector=SECTOR/part-*.parquet
//! DIR/warnings/date=YYYY-MM-DD/part-*.parquet
//! ```
//!
//! Partitions are Hive-style, so a query's `date` and `sector` conditions skip whole
//! directories. Files are zstd-compressed, one row group of up to [`writer::ROW_GROUP_ROWS`]
//! rows each. [`schema`] holds the Arrow schemas, [`writer`] the sink, [`query`] the SQL.

pub mod query;
pub mod schema;
pub mod writer;

/// The archive format this version writes and reads; a new column or a changed meaning
/// gets a new version, and [`query::Archive::open`] says which one it found.
pub const ARCHIVE_FORMAT: &str = "tocsin.archive/v1";

/// What can go wrong with an archive. Messages name the path.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Arrow or Parquet refused the data.
    #[error("{path}: {message}")]
    Parquet { path: String, message: String },
    /// The directory is not an archive this version reads.
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    /// DataFusion refused the query (its message, as it is).
    #[error("{0}")]
    Query(String),
}
