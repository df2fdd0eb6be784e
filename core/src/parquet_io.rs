//! The canonical schema as Parquet, through arrow-rs (no polars: the daemons stay small).
//!
//! Files are zstd-compressed, carry [`META_SCHEMA_VERSION`] and [`META_INVENTORY`] in their
//! key-value metadata, and open unchanged in polars, pandas and DuckDB. Writes are atomic: the
//! data goes to a temporary file in the destination's folder, which is synced and renamed over
//! the destination only once complete, so a crash never leaves a partial file under the final name.
//!
//! Reading is lenient about physical types so that files written by other tools (polars writes
//! `LargeUtf8`/`Utf8View` strings and µs timestamps) read back: strings of any Arrow string type,
//! timestamps of any unit, floats and integers for metrics. Metric columns missing from a file
//! read as null.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::inventory::Inventory;
use crate::schema::{
    Metrics, Sample, HOST_ID, META_INVENTORY, META_SCHEMA_VERSION, METRIC_COLUMNS, SCHEMA_VERSION,
    TS, VM_ID,
};
use crate::{Error, Result};

/// A dataset read whole: its inventory and its rows in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// The inventory from the file's metadata (empty if the file has none).
    pub inventory: Inventory,
    /// The rows.
    pub samples: Vec<Sample>,
}

/// Options for writing.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// zstd level (1..=22).
    pub zstd_level: i32,
    /// Maximum rows per row group.
    pub row_group_size: usize,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            row_group_size: 128 * 1024,
        }
    }
}

/// The Arrow schema of the canonical table.
pub fn arrow_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new(
            TS,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new(HOST_ID, DataType::Utf8, true),
        Field::new(VM_ID, DataType::Utf8, true),
    ];
    fields.extend(
        METRIC_COLUMNS
            .iter()
            .map(|c| Field::new(*c, DataType::Float64, true)),
    );
    Arc::new(Schema::new(fields))
}

/// Converts rows to an Arrow batch of the canonical schema.
///
/// # Errors
/// Only if Arrow rejects the batch, which the fixed schema rules out in practice.
pub fn samples_to_batch(samples: &[Sample]) -> Result<RecordBatch> {
    let ts = TimestampMillisecondArray::from_iter_values(samples.iter().map(|s| s.ts_ms))
        .with_timezone("UTC");
    let host: StringArray = samples.iter().map(|s| s.host_id.as_deref()).collect();
    let vm: StringArray = samples.iter().map(|s| s.vm_id.as_deref()).collect();
    let mut cols: Vec<ArrayRef> = vec![Arc::new(ts), Arc::new(host), Arc::new(vm)];
    for i in 0..METRIC_COLUMNS.len() {
        let a: Float64Array = samples.iter().map(|s| s.metrics.get(i)).collect();
        cols.push(Arc::new(a));
    }
    RecordBatch::try_new(arrow_schema(), cols).map_err(|e| Error::Schema {
        path: PathBuf::new(),
        message: e.to_string(),
    })
}

/// A streaming writer of the canonical table with an atomic finish.
///
/// Rows go to `<dest>.<pid>.tmp` beside the destination; [`SampleWriter::finish`] closes, syncs
/// and renames it. Dropping the writer without finishing removes the temporary file.
pub struct SampleWriter {
    dest: PathBuf,
    tmp: PathBuf,
    /// `None` once finished; the writer owns the temporary file until then.
    writer: Option<ArrowWriter<File>>,
    rows: usize,
}

impl std::fmt::Debug for SampleWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleWriter")
            .field("dest", &self.dest)
            .field("rows", &self.rows)
            .finish()
    }
}

