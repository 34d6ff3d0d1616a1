//! `tilecube extend --year Y`: a new epoch appended to a written cube, in one commit that
//! writes no chunk of an earlier year (`tilecube::cube::Cube::extend_year`).
//!
//! Invariants: a refusal (a year already there, one before the last, one no cube takes, a
//! repository that holds no cube) commits nothing and exits 2 with the engine's message,
//! prefixed by the repository and branch it was about; the report names the commit and the
//! cube's years.

use anyhow::{Context, Result};

use tilecube::config::Settings;

pub(crate) async fn extend(settings: &Settings, year: i32, as_json: bool) -> Result<i32> {
    let mut cube = settings.open_cube().await?;
    let (location, branch) = (cube.location.to_string(), cube.branch.clone());
    warn_running_writes(&cube, "extend changes the cube's arrays").await;
    let report = cube
        .extend_year(year)
        .await
        .with_context(|| format!("extending {location} @ {branch}"))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    let years: Vec<String> = report.years.iter().map(i32::to_string).collect();
    println!(
        "added year {year} to {location} @ {branch} in commit {}: its years are {} ({}); {} grew, no chunk of an earlier year was written",
        report.snapshot,
        years.join(", "),
        years.len(),
        tilecube::text::plural(report.arrays.len(), "array")
    );
    println!(
        "next: list the year's tiles in the source ({}) and run `tilecube write --year {year} --missing`",
        settings
            .preset()
            .source_spec()
            .list
            .map(|l| settings.preset().source.fill(&l, Some(year), ""))
            .unwrap_or_else(|| "its root".into())
    );
    Ok(0)
}

/// Say which writes are going on the repository and what a maintenance command `does` to
/// them (a write ended by it reports which of its tiles landed; `write --missing` writes the
/// rest). A listing that fails is said, and the command goes on.
pub(crate) async fn warn_running_writes(cube: &tilecube::cube::Cube, does: &str) {
    match cube.live_writers().await {
        Ok(live) => {
            let now = chrono::Utc::now();
            let writes: Vec<_> = live
                .iter()
                .filter(|a| a.kind == tilecube::cube::WriterKind::Write)
                .collect();
            if writes.is_empty() {
                return;
            }
            eprintln!(
                "warning: {} going on this repository; {does}, so each stops at its next commit: the tiles it committed before stay, it names those that did not land, and `write --missing` writes them",
                tilecube::text::plural(writes.len(), "write")
            );
            for a in writes {
                eprintln!("  running: {}", a.describe(now));
            }
        }
        Err(e) => eprintln!(
            "warning: the writes running on this repository could not be listed: {}",
            tilecube::error_chain(&e)
        ),
    }
}
