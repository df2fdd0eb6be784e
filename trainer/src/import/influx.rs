//! `keel-trainer import influx`: the fleet's canonical rows from an InfluxDB 2 bucket.
//!
//! One Flux query per time window (`POST /api/v2/query?org=…`, `Authorization: Token …`):
//!
//! ```text
//! from(bucket: "B")
//!   |> range(start: 2026-11-27T10:00:00.000Z, stop: 2026-11-27T11:00:00.000Z)
//!   |> filter(fn: (r) => r._measurement == "host" or r._measurement == "vm")
//!   |> filter(fn: (r) => r.host == "hv01" or r.host == "hv02")            // with --hosts
//!   |> filter(fn: (r) => contains(value: r._field, set: ["cpu_util", …]))  // canonical fields
//!   |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
//! ```
//!
//! The answer is annotated CSV (`#datatype`, `#group`, `#default` rows before each table's
//! header): one row per series and instant, a column per field present in that table. Rows are
//! merged by `(time, host, vm)` (see [`super::fleet`]); a metric missing from a table is null.
//! Long-form rows (`_field`, `_value` columns, as an unpivoted query returns) are read too.
//! An error table (`error`, `reference` columns) or any value that is not what its column says
//! is a [`FleetError::Parse`] naming the query's window and the line.
//!
//! The HTTP requests go through `reqwest` and the CSV through the `csv` crate rather than the
//! `influxdb2` crate's query API: version 0.5.2 panics on a malformed value in an answer
//! (`parse_value` unwraps the number and time parses, `query_raw` unwraps reading the body),
//! which an import must report as an error, not a crash.
//!
//! No InfluxDB 2 server is packaged for Debian (`apt-cache policy influxdb2 influxdb` finds no
//! candidate), so the tests serve recorded annotated-CSV answers from a real HTTP server on
//! 127.0.0.1 (`tests/fixtures/influx/`).

use std::path::PathBuf;

use serde_json::json;

use super::fleet::{
    self, metric_index, rfc3339, with_retries, FleetArgs, FleetError, FleetSummary, Result, Rows,
    Source, Window, M_HOST, M_VM, TAG_HOST, TAG_VM,
};
use keel_core::schema::METRIC_COLUMNS;

/// An API token; `Debug` does not show it.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl std::str::FromStr for Token {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(Self(s.to_owned()))
    }
}

/// Arguments of `keel-trainer import influx`.
#[derive(Debug, Clone, clap::Args)]
pub struct InfluxArgs {
    /// What to read, from when to when, where to write.
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Organisation.
    #[arg(long, env = "KEEL_INFLUX_ORG")]
    pub org: String,
    /// Bucket the collectors write to.
    #[arg(long, env = "KEEL_INFLUX_BUCKET")]
    pub bucket: String,
    /// API token with read access to the bucket.
    #[arg(
        long,
        env = "KEEL_INFLUX_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<Token>,
    /// File holding the token (surrounding whitespace ignored).
    #[arg(long, env = "KEEL_INFLUX_TOKEN_FILE", value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

/// Runs `keel-trainer import influx`.
///
/// # Errors
/// No token, an unreadable token file, or any [`FleetError`]; nothing is written on error.
pub fn run(args: &InfluxArgs) -> anyhow::Result<FleetSummary> {
    use anyhow::Context as _;
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.0.clone(),
        (None, Some(p)) => std::fs::read_to_string(p)
            .with_context(|| format!("reading the token file {}", p.display()))?
            .trim()
            .to_owned(),
        (None, None) => anyhow::bail!("give --token or --token-file (or KEEL_INFLUX_TOKEN)"),
    };
    let source = Influx::new(args, &token)?;
    Ok(fleet::import(&args.fleet, &source)?)
}

/// An InfluxDB 2 bucket, read through Flux.
#[derive(Debug)]
pub struct Influx {
    client: reqwest::Client,
    query_url: String,
    base: String,
    org: String,
    bucket: String,
    hosts: Vec<String>,
    /// `Token …`; kept out of `Debug`.
    auth: Token,
    policy: fleet::RetryPolicy,
}

