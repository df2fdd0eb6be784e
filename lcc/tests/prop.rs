//! Properties: the lexer and parser never panic on arbitrary input, and `parse(print(ast)) == ast`
//! on generated trees (spans aside).

use keel_lcc::ast::{
    Agent, Annotation, Clause, ClearSpans, CmpOp, Comment, Constraint, ConstraintKind, Def,
    DefKind, Framework, RoleHeader, RoleKind, Term, TermKind,
};
use keel_lcc::{lexer, parse, print, Span};
use proptest::prelude::*;

fn t(kind: TermKind) -> Term {
    Term {
        kind,
        span: Span::default(),
    }
}

fn atom_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("foo".to_owned()),
        Just("null".to_owned()),
        Just("then".to_owned()),
        Just("Hello".to_owned()),
        Just("a b".to_owned()),
        Just(String::new()),
        Just("it's".to_owned()),
        Just("_x".to_owned()),
        Just("ünï".to_owned()),
        "[a-z][a-zA-Z0-9_]{0,6}",
    ]
}

fn term() -> impl Strategy<Value = Term> {
    let leaf = prop_oneof![
        prop_oneof![Just("X"), Just("Id"), Just("_G"), Just("Need2")]
            .prop_map(|v| t(TermKind::Var(v.to_owned()))),
        Just(t(TermKind::Anon)),
        atom_name().prop_map(|a| t(TermKind::Atom(a))),
        any::<i64>().prop_map(|i| t(TermKind::Int(i))),
        prop_oneof![-1e6f64..1e6, Just(1e300), Just(-2.5e-7), Just(0.0)]
            .prop_map(|f| t(TermKind::Float(f))),
        "[ -~\n\t\u{e9}]{0,8}".prop_map(|s| t(TermKind::Str(s))),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (atom_name(), prop::collection::vec(inner.clone(), 0..3))
                .prop_map(|(name, args)| t(TermKind::Compound { name, args })),
            (
                prop::collection::vec(inner.clone(), 0..3),
                prop::option::of(inner)
            )
                .prop_map(|(items, tail)| {
                    let tail = if items.is_empty() {
                        None
                    } else {
                        tail.map(Box::new)
                    };
                    t(TermKind::List { items, tail })
                }),
        ]
    })
}

fn callable() -> impl Strategy<Value = Term> {
    (atom_name(), prop::collection::vec(term(), 0..3)).prop_map(|(name, args)| {
        if args.is_empty() {
            t(TermKind::Atom(name))
        } else {
            t(TermKind::Compound { name, args })
        }
    })
}

fn c(kind: ConstraintKind) -> Constraint {
    Constraint {
        kind,
        span: Span::default(),
    }
}

fn constraint() -> impl Strategy<Value = Constraint> {
    let op = prop_oneof![
        Just(CmpOp::Unify),
        Just(CmpOp::NotUnify),
        Just(CmpOp::Eq),
        Just(CmpOp::NotEq),
        Just(CmpOp::Lt),
        Just(CmpOp::Gt),
        Just(CmpOp::Le),
        Just(CmpOp::Ge),
    ];
    let leaf = prop_oneof![
        callable().prop_map(|t| c(ConstraintKind::Call(t))),
        (op, term(), term()).prop_map(|(op, lhs, rhs)| c(ConstraintKind::Compare { op, lhs, rhs })),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|x| c(ConstraintKind::Not(Box::new(x)))),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| c(ConstraintKind::And(Box::new(a), Box::new(b)))),
            (inner.clone(), inner)
                .prop_map(|(a, b)| c(ConstraintKind::Or(Box::new(a), Box::new(b)))),
        ]
    })
}

fn agent() -> impl Strategy<Value = Agent> {
    (term(), term()).prop_map(|(role, id)| Agent {
        role,
        id,
        span: Span::default(),
    })
}

fn d(kind: DefKind) -> Def {
    Def {
        kind,
        span: Span::default(),
    }
}

