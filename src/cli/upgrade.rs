//! `tilecube upgrade`: a cube written by an earlier tilecube given today's metadata (the
//! GeoZarr conventions), in one commit that touches no chunk.

use anyhow::{Context, Result};

use tilecube::config::Settings;

pub(crate) async fn upgrade(settings: &Settings, as_json: bool) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let report = cube
        .upgrade_metadata()
        .await
        .with_context(|| format!("upgrading {} @ {}", cube.location, cube.branch))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    match &report.snapshot {
        None => println!("nothing to upgrade: the metadata is already in today's form"),
        Some(id) => println!(
            "upgraded the metadata of {} ({}) in commit {id}; no chunk was touched",
            report.groups.join(", "),
            report.groups.len()
        ),
    }
    Ok(0)
}
