//! A plan's progress, gathered: per shard, its task's record, the tiles it landed in the
//! branch (checkpoint commits that carry the plan) or staged, and its failures — what
//! `status --plan` prints and the console shows.
//!
//! Invariants: what "landed" counts comes from the branch itself (commits tagged with the
//! plan since its base), never from a task's word; reading costs one object per shard plus
//! the branch's commits since the plan's base, never the cube's chunks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::record::{RecordFailure, STALE_AFTER, ShardState};
use super::stage::plan_commits;
use super::{Place, ScaleError, ShardPlan, ShardRecord, StageManifest};
use crate::cube::Cube;
use crate::grid::TileName;
use crate::storage_settings::StorageSettings;

/// One shard of a plan, as things stand.
#[derive(Debug, Clone, Serialize)]
pub struct ShardStatus {
    pub shard: usize,
    pub jobs: usize,
    /// "not started", "running", "stale" (its task went silent), "done", "failed",
    /// "cancelled".
    pub state: String,
    /// Tiles of the shard in the branch (its checkpoints, or the merge).
    pub landed: usize,
    /// Tiles staged (stage mode), from the stage's manifest.
    pub staged: Option<usize>,
    /// The task's own record, if it wrote one.
    pub record: Option<ShardRecord>,
    /// What is wrong with the record, when it cannot be trusted (unreadable, another
    /// shard's, dated in the future): the shard's state then says so, the others still show.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// A failed tile of a plan that has not landed since.
#[derive(Debug, Clone, Serialize)]
pub struct PlanFailure {
    pub shard: usize,
    #[serde(flatten)]
    pub failure: RecordFailure,
}

/// A plan's progress.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStatus {
    pub id: String,
    pub repo: String,
    pub branch: String,
    pub base: String,
    pub jobs: usize,
    /// Tiles of the plan in the branch.
    pub landed: usize,
    /// Tiles staged, over the shards whose stage was read.
    pub staged: Option<usize>,
    /// The merge commit, once the plan was merged.
    pub merged: Option<String>,
    /// Commits of the plan in the branch.
    pub commits: usize,
    pub shards: Vec<ShardStatus>,
    pub failed: Vec<PlanFailure>,
}

impl ShardStatus {
    /// The heading of [`ShardStatus::row`]'s columns.
    pub const HEADER: &'static str = "shard state        tiles landed staged failed host";

    /// The shard as one row of a table: number, state, tiles, landed, staged, failed, host.
    pub fn row(&self) -> String {
        let r = self.record.as_ref();
        format!(
            "{:<5} {:<12} {:>5} {:>6} {:>6} {:>6} {}",
            self.shard,
            self.state,
            self.jobs,
            self.landed,
            self.staged
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            r.map(|r| r.failed.len()).unwrap_or(0),
            r.map(|r| r.host.as_str()).unwrap_or("-")
        )
    }
}

