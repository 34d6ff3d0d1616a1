//! Stage mode: shards commit nothing; each saves its Icechunk session's changes
//! (`Session::as_bytes` of a fork) under a stage location, and [`merge`] folds every shard's
//! parts into one session and commits once, recording every tile — the seed's way, with
//! bounded memory: a shard saves a part at each checkpoint (by references, tiles or time),
//! so a long shard holds no more than a checkpoint's worth, and a killed one keeps its parts.
//!
//! Layout of a stage: `shard-NNNN.json` (the shard's manifest: plan, attempt, state, parts
//! with their tiles, failures) and `parts/NNNN/{attempt}-{k}.session`.
//!
//! Invariants: a part is saved before the manifest names it, so a manifest never names a part
//! that is not there; a new attempt of a shard starts a fresh manifest (replacing the earlier
//! stage, whose parts it removes when it ends); merge refuses, by shard, a missing,
//! unfinished or failed shard unless told `partial`, refuses a plan that already landed
//! tiles, and commits nothing unless every part it takes was read.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::record::RecordFailure;
use super::{Place, ScaleError, ShardPlan, ShardState};
use crate::cube::{Commit, Cube, CubeError, Stager, WrittenTiles};
use crate::ingest::DEFAULT_COMMIT_REFS;

/// A shard's manifest in the stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageManifest {
    pub plan: String,
    pub shard: usize,
    pub attempt: String,
    pub state: ShardState,
    pub updated: DateTime<Utc>,
    pub parts: Vec<StagePart>,
    pub failed: Vec<RecordFailure>,
}

/// One saved session of a shard and the tiles it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagePart {
    pub name: String,
    pub written: WrittenTiles,
}

impl StageManifest {
    /// Tiles staged in all parts.
    pub fn tiles(&self) -> usize {
        self.parts
            .iter()
            .map(|p| p.written.values().map(|t| t.len()).sum::<usize>())
            .sum()
    }

    /// The manifest of a shard, if the stage has one.
    pub async fn load(stage: &Place, shard: usize) -> Result<Option<Self>, ScaleError> {
        let name = manifest_name(shard);
        let Some(bytes) = stage.get(&name).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ScaleError::NotAStageManifest {
                address: stage.address(&name),
                source,
            })
    }
}

/// A shard's manifest's object name.
pub fn manifest_name(shard: usize) -> String {
    format!("shard-{shard:04}.json")
}

fn parts_dir(shard: usize) -> String {
    format!("parts/{shard:04}")
}

/// Saves a shard's staged parts and keeps its manifest.
pub struct StageWriter {
    place: Arc<Place>,
    manifest: tokio::sync::Mutex<StageManifest>,
}

impl StageWriter {
    /// Start this attempt's stage of a shard: a fresh manifest replaces any earlier one.
    pub async fn begin(
        place: Arc<Place>,
        plan: &str,
        shard: usize,
        attempt: &str,
    ) -> Result<Arc<Self>, ScaleError> {
        // A stage is one plan's: another plan's shard staged there is never replaced (its
        // parts would be lost to its own merge).
        if let Some(other) = StageManifest::load(&place, shard).await?
            && other.plan != plan
        {
            return Err(ScaleError::StageOfAnotherPlan {
                address: place.address(&manifest_name(shard)),
                shard,
                tiles: other.tiles(),
                other: other.plan,
                state: other.state,
                plan: plan.to_string(),
            });
        }
        let manifest = StageManifest {
            plan: plan.to_string(),
            shard,
            attempt: attempt.to_string(),
            state: ShardState::Running,
            updated: Utc::now(),
            parts: vec![],
            failed: vec![],
        };
        let w = Arc::new(Self {
            place,
            manifest: tokio::sync::Mutex::new(manifest),
        });
        w.write(&*w.manifest.lock().await).await?;
        Ok(w)
    }

    async fn write(&self, m: &StageManifest) -> Result<(), ScaleError> {
        let bytes = serde_json::to_vec_pretty(m).map_err(|source| ScaleError::Encode {
            what: "stage manifest".into(),
            source,
        })?;
        self.place
            .put(&manifest_name(m.shard), Bytes::from(bytes))
            .await
    }

    /// Tiles staged so far.
    pub async fn tiles(&self) -> usize {
        self.manifest.lock().await.tiles()
    }

