//! Making a plan: the jobs of a selection, read once from the source against the branch
//! head, fixed with everything a task needs to run them anywhere (the repository and source
//! as absolute addresses, the preset's text, the base snapshot).
//!
//! Invariants: a plan never holds a credential (connection settings only); paths are made
//! absolute here, because tasks start in other directories; a plan with no job is not made
//! (the caller is told there is nothing to write).

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use chrono::Utc;

use super::plan::{PLAN_FORMAT, new_id, split};
use super::{PlanJob, ShardPlan};
use crate::config::Settings;
use crate::ingest::{self, Selection};
use crate::preset::GLAD_TOML;

/// A plan made, and what planning found on the way (list problems, rejected requests).
pub struct Built {
    /// `None` when there is nothing to write.
    pub plan: Option<ShardPlan>,
    pub found: ingest::Plan,
}

/// Plan the writes of `chosen` for `years` (every year of the cube when empty) as `shards`
/// shards. A plan is not made when a request names no tile of the cube
/// ([`ingest::Plan::rejected`] says which).
pub async fn build_plan(
    settings: &Settings,
    years: &[i32],
    chosen: &Selection,
    shards: usize,
) -> Result<Built> {
    let cube = settings.open_cube().await?;
    let source = settings.source()?;
    let coverage = match chosen {
        Selection::Missing => Some(cube.coverage().await?),
        _ => None,
    };
    let base = cube.head().await?.to_string();
    let found = ingest::plan(&cube, &source, years, chosen, coverage.as_ref()).await?;
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
            path: j.path.clone(),
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
        repo: absolute(settings.repo.as_deref().unwrap_or_default()),
        cube: cube.key(),
        branch: settings.branch.clone(),
        s3: settings.file.s3.clone(),
        source: source_address(&source),
        gcs_endpoint: settings.file.gcs.endpoint.clone(),
        preset: preset_text(settings)?,
        tile_pixels: settings.tile_pixels,
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
fn source_address(source: &crate::source::Source) -> String {
    match &source.root {
        crate::source::SourceRoot::Local(dir) => dir.display().to_string(),
        crate::source::SourceRoot::Remote(url) => url.clone(),
    }
}

/// The preset's TOML as the settings chose it.
fn preset_text(settings: &Settings) -> Result<String> {
    match &settings.file.preset {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("setting preset: reading {}", path.display())),
        None => Ok(GLAD_TOML.to_string()),
    }
}

/// A location as every task sees it: a relative path made absolute (tasks start in other
/// directories), URLs as they are.
pub fn absolute(location: &str) -> String {
    if location.contains("://") || location.is_empty() {
        return location.to_string();
    }
    std::path::absolute(location)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| location.to_string())
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