impl Influx {
    /// A reader for `args`' bucket with `token`.
    ///
    /// # Errors
    /// [`FleetError::Args`] for a URL that is not http(s) or an HTTP client that cannot be built.
    pub fn new(args: &InfluxArgs, token: &str) -> Result<Self> {
        let base = args.fleet.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(FleetError::Args(format!(
                "--url {base:?} is not an http:// or https:// URL"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(args.fleet.timeout)
            .build()
            .map_err(|e| FleetError::Args(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            query_url: format!("{base}/api/v2/query"),
            base,
            org: args.org.clone(),
            bucket: args.bucket.clone(),
            hosts: args.fleet.hosts.clone(),
            auth: Token(format!("Token {token}")),
            policy: fleet::policy(&args.fleet),
        })
    }

    /// The Flux text of window `w`.
    pub fn flux(&self, w: Window) -> String {
        flux(&self.bucket, &self.hosts, w)
    }
}

/// The Flux query of window `w`: canonical fields of `host` and `vm`, pivoted to rows.
pub fn flux(bucket: &str, hosts: &[String], w: Window) -> String {
    let mut q = format!(
        "from(bucket: {})\n  |> range(start: {}, stop: {})\n  \
         |> filter(fn: (r) => r._measurement == {} or r._measurement == {})\n",
        flux_string(bucket),
        rfc3339(w.start_ms),
        rfc3339(w.stop_ms),
        flux_string(M_HOST),
        flux_string(M_VM),
    );
    if !hosts.is_empty() {
        let any: Vec<String> = hosts
            .iter()
            .map(|h| format!("r.{TAG_HOST} == {}", flux_string(h)))
            .collect();
        q.push_str(&format!("  |> filter(fn: (r) => {})\n", any.join(" or ")));
    }
    let fields: Vec<String> = METRIC_COLUMNS.iter().map(|c| flux_string(c)).collect();
    q.push_str(&format!(
        "  |> filter(fn: (r) => contains(value: r._field, set: [{}]))\n  \
         |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")\n",
        fields.join(", ")
    ));
    q
}

/// A Flux string literal: `\`, `"` and `$` (interpolation) escaped.
fn flux_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' | '"' | '$' => {
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

impl Source for Influx {
    async fn fetch(&self, w: Window, rows: &mut Rows) -> Result<()> {
        let flux = self.flux(w);
        let name = format!(
            "Flux query on {} bucket {:?} for {}..{}",
            self.base,
            self.bucket,
            rfc3339(w.start_ms),
            rfc3339(w.stop_ms)
        );
        let body = json!({
            "query": flux,
            "type": "flux",
            "dialect": {"header": true, "annotations": ["datatype", "group", "default"]},
        })
        .to_string();
        let text = with_retries(&name, self.policy, || {
            let req = self
                .client
                .post(&self.query_url)
                .query(&[("org", self.org.as_str())])
                .header("Authorization", &self.auth.0)
                .header("Accept", "application/csv")
                .header("Content-Type", "application/json")
                .body(body.clone());
            fleet::send(&name, req)
        })
        .await?;
        parse_annotated_csv(&text, w, rows).map_err(|(line, message)| FleetError::Parse {
            query: name.clone(),
            line,
            message,
        })
    }

    fn describe(&self) -> String {
        format!(
            "keel-collector rows from InfluxDB 2 at {} bucket {:?}",
            self.base, self.bucket
        )
    }
}

/// What one column of the current table is to the import.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Col {
    Time,
    Measurement,
    Host,
    Vm,
    Metric(usize),
    Field,
    Value,
    Other,
}

/// The header and annotations of the table being read.
#[derive(Debug, Default)]
struct Table {
    cols: Vec<Col>,
    names: Vec<String>,
    defaults: Vec<String>,
    error: bool,
}

/// Reads an annotated-CSV answer into `rows`. Errors are `(line, message)`.
fn parse_annotated_csv(
    text: &str,
    w: Window,
    rows: &mut Rows,
) -> std::result::Result<(), (u64, String)> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rec = csv::StringRecord::new();
    let mut table: Option<Table> = None;
    let mut defaults: Vec<String> = Vec::new();
    let mut in_annotations = false;
    loop {
        let line = rdr.position().line();
        match rdr.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err((line, format!("not CSV: {e}"))),
        }
        // Counted from the byte offset: after a `\r\n` the reader's record starts at the `\n`.
        let line = rec.position().map_or(line, |p| {
            let b = text.as_bytes();
            let mut at = usize::try_from(p.byte()).unwrap_or(usize::MAX).min(b.len());
            while at < b.len() && (b[at] == b'\n' || b[at] == b'\r') {
                at += 1;
            }
            b[..at].iter().filter(|&&c| c == b'\n').count() as u64 + 1
        });
        let first = rec.get(0).unwrap_or("");
        if rec.len() <= 1 && first.trim().is_empty() {
            continue;
        }
        if first.starts_with('#') {
            if !in_annotations {
                table = None;
                defaults.clear();
                in_annotations = true;
            }
            if first == "#default" {
                defaults = rec.iter().skip(1).map(str::to_owned).collect();
            }
            continue;
        }
        if !first.is_empty() {
            return Err((
                line,
                format!("first cell {first:?} is neither empty nor an annotation"),
            ));
        }
        let Some(t) = table.as_ref() else {
            // The header row of a new table.
            in_annotations = false;
            let names: Vec<String> = rec.iter().skip(1).map(str::to_owned).collect();
            let cols = names
                .iter()
                .map(|n| match n.as_str() {
                    "_time" => Col::Time,
                    "_measurement" => Col::Measurement,
                    "_field" => Col::Field,
                    "_value" => Col::Value,
                    n if n == TAG_HOST => Col::Host,
                    n if n == TAG_VM => Col::Vm,
                    n => metric_index(n).map_or(Col::Other, Col::Metric),
                })
                .collect();
            let error = names.first().is_some_and(|n| n == "error");
            table = Some(Table {
                cols,
                names,
                defaults: std::mem::take(&mut defaults),
                error,
            });
            continue;
        };
        if t.error {
            let msg = rec.get(1).unwrap_or("").trim();
            let reference = rec.get(2).unwrap_or("").trim();
            return Err((
                line,
                format!(
                    "the server reports an error: {}{}",
                    if msg.is_empty() {
                        "unknown query error"
                    } else {
                        msg
                    },
                    if reference.is_empty() {
                        String::new()
                    } else {
                        format!(" (reference {reference})")
                    }
                ),
            ));
        }
        read_row(t, &rec, w, rows).map_err(|m| (line, m))?;
    }
    Ok(())
}