impl PlanStatus {
    /// Gather a plan's progress. `stage` is read when given, else the stage the shards'
    /// records name (if any), reached as `storage` says.
    pub async fn gather(
        plan: &ShardPlan,
        place: &Place,
        cube: &Cube,
        stage: Option<&Place>,
        storage: &StorageSettings,
    ) -> Result<Self, ScaleError> {
        // A record that cannot be read is that shard's problem, not the plan's: the others
        // still show.
        let loaded: Vec<Result<Option<ShardRecord>, ScaleError>> =
            futures::stream::iter(0..plan.shards.len())
                .map(|i| ShardRecord::load(place, i))
                .buffered(32)
                .collect()
                .await;
        let mut problems: Vec<Option<String>> = vec![None; loaded.len()];
        let records: Vec<Option<ShardRecord>> = loaded
            .into_iter()
            .enumerate()
            .map(|(i, r)| match r {
                Ok(Some(r)) if r.shard != i => {
                    problems[i] = Some(format!(
                        "its record says shard {} (edited or copied by hand?)",
                        r.shard
                    ));
                    None
                }
                Ok(r) => r,
                Err(e) => {
                    problems[i] = Some(crate::error_chain(&e));
                    None
                }
            })
            .collect();
        let named_stage = records
            .iter()
            .flatten()
            .find_map(|r| r.stage.clone())
            .map(|s| Place::parse(&s, storage))
            .transpose()?;
        let stage = stage.or(named_stage.as_ref());
        let manifests: Vec<Option<StageManifest>> = match stage {
            Some(stage) => {
                futures::stream::iter(0..plan.shards.len())
                    .map(|i| StageManifest::load(stage, i))
                    .buffered(32)
                    .try_collect()
                    .await?
            }
            None => vec![None; plan.shards.len()],
        };
        let commits = plan_commits(cube, plan).await?;
        let shard_of = plan.shard_of();
        let mut landed_tiles: BTreeSet<(i32, TileName)> = BTreeSet::new();
        for c in &commits {
            for (year, tiles) in &c.written {
                for tile in tiles.keys() {
                    if shard_of.contains_key(&(*year, *tile)) {
                        landed_tiles.insert((*year, *tile));
                    }
                }
            }
        }
        let mut landed_per: HashMap<usize, usize> = HashMap::new();
        for key in &landed_tiles {
            if let Some(s) = shard_of.get(key) {
                *landed_per.entry(*s).or_default() += 1;
            }
        }
        let now = Utc::now();
        let mut failed = vec![];
        let mut shards = vec![];
        for (i, (record, manifest)) in records.into_iter().zip(manifests).enumerate() {
            let jobs = plan.shards[i].len();
            let mut problem = problems[i].take();
            let state = match &record {
                None if problem.is_some() => "unreadable".to_string(),
                None => "not started".to_string(),
                Some(r) if r.plan != plan.id => "not started".to_string(),
                Some(r) if r.is_stale(now) => "stale".to_string(),
                Some(r)
                    if r.state == ShardState::Running
                        && r.updated
                            .signed_duration_since(now)
                            .to_std()
                            .unwrap_or_default()
                            > STALE_AFTER =>
                {
                    problem = Some(format!(
                        "its record is dated {}, in the future (a clock off?)",
                        r.updated.format("%Y-%m-%d %H:%M:%S UTC")
                    ));
                    "stale".to_string()
                }
                Some(r) => r.state.name().to_string(),
            };
            if let Some(r) = record.as_ref().filter(|r| r.plan == plan.id) {
                for f in &r.failed {
                    let landed = f
                        .tile
                        .parse::<TileName>()
                        .is_ok_and(|t| landed_tiles.contains(&(f.year, t)));
                    if !landed {
                        failed.push(PlanFailure {
                            shard: i,
                            failure: f.clone(),
                        });
                    }
                }
            }
            shards.push(ShardStatus {
                shard: i,
                jobs,
                state,
                landed: landed_per.get(&i).copied().unwrap_or(0),
                staged: manifest.filter(|m| m.plan == plan.id).map(|m| m.tiles()),
                record,
                problem,
            });
        }
        let staged = stage.map(|_| shards.iter().filter_map(|s| s.staged).sum());
        let merged = commits
            .iter()
            .find(|c| c.plan.as_ref().is_some_and(|t| t.merged))
            .map(|c| c.id.clone());
        Ok(Self {
            id: plan.id.clone(),
            repo: plan.repo.clone(),
            branch: plan.branch.clone(),
            base: plan.base.clone(),
            jobs: plan.job_count(),
            landed: landed_tiles.len(),
            staged,
            merged,
            commits: commits.len(),
            shards,
            failed,
        })
    }

    /// Shards by state, for one-line summaries ("2 done, 1 running, 1 not started").
    pub fn states(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for s in &self.shards {
            *m.entry(s.state.clone()).or_default() += 1;
        }
        m
    }

    /// The shards by state, in a line: "1 done, 2 not started".
    pub fn states_line(&self) -> String {
        self.states()
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What landed, in a line: "landed in main: 9 of 16 tiles in 5 commits, 3 staged
    /// (merged as X); 1 failed".
    pub fn landed_line(&self) -> String {
        let staged = self
            .staged
            .map(|n| format!(", {n} staged"))
            .unwrap_or_default();
        let merged = self
            .merged
            .as_ref()
            .map(|m| format!(" (merged as {m})"))
            .unwrap_or_default();
        format!(
            "landed in {}: {} of {} in {}{staged}{merged}; {} failed",
            self.branch,
            self.landed,
            crate::text::plural(self.jobs, "tile"),
            crate::text::plural(self.commits, "commit"),
            self.failed.len()
        )
    }
}
