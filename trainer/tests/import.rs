//! `keel-trainer import` on real fixtures (`datasets/fixtures/`): row counts, ids, timestamps,
//! nulls and inventories read back through `keel_core::parquet_io`, and every kind of bad input
//! failing with the file and line named and no output file left behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_core::inventory::CpuUnit;
use keel_core::parquet_io::read_samples;
use keel_core::schema::{Sample, METRIC_COLUMNS};
use keel_trainer::import::{bitbrains, planetlab, DEFAULT_ZSTD_LEVEL};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/fixtures")
}

fn planetlab_day() -> PathBuf {
    fixtures().join("planetlab/20110303")
}

fn bitbrains_month() -> PathBuf {
    fixtures().join("bitbrains/2013-7")
}

/// Copies a fixture folder to `<parent>/<name>` and returns the copy.
fn copy_dir(src: &Path, parent: &Path, name: &str) -> PathBuf {
    let dst = parent.join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    dst
}

fn sorted_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Exactly the metric columns with the given indices are set; every other one is null.
fn only_metrics(s: &Sample, set: &[usize]) -> bool {
    (0..METRIC_COLUMNS.len()).all(|i| set.contains(&i) == s.metrics.get(i).is_some())
}

#[test]
fn planetlab_fixture_day_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("day.parquet");
    let s = planetlab::import(&planetlab_day(), &out, None, DEFAULT_ZSTD_LEVEL).unwrap();
    let names = sorted_names(&planetlab_day());
    assert_eq!(names.len(), 3);
    assert_eq!(s.rows, 288 * names.len());
    assert_eq!(s.vms, names.len());

    let d = read_samples(&out, None).unwrap();
    assert_eq!(d.samples.len(), 288 * 3);
    let inv = &d.inventory;
    assert_eq!(inv.cpu_unit, CpuUnit::Mips);
    assert!(inv.hosts.is_empty());
    assert!(inv.source.as_deref().unwrap().contains("20110303"));
    let ids: Vec<&str> = inv.vms.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, names.iter().map(String::as_str).collect::<Vec<_>>());
    // Three VMs: blocks of one, CloudSim types 0, 1, 2.
    let mips: Vec<f64> = inv.vms.iter().map(|v| v.cpu_capacity()).collect();
    assert_eq!(mips, vec![2500.0, 2000.0, 1000.0]);
    assert_eq!(inv.vms[1].mem_mib, 1740.0);

    let day0 = 1_299_110_400_000_i64; // 2011-03-03T00:00:00Z
    for (v, name) in names.iter().enumerate() {
        let text = std::fs::read_to_string(planetlab_day().join(name)).unwrap();
        let values: Vec<f64> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
        let rows = &d.samples[v * 288..(v + 1) * 288];
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.vm_id.as_deref(), Some(name.as_str()));
            assert_eq!(r.host_id, None);
            assert_eq!(r.ts_ms, day0 + i as i64 * 300_000);
            assert_eq!(r.metrics.cpu_util, Some(values[i] / 100.0));
            assert_eq!(r.metrics.cpu_demand, Some(values[i] * mips[v] / 100.0));
            assert!(only_metrics(r, &[0, 1]), "{r:?}");
        }
    }
}

#[test]
fn planetlab_start_overrides_the_folder_date() {
    let tmp = tempfile::tempdir().unwrap();
    let day = copy_dir(&planetlab_day(), tmp.path(), "some-day");
    let out = tmp.path().join("x.parquet");
    // Without --start, a folder not named YYYYMMDD is an error naming it.
    let e = planetlab::import(&day, &out, None, 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("some-day") && e.contains("--start"), "{e}");
    assert!(!out.exists());
    let start = chrono::NaiveDate::from_ymd_opt(2020, 2, 29).unwrap();
    planetlab::import(&day, &out, Some(start), 3).unwrap();
    let d = read_samples(&out, None).unwrap();
    assert_eq!(d.samples[0].ts_ms, 1_582_934_400_000); // 2020-02-29T00:00:00Z
    assert_eq!(d.samples[287].ts_ms, 1_582_934_400_000 + 287 * 300_000);
}

