//! Planning: which tiles of which years to write, from the source's tile lists and the
//! cube's coverage.

use crate::cube::{Coverage, Cube};
use crate::grid::TileName;
use crate::source::{ListProblem, Source, SourceError};

/// Which tiles to write, per year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// These tiles, whether listed or not (a tile missing from the source fails clearly).
    Tiles(Vec<TileName>),
    /// Every tile in the year's list.
    All,
    /// Listed tiles the branch head does not hold yet.
    Missing,
    /// These tiles of these years (e.g. the failure journal's).
    Pairs(Vec<(i32, TileName)>),
}

/// One tile of one year to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileJob {
    pub year: i32,
    pub year_index: usize,
    pub tile: TileName,
    /// Where the tile is.
    pub location: crate::source::TileLocation,
}

/// The tiles to write, and what was wrong with the inputs that chose them.
#[derive(Debug, Default)]
pub struct Plan {
    pub jobs: Vec<TileJob>,
    /// Tile list lines left out, by year.
    pub list_problems: Vec<(i32, ListProblem)>,
    /// Requests that name no tile of the cube (bad year, tile off the grid).
    pub rejected: Vec<String>,
    /// Years left out because the source has no list for them (year, where the list would
    /// be), when the years were not named: a dataset need not have every year.
    pub missing_lists: Vec<(i32, String)>,
    /// Tiles the lists read named (`All` and `Missing`), before the coverage filter.
    pub listed: usize,
}

/// Plan the writes of `selection` for `years` (all the cube's years when empty).
///
/// A year named in `years` whose list is not there is an error; with every year implied, a
/// missing list leaves that year out (see [`Plan::missing_lists`]), and no list at all is an
/// error naming the first.
pub async fn plan(
    cube: &Cube,
    source: &Source,
    years: &[i32],
    selection: &Selection,
    coverage: Option<&Coverage>,
) -> Result<Plan, SourceError> {
    let layout = &cube.layout;
    let grid = layout.grid();
    let named = !years.is_empty();
    let years: Vec<i32> = if named {
        // A year named twice is planned once, as a tile named twice is.
        let mut seen = std::collections::BTreeSet::new();
        years.iter().copied().filter(|y| seen.insert(*y)).collect()
    } else {
        layout.years.clone()
    };
    let mut out = Plan::default();
    for year in years {
        let Some(year_index) = layout.year_index(year) else {
            out.rejected.push(format!(
                "year {year} is not in the cube (years: {:?})",
                layout.years
            ));
            continue;
        };
        let tiles: Vec<TileName> = match selection {
            Selection::Tiles(tiles) => {
                let mut ok = Vec::new();
                for t in tiles {
                    match grid.cell(*t) {
                        Ok(_) => ok.push(*t),
                        Err(e) => out.rejected.push(format!("{year}/{t}: {e}")),
                    }
                }
                ok
            }
            Selection::Pairs(pairs) => pairs
                .iter()
                .filter(|(y, _)| *y == year)
                .map(|(_, t)| *t)
                .collect(),
            Selection::All | Selection::Missing => {
                let list = match source.tile_list(year, &grid).await {
                    Ok(list) => list,
                    Err(SourceError::NoList { year, path }) if !named => {
                        out.missing_lists.push((year, path));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                out.list_problems
                    .extend(list.problems.into_iter().map(|p| (year, p)));
                out.listed += list.tiles.len();
                list.tiles
                    .into_iter()
                    .filter(|t| {
                        *selection == Selection::All
                            || !coverage.is_some_and(|c| c.is_written(year, *t))
                    })
                    .collect()
            }
        };
        out.jobs.extend(tiles.into_iter().map(|tile| TileJob {
            year,
            year_index,
            tile,
            location: source.tile(year, tile),
        }));
    }
    if !named
        && matches!(selection, Selection::All | Selection::Missing)
        && out.missing_lists.len() == layout.years.len()
        && let Some((year, path)) = out.missing_lists.first().cloned()
    {
        return Err(SourceError::NoList { year, path });
    }
    Ok(out)
}
