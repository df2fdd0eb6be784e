//! The lexer: LCC text to [`Token`]s, skipping whitespace and `//`, `/* */`, `%` comments.
//! It never panics; the first malformed token ends lexing with an [`Error`].
//!
//! Besides Keel's own forms it reads the OpenKnowledge (OK) lexicon (`lcc.jjt` in OK's
//! `lcc-interpreter.jar`), checked against OK's parser by `tests/ok_diff`: `$` in identifiers;
//! `.`, `:` and `@` inside an atom when an identifier character follows (`ws.call(X)`); floats
//! `1.`, `.5`, `1f`, `2.5d` and hexadecimal `0x1.8p1`; string escapes `\b`, `\f`, octal `\101`
//! and a backslash before a line end; line comments ended by CR as well as LF; whitespace and
//! comments between an `@annotation` and its `(`.

use crate::error::{Error, LexError};
use crate::span::Span;
use crate::token::{Token, TokenKind};

/// Splits `src` into tokens, ending with [`TokenKind::Eof`].
///
/// # Errors
/// The first lexical error, with its span.
pub fn lex(src: &str) -> Result<Vec<Token>, Error> {
    Lexer {
        src,
        pos: 0,
        comments: Vec::new(),
    }
    .run()
}

/// Like [`lex`], also returning the spans of comments, in order.
///
/// # Errors
/// The first lexical error, with its span.
pub fn lex_with_comments(src: &str) -> Result<(Vec<Token>, Vec<Span>), Error> {
    let mut lx = Lexer {
        src,
        pos: 0,
        comments: Vec::new(),
    };
    let toks = lx.run_mut()?;
    Ok((toks, lx.comments))
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    comments: Vec<Span>,
}

