//! `keel-agent lcc`: check, format and run LCC interaction models.
//!
//! - `check PATH...`: parse and compile each file (a folder stands for every `*.lcc` file under
//!   it, in name order); print `file: ok` per good file on stdout and `file:line:col: message` per
//!   error on stderr (with `--pretty`, a source excerpt too); exit 1 if any file has an error.
//! - `fmt FILE [--check]`: print the file in canonical layout (comments are not kept); with
//!   `--check`, print nothing and exit 1 if the file is not already in that layout.
//! - `run PROTOCOL [--facts FACTS] [--roles ROLE:ID,...]`: play every role in one process on a
//!   deterministic bus, answering constraints from Prolog-style facts (`price(apple, 3).`), and
//!   print the messages in order.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use keel_lcc::ast::RoleKind;
use keel_lcc::sim::{Bus, Outcome};
use keel_lcc::{diag, parse, FactBase, Peer, Program, SourceMap, Value};

/// Arguments of `keel-agent lcc`.
#[derive(Debug, clap::Args)]
pub struct LccArgs {
    #[command(subcommand)]
    command: LccCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LccCommand {
    /// Parse and compile LCC files (or every *.lcc under a folder); report each file's verdict,
    /// every error as file:line:col: message.
    Check(CheckArgs),
    /// Print an LCC file in canonical layout.
    Fmt(FmtArgs),
    /// Play a multi-role interaction in one process and print the messages.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// Files to check, or folders (every *.lcc file under them).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also print each error with a source excerpt.
    #[arg(long)]
    pretty: bool,
}

#[derive(Debug, clap::Args)]
struct FmtArgs {
    /// File to format.
    file: PathBuf,
    /// Exit 1 (printing nothing) if the file is not already formatted.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The interaction model.
    protocol: PathBuf,
    /// Facts answering the constraints, `name(args).` each.
    #[arg(long)]
    facts: Option<PathBuf>,
    /// Peers as ROLE:ID, comma-separated (e.g. `buyer:b1,shopkeeper:s1`); default: one peer per
    /// initial or necessary role header, with the role's name as id.
    #[arg(long)]
    roles: Option<String>,
    /// Stop after this many rounds (every peer stepped once per round).
    #[arg(long, default_value_t = 1000)]
    max_rounds: usize,
}

/// Runs `keel-agent lcc`; returns the process exit code.
///
/// # Errors
/// Any failure, with context.
pub fn run(args: LccArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LccCommand::Check(a) => check(&a),
        LccCommand::Fmt(a) => fmt(&a),
        LccCommand::Run(a) => run_protocol(&a),
    }
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn report(map: &SourceMap, errors: &[keel_lcc::Error], pretty: bool) {
    for e in errors {
        eprintln!("{}", diag::short(map, e));
        if pretty {
            eprintln!("{}", diag::render(map, e));
        }
    }
}

/// The `*.lcc` files under `dir`, recursively, in path order.
fn lcc_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading folder {}", dir.display()))?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            lcc_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "lcc") {
            out.push(p);
        }
    }
    Ok(())
}

