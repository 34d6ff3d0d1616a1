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
        if report.holes.is_empty() {
            println!(
                "nothing to repair: every manifest and chunk the head references is in storage"
            );
            return Ok(0);
        }
        print_by_level(
            "left incomplete (level chunks missing where level 0 holds data)",
            &report.holes,
        );
        println!("nothing to drop; `tilecube overviews` rebuilds those levels");
        return Ok(1);
    };
    for m in &report.manifests {
        println!("dropped lost manifest {m}");
    }
    print_by_level("dropped references to lost chunk objects", &report.chunks);
    print_by_level(
        "dropped references to chunk objects cut short",
        &report.short,
    );
    let mut levels: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for label in report
        .chunks
        .keys()
        .chain(report.short.keys())
        .chain(report.holes.keys())
    {
        if let Some(l) = level_of(label) {
            levels.insert(l);
        }
    }
    for m in &report.manifests {
        if m.factor > 1 {
            levels.insert(format!("×{}", m.factor));
        }
    }
    println!("committed {id}");
    let level0 = report
        .chunks
        .keys()
        .chain(report.short.keys())
        .any(|l| level_of(l).is_none())
        || report.manifests.iter().any(|m| m.factor == 1);
    if level0 {
        println!(
            "the tiles that lost level-0 chunks show as ? until written again: `tilecube write --missing`"
        );
    }
    if !levels.is_empty() {
        println!(
            "left incomplete: overview levels {}; `tilecube overviews` rebuilds them",
            levels.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(0)
}

/// The level of a chunk's label ("2000/20S_060W ×4" → "×4"; none for level 0).
fn level_of(label: &str) -> Option<String> {
    label
        .split_whitespace()
        .find(|w| w.starts_with('×'))
        .map(str::to_string)
}

/// Labelled counts summed by level and year, one line each ("2000 ×4: 3 chunks in 2 tiles").
fn print_by_level(what: &str, counts: &std::collections::BTreeMap<String, u64>) {
    let mut by: std::collections::BTreeMap<(String, String), (u64, usize)> = Default::default();
    for (label, n) in counts {
        let year = label.split(['/', ' ']).next().unwrap_or("?").to_string();
        let level = level_of(label).unwrap_or_else(|| "level 0".into());
        let e = by.entry((year, level)).or_default();
        e.0 += n;
        e.1 += 1;
    }
    for ((year, level), (n, places)) in by {
        println!(
            "{what}: {year} {level}: {} in {}",
            tilecube::text::plural(n as usize, "chunk"),
            tilecube::text::plural(places, "place")
        );
    }
}

/// How to get back from lost objects, said by `verify` and `status`.
pub(crate) const REPAIR_HINT: &str = "to recover: `tilecube repair` drops the references to lost or cut-short objects in one commit \
(the tiles they held then show as `?`), `tilecube write --missing` writes those tiles again, and \
`tilecube overviews` rebuilds the levels (a level's holes too)";

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
        for (tile, n) in &v.short {
            println!(
                "short: {tile}: {n} chunk objects are shorter in storage than their references (cut short)"
            );
        }
        for (tile, n) in &v.holes {
            println!(
                "hole: {tile}: {n} chunks of the level are missing where level 0 holds data (a reader finds fill there)"
            );
        }
        if v.is_ok() {
            println!("ok");
        } else {
            println!("{REPAIR_HINT}");
        }
    }
    Ok(if v.is_ok() { 0 } else { 1 })
}
