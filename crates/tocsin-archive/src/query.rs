//! SQL over an archive: the tables `events`, `detections` and `warnings`, each a DataFusion
//! listing table over its Parquet files with the Hive partition columns `date` (and
//! `sector`), so that conditions on them skip whole directories.
//!
//! DataFusion is asynchronous; the archive runs it on a current-thread Tokio runtime of its
//! own, so callers stay synchronous.
//!
//! Unreadable files: every Parquet file's footer is read when the archive is opened. A file
//! that is truncated or corrupt (a writer killed mid-file, a disk error) is reported with its
//! path in [`Archive::skipped`] and left out: the table is then registered over a private
//! view of the archive, a temporary directory of symbolic links to the readable files in the
//! same Hive layout, so one bad file does not make the whole archive unqueryable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use tocsin_core::Timestamp;

use crate::writer::{date_of, Table};
use crate::{ArchiveError, ARCHIVE_FORMAT};

/// Memory a query may hold. Sorts, and the aggregations DataFusion can spill, go to
/// temporary files beyond it; anything else fails with DataFusion's "resources exhausted".
pub const QUERY_MEMORY_BYTES: usize = 2 << 30;

/// How query results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON object per row and line.
    Json,
}

/// An archive opened for queries.
pub struct Archive {
    dir: PathBuf,
    ctx: SessionContext,
    runtime: tokio::runtime::Runtime,
    skipped: Vec<SkippedFile>,
    /// The view without the unreadable files, when there are any (removed on drop).
    view: Option<tempfile::TempDir>,
}

/// One archived event as a hunt reads it: the raw JSON, and the context and time the live
/// path gave it (which may have come from message headers and timestamps, not the JSON).
#[derive(Debug, Clone, Copy)]
pub struct ArchivedEvent<'a> {
    pub time_ms: i64,
    pub sector: Option<&'a str>,
    pub member_state: Option<&'a str>,
    pub organisation: Option<&'a str>,
    pub raw: &'a str,
}

/// A Parquet file left out of every query because it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    pub path: PathBuf,
    /// What the Parquet reader said.
    pub reason: String,
}

/// Which archived events [`Archive::scan_events`] reads. Every condition is pushed down to
/// the scan: dates and sectors select partition directories, the time range prunes row
/// groups by their statistics.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Events at or after this time (epoch milliseconds).
    pub from_ms: Option<i64>,
    /// Events before this time (epoch milliseconds).
    pub to_ms: Option<i64>,
    /// Only these sectors (their partition names); empty means all.
    pub sectors: Vec<String>,
}

/// Check `dir/archive.json` names the format this version reads.
pub fn check_format(dir: &Path) -> Result<(), ArchiveError> {
    let marker = dir.join("archive.json");
    let text = std::fs::read_to_string(&marker).map_err(|source| ArchiveError::Io {
        path: marker.display().to_string(),
        source,
    })?;
    let format = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["format"].as_str().map(str::to_owned));
    match format.as_deref() {
        Some(ARCHIVE_FORMAT) => Ok(()),
        Some(other) => Err(ArchiveError::Format {
            path: marker.display().to_string(),
            message: format!(
                "archive format {other:?}; this version reads {ARCHIVE_FORMAT:?} (convert or query it with the version that wrote it)"
            ),
        }),
        None => Err(ArchiveError::Format {
            path: marker.display().to_string(),
            message: "not a Tocsin archive marker (expected {\"format\": \"tocsin.archive/v1\"})"
                .into(),
        }),
    }
}

fn table_schema(table: Table) -> SchemaRef {
    match table {
        Table::Events => crate::schema::events(),
        Table::Detections => crate::schema::detections(),
        Table::Warnings => crate::schema::warnings(),
    }
}