    /// End the attempt: its state and failures go in the manifest, and parts of earlier
    /// attempts of the shard are removed.
    pub async fn finish(
        &self,
        state: ShardState,
        failed: Vec<RecordFailure>,
    ) -> Result<(), ScaleError> {
        let mut m = self.manifest.lock().await;
        m.state = state;
        m.failed = failed;
        m.updated = Utc::now();
        self.write(&m).await?;
        let keep: std::collections::HashSet<String> =
            m.parts.iter().map(|p| p.name.clone()).collect();
        for name in self.place.list(&parts_dir(m.shard)).await? {
            let full = format!("{}/{name}", parts_dir(m.shard));
            if !keep.contains(&full) {
                self.place.delete(&full).await?;
            }
        }
        Ok(())
    }

    async fn save_part(
        &self,
        bytes: Vec<u8>,
        written: &WrittenTiles,
    ) -> Result<String, ScaleError> {
        let mut m = self.manifest.lock().await;
        let name = format!(
            "{}/{}-{:04}.session",
            parts_dir(m.shard),
            m.attempt,
            m.parts.len()
        );
        self.place.put(&name, Bytes::from(bytes)).await?;
        m.parts.push(StagePart {
            name: name.clone(),
            written: written.clone(),
        });
        m.updated = Utc::now();
        self.write(&m).await?;
        Ok(name)
    }
}

impl Stager for StageWriter {
    fn save<'a>(
        &'a self,
        session: Vec<u8>,
        written: &'a WrittenTiles,
    ) -> BoxFuture<'a, Result<String, CubeError>> {
        Box::pin(async move {
            self.save_part(session, written)
                .await
                .map_err(|e| CubeError::icechunk(format!("staging in {}", self.place), e))
        })
    }
}

/// The commits since the plan's base that carry its id, newest first.
pub async fn plan_commits(cube: &Cube, plan: &ShardPlan) -> Result<Vec<Commit>, ScaleError> {
    Ok(cube
        .history_until(&plan.base)
        .await?
        .into_iter()
        .filter(|c| c.plan.as_ref().is_some_and(|t| t.id == plan.id))
        .collect())
}

/// What a merge did.
#[derive(Debug, Clone, Serialize)]
pub struct MergeOutcome {
    /// The commit, if anything was merged.
    pub snapshot: Option<String>,
    /// Set when the plan had been merged before: that commit (nothing new is committed).
    pub already: Option<String>,
    pub tiles: usize,
    pub parts: usize,
    /// Shards the merge's commit holds (a resumed merge's earlier ones included).
    pub shards: usize,
    /// Batches committed (each after the first amends the merge's commit).
    pub batches: usize,
    /// New commits on the branch: 1, unless the branch moved under an interrupted merge.
    pub commits: usize,
    /// Shards left out (with `partial`) and why: a later merge adds them once re-run.
    pub omitted: Vec<String>,
}

/// Tiles a merge batch holds before it is committed: about `refs` chunk references (0:
/// [`DEFAULT_COMMIT_REFS`], as a write's checkpoints).
fn batch_tiles(cube: &Cube, refs: usize) -> usize {
    let refs = if refs == 0 { DEFAULT_COMMIT_REFS } else { refs };
    let per_tile = cube.layout.grid().chunks_per_tile().max(1) as usize;
    (refs / per_tile).max(1)
}

