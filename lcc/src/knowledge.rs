//! A peer's link to the world: [`Knowledge`] answers constraints, [`Directory`] picks the peer for
//! a send whose recipient is unbound. [`Registry`] holds Rust predicates by name and arity;
//! [`FactBase`] answers from Prolog-style facts (`price(apple, 3).`) by unification.

use std::collections::HashMap;
use std::fmt;

use crate::ast::{Term, TermKind};
use crate::error::Error;
use crate::parser::parse_terms;
use crate::value::{Value, VarId};

/// Why a predicate could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KnowledgeError {
    /// No predicate of that name and arity: the interpreter reports it with the call's span.
    #[error("unknown predicate")]
    Unknown,
    /// The predicate exists but could not be evaluated.
    #[error("{0}")]
    Failed(String),
}

/// A peer's knowledge: solves one constraint by predicate name and arguments.
///
/// Arguments arrive with the peer's current bindings applied; unbound variables appear as
/// [`Value::Var`]. Return `Ok(None)` for false, `Ok(Some(vals))` for true, where `vals` (one per
/// argument) are unified with the arguments: this is how predicates bind variables (returning the
/// arguments unchanged just says "true").
pub trait Knowledge {
    /// Solves `name(args...)`.
    ///
    /// # Errors
    /// [`KnowledgeError::Unknown`] for a predicate it does not know.
    fn solve(&mut self, name: &str, args: &[Value]) -> Result<Option<Vec<Value>>, KnowledgeError>;
}

/// Picks a peer id for a send whose recipient id is unbound: the decision point where policy (for
/// Keel, the stability model) ranks the candidate peers playing `role`.
pub trait Directory {
    /// A peer id for a message `body` to a peer in `role`, or `None` if there is none yet (the send
    /// then waits, like a receive with no message).
    fn resolve(&mut self, role: &Value, body: &Value) -> Option<Value>;
}

/// A directory that knows no peer.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDirectory;

impl Directory for NoDirectory {
    fn resolve(&mut self, _role: &Value, _body: &Value) -> Option<Value> {
        None
    }
}

/// A boxed Rust predicate.
pub type Predicate = Box<dyn FnMut(&[Value]) -> Result<Option<Vec<Value>>, KnowledgeError> + Send>;

/// Rust predicates registered by name and arity, with an optional fallback for the rest.
#[derive(Default)]
pub struct Registry {
    preds: HashMap<String, Vec<(usize, Predicate)>>,
    fallback: Option<Box<dyn Knowledge + Send>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<String> = self
            .preds
            .iter()
            .flat_map(|(n, v)| v.iter().map(move |(a, _)| format!("{n}/{a}")))
            .collect();
        names.sort();
        f.debug_struct("Registry")
            .field("predicates", &names)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `name/arity`, replacing any earlier one.
    pub fn register<F>(&mut self, name: &str, arity: usize, f: F) -> &mut Self
    where
        F: FnMut(&[Value]) -> Result<Option<Vec<Value>>, KnowledgeError> + Send + 'static,
    {
        let v = self.preds.entry(name.to_owned()).or_default();
        v.retain(|(a, _)| *a != arity);
        v.push((arity, Box::new(f)));
        self
    }

    /// Registers a test `name/arity` that binds nothing: true when `f` says so.
    pub fn register_test<F>(&mut self, name: &str, arity: usize, mut f: F) -> &mut Self
    where
        F: FnMut(&[Value]) -> bool + Send + 'static,
    {
        self.register(name, arity, move |args| Ok(f(args).then(|| args.to_vec())))
    }

    /// Asks `k` for predicates not registered here.
    pub fn set_fallback(&mut self, k: impl Knowledge + Send + 'static) -> &mut Self {
        self.fallback = Some(Box::new(k));
        self
    }
}

impl Knowledge for Registry {
    fn solve(&mut self, name: &str, args: &[Value]) -> Result<Option<Vec<Value>>, KnowledgeError> {
        if let Some(v) = self.preds.get_mut(name) {
            if let Some((_, p)) = v.iter_mut().find(|(a, _)| *a == args.len()) {
                return p(args);
            }
        }
        match &mut self.fallback {
            Some(k) => k.solve(name, args),
            None => Err(KnowledgeError::Unknown),
        }
    }
}

/// Ground or non-ground facts, answering a call by unifying it with the first matching fact.
#[derive(Clone, Debug, Default)]
pub struct FactBase {
    facts: HashMap<String, Vec<Value>>,
}

/// Variables of facts are numbered from here, apart from callers' variables.
const FACT_VAR_BASE: VarId = 1 << 31;

impl FactBase {
    /// Parses facts, `term.` each (atoms or compounds).
    ///
    /// # Errors
    /// Syntax errors, and facts that are not atoms or compounds.
    pub fn parse(src: &str) -> Result<Self, Vec<Error>> {
        let terms = parse_terms(src)?;
        let mut fb = Self::default();
        let mut errors = Vec::new();
        for t in &terms {
            let mut names = HashMap::new();
            let v = term_value(t, &mut names);
            match &v {
                Value::Atom(_) | Value::Compound(_) => fb.add(v),
                _ => errors.push(Error::new(
                    crate::error::SyntaxError::BadConstraint(v.to_string()),
                    t.span,
                )),
            }
        }
        if errors.is_empty() {
            Ok(fb)
        } else {
            Err(errors)
        }
    }

    /// Adds a fact (an atom or a compound).
    pub fn add(&mut self, fact: Value) {
        let name = fact.name().unwrap_or_default().to_owned();
        self.facts.entry(name).or_default().push(fact);
    }