/// Runs a failing import into a fresh folder, expects an error containing every one of `want`,
/// and checks that nothing (no output, no temporary file) was left in that folder.
fn assert_fails(import: impl FnOnce(&Path) -> String, want: &[&str]) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.parquet");
    let e = import(&out);
    for w in want {
        assert!(e.contains(w), "error {e:?} should contain {w:?}");
    }
    assert_eq!(
        std::fs::read_dir(out_dir.path()).unwrap().count(),
        0,
        "a failed import left a file"
    );
}

fn planetlab_fails(day: &Path, want: &[&str]) {
    assert_fails(
        |out| {
            planetlab::import(day, out, None, 3)
                .unwrap_err()
                .to_string()
        },
        want,
    );
}

/// Rewrites line `line` (1-based) of a file.
fn set_line(path: &Path, line: usize, text: &str) {
    let body = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = body.lines().map(str::to_owned).collect();
    lines[line - 1] = text.to_string();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn planetlab_bad_input_names_file_and_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let names = sorted_names(&planetlab_day());
    let victim = names[1].as_str();

    // Wrong separator: two values on one line.
    let day = copy_dir(&planetlab_day(), &tmp.path().join("sep"), "20110303");
    set_line(&day.join(victim), 7, "12,13");
    planetlab_fails(&day, &[victim, ":7:", "\"12,13\" is not a number"]);

    // Non-numeric value.
    let day = copy_dir(&planetlab_day(), &tmp.path().join("nan"), "20110303");
    set_line(&day.join(victim), 100, "n/a");
    planetlab_fails(&day, &[victim, ":100:", "not a number"]);

    // Truncated file: 200 of 288 lines.
    let day = copy_dir(&planetlab_day(), &tmp.path().join("trunc"), "20110303");
    let body = std::fs::read_to_string(day.join(victim)).unwrap();
    let cut: String = body.lines().take(200).map(|l| format!("{l}\n")).collect();
    std::fs::write(day.join(victim), cut).unwrap();
    planetlab_fails(
        &day,
        &[victim, ":201:", "truncated: 200 lines, expected 288"],
    );

    // Files of different lengths (two days concatenated).
    let day = copy_dir(&planetlab_day(), &tmp.path().join("long"), "20110303");
    let body = std::fs::read_to_string(day.join(victim)).unwrap();
    std::fs::write(day.join(victim), body.repeat(2)).unwrap();
    planetlab_fails(&day, &[victim, ":289:", "mixed days"]);

    // A folder mixing days: another day's folder inside the input.
    let day = copy_dir(&planetlab_day(), &tmp.path().join("mixed"), "20110303");
    copy_dir(&planetlab_day(), &day, "20110306");
    planetlab_fails(&day, &["20110306", "is a folder"]);

    // Empty folder.
    let empty = tmp.path().join("empty/20110303");
    std::fs::create_dir_all(&empty).unwrap();
    planetlab_fails(&empty, &["20110303", "no trace files"]);

    // Missing folder.
    planetlab_fails(&tmp.path().join("nope/20110303"), &["nope/20110303"]);
}

#[test]
fn planetlab_failure_keeps_an_existing_output_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.parquet");
    std::fs::write(&out, b"previous").unwrap();
    let day = copy_dir(&planetlab_day(), tmp.path(), "20110303");
    set_line(&day.join(sorted_names(&day)[2].as_str()), 288, "x");
    planetlab::import(&day, &out, None, 3).unwrap_err();
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
}

/// One raw Bitbrains row, parsed independently of the importer.
#[derive(Debug, Clone, Copy)]
struct Raw {
    ts: i64,
    f: [f64; 11],
}

fn raw_rows(path: &Path) -> Vec<Raw> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = [0.0; 11];
            for (i, x) in l.split(';').enumerate() {
                f[i] = x.trim().parse().unwrap();
            }
            Raw { ts: f[0] as i64, f }
        })
        .collect()
}

