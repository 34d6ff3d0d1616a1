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
use crate::grid::TileName;
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
    /// A plan, stage or shard location given empty.
    #[error("location: is empty")]
    EmptyLocation,
    /// A location that is neither a path nor an `s3://` or `gs://` URL.
    #[error("{text}: is not a directory, s3:// or gs:// location")]
    NotALocation { text: String },
    /// A shard given as neither a number nor `auto`.
    #[error("--shard {spec}: expected a shard number or `auto`")]
    BadShard { spec: String },
    /// A scheduler's task index variable that is not a number.
    #[error("{var}={value}: the task index is not a whole number")]
    BadTaskIndex { var: &'static str, value: String },
    #[error("{address}: no plan there; make one with `tilecube plan`")]
    NoPlan { address: String },
    #[error(
        "{address}: a plan is already there; choose another --out, or pass --force to replace it"
    )]
    PlanExists { address: String },
    #[error("{address}: not a tilecube plan")]
    NotAPlan {
        address: String,
        #[source]
        source: serde_json::Error,
    },
    /// A plan of another format than this tilecube's.
    #[error(
        "{address}: plan format {format} (this tilecube reads format {}); make the plan again",
        plan::PLAN_FORMAT
    )]
    PlanFormat { address: String, format: u64 },
    /// A plan whose checksum does not match its jobs.
    #[error(
        "{address}: the plan was changed after it was made (its checksum does not match its jobs); \
         make a new plan with `tilecube plan` instead of editing one"
    )]
    PlanEdited { address: String },
    /// A plan that gives a (year, tile) to two shards.
    #[error(
        "{address}: {year}/{tile} is in shard {first} and in shard {second}: a tile is written by one shard only"
    )]
    TileInTwoShards {
        address: String,
        year: i32,
        tile: TileName,
        first: usize,
        second: usize,
    },
    /// A job of a plan whose path does not lie under the plan's source (`root`).
    #[error(
        "plan {plan}: {year}/{tile}: its path {path:?} does not lie under the plan's source {root}; \
         a plan's paths are absolute (make the plan again)"
    )]
    PathOutsideSource {
        plan: String,
        year: i32,
        tile: TileName,
        path: String,
        root: String,
    },
    /// A job of a plan for a year the cube does not have.
    #[error("plan {plan}: {year}/{tile}: year {year} is not in the cube (years: {years:?})")]
    YearNotInCube {
        plan: String,
        year: i32,
        tile: TileName,
        years: Vec<i32>,
    },
    /// The repository is another cube than the one the plan was made for.
    #[error(
        "plan {plan}: the repository {repo} is not the cube the plan was made for (it was made again since); make a new plan"
    )]
    NotThePlansCube { plan: String, repo: String },
    #[error("{address}: not a shard record")]
    NotAShardRecord {
        address: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{address}: not a stage manifest")]
    NotAStageManifest {
        address: String,
        #[source]
        source: serde_json::Error,
    },
    /// A plan, record or manifest could not be encoded (`what` names it).
    #[error("{what}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The stage holds a shard of another plan, which a new stage of this one would replace.
    #[error(
        "{address}: the stage holds shard {shard} of plan {other} ({tiles} tiles staged, {}); a stage is one plan's: \
         choose another --stage for plan {plan}",
        state.name()
    )]
    StageOfAnotherPlan {
        address: String,
        shard: usize,
        other: String,
        tiles: usize,
        state: ShardState,
        plan: String,
    },
    /// The stages of a plan's shards hold tiles that are not theirs to merge.
    #[error(
        "merge of plan {plan}: {}; nothing was merged (make a new plan, and write its shards again)",
        problems.join("; ")
    )]
    StagedWrongly { plan: String, problems: Vec<String> },
    /// The plan's shards committed at checkpoints already: a merge would land them twice.
    #[error(
        "plan {plan}: its shards already committed tiles to {branch} (commit {commit}, checkpoint mode); a merge would write them twice"
    )]
    AlreadyCheckpointed {
        plan: String,
        branch: String,
        commit: String,
    },
    #[error("{address}: staged part is missing")]
    PartMissing { address: String },
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_caller_matches_a_kind_and_a_kept_cause_prints_as_it_did() {
        let dir = tempfile::tempdir().unwrap();
        let place = Place::parse(&dir.path().display().to_string(), &Default::default()).unwrap();
        let address = place.address(plan::PLAN_FILE);
        let e = ShardPlan::load(&place).await.unwrap_err();
        assert!(matches!(&e, ScaleError::NoPlan { address: a } if *a == address));
        // A plan file that is not JSON: the decoder's words after "not a tilecube plan", as
        // `format!("not a tilecube plan: {e}")` wrote them.
        std::fs::write(dir.path().join(plan::PLAN_FILE), "{not json").unwrap();
        let e = ShardPlan::load(&place).await.unwrap_err();
        let decoded = serde_json::from_str::<serde_json::Value>("{not json").unwrap_err();
        assert_eq!(
            crate::error_chain(&e),
            format!("{address}: not a tilecube plan: {decoded}")
        );
        assert!(matches!(e, ScaleError::NotAPlan { .. }));
        let e = Place::parse(" ", &Default::default()).unwrap_err();
        assert!(matches!(e, ScaleError::EmptyLocation));
        assert_eq!(crate::error_chain(&e), "location: is empty");
        let e = TaskIndex::resolve("x", 2, |_| None).unwrap_err();
        assert!(matches!(&e, ScaleError::BadShard { spec } if spec == "x"));
        assert_eq!(
            e.to_string(),
            "--shard x: expected a shard number or `auto`"
        );
    }
}
