//! `keel-collector-libvirt`: the collector's libvirt helper. It makes the libvirt calls for the
//! collector, which starts it with `--uri URI` and speaks line-delimited JSON to it over
//! stdin/stdout (`keel_collector::sources::libvirt::protocol`). It exits when stdin closes.
//!
//! Exit codes: 0 stdin closed, 2 bad arguments, 1 stdin/stdout failed.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let uri = match (args.next().as_deref(), args.next(), args.next()) {
        (Some("--uri"), Some(uri), None) => uri,
        _ => {
            eprintln!("usage: keel-collector-libvirt --uri URI   (started by keel-collector)");
            return ExitCode::from(2);
        }
    };
    let stdin = std::io::stdin().lock();
    match keel_collector::sources::libvirt::helper::serve(&uri, stdin, std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-collector-libvirt: {e}");
            ExitCode::FAILURE
        }
    }
}
