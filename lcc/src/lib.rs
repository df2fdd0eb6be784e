//! The Lightweight Coordination Calculus (LCC) for Keel: lexer → parser → AST → interpreter.
#![warn(missing_docs)]
