//! Byte-offset spans and a [`SourceMap`] that turns them into line and column only when a
//! diagnostic is rendered.

use std::fmt;

/// A half-open byte range `start..end` into the source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// A span from `start` to `end` (byte offsets).
    #[must_use]
    pub const fn new(start: u32, end: u32) -> Self {
        Self { start, end }
    }

    /// The span covering both `self` and `other`.
    #[must_use]
    pub fn to(self, other: Self) -> Self {
        Self {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    /// The span as a `usize` range, for slicing the source.
    #[must_use]
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// A source text with its name, for rendering positions (`file:line:col`).
#[derive(Clone, Debug)]
pub struct SourceMap {
    name: String,
    src: String,
    line_starts: Vec<u32>,
}

impl SourceMap {
    /// Indexes `src`, called `name` in diagnostics.
    #[must_use]
    pub fn new(name: impl Into<String>, src: impl Into<String>) -> Self {
        let src = src.into();
        let mut line_starts = vec![0];
        for (i, b) in src.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(u32::try_from(i + 1).unwrap_or(u32::MAX));
            }
        }
        Self {
            name: name.into(),
            src,
            line_starts,
        }
    }

    /// The name given at construction (usually a file path).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The source text.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.src
    }

    /// 1-based line and column (in characters) of byte offset `offset`, clamped to the text.
    #[must_use]
    pub fn line_col(&self, offset: u32) -> (usize, usize) {
        let offset = (offset as usize).min(self.src.len());
        let line = self
            .line_starts
            .partition_point(|&s| s as usize <= offset)
            .saturating_sub(1);
        let start = self.line_starts.get(line).copied().unwrap_or(0) as usize;
        let mut col_end = offset;
        while !self.src.is_char_boundary(col_end) {
            col_end -= 1;
        }
        let col = self
            .src
            .get(start..col_end)
            .map_or(0, |s| s.chars().count());
        (line + 1, col + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_and_in_chars() {
        let m = SourceMap::new("f", "ab\n⇒c\n");
        assert_eq!(m.line_col(0), (1, 1));
        assert_eq!(m.line_col(1), (1, 2));
        assert_eq!(m.line_col(3), (2, 1));
        assert_eq!(m.line_col(6), (2, 2));
        assert_eq!(m.line_col(100), (3, 1));
    }
}
