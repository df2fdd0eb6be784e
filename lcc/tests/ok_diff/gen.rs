//! A seeded, grammar-based generator of LCC texts.
//!
//! The core grammar is the OpenKnowledge (OK) parser's own (`lcc.jjt` in OK's
//! `lcc-interpreter.jar`): role headers, `@annotation(...)` blocks, clauses whose bodies mix
//! `then`/`or` with and without parentheses, sends and receives with `and`-chains of constraints
//! (calls, `=`, `<`, `>`, `==`, lists `[]`, `[H|T]`, `[A,B]`), `null <- C`, role changes, numbers,
//! strings and every separator OK skips (spaces, tabs, LF, CRLF, CR, `//` and `/* */` comments),
//! including none at all next to punctuation. A text built from core productions only is one OK
//! should accept. Some productions are Keel extensions and tag the text with the extension's name
//! (each listed in `lcc/README.md`); some are not LCC at all and tag it `invalid`.

use std::collections::BTreeSet;

/// Extensions: forms Keel accepts and OK does not. Each name is a row of lcc/README.md.
pub(crate) const EXTENSIONS: &[&str] = &[
    "par",
    "missing-header",
    "percent-comment",
    "line-comment-at-end",
    "dot-terminator",
    "unicode-operators",
    "prolog-terms",
    "atom-message",
    "constraint-connectives",
    "comparisons",
    "string-ids",
    "parameterised-roles",
    "guarded-role-change",
    "paper-form",
    "negative-numbers",
    "underscore-variables",
    "free-order",
    "long-arrow",
    "no-clauses",
];

/// A generated text and the extensions (or `invalid`) it uses.
#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) text: String,
    pub(crate) tags: BTreeSet<&'static str>,
}

/// SplitMix64: small, seeded, good enough for test generation.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `p` percent.
    pub(crate) fn pct(&mut self, p: u32) -> bool {
        self.below(100) < p as usize
    }

    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// OK's keywords and Keel's `not`: never used as names.
const RESERVED: &[&str] = &[
    "a",
    "r",
    "null",
    "or",
    "then",
    "and",
    "par",
    "not",
    "necessary",
    "initial",
    "optional",
    "auxiliary",
];

struct Gen<'r> {
    rng: &'r mut Rng,
    tags: BTreeSet<&'static str>,
    /// Percent chance of taking an extension production where there is one.
    ext: u32,
    /// Percent chance of an `invalid` production.
    bad: u32,
    roles: Vec<String>,
    depth: usize,
    in_annotation: bool,
}

/// Builds one sample. `ext` and `bad` are the percent chances per production site of an
/// extension and of a deliberate error.
pub(crate) fn sample(rng: &mut Rng, ext: u32, bad: u32) -> Sample {
    let mut g = Gen {
        rng,
        tags: BTreeSet::new(),
        ext,
        bad,
        roles: Vec::new(),
        depth: 0,
        in_annotation: false,
    };
    let toks = g.framework();
    let text = g.layout(&toks);
    Sample { text, tags: g.tags }
}

