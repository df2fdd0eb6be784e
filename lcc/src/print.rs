//! The pretty-printer: a [`Framework`] back to LCC text that parses to the same tree.
//! Comments are kept (each before the item it was in or before); annotations are printed first.

use crate::ast::{
    Agent, Clause, Constraint, ConstraintKind, Def, DefKind, Framework, RoleHeader, Term, TermKind,
};
use crate::span::Span;

const INDENT: &str = "    ";

/// Prints a whole framework. Each comment is printed before the header or clause it preceded or
/// sat in, in source order; comments after the last item end the text.
#[must_use]
pub fn print(fw: &Framework) -> String {
    let mut out = String::new();
    let mut comments = fw.comments.iter().peekable();
    let mut comments_before = |out: &mut String, end: Option<Span>| {
        while let Some(c) = comments.next_if(|c| end.is_none_or(|e| c.span.start < e.end)) {
            out.push_str(&c.text);
            out.push('\n');
        }
    };
    for a in &fw.annotations {
        out.push_str(&a.text);
        out.push('\n');
    }
    if !fw.annotations.is_empty() {
        out.push('\n');
    }
    for h in &fw.headers {
        comments_before(&mut out, Some(h.span));
        out.push_str(&header(h));
        out.push('\n');
    }
    for c in &fw.clauses {
        if !out.is_empty() {
            out.push('\n');
        }
        comments_before(&mut out, Some(c.span));
        out.push_str(&clause(c));
    }
    let before = out.len();
    comments_before(&mut out, None);
    if out.len() > before && before > 0 {
        out.insert(before, '\n');
    }
    out
}

/// Prints a role header.
#[must_use]
pub fn header(h: &RoleHeader) -> String {
    let mut s = format!("r({}, {}", term(&h.role), h.kind.as_str());
    for t in [&h.min, &h.max].into_iter().flatten() {
        s.push_str(", ");
        s.push_str(&term(t));
    }
    s.push(')');
    s
}

/// Prints a clause, one event per line.
#[must_use]
pub fn clause(c: &Clause) -> String {
    let mut s = format!("{} ::\n", agent(&c.agent));
    def_into(&mut s, &c.body, 1, Level::Seq);
    s.push('\n');
    s
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Seq,
    Choice,
    Prim,
}

fn level(d: &Def) -> Level {
    match d.kind {
        DefKind::Seq(..) | DefKind::Par(..) => Level::Seq,
        DefKind::Choice(..) => Level::Choice,
        _ => Level::Prim,
    }
}

fn pad(s: &mut String, indent: usize) {
    for _ in 0..indent {
        s.push_str(INDENT);
    }
}

/// Prints `d` at `indent`, in a context that needs at least `need` binding strength.
fn def_into(s: &mut String, d: &Def, indent: usize, need: Level) {
    if level(d) < need {
        pad(s, indent);
        s.push_str("(\n");
        def_into(s, d, indent + 1, Level::Seq);
        s.push('\n');
        pad(s, indent);
        s.push(')');
        return;
    }
    match &d.kind {
        DefKind::Seq(a, b) | DefKind::Par(a, b) => {
            let op = if matches!(d.kind, DefKind::Seq(..)) {
                "then"
            } else {
                "par"
            };
            def_into(s, a, indent, Level::Choice);
            s.push('\n');
            pad(s, indent);
            s.push_str(op);
            s.push('\n');
            def_into(s, b, indent, Level::Seq);
        }
        DefKind::Choice(a, b) => {
            def_into(s, a, indent, Level::Choice);
            s.push('\n');
            pad(s, indent);
            s.push_str("or\n");
            def_into(s, b, indent, Level::Prim);
        }
        _ => {
            pad(s, indent);
            s.push_str(&event(d));
        }
    }
}

/// Prints one event (a leaf of a clause body) on one line; composite bodies in parentheses.
#[must_use]
pub fn event(d: &Def) -> String {
    let with_guard = |mut s: String, g: &Option<Constraint>| {
        if let Some(g) = g {
            s.push_str(" <- ");
            s.push_str(&constraint(g));
        }
        s
    };
    match &d.kind {
        DefKind::Role { agent: a, guard } => with_guard(agent(a), guard),
        DefKind::Send { msg, to, guard } => {
            with_guard(format!("{} => {}", term(msg), agent(to)), guard)
        }
        DefKind::Recv { msg, from, guard } => {
            with_guard(format!("{} <= {}", term(msg), agent(from)), guard)
        }
        DefKind::Null { guard } => format!("null <- {}", constraint(guard)),
        _ => {
            let mut s = String::new();
            def_into(&mut s, d, 0, Level::Prim);
            s
        }
    }
}