#[test]
fn bitbrains_fixture_month_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.parquet");
    let s = bitbrains::import(
        &bitbrains_month(),
        &out,
        None,
        None,
        None,
        DEFAULT_ZSTD_LEVEL,
    )
    .unwrap();
    let d = read_samples(&out, None).unwrap();
    assert_eq!(d.samples.len(), s.rows);
    let inv = &d.inventory;
    assert_eq!(inv.cpu_unit, CpuUnit::Mhz);
    assert!(inv.hosts.is_empty());
    // Numeric id order: 1, 2, 154 (not 1, 154, 2).
    let ids: Vec<&str> = inv.vms.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["1", "2", "154"]);

    let mut offset = 0;
    let mut null_rows = 0;
    for vm in &inv.vms {
        let raw = raw_rows(&bitbrains_month().join(format!("{}.csv", vm.id)));
        // Inventory: the most common provisioned size among measured rows.
        let measured: Vec<&Raw> = raw.iter().filter(|r| r.f[1] > 0.0).collect();
        let count = |pred: &dyn Fn(&Raw) -> bool| measured.iter().filter(|r| pred(r)).count();
        assert!(count(&|r| f64::from(vm.vcpus) == r.f[1]) * 2 > measured.len());
        assert!(
            count(&|r| (r.f[2] / r.f[1] - vm.cpu_per_vcpu).abs() < 1e-9) * 2 >= measured.len(),
            "{vm:?}"
        );
        assert!(count(&|r| r.f[5] / 1024.0 == vm.mem_mib) * 2 >= measured.len());

        // Grid: first grid point at/after the first sample to the last at/before the last one.
        let first = raw[0].ts;
        let last = raw[raw.len() - 1].ts;
        let g0 = (first + 299) / 300 * 300;
        let n = ((last / 300 * 300 - g0) / 300 + 1) as usize;
        let rows = &d.samples[offset..offset + n];
        offset += n;
        for (k, r) in rows.iter().enumerate() {
            let g = g0 + 300 * k as i64;
            assert_eq!(r.ts_ms, g * 1000);
            assert_eq!(r.vm_id.as_deref(), Some(vm.id.as_str()));
            assert_eq!(r.host_id, None);
            // Sample and hold: the latest raw row at or before g, if at most 450 s old and
            // provisioned; otherwise every metric null (never zero).
            let held = raw
                .iter()
                .rev()
                .find(|x| x.ts <= g)
                .filter(|x| g - x.ts <= 450);
            match held.filter(|x| x.f[1] > 0.0 && x.f[2] > 0.0) {
                Some(x) => {
                    let m = r.metrics;
                    assert_eq!(m.cpu_util, Some(x.f[4] / 100.0));
                    assert_eq!(m.cpu_demand, Some(x.f[3]));
                    assert_eq!(m.mem_used_mib, Some(x.f[6] / 1024.0));
                    assert_eq!(m.disk_read_kib_s, Some(x.f[7]));
                    assert_eq!(m.disk_write_kib_s, Some(x.f[8]));
                    assert_eq!(m.net_rx_kib_s, Some(x.f[9]));
                    assert_eq!(m.net_tx_kib_s, Some(x.f[10]));
                    assert!(only_metrics(r, &[0, 1, 2, 3, 4, 5, 6]), "{r:?}");
                }
                None => {
                    assert!(only_metrics(r, &[]), "{r:?}");
                    null_rows += 1;
                }
            }
        }
    }
    assert_eq!(
        offset,
        d.samples.len(),
        "rows are ordered by VM then time, nothing else"
    );
    // 154.csv: 22 unprovisioned rows and a 31-hour gap are nulls.
    assert!(null_rows > 22 + 300, "{null_rows}");
}

#[test]
fn bitbrains_max_vms_and_window() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.parquet");
    let s = bitbrains::import(&bitbrains_month(), &out, Some(2), None, None, 3).unwrap();
    assert_eq!(s.vms, 2);
    let d = read_samples(&out, None).unwrap();
    let ids: Vec<&str> = d.inventory.vms.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["1", "2"]);
    // A window before 154.csv's rows keeps only VMs 1 and 2, and only grid points inside it.
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2013, 7, d).unwrap();
    let s = bitbrains::import(
        &bitbrains_month(),
        &out,
        None,
        Some(day(1)),
        Some(day(2)),
        3,
    )
    .unwrap();
    assert_eq!(s.vms, 2);
    let d = read_samples(&out, None).unwrap();
    let lo = 1_372_636_800_000; // 2013-07-01T00:00:00Z
    assert!(!d.samples.is_empty());
    assert!(d
        .samples
        .iter()
        .all(|r| r.ts_ms >= lo && r.ts_ms < lo + 86_400_000));
}

