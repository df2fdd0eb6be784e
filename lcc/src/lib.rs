//! The Lightweight Coordination Calculus (LCC) for Keel: lexer → parser → AST → interpreter, with
//! no I/O. Hosts negotiate VM migrations by running interaction models written in LCC; this crate
//! reads those models (every surface variant of the design note), reports bad input precisely,
//! and runs each peer's role.
//!
//! # API
//! - [`parse`]`(src) -> Result<ast::Framework, Vec<Error>>`; [`print()`] turns a framework back into
//!   text that parses to the same tree; [`diag::render`] and [`diag::short`] format errors.
//! - [`Program::compile`]`(src)`: clauses indexed by role, shared as `Arc<Program>`.
//! - [`Value`]: runtime terms (atoms, integers, floats, strings, compounds, lists, unbound
//!   variables); `Display` prints LCC syntax and [`Value::parse`] reads it back (for the wire).
//! - [`Knowledge`]: constraint predicates by name and arity (`Ok(None)` false, `Ok(Some(vals))`
//!   true with `vals` unified with the arguments, `Err(KnowledgeError::Unknown)` an error with the
//!   call's span). [`Registry`] holds Rust closures; [`FactBase`] answers from `price(apple, 3).`
//!   facts.
//! - [`Directory`]: picks a peer id for a send whose recipient id is unbound.
//! - [`Envelope`] `{ from: PeerRef, to: PeerRef, body }`, [`PeerRef`] `{ role, id }`.
//! - [`Peer::new`]`(Arc<Program>, role, id) -> Result<Peer, Error>` (errors if no clause plays
//!   `role`), [`Peer::deliver`], [`Peer::step`]`(&mut dyn Knowledge, &mut dyn Directory,
//!   &mut Vec<Envelope>) -> Result<Status, Error>` with [`Status`] `Progressed | Waiting | Closed |
//!   TimedOut`, [`Peer::timeout`] (abandon the interaction and restart in the initial role),
//!   [`Peer::role`].
//! - [`sim::Bus`]: several peers in one process, delivering messages deterministically.
//! - Limits: [`parser::MAX_DEPTH`] (nesting in the text), [`interp::MAX_ROLE_DEPTH`] (role changes
//!   not in tail position), [`interp::DEFAULT_STEP_BUDGET`] (events per step),
//!   [`interp::DEFAULT_INBOX_CAPACITY`] (bounded inbox, drops counted).
//! - `interp::driver` (feature `async`): a tokio task loop over the same [`Peer`].
//!
//! # Layout
//! - [`span`]: byte-offset spans, [`SourceMap`] for line and column.
//! - [`token`], [`lexer`]: tokens and the lexer.
//! - [`ast`]: the tree, every node with a span.
//! - [`parser`]: recursive descent with the design note's precedence.
//! - [`mod@print`]: the pretty-printer.
//! - [`value`]: runtime terms.
//! - [`knowledge`]: `Knowledge`, `Directory`, `Registry`, `FactBase`.
//! - [`interp`]: `Program`, `Peer` (clause expansion), the async driver.
//! - [`sim`]: an in-process bus of peers.
//! - [`diag`]: rendering of errors.
//! - [`error`]: `Error { kind, span }`.
#![warn(missing_docs)]

pub mod ast;
pub mod diag;
pub mod error;
pub mod interp;
pub mod knowledge;
pub mod lexer;
pub mod parser;
pub mod print;
pub mod sim;
pub mod span;
pub mod token;
pub mod value;

pub use error::{Error, ErrorKind, LexError, Result, RuntimeError, SyntaxError};
pub use interp::{Envelope, Footprint, Peer, PeerRef, Program, Status};
pub use knowledge::{Directory, FactBase, Knowledge, KnowledgeError, NoDirectory, Registry};
pub use parser::parse;
pub use print::print;
pub use span::{SourceMap, Span};
pub use value::Value;
