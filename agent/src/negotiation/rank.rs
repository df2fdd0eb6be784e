//! Ranking candidate targets with the stability model.
//!
//! A source asks every peer currently in the `underloaded` role (from membership gossip, which
//! carries each peer's recent CPU utilisation) and orders them: hosts the model calls stable
//! first, then by instability score, then by free capacity. Peers with too little free capacity
//! for the VM are left out. [`ModelRanker`] reads a [`ModelFile`] and reloads it when the file
//! changes on disk; without a model every peer is unscored and only capacity orders them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use keel_core::features::HostWindow;
use keel_core::model::ModelFile;
use tracing::{info, warn};

/// What a source knows about a possible target.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Agent id.
    pub id: String,
    /// Free CPU capacity, absolute units.
    pub free: f64,
    /// Recent CPU utilisation, oldest first.
    pub history: Vec<f64>,
    /// Seconds between history values.
    pub step_s: f64,
}

/// Scores peers' instability.
pub trait Ranker: Send + Sync + fmt::Debug {
    /// Probability-like score that the peer is unstable; `None` when it cannot be scored.
    fn instability(&self, c: &Candidate) -> Option<f64>;
    /// Scores at or above this are unstable.
    fn threshold(&self) -> f64;
    /// The model itself, where there is one (the host's own core consults it too).
    fn model(&self) -> Option<Arc<ModelFile>> {
        None
    }
}

/// No model: nobody is scored.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoModel;

impl Ranker for NoModel {
    fn instability(&self, _c: &Candidate) -> Option<f64> {
        None
    }
    fn threshold(&self) -> f64 {
        1.0
    }
}

/// A candidate with its score, in rank order.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// The candidate.
    pub candidate: Candidate,
    /// Its instability score, if the model could score it.
    pub score: Option<f64>,
    /// Whether the score is at or above the model's threshold.
    pub unstable: bool,
}

/// Orders candidates that can hold `demand`: stable before unstable, then by score, then by free
/// capacity (most first), then by id (deterministic).
pub fn rank(ranker: &dyn Ranker, candidates: Vec<Candidate>, demand: f64) -> Vec<Ranked> {
    let thr = ranker.threshold();
    let mut v: Vec<Ranked> = candidates
        .into_iter()
        .filter(|c| c.free >= demand)
        .map(|c| {
            let score = ranker.instability(&c);
            Ranked {
                unstable: score.is_some_and(|s| s >= thr),
                score,
                candidate: c,
            }
        })
        .collect();
    v.sort_by(|a, b| {
        a.unstable
            .cmp(&b.unstable)
            .then(a.score.unwrap_or(thr).total_cmp(&b.score.unwrap_or(thr)))
            .then(b.candidate.free.total_cmp(&a.candidate.free))
            .then(a.candidate.id.cmp(&b.candidate.id))
    });
    v
}

/// The stability model from a file, reloaded when the file's modification time changes.
pub struct ModelRanker {
    path: Option<PathBuf>,
    /// The model in use and the mtime it was read at; replaced whole on reload.
    state: RwLock<(Option<Arc<ModelFile>>, Option<SystemTime>)>,
}

impl fmt::Debug for ModelRanker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelRanker")
            .field("path", &self.path)
            .field("loaded", &self.model().is_some())
            .finish()
    }
}

impl ModelRanker {
    /// A ranker over a model already in memory.
    pub fn from_model(model: ModelFile) -> Self {
        Self {
            path: None,
            state: RwLock::new((Some(Arc::new(model)), None)),
        }
    }

    /// A ranker with no model (every peer unscored).
    pub fn empty() -> Self {
        Self {
            path: None,
            state: RwLock::new((None, None)),
        }
    }

    /// A ranker over `path`, loaded now if it exists (a bad file is logged and ignored: the
    /// agent keeps running without a model rather than stopping).
    pub fn from_path(path: &Path) -> Self {
        let me = Self {
            path: Some(path.to_path_buf()),
            state: RwLock::new((None, None)),
        };
        me.reload_if_changed();
        me
    }

