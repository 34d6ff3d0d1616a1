//! The plan: the work of a scale-out write fixed once — the repository, branch and base
//! snapshot, the source, the (year, tile) jobs and their split into shards — stored as
//! `plan.json` in a place every task reads.
//!
//! Invariants: a plan never changes once saved (saving over one needs `force`); shards are
//! balanced (their sizes differ by at most one job) and disjoint, and together hold every
//! job once; a plan holds addresses and settings, never a credential.

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Place, ScaleError};
use crate::cube::{Layout, S3Settings};
use crate::grid::TileName;
use crate::ingest::TileJob;
use crate::source::Source;

/// The plan's object in its place.
pub const PLAN_FILE: &str = "plan.json";

/// This format's number; a plan of another is refused by name. Format 2 added the jobs'
/// checksum and absolute tile paths.
pub const PLAN_FORMAT: u32 = 2;

/// One (year, tile) of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanJob {
    pub year: i32,
    pub tile: TileName,
    /// The path GDAL opens.
    pub path: String,
}

/// A scale-out write, fixed once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardPlan {
    pub format: u32,
    pub id: String,
    pub created: DateTime<Utc>,
    /// The repository's address (a path or `s3://` / `gs://` URL).
    pub repo: String,
    /// The cube's key ([`crate::cube::Cube::key`]) when the plan was made: a task refuses a
    /// repository that was made again at the same address since.
    #[serde(default)]
    pub cube: String,
    pub branch: String,
    /// Non-secret S3 settings of the repository (endpoint, region, addressing).
    #[serde(default)]
    pub s3: S3Settings,
    /// The source root the jobs' paths were made from.
    pub source: String,
    #[serde(default)]
    pub gcs_endpoint: Option<String>,
    /// The preset's TOML, so tasks need no preset file of their own.
    pub preset: String,
    #[serde(default)]
    pub tile_pixels: Option<u64>,
    /// The branch head when the plan was made.
    pub base: String,
    /// How the jobs were chosen: "all", "missing", "failed" or "tiles".
    pub selection: String,
    pub years: Vec<i32>,
    /// The jobs of each shard.
    pub shards: Vec<Vec<PlanJob>>,
    /// A checksum of everything above ([`ShardPlan::checksum`]): a plan edited by hand after
    /// it was made is refused by tasks and by `merge`.
    #[serde(default)]
    pub sum: String,
}

/// Split jobs into `n` shards of sizes differing by at most one. Jobs are dealt in turn in
/// (tile, year) order, so each shard holds tiles from all over the grid and every year:
/// no shard gets all the ocean or all the dense land.
pub fn split(mut jobs: Vec<PlanJob>, n: usize) -> Vec<Vec<PlanJob>> {
    let n = n.max(1);
    jobs.sort_by(|a, b| a.tile.cmp(&b.tile).then(a.year.cmp(&b.year)));
    let mut shards = vec![Vec::new(); n];
    for (i, job) in jobs.into_iter().enumerate() {
        shards[i % n].push(job);
    }
    shards
}

impl ShardPlan {
    /// Every job of the plan.
    pub fn job_count(&self) -> usize {
        self.shards.iter().map(Vec::len).sum()
    }

    /// The shard each (year, tile) of the plan belongs to.
    pub fn shard_of(&self) -> HashMap<(i32, TileName), usize> {
        self.shards
            .iter()
            .enumerate()
            .flat_map(|(i, jobs)| jobs.iter().map(move |j| ((j.year, j.tile), i)))
            .collect()
    }

    /// The checksum of the plan's content (every field but `sum`): FNV-1a (64 bits) of its
    /// JSON, as 16 hex digits. It guards against edits and copy mistakes, not an attacker.
    pub fn checksum(&self) -> String {
        let mut bare = self.clone();
        bare.sum = String::new();
        let text = serde_json::to_vec(&bare).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }

    /// Seal the plan: set its checksum (done once, when it is made).
    pub fn sealed(mut self) -> Self {
        self.sum = self.checksum();
        self
    }

    /// Why the plan cannot be run as it is: its checksum does not match (edited by hand), or
    /// a (year, tile) is in it twice.
    fn check(&self, address: &str) -> Result<(), ScaleError> {
        if self.sum != self.checksum() {
            return Err(ScaleError::PlanEdited {
                address: address.to_string(),
            });
        }
        let mut seen = HashMap::new();
        for (i, jobs) in self.shards.iter().enumerate() {
            for j in jobs {
                if let Some(first) = seen.insert((j.year, j.tile), i) {
                    return Err(ScaleError::TileInTwoShards {
                        address: address.to_string(),
                        year: j.year,
                        tile: j.tile,
                        first,
                        second: i,
                    });
                }
            }
        }
        Ok(())
    }

    /// Shard `shard`'s jobs as the ingest takes them. A job whose path does not lie under
    /// the plan's `source` is refused by name: a task never reads a tile from elsewhere.
    pub fn tile_jobs(
        &self,
        shard: usize,
        layout: &Layout,
        source: &Source,
    ) -> Result<Vec<TileJob>, ScaleError> {
        let jobs = self.shards.get(shard).ok_or(ScaleError::OutOfRange {
            index: shard,
            origin: "the plan".into(),
            shards: self.shards.len(),
        })?;
        jobs.iter()
            .map(|j| {
                let Some(location) = source.locate(&j.path) else {
                    return Err(ScaleError::PathOutsideSource {
                        plan: self.id.clone(),
                        year: j.year,
                        tile: j.tile,
                        path: j.path.clone(),
                        root: self.source.clone(),
                    });
                };
                let year_index =
                    layout
                        .year_index(j.year)
                        .ok_or_else(|| ScaleError::YearNotInCube {
                            plan: self.id.clone(),
                            year: j.year,
                            tile: j.tile,
                            years: layout.years.clone(),
                        })?;
                Ok(TileJob {
                    year: j.year,
                    year_index,
                    tile: j.tile,
                    location,
                })
            })
            .collect()
    }