    /// Number of facts.
    #[must_use]
    pub fn len(&self) -> usize {
        self.facts.values().map(Vec::len).sum()
    }

    /// No facts?
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Knowledge for FactBase {
    fn solve(&mut self, name: &str, args: &[Value]) -> Result<Option<Vec<Value>>, KnowledgeError> {
        let Some(facts) = self.facts.get(name) else {
            return Err(KnowledgeError::Unknown);
        };
        let mut known = false;
        for f in facts.iter().filter(|f| f.args().len() == args.len()) {
            known = true;
            let mut s = Subst::default();
            if f.args().iter().zip(args).all(|(a, b)| s.unify(a, b)) {
                return Ok(Some(args.iter().map(|a| s.resolve(a)).collect()));
            }
        }
        if known {
            Ok(None)
        } else {
            Err(KnowledgeError::Unknown)
        }
    }
}

/// Converts a parsed term to a value, numbering its variables from [`FACT_VAR_BASE`].
fn term_value(t: &Term, names: &mut HashMap<String, VarId>) -> Value {
    let fresh = |names: &mut HashMap<String, VarId>| {
        FACT_VAR_BASE + VarId::try_from(names.len()).unwrap_or(0)
    };
    match &t.kind {
        TermKind::Var(n) => {
            let id = match names.get(n) {
                Some(&id) => id,
                None => {
                    let id = fresh(names);
                    names.insert(n.clone(), id);
                    id
                }
            };
            Value::Var(id)
        }
        TermKind::Anon => {
            let id = fresh(names);
            names.insert(format!("_{id}"), id);
            Value::Var(id)
        }
        TermKind::Atom(a) => Value::atom(a),
        TermKind::Int(i) => Value::Int(*i),
        TermKind::Float(f) => Value::Float(*f),
        TermKind::Str(s) => Value::str(s),
        TermKind::Compound { name, args } => {
            Value::compound(name, args.iter().map(|a| term_value(a, names)).collect())
        }
        TermKind::List { items, tail } => {
            let items = items.iter().map(|a| term_value(a, names)).collect();
            let tail = tail.as_ref().map_or(Value::Nil, |t| term_value(t, names));
            Value::list_with_tail(items, tail)
        }
    }
}

/// A small substitution for unifying values outside a peer (facts against a call).
#[derive(Default)]
struct Subst {
    map: HashMap<VarId, Value>,
}

impl Subst {
    fn walk<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        while let Value::Var(id) = v {
            match self.map.get(id) {
                Some(next) => v = next,
                None => break,
            }
        }
        v
    }

    fn unify(&mut self, a: &Value, b: &Value) -> bool {
        let mut stack = vec![(a.clone(), b.clone())];
        while let Some((a, b)) = stack.pop() {
            let (a, b) = (self.walk(&a).clone(), self.walk(&b).clone());
            match (&a, &b) {
                (Value::Var(x), Value::Var(y)) if x == y => {}
                (Value::Var(x), _) => {
                    self.map.insert(*x, b);
                }
                (_, Value::Var(y)) => {
                    self.map.insert(*y, a);
                }
                (Value::Compound(x), Value::Compound(y)) => {
                    if x.name != y.name || x.args.len() != y.args.len() {
                        return false;
                    }
                    stack.extend(x.args.iter().cloned().zip(y.args.iter().cloned()));
                }
                (Value::Cons(x), Value::Cons(y)) => {
                    stack.push((x.head.clone(), y.head.clone()));
                    stack.push((x.tail.clone(), y.tail.clone()));
                }
                _ => {
                    if a != b {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn resolve(&self, v: &Value) -> Value {
        let v = self.walk(v);
        if v.is_ground() {
            return v.clone();
        }
        v.map_vars(&mut |id| match self.map.get(&id) {
            Some(x) => self.resolve(x),
            None => Value::Var(id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_answer_by_unification() {
        let mut fb = FactBase::parse("price(apple, 3).\nprice(pear, 4).\nok.\n").unwrap();
        assert_eq!(fb.len(), 3);
        let r = fb
            .solve("price", &[Value::atom("pear"), Value::Var(0)])
            .unwrap();
        assert_eq!(r, Some(vec![Value::atom("pear"), Value::Int(4)]));
        assert_eq!(
            fb.solve("price", &[Value::atom("plum"), Value::Var(0)])
                .unwrap(),
            None
        );
        assert_eq!(fb.solve("ok", &[]).unwrap(), Some(vec![]));
        assert_eq!(
            fb.solve("cost", &[Value::Var(0)]),
            Err(KnowledgeError::Unknown)
        );
    }

    #[test]
    fn registry_calls_closures_and_falls_back() {
        let mut r = Registry::new();
        r.register("double", 2, |a| {
            let x = a[0]
                .as_int()
                .ok_or_else(|| KnowledgeError::Failed("not an int".into()))?;
            Ok(Some(vec![a[0].clone(), Value::Int(2 * x)]))
        });
        r.set_fallback(FactBase::parse("likes(bob, tea).").unwrap());
        let out = r.solve("double", &[Value::Int(4), Value::Var(1)]).unwrap();
        assert_eq!(out, Some(vec![Value::Int(4), Value::Int(8)]));
        assert!(r
            .solve("likes", &[Value::atom("bob"), Value::Var(0)])
            .unwrap()
            .is_some());
        assert_eq!(r.solve("nope", &[]), Err(KnowledgeError::Unknown));
    }
}
