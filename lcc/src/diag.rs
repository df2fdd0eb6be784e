//! Diagnostics: errors rendered with the source excerpt (through `ariadne`, without colour) and
//! the one-line `file:line:col: message` form for command-line tools.

use crate::error::Error;
use crate::span::SourceMap;

/// Renders `err` with a source excerpt, as a multi-line report.
#[must_use]
pub fn render(map: &SourceMap, err: &Error) -> String {
    use ariadne::{Config, Label, Report, ReportKind, Source};
    let name = map.name().to_owned();
    let len = map.source().len();
    let mut start = (err.span.start as usize).min(len);
    let mut end = (err.span.end as usize).clamp(start, len);
    while !map.source().is_char_boundary(start) {
        start -= 1;
    }
    while !map.source().is_char_boundary(end) {
        end += 1;
    }
    // ariadne counts characters, not bytes.
    let cs = map.source()[..start].chars().count();
    let ce = cs + map.source()[start..end].chars().count();
    let (line, col) = map.line_col(err.span.start);
    let report = Report::build(ReportKind::Error, (name.clone(), cs..ce))
        .with_config(Config::default().with_color(false))
        .with_message(format!("{err} at {line}:{col}"))
        .with_label(Label::new((name.clone(), cs..ce)).with_message(err.to_string()))
        .finish();
    let mut buf = Vec::new();
    if report
        .write((name, Source::from(map.source())), &mut buf)
        .is_err()
    {
        return short(map, err);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// `file:line:col: message`.
#[must_use]
pub fn short(map: &SourceMap, err: &Error) -> String {
    let (line, col) = map.line_col(err.span.start);
    format!("{}:{line}:{col}: {err}", map.name())
}