    /// Whether `cube` is the cube this plan was made for (a plan that names none predates
    /// the check).
    pub fn check_cube(&self, cube: &crate::cube::Cube) -> Result<(), ScaleError> {
        if self.cube.is_empty() || self.cube == cube.key() {
            return Ok(());
        }
        Err(ScaleError::NotThePlansCube {
            plan: self.id.clone(),
            repo: self.repo.clone(),
        })
    }

    /// What commits of this plan record beside their tiles.
    pub fn tags(&self, shard: Option<usize>, merged: bool) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("plan".into(), json!(self.id));
        if let Some(s) = shard {
            m.insert("shard".into(), json!(s));
        }
        if merged {
            m.insert("merged".into(), json!(true));
        }
        m
    }

    /// Save the plan in `place`; a plan already there is kept unless `force`.
    pub async fn save(&self, place: &Place, force: bool) -> Result<(), ScaleError> {
        if !force && place.get(PLAN_FILE).await?.is_some() {
            return Err(ScaleError::PlanExists {
                address: place.address(PLAN_FILE),
            });
        }
        let text = serde_json::to_vec_pretty(self).map_err(|source| ScaleError::Encode {
            what: place.address(PLAN_FILE),
            source,
        })?;
        place.put(PLAN_FILE, Bytes::from(text)).await
    }

    /// The plan saved in `place`.
    pub async fn load(place: &Place) -> Result<Self, ScaleError> {
        let address = place.address(PLAN_FILE);
        let bytes = place
            .get(PLAN_FILE)
            .await?
            .ok_or_else(|| ScaleError::NoPlan {
                address: address.clone(),
            })?;
        let format = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("format").and_then(Value::as_u64));
        if let Some(f) = format
            && f != u64::from(PLAN_FORMAT)
        {
            return Err(ScaleError::PlanFormat { address, format: f });
        }
        let plan: Self = serde_json::from_slice(&bytes).map_err(|source| ScaleError::NotAPlan {
            address: address.clone(),
            source,
        })?;
        if plan.format != PLAN_FORMAT {
            return Err(ScaleError::PlanFormat {
                address,
                format: plan.format.into(),
            });
        }
        plan.check(&address)?;
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(n: usize) -> Vec<PlanJob> {
        (0..n)
            .map(|i| PlanJob {
                year: [2000, 2005][i % 2],
                tile: TileName::new(70 - 10 * (i as i32 / 36 % 14), -180 + 10 * (i as i32 % 36)),
                path: format!("t{i}.tif"),
            })
            .collect()
    }

    #[test]
    fn shards_are_balanced_disjoint_and_hold_every_job_once() {
        for (n_jobs, n_shards) in [(10, 4), (3, 5), (1400, 200), (0, 3), (7, 1)] {
            let all = jobs(n_jobs);
            let shards = split(all.clone(), n_shards);
            assert_eq!(shards.len(), n_shards);
            let sizes: Vec<usize> = shards.iter().map(Vec::len).collect();
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{sizes:?}");
            let mut seen: Vec<String> = shards.iter().flatten().map(|j| j.path.clone()).collect();
            seen.sort();
            let mut want: Vec<String> = all.iter().map(|j| j.path.clone()).collect();
            want.sort();
            assert_eq!(seen, want);
        }
    }

    #[tokio::test]
    async fn a_plan_round_trips_and_is_not_overwritten_by_accident() {
        let dir = tempfile::tempdir().unwrap();
        let place = Place::parse(&dir.path().display().to_string(), &Default::default()).unwrap();
        let plan = ShardPlan {
            format: PLAN_FORMAT,
            id: crate::ids::new_id(),
            created: Utc::now(),
            repo: "s3://bucket/cube".into(),
            cube: "cube:0123".into(),
            branch: "main".into(),
            s3: S3Settings::default(),
            source: "gs://glad/tiles".into(),
            gcs_endpoint: None,
            preset: crate::preset::GLAD_TOML.into(),
            tile_pixels: None,
            base: "ABC".into(),
            selection: "all".into(),
            years: vec![2000],
            shards: split(jobs(9), 2),
            sum: String::new(),
        }
        .sealed();
        assert_eq!(plan.id.len(), 12);
        plan.save(&place, false).await.unwrap();
        assert_eq!(ShardPlan::load(&place).await.unwrap(), plan);
        let e = plan.save(&place, false).await.unwrap_err().to_string();
        assert!(
            e.contains("already there") && e.contains("plan.json"),
            "{e}"
        );
        plan.save(&place, true).await.unwrap();
        assert_eq!(plan.shard_of().len(), 9);
        // An edited plan is refused, and so is a job in two shards.
        let mut edited = plan.clone();
        let first = edited.shards[0][0].clone();
        edited.shards[1].push(first);
        edited.save(&place, true).await.unwrap();
        let e = ShardPlan::load(&place).await.unwrap_err().to_string();
        assert!(e.contains("changed after it was made"), "{e}");
        edited = edited.sealed();
        edited.save(&place, true).await.unwrap();
        let e = ShardPlan::load(&place).await.unwrap_err().to_string();
        assert!(e.contains("in shard 0 and in shard 1"), "{e}");
        let empty = Place::parse(
            &dir.path().join("none").display().to_string(),
            &Default::default(),
        )
        .unwrap();
        let e = ShardPlan::load(&empty).await.unwrap_err().to_string();
        assert!(e.contains("no plan there"), "{e}");
    }
}