impl SampleWriter {
    /// Starts a file at `dest` (written under a temporary name until [`finish`](Self::finish)).
    ///
    /// # Errors
    /// I/O errors creating the temporary file, naming it.
    pub fn create(dest: &Path, inventory: &Inventory, opts: WriteOptions) -> Result<Self> {
        let dest = dest.to_path_buf();
        let file_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dest.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
        let file = File::create(&tmp).map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        let level = ZstdLevel::try_new(opts.zstd_level).map_err(|e| Error::Parquet {
            path: dest.clone(),
            message: e.to_string(),
        })?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(opts.row_group_size))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(META_SCHEMA_VERSION.to_string(), SCHEMA_VERSION.to_string()),
                KeyValue::new(META_INVENTORY.to_string(), inventory.to_json()?),
            ]))
            .build();
        let writer = ArrowWriter::try_new(file, arrow_schema(), Some(props)).map_err(|e| {
            Error::Parquet {
                path: tmp.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            dest,
            tmp,
            writer: Some(writer),
            rows: 0,
        })
    }

    /// Appends rows.
    ///
    /// # Errors
    /// Parquet or I/O errors, naming the temporary file.
    pub fn write(&mut self, samples: &[Sample]) -> Result<()> {
        let batch = samples_to_batch(samples)?;
        self.write_batch(&batch)
    }

    /// Appends an Arrow batch of the canonical schema.
    ///
    /// # Errors
    /// Parquet or I/O errors, naming the temporary file.
    pub fn write_batch(&mut self, batch: &RecordBatch) -> Result<()> {
        let w = self
            .writer
            .as_mut()
            .expect("writer is present until finish consumes self");
        w.write(batch).map_err(|e| Error::Parquet {
            path: self.tmp.clone(),
            message: e.to_string(),
        })?;
        self.rows += batch.num_rows();
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Closes the file, syncs it and renames it to its destination.
    ///
    /// # Errors
    /// Parquet or I/O errors; the temporary file is removed on failure.
    pub fn finish(mut self) -> Result<PathBuf> {
        let w = self
            .writer
            .take()
            .expect("writer is present until finish consumes self");
        let file = w.into_inner().map_err(|e| Error::Parquet {
            path: self.tmp.clone(),
            message: e.to_string(),
        })?;
        file.sync_all().map_err(|source| Error::Io {
            path: self.tmp.clone(),
            source,
        })?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(|source| Error::Io {
            path: self.dest.clone(),
            source,
        })?;
        if let Some(dir) = self.dest.parent() {
            // Persist the rename itself; failure to open a directory is not fatal on every platform.
            if let Ok(d) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            }) {
                _ = d.sync_all();
            }
        }
        Ok(self.dest.clone())
    }
}

impl Drop for SampleWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes a whole table atomically.
///
/// # Errors
/// As [`SampleWriter`].
pub fn write_samples(
    dest: &Path,
    samples: &[Sample],
    inventory: &Inventory,
    opts: WriteOptions,
) -> Result<PathBuf> {
    let mut w = SampleWriter::create(dest, inventory, opts)?;
    for chunk in samples.chunks(opts.row_group_size.max(1)) {
        w.write(chunk)?;
    }
    w.finish()
}

fn open_builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn inventory_from_builder(
    path: &Path,
    b: &ParquetRecordBatchReaderBuilder<File>,
) -> Result<Inventory> {
    let kv = b.metadata().file_metadata().key_value_metadata();
    let get = |k: &str| -> Option<&str> {
        kv.and_then(|kv| kv.iter().find(|e| e.key == k))
            .and_then(|e| e.value.as_deref())
    };
    if let Some(v) = get(META_SCHEMA_VERSION) {
        match v.trim().parse::<u32>() {
            Ok(n) if n <= SCHEMA_VERSION => {}
            _ => {
                return Err(Error::Version {
                    path: path.to_path_buf(),
                    found: v.to_string(),
                    supported: SCHEMA_VERSION,
                })
            }
        }
    }
    match get(META_INVENTORY) {
        Some(j) => Inventory::from_json(j).map_err(|e| Error::Schema {
            path: path.to_path_buf(),
            message: format!("metadata {META_INVENTORY}: {e}"),
        }),
        None => Ok(Inventory::default()),
    }
}

