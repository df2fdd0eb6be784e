//! Parsing: precedence as tree shapes, every surface variant, failures with exact spans, insta
//! snapshots of tokens, trees and rendered diagnostics, and the data-driven protocol fixtures.

use keel_lcc::ast::{ClearSpans, ConstraintKind, Def, DefKind, TermKind};
use keel_lcc::{diag, lexer, parse, print, Program, SourceMap, Span};

/// A compact picture of a body: `then(a, or(b, c))`, leaves named by their message or role.
fn shape(d: &Def) -> String {
    match &d.kind {
        DefKind::Seq(a, b) => format!("then({}, {})", shape(a), shape(b)),
        DefKind::Choice(a, b) => format!("or({}, {})", shape(a), shape(b)),
        DefKind::Par(a, b) => format!("par({}, {})", shape(a), shape(b)),
        DefKind::Send { msg, guard, .. } | DefKind::Recv { msg, guard, .. } => {
            let name = match &msg.kind {
                TermKind::Compound { name, .. } => name.clone(),
                TermKind::Atom(a) => a.clone(),
                _ => "?".into(),
            };
            if guard.is_some() {
                format!("{name}+c")
            } else {
                name
            }
        }
        DefKind::Null { .. } => "null".into(),
        DefKind::Role { agent, .. } => format!("a:{}", print::term(&agent.role)),
    }
}

fn body_shape(src: &str) -> String {
    let fw = parse(src).unwrap_or_else(|e| panic!("{e:?}"));
    shape(&fw.clauses[0].body)
}

fn m(name: &str) -> String {
    format!("{name}(X) => a(r, Y)")
}

#[test]
fn or_binds_tighter_than_then() {
    let (a, b, c) = (m("a"), m("b"), m("c"));
    assert_eq!(
        body_shape(&format!("a(r,I) :: {a} or {b} then {c}")),
        "then(or(a, b), c)"
    );
    assert_eq!(
        body_shape(&format!("a(r,I) :: {a} then {b} or {c}")),
        "then(a, or(b, c))"
    );
}

#[test]
fn parentheses_override() {
    let (a, b, c) = (m("a"), m("b"), m("c"));
    assert_eq!(
        body_shape(&format!("a(r,I) :: ({a} then {b}) or {c}")),
        "or(then(a, b), c)"
    );
    assert_eq!(
        body_shape(&format!("a(r,I) :: {a} or ({b} then {c})")),
        "or(a, then(b, c))"
    );
}

#[test]
fn then_nests_right_or_nests_left_par_like_then() {
    let (a, b, c) = (m("a"), m("b"), m("c"));
    assert_eq!(
        body_shape(&format!("a(r,I) :: {a} then {b} then {c}")),
        "then(a, then(b, c))"
    );
    assert_eq!(
        body_shape(&format!("a(r,I) :: {a} or {b} or {c}")),
        "or(or(a, b), c)"
    );
    assert_eq!(
        body_shape(&format!("a(r,I) :: {a} par {b} or {c}")),
        "par(a, or(b, c))"
    );
    assert_eq!(
        body_shape(&format!("a(r,I) :: {a} then {b} par {c}")),
        "then(a, par(b, c))"
    );
}

#[test]
fn constraint_arrow_and_and_bind_tightest() {
    let src = "a(r,I) :: x => a(r, Y) <- p and q or y => a(r, Y) then null <- s";
    assert_eq!(body_shape(src), "then(or(x+c, y), null)");
    let fw = parse(src).unwrap();
    let DefKind::Seq(first, _) = &fw.clauses[0].body.kind else {
        panic!()
    };
    let DefKind::Choice(x, _) = &first.kind else {
        panic!()
    };
    let DefKind::Send { guard: Some(g), .. } = &x.kind else {
        panic!()
    };
    assert!(matches!(g.kind, ConstraintKind::And(..)));
}

#[test]
fn receive_constraint_on_either_side_gives_one_tree() {
    let mut left = parse("a(r, I) :: ok(X) <- m(X) <= a(s, J)").unwrap();
    let mut right = parse("a(r, I) :: m(X) <= a(s, J) <- ok(X)").unwrap();
    left.clear_spans();
    right.clear_spans();
    assert_eq!(left, right);
    let mut paren = parse("a(r, I) :: (ok(X) or no) <- m(X) <= a(s, J)").unwrap();
    paren.clear_spans();
    assert!(matches!(
        &paren.clauses[0].body.kind,
        DefKind::Recv { guard: Some(g), .. } if matches!(g.kind, ConstraintKind::Or(..))
    ));
}

