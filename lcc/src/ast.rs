//! The abstract syntax tree. It mirrors the grammar of the design note; every node carries a
//! [`Span`]. Parentheses leave no node: the tree shape is the grouping.

use crate::span::Span;

/// A whole LCC text: role headers, clauses and any `@annotation(...)` blocks (kept verbatim).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Framework {
    /// `r(Role, Kind[, Min[, Max]])` headers, in source order.
    pub headers: Vec<RoleHeader>,
    /// Clauses `a(Role, Id) :: Def`, in source order.
    pub clauses: Vec<Clause>,
    /// Annotation blocks, verbatim, in source order.
    pub annotations: Vec<Annotation>,
    /// Comments (`//`, `/* */`, `%`), verbatim, in source order; the printer puts each before the
    /// header or clause it precedes or sits in.
    pub comments: Vec<Comment>,
}

/// A comment, kept as text.
#[derive(Clone, Debug, PartialEq)]
pub struct Comment {
    /// The text, with its `//`, `%` or `/* */`.
    pub text: String,
    /// Where it was.
    pub span: Span,
}

/// An `@name(...)` block, kept as text.
#[derive(Clone, Debug, PartialEq)]
pub struct Annotation {
    /// The text of the block, from `@` to the closing parenthesis.
    pub text: String,
    /// Where it was.
    pub span: Span,
}

/// Kind of role in a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleKind {
    /// `initial`: the role that starts the interaction.
    Initial,
    /// `necessary`.
    Necessary,
    /// `optional`.
    Optional,
    /// `auxiliary`.
    Auxiliary,
}

impl RoleKind {
    /// The keyword in LCC text.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Necessary => "necessary",
            Self::Optional => "optional",
            Self::Auxiliary => "auxiliary",
        }
    }
}

/// `r(Role, Kind[, Min[, Max]])`.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleHeader {
    /// The role (may have arguments).
    pub role: Term,
    /// Its kind.
    pub kind: RoleKind,
    /// Minimum number of peers, if given.
    pub min: Option<Term>,
    /// Maximum number of peers, if given.
    pub max: Option<Term>,
    /// The whole header.
    pub span: Span,
}

/// `a(Role, Id) :: Def`.
#[derive(Clone, Debug, PartialEq)]
pub struct Clause {
    /// The head.
    pub agent: Agent,
    /// The body.
    pub body: Def,
    /// The whole clause.
    pub span: Span,
}

/// `a(Role, Id)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    /// The role term (may have arguments).
    pub role: Term,
    /// The id term (variable, atom or string).
    pub id: Term,
    /// The whole `a(...)`.
    pub span: Span,
}

/// A clause body.
#[derive(Clone, Debug, PartialEq)]
pub struct Def {
    /// What it is.
    pub kind: DefKind,
    /// Where.
    pub span: Span,
}

/// The forms of a clause body.
#[derive(Clone, Debug, PartialEq)]
pub enum DefKind {
    /// `a(Role, Id) [<- C]`: role change or recursion.
    Role {
        /// The role to take up.
        agent: Agent,
        /// Guard.
        guard: Option<Constraint>,
    },
    /// `M => A [<- C]`: send, with precondition `C`.
    Send {
        /// The message.
        msg: Term,
        /// The recipient.
        to: Agent,
        /// Precondition.
        guard: Option<Constraint>,
    },
    /// `M <= A [<- C]` or `C <- M <= A`: receive, constraint checked once the message matches.
    Recv {
        /// The message pattern.
        msg: Term,
        /// The sender pattern.
        from: Agent,
        /// Constraint.
        guard: Option<Constraint>,
    },
    /// `null <- C`.
    Null {
        /// The constraint.
        guard: Constraint,
    },
    /// `D1 then D2`.
    Seq(Box<Def>, Box<Def>),
    /// `D1 or D2` (committed choice).
    Choice(Box<Def>, Box<Def>),
    /// `D1 par D2`.
    Par(Box<Def>, Box<Def>),
}

/// A constraint.
#[derive(Clone, Debug, PartialEq)]
pub struct Constraint {
    /// What it is.
    pub kind: ConstraintKind,
    /// Where.
    pub span: Span,
}

/// Comparison built-ins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=` (unification).
    Unify,
    /// `\=` (does not unify).
    NotUnify,
    /// `==` (identical).
    Eq,
    /// `\==` (not identical).
    NotEq,
    /// `<`.
    Lt,
    /// `>`.
    Gt,
    /// `=<`.
    Le,
    /// `>=`.
    Ge,
}

impl CmpOp {
    /// The operator in LCC text.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unify => "=",
            Self::NotUnify => "\\=",
            Self::Eq => "==",
            Self::NotEq => "\\==",
            Self::Lt => "<",
            Self::Gt => ">",
            Self::Le => "=<",
            Self::Ge => ">=",
        }
    }
}