/// Cell `i` of a data row (after the annotation column), or the column's `#default` if empty.
fn cell<'a>(t: &'a Table, rec: &'a csv::StringRecord, i: usize) -> &'a str {
    let v = rec.get(i + 1).unwrap_or("");
    if v.is_empty() {
        t.defaults.get(i).map_or("", String::as_str)
    } else {
        v
    }
}

fn read_row(
    t: &Table,
    rec: &csv::StringRecord,
    w: Window,
    rows: &mut Rows,
) -> std::result::Result<(), String> {
    if rec.len() != t.cols.len() + 1 {
        return Err(format!(
            "{} cells where the header has {}",
            rec.len().saturating_sub(1),
            t.cols.len()
        ));
    }
    let cell = |i: usize| cell(t, rec, i);
    let mut ts = None;
    let mut meas = "";
    let mut host = "";
    let mut vm = "";
    let mut field = None;
    let mut value = None;
    for (i, c) in t.cols.iter().enumerate() {
        match c {
            Col::Time => {
                let v = cell(i);
                ts = Some(
                    chrono::DateTime::parse_from_rfc3339(v)
                        .map_err(|e| format!("column _time: {v:?} is not an RFC 3339 time: {e}"))?
                        .timestamp_millis(),
                );
            }
            Col::Measurement => meas = cell(i),
            Col::Host => host = cell(i),
            Col::Vm => vm = cell(i),
            Col::Field => field = Some(cell(i)),
            Col::Value => value = Some(i),
            Col::Metric(_) | Col::Other => {}
        }
    }
    let Some(ts) = ts else {
        return Err("the table has no _time column".into());
    };
    if !w.contains(ts) {
        rows.counters.outside += 1;
        return Ok(());
    }
    let vm = match meas {
        m if m == M_HOST => None,
        m if m == M_VM && !vm.is_empty() => Some(vm),
        _ => {
            rows.counters.skipped_series += 1;
            return Ok(());
        }
    };
    if host.is_empty() {
        rows.counters.skipped_series += 1;
        return Ok(());
    }
    let number = |i: usize| -> std::result::Result<Option<f64>, String> {
        let v = cell(i);
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<f64>()
            .map(Some)
            .map_err(|_| format!("column {}: {v:?} is not a number", t.names[i]))
    };
    for (i, c) in t.cols.iter().enumerate() {
        if let Col::Metric(m) = c {
            if let Some(v) = number(i)? {
                rows.put(ts, host, vm, *m, v);
            }
        }
    }
    if let (Some(f), Some(vi)) = (field, value) {
        if let Some(m) = metric_index(f) {
            if let Some(v) = number(vi)? {
                rows.put(ts, host, vm, m, v);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Window = Window {
        start_ms: 1_700_000_000_000,
        stop_ms: 1_700_000_060_000,
    };

    #[test]
    fn flux_escapes_and_filters() {
        let q = flux("b\"$x", &["h1".into(), "h\\2".into()], W);
        assert!(q.starts_with("from(bucket: \"b\\\"\\$x\")"), "{q}");
        assert!(
            q.contains("range(start: 2023-11-14T22:13:20.000Z, stop: 2023-11-14T22:14:20.000Z)"),
            "{q}"
        );
        assert!(
            q.contains("r.host == \"h1\" or r.host == \"h\\\\2\""),
            "{q}"
        );
        assert!(q.contains("\"psi_io_full\"]"), "{q}");
    }

    #[test]
    fn pivoted_tables_become_rows() {
        let csv = "#group,false,false,true,true,false,true,true,false,false\r\n\
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,string,string,double,double\r\n\
#default,_result,,,,,,,,\r\n\
,result,table,_start,_stop,_time,_measurement,host,cpu_util,mem_used_mib\r\n\
,,0,2023-11-14T22:13:20Z,2023-11-14T22:14:20Z,2023-11-14T22:13:21Z,host,h1,0.5,100\r\n\
,,0,2023-11-14T22:13:20Z,2023-11-14T22:14:20Z,2023-11-14T22:13:22Z,host,h1,,101\r\n\
\r\n\
#group,false,false,true,true,false,true,true,true,false\r\n\
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,string,string,string,double\r\n\
#default,_result,,,,,,,,\r\n\
,result,table,_start,_stop,_time,_measurement,host,vm,cpu_util\r\n\
,,1,2023-11-14T22:13:20Z,2023-11-14T22:14:20Z,2023-11-14T22:13:21Z,vm,h1,v1,0.25\r\n\r\n";
        let mut rows = Rows::default();
        parse_annotated_csv(csv, W, &mut rows).unwrap();
        let s = rows.take();
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].metrics.cpu_util, s[0].metrics.mem_used_mib),
            (Some(0.5), Some(100.0))
        );
        assert_eq!(s[1].vm_id.as_deref(), Some("v1"));
        assert_eq!(
            (s[2].metrics.cpu_util, s[2].metrics.mem_used_mib),
            (None, Some(101.0))
        );
    }

    #[test]
    fn bad_values_and_error_tables_name_the_line() {
        let csv = "#datatype,string,long,dateTime:RFC3339,string,string,double\r\n\
,result,table,_time,_measurement,host,cpu_util\r\n\
,,0,2023-11-14T22:13:21Z,host,h1,0.5\r\n\
,,0,2023-11-14T22:13:22Z,host,h1,zero\r\n";
        let err = parse_annotated_csv(csv, W, &mut Rows::default()).unwrap_err();
        assert_eq!(err.0, 4);
        assert!(
            err.1.contains("cpu_util") && err.1.contains("zero"),
            "{err:?}"
        );
        let csv = "#datatype,string,string\n#group,true,true\n#default,,\n,error,reference\n,\"failed to parse: bad\",897\n";
        let err = parse_annotated_csv(csv, W, &mut Rows::default()).unwrap_err();
        assert_eq!(err.0, 5);
        assert!(
            err.1.contains("failed to parse: bad") && err.1.contains("897"),
            "{err:?}"
        );
    }
}
