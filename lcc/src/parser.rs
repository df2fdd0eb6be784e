//! The parser: tokens to a [`Framework`], recursive descent with the design note's precedence.
//!
//! Precedence, loosest first: `then`/`par` (nest to the right), `or` (nests to the left), then a
//! single event with its `<-` constraint, whose `and` binds tightest. So `a or b then c` is
//! `(a or b) then c` and `a then b or c` is `a then (b or c)`. Inside a `<-` constraint a top-level
//! `or` ends the constraint (it belongs to the clause body); write `(p or q)` for a disjunctive
//! constraint. A receive's constraint may stand on either side (`M <= A <- C` or `C <- M <= A`);
//! both give the same tree. Errors recover at the next clause head, so one pass reports one error
//! per broken clause.

use crate::ast::{
    Annotation, Clause, CmpOp, Comment, Constraint, ConstraintKind, Def, DefKind, Framework,
    RoleHeader, RoleKind, Term, TermKind,
};
use crate::error::{Error, SyntaxError};
use crate::lexer::lex_with_comments;
use crate::span::Span;
use crate::token::{Token, TokenKind};

/// Deepest nesting the parser accepts. Each parenthesis, argument list, list or `not` counts
/// [`NEST_COST`]; each further event of a `then`/`or`/`par` chain counts 1 (the tree nests there).
pub const MAX_DEPTH: usize = 1024;

/// Depth cost of one level of bracketing (so at most 128 nested brackets).
pub const NEST_COST: usize = 8;

/// Parses an LCC text.
///
/// # Errors
/// Every error found (a lexical error stops at once; syntax errors recover at the next clause).
pub fn parse(src: &str) -> Result<Framework, Vec<Error>> {
    let mut p = Parser::new(src)?;
    p.framework()
}