/// Prints `a(Role, Id)`.
#[must_use]
pub fn agent(a: &Agent) -> String {
    format!("a({}, {})", term(&a.role), term(&a.id))
}

/// Prints a constraint as it stands after `<-` (a top-level `or` gets parentheses).
#[must_use]
pub fn constraint(c: &Constraint) -> String {
    let mut s = String::new();
    constraint_into(&mut s, c, 1);
    s
}

/// Levels: 0 = or, 1 = and, 2 = unary.
fn constraint_into(s: &mut String, c: &Constraint, need: u8) {
    let lv = match c.kind {
        ConstraintKind::Or(..) => 0,
        ConstraintKind::And(..) => 1,
        _ => 2,
    };
    if lv < need {
        s.push('(');
        constraint_into(s, c, 0);
        s.push(')');
        return;
    }
    match &c.kind {
        ConstraintKind::Call(t) => s.push_str(&term(t)),
        ConstraintKind::Compare { op, lhs, rhs } => {
            s.push_str(&format!("{} {} {}", term(lhs), op.as_str(), term(rhs)));
        }
        ConstraintKind::Not(x) => {
            s.push_str("not ");
            constraint_into(s, x, 2);
        }
        ConstraintKind::And(a, b) => {
            constraint_into(s, a, 1);
            s.push_str(" and ");
            constraint_into(s, b, 2);
        }
        ConstraintKind::Or(a, b) => {
            constraint_into(s, a, 0);
            s.push_str(" or ");
            constraint_into(s, b, 1);
        }
    }
}

const KEYWORDS: [&str; 5] = ["then", "or", "and", "par", "not"];

fn plain_ident(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && s.chars().all(|c| c == '_' || c.is_alphanumeric())
        && !KEYWORDS.contains(&s)
}

fn is_plain_atom(s: &str) -> bool {
    plain_ident(s)
        && s.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() && !c.is_uppercase())
}

fn quote(s: &str, q: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    let mut cs = s.chars().peekable();
    while let Some(c) = cs.next() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            // Escapes are octal (as in Java and OK), so `\0` before a digit 0-7 needs all three.
            '\0' if cs.peek().is_some_and(|d| ('0'..='7').contains(d)) => out.push_str("\\000"),
            '\0' => out.push_str("\\0"),
            '\\' => out.push_str("\\\\"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// Prints a string literal with LCC escapes.
#[must_use]
pub fn string(s: &str) -> String {
    quote(s, '"')
}

/// Prints an atom, quoted when it is not a plain lower-case identifier.
#[must_use]
pub fn atom(s: &str) -> String {
    if is_plain_atom(s) {
        s.to_owned()
    } else {
        quote(s, '\'')
    }
}

/// Prints a float so that it reads back as the same float (always with `.` or `e`).
#[must_use]
pub fn float(f: f64) -> String {
    let s = format!("{f:?}");
    if s.contains(['.', 'e', 'E', 'i', 'N']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// Prints a term.
#[must_use]
pub fn term(t: &Term) -> String {
    let mut s = String::new();
    term_into(&mut s, t);
    s
}

fn term_into(s: &mut String, t: &Term) {
    match &t.kind {
        TermKind::Var(v) => s.push_str(v),
        TermKind::Anon => s.push('_'),
        TermKind::Atom(a) => s.push_str(&atom(a)),
        TermKind::Int(i) => {
            s.push_str(&i.to_string());
        }
        TermKind::Float(f) => s.push_str(&float(*f)),
        TermKind::Str(x) => s.push_str(&quote(x, '"')),
        TermKind::Compound { name, args } => {
            // `_name(...)` reads back as a functor; `Name(...)` would not.
            if plain_ident(name) && name != "_" && !name.starts_with(char::is_uppercase) {
                s.push_str(name);
            } else {
                s.push_str(&quote(name, '\''));
            }
            s.push('(');
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                term_into(s, a);
            }
            s.push(')');
        }
        TermKind::List { items, tail } => {
            s.push('[');
            for (i, a) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                term_into(s, a);
            }
            if let Some(t) = tail {
                s.push_str(" | ");
                term_into(s, t);
            }
            s.push(']');
        }
    }
}
