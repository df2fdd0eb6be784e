//! Line protocol encoding, by hand with the escaping rules of InfluxDB's line protocol.
//!
//! Host rows become `host,host=<id> cpu_util=…,…` and VM rows `vm,host=<id>,vm=<uuid> …`, with
//! the canonical column names as field names (VictoriaMetrics stores them as `host_cpu_util` etc.;
//! [`crate::series`] lists every measurement and the names it becomes).
//! Null metrics and non-finite values are left out; a point with no field is not written (line
//! protocol requires one). Timestamps are milliseconds (the write uses `precision=ms`).
//!
//! Escaping: measurement names escape `,` and space; tag keys, tag values and field keys escape
//! `,`, `=` and space. Line protocol cannot reliably carry a backslash (parsers reject a name
//! ending in one, escaped or not) nor a newline in a name or tag, so a backslash becomes `/`,
//! control characters become spaces, and an empty tag value (which line protocol forbids) leaves
//! the tag out. The property tests check the output
//! against the `influxdb-line-protocol` parser.

use std::fmt::Write as _;

use keel_core::schema::{Sample, METRIC_COLUMNS};

use crate::sources::{Detail, Round};

pub use crate::series::{M_HOST, M_VM};

fn push_escaped(out: &mut String, s: &str, specials: &[char]) {
    for c in s.chars() {
        let c = match c {
            c if c.is_control() => ' ',
            // Parsers disagree on backslashes (InfluxDB's own rejects a name ending in one,
            // escaped or not), so a backslash is written as a slash.
            '\\' => '/',
            c => c,
        };
        if specials.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Appends an escaped measurement name.
pub fn measurement(out: &mut String, s: &str) {
    push_escaped(out, s, &[',', ' ']);
}

/// Appends an escaped tag key, tag value or field key.
pub fn key(out: &mut String, s: &str) {
    push_escaped(out, s, &[',', '=', ' ']);
}

/// Builds one line (without the trailing newline) or `None` if there is no finite field.
pub fn line<'a>(
    meas: &str,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    fields: impl IntoIterator<Item = (&'a str, f64)>,
    ts_ms: i64,
) -> Option<String> {
    let mut out = String::with_capacity(128);
    measurement(&mut out, meas);
    let mut tags: Vec<(&str, &str)> = tags.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    // Sorted tags are what InfluxDB prefers (cheaper series lookup); the order carries no meaning.
    tags.sort_unstable();
    for (k, v) in tags {
        out.push(',');
        key(&mut out, k);
        out.push('=');
        key(&mut out, v);
    }
    let mut first = true;
    for (k, v) in fields {
        if !v.is_finite() {
            continue;
        }
        out.push(if first { ' ' } else { ',' });
        first = false;
        key(&mut out, k);
        // `{:?}` always shows a decimal point or exponent, so the value reads back as a float.
        _ = write!(out, "={v:?}");
    }
    if first {
        return None;
    }
    _ = write!(out, " {ts_ms}");
    Some(out)
}

/// The line of one canonical row.
pub fn sample_line(s: &Sample) -> Option<String> {
    let fields =
        (0..METRIC_COLUMNS.len()).filter_map(|i| s.metrics.get(i).map(|v| (METRIC_COLUMNS[i], v)));
    let host = s.host_id.as_deref().unwrap_or("");
    match &s.vm_id {
        Some(vm) => line(M_VM, [("host", host), ("vm", vm.as_str())], fields, s.ts_ms),
        None => line(M_HOST, [("host", host)], fields, s.ts_ms),
    }
}

/// The line of one breakdown point.
pub fn detail_line(d: &Detail, ts_ms: i64) -> Option<String> {
    line(
        d.measurement,
        d.tags.iter().map(|(k, v)| (*k, v.as_str())),
        d.fields.iter().copied(),
        ts_ms,
    )
}

/// All lines of a round, in order: rows first, then breakdowns.
pub fn round_lines(r: &Round) -> Vec<String> {
    r.samples
        .iter()
        .filter_map(sample_line)
        .chain(r.details.iter().filter_map(|d| detail_line(d, r.ts_ms)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use influxdb_line_protocol::{parse_lines, FieldValue};
    use keel_core::schema::Metrics;
    use proptest::prelude::*;

    #[test]
    fn host_row_snapshot() {
        let s = Sample {
            ts_ms: 1_700_000_000_000,
            host_id: Some("hv 01".into()),
            vm_id: None,
            metrics: Metrics {
                cpu_util: Some(0.25),
                mem_used_mib: Some(1024.0),
                cpu_steal: Some(0.0),
                psi_io_full: Some(f64::NAN),
                ..Default::default()
            },
        };
        insta::assert_snapshot!(sample_line(&s).unwrap(), @r"host,host=hv\ 01 cpu_util=0.25,mem_used_mib=1024.0,cpu_steal=0.0 1700000000000");
    }

    #[test]
    fn backslashes_and_newlines_are_replaced() {
        let l = line("m\\", [("t", "a\nb\\")], [("f", 1.0)], 5).unwrap();
        assert_eq!(l, "m/,t=a\\ b/ f=1.0 5");
    }

    #[test]
    fn empty_points_are_skipped() {
        let s = Sample {
            ts_ms: 0,
            host_id: None,
            vm_id: None,
            metrics: Metrics::default(),
        };
        assert_eq!(sample_line(&s), None);
    }

    fn name() -> impl Strategy<Value = String> {
        // Any printable text, including every character line protocol escapes.
        "[a-zA-Z0-9_ ,=\".\\-é]{1,12}".prop_filter("not only spaces", |s| !s.trim().is_empty())
    }

    proptest! {
        #[test]
        fn lines_parse_back_exactly(
            meas in name(),
            tags in proptest::collection::btree_map(name(), name(), 0..4),
            fields in proptest::collection::btree_map(name(), any::<f64>(), 1..5),
            ts in any::<i64>(),
        ) {
            let l = line(&meas, tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                         fields.iter().map(|(k, v)| (k.as_str(), *v)), ts);
            let finite: Vec<(&String, &f64)> = fields.iter().filter(|(_, v)| v.is_finite()).collect();
            let Some(l) = l else {
                prop_assert!(finite.is_empty());
                return Ok(());
            };
            let parsed: Vec<_> = parse_lines(&l).collect();
            prop_assert_eq!(parsed.len(), 1, "{}", l);
            let p = parsed.into_iter().next().unwrap();
            let p = match p { Ok(p) => p, Err(e) => { prop_assert!(false, "{l}: {e}"); unreachable!() } };
            prop_assert_eq!(p.series.measurement.to_string(), meas);
            let got_tags: Vec<(String, String)> = p.series.tag_set.iter().flatten()
                .map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let want_tags: Vec<(String, String)> = tags.into_iter().collect();
            prop_assert_eq!(got_tags, want_tags);
            prop_assert_eq!(p.field_set.len(), finite.len());
            for ((k, v), (pk, pv)) in finite.iter().zip(p.field_set.iter()) {
                prop_assert_eq!(k.as_str(), pk.to_string());
                match pv {
                    FieldValue::F64(x) => prop_assert_eq!(x.to_bits(), v.to_bits()),
                    other => prop_assert!(false, "not a float: {:?}", other),
                }
            }
            prop_assert_eq!(p.timestamp, Some(ts));
        }
    }
}
