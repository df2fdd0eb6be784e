//! `keel-agent lcc check|fmt|run` on the built binary.

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keel-agent"))
}

fn lcc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lcc")
}

fn run(args: &[&str]) -> Output {
    bin()
        .arg("lcc")
        .args(args)
        .output()
        .expect("run keel-agent")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_accepts_well_formed_files() {
    let dir = lcc_dir().join("tests/protocols");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "lcc"))
        .map(|p| p.display().to_string())
        .collect();
    assert!(files.len() >= 4);
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let out = run(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty());
}

#[test]
fn check_rejects_with_file_line_col() {
    let tmp = std::env::temp_dir().join(format!("keel-lcc-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let bad = tmp.join("bad.lcc");
    std::fs::write(&bad, "a(r, I) ::\n    m => a(s, J)\n    then\n").unwrap();
    let good = lcc_dir().join("examples/buyer_shopkeeper.lcc");
    let out = run(&["check", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(
        err,
        format!(
            "{}:3:9: expected a term, found end of input\n",
            bad.display()
        )
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn check_on_a_folder_gives_each_files_verdict() {
    let tmp = std::env::temp_dir().join(format!("keel-lcc-cli-dir-{}", std::process::id()));
    let sub = tmp.join("nested");
    std::fs::create_dir_all(&sub).unwrap();
    let good = lcc_dir().join("examples/buyer_shopkeeper.lcc");
    std::fs::copy(&good, tmp.join("a_good.lcc")).unwrap();
    std::fs::copy(&good, sub.join("c_good.lcc")).unwrap();
    std::fs::write(tmp.join("notes.txt"), "not LCC, not checked").unwrap();
    // OK's form with a space before the annotation's `(`: accepted.
    std::fs::write(
        tmp.join("b_annotated.lcc"),
        "r(p, initial)\n@annotation (@role(p), x)\na(p, I) :: null <- ready()\n",
    )
    .unwrap();
    let out = run(&["check", tmp.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let verdicts = |o: &Output| {
        text(&o.stdout)
            .lines()
            .map(|l| l.replace(&format!("{}/", tmp.display()), ""))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        verdicts(&out),
        [
            "a_good.lcc: ok",
            "b_annotated.lcc: ok",
            "nested/c_good.lcc: ok"
        ]
    );

    // A constraint whose functor is a variable is not LCC: that file fails with its position,
    // the others still get their verdict, and the exit status is 1.
    std::fs::write(
        sub.join("d_bad.lcc"),
        "r(p, initial)\na(p, I) ::\n  null <- C1(I)\n",
    )
    .unwrap();
    let out = run(&["check", tmp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        verdicts(&out),
        [
            "a_good.lcc: ok",
            "b_annotated.lcc: ok",
            "nested/c_good.lcc: ok"
        ]
    );
    assert_eq!(
        text(&out.stderr),
        format!(
            "{}:3:11: a variable cannot be a functor: `C1(...)` (write an atom: lower-case or \
             quoted)\n",
            sub.join("d_bad.lcc").display()
        )
    );

    // A folder without LCC files is an error too.
    let empty = tmp.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(&["check", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no .lcc files"),
        "{}",
        text(&out.stderr)
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn fmt_prints_canonical_text_and_check_detects_it() {
    let src = lcc_dir().join("examples/buyer_shopkeeper.lcc");
    let out = run(&["fmt", src.to_str().unwrap()]);
    assert!(out.status.success());
    let printed = text(&out.stdout);
    assert!(
        printed.starts_with("// A buyer asks a shopkeeper"),
        "{printed}"
    );
    assert!(printed.contains("\nr(buyer, initial)\nr(shopkeeper, necessary)\n\na(buyer, B) ::\n"));
    let tmp = std::env::temp_dir().join(format!("keel-lcc-fmt-{}.lcc", std::process::id()));
    std::fs::write(&tmp, &printed).unwrap();
    assert!(run(&["fmt", "--check", tmp.to_str().unwrap()])
        .status
        .success());
    assert_eq!(
        run(&["fmt", "--check", src.to_str().unwrap()])
            .status
            .code(),
        Some(1)
    );
    std::fs::remove_file(&tmp).unwrap();
}

#[test]
fn run_plays_buyer_and_shopkeeper() {
    let dir = lcc_dir().join("examples");
    let out = run(&[
        "run",
        dir.join("buyer_shopkeeper.lcc").to_str().unwrap(),
        "--facts",
        dir.join("buyer_shopkeeper.facts").to_str().unwrap(),
        "--roles",
        "buyer:b1,shopkeeper:s1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "b1 (buyer) => s1 (shopkeeper): ask(apple)",
            "s1 (shopkeeper) => b1 (buyer): price(apple, 3)",
            "b1 (buyer) => s1 (shopkeeper): buy(apple, 3)",
            "s1 (shopkeeper) => b1 (buyer): sold(apple)",
            "# b1 (buyer): closed",
            "# s1 (shopkeeper): closed",
            "# all peers closed; 4 messages, 0 undelivered",
        ]
    );
}

#[test]
fn run_reports_an_unknown_predicate_with_its_position() {
    let dir = lcc_dir().join("examples");
    let out = run(&["run", dir.join("buyer_shopkeeper.lcc").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown predicate wants/1 (agent buyer, role buyer)"),
        "{err}"
    );
    assert!(err.contains("buyer_shopkeeper.lcc:7:"), "{err}");
}
