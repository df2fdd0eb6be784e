//! The interaction model decides: an LCC peer (keel-lcc) chooses the agent's role and the target
//! of an offer; the runtime's commit protocol ([`super::Negotiator`]) carries the offer out.
//!
//! On each evaluation the agent restarts its LCC peer in the model's `idle` role and steps it with
//! this host's facts as [`Knowledge`]: `overloaded(Need)` holds above the high threshold and binds
//! the CPU to shed, `underloaded(Capacity)` holds below the low threshold and binds the free CPU
//! (the thresholds are policy parameters, and a model may use its own conditions instead).
//! When the model moves to an overloaded role and sends to `a(underloaded, ID)` with `ID` unbound,
//! the [`Directory`] answers with the best-ranked peer (the stability model ranks candidates): the
//! envelope that comes out names the target. Other predicates of the seed model
//! (`canMigrate/2`, `migration/2`, `waitForMigration/0`) belong to steps the runtime's protocol
//! performs, and answer false here, so the peer stops at them.

use std::sync::Arc;

use keel_lcc::{Directory, Envelope, Knowledge, KnowledgeError, Peer, Program, Value};

/// The seed slides' migration model (design note), the default policy.
pub const SEED_MODEL: &str = r"
r(idle, initial)
r(overloaded(Need), auxiliary)
r(underloaded(Capacity), auxiliary)

a(idle, ID1) ::
      ( null <- overloaded(Status)  then a(overloaded(Status), ID1) )
   or ( null <- underloaded(Status) then a(underloaded(Status), ID1) )
   or a(idle, ID1)

a(overloaded(Need), ID2) ::
      readyToMigrate(Need) => a(underloaded, ID3)
 then migration(OK) <= a(underloaded, ID3)
 then null <- migration(ID2, ID3)
 then a(idle, ID2)

a(underloaded(Capacity), ID3) ::
      readyToMigrate(Need) <= a(overloaded, ID2)
 then migration(OK) => a(overloaded, ID2) <- canMigrate(Capacity, Need)
 then null <- waitForMigration()
 then a(idle, ID3)
";

/// This host's facts for one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Facts {
    /// Utilisation (fraction).
    pub util: f64,
    /// Overloaded above.
    pub high: f64,
    /// Underloaded below.
    pub low: f64,
    /// CPU to shed to get back to `high` (absolute).
    pub need: f64,
    /// Free CPU up to the accept limit (absolute).
    pub free: f64,
}

/// What the model decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Stay idle.
    Idle,
    /// Overloaded, but no target could be named.
    Overloaded,
    /// Underloaded: take VMs.
    Underloaded,
    /// Overloaded: offer `need` to `target`.
    Offer {
        /// The peer the directory named.
        target: String,
        /// CPU to shed, as the model sent it.
        need: f64,
    },
}

/// Errors of the LCC policy.
#[derive(Debug, thiserror::Error)]
pub enum LccPolicyError {
    /// The model does not compile.
    #[error("interaction model: {0}")]
    Compile(String),
    /// A runtime error of the model.
    #[error("interaction model at run time: {0}")]
    Run(String),
}

struct HostKnowledge(Facts);

impl Knowledge for HostKnowledge {
    fn solve(&mut self, name: &str, args: &[Value]) -> Result<Option<Vec<Value>>, KnowledgeError> {
        let f = self.0;
        match (name, args.len()) {
            ("overloaded", 1) => Ok((f.util > f.high).then(|| vec![Value::Float(f.need)])),
            ("underloaded", 1) => Ok((f.util < f.low).then(|| vec![Value::Float(f.free)])),
            ("utilisation", 1) => Ok(Some(vec![Value::Float(f.util)])),
            ("canMigrate", 2) => {
                let (cap, need) = (args[0].as_f64(), args[1].as_f64());
                Ok(match (cap, need) {
                    (Some(c), Some(n)) if c >= n => Some(args.to_vec()),
                    _ => None,
                })
            }
            ("migration", 2) | ("waitForMigration", 0) => Ok(None),
            _ => Err(KnowledgeError::Unknown),
        }
    }
}

struct Chooser<'a>(&'a mut dyn FnMut(f64) -> Option<String>);

impl Directory for Chooser<'_> {
    fn resolve(&mut self, role: &Value, body: &Value) -> Option<Value> {
        if role.name() != Some("underloaded") {
            return None;
        }
        let need = body.args().first().and_then(Value::as_f64).unwrap_or(0.0);
        (self.0)(need).map(|id| Value::atom(&id))
    }
}

struct NoPeers;

impl Directory for NoPeers {
    fn resolve(&mut self, _role: &Value, _body: &Value) -> Option<Value> {
        None
    }
}

/// One agent's LCC policy: a compiled model and the peer running it.
#[derive(Debug)]
pub struct LccPolicy {
    peer: Peer,
}