/// Reads only the inventory of a file (cheap: the footer).
///
/// # Errors
/// I/O, Parquet, version or JSON errors, naming the file.
pub fn read_inventory(path: &Path) -> Result<Inventory> {
    let b = open_builder(path)?;
    inventory_from_builder(path, &b)
}

/// Reads a whole file. `metrics` limits which metric columns are decoded (others read as null);
/// `None` reads all.
///
/// # Errors
/// I/O, Parquet, version and schema errors (a missing `ts` column, a column of the wrong type),
/// naming the file and column.
pub fn read_samples(path: &Path, metrics: Option<&[&str]>) -> Result<Dataset> {
    let b = open_builder(path)?;
    let inventory = inventory_from_builder(path, &b)?;
    let schema = Arc::clone(b.schema());
    let wanted = |name: &str| -> bool {
        name == TS
            || name == HOST_ID
            || name == VM_ID
            || (METRIC_COLUMNS.contains(&name) && metrics.is_none_or(|m| m.contains(&name)))
    };
    if schema.field_with_name(TS).is_err() {
        return Err(Error::Schema {
            path: path.to_path_buf(),
            message: format!("missing column {TS:?}"),
        });
    }
    let leaves: Vec<usize> = {
        let pq_schema = b.parquet_schema();
        (0..pq_schema.num_columns())
            .filter(|&i| wanted(pq_schema.column(i).name()))
            .collect()
    };
    let mask = ProjectionMask::leaves(b.parquet_schema(), leaves);
    let reader = b
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| Error::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let mut samples = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        batch_to_samples(path, &batch, &mut samples)?;
    }
    Ok(Dataset { inventory, samples })
}

/// Appends the rows of an Arrow batch (any column subset of the canonical schema) to `out`.
///
/// # Errors
/// [`Error::Schema`] naming the column whose type cannot be read.
pub fn batch_to_samples(path: &Path, batch: &RecordBatch, out: &mut Vec<Sample>) -> Result<()> {
    let n = batch.num_rows();
    let schema_err = |col: &str, dt: &DataType| Error::Schema {
        path: path.to_path_buf(),
        message: format!("column {col:?} has unsupported type {dt}"),
    };
    let ts_col = batch.column_by_name(TS).ok_or_else(|| Error::Schema {
        path: path.to_path_buf(),
        message: format!("missing column {TS:?}"),
    })?;
    let ts = timestamps_ms(ts_col).ok_or_else(|| schema_err(TS, ts_col.data_type()))?;
    if let Some(i) = (0..n).find(|&i| ts_col.is_null(i)) {
        return Err(Error::Schema {
            path: path.to_path_buf(),
            message: format!("column {TS:?} is null at row {i}"),
        });
    }
    let host = match batch.column_by_name(HOST_ID) {
        Some(c) => Some(strings(c).ok_or_else(|| schema_err(HOST_ID, c.data_type()))?),
        None => None,
    };
    let vm = match batch.column_by_name(VM_ID) {
        Some(c) => Some(strings(c).ok_or_else(|| schema_err(VM_ID, c.data_type()))?),
        None => None,
    };
    let mut metric_cols: Vec<(usize, Vec<Option<f64>>)> = Vec::new();
    for (i, name) in METRIC_COLUMNS.iter().enumerate() {
        if let Some(c) = batch.column_by_name(name) {
            metric_cols.push((i, floats(c).ok_or_else(|| schema_err(name, c.data_type()))?));
        }
    }
    out.reserve(n);
    for r in 0..n {
        let mut metrics = Metrics::default();
        for (i, col) in &metric_cols {
            metrics.set(*i, col[r]);
        }
        out.push(Sample {
            ts_ms: ts[r],
            host_id: host.as_ref().and_then(|h| h[r].clone()),
            vm_id: vm.as_ref().and_then(|v| v[r].clone()),
            metrics,
        });
    }
    Ok(())
}