fn def() -> impl Strategy<Value = Def> {
    let guard = || prop::option::of(constraint());
    let leaf = prop_oneof![
        (term(), agent(), guard()).prop_map(|(msg, to, guard)| d(DefKind::Send { msg, to, guard })),
        (term(), agent(), guard()).prop_map(|(msg, from, guard)| d(DefKind::Recv {
            msg,
            from,
            guard
        })),
        constraint().prop_map(|guard| d(DefKind::Null { guard })),
        (agent(), guard()).prop_map(|(agent, guard)| d(DefKind::Role { agent, guard })),
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| d(DefKind::Seq(Box::new(a), Box::new(b)))),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| d(DefKind::Choice(Box::new(a), Box::new(b)))),
            (inner.clone(), inner).prop_map(|(a, b)| d(DefKind::Par(Box::new(a), Box::new(b)))),
        ]
    })
}

fn framework() -> impl Strategy<Value = Framework> {
    let kind = prop_oneof![
        Just(RoleKind::Initial),
        Just(RoleKind::Necessary),
        Just(RoleKind::Optional),
        Just(RoleKind::Auxiliary),
    ];
    let header = (
        term(),
        kind,
        prop::option::of(term()),
        prop::option::of(term()),
    )
        .prop_map(|(role, kind, min, max)| {
            let max = if min.is_some() { max } else { None };
            RoleHeader {
                role,
                kind,
                min,
                max,
                span: Span::default(),
            }
        });
    let clause = (agent(), def()).prop_map(|(agent, body)| Clause {
        agent,
        body,
        span: Span::default(),
    });
    let ann = prop_oneof![Just("@annotation(@role(x), \"y\")"), Just("@note(1)")].prop_map(|a| {
        Annotation {
            text: a.to_owned(),
            span: Span::default(),
        }
    });
    let comment =
        prop_oneof![Just("// c"), Just("% d ⇒"), Just("/* e\n f */")].prop_map(|c| Comment {
            text: c.to_owned(),
            span: Span::default(),
        });
    (
        prop::collection::vec(header, 0..3),
        prop::collection::vec(clause, 0..3),
        prop::collection::vec(ann, 0..2),
        prop::collection::vec(comment, 0..3),
    )
        .prop_map(|(headers, clauses, annotations, comments)| Framework {
            headers,
            clauses,
            annotations,
            comments,
        })
}

/// Text built from LCC's own tokens, so the parser gets past the lexer often.
fn lcc_ish() -> impl Strategy<Value = String> {
    let tok = prop_oneof![
        Just("a("),
        Just("r("),
        Just(")"),
        Just("("),
        Just(","),
        Just("::"),
        Just("=>"),
        Just("<="),
        Just("<-"),
        Just("then"),
        Just("or"),
        Just("par"),
        Just("and"),
        Just("not"),
        Just("null"),
        Just("X"),
        Just("_"),
        Just("m"),
        Just("["),
        Just("]"),
        Just("|"),
        Just("1"),
        Just("-"),
        Just("2.5"),
        Just("\"s\""),
        Just("'q'"),
        Just("="),
        Just("=<"),
        Just("."),
        Just("@a(x)"),
        Just("⇒"),
        Just("←"),
        Just("∧"),
        Just("%c\n"),
        Just("/*c*/"),
        Just(" "),
        Just("\n"),
    ];
    prop::collection::vec(tok, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn lexer_never_panics(s in any::<String>()) {
        drop(lexer::lex(&s));
    }

    #[test]
    fn parser_never_panics(s in any::<String>()) {
        drop(parse(&s));
    }

    #[test]
    fn parser_never_panics_on_lcc_like_text(s in lcc_ish()) {
        if let Ok(mut fw) = parse(&s) {
            let printed = print(&fw);
            let mut again = parse(&printed).map_err(|e| TestCaseError::fail(format!("{e:?}\n{printed}")))?;
            fw.clear_spans();
            again.clear_spans();
            prop_assert_eq!(fw, again);
        }
    }

    #[test]
    fn print_then_parse_is_identity(fw in framework()) {
        let printed = print(&fw);
        let mut back = parse(&printed)
            .map_err(|e| TestCaseError::fail(format!("{e:?}\n{printed}")))?;
        back.clear_spans();
        prop_assert_eq!(back, fw, "{}", printed);
    }
}
