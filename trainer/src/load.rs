//! Loading canonical Parquet files with polars: one lazy scan per file, one `collect()`.
//!
//! [`load`] projects the columns the trainer uses, sorts by entity and time, and collects once;
//! the result is a [`Table`] of per-entity series (nulls as NaN), plus the file's inventory (read
//! from the Parquet metadata through keel-core).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use keel_core::inventory::Inventory;
use keel_core::schema::{
    CPU_DEMAND, CPU_UTIL, DISK_READ_KIB_S, DISK_WRITE_KIB_S, HOST_ID, MEM_USED_MIB, NET_RX_KIB_S,
    NET_TX_KIB_S, TS, VM_ID,
};
use polars::prelude::{
    col, lit, Column, DataType, LazyFrame, PlRefPath, ScanArgsParquet, SortMultipleOptions, NULL,
};

/// One entity's series (a VM or a host), sorted by time; a null is NaN.
#[derive(Debug, Clone, Default)]
pub struct Entity {
    /// Host id (for a VM: where it ran, if known).
    pub host_id: Option<String>,
    /// VM id; `None` for a host row.
    pub vm_id: Option<String>,
    /// Timestamps, ms.
    pub ts_ms: Vec<i64>,
    /// CPU utilisation (fraction).
    pub cpu_util: Vec<f64>,
    /// CPU demand (MIPS or MHz).
    pub cpu_demand: Vec<f64>,
    /// Memory used, MiB.
    pub mem_used_mib: Vec<f64>,
    /// Network rx + tx, KiB/s.
    pub net_kib_s: Vec<f64>,
    /// Disk read + write, KiB/s.
    pub disk_kib_s: Vec<f64>,
}

impl Entity {
    /// Whether this is a host-level series.
    pub fn is_host(&self) -> bool {
        self.vm_id.is_none() && self.host_id.is_some()
    }
}

/// A loaded file.
#[derive(Debug, Clone)]
pub struct Table {
    /// The file.
    pub path: PathBuf,
    /// Its inventory (empty when the file has none).
    pub inventory: Inventory,
    /// Rows read.
    pub rows: usize,
    /// Entities, each sorted by time.
    pub entities: Vec<Entity>,
}

/// A lazy scan of a canonical Parquet file.
///
/// # Errors
/// When the file cannot be opened as Parquet.
pub fn scan(path: &Path) -> anyhow::Result<LazyFrame> {
    let p = path
        .to_str()
        .with_context(|| format!("{}: path is not UTF-8", path.display()))?;
    LazyFrame::scan_parquet(PlRefPath::new(p), ScanArgsParquet::default())
        .with_context(|| format!("{}: cannot scan as Parquet", path.display()))
}

/// The column names of a file.
///
/// # Errors
/// When the schema cannot be read.
pub fn columns(lf: &mut LazyFrame, path: &Path) -> anyhow::Result<Vec<String>> {
    let schema = lf
        .collect_schema()
        .with_context(|| format!("{}: cannot read schema", path.display()))?;
    Ok(schema.iter_names().map(|n| n.to_string()).collect())
}

