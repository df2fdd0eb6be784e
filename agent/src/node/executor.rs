//! Migration executors: what actually moves a VM once both sides have committed.
//!
//! One trait, three implementations: [`Libvirt`] (`virsh migrate --live` to the target's
//! libvirt URI), [`CommandExec`] (an operator's script with arguments) and [`DryRun`] (logs only).
//! Every run has a time limit; a process that outlives it is killed and the run fails.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::process::Command;
use tracing::info;

/// A committed migration to carry out.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationRequest {
    /// Negotiation id (for logs).
    pub neg: String,
    /// The VM (libvirt domain name).
    pub vm: String,
    /// Source agent id.
    pub source: String,
    /// Target agent id.
    pub target: String,
    /// The target's libvirt URI, where it advertises one.
    pub target_uri: Option<String>,
}

/// Moves VMs.
pub trait Executor: Send + Sync + fmt::Debug {
    /// Moves the VM; `Err` carries a short reason. Must return within `limit`.
    fn migrate<'a>(
        &'a self,
        req: &'a MigrationRequest,
        limit: Duration,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// A callback run by [`DryRun`] after logging.
pub type DryRunHook = Arc<dyn Fn(&MigrationRequest) -> Result<(), String> + Send + Sync>;

/// Logs the migration and does nothing else.
#[derive(Clone, Default)]
pub struct DryRun {
    /// Called after logging (the simulated hypervisor of `keel-agent cluster` and the tests).
    pub hook: Option<DryRunHook>,
}

impl fmt::Debug for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DryRun")
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Executor for DryRun {
    fn migrate<'a>(
        &'a self,
        req: &'a MigrationRequest,
        _limit: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            info!(neg = %req.neg, vm = %req.vm, target = %req.target, "Dry run: would migrate the VM.");
            match &self.hook {
                Some(h) => h(req),
                None => Ok(()),
            }
        })
    }
}

/// Runs a program with arguments; `{vm}`, `{target}`, `{target_uri}`, `{source}` and `{neg}` in
/// the arguments are replaced. Exit status 0 is success.
#[derive(Debug, Clone)]
pub struct CommandExec {
    /// The program.
    pub program: String,
    /// Its arguments (with placeholders).
    pub args: Vec<String>,
}

fn fill(arg: &str, req: &MigrationRequest) -> String {
    arg.replace("{vm}", &req.vm)
        .replace("{target}", &req.target)
        .replace("{target_uri}", req.target_uri.as_deref().unwrap_or(""))
        .replace("{source}", &req.source)
        .replace("{neg}", &req.neg)
}

async fn run_limited(mut cmd: Command, limit: Duration) -> Result<(), String> {
    cmd.kill_on_drop(true);
    cmd.stdin(std::process::Stdio::null());
    let child = cmd.output();
    match tokio::time::timeout(limit, child).await {
        Err(_) => Err(format!("timed out after {} s", limit.as_secs_f64())),
        Ok(Err(e)) => Err(format!("could not start: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let first = err.lines().next().unwrap_or("").trim();
            Err(format!("exited with {}: {first}", out.status))
        }
    }
}

impl Executor for CommandExec {
    fn migrate<'a>(
        &'a self,
        req: &'a MigrationRequest,
        limit: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut cmd = Command::new(&self.program);
            cmd.args(self.args.iter().map(|a| fill(a, req)));
            info!(neg = %req.neg, vm = %req.vm, target = %req.target, program = %self.program, "Running the migration command.");
            run_limited(cmd, limit).await
        })
    }
}

/// `virsh [-c LOCAL] migrate --live --persistent --undefinesource VM TARGET_URI
/// [--migrateuri URI] [--listen-address ADDR]`.
///
/// `migrate_uri` and `listen_address` say where QEMU's migration stream goes when the target's
/// libvirt would pick a wrong or refused address (hosts whose name resolves to loopback, several
/// hosts on one machine, a dedicated migration network). Both may name `{target_host}` (the host
/// part of the target's libvirt URI), `{target}` and `{vm}`: for example
/// `migrate_uri = "tcp://{target_host}"` (the target picks the port from its
/// `migration_port_min`..`max`) and `listen_address = "{target_host}"`.
#[derive(Debug, Clone, Default)]
pub struct Libvirt {
    /// `virsh` binary.
    pub virsh: String,
    /// Local connection URI (e.g. `qemu:///system`).
    pub local_uri: Option<String>,
    /// `--migrateuri` (with placeholders).
    pub migrate_uri: Option<String>,
    /// `--listen-address` (with placeholders).
    pub listen_address: Option<String>,
}

/// The host part of a libvirt URI (`qemu+tcp://user@host:port/system` → `host`).
pub fn uri_host(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        hostport.split(':').next()?
    };
    (!host.is_empty()).then_some(host)
}