impl Archive {
    /// Open the archive in `dir` and register its tables.
    pub fn open(dir: &Path) -> Result<Self, ArchiveError> {
        check_format(dir)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|source| ArchiveError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        // Bounded memory: sorts beyond it spill to temporary files (a hunt
        // sorts a day of events by time), so an archive larger than memory still answers.
        let runtime_env = RuntimeEnvBuilder::new()
            .with_memory_limit(QUERY_MEMORY_BYTES, 1.0)
            .build_arc()
            .map_err(|e| ArchiveError::Query(e.to_string()))?;
        let ctx = SessionContext::new_with_config_rt(
            SessionConfig::new()
                .with_target_partitions(2)
                .with_information_schema(true),
            runtime_env,
        );
        let mut archive = Archive {
            dir: dir.to_owned(),
            ctx,
            runtime,
            skipped: Vec::new(),
            view: None,
        };
        for table in [Table::Events, Table::Detections, Table::Warnings] {
            archive.register(table)?;
        }
        Ok(archive)
    }

    /// The files left out because they cannot be read, with the reason.
    pub fn skipped(&self) -> &[SkippedFile] {
        &self.skipped
    }

    fn register(&mut self, table: Table) -> Result<(), ArchiveError> {
        let mut partition_cols = vec![("date".to_owned(), DataType::Utf8)];
        if table.by_sector() {
            partition_cols.push(("sector".to_owned(), DataType::Utf8));
        }
        let mut path = self.dir.join(table.name());
        let query = |e: &dyn std::fmt::Display| ArchiveError::Query(e.to_string());
        if !path.is_dir() {
            // An empty table with the same columns, so that queries still plan.
            let mut fields: Vec<_> = table_schema(table)
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.extend(
                partition_cols
                    .iter()
                    .map(|(n, t)| datafusion::arrow::datatypes::Field::new(n, t.clone(), false)),
            );
            let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
            let empty = MemTable::try_new(schema, vec![vec![]]).map_err(|e| query(&e))?;
            self.ctx
                .register_table(table.name(), Arc::new(empty))
                .map_err(|e| query(&e))?;
            return Ok(());
        }
        let mut files = Vec::new();
        parquet_files(&path, &mut files)?;
        let mut readable = Vec::with_capacity(files.len());
        for file in files {
            match footer_error(&file) {
                None => readable.push(file),
                Some(reason) => self.skipped.push(SkippedFile { path: file, reason }),
            }
        }
        if self.skipped.iter().any(|s| s.path.starts_with(&path)) {
            path = self.view_of(table, &path, &readable)?;
        }
        let url = ListingTableUrl::parse(format!("{}/", path.display())).map_err(|e| query(&e))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(partition_cols);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(table_schema(table));
        let listing = ListingTable::try_new(config).map_err(|e| query(&e))?;
        self.ctx
            .register_table(table.name(), Arc::new(listing))
            .map_err(|e| query(&e))?;
        Ok(())
    }

    /// A directory of symbolic links to `readable` (files under `root`) in the same layout.
    fn view_of(
        &mut self,
        table: Table,
        root: &Path,
        readable: &[PathBuf],
    ) -> Result<PathBuf, ArchiveError> {
        if self.view.is_none() {
            self.view = Some(tempfile::tempdir().map_err(|source| ArchiveError::Io {
                path: std::env::temp_dir().display().to_string(),
                source,
            })?);
        }
        let view = self
            .view
            .as_ref()
            .map(|v| v.path().join(table.name()))
            .unwrap_or_default();
        for file in readable {
            let Ok(rel) = file.strip_prefix(root) else {
                continue;
            };
            let link = view.join(rel);
            if let Some(parent) = link.parent() {
                std::fs::create_dir_all(parent).map_err(|source| ArchiveError::Io {
                    path: parent.display().to_string(),
                    source,
                })?;
            }
            let target = std::fs::canonicalize(file).map_err(|source| ArchiveError::Io {
                path: file.display().to_string(),
                source,
            })?;
            std::os::unix::fs::symlink(&target, &link).map_err(|source| ArchiveError::Io {
                path: link.display().to_string(),
                source,
            })?;
        }
        std::fs::create_dir_all(&view).map_err(|source| ArchiveError::Io {
            path: view.display().to_string(),
            source,
        })?;
        Ok(view)
    }

