//! `tilecube status`: per year, the grid of tile states read from the repository (its
//! snapshot's records and manifest list, one listing of the manifests), the source's lists
//! and the failure journal.

use std::collections::BTreeMap;
use std::io::Write as _;

use anyhow::{Result, bail};
use serde_json::json;

use tilecube::config::{Settings, journal_dir};
use tilecube::cube::{Coverage, TileState};
use tilecube::grid::TileName;
use tilecube::ingest::Journal;
use tilecube::source::{ListProblem, TileList};

use super::REPAIR_HINT;

/// The state of one tile for display.
fn tile_state_name(state: Option<&TileState>, listed: Option<bool>) -> &'static str {
    match (state, listed) {
        (Some(TileState::Written { .. }), _) => "written",
        (Some(TileState::Incomplete { .. }), _) => "incomplete",
        (Some(TileState::Unrecorded { .. }), _) => "unrecorded",
        (None, Some(true)) => "listed",
        (None, Some(false)) => "not_listed",
        (None, None) => "not_written",
    }
}

/// The grid's glyph of a state, as the console draws it (one table for both faces).
fn glyph(name: &str) -> char {
    use crate::cell::CellState;
    match name {
        "written" => CellState::Written,
        "incomplete" | "unrecorded" | "lost_manifest" => CellState::Inconsistent,
        "changed" => CellState::Changed,
        "listed" => CellState::Listed,
        "failed" => CellState::Failed,
        _ => CellState::NoTile,
    }
    .glyph()
}