impl LccPolicy {
    /// Compiles `src` and starts a peer with id `id` in the `idle` role.
    ///
    /// # Errors
    /// [`LccPolicyError::Compile`] if the model does not compile or has no `idle` clause.
    pub fn new(src: &str, id: &str) -> Result<Self, LccPolicyError> {
        let program = Program::compile(src).map_err(|errs| {
            LccPolicyError::Compile(
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let peer = Peer::new(Arc::new(program), Value::atom("idle"), Value::atom(id))
            .map_err(|e| LccPolicyError::Compile(e.to_string()))?;
        Ok(Self { peer })
    }

    /// Whether the model, as a target, answers an offer of `need` from `from` with
    /// `migration(...)`: the peer restarts in `idle`, takes its role from `facts`, receives
    /// `readyToMigrate(Need)` and is stepped again (the seed model checks `canMigrate(C, N)`,
    /// which holds when the free capacity `C` covers `N`).
    ///
    /// # Errors
    /// A runtime error of the model.
    pub fn accepts(&mut self, facts: Facts, from: &str, need: f64) -> Result<bool, LccPolicyError> {
        let run = |e: keel_lcc::Error| LccPolicyError::Run(e.to_string());
        self.peer.timeout().map_err(run)?;
        let mut out: Vec<Envelope> = Vec::new();
        let mut k = HostKnowledge(facts);
        self.peer
            .step(&mut k, &mut NoPeers, &mut out)
            .map_err(run)?;
        if self.peer.role().name() != Some("underloaded") {
            return Ok(false);
        }
        self.peer.deliver(Envelope {
            from: keel_lcc::PeerRef {
                role: Value::atom("overloaded"),
                id: Value::atom(from),
            },
            to: keel_lcc::PeerRef {
                role: self.peer.role(),
                id: self.peer.id().clone(),
            },
            body: Value::compound("readyToMigrate", vec![Value::Float(need)]),
        });
        self.peer
            .step(&mut k, &mut NoPeers, &mut out)
            .map_err(run)?;
        Ok(out.iter().any(|e| e.body.name() == Some("migration")))
    }

    /// Decides from `facts`; `choose(need)` names the best target for an offer of `need`.
    ///
    /// # Errors
    /// A runtime error of the model (such as an unknown predicate), with its message.
    pub fn decide(
        &mut self,
        facts: Facts,
        choose: &mut dyn FnMut(f64) -> Option<String>,
    ) -> Result<Decision, LccPolicyError> {
        self.peer
            .timeout()
            .map_err(|e| LccPolicyError::Run(e.to_string()))?;
        let mut out: Vec<Envelope> = Vec::new();
        self.peer
            .step(&mut HostKnowledge(facts), &mut Chooser(choose), &mut out)
            .map_err(|e| LccPolicyError::Run(e.to_string()))?;
        let role = self.peer.role();
        Ok(match role.name() {
            Some("overloaded") => out
                .iter()
                .find_map(|e| {
                    let target = e.to.id.as_atom()?.to_string();
                    let need = e
                        .body
                        .args()
                        .first()
                        .and_then(Value::as_f64)
                        .unwrap_or(facts.need);
                    Some(Decision::Offer { target, need })
                })
                .unwrap_or(Decision::Overloaded),
            Some("underloaded") => Decision::Underloaded,
            _ => Decision::Idle,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(util: f64) -> Facts {
        Facts {
            util,
            high: 0.8,
            low: 0.5,
            need: (util - 0.8).max(0.0) * 1000.0,
            free: (0.75 - util).max(0.0) * 1000.0,
        }
    }

    #[test]
    fn seed_model_chooses_roles_and_asks_the_directory() {
        let mut p = LccPolicy::new(SEED_MODEL, "a").unwrap();
        let mut asked = 0;
        let mut choose = |need: f64| {
            asked += 1;
            assert!((need - 100.0).abs() < 1e-9);
            Some("b".to_string())
        };
        let d = p.decide(facts(0.9), &mut choose).unwrap();
        match d {
            Decision::Offer { target, need } => {
                assert_eq!(target, "b");
                assert!((need - 100.0).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            p.decide(facts(0.3), &mut choose).unwrap(),
            Decision::Underloaded
        );
        assert_eq!(p.decide(facts(0.6), &mut choose).unwrap(), Decision::Idle);
        assert_eq!(asked, 1);
        let mut nobody = |_: f64| None;
        assert_eq!(
            p.decide(facts(0.9), &mut nobody).unwrap(),
            Decision::Overloaded
        );
    }

    #[test]
    fn seed_model_accepts_offers_that_fit() {
        let mut p = LccPolicy::new(SEED_MODEL, "t").unwrap();
        // Free 450 at 30 %.
        assert!(p.accepts(facts(0.3), "s", 400.0).unwrap());
        assert!(!p.accepts(facts(0.3), "s", 500.0).unwrap());
        // Not underloaded: the model never reaches the receiving clause.
        assert!(!p.accepts(facts(0.6), "s", 10.0).unwrap());
    }

    #[test]
    fn a_model_with_its_own_conditions_is_policy_without_recompiling() {
        // Never give VMs away; only take them: a "receive-only" policy.
        let src = "a(idle, I) :: ( null <- underloaded(C) then a(underloaded(C), I) ) or a(idle, I)
                   a(underloaded(C), I) :: readyToMigrate(N) <= a(overloaded, J)";
        let mut p = LccPolicy::new(src, "a").unwrap();
        let mut choose = |_: f64| Some("b".to_string());
        assert_eq!(p.decide(facts(0.95), &mut choose).unwrap(), Decision::Idle);
        assert_eq!(
            p.decide(facts(0.1), &mut choose).unwrap(),
            Decision::Underloaded
        );
        assert!(LccPolicy::new("a(idle, I) :: ", "a").is_err());
        let bad = LccPolicy::new("a(idle, I) :: null <- nosuch(X)", "a")
            .unwrap()
            .decide(facts(0.5), &mut choose);
        assert!(bad.is_err());
    }
}
