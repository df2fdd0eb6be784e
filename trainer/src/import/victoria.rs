//! `keel-trainer import victoriametrics`: the fleet's canonical rows from VictoriaMetrics.
//!
//! VictoriaMetrics takes the collector's InfluxDB 2 writes unchanged and names each series
//! `{measurement}_{field}`: host rows become `host_cpu_util{host="hv01"}`, VM rows
//! `vm_cpu_util{host="hv01",vm="…"}`. One export per time window
//! (`GET /api/v1/export?match[]=…&start=…&end=…`, JSON lines: `metric`, `values`, `timestamps`)
//! reads the canonical names; rows are merged by `(time, host, vm)` (see [`super::fleet`]).
//!
//! A series is a canonical row only if its labels are `host` (and `vm` for `vm_*`), besides
//! `__name__` and the `db` label VictoriaMetrics adds from the write's bucket: a breakdown that
//! shares a name (`host_net_rx_kib_s{interface="eth0"}`) is skipped and counted. VictoriaMetrics
//! keeps every sample it is sent, so a point written twice (a spool replayed after an
//! acknowledged write was lost) comes back twice and is kept once. For a cluster, `--url` is the
//! `vmselect` prefix, e.g. `http://vmselect:8481/select/0/prometheus`.

use serde::Deserialize;
use std::collections::HashMap;

use super::fleet::{
    self, metric_index, rfc3339, with_retries, FleetArgs, FleetError, FleetSummary, Result, Rows,
    Source, Window, M_HOST, M_VM, TAG_HOST, TAG_VM,
};
use keel_core::schema::METRIC_COLUMNS;

/// Labels a canonical series may carry besides `host` and `vm`.
const IGNORED_LABELS: [&str; 2] = ["__name__", "db"];