/// Parses a file of Prolog-style facts, `term.` each.
///
/// # Errors
/// Every error found.
pub fn parse_terms(src: &str) -> Result<Vec<Term>, Vec<Error>> {
    let mut p = Parser::new(src)?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    while !p.at(&TokenKind::Eof) {
        match p
            .term(0)
            .and_then(|t| p.expect(&TokenKind::Dot, "`.`").map(|_| t))
        {
            Ok(t) => out.push(t),
            Err(e) => {
                errors.push(e);
                while !p.at(&TokenKind::Eof) && !p.at(&TokenKind::Dot) {
                    p.pos += 1;
                }
                if p.at(&TokenKind::Dot) {
                    p.pos += 1;
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

type PResult<T> = Result<T, Error>;

/// A term or a comparison, before the parser knows which it needs.
enum CmpTerm {
    Plain(Term),
    Cmp(Constraint),
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    /// For each `(` or `)`, the index of its partner (or `usize::MAX`).
    partner: Vec<usize>,
    annotations: Vec<Annotation>,
    comments: Vec<Comment>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Result<Self, Vec<Error>> {
        let (all, comment_spans) = lex_with_comments(src).map_err(|e| vec![e])?;
        let comments = comment_spans
            .into_iter()
            .map(|span| Comment {
                text: src.get(span.range()).unwrap_or_default().to_owned(),
                span,
            })
            .collect();
        let mut toks = all;
        let mut annotations = Vec::new();
        if toks.iter().any(|t| t.kind == TokenKind::Annotation) {
            toks.retain(|t| {
                if t.kind == TokenKind::Annotation {
                    let text = src.get(t.span.range()).unwrap_or_default().to_owned();
                    annotations.push(Annotation { text, span: t.span });
                    false
                } else {
                    true
                }
            });
        }
        let mut partner = vec![usize::MAX; toks.len()];
        let mut stack = Vec::new();
        for (i, t) in toks.iter().enumerate() {
            match t.kind {
                TokenKind::LParen => stack.push(i),
                TokenKind::RParen => {
                    if let Some(j) = stack.pop() {
                        partner[i] = j;
                        partner[j] = i;
                    }
                }
                _ => {}
            }
        }
        Ok(Self {
            src,
            toks,
            pos: 0,
            partner,
            annotations,
            comments,
        })
    }

    fn tok(&self) -> &Token {
        // The token list always ends with Eof and `pos` never passes it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn peek(&self) -> &TokenKind {
        &self.tok().kind
    }

    fn at(&self, k: &TokenKind) -> bool {
        self.peek() == k
    }

    fn bump(&mut self) -> Token {
        let t = self.tok().clone();
        if t.kind != TokenKind::Eof {
            self.pos += 1;
        }
        t
    }

    fn text(&self, span: Span) -> &'a str {
        self.src.get(span.range()).unwrap_or_default()
    }

    fn found(&self) -> String {
        let t = self.tok();
        match t.kind {
            TokenKind::Ident | TokenKind::Var | TokenKind::Int(_) | TokenKind::Float(_) => {
                format!("`{}`", self.text(t.span))
            }
            _ => t.kind.to_string(),
        }
    }

    fn expected(&self, what: &str) -> Error {
        let e = SyntaxError::Expected {
            expected: what.to_owned(),
            found: self.found(),
        };
        let mut span = self.tok().span;
        if self.tok().kind == TokenKind::Eof && self.pos > 0 {
            // Point just after the last token, not at trailing whitespace or comments.
            let end = self.toks[self.pos - 1].span.end;
            span = Span::new(end, end);
        }
        Error::new(e, span)
    }

    fn expect(&mut self, k: &TokenKind, what: &str) -> PResult<Token> {
        if self.at(k) {
            Ok(self.bump())
        } else {
            Err(self.expected(what))
        }
    }

    fn deep(&self, depth: usize) -> PResult<()> {
        if depth > MAX_DEPTH {
            Err(Error::new(SyntaxError::TooDeep(MAX_DEPTH), self.tok().span))
        } else {
            Ok(())
        }
    }

    fn framework(&mut self) -> Result<Framework, Vec<Error>> {
        let mut fw = Framework::default();
        let mut errors = Vec::new();
        while !self.at(&TokenKind::Eof) {
            if self.at(&TokenKind::Dot) {
                self.bump();
                continue;
            }
            let start = self.pos;
            if let Err(e) = self.item(&mut fw) {
                errors.push(e);
                self.recover(start);
            }
        }
        fw.annotations = std::mem::take(&mut self.annotations);
        fw.comments = std::mem::take(&mut self.comments);
        if errors.is_empty() {
            Ok(fw)
        } else {
            Err(errors)
        }
    }

    /// Skips to the next clause head `a(...) ::` after `start`, or to the end.
    fn recover(&mut self, start: usize) {
        let mut i = start + 1;
        while i < self.toks.len() {
            if self.toks[i].kind == TokenKind::Ident
                && self.text(self.toks[i].span) == "a"
                && self
                    .toks
                    .get(i + 1)
                    .is_some_and(|t| t.kind == TokenKind::LParen)
            {
                let close = self.partner[i + 1];
                if self
                    .toks
                    .get(close.wrapping_add(1))
                    .is_some_and(|t| t.kind == TokenKind::ColonColon)
                {
                    self.pos = i;
                    return;
                }
            }
            i += 1;
        }
        self.pos = self.toks.len() - 1;
    }

    fn item(&mut self, fw: &mut Framework) -> PResult<()> {
        let head = self.term(0)?;
        if self.at(&TokenKind::ColonColon) {
            self.bump();
            let agent = head.as_agent().ok_or_else(|| {
                Error::new(
                    SyntaxError::BadClauseHead(self.text(head.span).to_owned()),
                    head.span,
                )
            })?;
            let body = self.def(1)?;
            let span = head.span.to(body.span);
            fw.clauses.push(Clause { agent, body, span });
        } else {
            fw.headers.push(self.header(head)?);
        }
        if self.at(&TokenKind::Dot) {
            self.bump();
        }
        Ok(())
    }

    fn header(&self, t: Term) -> PResult<RoleHeader> {
        let bad = || Error::new(SyntaxError::BadItem(self.text(t.span).to_owned()), t.span);
        let TermKind::Compound { name, args } = &t.kind else {
            return Err(bad());
        };
        if name != "r" || !(2..=4).contains(&args.len()) {
            return Err(bad());
        }
        let kind = match &args[1].kind {
            TermKind::Atom(k) if k == "initial" => RoleKind::Initial,
            TermKind::Atom(k) if k == "necessary" => RoleKind::Necessary,
            TermKind::Atom(k) if k == "optional" => RoleKind::Optional,
            TermKind::Atom(k) if k == "auxiliary" => RoleKind::Auxiliary,
            _ => {
                let e = SyntaxError::BadRoleKind(self.text(args[1].span).to_owned());
                return Err(Error::new(e, args[1].span));
            }
        };
        Ok(RoleHeader {
            role: args[0].clone(),
            kind,
            min: args.get(2).cloned(),
            max: args.get(3).cloned(),
            span: t.span,
        })
    }

    /// `Def := Choice { (then | par) Choice }`, nesting to the right.
    fn def(&mut self, depth: usize) -> PResult<Def> {
        let mut items = Vec::new();
        let mut ops = Vec::new();
        loop {
            self.deep(depth + items.len())?;
            items.push(self.choice(depth + items.len())?);
            match self.peek() {
                TokenKind::Then => ops.push(true),
                TokenKind::Par => ops.push(false),
                _ => break,
            }
            self.bump();
        }
        let mut acc = items.pop().expect("the loop pushes at least one item");
        while let (Some(l), Some(is_then)) = (items.pop(), ops.pop()) {
            let span = l.span.to(acc.span);
            let kind = if is_then {
                DefKind::Seq(Box::new(l), Box::new(acc))
            } else {
                DefKind::Par(Box::new(l), Box::new(acc))
            };
            acc = Def { kind, span };
        }
        Ok(acc)
    }

    /// `Choice := Prim { or Prim }`, nesting to the left.
    fn choice(&mut self, depth: usize) -> PResult<Def> {
        let mut acc = self.prim(depth)?;
        let mut n = 1;
        while self.at(&TokenKind::Or) {
            self.bump();
            n += 1;
            self.deep(depth + n)?;
            let r = self.prim(depth + n)?;
            let span = acc.span.to(r.span);
            acc = Def {
                kind: DefKind::Choice(Box::new(acc), Box::new(r)),
                span,
            };
        }
        Ok(acc)
    }

    fn prim(&mut self, depth: usize) -> PResult<Def> {
        self.deep(depth)?;
        match self.peek() {
            TokenKind::LParen => self.paren(depth),
            TokenKind::Not => self.paper_form(depth),
            _ => self.event(depth),
        }
    }

    /// `( Def )`, or a paper-form receive whose constraint is in parentheses.
    fn paren(&mut self, depth: usize) -> PResult<Def> {
        let close = self.partner[self.pos];
        let after = self.toks.get(close.wrapping_add(1)).map(|t| &t.kind);
        if after == Some(&TokenKind::Arrow) {
            return self.paper_form(depth);
        }
        let open = self.bump().span;
        let mut d = self.def(depth + NEST_COST)?;
        let close = self.expect(&TokenKind::RParen, "`)`")?.span;
        d.span = open.to(close);
        Ok(d)
    }

    /// A single event: send, receive, `null <- C`, or role change.
    fn event(&mut self, depth: usize) -> PResult<Def> {
        let start = self.tok().span;
        match (self.cmp_term(depth)?, self.peek().clone()) {
            (CmpTerm::Plain(msg), TokenKind::Send | TokenKind::Recv) => {
                self.message(msg, None, depth)
            }
            (CmpTerm::Cmp(c), TokenKind::Send | TokenKind::Recv) => {
                Err(Error::new(SyntaxError::BadMessage, c.span))
            }
            (CmpTerm::Plain(t), TokenKind::Arrow) if t.is_atom("null") => {
                self.bump();
                let guard = self.conj(depth + 1)?;
                Ok(Def {
                    span: start.to(guard.span),
                    kind: DefKind::Null { guard },
                })
            }
            (CmpTerm::Plain(t), TokenKind::Arrow) if t.as_agent().is_some() => {
                self.bump();
                let agent = t.as_agent().expect("checked by the guard");
                let guard = self.conj(depth + 1)?;
                let span = start.to(guard.span);
                Ok(Def {
                    kind: DefKind::Role {
                        agent,
                        guard: Some(guard),
                    },
                    span,
                })
            }
            (ct, TokenKind::Arrow | TokenKind::And) => {
                let mut c = self.to_constraint(ct)?;
                while self.at(&TokenKind::And) {
                    self.bump();
                    let r = self.unary(depth + 1)?;
                    c = Constraint {
                        span: c.span.to(r.span),
                        kind: and(c, r),
                    };
                }
                self.expect(&TokenKind::Arrow, "`<-`")?;
                let msg = self.term(depth + 1)?;
                self.message(msg, Some(c), depth)
            }
            (CmpTerm::Plain(t), _) if t.as_agent().is_some() => {
                self.not_a_clause_head(&t)?;
                let agent = t.as_agent().expect("checked by the guard");
                Ok(Def {
                    span: t.span,
                    kind: DefKind::Role { agent, guard: None },
                })
            }
            _ => Err(self.expected("`=>`, `<=` or `<-`")),
        }
    }

    /// An `a(...)` followed by `::` is the next clause's head, not part of this body: the body
    /// ended too early (a `then` too many, a missing recipient).
    fn not_a_clause_head(&self, t: &Term) -> PResult<()> {
        if self.at(&TokenKind::ColonColon) {
            let e = SyntaxError::Expected {
                expected: "an event".into(),
                found: format!("the head of the next clause `{} ::`", self.text(t.span)),
            };
            return Err(Error::new(e, t.span));
        }
        Ok(())
    }

    /// `C <- M <= A` (or `=>`), where `C` starts with `not` or `(`.
    fn paper_form(&mut self, depth: usize) -> PResult<Def> {
        let c = self.conj(depth + NEST_COST)?;
        self.expect(&TokenKind::Arrow, "`<-`")?;
        let msg = self.term(depth + 1)?;
        self.message(msg, Some(c), depth)
    }

    /// After the message term: `(=> | <=) a(R, I) [<- C]`.
    fn message(&mut self, msg: Term, left: Option<Constraint>, depth: usize) -> PResult<Def> {
        let send = match self.peek() {
            TokenKind::Send => true,
            TokenKind::Recv => false,
            _ => return Err(self.expected("`=>` or `<=`")),
        };
        self.bump();
        let t = self.term(depth + 1)?;
        self.not_a_clause_head(&t)?;
        let agent = t.as_agent().ok_or_else(|| {
            let e = SyntaxError::Expected {
                expected: "`a(Role, Id)`".into(),
                found: format!("`{}`", self.text(t.span)),
            };
            Error::new(e, t.span)
        })?;
        let mut end = agent.span;
        let right = if self.at(&TokenKind::Arrow) {
            self.bump();
            let c = self.conj(depth + 1)?;
            end = c.span;
            Some(c)
        } else {
            None
        };
        let start = left.as_ref().map_or(msg.span, |c| c.span);
        let guard = match (left, right) {
            (Some(l), Some(r)) => Some(Constraint {
                span: l.span.to(r.span),
                kind: and(l, r),
            }),
            (l, r) => l.or(r),
        };
        let kind = if send {
            DefKind::Send {
                msg,
                to: agent,
                guard,
            }
        } else {
            DefKind::Recv {
                msg,
                from: agent,
                guard,
            }
        };
        Ok(Def {
            kind,
            span: start.to(end),
        })
    }

    /// `Conj := Unary { and Unary }`.
    fn conj(&mut self, depth: usize) -> PResult<Constraint> {
        let mut acc = self.unary(depth)?;
        while self.at(&TokenKind::And) {
            self.bump();
            let r = self.unary(depth + 1)?;
            acc = Constraint {
                span: acc.span.to(r.span),
                kind: and(acc, r),
            };
        }
        Ok(acc)
    }

    /// `Disj := Conj { or Conj }` (only inside parentheses).
    fn disj(&mut self, depth: usize) -> PResult<Constraint> {
        let mut acc = self.conj(depth)?;
        while self.at(&TokenKind::Or) {
            self.bump();
            let r = self.conj(depth + 1)?;
            let span = acc.span.to(r.span);
            acc = Constraint {
                span,
                kind: ConstraintKind::Or(Box::new(acc), Box::new(r)),
            };
        }
        Ok(acc)
    }

    fn unary(&mut self, depth: usize) -> PResult<Constraint> {
        self.deep(depth)?;
        match self.peek() {
            TokenKind::Not => {
                let start = self.bump().span;
                let c = self.unary(depth + NEST_COST)?;
                Ok(Constraint {
                    span: start.to(c.span),
                    kind: ConstraintKind::Not(Box::new(c)),
                })
            }
            TokenKind::LParen => {
                let open = self.bump().span;
                let mut c = self.disj(depth + NEST_COST)?;
                let close = self.expect(&TokenKind::RParen, "`)`")?.span;
                c.span = open.to(close);
                Ok(c)
            }
            _ => {
                let ct = self.cmp_term(depth)?;
                self.to_constraint(ct)
            }
        }
    }

    fn to_constraint(&self, ct: CmpTerm) -> PResult<Constraint> {
        match ct {
            CmpTerm::Cmp(c) => Ok(c),
            CmpTerm::Plain(t) => match t.kind {
                TermKind::Atom(_) | TermKind::Compound { .. } => Ok(Constraint {
                    span: t.span,
                    kind: ConstraintKind::Call(t),
                }),
                _ => {
                    let e = SyntaxError::BadConstraint(self.text(t.span).to_owned());
                    Err(Error::new(e, t.span))
                }
            },
        }
    }

    fn cmp_term(&mut self, depth: usize) -> PResult<CmpTerm> {
        let lhs = self.term(depth)?;
        let op = match self.peek() {
            TokenKind::Eq => CmpOp::Unify,
            TokenKind::NotEq => CmpOp::NotUnify,
            TokenKind::EqEq => CmpOp::Eq,
            TokenKind::NotEqEq => CmpOp::NotEq,
            TokenKind::Lt => CmpOp::Lt,
            TokenKind::Gt => CmpOp::Gt,
            TokenKind::Le => CmpOp::Le,
            TokenKind::Ge => CmpOp::Ge,
            _ => return Ok(CmpTerm::Plain(lhs)),
        };
        self.bump();
        let rhs = self.term(depth + 1)?;
        let span = lhs.span.to(rhs.span);
        Ok(CmpTerm::Cmp(Constraint {
            span,
            kind: ConstraintKind::Compare { op, lhs, rhs },
        }))
    }

    fn term(&mut self, depth: usize) -> PResult<Term> {
        self.deep(depth)?;
        let t = self.bump();
        let span = t.span;
        let kind = match t.kind {
            TokenKind::Ident | TokenKind::QuotedAtom(_) | TokenKind::Var => {
                let name = match &t.kind {
                    TokenKind::QuotedAtom(s) => s.clone(),
                    _ => self.text(span).to_owned(),
                };
                if self.at(&TokenKind::LParen) {
                    // A functor is an atom. `_name` is one too: OK's lexer reads it as a constant
                    // (LiJ's `_findPeers(...)`), but `C1(X)` and `_(X)` are not LCC.
                    if t.kind == TokenKind::Var
                        && (name == "_" || name.starts_with(|c: char| c.is_uppercase()))
                    {
                        return Err(Error::new(SyntaxError::VarFunctor(name), span));
                    }
                    return self.compound(name, span, depth);
                }
                match t.kind {
                    TokenKind::Var if name == "_" => TermKind::Anon,
                    TokenKind::Var => TermKind::Var(name),
                    _ => TermKind::Atom(name),
                }
            }
            TokenKind::Str(s) => TermKind::Str(s),
            TokenKind::Int(n) => TermKind::Int(
                i64::try_from(n).map_err(|_| Error::new(SyntaxError::IntegerOverflow, span))?,
            ),
            TokenKind::Float(f) => TermKind::Float(f),
            TokenKind::Minus => {
                let n = self.bump();
                let span = span.to(n.span);
                let kind = match n.kind {
                    TokenKind::Int(v) => TermKind::Int(
                        0i64.checked_sub_unsigned(v)
                            .ok_or_else(|| Error::new(SyntaxError::IntegerOverflow, span))?,
                    ),
                    TokenKind::Float(f) => TermKind::Float(-f),
                    _ => {
                        self.pos -= usize::from(n.kind != TokenKind::Eof);
                        return Err(self.expected("a number after `-`"));
                    }
                };
                return Ok(Term { kind, span });
            }
            TokenKind::LBracket => return self.list(span, depth),
            _ => {
                self.pos -= usize::from(t.kind != TokenKind::Eof);
                return Err(self.expected("a term"));
            }
        };
        Ok(Term { kind, span })
    }

    fn compound(&mut self, name: String, start: Span, depth: usize) -> PResult<Term> {
        self.bump();
        let mut args = Vec::new();
        if !self.at(&TokenKind::RParen) {
            loop {
                args.push(self.term(depth + NEST_COST)?);
                if !self.at(&TokenKind::Comma) {
                    break;
                }
                self.bump();
            }
        }
        let end = self.expect(&TokenKind::RParen, "`,` or `)`")?.span;
        Ok(Term {
            kind: TermKind::Compound { name, args },
            span: start.to(end),
        })
    }

    fn list(&mut self, start: Span, depth: usize) -> PResult<Term> {
        let mut items = Vec::new();
        let mut tail = None;
        if !self.at(&TokenKind::RBracket) {
            loop {
                items.push(self.term(depth + NEST_COST)?);
                match self.peek() {
                    TokenKind::Comma => {
                        self.bump();
                    }
                    TokenKind::Bar => {
                        self.bump();
                        tail = Some(Box::new(self.term(depth + NEST_COST)?));
                        break;
                    }
                    _ => break,
                }
            }
        }
        let end = self.expect(&TokenKind::RBracket, "`,`, `|` or `]`")?.span;
        Ok(Term {
            kind: TermKind::List { items, tail },
            span: start.to(end),
        })
    }
}

fn and(a: Constraint, b: Constraint) -> ConstraintKind {
    ConstraintKind::And(Box::new(a), Box::new(b))
}