/// Merge the stage of every shard of `plan` into `cube`'s branch as one commit.
///
/// With `partial`, the shards that finished are merged and the others (missing, unfinished,
/// failed) are left out and named; the commit then records which shards it holds, and a later
/// merge, once those shards were re-run, adds them to the same commit (amending it while it
/// is the branch's tip).
///
/// The merge lands in batches of about a checkpoint's references, each amending the
/// merge's commit (see [`crate::cube::Merger`]), so its memory is bounded; a merge that was
/// interrupted is resumed by running it again (the shards its commit records are skipped).
/// Refuse a merge whose stages hold a tile twice (in two shards, or already merged by an
/// earlier batch of the merge), or a tile the plan does not give to the shard that staged
/// it: each is named, and nothing is merged.
fn check_staged_once(
    plan: &ShardPlan,
    taken: &[StageManifest],
    merged: Option<&WrittenTiles>,
) -> Result<(), ScaleError> {
    let owner = plan.shard_of();
    let mut seen: std::collections::HashMap<(i32, crate::grid::TileName), usize> =
        std::collections::HashMap::new();
    let mut problems = vec![];
    for m in taken {
        for p in &m.parts {
            for (year, tiles) in &p.written {
                for tile in tiles.keys() {
                    let key = (*year, *tile);
                    if owner.get(&key) != Some(&m.shard) {
                        problems.push(format!(
                            "shard {}: staged {year}/{tile}, which the plan {}",
                            m.shard,
                            match owner.get(&key) {
                                Some(o) => format!("gives to shard {o}"),
                                None => "does not hold".into(),
                            }
                        ));
                    }
                    if merged.is_some_and(|w| w.get(year).is_some_and(|t| t.contains_key(tile))) {
                        problems.push(format!(
                            "shard {}: {year}/{tile} is staged again, and was merged already",
                            m.shard
                        ));
                    }
                    if let Some(first) = seen.insert(key, m.shard)
                        && first != m.shard
                    {
                        problems.push(format!(
                            "{year}/{tile} is staged twice: by shard {first} and by shard {}",
                            m.shard
                        ));
                    }
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ScaleError::StagedWrongly {
            plan: plan.id.clone(),
            problems,
        })
    }
}

pub async fn merge(
    cube: &Cube,
    plan: &ShardPlan,
    stage: &Place,
    partial: bool,
    batch_refs: usize,
) -> Result<MergeOutcome, ScaleError> {
    let landed = plan_commits(cube, plan).await?;
    let earlier = landed
        .iter()
        .find(|c| c.plan.as_ref().is_some_and(|t| t.merged));
    if let Some(c) = earlier
        && c.plan.as_ref().is_some_and(|t| t.complete)
    {
        return Ok(MergeOutcome {
            snapshot: None,
            already: Some(c.id.clone()),
            tiles: c.tile_count(),
            parts: 0,
            shards: 0,
            batches: 0,
            commits: 0,
            omitted: vec![],
        });
    }
    if earlier.is_none()
        && let Some(c) = landed.first()
    {
        return Err(ScaleError::AlreadyCheckpointed {
            plan: plan.id.clone(),
            branch: cube.branch.clone(),
            commit: c.id.to_string(),
        });
    }
    let done: std::collections::HashSet<usize> = earlier
        .and_then(|c| c.plan.as_ref())
        .map(|t| t.merged_shards.iter().copied().collect())
        .unwrap_or_default();
    let manifests: Vec<Option<StageManifest>> = futures::stream::iter(0..plan.shards.len())
        .map(|i| StageManifest::load(stage, i))
        .buffered(32)
        .try_collect()
        .await?;
    let mut problems = vec![];
    let mut taken = vec![];
    for (i, m) in manifests.into_iter().enumerate() {
        if done.contains(&i) {
            continue;
        }
        let jobs = plan.shards[i].len();
        let Some(m) = m else {
            if jobs > 0 {
                problems.push(format!(
                    "shard {i}: nothing staged in {stage} ({jobs} tiles)"
                ));
            }
            continue;
        };
        if m.plan != plan.id {
            problems.push(format!(
                "shard {i}: the stage holds plan {}, not {}",
                m.plan, plan.id
            ));
            continue;
        }
        match m.state {
            ShardState::Done => {}
            ShardState::Failed => problems.push(format!(
                "shard {i}: {} of {jobs} tiles failed: {}",
                m.failed.len(),
                m.failed
                    .iter()
                    .map(|f| format!("{}/{} ({})", f.year, f.tile, f.error))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            state => problems.push(format!(
                "shard {i}: {} with {} of {jobs} tiles staged (attempt {})",
                if state == ShardState::Running {
                    "unfinished (running, or killed)"
                } else {
                    state.name()
                },
                m.tiles(),
                m.attempt
            )),
        }
        // Only finished shards are merged: one left out (with `partial`) is merged whole by
        // a later merge, once it is re-run, so no tile is recorded twice.
        if m.state == ShardState::Done {
            taken.push(m);
        }
    }
    if !problems.is_empty() && !partial {
        return Err(ScaleError::Refused(problems));
    }
    check_staged_once(plan, &taken, earlier.map(|c| &c.written))?;
    let mut merger = cube.merger(&plan.id, earlier.map(|c| c.id.clone())).await?;
    // Every tile of the merge (the resumed commit's too), and those since its last commit.
    let mut written = earlier.map(|c| c.written.clone()).unwrap_or_default();
    let mut since_last = WrittenTiles::new();
    let mut merged_shards: Vec<usize> = done.iter().copied().collect();
    merged_shards.sort();
    let limit = batch_tiles(cube, batch_refs);
    let tags = |merged_shards: &[usize], complete: bool| {
        let mut t = plan.tags(None, true);
        t.insert("merged_shards".into(), serde_json::json!(merged_shards));
        t.insert("complete".into(), serde_json::json!(complete));
        t
    };
    let count = |w: &WrittenTiles| w.values().map(|t| t.len()).sum::<usize>();
    // Parts left in the shards after each one: a batch is committed early only when more
    // follow, so the last commit always holds changes.
    let mut later: usize = taken.iter().map(|m| m.parts.len()).sum();
    let (mut in_batch, mut batches, mut snapshot) = (0usize, 0usize, None);
    for m in taken {
        later -= m.parts.len();
        let names: Vec<String> = m.parts.iter().map(|p| p.name.clone()).collect();
        let mut fetches = futures::stream::iter(names.into_iter().map(|name| async move {
            let bytes = stage
                .get(&name)
                .await?
                .ok_or_else(|| ScaleError::PartMissing {
                    address: stage.address(&name),
                })?;
            Ok::<_, ScaleError>((name, bytes))
        }))
        .buffered(8);
        while let Some(got) = fetches.next().await {
            let (name, bytes) = got?;
            merger.absorb(&stage.address(&name), &bytes).await?;
        }
        in_batch += m.tiles();
        for p in &m.parts {
            for (year, tiles) in &p.written {
                written.entry(*year).or_default().extend(tiles.clone());
                since_last.entry(*year).or_default().extend(tiles.clone());
            }
        }
        merged_shards.push(m.shard);
        if merger.batches() && in_batch >= limit && later > 0 {
            let message = format!(
                "merge plan {} (under way): {} tiles from {} shards",
                plan.id,
                count(&written),
                merged_shards.len()
            );
            snapshot = Some(
                merger
                    .commit(
                        &message,
                        &written,
                        &since_last,
                        &tags(&merged_shards, false),
                    )
                    .await?,
            );
            since_last.clear();
            batches += 1;
            in_batch = 0;
        }
    }
    let tiles = count(&written);
    let parts = merger.parts();
    if parts > 0 {
        let message = format!(
            "merge plan {}: {tiles} tiles from {} shards",
            plan.id,
            merged_shards.len()
        );
        let complete = problems.is_empty();
        snapshot = Some(
            merger
                .commit(
                    &message,
                    &written,
                    &since_last,
                    &tags(&merged_shards, complete),
                )
                .await?,
        );
        batches += 1;
    }
    let commits = merger.commits();
    merger.close().await;
    Ok(MergeOutcome {
        snapshot,
        already: None,
        tiles,
        parts,
        shards: merged_shards.len(),
        batches,
        commits,
        omitted: problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::TileName;
    use crate::scaleout::plan::{PLAN_FORMAT, PlanJob};

    fn t(s: &str) -> TileName {
        s.parse().expect("tile")
    }

    fn plan(shards: Vec<Vec<&str>>) -> ShardPlan {
        ShardPlan {
            format: PLAN_FORMAT,
            id: "p".into(),
            created: Utc::now(),
            repo: "/r".into(),
            cube: String::new(),
            branch: "main".into(),
            s3: Default::default(),
            source: "/s".into(),
            gcs_endpoint: None,
            preset: String::new(),
            tile_pixels: None,
            base: "B".into(),
            selection: "all".into(),
            years: vec![2000],
            shards: shards
                .into_iter()
                .map(|jobs| {
                    jobs.into_iter()
                        .map(|n| PlanJob {
                            year: 2000,
                            tile: t(n),
                            path: format!("/s/2000/{n}.tif"),
                        })
                        .collect()
                })
                .collect(),
            sum: String::new(),
        }
    }

    fn staged(shard: usize, tiles: &[&str]) -> StageManifest {
        let mut written = WrittenTiles::new();
        for n in tiles {
            written.entry(2000).or_default().insert(t(n), 16);
        }
        StageManifest {
            plan: "p".into(),
            shard,
            attempt: "a".into(),
            state: ShardState::Done,
            updated: Utc::now(),
            parts: vec![StagePart {
                name: format!("part-{shard}"),
                written,
            }],
            failed: vec![],
        }
    }

    #[test]
    fn a_tile_staged_twice_or_by_the_wrong_shard_is_refused_by_name() {
        let p = plan(vec![vec!["00N_000E"], vec!["00N_010E"]]);
        let good = [staged(0, &["00N_000E"]), staged(1, &["00N_010E"])];
        assert!(check_staged_once(&p, &good, None).is_ok());
        let twice = [
            staged(0, &["00N_000E"]),
            staged(1, &["00N_010E", "00N_000E"]),
        ];
        let e = check_staged_once(&p, &twice, None).unwrap_err().to_string();
        assert!(
            e.contains("2000/00N_000E is staged twice: by shard 0 and by shard 1")
                && e.contains("shard 1: staged 2000/00N_000E, which the plan gives to shard 0"),
            "{e}"
        );
        let mut merged = WrittenTiles::new();
        merged.entry(2000).or_default().insert(t("00N_010E"), 16);
        let e = check_staged_once(&p, &good[1..], Some(&merged))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("00N_010E is staged again, and was merged already"),
            "{e}"
        );
    }
}