/// Arguments of `keel-trainer import victoriametrics`.
#[derive(Debug, Clone, clap::Args)]
pub struct VictoriaArgs {
    /// What to read, from when to when, where to write.
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Runs `keel-trainer import victoriametrics`.
///
/// # Errors
/// Any [`FleetError`]; nothing is written on error.
pub fn run(args: &VictoriaArgs) -> Result<FleetSummary> {
    let source = Victoria::new(&args.fleet)?;
    fleet::import(&args.fleet, &source)
}

/// A VictoriaMetrics server (single node, or a cluster's `vmselect` prefix).
#[derive(Debug)]
pub struct Victoria {
    client: reqwest::Client,
    base: String,
    selector: String,
    policy: fleet::RetryPolicy,
}

impl Victoria {
    /// A reader for `args.url`.
    ///
    /// # Errors
    /// [`FleetError::Args`] for a URL that is not http(s) or an HTTP client that cannot be built.
    pub fn new(args: &FleetArgs) -> Result<Self> {
        let base = args.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(FleetError::Args(format!(
                "--url {base:?} is not an http:// or https:// URL"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(args.timeout)
            .build()
            .map_err(|e| FleetError::Args(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            base,
            selector: selector(&args.hosts),
            policy: fleet::policy(args),
        })
    }
}

/// The series selector: canonical names of both measurements, for `hosts` if any.
pub fn selector(hosts: &[String]) -> String {
    let names = METRIC_COLUMNS.join("|");
    let mut s = format!("{{__name__=~\"({M_HOST}|{M_VM})_({names})\"");
    if !hosts.is_empty() {
        let any: Vec<String> = hosts.iter().map(|h| regex_escape(h)).collect();
        s.push_str(&format!(",{TAG_HOST}=~{}", promql_string(&any.join("|"))));
    }
    s.push('}');
    s
}

/// Escapes regular-expression metacharacters (RE2 syntax).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A PromQL double-quoted string literal.
fn promql_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Seconds with milliseconds, as the export API's `start`/`end` take them.
fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// One line of the export.
#[derive(Debug, Deserialize)]
struct Line {
    metric: HashMap<String, String>,
    values: Vec<serde_json::Value>,
    timestamps: Vec<i64>,
}

impl Source for Victoria {
    async fn fetch(&self, w: Window, rows: &mut Rows) -> Result<()> {
        // `end` is inclusive: stop one millisecond before the next window.
        let start = seconds(w.start_ms);
        let end = seconds(w.stop_ms - 1);
        let name = format!(
            "export {}/api/v1/export?match[]={} for {}..{}",
            self.base,
            self.selector,
            rfc3339(w.start_ms),
            rfc3339(w.stop_ms)
        );
        let url = format!("{}/api/v1/export", self.base);
        let text = with_retries(&name, self.policy, || {
            let req = self.client.get(&url).query(&[
                ("match[]", self.selector.as_str()),
                ("start", start.as_str()),
                ("end", end.as_str()),
            ]);
            fleet::send(&name, req)
        })
        .await?;
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let parse = |message: String| FleetError::Parse {
                query: name.clone(),
                line: i as u64 + 1,
                message,
            };
            let line: Line =
                serde_json::from_str(l).map_err(|e| parse(format!("not an export line: {e}")))?;
            if line.values.len() != line.timestamps.len() {
                return Err(parse(format!(
                    "{} values for {} timestamps",
                    line.values.len(),
                    line.timestamps.len()
                )));
            }
            read_line(&line, w, rows);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("keel-collector rows from VictoriaMetrics at {}", self.base)
    }
}

/// Adds one export line's samples to `rows`, or skips it if it is not a canonical series.
fn read_line(line: &Line, w: Window, rows: &mut Rows) {
    let name = line.metric.get("__name__").map_or("", String::as_str);
    let host = line.metric.get(TAG_HOST).map(String::as_str);
    let vm = line.metric.get(TAG_VM).map(String::as_str);
    let target = name
        .strip_prefix(M_HOST)
        .and_then(|r| r.strip_prefix('_'))
        .and_then(metric_index)
        .map(|m| (m, false))
        .or_else(|| {
            name.strip_prefix(M_VM)
                .and_then(|r| r.strip_prefix('_'))
                .and_then(metric_index)
                .map(|m| (m, true))
        });
    let extra = line
        .metric
        .keys()
        .any(|k| k != TAG_HOST && k != TAG_VM && !IGNORED_LABELS.contains(&k.as_str()));
    let (metric, host, vm) = match (target, host, vm) {
        (Some((m, false)), Some(h), None) if !extra => (m, h, None),
        (Some((m, true)), Some(h), Some(v)) if !extra => (m, h, Some(v)),
        _ => {
            rows.counters.skipped_series += 1;
            return;
        }
    };
    for (v, &ts) in line.values.iter().zip(&line.timestamps) {
        if !w.contains(ts) {
            rows.counters.outside += 1;
            continue;
        }
        match v.as_f64() {
            Some(v) => rows.put(ts, host, vm, metric, v),
            None => rows.counters.non_finite += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Window = Window {
        start_ms: 1000,
        stop_ms: 2000,
    };

    fn line(json: &str) -> Line {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn selector_escapes_hosts() {
        assert_eq!(
            selector(&["a.b".into(), "c\"d".into()]),
            format!(
                "{{__name__=~\"(host|vm)_({})\",host=~\"a\\\\.b|c\\\"d\"}}",
                METRIC_COLUMNS.join("|")
            )
        );
        assert_eq!(seconds(1_700_000_000_123), "1700000000.123");
        assert_eq!(seconds(-1), "-1.999");
    }

    #[test]
    fn only_canonical_series_are_rows() {
        let mut rows = Rows::default();
        for l in [
            r#"{"metric":{"__name__":"host_cpu_util","host":"h","db":"b"},"values":[0.5,0.5,0.7],"timestamps":[1000,1000,2000]}"#,
            r#"{"metric":{"__name__":"host_net_rx_kib_s","host":"h","interface":"eth0"},"values":[9],"timestamps":[1000]}"#,
            r#"{"metric":{"__name__":"host_net_rx_kib_s","host":"h"},"values":[3],"timestamps":[1000]}"#,
            r#"{"metric":{"__name__":"vm_mem_used_mib","host":"h","vm":"v"},"values":[64],"timestamps":[1500]}"#,
            r#"{"metric":{"__name__":"vm_mem_used_mib","host":"h"},"values":[64],"timestamps":[1500]}"#,
            r#"{"metric":{"__name__":"host_system_load1","host":"h"},"values":[1],"timestamps":[1500]}"#,
        ] {
            read_line(&line(l), W, &mut rows);
        }
        let c = rows.counters;
        assert_eq!(
            (c.points, c.duplicates, c.outside, c.skipped_series),
            (4, 1, 1, 3)
        );
        let s = rows.take();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].metrics.cpu_util, Some(0.5));
        assert_eq!(s[0].metrics.net_rx_kib_s, Some(3.0));
        assert_eq!(s[1].vm_id.as_deref(), Some("v"));
        assert_eq!(s[1].metrics.mem_used_mib, Some(64.0));
    }
}
