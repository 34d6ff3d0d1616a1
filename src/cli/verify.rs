//! `tilecube verify` (every manifest and chunk of the head against storage) and
//! `tilecube repair` (the references to lost objects dropped in one commit).

use anyhow::{Context, Result};

use tilecube::config::Settings;

pub(crate) async fn repair(settings: &Settings, as_json: bool) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let report = cube
        .repair()
        .await
        .with_context(|| format!("repairing {} @ {}", cube.location, cube.branch))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    let Some(id) = &report.snapshot else {
        println!("nothing to repair: every manifest and chunk the head references is in storage");
        return Ok(0);
    };
    for m in &report.manifests {
        println!("dropped lost manifest {m}");
    }
    for (at, n) in &report.chunks {
        println!(
            "dropped {} to lost chunk objects of {at}",
            tilecube::runs::plural(*n as usize, "reference")
        );
    }
    println!(
        "committed {id}; now `tilecube write --missing` writes the tiles that lost chunks (shown as ?) again, \
         and `tilecube overviews` rebuilds the levels"
    );
    Ok(0)
}

/// How to get back from lost objects, said by `verify` and `status`.
pub(crate) const REPAIR_HINT: &str = "to recover: `tilecube repair` drops the references to lost objects in one commit \
(the tiles they held then show as `?`), `tilecube write --missing` writes those tiles again, and \
`tilecube overviews` rebuilds the levels";

pub(crate) async fn verify(settings: &Settings, as_json: bool) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let v = cube.verify().await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} manifests and {} chunk references of {} @ {} (every level) checked against {} stored chunk objects",
            v.manifests, v.references, cube.location, cube.branch, v.objects
        );
        for m in &v.lost_manifests {
            println!("lost manifest: {m} is not in storage");
        }
        for (tile, n) in &v.missing {
            println!("missing: {tile}: {n} chunk objects are not in storage");
        }
        if v.is_ok() {
            println!("ok");
        } else {
            println!("{REPAIR_HINT}");
        }
    }
    Ok(if v.is_ok() { 0 } else { 1 })
}
