//! Compilation of a [`Framework`] into a [`Program`]: clauses indexed by role name, bodies
//! flattened into one node array, terms turned into value templates whose variables are slots of
//! the clause's frame. Peers share one `Arc<Program>` and never copy clauses.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ast::{
    Agent, CmpOp, Constraint, ConstraintKind, Def, DefKind, Framework, RoleKind, Term, TermKind,
};
use crate::error::{Error, RuntimeError};
use crate::parser::parse;
use crate::span::Span;
use crate::value::{Value, VarId};

/// Index of a node in [`Program`]'s node array.
pub(crate) type NodeId = u32;

/// A term with variables numbered as slots of the clause frame.
#[derive(Debug)]
pub(crate) struct Tpl {
    pub(crate) v: Value,
    pub(crate) ground: bool,
    /// `v` is `name(V1, ..., Vn)` with `n` distinct variables (see [`super::store::Store::unify_tpl`]).
    pub(crate) vars: bool,
}

impl Tpl {
    pub(crate) fn new(v: Value) -> Self {
        Self {
            ground: v.is_ground(),
            vars: distinct_vars(&v),
            v,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Node {
    Send {
        msg: Tpl,
        role: Tpl,
        id: Tpl,
        guard: Option<CCons>,
    },
    Recv {
        msg: Tpl,
        role: Tpl,
        id: Tpl,
        guard: Option<CCons>,
    },
    Null {
        guard: CCons,
    },
    Call {
        role: Tpl,
        id: Tpl,
        guard: Option<CCons>,
        span: Span,
    },
    Then(NodeId, NodeId),
    Or(NodeId, NodeId),
    Par(NodeId, NodeId),
}

/// A compiled constraint.
#[derive(Debug)]
pub(crate) enum CCons {
    Call {
        name: Arc<str>,
        args: Vec<Tpl>,
        span: Span,
    },
    Cmp {
        op: CmpOp,
        l: Tpl,
        r: Tpl,
        span: Span,
    },
    Not(Box<Self>),
    And(Box<Self>, Box<Self>),
    Or(Box<Self>, Box<Self>),
}

#[derive(Debug)]
pub(crate) struct CClause {
    pub(crate) role: Tpl,
    /// The role's template holds a float constant.
    pub(crate) role_has_float: bool,
    pub(crate) id: Tpl,
    pub(crate) nvars: u32,
    pub(crate) body: NodeId,
}

/// The clauses of one role name: arity and clause index, in source order.
type RoleClauses = Vec<(usize, u32)>;

/// A compiled interaction model, shared by every peer that runs it.
#[derive(Debug)]
pub struct Program {
    framework: Framework,
    pub(crate) clauses: Vec<CClause>,
    pub(crate) nodes: Vec<Node>,
    /// Clauses by role name (sorted by name, for a binary search): arity and clause index, in
    /// source order.
    by_role: Vec<(Arc<str>, RoleClauses)>,
    /// For each node that is a role change to an atom or compound role: the clauses that role's
    /// name and arity select (what [`Program::clauses_for`] returns for any instance of it).
    call_clauses: Vec<Option<Box<[u32]>>>,
    /// For each node that is a role change written exactly as the head of the clause it is in
    /// (which has no float constant): that clause.
    own_role: Vec<Option<u32>>,
}

impl Program {
    /// Parses and compiles `src`.
    ///
    /// # Errors
    /// Every syntax error, or a compile error.
    pub fn compile(src: &str) -> Result<Self, Vec<Error>> {
        Self::from_framework(parse(src)?)
    }

    /// Compiles a parsed framework.
    ///
    /// # Errors
    /// A clause whose role is not an atom or compound.
    pub fn from_framework(framework: Framework) -> Result<Self, Vec<Error>> {
        let mut c = Compiler {
            atoms: HashMap::new(),
            nodes: Vec::new(),
            vars: HashMap::new(),
        };
        let mut clauses = Vec::new();
        let mut by_role: HashMap<Arc<str>, Vec<(usize, u32)>> = HashMap::new();
        let mut errors = Vec::new();
        let mut own = Vec::new();
        for cl in &framework.clauses {
            c.vars.clear();
            let role = c.tpl(&cl.agent.role);
            let (name, arity) = match &role.v {
                Value::Atom(a) => (Arc::clone(a), 0),
                Value::Compound(k) => (Arc::clone(&k.name), k.args.len()),
                _ => {
                    let msg = format!(
                        "the role of a clause must be an atom or a compound, found {}",
                        role.v
                    );
                    errors.push(Error::new(RuntimeError::Compile(msg), cl.agent.role.span));
                    continue;
                }
            };
            let id = c.tpl(&cl.agent.id);
            let first = c.nodes.len();
            let body = c.def(&cl.body);
            let idx = u32::try_from(clauses.len()).unwrap_or(u32::MAX);
            // Role changes written as this clause's own head (a recursion with the same role).
            let role_has_float = has_float(&role.v);
            if !role_has_float {
                for (k, n) in c.nodes.iter().enumerate().skip(first) {
                    if let Node::Call { role: r, .. } = n {
                        if r.v == role.v {
                            own.push((k, idx));
                        }
                    }
                }
            }
            let nvars = u32::try_from(c.vars.len()).unwrap_or(u32::MAX);
            clauses.push(CClause {
                role_has_float,
                role,
                id,
                nvars,
                body,
            });
            by_role.entry(name).or_default().push((arity, idx));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut by_role: Vec<_> = by_role.into_iter().collect();
        by_role.sort_by(|a, b| a.0.cmp(&b.0));
        let mut p = Self {
            framework,
            clauses,
            nodes: c.nodes,
            by_role,
            call_clauses: Vec::new(),
            own_role: Vec::new(),
        };
        p.own_role = vec![None; p.nodes.len()];
        for (k, idx) in own {
            p.own_role[k] = Some(idx);
        }
        p.call_clauses = p
            .nodes
            .iter()
            .map(|n| match n {
                Node::Call { role, .. }
                    if matches!(role.v, Value::Atom(_) | Value::Compound(_)) =>
                {
                    Some(p.clauses_for(&role.v).collect())
                }
                _ => None,
            })
            .collect();
        Ok(p)
    }

    /// The parsed text this program was compiled from.
    #[must_use]
    pub fn framework(&self) -> &Framework {
        &self.framework
    }

    /// Roles declared `initial` in `r(...)` headers (as values; variables become unbound).
    #[must_use]
    pub fn initial_roles(&self) -> Vec<Value> {
        self.roles_of(|k| k == RoleKind::Initial)
    }

    /// Roles of all `r(...)` headers, in order.
    #[must_use]
    pub fn header_roles(&self) -> Vec<(Value, RoleKind)> {
        self.framework
            .headers
            .iter()
            .map(|h| (term_to_value(&h.role), h.kind))
            .collect()
    }

    fn roles_of(&self, f: impl Fn(RoleKind) -> bool) -> Vec<Value> {
        self.header_roles()
            .into_iter()
            .filter(|(_, k)| f(*k))
            .map(|(v, _)| v)
            .collect()
    }

    /// Does some clause define `role` (by name and arity)?
    #[must_use]
    pub fn defines(&self, role: &Value) -> bool {
        self.clauses_for(role).next().is_some()
    }

    /// The clause whose head role change `n` is written as (see `Program::own_role`).
    pub(crate) fn own_role(&self, n: NodeId) -> Option<u32> {
        self.own_role.get(n as usize).copied().flatten()
    }

    /// [`Program::clauses_for`] of every instance of the role that node `n` changes to, where
    /// the role's name and arity are fixed by the text.
    pub(crate) fn call_clauses(&self, n: NodeId) -> Option<&[u32]> {
        self.call_clauses.get(n as usize)?.as_deref()
    }

    /// Clause indices for a role value, by name and arity, in source order.
    pub(crate) fn clauses_for<'a>(&'a self, role: &Value) -> impl Iterator<Item = u32> + 'a {
        let (name, arity) = match role {
            Value::Atom(a) => (Some(&**a), 0),
            Value::Compound(c) => (Some(&*c.name), c.args.len()),
            _ => (None, 0),
        };
        name.and_then(|n| {
            self.by_role
                .binary_search_by(|(k, _)| (**k).cmp(n))
                .ok()
                .map(|i| &self.by_role[i].1)
        })
        .into_iter()
        .flatten()
        .filter(move |(a, _)| *a == arity)
        .map(|(_, i)| *i)
    }
}

/// Is `v` a compound whose arguments are distinct variables?
fn distinct_vars(v: &Value) -> bool {
    let Value::Compound(c) = v else {
        return false;
    };
    c.args.iter().enumerate().all(|(i, a)| match a {
        Value::Var(s) => !c.args[..i]
            .iter()
            .any(|b| matches!(b, Value::Var(t) if t == s)),
        _ => false,
    })
}

/// Does `v` contain a float?
fn has_float(v: &Value) -> bool {
    match v {
        Value::Float(_) => true,
        Value::Compound(c) => c.args.iter().any(has_float),
        Value::Cons(c) => has_float(&c.head) || has_float(&c.tail),
        _ => false,
    }
}

/// Converts a term to a value; variables are numbered in order of appearance from 0.
#[must_use]
pub fn term_to_value(t: &Term) -> Value {
    let mut c = Compiler {
        atoms: HashMap::new(),
        nodes: Vec::new(),
        vars: HashMap::new(),
    };
    c.tpl(t).v
}

struct Compiler {
    atoms: HashMap<String, Arc<str>>,
    nodes: Vec<Node>,
    vars: HashMap<String, VarId>,
}

impl Compiler {
    fn atom(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.atoms.get(s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(s);
        self.atoms.insert(s.to_owned(), Arc::clone(&a));
        a
    }

    fn fresh(&mut self) -> VarId {
        let id = VarId::try_from(self.vars.len()).unwrap_or(VarId::MAX);
        self.vars.insert(format!("_#{id}"), id);
        id
    }

    fn value(&mut self, t: &Term) -> Value {
        match &t.kind {
            TermKind::Var(n) => {
                if let Some(&id) = self.vars.get(n) {
                    return Value::Var(id);
                }
                let id = VarId::try_from(self.vars.len()).unwrap_or(VarId::MAX);
                self.vars.insert(n.clone(), id);
                Value::Var(id)
            }
            TermKind::Anon => Value::Var(self.fresh()),
            TermKind::Atom(a) => Value::Atom(self.atom(a)),
            TermKind::Int(i) => Value::Int(*i),
            TermKind::Float(f) => Value::Float(*f),
            TermKind::Str(s) => Value::Str(Arc::from(s.as_str())),
            TermKind::Compound { name, args } => {
                let name = self.atom(name);
                let args = args.iter().map(|a| self.value(a)).collect();
                Value::compound_arc(name, args)
            }
            TermKind::List { items, tail } => {
                let items = items.iter().map(|a| self.value(a)).collect();
                let tail = tail.as_ref().map_or(Value::Nil, |t| self.value(t));
                Value::list_with_tail(items, tail)
            }
        }
    }

    fn tpl(&mut self, t: &Term) -> Tpl {
        Tpl::new(self.value(t))
    }

    fn push(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        NodeId::try_from(self.nodes.len() - 1).unwrap_or(NodeId::MAX)
    }

    fn agent(&mut self, a: &Agent) -> (Tpl, Tpl) {
        (self.tpl(&a.role), self.tpl(&a.id))
    }

    fn def(&mut self, d: &Def) -> NodeId {
        let span = d.span;
        match &d.kind {
            DefKind::Role { agent, guard } => {
                let guard = guard.as_ref().map(|g| self.cons(g));
                let (role, id) = self.agent(agent);
                self.push(Node::Call {
                    role,
                    id,
                    guard,
                    span,
                })
            }
            DefKind::Send { msg, to, guard } => {
                let guard = guard.as_ref().map(|g| self.cons(g));
                let msg = self.tpl(msg);
                let (role, id) = self.agent(to);
                self.push(Node::Send {
                    msg,
                    role,
                    id,
                    guard,
                })
            }
            DefKind::Recv { msg, from, guard } => {
                let msg = self.tpl(msg);
                let (role, id) = self.agent(from);
                let guard = guard.as_ref().map(|g| self.cons(g));
                self.push(Node::Recv {
                    msg,
                    role,
                    id,
                    guard,
                })
            }
            DefKind::Null { guard } => {
                let guard = self.cons(guard);
                self.push(Node::Null { guard })
            }
            DefKind::Seq(a, b) => {
                let (a, b) = (self.def(a), self.def(b));
                self.push(Node::Then(a, b))
            }
            DefKind::Choice(a, b) => {
                let (a, b) = (self.def(a), self.def(b));
                self.push(Node::Or(a, b))
            }
            DefKind::Par(a, b) => {
                let (a, b) = (self.def(a), self.def(b));
                self.push(Node::Par(a, b))
            }
        }
    }

    fn cons(&mut self, c: &Constraint) -> CCons {
        match &c.kind {
            ConstraintKind::Call(t) => {
                let v = self.value(t);
                let (name, args) = match &v {
                    Value::Atom(a) => (Arc::clone(a), Vec::new()),
                    Value::Compound(k) => (
                        Arc::clone(&k.name),
                        k.args.iter().map(|a| Tpl::new(a.clone())).collect(),
                    ),
                    // The parser only builds calls from atoms and compounds.
                    _ => (self.atom("fail"), Vec::new()),
                };
                CCons::Call {
                    name,
                    args,
                    span: c.span,
                }
            }
            ConstraintKind::Compare { op, lhs, rhs } => CCons::Cmp {
                op: *op,
                l: self.tpl(lhs),
                r: self.tpl(rhs),
                span: c.span,
            },
            ConstraintKind::Not(x) => CCons::Not(Box::new(self.cons(x))),
            ConstraintKind::And(a, b) => CCons::And(Box::new(self.cons(a)), Box::new(self.cons(b))),
            ConstraintKind::Or(a, b) => CCons::Or(Box::new(self.cons(a)), Box::new(self.cons(b))),
        }
    }
}