fn check(a: &CheckArgs) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let mut files = Vec::new();
    for path in &a.files {
        if path.is_dir() {
            let before = files.len();
            if let Err(e) = lcc_files(path, &mut files) {
                eprintln!("{}: {e:#}", path.display());
                failed = true;
            } else if files.len() == before {
                eprintln!("{}: no .lcc files in this folder", path.display());
                failed = true;
            }
        } else {
            files.push(path.clone());
        }
    }
    for path in &files {
        let src = match read(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}: {e:#}", path.display());
                failed = true;
                continue;
            }
        };
        let map = SourceMap::new(path.display().to_string(), src.as_str());
        match Program::compile(&src) {
            Ok(_) => println!("{}: ok", path.display()),
            Err(errors) => {
                report(&map, &errors, a.pretty);
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn fmt(a: &FmtArgs) -> anyhow::Result<ExitCode> {
    let src = read(&a.file)?;
    let map = SourceMap::new(a.file.display().to_string(), src.as_str());
    let fw = match parse(&src) {
        Ok(fw) => fw,
        Err(errors) => {
            report(&map, &errors, false);
            return Ok(ExitCode::FAILURE);
        }
    };
    let printed = keel_lcc::print(&fw);
    if a.check {
        if printed != src {
            eprintln!("{}: not formatted", a.file.display());
            return Ok(ExitCode::FAILURE);
        }
    } else {
        print!("{printed}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads one term (`buyer`, `underloaded(4)`, `"r0"`) as a value.
fn term_value(text: &str) -> anyhow::Result<Value> {
    let terms = keel_lcc::parser::parse_terms(&format!("{text}."))
        .map_err(|e| anyhow::anyhow!("`{text}` is not a term: {}", e[0]))?;
    match terms.as_slice() {
        [t] => Ok(keel_lcc::interp::term_to_value(t)),
        _ => bail!("`{text}` is not one term"),
    }
}

/// Splits `a:b,c(1,2):d` at top-level commas.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn peers_of(a: &RunArgs, prog: &Program) -> anyhow::Result<Vec<(Value, Value)>> {
    if let Some(spec) = &a.roles {
        return split_top(spec)
            .into_iter()
            .map(|p| {
                let (role, id) = p
                    .rsplit_once(':')
                    .with_context(|| format!("--roles: `{p}` is not ROLE:ID"))?;
                Ok((term_value(role)?, term_value(id)?))
            })
            .collect();
    }
    let peers: Vec<(Value, Value)> = prog
        .header_roles()
        .into_iter()
        .filter(|(_, k)| matches!(k, RoleKind::Initial | RoleKind::Necessary))
        .map(|(role, _)| {
            let id = Value::atom(role.name().unwrap_or("peer"));
            (role, id)
        })
        .collect();
    if peers.is_empty() {
        bail!("no --roles given and no initial or necessary role header in the protocol");
    }
    Ok(peers)
}

fn run_protocol(a: &RunArgs) -> anyhow::Result<ExitCode> {
    let src = read(&a.protocol)?;
    let map = SourceMap::new(a.protocol.display().to_string(), src.as_str());
    let prog = match Program::compile(&src) {
        Ok(p) => Arc::new(p),
        Err(errors) => {
            report(&map, &errors, true);
            return Ok(ExitCode::FAILURE);
        }
    };
    let facts = match &a.facts {
        Some(path) => {
            let fsrc = read(path)?;
            match FactBase::parse(&fsrc) {
                Ok(f) => f,
                Err(errors) => {
                    let fmap = SourceMap::new(path.display().to_string(), fsrc.as_str());
                    report(&fmap, &errors, false);
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        None => FactBase::default(),
    };
    let mut bus = Bus::new();
    for (role, id) in peers_of(a, &prog)? {
        let peer = Peer::new(Arc::clone(&prog), role.clone(), id.clone())
            .map_err(|e| anyhow::anyhow!("peer {id} in role {role}: {e}"))?;
        bus.add(peer, facts.clone());
    }
    let result = bus.run(a.max_rounds);
    for e in bus.trace() {
        println!(
            "{} ({}) => {} ({}): {}",
            e.from.id, e.from.role, e.to.id, e.to.role, e.body
        );
    }
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}", diag::render(&map, &e));
            return Ok(ExitCode::FAILURE);
        }
    };
    for i in 0..bus.len() {
        let p = bus.peer(i);
        let state = if p.is_closed() { "closed" } else { "waiting" };
        println!("# {} ({}): {state}", p.id(), p.role());
    }
    let outcome = match outcome {
        Outcome::AllClosed => "all peers closed",
        Outcome::Quiescent => "quiescent (every peer waits)",
        Outcome::RoundLimit => "round limit reached",
    };
    println!(
        "# {outcome}; {} messages, {} undelivered",
        bus.trace().len(),
        bus.undelivered()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_split_at_top_level_commas() {
        assert_eq!(
            split_top("buyer:b1, underloaded(4, x):h2"),
            vec!["buyer:b1", "underloaded(4, x):h2"]
        );
        assert_eq!(
            term_value("underloaded(4)").unwrap().to_string(),
            "underloaded(4)"
        );
        assert!(term_value("a b").is_err());
    }
}