impl Libvirt {
    fn fill(&self, template: &str, req: &MigrationRequest, uri: &str) -> Result<String, String> {
        let mut out = template
            .replace("{vm}", &req.vm)
            .replace("{target}", &req.target);
        if out.contains("{target_host}") {
            let host =
                uri_host(uri).ok_or_else(|| format!("no host in target libvirt uri {uri}"))?;
            out = out.replace("{target_host}", host);
        }
        Ok(out)
    }

    /// The argument list for a request.
    ///
    /// # Errors
    /// When the target advertises no libvirt URI, or a template names `{target_host}` and the
    /// URI has no host.
    pub fn args(&self, req: &MigrationRequest) -> Result<Vec<String>, String> {
        let uri = req
            .target_uri
            .as_deref()
            .ok_or_else(|| format!("target {} advertises no libvirt uri", req.target))?;
        let mut a = Vec::new();
        if let Some(l) = &self.local_uri {
            a.extend(["-c".to_string(), l.clone()]);
        }
        a.extend(
            [
                "migrate",
                "--live",
                "--persistent",
                "--undefinesource",
                &req.vm,
                uri,
            ]
            .map(String::from),
        );
        if let Some(m) = &self.migrate_uri {
            a.extend(["--migrateuri".to_string(), self.fill(m, req, uri)?]);
        }
        if let Some(l) = &self.listen_address {
            a.extend(["--listen-address".to_string(), self.fill(l, req, uri)?]);
        }
        Ok(a)
    }
}

impl Executor for Libvirt {
    fn migrate<'a>(
        &'a self,
        req: &'a MigrationRequest,
        limit: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let args = self.args(req)?;
            let mut cmd = Command::new(&self.virsh);
            cmd.args(&args);
            info!(neg = %req.neg, vm = %req.vm, target = %req.target, "Live-migrating with virsh.");
            run_limited(cmd, limit).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> MigrationRequest {
        MigrationRequest {
            neg: "a#1".into(),
            vm: "web1".into(),
            source: "a".into(),
            target: "b".into(),
            target_uri: Some("qemu+ssh://b/system".into()),
        }
    }

    #[test]
    fn virsh_arguments() {
        let l = Libvirt {
            virsh: "virsh".into(),
            local_uri: Some("qemu:///system".into()),
            ..Libvirt::default()
        };
        assert_eq!(
            l.args(&req()).unwrap().join(" "),
            "-c qemu:///system migrate --live --persistent --undefinesource web1 qemu+ssh://b/system"
        );
        let mut r = req();
        r.target_uri = None;
        assert!(l.args(&r).is_err());
    }

    #[test]
    fn migration_addresses_name_the_target_host() {
        let l = Libvirt {
            virsh: "virsh".into(),
            local_uri: None,
            migrate_uri: Some("tcp://{target_host}".into()),
            listen_address: Some("{target_host}".into()),
        };
        let mut r = req();
        r.target_uri = Some("qemu+tcp://127.0.0.1:16610/system".into());
        assert_eq!(
            l.args(&r).unwrap().join(" "),
            "migrate --live --persistent --undefinesource web1 qemu+tcp://127.0.0.1:16610/system \
             --migrateuri tcp://127.0.0.1 --listen-address 127.0.0.1"
        );
        assert_eq!(uri_host("qemu+ssh://root@hv-02/system"), Some("hv-02"));
        assert_eq!(
            uri_host("qemu+tcp://[fd00::2]:16509/system"),
            Some("fd00::2")
        );
        assert_eq!(uri_host("qemu:///system"), None);
        r.target_uri = Some("qemu:///system".into());
        assert!(l.args(&r).unwrap_err().contains("no host"));
    }

    #[tokio::test]
    async fn command_success_failure_and_timeout() {
        let ok = CommandExec {
            program: "sh".into(),
            args: vec!["-c".into(), "test \"$0\" = web1".into(), "{vm}".into()],
        };
        assert_eq!(ok.migrate(&req(), Duration::from_secs(5)).await, Ok(()));
        let bad = CommandExec {
            program: "sh".into(),
            args: vec!["-c".into(), "echo nope >&2; exit 3".into()],
        };
        let e = bad
            .migrate(&req(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.contains("nope"), "{e}");
        let slow = CommandExec {
            program: "sleep".into(),
            args: vec!["5".into()],
        };
        let e = slow
            .migrate(&req(), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        let missing = CommandExec {
            program: "/nonexistent/keel-migrate".into(),
            args: vec![],
        };
        assert!(missing
            .migrate(&req(), Duration::from_secs(1))
            .await
            .unwrap_err()
            .contains("could not start"));
    }
}
