//! Fuzzes the whole pipeline on arbitrary text: lexing and parsing never panic; what parses
//! prints to text that parses to the same tree; what compiles runs a few steps without panicking.
#![no_main]

use std::sync::Arc;

use keel_lcc::ast::ClearSpans;
use keel_lcc::{parse, print, Knowledge, KnowledgeError, NoDirectory, Peer, Program, Value};
use libfuzzer_sys::fuzz_target;

/// Says yes to every predicate, binding nothing.
struct Yes;

impl Knowledge for Yes {
    fn solve(&mut self, _: &str, args: &[Value]) -> Result<Option<Vec<Value>>, KnowledgeError> {
        Ok(Some(args.to_vec()))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let _ = keel_lcc::lexer::lex(src);
    let Ok(mut fw) = parse(src) else { return };
    let printed = print(&fw);
    let mut again =
        parse(&printed).unwrap_or_else(|e| panic!("printed text fails: {e:?}\n{printed}"));
    fw.clear_spans();
    again.clear_spans();
    assert_eq!(fw, again, "round trip changed the tree:\n{printed}");
    let Ok(prog) = Program::from_framework(fw) else {
        return;
    };
    let prog = Arc::new(prog);
    for c in &prog.framework().clauses {
        let role = keel_lcc::interp::term_to_value(&c.agent.role);
        let Ok(mut peer) = Peer::new(Arc::clone(&prog), role, Value::atom("p")) else {
            continue;
        };
        peer.set_step_budget(50);
        let mut out = Vec::new();
        for _ in 0..3 {
            let _ = peer.step(&mut Yes, &mut NoDirectory, &mut out);
            for e in out.drain(..) {
                peer.deliver(e);
            }
        }
    }
});
