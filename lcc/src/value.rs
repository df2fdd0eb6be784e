//! Runtime terms: [`Value`]. Atoms and strings are `Arc<str>` (cheap to clone and to compare;
//! a [`crate::Program`] interns its atoms so equal atoms usually share one allocation). Lists are
//! cons cells whose drop is iterative, so long lists cannot overflow the stack.
//!
//! Every compound and list cell records, when it is made, whether it contains a variable, so
//! [`Value::is_ground`] is constant time and the interpreter shares ground subterms (a clone is
//! a reference count) instead of walking or copying them.

use std::fmt;
use std::sync::Arc;

use crate::print;

/// An unbound variable's index in a peer's binding store.
pub type VarId = u32;

/// A runtime term.
#[derive(Clone, Debug)]
pub enum Value {
    /// An atom.
    Atom(Arc<str>),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(Arc<str>),
    /// `f(args...)` with at least one argument (`f()` is the atom `f`).
    Compound(Arc<Compound>),
    /// The empty list `[]`.
    Nil,
    /// A list cell `[Head | Tail]`.
    Cons(Arc<Cons>),
    /// A variable. In values handed out by a peer (messages, predicate arguments) it is unbound;
    /// its number only identifies it within that one value.
    Var(VarId),
}

/// A compound term's functor and arguments (made by [`Value::compound`] and friends, which
/// record whether it is ground).
#[derive(Debug)]
pub struct Compound {
    /// Functor name.
    pub name: Arc<str>,
    /// Arguments.
    pub args: Box<[Value]>,
    /// No variable in `args`.
    ground: bool,
}

/// A list cell (made by [`Value::list`] and friends, which record whether it is ground).
#[derive(Debug)]
pub struct Cons {
    /// First item.
    pub head: Value,
    /// The rest of the list.
    pub tail: Value,
    /// No variable in `head` or `tail`.
    ground: bool,
}

impl Compound {
    /// `name(args...)` (at least one argument).
    pub(crate) fn new(name: Arc<str>, args: Box<[Value]>) -> Self {
        let ground = args.iter().all(Value::is_ground);
        Self { name, args, ground }
    }
}

impl Cons {
    /// `[head | tail]`.
    pub(crate) fn new(head: Value, tail: Value) -> Self {
        let ground = head.is_ground() && tail.is_ground();
        Self { head, tail, ground }
    }
}

impl Drop for Cons {
    fn drop(&mut self) {
        let mut next = std::mem::replace(&mut self.tail, Value::Nil);
        while let Value::Cons(arc) = next {
            match Arc::try_unwrap(arc) {
                Ok(mut cell) => next = std::mem::replace(&mut cell.tail, Value::Nil),
                Err(_) => break,
            }
        }
    }
}

impl PartialEq for Value {
    /// Structural identity (`==` in LCC); variables are equal when their numbers are.
    fn eq(&self, other: &Self) -> bool {
        let (mut a, mut b) = (self, other);
        loop {
            match (a, b) {
                (Self::Cons(x), Self::Cons(y)) => {
                    if Arc::ptr_eq(x, y) {
                        return true;
                    }
                    if x.head != y.head {
                        return false;
                    }
                    a = &x.tail;
                    b = &y.tail;
                }
                (Self::Atom(x), Self::Atom(y)) | (Self::Str(x), Self::Str(y)) => return x == y,
                (Self::Int(x), Self::Int(y)) => return x == y,
                (Self::Float(x), Self::Float(y)) => return x == y,
                (Self::Nil, Self::Nil) => return true,
                (Self::Var(x), Self::Var(y)) => return x == y,
                (Self::Compound(x), Self::Compound(y)) => {
                    return Arc::ptr_eq(x, y) || (x.name == y.name && x.args == y.args);
                }
                _ => return false,
            }
        }
    }
}

impl Value {
    /// The atom `name`.
    #[must_use]
    pub fn atom(name: &str) -> Self {
        Self::Atom(Arc::from(name))
    }

    /// A string.
    #[must_use]
    pub fn str(s: &str) -> Self {
        Self::Str(Arc::from(s))
    }

    /// `name(args...)`; with no arguments, the atom `name`.
    #[must_use]
    pub fn compound(name: &str, args: Vec<Self>) -> Self {
        Self::compound_arc(Arc::from(name), args)
    }

    /// Like [`Value::compound`] with an already shared name.
    #[must_use]
    pub fn compound_arc(name: Arc<str>, args: Vec<Self>) -> Self {
        if args.is_empty() {
            Self::Atom(name)
        } else {
            Self::Compound(Arc::new(Compound::new(name, args.into_boxed_slice())))
        }
    }

    /// A proper list of `items`.
    #[must_use]
    pub fn list(items: Vec<Self>) -> Self {
        Self::list_with_tail(items, Self::Nil)
    }

    /// `[items... | tail]`.
    #[must_use]
    pub fn list_with_tail(items: Vec<Self>, tail: Self) -> Self {
        items.into_iter().rev().fold(tail, |tail, head| {
            Self::Cons(Arc::new(Cons::new(head, tail)))
        })
    }

