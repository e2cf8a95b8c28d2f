//! SQL over an archive: the tables `events`, `detections` and `warnings`, each a DataFusion
//! listing table over its Parquet files with the Hive partition columns `date` (and
//! `sector`), so that conditions on them skip whole directories.
//!
//! DataFusion is asynchronous; the archive runs it on a current-thread Tokio runtime of its
//! own, so callers stay synchronous.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::writer::Table;
use crate::{ArchiveError, ARCHIVE_FORMAT};

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
        let ctx = SessionContext::new_with_config(
            SessionConfig::new()
                .with_target_partitions(2)
                .with_information_schema(true),
        );
        let archive = Archive {
            dir: dir.to_owned(),
            ctx,
            runtime,
        };
        for table in [Table::Events, Table::Detections, Table::Warnings] {
            archive.register(table)?;
        }
        Ok(archive)
    }

    fn register(&self, table: Table) -> Result<(), ArchiveError> {
        let mut partition_cols = vec![("date".to_owned(), DataType::Utf8)];
        if table.by_sector() {
            partition_cols.push(("sector".to_owned(), DataType::Utf8));
        }
        let path = self.dir.join(table.name());
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