    /// The `date=` partitions of the events table within `filter`'s time range, oldest
    /// first.
    fn event_dates(&self, filter: &EventFilter) -> Result<Vec<String>, ArchiveError> {
        let dir = self.dir.join(Table::Events.name());
        let from = filter.from_ms.map(|t| date_of(Timestamp(t)));
        // `to` is exclusive: an event just before it lies on the date of `to - 1 ms`.
        let to = filter.to_ms.map(|t| date_of(Timestamp(t - 1)));
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ArchiveError::Io {
                    path: dir.display().to_string(),
                    source,
                })
            }
        };
        let mut dates: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("date="))
                    .map(str::to_owned)
            })
            .filter(|d| from.as_ref().is_none_or(|f| d >= f) && to.as_ref().is_none_or(|t| d <= t))
            .collect();
        dates.sort();
        Ok(dates)
    }

    /// Call `each` for every archived event that `filter` selects, in event time order
    /// within each date and date by date, streaming: one date's sort at a time, in at most
    /// [`QUERY_MEMORY_BYTES`] (it spills beyond). Returns the number of events read.
    pub fn scan_events<E: From<ArchiveError>>(
        &self,
        filter: &EventFilter,
        mut each: impl FnMut(&ArchivedEvent<'_>) -> Result<(), E>,
    ) -> Result<u64, E> {
        use datafusion::arrow::array::{Array, StringArray, TimestampMillisecondArray};
        use datafusion::prelude::{col, lit};
        use datafusion::scalar::ScalarValue;
        use futures::StreamExt as _;

        let query = |e: &dyn std::fmt::Display| ArchiveError::Query(e.to_string());
        let millis = |t: i64| {
            lit(ScalarValue::TimestampMillisecond(
                Some(t),
                Some("UTC".into()),
            ))
        };
        let mut count = 0u64;
        for date in self.event_dates(filter)? {
            self.runtime.block_on(async {
                let mut condition = col("date").eq(lit(date.as_str()));
                if let Some(from) = filter.from_ms {
                    condition = condition.and(col("time").gt_eq(millis(from)));
                }
                if let Some(to) = filter.to_ms {
                    condition = condition.and(col("time").lt(millis(to)));
                }
                if !filter.sectors.is_empty() {
                    let sectors = filter.sectors.iter().map(|s| lit(s.as_str())).collect();
                    condition = condition.and(col("sector").in_list(sectors, false));
                }
                let frame = self
                    .ctx
                    .table(Table::Events.name())
                    .await
                    .and_then(|t| t.filter(condition))
                    .and_then(|t| {
                        t.select(vec![
                            col("time"),
                            col("sector"),
                            col("member_state"),
                            col("organisation"),
                            col("raw"),
                        ])
                    })
                    .and_then(|t| t.sort(vec![col("time").sort(true, false)]))
                    .map_err(|e| query(&e))?;
                let mut stream = frame.execute_stream().await.map_err(|e| query(&e))?;
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(|e| query(&e))?;
                    // Text columns may come back as string views; one type to read.
                    let mut text = Vec::with_capacity(4);
                    for i in 1..5 {
                        text.push(
                            datafusion::arrow::compute::cast(batch.column(i), &DataType::Utf8)
                                .map_err(|e| query(&e))?,
                        );
                    }
                    let strings: Vec<&StringArray> = text
                        .iter()
                        .filter_map(|a| a.as_any().downcast_ref::<StringArray>())
                        .collect();
                    let times = batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<TimestampMillisecondArray>();
                    let (Some(times), [sector, member_state, organisation, raw]) =
                        (times, strings.as_slice())
                    else {
                        return Err(query(&"events: unexpected column types").into());
                    };
                    fn get(a: &StringArray, row: usize) -> Option<&str> {
                        (!a.is_null(row)).then(|| a.value(row))
                    }
                    for row in 0..batch.num_rows() {
                        let Some(raw) = get(raw, row) else { continue };
                        count += 1;
                        each(&ArchivedEvent {
                            time_ms: times.value(row),
                            sector: get(sector, row).filter(|s| *s != "unknown"),
                            member_state: get(member_state, row),
                            organisation: get(organisation, row),
                            raw,
                        })?;
                    }
                }
                Ok::<(), E>(())
            })?;
        }
        Ok(count)
    }

    /// Run one SQL statement and return its first column as text, row by row (nulls left
    /// out): for reading the stored JSON of detections and warnings without a round trip
    /// through JSON rows.
    pub fn texts(&self, sql: &str) -> Result<Vec<String>, ArchiveError> {
        use datafusion::arrow::array::{Array, StringArray};
        let fail = |e: &dyn std::fmt::Display| ArchiveError::Query(e.to_string());
        let mut out = Vec::new();
        for batch in self.sql(sql)? {
            if batch.num_columns() == 0 {
                continue;
            }
            let column = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)
                .map_err(|e| fail(&e))?;
            let strings = column
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| fail(&"the first column is not text"))?;
            out.extend(
                (0..strings.len())
                    .filter(|&i| !strings.is_null(i))
                    .map(|i| strings.value(i).to_owned()),
            );
        }
        Ok(out)
    }

    /// Run one SQL statement and return its rows as JSON objects (column name → value;
    /// timestamps as RFC 3339 text, nulls left out): for callers that aggregate in SQL and
    /// read small results, without Arrow types.
    pub fn rows(&self, sql: &str) -> Result<Vec<serde_json::Value>, ArchiveError> {
        let batches = self.sql(sql)?;
        let text = render(&batches, OutputFormat::Json)?;
        text.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).map_err(|e| ArchiveError::Query(e.to_string())))
            .collect()
    }

    /// Run one SQL statement; DataFusion's message on error.
    pub fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, ArchiveError> {
        self.runtime.block_on(async {
            let df = self
                .ctx
                .sql(sql)
                .await
                .map_err(|e| ArchiveError::Query(e.to_string()))?;
            df.collect()
                .await
                .map_err(|e| ArchiveError::Query(e.to_string()))
        })
    }
}

