//! The replay's outputs: table, JSON, CSV, per-interval series and migration log (CSV), HTML
//! report with plots, host-series Parquet.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use keel_core::inventory::Inventory;
use keel_core::parquet_io::{SampleWriter, WriteOptions};
use keel_core::schema::{Metrics, Sample};
use plotters::prelude::*;
use serde::Serialize;

use super::Named;
use crate::sim::engine::{HostSeries, Migration};
use crate::sim::{Scenario, Workload};

/// What the run was.
#[allow(missing_docs)] // fields are named for the JSON they become
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub dataset: String,
    pub scenario: String,
    pub hosts: usize,
    pub vms: usize,
    pub seed: u64,
    pub model: Option<String>,
    pub wall_s: f64,
}

/// The results as JSON: `{"policies": {NAME: {...}}, "run": {...}}`, policies in run order.
pub fn json(meta: &Meta, results: &[Named]) -> anyhow::Result<String> {
    let mut policies = serde_json::Map::new();
    for r in results {
        policies.insert(r.name.clone(), serde_json::to_value(&r.result)?);
    }
    let v = serde_json::json!({
        "policies": policies,
        "order": results.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "run": meta,
    });
    Ok(serde_json::to_string_pretty(&v)?)
}

const HEADER: [&str; 14] = [
    "policy",
    "energy_kwh",
    "migrations",
    "slatah_pct",
    "pdm_pct",
    "slav_e5",
    "esv_e3",
    "thrash",
    "power_cycles",
    "active_hosts",
    "util_spread",
    "messages",
    "agreed",
    "wall_s",
];

fn row(r: &Named) -> Vec<String> {
    let x = &r.result;
    let neg = x.negotiation;
    vec![
        r.name.clone(),
        format!("{:.2}", x.energy_kwh),
        x.migrations.to_string(),
        format!("{:.2}", x.slatah * 100.0),
        format!("{:.3}", x.pdm * 100.0),
        format!("{:.2}", x.slav * 1e5),
        format!("{:.2}", x.esv * 1e3),
        x.thrash_migrations.to_string(),
        x.power_cycles.to_string(),
        format!("{:.1}", x.mean_active_hosts),
        format!("{:.3}", x.util_spread),
        neg.map_or("-".into(), |n| n.messages.to_string()),
        neg.map_or("-".into(), |n| n.agreed.to_string()),
        format!("{:.2}", x.wall_s),
    ]
}