#[test]
fn surface_variants_parse_to_the_same_tree() {
    let ascii = "a(r, I) :: m => a(s, J) <- p and not q then n <= a(s, J) <- x or null <- y";
    let uni = "a(r, I) :: m ⇒ a(s, J) ← p ∧ ¬ q then n ⇐ a(s, J) <-- x ∨ null <- y";
    let prolog = "a(r, I) :: m => a(s, J) <- p and \\+ q then n <= a(s, J) <- x or null <- y.";
    let mut a = parse(ascii).unwrap();
    let mut b = parse(uni).unwrap();
    let mut c = parse(prolog).unwrap();
    for f in [&mut a, &mut b, &mut c] {
        f.clear_spans();
    }
    assert_eq!(a, b);
    assert_eq!(a, c);
}

#[test]
fn headers_annotations_ids_and_zero_arity_calls() {
    let src = r#"
        @annotation(@role(x), "anything (here)")
        r(waiter(L), auxiliary)
        r(p, necessary, 1)
        r(q, optional, 0, 5)
        a(waiter([H|T]), "r0") :: ping() => a(p, p2) <- _findPeers("agent", S) then a(waiter(T), "r0")
        a(p, X) :: ping() <= a(waiter, Y)
    "#;
    let fw = parse(src).unwrap();
    assert_eq!(fw.headers.len(), 3);
    assert_eq!(fw.annotations.len(), 1);
    assert!(fw.annotations[0].text.starts_with("@annotation("));
    assert_eq!(fw.clauses.len(), 2);
    assert_eq!(print::term(&fw.clauses[0].agent.id), "\"r0\"");
    Program::from_framework(fw).unwrap();
}

/// (source, expected message, expected span text, expected span)
fn fails(src: &str) -> (String, Span) {
    let errs = parse(src).unwrap_err();
    (errs[0].to_string(), errs[0].span)
}

#[test]
fn failures_have_exact_spans() {
    assert_eq!(
        fails("a(r, I) :: m => b(s, J)"),
        (
            "expected `a(Role, Id)`, found `b(s, J)`".into(),
            Span::new(16, 23)
        )
    );
    assert_eq!(
        fails("a(r, I) :: m => a(s, J) then"),
        (
            "expected a term, found end of input".into(),
            Span::new(28, 28)
        )
    );
    assert_eq!(
        fails("a(r, I) :: (m => a(s, J)"),
        ("expected `)`, found end of input".into(), Span::new(24, 24))
    );
    assert_eq!(
        fails("a(r, I) :: m(X) then"),
        (
            "expected `=>`, `<=` or `<-`, found `then`".into(),
            Span::new(16, 20)
        )
    );
    assert_eq!(
        fails("r(x, sometimes)"),
        (
            "unknown role kind `sometimes` (expected initial, necessary, optional or auxiliary)"
                .into(),
            Span::new(5, 14)
        )
    );
    assert_eq!(
        fails("b(r, I) :: null <- p"),
        (
            "a clause must start with `a(Role, Id) ::`, found `b(r, I)`".into(),
            Span::new(0, 7)
        )
    );
    assert_eq!(
        fails("a(r, I) :: null <- 3"),
        (
            "`3` cannot be used as a constraint".into(),
            Span::new(19, 20)
        )
    );
    assert_eq!(
        fails("a(r, I) :: x => a(s, 'J)"),
        ("unterminated quoted atom".into(), Span::new(21, 24))
    );
    assert_eq!(
        fails("a(r, I) :: X = 1 => a(s, J)"),
        (
            "a message must be a term, found a comparison".into(),
            Span::new(11, 16)
        )
    );
    assert_eq!(
        fails("a(r, I) :: null <- X = 99999999999999999999"),
        (
            "invalid number `99999999999999999999`".into(),
            Span::new(23, 43)
        )
    );
}