/// Every `*.parquet` file under `dir`, sorted (a missing directory has none).
fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ArchiveError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ArchiveError::Io {
                path: dir.display().to_string(),
                source,
            })
        }
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            parquet_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
    Ok(())
}

/// Why `path`'s Parquet footer cannot be read, if it cannot (truncated, not Parquet, corrupt
/// metadata). Damage inside a data page shows only when the page is read, as a query error
/// naming the file.
fn footer_error(path: &Path) -> Option<String> {
    use datafusion::parquet::file::reader::{FileReader as _, SerializedFileReader};
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => return Some(e.to_string()),
    };
    match SerializedFileReader::new(file) {
        Ok(reader) if reader.metadata().file_metadata().num_rows() >= 0 => None,
        Ok(_) => Some("negative row count in the footer".into()),
        Err(e) => Some(e.to_string()),
    }
}

/// Print `batches` in `format`.
pub fn render(batches: &[RecordBatch], format: OutputFormat) -> Result<Vec<u8>, ArchiveError> {
    let fail = |e: &dyn std::fmt::Display| ArchiveError::Query(e.to_string());
    match format {
        OutputFormat::Table => {
            let table = datafusion::arrow::util::pretty::pretty_format_batches(batches)
                .map_err(|e| fail(&e))?;
            Ok(format!("{table}\n").into_bytes())
        }
        OutputFormat::Csv => {
            let mut out = Vec::new();
            {
                let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                for b in batches {
                    writer.write(b).map_err(|e| fail(&e))?;
                }
            }
            Ok(out)
        }
        OutputFormat::Json => {
            let mut out = Vec::new();
            {
                let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
                for b in batches {
                    writer.write(b).map_err(|e| fail(&e))?;
                }
                writer.finish().map_err(|e| fail(&e))?;
            }
            Ok(out)
        }
    }
}