/// The forms of a constraint.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstraintKind {
    /// A predicate call `p(X, Y)` (or an atom `p`).
    Call(Term),
    /// `L op R`.
    Compare {
        /// The operator.
        op: CmpOp,
        /// Left operand.
        lhs: Term,
        /// Right operand.
        rhs: Term,
    },
    /// `not C`, `¬C`, `\+ C`.
    Not(Box<Constraint>),
    /// `C1 and C2`.
    And(Box<Constraint>, Box<Constraint>),
    /// `C1 or C2` (inside parentheses).
    Or(Box<Constraint>, Box<Constraint>),
}

/// A Prolog term.
#[derive(Clone, Debug, PartialEq)]
pub struct Term {
    /// What it is.
    pub kind: TermKind,
    /// Where.
    pub span: Span,
}

/// The forms of a term.
#[derive(Clone, Debug, PartialEq)]
pub enum TermKind {
    /// A named variable.
    Var(String),
    /// `_`.
    Anon,
    /// An atom.
    Atom(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// `f(T1, ..., Tn)`; `n` may be 0 (`f()`).
    Compound {
        /// Functor name.
        name: String,
        /// Arguments.
        args: Vec<Term>,
    },
    /// `[T1, ..., Tn | Tail]`; no items and no tail is `[]`.
    List {
        /// Items.
        items: Vec<Term>,
        /// Tail after `|`.
        tail: Option<Box<Term>>,
    },
}

impl Term {
    /// `a(Role, Id)` read as an agent, if the term has that shape.
    #[must_use]
    pub fn as_agent(&self) -> Option<Agent> {
        match &self.kind {
            TermKind::Compound { name, args } if name == "a" && args.len() == 2 => Some(Agent {
                role: args[0].clone(),
                id: args[1].clone(),
                span: self.span,
            }),
            _ => None,
        }
    }

    /// Is this the atom `name`?
    #[must_use]
    pub fn is_atom(&self, name: &str) -> bool {
        matches!(&self.kind, TermKind::Atom(a) if a == name)
    }
}

/// Sets every span in a tree to `0..0`, to compare trees regardless of layout.
pub trait ClearSpans {
    /// Clears the spans.
    fn clear_spans(&mut self);
}

impl ClearSpans for Framework {
    fn clear_spans(&mut self) {
        for h in &mut self.headers {
            h.span = Span::default();
            h.role.clear_spans();
            if let Some(t) = &mut h.min {
                t.clear_spans();
            }
            if let Some(t) = &mut h.max {
                t.clear_spans();
            }
        }
        for c in &mut self.clauses {
            c.clear_spans();
        }
        for a in &mut self.annotations {
            a.span = Span::default();
        }
        for c in &mut self.comments {
            c.span = Span::default();
        }
    }
}

impl ClearSpans for Clause {
    fn clear_spans(&mut self) {
        self.span = Span::default();
        self.agent.clear_spans();
        self.body.clear_spans();
    }
}

impl ClearSpans for Agent {
    fn clear_spans(&mut self) {
        self.span = Span::default();
        self.role.clear_spans();
        self.id.clear_spans();
    }
}

impl<T: ClearSpans> ClearSpans for Option<T> {
    fn clear_spans(&mut self) {
        if let Some(t) = self {
            t.clear_spans();
        }
    }
}

impl ClearSpans for Def {
    fn clear_spans(&mut self) {
        self.span = Span::default();
        match &mut self.kind {
            DefKind::Role { agent, guard } => {
                agent.clear_spans();
                guard.clear_spans();
            }
            DefKind::Send {
                msg,
                to: agent,
                guard,
            }
            | DefKind::Recv {
                msg,
                from: agent,
                guard,
            } => {
                msg.clear_spans();
                agent.clear_spans();
                guard.clear_spans();
            }
            DefKind::Null { guard } => guard.clear_spans(),
            DefKind::Seq(a, b) | DefKind::Choice(a, b) | DefKind::Par(a, b) => {
                a.clear_spans();
                b.clear_spans();
            }
        }
    }
}

impl ClearSpans for Constraint {
    fn clear_spans(&mut self) {
        self.span = Span::default();
        match &mut self.kind {
            ConstraintKind::Call(t) => t.clear_spans(),
            ConstraintKind::Compare { lhs, rhs, .. } => {
                lhs.clear_spans();
                rhs.clear_spans();
            }
            ConstraintKind::Not(c) => c.clear_spans(),
            ConstraintKind::And(a, b) | ConstraintKind::Or(a, b) => {
                a.clear_spans();
                b.clear_spans();
            }
        }
    }
}

impl ClearSpans for Term {
    fn clear_spans(&mut self) {
        self.span = Span::default();
        match &mut self.kind {
            TermKind::Compound { args, .. } => args.iter_mut().for_each(ClearSpans::clear_spans),
            TermKind::List { items, tail } => {
                items.iter_mut().for_each(ClearSpans::clear_spans);
                if let Some(t) = tail {
                    t.clear_spans();
                }
            }
            _ => {}
        }
    }
}