fn timestamps_ms(a: &ArrayRef) -> Option<Vec<i64>> {
    Some(match a.data_type() {
        DataType::Timestamp(TimeUnit::Millisecond, _) => a
            .as_primitive::<TimestampMillisecondType>()
            .values()
            .to_vec(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => a
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .iter()
            .map(|v| v.div_euclid(1000))
            .collect(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => a
            .as_primitive::<TimestampNanosecondType>()
            .values()
            .iter()
            .map(|v| v.div_euclid(1_000_000))
            .collect(),
        DataType::Timestamp(TimeUnit::Second, _) => a
            .as_primitive::<TimestampSecondType>()
            .values()
            .iter()
            .map(|v| v * 1000)
            .collect(),
        DataType::Int64 => a.as_primitive::<Int64Type>().values().to_vec(),
        _ => return None,
    })
}

fn strings(a: &ArrayRef) -> Option<Vec<Option<String>>> {
    Some(match a.data_type() {
        DataType::Utf8 => a
            .as_string::<i32>()
            .iter()
            .map(|s| s.map(str::to_owned))
            .collect(),
        DataType::LargeUtf8 => a
            .as_string::<i64>()
            .iter()
            .map(|s| s.map(str::to_owned))
            .collect(),
        DataType::Utf8View => a
            .as_string_view()
            .iter()
            .map(|s| s.map(str::to_owned))
            .collect(),
        DataType::Null => vec![None; a.len()],
        _ => return None,
    })
}

fn floats(a: &ArrayRef) -> Option<Vec<Option<f64>>> {
    Some(match a.data_type() {
        DataType::Float64 => a.as_primitive::<Float64Type>().iter().collect(),
        DataType::Float32 => a
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        DataType::Int64 => a
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map(|x| x as f64))
            .collect(),
        DataType::Int32 => a
            .as_primitive::<Int32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect(),
        DataType::Null => vec![None; a.len()],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    fn sample(ts: i64, vm: Option<&str>, cpu: Option<f64>) -> Sample {
        Sample {
            ts_ms: ts,
            host_id: Some("h1".into()),
            vm_id: vm.map(str::to_owned),
            metrics: Metrics {
                cpu_util: cpu,
                psi_io_full: Some(0.25),
                ..Default::default()
            },
        }
    }

    #[test]
    fn round_trip_keeps_rows_nulls_and_inventory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        let mut inv = Inventory::default();
        inv.hosts.push(catalog::hp_proliant_g5("h1".into()));
        inv.vms.push(catalog::cloudsim_vm_type(0).spec("v1".into()));
        let rows = vec![
            sample(0, Some("v1"), Some(0.5)),
            sample(300_000, None, None),
        ];
        write_samples(&path, &rows, &inv, WriteOptions::default()).unwrap();
        let back = read_samples(&path, None).unwrap();
        assert_eq!(back.samples, rows);
        assert_eq!(back.inventory, inv);
        assert_eq!(read_inventory(&path).unwrap(), inv);
        // Only the file itself is left: no temporary files.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn projection_reads_only_named_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        write_samples(
            &path,
            &[sample(5, Some("v"), Some(0.1))],
            &Inventory::default(),
            WriteOptions::default(),
        )
        .unwrap();
        let back = read_samples(&path, Some(&[crate::schema::CPU_UTIL])).unwrap();
        assert_eq!(back.samples[0].metrics.cpu_util, Some(0.1));
        assert_eq!(back.samples[0].metrics.psi_io_full, None);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.parquet");
        {
            let mut w = SampleWriter::create(&path, &Inventory::default(), WriteOptions::default())
                .unwrap();
            w.write(&[sample(1, None, Some(0.3))]).unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn not_parquet_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        std::fs::write(&path, b"not parquet at all").unwrap();
        let err = read_samples(&path, None).unwrap_err().to_string();
        assert!(err.contains("bad.parquet"), "{err}");
    }
}