/// `tilecube status`: the head's tiles by year against the source's lists. `deep` lists the
/// manifest objects to find lost ones (what `verify` and `repair` do too); without it the
/// manifests the last listing found lost are shown, so status's cost follows the tiles.
pub(crate) async fn status(
    settings: &Settings,
    as_json: bool,
    years: &[i32],
    deep: bool,
) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let head_id = cube.head().await?;
    let grid = cube.layout.grid();
    let source = settings.source().ok();
    if let Some(y) = years.iter().find(|y| !cube.layout.years.contains(y)) {
        bail!(
            "--year {y}: year {y} is not in the cube (years: {:?})",
            cube.layout.years
        );
    }
    let years: Vec<i32> = if years.is_empty() {
        cube.layout.years.clone()
    } else {
        years.to_vec()
    };
    // What the head holds, the manifests lost from storage (one listing, O(manifests)) and
    // the source's lists are independent reads: at once, so a remote repository's round
    // trips overlap instead of adding up.
    let read_lists = async {
        let mut lists: BTreeMap<i32, TileList> = BTreeMap::new();
        let mut problems: Vec<(i32, ListProblem)> = Vec::new();
        // Years whose list is not there: shown as "no list".
        let mut no_list: BTreeMap<i32, String> = BTreeMap::new();
        if let Some(src) = &source {
            let read = futures::future::join_all(years.iter().map(|&y| {
                let grid = &grid;
                async move { (y, src.tile_list(y, grid).await) }
            }))
            .await;
            for (y, r) in read {
                match r {
                    Ok(l) => {
                        problems.extend(l.problems.iter().cloned().map(|p| (y, p)));
                        lists.insert(y, l);
                    }
                    Err(tilecube::source::SourceError::NoList { path, .. }) => {
                        no_list.insert(y, path);
                    }
                    // A source that cannot be reached: said, and the cube shown as it is.
                    Err(e) => {
                        let e = tilecube::error_chain(&e);
                        eprintln!("warning: {e}");
                        no_list.insert(y, format!("not read: {e}"));
                    }
                }
            }
        }
        (lists, problems, no_list)
    };
    let find_lost = async {
        if deep {
            let at = chrono::Utc::now().to_rfc3339();
            let lost = cube.lost_manifests(&head_id).await?;
            Ok::<_, tilecube::cube::CubeError>((
                lost,
                Some(tilecube::cube::ManifestsListed {
                    at,
                    lost: Vec::new(),
                }),
            ))
        } else {
            cube.known_lost_manifests(&head_id).await
        }
    };
    let (coverage, lost, (lists, problems, no_list)) =
        tokio::join!(cube.coverage_of(&head_id), find_lost, read_lists);
    let coverage: Coverage = coverage?;
    let (lost, listed) = lost?;
    let listed_at = listed.map(|l| l.at);
    // Written tiles whose source changed since (one listing a year or a lookup per tile,
    // from the sources recorded with the coverage); a source that cannot be reached is
    // said, and the cube shown as it is.
    let mut check_error = None;
    let check = match &source {
        Some(src) => match tilecube::ingest::check_sources(
            &coverage,
            src,
            &years,
            &tilecube::config::digest_cache(),
        )
        .await
        {
            Ok(c) => Some(c),
            Err(e) => {
                let e = tilecube::error_chain(&e);
                eprintln!(
                    "warning: the tiles were not compared with their source: {e}; the cube is shown as it is"
                );
                check_error = Some(e);
                None
            }
        },
        None => None,
    };
    let changed = |y: i32, t: TileName| check.as_ref().is_some_and(|c| c.changed.contains(&(y, t)));
    let head = head_id.to_string();
    // Manifests lost from storage: their tiles show as `?`.
    let lost_tiles: std::collections::BTreeSet<(i32, TileName)> = lost
        .iter()
        .flat_map(|m| m.level0_tiles.iter().copied())
        .collect();
    // Holes `verify` or `repair` found in this very snapshot (on any level), kept by its id.
    // A tile whose level-0 chunks are missing shows as incomplete already; the holes marked
    // are those of tiles the cube holds as written.
    let holes: std::collections::BTreeSet<(i32, TileName)> = cube
        .coverage_cache
        .holes(&head)
        .unwrap_or_default()
        .into_iter()
        .filter(|(y, t)| coverage.is_written(*y, *t))
        .collect();
    let journal =
        Journal::load_or_report(&journal_dir(), &cube.key(), |w| eprintln!("warning: {w}"));
    // A failure counts while the cube does not hold the tile, or holds it from a write older
    // than the failure (its rewrite failed: the cube keeps the old pixels). A tile written
    // after its failure, by any process, is not failed any more.
    let mut failed: BTreeMap<(i32, TileName), &tilecube::ingest::JournalEntry> = BTreeMap::new();
    for ((y, t), e) in journal.by_tile() {
        if !years.contains(&y) {
            continue;
        }
        let keep = match coverage.state(y, t) {
            Some(tilecube::cube::TileState::Written { snapshot, .. }) => cube
                .commit_of(snapshot)
                .await
                .map(|c| c.time < e.time)
                .unwrap_or(false),
            _ => true,
        };
        if keep {
            failed.insert((y, t), e);
        }
    }
    // A tile a reader meets a hole in is not counted written; any such tile (a lost manifest,
    // a hole verify found, chunks missing from a recorded tile) makes status exit 1.
    let broken = |y: i32| -> usize {
        grid.tiles()
            .filter(|t| {
                coverage.is_written(y, *t)
                    && (lost_tiles.contains(&(y, *t)) || holes.contains(&(y, *t)))
            })
            .count()
    };
    let written_ok = |y: i32| coverage.written_count(y).saturating_sub(broken(y));
    let incomplete = coverage.tiles.iter().any(|((y, _), st)| {
        years.contains(y) && matches!(st, tilecube::cube::TileState::Incomplete { .. })
    });
    let damaged = !lost.is_empty() || !holes.is_empty() || incomplete;
    if as_json {
        let mut out = serde_json::Map::new();
        for &y in &years {
            let list = lists.get(&y);
            let mut tiles = serde_json::Map::new();
            for t in grid.tiles() {
                let mut name = tile_state_name(coverage.state(y, t), list.map(|l| l.contains(t)));
                if name == "written" && changed(y, t) {
                    name = "changed";
                }
                if failed.contains_key(&(y, t)) {
                    name = "failed";
                }
                if holes.contains(&(y, t)) {
                    name = "hole";
                }
                if lost_tiles.contains(&(y, t)) {
                    name = "lost_manifest";
                }
                if name != "not_listed" && name != "not_written" {
                    tiles.insert(t.to_string(), json!(name));
                }
            }
            out.insert(
                y.to_string(),
                json!({
                    "listed": list.map(|l| l.tiles.len()),
                    "no_list": no_list.get(&y),
                    "written": written_ok(y),
                    "tiles": tiles,
                }),
            );
        }
        let doc = json!({
            "repo": cube.location.to_string(),
            "branch": cube.branch,
            "head": head,
            "years": out,
            "list_problems": problems.iter()
                .map(|(y, p)| json!({"year": y, "line": p.line, "text": p.text, "reason": p.reason}))
                .collect::<Vec<_>>(),
            "failed": failed.values().collect::<Vec<_>>(),
            "lost_manifests": lost,
            // When the manifest objects were last listed here (by `status --deep`, `verify`,
            // `repair`), null if never: the lost manifests shown are what it found.
            "manifests_listed": listed_at,
            "holes": holes.iter().map(|(y, t)| format!("{y}/{t}")).collect::<Vec<_>>(),
            "source_check": match (&check, &check_error) {
                (Some(c), _) => json!({
                    "compared": c.compared,
                    "changed": c.changed.len(),
                    "gone": c.gone.iter().map(|(y, t)| format!("{y}/{t}")).collect::<Vec<_>>(),
                    "unknown": c.unknown.len(),
                }),
                (None, Some(e)) => json!({ "error": e }),
                (None, None) => json!(null),
            },
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(if damaged { 1 } else { 0 });
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} @ {} ({head})  legend: # written  % source changed  o listed  . no tile  ! failed  ? inconsistent",
        cube.location, cube.branch
    )?;
    for &y in &years {
        let list = lists.get(&y);
        let listed = match (list, no_list.get(&y)) {
            (Some(l), _) => format!("{} listed", l.tiles.len()),
            (None, Some(path)) => format!("no list ({path})"),
            (None, None) => {
                "lists not read (no source: give --source or `source =` in the config)".into()
            }
        };
        writeln!(out, "\n{y}: {} written / {listed}", written_ok(y))?;
        // Column labels every 6 columns.
        let mut header = String::from("     ");
        for c in 0..grid.columns {
            if c % 6 == 0 {
                let t = grid.tile_at(tilecube::grid::Cell { col: c, row: 0 });
                let lon = t.to_string();
                let label = &lon[4..];
                header.push_str(&format!("{label:<6}"));
            }
        }
        writeln!(out, "{}", header.trim_end())?;
        for r in 0..grid.rows {
            let row_tile = grid.tile_at(tilecube::grid::Cell { col: 0, row: r });
            let lat = &row_tile.to_string()[..3];
            let mut line = format!("{lat}  ");
            for c in 0..grid.columns {
                let t = grid.tile_at(tilecube::grid::Cell { col: c, row: r });
                line.push(glyph(
                    if lost_tiles.contains(&(y, t)) || holes.contains(&(y, t)) {
                        "lost_manifest"
                    } else if failed.contains_key(&(y, t)) {
                        "failed"
                    } else {
                        match tile_state_name(coverage.state(y, t), list.map(|l| l.contains(t))) {
                            "written" if changed(y, t) => "changed",
                            name => name,
                        }
                    },
                ));
            }
            writeln!(out, "{line}")?;
        }
    }
    for (y, p) in &problems {
        writeln!(out, "warning: tile list {y}: {p}")?;
    }
    if let Some(c) = &check {
        if !c.changed.is_empty() {
            let shown: Vec<String> = c.changed.iter().map(|(y, t)| format!("{y}/{t}")).collect();
            writeln!(
                out,
                "source changed since written ({}): {}; `tilecube write --changed` writes them again",
                shown.len(),
                shown.join(" ")
            )?;
        }
        for (y, t) in &c.gone {
            writeln!(
                out,
                "warning: {y}/{t}: written, but its source is not there any more"
            )?;
        }
        if !c.unknown.is_empty() {
            writeln!(
                out,
                "{} written tiles have no recorded source (written before sources were recorded)",
                c.unknown.len()
            )?;
        }
    }
    for e in failed.values() {
        writeln!(
            out,
            "failed: {}/{}: {} ({}, {}){}",
            e.year,
            e.tile,
            e.reason,
            tilecube::text::plural(e.attempts as usize, "attempt"),
            e.time.format("%Y-%m-%d %H:%M:%S UTC"),
            if coverage.is_written(e.year, e.tile) {
                "; the cube keeps the tile as written before"
            } else {
                ""
            }
        )?;
    }
    for m in &lost {
        writeln!(
            out,
            "lost manifest: {m} is not in storage: its chunks cannot be read"
        )?;
    }
    if deep {
        if lost.is_empty() {
            writeln!(
                out,
                "manifests: every manifest the head lists is in storage (listed now)"
            )?;
        }
    } else if !lost.is_empty()
        && let Some(at) = &listed_at
    {
        writeln!(
            out,
            "(lost manifests as found by the listing of {at}; `tilecube status --deep` lists them again)"
        )?;
    }
    if !holes.is_empty() {
        let shown: Vec<String> = holes.iter().map(|(y, t)| format!("{y}/{t}")).collect();
        writeln!(
            out,
            "holes ({}): {}: `tilecube verify` found chunks a reader cannot read, or level chunks missing, in this snapshot",
            shown.len(),
            shown.join(" ")
        )?;
    }
    if incomplete {
        writeln!(
            out,
            "tiles marked ? are recorded with chunks missing (dropped by a repair, or lost): `tilecube write --missing` writes them again"
        )?;
    }
    if !lost.is_empty() || !holes.is_empty() {
        writeln!(out, "{REPAIR_HINT}")?;
    }
    if damaged {
        return Ok(1);
    }
    Ok(0)
}