    /// The model in use.
    pub fn model(&self) -> Option<Arc<ModelFile>> {
        self.state
            .read()
            .expect("model lock is never poisoned")
            .0
            .clone()
    }

    /// Re-reads the file if its modification time changed. Returns whether a new model was
    /// adopted. A file that fails to load leaves the previous model in place.
    pub fn reload_if_changed(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if mtime.is_none() || mtime == self.state.read().expect("model lock").1 {
            return false;
        }
        match ModelFile::load(path) {
            Ok(m) => {
                info!(path = %path.display(), algorithm = m.algorithm.name(), "Stability model loaded.");
                *self.state.write().expect("model lock") = (Some(Arc::new(m)), mtime);
                true
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "Stability model not loaded; keeping the previous one.");
                self.state.write().expect("model lock").1 = mtime;
                false
            }
        }
    }
}

impl Ranker for ModelRanker {
    fn instability(&self, c: &Candidate) -> Option<f64> {
        let m = self.model()?;
        if c.history.is_empty() {
            return None;
        }
        m.score(&HostWindow::cpu(c.step_s, &c.history)).ok()
    }

    fn threshold(&self) -> f64 {
        self.model().map_or(1.0, |m| m.threshold)
    }

    fn model(&self) -> Option<Arc<ModelFile>> {
        Self::model(self)
    }
}

/// A test or operator scorer: a fixed score per peer id.
#[derive(Debug, Clone, Default)]
pub struct FixedScores {
    /// Scores by id.
    pub scores: std::collections::HashMap<String, f64>,
    /// Threshold.
    pub threshold: f64,
}

impl Ranker for FixedScores {
    fn instability(&self, c: &Candidate) -> Option<f64> {
        self.scores.get(&c.id).copied()
    }
    fn threshold(&self) -> f64 {
        self.threshold
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use keel_core::features::FeatureSchema;

    /// A logistic model whose score rises with the last CPU value (unstable above ~0.75).
    pub(crate) fn last_value_model() -> ModelFile {
        ModelFile::one_feature_logistic(FeatureSchema::cpu_default(), "cpu_last", 8.0, 0.75, 0.0)
            .expect("cpu_last feature")
    }

    fn cand(id: &str, free: f64, last: f64) -> Candidate {
        Candidate {
            id: id.into(),
            free,
            history: vec![0.3, last],
            step_s: 1.0,
        }
    }

    #[test]
    fn stable_peers_rank_first_even_with_less_room() {
        let r = ModelRanker::from_model(last_value_model());
        let ranked = rank(
            &r,
            vec![
                cand("hot", 900.0, 0.95),
                cand("calm", 400.0, 0.2),
                cand("tiny", 10.0, 0.1),
            ],
            100.0,
        );
        let ids: Vec<_> = ranked.iter().map(|r| r.candidate.id.as_str()).collect();
        assert_eq!(ids, ["calm", "hot"]);
        assert!(ranked[1].unstable);
        assert!(!ranked[0].unstable);
    }

    #[test]
    fn without_model_capacity_orders() {
        let ranked = rank(
            &NoModel,
            vec![cand("a", 100.0, 0.9), cand("b", 500.0, 0.9)],
            50.0,
        );
        assert_eq!(ranked[0].candidate.id, "b");
    }

    #[test]
    fn reloads_when_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.json");
        let r = ModelRanker::from_path(&p);
        assert!(r.model().is_none());
        let mut m = last_value_model();
        m.save(&p).unwrap();
        assert!(r.reload_if_changed());
        assert_eq!(r.threshold(), 0.5);
        m.threshold = 0.7;
        std::thread::sleep(std::time::Duration::from_millis(20));
        m.save(&p).unwrap();
        // Force a distinct mtime on coarse-grained filesystems.
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() + std::time::Duration::from_secs(2))
            .unwrap();
        assert!(r.reload_if_changed());
        assert_eq!(r.threshold(), 0.7);
        std::fs::write(&p, "{not json").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() + std::time::Duration::from_secs(4))
            .unwrap();
        assert!(!r.reload_if_changed());
        assert_eq!(r.threshold(), 0.7, "bad file keeps the previous model");
    }
}