    /// The name of an atom, or the functor name of a compound.
    #[must_use]
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Atom(a) => Some(a),
            Self::Compound(c) => Some(&c.name),
            _ => None,
        }
    }

    /// Arguments of a compound (empty for anything else).
    #[must_use]
    pub fn args(&self) -> &[Self] {
        match self {
            Self::Compound(c) => &c.args,
            _ => &[],
        }
    }

    /// The atom's name, if this is an atom.
    #[must_use]
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Self::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// The integer, if this is one.
    #[must_use]
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number as `f64`, if this is an integer or a float.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The items of a proper list (`None` if this is not one).
    #[must_use]
    pub fn list_items(&self) -> Option<Vec<Self>> {
        self.map_list(|v| Some(v.clone()))
    }

    /// `f` of each item of a proper list, read in place (`None` if this is not a proper list or
    /// `f` returns `None` for an item).
    pub fn map_list<T>(&self, mut f: impl FnMut(&Self) -> Option<T>) -> Option<Vec<T>> {
        let mut out = Vec::new();
        let mut cur = self;
        loop {
            match cur {
                Self::Nil => return Some(out),
                Self::Cons(c) => {
                    out.push(f(&c.head)?);
                    cur = &c.tail;
                }
                _ => return None,
            }
        }
    }

    /// Does the value contain no variable? Constant time: compounds and list cells know.
    #[must_use]
    #[inline]
    pub fn is_ground(&self) -> bool {
        match self {
            Self::Var(_) => false,
            Self::Compound(c) => c.ground,
            Self::Cons(c) => c.ground,
            _ => true,
        }
    }

    /// Same value with every variable renumbered through `f` (used to move values between
    /// binding stores). Ground subterms are shared, not copied.
    #[must_use]
    pub fn map_vars(&self, f: &mut dyn FnMut(VarId) -> Self) -> Self {
        if self.is_ground() {
            return self.clone();
        }
        match self {
            Self::Var(v) => f(*v),
            Self::Compound(c) => Self::Compound(Arc::new(Compound::new(
                Arc::clone(&c.name),
                c.args.iter().map(|a| a.map_vars(f)).collect(),
            ))),
            Self::Cons(_) => {
                let mut items = Vec::new();
                let mut cur = self;
                while let Self::Cons(c) = cur {
                    if c.ground {
                        break;
                    }
                    items.push(c.head.map_vars(f));
                    cur = &c.tail;
                }
                let tail = cur.map_vars(f);
                Self::list_with_tail(items, tail)
            }
            other => other.clone(),
        }
    }
}

impl Value {
    /// Reads one term in LCC syntax (the inverse of `Display`), e.g. for messages on the wire.
    /// Variables (including `_G<n>` as printed) become `Var(0)`, `Var(1)`, ... in order of
    /// appearance.
    ///
    /// # Errors
    /// Syntax errors, or text that is not exactly one term.
    pub fn parse(text: &str) -> Result<Self, Vec<crate::Error>> {
        let mut src = String::with_capacity(text.len() + 2);
        src.push_str(text);
        src.push_str("\n.");
        let terms = crate::parser::parse_terms(&src)?;
        match terms.as_slice() {
            [t] => Ok(crate::interp::term_to_value(t)),
            _ => Err(vec![crate::Error::new(
                crate::SyntaxError::Expected {
                    expected: "one term".into(),
                    found: format!("{} terms", terms.len()),
                },
                crate::Span::new(0, u32::try_from(text.len()).unwrap_or(u32::MAX)),
            )]),
        }
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Self::Int(i)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Self::Float(f)
    }
}

impl fmt::Display for Value {
    /// LCC (Prolog) syntax; variables print as `_G<n>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Atom(a) => f.write_str(&print::atom(a)),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => f.write_str(&print::float(*x)),
            Self::Str(s) => f.write_str(&print::string(s)),
            Self::Compound(c) => {
                write!(f, "{}(", print::atom(&c.name))?;
                for (i, a) in c.args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Self::Nil => f.write_str("[]"),
            Self::Cons(_) => {
                f.write_str("[")?;
                let mut cur = self;
                let mut first = true;
                while let Self::Cons(c) = cur {
                    if !first {
                        f.write_str(", ")?;
                    }
                    first = false;
                    write!(f, "{}", c.head)?;
                    cur = &c.tail;
                }
                if !matches!(cur, Self::Nil) {
                    write!(f, " | {cur}")?;
                }
                f.write_str("]")
            }
            Self::Var(v) => write!(f, "_G{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_drop_without_overflow() {
        let v = Value::list((0..1_000_000).map(Value::Int).collect());
        assert_eq!(v.list_items().map(|l| l.len()), Some(1_000_000));
        drop(v);
    }

    #[test]
    fn display_is_lcc_syntax() {
        let v = Value::compound(
            "f",
            vec![
                Value::atom("a b"),
                Value::list_with_tail(vec![1.into()], Value::Var(3)),
            ],
        );
        assert_eq!(v.to_string(), "f('a b', [1 | _G3])");
        assert_eq!(Value::compound("g", vec![]), Value::atom("g"));
    }

    #[test]
    fn display_parses_back() {
        let v = Value::compound(
            "msg",
            vec![
                Value::str("tab\there \"q\" é"),
                Value::atom("Big"),
                Value::Float(-2.5e-7),
                Value::Int(i64::MIN),
                Value::list_with_tail(vec![Value::Nil], Value::Var(7)),
            ],
        );
        let back = Value::parse(&v.to_string()).unwrap();
        let want = Value::compound(
            "msg",
            vec![
                Value::str("tab\there \"q\" é"),
                Value::atom("Big"),
                Value::Float(-2.5e-7),
                Value::Int(i64::MIN),
                Value::list_with_tail(vec![Value::Nil], Value::Var(0)),
            ],
        );
        assert_eq!(back, want);
        assert!(Value::parse("a b").is_err());
        assert!(Value::parse("f(").is_err());
    }

    #[test]
    fn values_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Value>();
    }
}