/// Loads a canonical file into per-entity series.
///
/// # Errors
/// A missing required column (`ts`, `host_id`, `vm_id`, `cpu_util`), a column of the wrong type,
/// or an unreadable file, naming the file.
pub fn load(path: &Path) -> anyhow::Result<Table> {
    let inventory = keel_core::parquet_io::read_inventory(path)
        .with_context(|| format!("reading inventory of {}", path.display()))?;
    let mut lf = scan(path)?;
    let cols = columns(&mut lf, path)?;
    for required in [TS, HOST_ID, VM_ID, CPU_UTIL] {
        if !cols.iter().any(|c| c == required) {
            bail!(
                "{}: missing column {required:?} (not a canonical keel file?)",
                path.display()
            );
        }
    }
    let has = |c: &str| cols.iter().any(|x| x == c);
    let num = |c: &str| {
        if has(c) {
            col(c).cast(DataType::Float64)
        } else {
            lit(NULL).cast(DataType::Float64).alias(c)
        }
    };
    let sum2 = |a: &str, b: &str, name: &str| match (has(a), has(b)) {
        (false, false) => lit(NULL).cast(DataType::Float64).alias(name),
        _ => (num(a).fill_null(lit(0.0)) + num(b).fill_null(lit(0.0))).alias(name),
    };
    let df = lf
        .select([
            col(TS).cast(DataType::Int64).alias(TS),
            col(HOST_ID).cast(DataType::String),
            col(VM_ID).cast(DataType::String),
            num(CPU_UTIL),
            num(CPU_DEMAND),
            num(MEM_USED_MIB),
            sum2(NET_RX_KIB_S, NET_TX_KIB_S, "net"),
            sum2(DISK_READ_KIB_S, DISK_WRITE_KIB_S, "disk"),
        ])
        .sort(
            [VM_ID, HOST_ID, TS],
            SortMultipleOptions::default().with_nulls_last(true),
        )
        .collect()
        .with_context(|| format!("{}: reading columns", path.display()))?;
    let rows = df.height();
    let get = |name: &str| -> anyhow::Result<&Column> {
        df.column(name)
            .with_context(|| format!("{}: column {name}", path.display()))
    };
    let ts = get(TS)?.i64().context("ts as integer")?;
    let host = get(HOST_ID)?.str().context("host_id as string")?;
    let vm = get(VM_ID)?.str().context("vm_id as string")?;
    let f = |name: &str| -> anyhow::Result<Vec<f64>> {
        Ok(get(name)?
            .f64()
            .with_context(|| format!("{}: column {name} as float", path.display()))?
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect())
    };
    let (cpu, demand, mem, net, disk) = (
        f(CPU_UTIL)?,
        f(CPU_DEMAND)?,
        f(MEM_USED_MIB)?,
        f("net")?,
        f("disk")?,
    );
    let mut entities: Vec<Entity> = Vec::new();
    let mut prev: (Option<&str>, Option<&str>) = (None, None);
    for (i, ((t, h), v)) in ts.iter().zip(host.iter()).zip(vm.iter()).enumerate() {
        let Some(t) = t else {
            bail!("{}: row {i}: null ts", path.display());
        };
        // A VM's series is keyed by the VM alone: its host may change (migrations).
        let key = if v.is_some() { (None, v) } else { (h, None) };
        if entities.is_empty() || key != prev {
            entities.push(Entity {
                host_id: h.map(str::to_owned),
                vm_id: v.map(str::to_owned),
                ..Default::default()
            });
            prev = key;
        }
        let e = entities.last_mut().expect("pushed above");
        e.ts_ms.push(t);
        e.cpu_util.push(cpu[i]);
        e.cpu_demand.push(demand[i]);
        e.mem_used_mib.push(mem[i]);
        e.net_kib_s.push(net[i]);
        e.disk_kib_s.push(disk[i]);
    }
    Ok(Table {
        path: path.to_owned(),
        inventory,
        rows,
        entities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::parquet_io::{write_samples, WriteOptions};
    use keel_core::schema::{Metrics, Sample};
    use polars::prelude::{df, ParquetWriter};

    #[test]
    fn missing_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.parquet");
        let mut df = df!("ts" => [1i64, 2], "host_id" => ["a", "a"]).unwrap();
        let mut f = std::fs::File::create(&p).unwrap();
        ParquetWriter::new(&mut f).finish(&mut df).unwrap();
        let e = format!("{:#}", load(&p).unwrap_err());
        assert!(e.contains("missing column \"vm_id\""), "{e}");
        assert!(e.contains("x.parquet"), "{e}");
    }

    #[test]
    fn groups_entities_and_sorts_by_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.parquet");
        let s = |t: i64, h: Option<&str>, v: Option<&str>, u: f64| Sample {
            ts_ms: t,
            host_id: h.map(Into::into),
            vm_id: v.map(Into::into),
            metrics: Metrics {
                cpu_util: Some(u),
                ..Default::default()
            },
        };
        let rows = vec![
            s(2000, Some("h1"), None, 0.2),
            s(1000, Some("h1"), None, 0.1),
            s(1000, None, Some("v1"), 0.5),
            s(1000, Some("h2"), None, 0.3),
        ];
        write_samples(&p, &rows, &Inventory::default(), WriteOptions::default()).unwrap();
        let t = load(&p).unwrap();
        assert_eq!(t.rows, 4);
        assert_eq!(t.entities.len(), 3);
        let h1 = t
            .entities
            .iter()
            .find(|e| e.host_id.as_deref() == Some("h1"))
            .unwrap();
        assert!(h1.is_host());
        assert_eq!(h1.ts_ms, vec![1000, 2000]);
        assert_eq!(h1.cpu_util, vec![0.1, 0.2]);
        assert!(h1.mem_used_mib[0].is_nan());
    }
}