/// A fixed-width table.
pub fn table(meta: &Meta, results: &[Named]) -> String {
    let rows: Vec<Vec<String>> = results.iter().map(row).collect();
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([HEADER[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    writeln!(
        s,
        "{} on {}: {} hosts, {} VMs, seed {}{}",
        meta.scenario,
        meta.dataset,
        meta.hosts,
        meta.vms,
        meta.seed,
        meta.model
            .as_ref()
            .map(|m| format!(", model {m}"))
            .unwrap_or_default()
    )
    .expect("writing to a String cannot fail");
    let line = |cells: &[String]| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let h: Vec<String> = HEADER.iter().map(|s| (*s).to_string()).collect();
    writeln!(s, "{}", line(&h)).expect("writing to a String cannot fail");
    for r in &rows {
        writeln!(s, "{}", line(r)).expect("writing to a String cannot fail");
    }
    writeln!(s, "total wall time {:.2} s", meta.wall_s).expect("writing to a String cannot fail");
    s
}

/// CSV with the table's columns.
pub fn csv(results: &[Named]) -> String {
    let mut s = HEADER.join(",");
    s.push('\n');
    for r in results {
        s.push_str(&row(r).join(","));
        s.push('\n');
    }
    s
}

/// Columns of `--steps-csv`.
pub const STEPS_HEADER: [&str; 9] = [
    "policy",
    "step",
    "t",
    "active_hosts",
    "migrations_step",
    "migrations",
    "energy_kwh",
    "overloaded_hosts",
    "util_spread",
];

/// Every policy's per-interval series as CSV ([`STEPS_HEADER`], the fields of `steps` in the
/// JSON: `t` in seconds from the start, `migrations` and `energy_kwh` so far).
pub fn steps_csv(results: &[Named]) -> String {
    let mut s = STEPS_HEADER.join(",");
    s.push('\n');
    for r in results {
        let name = csv_field(&r.name);
        for x in &r.result.steps {
            writeln!(
                s,
                "{name},{},{},{},{},{},{:.6},{},{:.6}",
                x.step,
                x.t,
                x.active_hosts,
                x.migrations_step,
                x.migrations,
                x.energy_kwh,
                x.overloaded_hosts,
                x.util_spread
            )
            .expect("writing to a String cannot fail");
        }
    }
    s
}

/// Columns of `--migrations-csv`.
pub const MIGRATIONS_HEADER: [&str; 8] = [
    "policy",
    "t",
    "vm",
    "from_host",
    "to_host",
    "thrash",
    "from_util",
    "from_vms",
];

/// `--migrations-csv`: one row per migration ([`MIGRATIONS_HEADER`]; `t` in seconds from the
/// start, host and VM ids as in the scenario and the dataset, `from_host` empty for a VM without
/// a host of record), appended policy by policy into a temporary file renamed into place by
/// [`MigrationCsv::finish`] (removed if the replay fails first).
#[derive(Debug)]
pub struct MigrationCsv {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
}

impl MigrationCsv {
    /// Starts the log at `path` (written at [`Self::finish`]).
    ///
    /// # Errors
    /// The temporary file cannot be created.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let (tmp, f) = tempfile_in(dir.unwrap_or(Path::new(".")), path)?;
        let mut out = std::io::BufWriter::new(f);
        writeln!(out, "{}", MIGRATIONS_HEADER.join(","))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            out: Some(out),
        })
    }

    /// Appends one policy's migrations.
    ///
    /// # Errors
    /// A failed write, or a migration naming a VM or host the run does not have.
    pub fn append(
        &mut self,
        policy: &str,
        log: &[Migration],
        sc: &Scenario,
        wl: &Workload,
    ) -> anyhow::Result<()> {
        let out = self.out.as_mut().context("the migration log is closed")?;
        let policy = csv_field(policy);
        let host = |h: u32| {
            sc.hosts
                .get(h as usize)
                .map(|x| csv_field(&x.id))
                .with_context(|| format!("no host {h} in the scenario"))
        };
        for m in log {
            let vm = wl
                .inventory
                .vms
                .get(m.vm as usize)
                .with_context(|| format!("no VM {} in the workload", m.vm))?;
            let from = m.from.map(host).transpose()?.unwrap_or_default();
            writeln!(
                out,
                "{policy},{},{},{from},{},{},{},{}",
                m.t,
                csv_field(&vm.id),
                host(m.to)?,
                m.thrash,
                m.from_util,
                m.from_vms
            )?;
        }
        Ok(())
    }

    /// Flushes the log and renames it into place.
    ///
    /// # Errors
    /// A failed write or rename.
    pub fn finish(mut self) -> anyhow::Result<()> {
        let out = self.out.take().context("the migration log is closed")?;
        let f = out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("renaming {} into place", self.tmp.display()))?;
        Ok(())
    }
}

impl Drop for MigrationCsv {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Not finished: the replay failed, leave nothing half-written behind.
            if let Err(e) = std::fs::remove_file(&self.tmp) {
                tracing::warn!("removing {}: {e}", self.tmp.display());
            }
        }
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let mut tmp = tempfile_in(dir.unwrap_or(Path::new(".")), path)?;
    tmp.1.write_all(bytes)?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)?;
    Ok(())
}

fn tempfile_in(dir: &Path, path: &Path) -> anyhow::Result<(std::path::PathBuf, std::fs::File)> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    Ok((tmp, f))
}

type Series<'a> = Vec<(&'a str, Vec<(f64, f64)>)>;

fn svg_plot(title: &str, y_label: &str, series: &Series<'_>) -> anyhow::Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (900, 360)).into_drawing_area();
        root.fill(&WHITE)?;
        let x_max = series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.0))
            .fold(1.0f64, f64::max);
        let y_max = series
            .iter()
            .flat_map(|s| s.1.iter().map(|p| p.1))
            .fold(1e-9f64, f64::max)
            * 1.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("hours")
            .y_desc(y_label)
            .draw()?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
    }
    Ok(buf)
}