fn off(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c == '$' || c.is_alphanumeric()
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn err(&self, start: usize, e: LexError) -> Error {
        Error::new(e, Span::new(off(start), off(self.pos.max(start))))
    }

    fn run(mut self) -> Result<Vec<Token>, Error> {
        self.run_mut()
    }

    fn run_mut(&mut self) -> Result<Vec<Token>, Error> {
        let mut out = Vec::with_capacity(self.src.len() / 4);
        loop {
            self.skip_trivia()?;
            let start = self.pos;
            let Some(c) = self.peek() else {
                out.push(Token {
                    kind: TokenKind::Eof,
                    span: Span::new(off(start), off(start)),
                });
                return Ok(out);
            };
            let kind = self.token(c, start)?;
            out.push(Token {
                kind,
                span: Span::new(off(start), off(self.pos)),
            });
        }
    }

    fn skip_trivia(&mut self) -> Result<(), Error> {
        loop {
            let r = self.rest();
            if let Some(c) = r.chars().next().filter(|c| c.is_whitespace()) {
                self.pos += c.len_utf8();
            } else if r.starts_with("//") || r.starts_with('%') {
                // A line comment ends at LF or CR (CR-only line ends, as OK reads them).
                let start = self.pos;
                self.pos += r.find(['\n', '\r']).unwrap_or(r.len());
                self.comments.push(Span::new(off(start), off(self.pos)));
            } else if let Some(body) = r.strip_prefix("/*") {
                let start = self.pos;
                match body.find("*/") {
                    Some(i) => {
                        self.pos += i + 4;
                        self.comments.push(Span::new(off(start), off(self.pos)));
                    }
                    None => {
                        self.pos = self.src.len();
                        return Err(self.err(start, LexError::UnterminatedComment));
                    }
                }
            } else {
                return Ok(());
            }
        }
    }

    fn token(&mut self, c: char, start: usize) -> Result<TokenKind, Error> {
        use TokenKind as T;
        if c.is_ascii_digit() || (c == '.' && self.peek_at(1).is_some_and(|c| c.is_ascii_digit())) {
            return self.number(start);
        }
        if c == '_' || c == '$' || c.is_alphabetic() {
            let var = c == '_' || c.is_uppercase();
            loop {
                match self.peek() {
                    Some(c) if is_ident_char(c) => self.pos += c.len_utf8(),
                    // OK's constants may contain `.`, `:` and `@` (`ws.call`); only when an
                    // identifier character follows, so `p.` still ends a clause and `r::` stays.
                    Some('.' | ':' | '@') if !var && self.peek_at(1).is_some_and(is_ident_char) => {
                        self.pos += 1;
                    }
                    _ => break,
                }
            }
            let word = &self.src[start..self.pos];
            return Ok(match word {
                "then" => T::Then,
                "or" => T::Or,
                "and" => T::And,
                "par" => T::Par,
                "not" => T::Not,
                _ if var => T::Var,
                _ => T::Ident,
            });
        }
        if c == '"' {
            return self
                .quoted('"', start, LexError::UnterminatedString)
                .map(T::Str);
        }
        if c == '\'' {
            return self
                .quoted('\'', start, LexError::UnterminatedQuotedAtom)
                .map(T::QuotedAtom);
        }
        if c == '@' && self.peek_at(1).is_some_and(|c| c.is_alphabetic()) {
            return self.annotation(start);
        }
        // Longest match first, dispatched on the first character.
        let r = self.rest().as_bytes();
        let at = |i: usize| r.get(i).copied().unwrap_or(0);
        let (kind, len) = match c {
            '(' => (T::LParen, 1),
            ')' => (T::RParen, 1),
            '[' => (T::LBracket, 1),
            ']' => (T::RBracket, 1),
            ',' => (T::Comma, 1),
            '|' => (T::Bar, 1),
            '.' => (T::Dot, 1),
            '-' => (T::Minus, 1),
            ':' if at(1) == b':' => (T::ColonColon, 2),
            '<' => match (at(1), at(2)) {
                (b'-', b'-') => (T::Arrow, 3),
                (b'-', _) => (T::Arrow, 2),
                (b'=', _) => (T::Recv, 2),
                _ => (T::Lt, 1),
            },
            '=' => match at(1) {
                b'>' => (T::Send, 2),
                b'=' => (T::EqEq, 2),
                b'<' => (T::Le, 2),
                _ => (T::Eq, 1),
            },
            '>' if at(1) == b'=' => (T::Ge, 2),
            '>' => (T::Gt, 1),
            '\\' => match (at(1), at(2)) {
                (b'=', b'=') => (T::NotEqEq, 3),
                (b'=', _) => (T::NotEq, 2),
                (b'+', _) => (T::Not, 2),
                _ => (T::Eof, 0),
            },
            '⇒' => (T::Send, c.len_utf8()),
            '⇐' => (T::Recv, c.len_utf8()),
            '←' => (T::Arrow, c.len_utf8()),
            '∧' => (T::And, c.len_utf8()),
            '∨' => (T::Or, c.len_utf8()),
            '¬' => (T::Not, c.len_utf8()),
            _ => (T::Eof, 0),
        };
        if len > 0 {
            self.pos += len;
            return Ok(kind);
        }
        self.pos += c.len_utf8();
        Err(self.err(start, LexError::UnexpectedChar(c)))
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    /// An exponent `e[+-]digits` (or `p…` for hex) if one follows; returns whether it did.
    fn exponent(&mut self, marks: [char; 2]) -> bool {
        if self.peek().is_some_and(|c| marks.contains(&c)) {
            let sign = usize::from(matches!(self.peek_at(1), Some('+' | '-')));
            if self.peek_at(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1 + sign;
                self.digits();
                return true;
            }
        }
        false
    }

    /// Numbers as OK's lexer reads them (Java literals): `12`, `1.5`, `1.`, `.5`, `2e3`, with an
    /// optional `f`/`d` suffix on floats (`1f`, `2.5D`), and hexadecimal floats `0x1.8p1`.
    fn number(&mut self, start: usize) -> Result<TokenKind, Error> {
        if let Some(kind) = self.hex_float(start)? {
            return Ok(kind);
        }
        self.digits();
        // Longest match, as OK's (JavaCC) lexer: `1.` and `.5` are floats, `1..` is `1.` `.`.
        let mut float = false;
        if self.peek() == Some('.') {
            float = true;
            self.pos += 1;
            self.digits();
        }
        float |= self.exponent(['e', 'E']);
        let end = self.pos;
        if matches!(self.peek(), Some('f' | 'F' | 'd' | 'D')) {
            float = true;
            self.pos += 1;
        }
        let text = &self.src[start..end];
        let bad = || LexError::InvalidNumber(self.src[start..self.pos].to_owned());
        if float {
            let t = text.strip_suffix('.').unwrap_or(text);
            let t = if t.starts_with('.') {
                format!("0{t}")
            } else {
                t.to_owned()
            };
            t.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(TokenKind::Float)
                .ok_or_else(|| self.err(start, bad()))
        } else {
            text.parse::<u64>()
                .map(TokenKind::Int)
                .map_err(|_| self.err(start, bad()))
        }
    }

    /// `0x` hex digits, an optional `.` and fraction, a mandatory `p` exponent, an optional
    /// `f`/`d` suffix; `None` (nothing consumed) when the text is not one.
    fn hex_float(&mut self, start: usize) -> Result<Option<TokenKind>, Error> {
        let r = self.rest().as_bytes();
        if !(r.len() > 2 && r[0] == b'0' && (r[1] == b'x' || r[1] == b'X')) {
            return Ok(None);
        }
        let mut i = 2;
        let mut mantissa = 0f64;
        let mut scale = 0i64;
        let mut digits = 0;
        let mut seen_point = false;
        while let Some(&b) = r.get(i) {
            if let Some(d) = char::from(b).to_digit(16) {
                mantissa = mantissa * 16.0 + f64::from(d);
                if seen_point {
                    scale -= 4;
                }
                digits += 1;
            } else if b == b'.' && !seen_point {
                seen_point = true;
            } else {
                break;
            }
            i += 1;
        }
        let sign_at = i + 1;
        let has_sign = matches!(r.get(sign_at), Some(b'+' | b'-'));
        let exp_start = sign_at + usize::from(has_sign);
        if digits == 0
            || !matches!(r.get(i), Some(b'p' | b'P'))
            || !r.get(exp_start).is_some_and(u8::is_ascii_digit)
        {
            return Ok(None);
        }
        let mut j = exp_start;
        while r.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        let exp: i64 = self.src[self.pos + exp_start..self.pos + j]
            .parse()
            .unwrap_or(i64::MAX);
        let exp = if r.get(sign_at) == Some(&b'-') {
            -exp
        } else {
            exp
        };
        self.pos += j;
        if matches!(self.peek(), Some('f' | 'F' | 'd' | 'D')) {
            self.pos += 1;
        }
        let e = i32::try_from(exp.saturating_add(scale).clamp(-2000, 2000)).unwrap_or(0);
        let value = mantissa * 2f64.powi(e);
        if value.is_finite() {
            Ok(Some(TokenKind::Float(value)))
        } else {
            let text = self.src[start..self.pos].to_owned();
            Err(self.err(start, LexError::InvalidNumber(text)))
        }
    }

    fn quoted(&mut self, q: char, start: usize, unterminated: LexError) -> Result<String, Error> {
        self.pos += 1;
        let mut s = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err(start, unterminated));
            };
            self.pos += c.len_utf8();
            if c == q {
                return Ok(s);
            }
            if c == '\\' {
                let esc_start = self.pos - 1;
                let Some(e) = self.peek() else {
                    return Err(self.err(start, unterminated));
                };
                self.pos += e.len_utf8();
                s.push(match e {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    '\\' | '"' | '\'' => e,
                    // Octal, as in Java and OK: up to three digits, at most `\377`.
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap_or(0);
                        let max = if e <= '3' { 2 } else { 1 };
                        for _ in 0..max {
                            match self.peek().and_then(|c| c.to_digit(8)) {
                                Some(d) => {
                                    v = v * 8 + d;
                                    self.pos += 1;
                                }
                                None => break,
                            }
                        }
                        char::from_u32(v).unwrap_or('\0')
                    }
                    // A backslash before a line end continues the string on the next line.
                    '\n' => continue,
                    '\r' => {
                        if self.peek() == Some('\n') {
                            self.pos += 1;
                        }
                        continue;
                    }
                    _ => return Err(self.err(esc_start, LexError::InvalidEscape(e))),
                });
            } else {
                s.push(c);
            }
        }
    }

    /// `@name(...)` with balanced parentheses (strings and quoted atoms inside are skipped whole).
    fn annotation(&mut self, start: usize) -> Result<TokenKind, Error> {
        self.pos += 1;
        while self.peek().is_some_and(is_ident_char) {
            self.pos += self.peek().map_or(1, char::len_utf8);
        }
        // OK reads `@annotation (...)` as tokens, so whitespace and comments may come before `(`.
        let name_end = self.pos;
        let mut comments = std::mem::take(&mut self.comments);
        let skipped = self.skip_trivia();
        std::mem::swap(&mut self.comments, &mut comments);
        if skipped.is_err() || self.peek() != Some('(') {
            self.pos = name_end;
            return Ok(TokenKind::Annotation);
        }
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            let r = self.rest();
            if r.starts_with("//") || r.starts_with("/*") || r.starts_with('%') {
                let mut inner = Vec::new();
                std::mem::swap(&mut self.comments, &mut inner);
                let skipped = self.skip_trivia();
                std::mem::swap(&mut self.comments, &mut inner);
                if skipped.is_err() {
                    return Err(self.err(start, LexError::UnterminatedAnnotation));
                }
                continue;
            }
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        self.pos += 1;
                        return Ok(TokenKind::Annotation);
                    }
                }
                '"' | '\'' => {
                    let un = LexError::UnterminatedAnnotation;
                    self.quoted(c, start, un)?;
                    continue;
                }
                _ => {}
            }
            self.pos += c.len_utf8();
        }
        Err(self.err(start, LexError::UnterminatedAnnotation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TokenKind as T;

    fn kinds(s: &str) -> Vec<TokenKind> {
        lex(s).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn surface_variants_map_to_one_kind() {
        assert_eq!(kinds("=> ⇒"), vec![T::Send, T::Send, T::Eof]);
        assert_eq!(kinds("<= ⇐"), vec![T::Recv, T::Recv, T::Eof]);
        assert_eq!(
            kinds("<- <-- ←"),
            vec![T::Arrow, T::Arrow, T::Arrow, T::Eof]
        );
        assert_eq!(
            kinds("and ∧ or ∨"),
            vec![T::And, T::And, T::Or, T::Or, T::Eof]
        );
        assert_eq!(kinds("not ¬ \\+"), vec![T::Not, T::Not, T::Not, T::Eof]);
        assert_eq!(
            kinds("= == \\= \\== < > =< >="),
            vec![
                T::Eq,
                T::EqEq,
                T::NotEq,
                T::NotEqEq,
                T::Lt,
                T::Gt,
                T::Le,
                T::Ge,
                T::Eof
            ]
        );
    }

    #[test]
    fn comments_are_skipped() {
        assert_eq!(
            kinds("a // x\n% y\n/* z\n */ b"),
            vec![T::Ident, T::Ident, T::Eof]
        );
    }

    #[test]
    fn numbers_strings_and_atoms() {
        assert_eq!(
            kinds("12 1.5 2e3 1 . \"a\\\"b\" 'q x' X _y _"),
            vec![
                T::Int(12),
                T::Float(1.5),
                T::Float(2000.0),
                T::Int(1),
                T::Dot,
                T::Str("a\"b".into()),
                T::QuotedAtom("q x".into()),
                T::Var,
                T::Var,
                T::Var,
                T::Eof
            ]
        );
    }

    #[test]
    fn octal_escapes_read_back_what_the_printer_writes() {
        for s in ["\u{0}4", "\u{0}", "a\u{0}\u{0}7x", "\u{0}8"] {
            let printed = crate::print::string(s);
            assert_eq!(kinds(&printed), vec![T::Str(s.into()), T::Eof], "{printed}");
        }
        assert_eq!(
            kinds(r#""\101\7\0101""#),
            vec![T::Str("A\u{7}\u{8}1".into()), T::Eof]
        );
    }

    #[test]
    fn annotations_are_one_token() {
        let toks = lex("@annotation(@role(x), \")\") a").unwrap();
        assert_eq!(toks[0].kind, T::Annotation);
        assert_eq!(toks[0].span, Span::new(0, 26));
        assert_eq!(toks[1].kind, T::Ident);
    }

    #[test]
    fn errors_have_exact_spans() {
        let e = lex("a /* open").unwrap_err();
        assert_eq!(e.kind, LexError::UnterminatedComment.into());
        assert_eq!(e.span, Span::new(2, 9));
        let e = lex("x \"abc").unwrap_err();
        assert_eq!(e.span, Span::new(2, 6));
        let e = lex("a # b").unwrap_err();
        assert_eq!(e.kind, LexError::UnexpectedChar('#').into());
        assert_eq!(e.span, Span::new(2, 3));
        let e = lex("99999999999999999999999").unwrap_err();
        assert_eq!(e.span, Span::new(0, 23));
    }
}
