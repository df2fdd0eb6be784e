//! Parses and compiles LCC files, printing each error with its source excerpt:
//! `cargo run -p keel-lcc --example check -- FILE...`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut ok = true;
    for path in std::env::args().skip(1) {
        let src = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{path}: {e}");
                ok = false;
                continue;
            }
        };
        let map = keel_lcc::SourceMap::new(path.as_str(), src.as_str());
        match keel_lcc::Program::compile(&src) {
            Ok(p) => println!("{path}: ok, {} clauses", p.framework().clauses.len()),
            Err(errors) => {
                ok = false;
                for e in &errors {
                    eprintln!("{}", keel_lcc::diag::render(&map, e));
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
