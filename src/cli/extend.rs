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
        tilecube::runs::plural(report.arrays.len(), "array")
    );
    println!(
        "next: list the year's tiles in the source ({}) and run `tilecube write --year {year} --missing`",
        settings
            .preset
            .source
            .list
            .replace("{year}", &year.to_string())
    );
    Ok(0)
}