/// `DIR/index.html`: the table and plots of active hosts, energy and migrations over time.
pub fn report(dir: &Path, meta: &Meta, results: &[Named]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let pick = |f: &dyn Fn(&crate::sim::engine::Step) -> f64| -> Series<'_> {
        results
            .iter()
            .map(|r| {
                (
                    r.name.as_str(),
                    r.result
                        .steps
                        .iter()
                        .map(|s| (s.t / 3600.0, f(s)))
                        .collect(),
                )
            })
            .collect()
    };
    let active = svg_plot(
        "Active hosts",
        "hosts",
        &pick(&|s| f64::from(s.active_hosts)),
    )?;
    let energy = svg_plot("Energy (cumulative)", "kWh", &pick(&|s| s.energy_kwh))?;
    let migr = svg_plot(
        "Migrations (cumulative)",
        "migrations",
        &pick(&|s| s.migrations as f64),
    )?;
    let migr_step = svg_plot(
        "Migrations started per interval",
        "migrations",
        &pick(&|s| s.migrations_step as f64),
    )?;
    let overloaded = svg_plot(
        "Overloaded hosts (given less CPU than requested)",
        "hosts",
        &pick(&|s| f64::from(s.overloaded_hosts)),
    )?;
    let spread = svg_plot(
        "Spread of utilisation across active hosts",
        "std dev",
        &pick(&|s| s.util_spread),
    )?;
    let mut html = String::new();
    write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Keel replay: {}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child{{text-align:left}}</style>\
         </head><body><h1>Keel replay</h1><p>{} on <code>{}</code>: {} hosts, {} VMs, seed {}{}.</p><table><tr>",
        html_escape(&meta.scenario),
        html_escape(&meta.scenario),
        html_escape(&meta.dataset),
        meta.hosts,
        meta.vms,
        meta.seed,
        meta.model
            .as_ref()
            .map(|m| format!(", model <code>{}</code>", html_escape(m)))
            .unwrap_or_default()
    ).expect("writing to a String cannot fail");
    for h in HEADER {
        write!(html, "<th>{h}</th>").expect("writing to a String cannot fail");
    }
    html.push_str("</tr>");
    for r in results {
        html.push_str("<tr>");
        for c in row(r) {
            write!(html, "<td>{}</td>", html_escape(&c)).expect("writing to a String cannot fail");
        }
        html.push_str("</tr>");
    }
    html.push_str("</table>");
    for svg in [active, energy, migr, migr_step, overloaded, spread] {
        write!(html, "<div>{svg}</div>").expect("writing to a String cannot fail");
    }
    html.push_str("</body></html>\n");
    write_atomic(&dir.join("index.html"), html.as_bytes())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Host-level series of one policy in the canonical schema (`vm_id` null), for the trainer.
pub fn export_hosts(
    path: &Path,
    sc: &Scenario,
    wl: &Workload,
    policy: &str,
    series: &HostSeries,
) -> anyhow::Result<()> {
    let inventory = Inventory {
        cpu_unit: wl.inventory.cpu_unit,
        vms: Vec::new(),
        hosts: sc.hosts.clone(),
        source: Some(format!(
            "keel-agent replay, scenario {}, policy {policy}, from {}",
            sc.name,
            wl.inventory.source.as_deref().unwrap_or("a dataset")
        )),
    };
    let mut w = SampleWriter::create(path, &inventory, WriteOptions::default())?;
    let mut buf = Vec::with_capacity(sc.hosts.len());
    for (t, row) in series {
        buf.clear();
        let ts_ms = wl.start_ms + (t * 1000.0).round() as i64;
        for (h, &(cpu, mem)) in row.iter().enumerate() {
            buf.push(Sample {
                ts_ms,
                host_id: Some(sc.hosts[h].id.clone()),
                vm_id: None,
                metrics: Metrics {
                    cpu_util: Some(f64::from(cpu)),
                    mem_used_mib: (!mem.is_nan()).then_some(f64::from(mem)),
                    ..Metrics::default()
                },
            });
        }
        w.write(&buf)?;
    }
    w.finish()?;
    Ok(())
}
