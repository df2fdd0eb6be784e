//! Tokens of LCC text. Every surface variant maps to one kind: `=>`/`⇒` are both
//! [`TokenKind::Send`], `<-`/`<--`/`←` are [`TokenKind::Arrow`], `and`/`∧`, `or`/`∨`,
//! `not`/`¬`/`\+` likewise.

use std::fmt;

use crate::span::Span;

/// A token with its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// The kind (and payload) of the token.
    pub kind: TokenKind,
    /// Where it is.
    pub span: Span,
}

/// Kinds of token.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenKind {
    /// An identifier starting with a lower-case letter (an atom or functor name); text in the span.
    Ident,
    /// An identifier starting with an upper-case letter or `_` (a variable); text in the span.
    Var,
    /// A `'quoted atom'`, unescaped.
    QuotedAtom(String),
    /// A `"string"`, unescaped.
    Str(String),
    /// An unsigned integer literal (the sign is the parser's).
    Int(u64),
    /// A float literal.
    Float(f64),
    /// `then`.
    Then,
    /// `or`, `∨`.
    Or,
    /// `and`, `∧`.
    And,
    /// `par`.
    Par,
    /// `not`, `¬`, `\+`.
    Not,
    /// `::`.
    ColonColon,
    /// `=>`, `⇒`.
    Send,
    /// `<=`, `⇐`.
    Recv,
    /// `<-`, `<--`, `←`.
    Arrow,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `[`.
    LBracket,
    /// `]`.
    RBracket,
    /// `,`.
    Comma,
    /// `|`.
    Bar,
    /// `.` (optional clause terminator).
    Dot,
    /// `-` (sign of a number).
    Minus,
    /// `=`.
    Eq,
    /// `==`.
    EqEq,
    /// `\=`.
    NotEq,
    /// `\==`.
    NotEqEq,
    /// `<`.
    Lt,
    /// `>`.
    Gt,
    /// `=<`.
    Le,
    /// `>=`.
    Ge,
    /// An `@name(...)` annotation block; text in the span.
    Annotation,
    /// End of input.
    Eof,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Ident => "an atom",
            Self::Var => "a variable",
            Self::QuotedAtom(_) => "a quoted atom",
            Self::Str(_) => "a string",
            Self::Int(_) | Self::Float(_) => "a number",
            Self::Then => "`then`",
            Self::Or => "`or`",
            Self::And => "`and`",
            Self::Par => "`par`",
            Self::Not => "`not`",
            Self::ColonColon => "`::`",
            Self::Send => "`=>`",
            Self::Recv => "`<=`",
            Self::Arrow => "`<-`",
            Self::LParen => "`(`",
            Self::RParen => "`)`",
            Self::LBracket => "`[`",
            Self::RBracket => "`]`",
            Self::Comma => "`,`",
            Self::Bar => "`|`",
            Self::Dot => "`.`",
            Self::Minus => "`-`",
            Self::Eq => "`=`",
            Self::EqEq => "`==`",
            Self::NotEq => "`\\=`",
            Self::NotEqEq => "`\\==`",
            Self::Lt => "`<`",
            Self::Gt => "`>`",
            Self::Le => "`=<`",
            Self::Ge => "`>=`",
            Self::Annotation => "an annotation",
            Self::Eof => "end of input",
        };
        f.write_str(s)
    }
}
