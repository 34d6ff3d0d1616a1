//! Making a plan: the jobs of a selection, read once from the source against the branch
//! head, fixed with everything a task needs to run them anywhere (the repository and source
//! as absolute addresses, the preset's text, the base snapshot).
//!
//! Invariants: a plan never holds a credential (connection settings only, in
//! [`PlanOrigin`]); paths are absolute (the source's root is resolved when the source is
//! made, the repository's address by the face), because tasks start in other directories; a
//! plan with no job is not made (the caller is told there is nothing to write). The engine
//! takes the cube and the source it plans for, never the face's settings.

use std::collections::BTreeSet;

use chrono::Utc;

use super::plan::{PLAN_FORMAT, split};
use super::{PlanJob, ScaleError, ShardPlan};
use crate::cube::{Cube, S3Settings};
use crate::ids::new_id;
use crate::ingest::{self, Selection};
use crate::source::{Source, SourceRoot};

/// What a plan records of how its tasks reach things, beside the cube and the source: the
/// repository's address as every task sees it, and non-secret connection settings.
#[derive(Debug, Clone, Default)]
pub struct PlanOrigin {
    /// The repository: an absolute path or a URL.
    pub repo: String,
    pub s3: S3Settings,
    pub gcs_endpoint: Option<String>,
    /// The preset's TOML, so tasks need no preset file of their own.
    pub preset: String,
    pub tile_pixels: Option<u64>,
}

/// A plan made, and what planning found on the way (list problems, rejected requests).
pub struct Built {
    /// `None` when there is nothing to write.
    pub plan: Option<ShardPlan>,
    pub found: ingest::Plan,
}

/// Plan the writes of `chosen` for `years` (every year of the cube when empty) as `shards`
/// shards of `cube`, from `source`. A plan is not made when a request names no tile of the
/// cube ([`ingest::Plan::rejected`] says which).
pub async fn build_plan(
    cube: &Cube,
    source: &Source,
    origin: PlanOrigin,
    years: &[i32],
    chosen: &Selection,
    shards: usize,
) -> Result<Built, ScaleError> {
    let coverage = match chosen {
        Selection::Missing => Some(cube.coverage().await?),
        _ => None,
    };
    let base = cube.head().await?.to_string();
    let found = ingest::plan(cube, source, years, chosen, coverage.as_ref()).await?;
    if !found.rejected.is_empty() || found.jobs.is_empty() {
        return Ok(Built { plan: None, found });
    }
    let jobs: Vec<PlanJob> = found
        .jobs
        .iter()
        .map(|j| PlanJob {
            year: j.year,
            tile: j.tile,
            // Absolute already: a local source root is resolved when the source is made.
            path: j.location.gdal_path(),
        })
        .collect();
    let years: Vec<i32> = jobs
        .iter()
        .map(|j| j.year)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let selection_name = match chosen {
        Selection::All => "all",
        Selection::Missing => "missing",
        Selection::Pairs(_) => "failed",
        Selection::Tiles(_) => "tiles",
    };
    let plan = ShardPlan {
        format: PLAN_FORMAT,
        id: new_id(),
        created: Utc::now(),
        repo: origin.repo,
        cube: cube.key(),
        branch: cube.branch.clone(),
        s3: origin.s3,
        source: source_address(source),
        gcs_endpoint: origin.gcs_endpoint,
        preset: origin.preset,
        tile_pixels: origin.tile_pixels,
        base,
        selection: selection_name.into(),
        years,
        shards: split(jobs, shards),
        sum: String::new(),
    }
    .sealed();
    Ok(Built {
        plan: Some(plan),
        found,
    })
}

/// The source's root as the plan names it: the absolute directory, or the URL.
fn source_address(source: &Source) -> String {
    match &source.root {
        SourceRoot::Local(dir) => dir.display().to_string(),
        SourceRoot::Remote(url) => url.clone(),
    }
}

/// A location as every task sees it: a relative path made absolute (tasks start in other
/// directories), URLs as they are.
pub fn absolute(location: &str) -> String {
    if location.contains("://") || location.is_empty() {
        return location.to_string();
    }
    crate::source::absolute_path(std::path::Path::new(location))
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_absolute_and_urls_kept() {
        assert_eq!(absolute("s3://b/p"), "s3://b/p");
        assert_eq!(absolute(""), "");
        let a = absolute("cube");
        assert!(a.starts_with('/') && a.ends_with("/cube"), "{a}");
    }
}
