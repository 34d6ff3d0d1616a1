//! Scale-out: one cube written by many machines, on the batch schedulers people already run.
//!
//! The contract of every batch scheduler is an array of identical tasks, each told its
//! index. tilecube meets it with a plan fixed once ([`plan`]: the base snapshot, the
//! (year, tile) jobs, their split into balanced shards), tasks that each write one shard
//! ([`task_index`] reads the index from the scheduler's variables), a progress record per
//! shard next to the plan ([`record`]), and two ways to land: checkpoints that commit each
//! shard's finished tiles to the branch (tagged with the plan, so a re-run shard skips what
//! its earlier attempt landed), or staged sessions ([`stage`]) that `merge` folds into one
//! commit. [`watch`] gathers all of it for `status --plan` and the console.
//!
//! Invariants: tasks never recompute the work (a plan's jobs are fixed when it is made);
//! every tile of a plan lands at most once (checkpoint commits record the plan, and a merge
//! records it too and is refused when it already happened); no plan, record or stage holds
//! a credential (repositories and sources are addresses; credentials come from each task's
//! environment).

pub mod build;
pub mod place;
pub mod plan;
pub mod record;
pub mod stage;
pub mod task_index;
pub mod watch;

pub use build::{Built, PlanOrigin, build_plan};
pub use place::Place;
pub use plan::{PlanJob, ShardPlan};
pub use record::{ShardRecord, ShardState};
pub use stage::{MergeOutcome, StageManifest, StageWriter, merge};
pub use task_index::{SCHEDULERS, TaskIndex};
pub use watch::{PlanStatus, ShardStatus};

use crate::cube::CubeError;
use crate::source::{RemoteError, SourceError};

/// What went wrong planning, running or merging a scale-out write.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{what}: {reason}")]
    Bad { what: String, reason: String },
    #[error(
        "no shard index: none of {vars} is set; pass --shard I, or run as an array task of a scheduler"
    )]
    NoIndex { vars: String },
    #[error("shard {index} (from {origin}) is out of the plan's range: it has {shards} shards (0..{})", shards.saturating_sub(1))]
    OutOfRange {
        index: usize,
        origin: String,
        shards: usize,
    },
    #[error("merge refused:\n{}\nre-run those shards, or pass --partial to merge what was staged", .0.join("\n"))]
    Refused(Vec<String>),
    #[error(transparent)]
    Cube(#[from] CubeError),
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl ScaleError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub(crate) fn bad(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Bad {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