#[test]
fn errors_recover_at_the_next_clause() {
    let src = "a(r, I) :: m => \na(s, J) :: n <= a(r, I) then\na(t, K) :: null <- ok";
    let errs = parse(src).unwrap_err();
    assert_eq!(errs.len(), 2, "{errs:?}");
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let src = format!(
        "a(r, I) :: {}m => a(s, J){}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    let errs = parse(&src).unwrap_err();
    assert!(errs[0].to_string().starts_with("nesting deeper than"));
    let chain = vec!["m => a(s, J)"; 5000].join(" then ");
    assert!(parse(&format!("a(r, I) :: {chain}")).is_err());
    let ok = vec!["m => a(s, J)"; 300].join(" then ");
    assert!(parse(&format!("a(r, I) :: {ok}")).is_ok());
}

#[test]
fn snapshot_tokens() {
    let src = "a(r, X) :: m(\"s\", 'q', [1|T], -2.5) ⇒ a(s, Y) ← X =< 3 ∧ ¬p % c\n";
    let toks: Vec<String> = lexer::lex(src)
        .unwrap()
        .iter()
        .map(|t| format!("{:?} {:?}", t.kind, &src[t.span.range()]))
        .collect();
    insta::assert_snapshot!(toks.join("\n"));
}

#[test]
fn snapshot_ast() {
    let fw = parse("r(b, initial)\na(b, B) :: ask(I) => a(s, S) <- wants(I) then (x <= a(s, S) or y <= a(s, S))").unwrap();
    insta::assert_debug_snapshot!(fw);
}

#[test]
fn snapshot_printed_seed() {
    let fw = parse(include_str!("protocols/migration_seed.lcc")).unwrap();
    insta::assert_snapshot!(print(&fw));
}

#[test]
fn snapshot_diagnostics() {
    let cases = [
        (
            "missing_agent.lcc",
            "a(buyer, B) ::\n    ask(I) => shop(S)\n    then null <- ok\n",
        ),
        (
            "unterminated.lcc",
            "a(r, I) ::\n    /* a comment that never ends\n    null <- p\n",
        ),
        (
            "bad_kind.lcc",
            "r(buyer, first)\na(buyer, B) :: null <- p\n",
        ),
        ("unicode.lcc", "a(r, I) ::\n    m ⇒ a(s, J) ← p ∧\n"),
    ];
    let mut out = String::new();
    for (name, src) in cases {
        let map = SourceMap::new(name, src);
        for e in parse(src).unwrap_err() {
            out.push_str(&diag::short(&map, &e));
            out.push('\n');
            out.push_str(&diag::render(&map, &e));
            out.push('\n');
        }
    }
    insta::assert_snapshot!(out);
}

#[test]
fn runtime_diagnostic_renders_the_call() {
    use keel_lcc::{NoDirectory, Peer, Registry, Value};
    use std::sync::Arc;
    let src = "a(host, H) ::\n    null <- canMigrate(3, X)\n";
    let prog = Arc::new(Program::compile(src).unwrap());
    let mut p = Peer::new(prog, Value::atom("host"), Value::atom("h7")).unwrap();
    let e = p
        .step(&mut Registry::new(), &mut NoDirectory, &mut Vec::new())
        .unwrap_err();
    let map = SourceMap::new("host.lcc", src);
    insta::assert_snapshot!(diag::render(&map, &e));
}

/// Every fixture in tests/protocols parses, compiles, and prints to text that parses to the same
/// tree; printing is idempotent. Fixtures under tests/protocols/bad fail at the position given by
/// their first line, `% error: LINE:COL`.
#[test]
fn protocol_fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/protocols");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "lcc") {
            continue;
        }
        n += 1;
        let src = std::fs::read_to_string(&path).unwrap();
        let mut fw = parse(&src).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        Program::from_framework(fw.clone()).unwrap();
        let printed = print(&fw);
        let mut again = parse(&printed).unwrap_or_else(|e| panic!("{printed}\n{e:?}"));
        assert_eq!(print(&again), printed, "{}", path.display());
        fw.clear_spans();
        again.clear_spans();
        assert_eq!(fw, again, "{}", path.display());
    }
    assert!(n >= 4);
    let mut bad = 0;
    for entry in std::fs::read_dir(format!("{dir}/bad")).unwrap() {
        let path = entry.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        let want = src
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("% error: ")
            .to_owned();
        let map = SourceMap::new("f", src.as_str());
        let errs = parse(&src).expect_err(&path.display().to_string());
        let (l, c) = map.line_col(errs[0].span.start);
        assert_eq!(format!("{l}:{c}"), want, "{}: {}", path.display(), errs[0]);
        bad += 1;
    }
    assert!(bad >= 3);
}