impl Gen<'_> {
    fn ext(&mut self, tag: &'static str) -> bool {
        if self.rng.pct(self.ext) {
            self.tags.insert(tag);
            true
        } else {
            false
        }
    }

    fn bad(&mut self) -> bool {
        if self.rng.pct(self.bad) {
            self.tags.insert("invalid");
            true
        } else {
            false
        }
    }

    /// A constant as OK lexes it: lower-case or `$` first, then letters, digits, `_`, `$`, and
    /// `.`, `:`, `@` between identifier characters.
    fn name(&mut self) -> String {
        if self.rng.pct(10) {
            // Names that start like a keyword.
            return self
                .rng
                .pick(&[
                    "android", "order", "thenx", "nullify", "parx", "andy", "rr", "ab", "nota",
                ])
                .to_string();
        }
        loop {
            let mut s = String::new();
            s.push(*self.rng.pick(&['m', 'p', 'q', 'x', 'g', '$', 'w', 'c']));
            for _ in 0..self.rng.below(6) {
                s.push(
                    *self
                        .rng
                        .pick(&['a', 'b', 'k', 'Z', 'Q', '0', '7', '_', '$', 'e', 'n', 's']),
                );
            }
            if self.rng.pct(8) {
                s.push(*self.rng.pick(&['.', ':', '@']));
                s.push(*self.rng.pick(&['b', 'X', '1', '_']));
            }
            if !RESERVED.contains(&s.as_str()) {
                return s;
            }
        }
    }

    fn var(&mut self) -> String {
        let mut s = self.rng.pick(&["X", "Y", "A", "N", "Id", "M"]).to_string();
        for _ in 0..self.rng.below(4) {
            s.push(*self.rng.pick(&['a', 'Z', '1', '_', '$', 'x']));
        }
        s
    }

    fn role_name(&mut self) -> String {
        if !self.roles.is_empty() && self.rng.pct(70) {
            return self.rng.pick(&self.roles).clone();
        }
        let n = self.name();
        if !self.roles.contains(&n) {
            self.roles.push(n.clone());
        }
        n
    }

    /// OK's `variable()`: a variable, integer, float or string.
    fn value(&mut self, out: &mut Vec<String>) {
        if self.ext("negative-numbers") {
            out.push("-".into());
            out.push(self.rng.below(100).to_string());
            return;
        }
        if self.ext("underscore-variables") {
            out.push(self.rng.pick(&["_", "_Tmp", "_x"]).to_string());
            return;
        }
        if self.ext("prolog-terms") {
            match self.rng.below(3) {
                0 => out.push(self.name()),
                1 => {
                    out.push(self.name());
                    out.push("(".into());
                    out.push(self.var());
                    out.push(")".into());
                }
                _ => {
                    out.push("[".into());
                    out.push(self.var());
                    out.push("]".into());
                }
            }
            return;
        }
        let v = match self.rng.below(10) {
            0..=4 => self.var(),
            5 | 6 => self.rng.below(1000).to_string(),
            7 => self
                .rng
                .pick(&[
                    "1.5", "2.", ".25", "3e2", "1.5e-3", "7f", "2.5D", "0x1.8p1", "1E+2d", "1.e5",
                    ".5e-2f", "0X.8P-1", "0x1p3d", "007",
                ])
                .to_string(),
            _ => self
                .rng
                .pick(&[
                    "\"r0\"",
                    "\"\"",
                    "\"a b\"",
                    "\"q\\\"x\"",
                    "\"tab\\t\\101\\b\\f\"",
                    "\"then ( // not\"",
                    "\"line\\\ncontinued\"",
                ])
                .to_string(),
        };
        out.push(v);
    }

    fn values(&mut self, out: &mut Vec<String>) {
        let n = 1 + self.rng.below(3);
        for i in 0..n {
            if i > 0 {
                out.push(",".into());
            }
            self.value(out);
        }
    }

    /// OK's `method()`: `name(args?)`.
    fn method(&mut self, out: &mut Vec<String>) {
        // Keel keeps annotations verbatim and does not read inside them.
        if !self.in_annotation && self.bad() {
            // A variable as functor: not LCC, not Prolog.
            out.push(self.var());
        } else {
            out.push(self.name());
        }
        out.push("(".into());
        if self.rng.pct(75) {
            self.values(out);
        }
        out.push(")".into());
    }

    fn constraint(&mut self, out: &mut Vec<String>) {
        if self.ext("constraint-connectives") {
            match self.rng.below(3) {
                0 => {
                    out.push(self.rng.pick(&["not", "\\+"]).to_string());
                    self.method(out);
                }
                _ => {
                    out.push("(".into());
                    self.method(out);
                    out.push("or".into());
                    self.method(out);
                    out.push(")".into());
                }
            }
            return;
        }
        match self.rng.below(8) {
            0..=3 => self.method(out),
            4 => {
                self.value(out);
                out.push("=".into());
                match self.rng.below(4) {
                    0 => out.extend(["[".into(), "]".into()]),
                    1 => {
                        out.push("[".into());
                        out.push(self.var());
                        out.push("|".into());
                        out.push(self.var());
                        out.push("]".into());
                    }
                    2 => {
                        out.push("[".into());
                        self.values(out);
                        out.push("]".into());
                    }
                    _ => self.value(out),
                }
            }
            _ => {
                self.value(out);
                if self.ext("comparisons") {
                    out.push(self.rng.pick(&["=<", ">=", "\\=", "\\=="]).to_string());
                } else {
                    out.push(self.rng.pick(&["<", ">", "=="]).to_string());
                }
                self.value(out);
            }
        }
    }

    fn constraints(&mut self, out: &mut Vec<String>) {
        let n = 1 + self.rng.below(3);
        for i in 0..n {
            if i > 0 {
                out.push(self.and_op());
            }
            self.constraint(out);
        }
    }

    fn and_op(&mut self) -> String {
        if self.ext("unicode-operators") {
            "∧".into()
        } else {
            "and".into()
        }
    }

    fn arrow(&mut self) -> String {
        if self.ext("long-arrow") {
            "<--".into()
        } else if self.ext("unicode-operators") {
            "←".into()
        } else {
            "<-".into()
        }
    }

    /// `a(Role, Id)` as OK's `agent()`: role a constant or `_`, id a variable or `_`.
    fn agent(&mut self, out: &mut Vec<String>) {
        out.push("a".into());
        out.push("(".into());
        if self.rng.pct(10) {
            out.push("_".into());
        } else {
            out.push(self.role_name());
            if self.ext("parameterised-roles") {
                out.push("(".into());
                out.push(self.var());
                out.push(")".into());
            }
        }
        out.push(",".into());
        if self.ext("string-ids") {
            out.push(self.rng.pick(&["\"r0\"", "p2"]).to_string());
        } else if self.rng.pct(10) {
            out.push("_".into());
        } else {
            out.push(self.var());
        }
        out.push(")".into());
    }

    /// A clause head or role change: `a(role[(V, ...)], Id)`.
    fn head(&mut self, out: &mut Vec<String>) {
        out.push("a".into());
        out.push("(".into());
        out.push(self.role_name());
        if self.rng.pct(20) {
            out.push("(".into());
            self.values(out);
            out.push(")".into());
        }
        out.push(",".into());
        out.push(self.var());
        out.push(")".into());
    }

    fn definition(&mut self, out: &mut Vec<String>) {
        match self.rng.below(10) {
            0 | 1 => {
                out.push("null".into());
                out.push(self.arrow());
                self.constraints(out);
            }
            2 => {
                self.head(out);
                if self.ext("guarded-role-change") {
                    out.push(self.arrow());
                    self.constraints(out);
                }
            }
            _ => {
                if self.ext("paper-form") {
                    out.push("(".into());
                    self.constraints(out);
                    out.push(")".into());
                    out.push(self.arrow());
                } else if self.ext("constraint-connectives") {
                    out.push("not".into());
                    self.method(out);
                    out.push(self.arrow());
                }
                if self.ext("atom-message") {
                    out.push(self.name());
                } else {
                    self.method(out);
                }
                let send = self.rng.pct(50);
                out.push(match (send, self.ext("unicode-operators")) {
                    (true, false) => "=>".into(),
                    (false, false) => "<=".into(),
                    (true, true) => "⇒".into(),
                    (false, true) => "⇐".into(),
                });
                self.agent(out);
                if self.rng.pct(40) {
                    out.push(self.arrow());
                    self.constraints(out);
                }
            }
        }
    }

    /// OK's `clauseBody()`: `( body ) | definition`, then `or ...`, then `[then body]`.
    fn body(&mut self, out: &mut Vec<String>) {
        self.depth += 1;
        self.unit(out);
        while self.rng.pct(25) {
            out.push("or".into());
            self.unit(out);
        }
        if self.rng.pct(if self.depth > 4 { 10 } else { 45 }) {
            if self.ext("par") {
                out.push("par".into());
            } else {
                out.push("then".into());
            }
            if self.bad() {
                // A dangling connective.
                self.depth -= 1;
                return;
            }
            self.body(out);
        }
        self.depth -= 1;
    }

    fn unit(&mut self, out: &mut Vec<String>) {
        if self.depth < 5 && self.rng.pct(20) {
            out.push("(".into());
            self.body(out);
            if !self.bad() {
                out.push(")".into());
            }
        } else {
            self.definition(out);
        }
    }

    fn annotation(&mut self, out: &mut Vec<String>) {
        out.push("@annotation".into());
        out.push("(".into());
        match self.rng.below(4) {
            0 => {
                out.push("@role".into());
                out.push("(".into());
                out.push(self.role_name());
                out.push(")".into());
            }
            1 => {
                out.push("@constraint".into());
                out.push("(".into());
                self.in_annotation = true;
                self.method(out);
                self.in_annotation = false;
                out.push(")".into());
            }
            2 => {
                out.push("@message".into());
                out.push("(".into());
                out.push(self.name());
                out.push("(".into());
                out.push(self.var());
                out.push(")".into());
                out.push(")".into());
            }
            _ => {
                out.push("@variable".into());
                out.push("(".into());
                out.push(self.var());
                out.push(")".into());
            }
        }
        out.push(",".into());
        if self.rng.pct(10) {
            // The value may itself be an annotation.
            self.annotation(out);
            out.push(")".into());
            return;
        }
        out.push(self.name());
        if self.rng.pct(60) {
            out.push("(".into());
            out.push(self.rng.pick(&["\"a value\"", "_", "Xv"]).to_string());
            if self.rng.pct(40) {
                out.push(",".into());
                out.push(self.name());
                out.push("(".into());
                out.push("\"x\"".into());
                out.push(")".into());
            }
            out.push(")".into());
        }
        out.push(")".into());
    }

    fn clause(&mut self, out: &mut Vec<String>) {
        while self.rng.pct(15) {
            self.annotation(out);
        }
        self.head(out);
        if self.bad() {
            out.push(":".into());
        } else {
            out.push("::".into());
        }
        self.body(out);
        if self.ext("dot-terminator") {
            out.push(".".into());
        }
    }

    fn framework(&mut self) -> Vec<String> {
        let mut clauses = Vec::new();
        if !self.ext("no-clauses") {
            for _ in 0..1 + self.rng.below(3) {
                let mut c = Vec::new();
                self.clause(&mut c);
                clauses.push(c);
            }
        }
        let mut headers = Vec::new();
        let mut kinds_used = 0;
        for role in self.roles.clone() {
            if self.ext("missing-header") {
                continue;
            }
            let kind = ["initial", "necessary", "optional", "auxiliary"][kinds_used % 4];
            kinds_used += 1 + self.rng.below(2);
            let mut h = vec!["r".to_string(), "(".into(), role, ",".into(), kind.into()];
            if self.rng.pct(30) {
                h.push(",".into());
                h.push(self.rng.below(5).to_string());
                if self.rng.pct(50) {
                    h.push(",".into());
                    h.push((5 + self.rng.below(5)).to_string());
                }
            }
            h.push(")".into());
            headers.push(h);
        }
        let mut out = Vec::new();
        if !clauses.is_empty() && self.ext("free-order") {
            // A header after the first clause.
            let last = headers.pop();
            for h in headers {
                out.extend(h);
            }
            let mut rest = clauses.into_iter();
            out.extend(rest.next().unwrap_or_default());
            out.extend(last.unwrap_or_default());
            for c in rest {
                out.extend(c);
            }
        } else {
            for h in headers {
                out.extend(h);
            }
            for c in clauses {
                out.extend(c);
            }
        }
        out
    }

    /// Joins tokens with separators OK skips; none at all where one side is punctuation.
    fn layout(&mut self, toks: &[String]) -> String {
        let mut s = String::new();
        if self.rng.pct(20) {
            let heads: [&str; 4] = ["\n", "\r\n", "/* head */", "// top\r"];
            let head = heads[self.rng.below(heads.len())];
            s.push_str(head);
        }
        let eol = *self.rng.pick(&["\n", "\r\n", "\r"]);
        for (i, t) in toks.iter().enumerate() {
            if i > 0 {
                let prev = &toks[i - 1];
                let punct = |c: char| "()[],|".contains(c);
                let may_touch = prev.ends_with(punct) || t.starts_with(punct);
                let sep = match self.rng.below(16) {
                    0..=4 if may_touch => String::new(),
                    0..=6 => " ".into(),
                    7 => "\t".into(),
                    8 | 9 => eol.into(),
                    10 => format!("{eol}\t"),
                    11 => "/* a (comment) \"then\" ** */".into(),
                    12 => format!(" // note ( or ) {eol}"),
                    13 if self.ext("percent-comment") => format!(" % note {eol}"),
                    _ => "  ".into(),
                };
                s.push_str(&sep);
            }
            s.push_str(t);
        }
        if self.ext("line-comment-at-end") {
            s.push_str(" // the end");
        } else if self.rng.pct(30) {
            s.push_str(eol);
        }
        s
    }
}
