//! Errors of every stage: `Error { kind, span }` with one `thiserror` sub-enum per stage.
//! Errors never format source text; [`crate::diag::render`] does.

use crate::span::Span;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// An error with the span of the text it concerns.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{kind}")]
pub struct Error {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Where: byte offsets into the source.
    pub span: Span,
}

impl Error {
    /// An error of `kind` at `span`.
    #[must_use]
    pub fn new(kind: impl Into<ErrorKind>, span: Span) -> Self {
        Self {
            kind: kind.into(),
            span,
        }
    }
}

/// The kinds of error, by stage.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ErrorKind {
    /// The lexer met text that is not a token.
    #[error(transparent)]
    Lex(#[from] LexError),
    /// The parser met tokens that do not form LCC.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// The interpreter failed while running a clause.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// An interpreter bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Lexical errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    /// A character that starts no token.
    #[error("unexpected character `{0}`")]
    UnexpectedChar(char),
    /// A string without its closing `"`.
    #[error("unterminated string")]
    UnterminatedString,
    /// A quoted atom without its closing `'`.
    #[error("unterminated quoted atom")]
    UnterminatedQuotedAtom,
    /// A `/*` comment without its `*/`.
    #[error("unterminated block comment")]
    UnterminatedComment,
    /// An `@annotation(` block whose parentheses never close.
    #[error("unterminated annotation")]
    UnterminatedAnnotation,
    /// An unknown escape in a string or quoted atom.
    #[error("unknown escape `\\{0}`")]
    InvalidEscape(char),
    /// A number that does not fit.
    #[error("invalid number `{0}`")]
    InvalidNumber(String),
}

/// Syntax errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// Something else was expected here.
    #[error("expected {expected}, found {found}")]
    Expected {
        /// What the parser wanted.
        expected: String,
        /// What it found.
        found: String,
    },
    /// A clause head that is not `a(Role, Id)`.
    #[error("a clause must start with `a(Role, Id) ::`, found `{0}`")]
    BadClauseHead(String),
    /// A top-level term that is neither a role header nor a clause head.
    #[error(
        "expected a role header `r(Role, Kind)` or a clause `a(Role, Id) :: ...`, found `{0}`"
    )]
    BadItem(String),
    /// A role header with a kind other than initial, necessary, optional, auxiliary.
    #[error("unknown role kind `{0}` (expected initial, necessary, optional or auxiliary)")]
    BadRoleKind(String),
    /// A message that is not a plain term.
    #[error("a message must be a term, found a comparison")]
    BadMessage,
    /// A constraint that is not a predicate call (a number, a string, a variable, a list).
    #[error("`{0}` cannot be used as a constraint")]
    BadConstraint(String),
    /// A compound term whose functor is a variable (`C1(X)`).
    #[error("a variable cannot be a functor: `{0}(...)` (write an atom: lower-case or quoted)")]
    VarFunctor(String),
    /// Nesting beyond the parser's limit.
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
    /// An integer literal out of range.
    #[error("integer out of range")]
    IntegerOverflow,
}

/// Errors while running an interaction model.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// A constraint called a predicate that the peer's knowledge does not know.
    #[error("unknown predicate {name}/{arity} (agent {agent}, role {role})")]
    UnknownPredicate {
        /// Predicate name.
        name: String,
        /// Number of arguments.
        arity: usize,
        /// Id of the peer that ran it.
        agent: String,
        /// Role the peer was playing.
        role: String,
    },
    /// A predicate reported a failure (not a plain "false").
    #[error("predicate {name}/{arity} failed: {message} (agent {agent}, role {role})")]
    Predicate {
        /// Predicate name.
        name: String,
        /// Number of arguments.
        arity: usize,
        /// What the predicate said.
        message: String,
        /// Id of the peer that ran it.
        agent: String,
        /// Role the peer was playing.
        role: String,
    },
    /// A role change or start to a role that has no clause.
    #[error("no clause for role {role} (agent {agent})")]
    NoClause {
        /// The role asked for.
        role: String,
        /// Id of the peer.
        agent: String,
    },
    /// A comparison on values that are not numbers, or an unbound variable where a value is needed.
    #[error("{message} (agent {agent}, role {role})")]
    Type {
        /// What was wrong.
        message: String,
        /// Id of the peer.
        agent: String,
        /// Role the peer was playing.
        role: String,
    },
    /// Role changes not in tail position nested beyond [`crate::interp::MAX_ROLE_DEPTH`].
    #[error("role {role_called} would nest deeper than {limit} clauses (a recursion that is not the last step of its clause) (agent {agent}, role {role})")]
    TooDeep {
        /// The role being entered.
        role_called: String,
        /// The limit.
        limit: usize,
        /// Id of the peer.
        agent: String,
        /// Role the peer was playing.
        role: String,
    },
    /// A program that cannot be compiled (e.g. a clause head that is not `a(Role, Id)`).
    #[error("{0}")]
    Compile(String),
}