fn bitbrains_fails(month: &Path, want: &[&str]) {
    assert_fails(
        |out| {
            bitbrains::import(month, out, None, None, None, 3)
                .unwrap_err()
                .to_string()
        },
        want,
    );
}

#[test]
fn bitbrains_bad_input_names_file_and_line_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = bitbrains_month();
    let line = |n: usize| -> String {
        std::fs::read_to_string(src.join("2.csv"))
            .unwrap()
            .lines()
            .nth(n - 1)
            .unwrap()
            .to_string()
    };

    // Wrong separator (commas) on one row.
    let m = copy_dir(&src, &tmp.path().join("sep"), "2013-7");
    set_line(&m.join("2.csv"), 5, &line(5).replace(";\t", ","));
    bitbrains_fails(&m, &["2.csv:5:", "1 ';'-separated fields"]);

    // Wrong separator in the whole file, header included.
    let m = copy_dir(&src, &tmp.path().join("sep-all"), "2013-7");
    let body = std::fs::read_to_string(m.join("2.csv")).unwrap();
    std::fs::write(m.join("2.csv"), body.replace(";\t", "\t")).unwrap();
    bitbrains_fails(&m, &["2.csv:1:", "wrong separator"]);

    // Non-numeric value.
    let m = copy_dir(&src, &tmp.path().join("nan"), "2013-7");
    set_line(
        &m.join("2.csv"),
        9,
        &line(9).replacen(";\t1;", ";\tone;", 1),
    );
    bitbrains_fails(
        &m,
        &["2.csv:9:", "field 2 (CPU cores): \"one\" is not a number"],
    );

    // A cut-off row in the middle.
    let m = copy_dir(&src, &tmp.path().join("cut"), "2013-7");
    let l = line(20);
    set_line(&m.join("2.csv"), 20, &l[..l.len() / 2]);
    bitbrains_fails(&m, &["2.csv:20:", "cut-off row"]);

    // A truncated file: the last row lost its end and its newline.
    let m = copy_dir(&src, &tmp.path().join("trunc"), "2013-7");
    let body = std::fs::read_to_string(m.join("154.csv")).unwrap();
    std::fs::write(m.join("154.csv"), &body[..body.len() - 3]).unwrap();
    bitbrains_fails(&m, &["154.csv:41:", "truncated"]);

    // Timestamps going backwards.
    let m = copy_dir(&src, &tmp.path().join("back"), "2013-7");
    set_line(&m.join("2.csv"), 30, &line(20));
    bitbrains_fails(&m, &["2.csv:30:", "goes backwards (line 29"]);

    // Empty folder, and a folder of month folders.
    let empty = tmp.path().join("empty/2013-7");
    std::fs::create_dir_all(&empty).unwrap();
    bitbrains_fails(&empty, &["2013-7", "no .csv files"]);
    let nested = tmp.path().join("nested");
    copy_dir(&src, &nested, "2013-7");
    copy_dir(&src, &nested, "2013-8");
    bitbrains_fails(&nested, &["is a folder"]);
}

#[test]
fn cli_imports_fixtures_and_fails_cleanly() {
    let exe = env!("CARGO_BIN_EXE_keel-trainer");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pl.parquet");
    let o = Command::new(exe)
        .args(["import", "planetlab"])
        .arg(planetlab_day())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("864 rows, 3 VMs"));
    assert_eq!(read_samples(&out, None).unwrap().samples.len(), 864);

    let out = tmp.path().join("bb.parquet");
    let o = Command::new(exe)
        .args(["import", "bitbrains", "--max-vms", "1"])
        .arg(bitbrains_month())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 VMs"));

    let bad = copy_dir(&planetlab_day(), tmp.path(), "20110303");
    let victim = sorted_names(&bad)[0].clone();
    set_line(&bad.join(&victim), 3, "1;2");
    let out = tmp.path().join("bad.parquet");
    let o = Command::new(exe)
        .args(["import", "planetlab"])
        .arg(&bad)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{victim}:3:")), "{err}");
    assert!(!out.exists());
}
