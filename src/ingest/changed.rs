//! Tiles changed upstream: the written tiles whose source is no longer what they were read
//! from (a publisher re-issued them), found by comparing what each tile's last write
//! recorded ([`crate::source::Provenance`]) with the source now.
//!
//! Invariants: costs follow the tiles, not the chunks — the branch's history (its commits'
//! records) and one listing per year on S3, else a lookup per tile with bounded
//! concurrency; a tile whose last write recorded no source (written before provenance was
//! recorded, or carried by an expiry) is "source unknown", never changed, and so is one read
//! from another kind of source than the one configured now (an ETag then, a file's time
//! now); a tile whose source is gone is not changed either (it is reported apart).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::cube::{Cube, CubeError};
use crate::fault::RemoteError;
use crate::grid::TileName;
use crate::source::{Provenance, Source};

/// What a look at the sources found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceCheck {
    /// Written tiles whose source changed since.
    pub changed: BTreeSet<(i32, TileName)>,
    /// Written tiles whose source is not there any more.
    pub gone: BTreeSet<(i32, TileName)>,
    /// Written tiles whose write recorded no source.
    pub unknown: BTreeSet<(i32, TileName)>,
    /// Written tiles compared.
    pub compared: usize,
}

/// Why the sources could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Cube(#[from] CubeError),
    #[error("looking at the source of year {year}: {source}")]
    Source {
        year: i32,
        #[source]
        source: RemoteError,
    },
}

/// The source each tile of the branch head was last written from (`None`: not recorded).
pub async fn recorded_sources(
    cube: &Cube,
) -> Result<BTreeMap<(i32, TileName), Option<Provenance>>, CubeError> {
    let history = cube.history().await?;
    let mut out = BTreeMap::new();
    for (key, (_, snapshot)) in Cube::recorded_tiles(&history) {
        let recorded = history
            .iter()
            .find(|c| c.id == snapshot)
            .and_then(|c| c.sources.get(&key.0))
            .and_then(|t| t.get(&key.1))
            .and_then(|r| Provenance::from_record(r));
        out.insert(key, recorded);
    }
    Ok(out)
}

/// Compare the sources of the written tiles of `years` with what their writes recorded.
pub async fn check_sources(
    cube: &Cube,
    source: &Source,
    years: &[i32],
) -> Result<SourceCheck, CheckError> {
    let recorded = recorded_sources(cube).await?;
    let mut check = SourceCheck::default();
    for &year in years {
        let of_year: Vec<(TileName, &Provenance)> = recorded
            .iter()
            .filter(|((y, _), _)| *y == year)
            .filter_map(|((_, t), p)| match p {
                Some(p) => Some((*t, p)),
                None => {
                    check.unknown.insert((year, *t));
                    None
                }
            })
            .collect();
        if of_year.is_empty() {
            continue;
        }
        let tiles: Vec<TileName> = of_year.iter().map(|(t, _)| *t).collect();
        let now = crate::source::provenance::look_up_year(source, year, &tiles)
            .await
            .map_err(|source| CheckError::Source { year, source })?;
        for (tile, was) in of_year {
            check.compared += 1;
            match now.get(&tile) {
                // Read from another kind of source than now configured (an HTTP mirror then,
                // a local copy now): the two say nothing of each other.
                Some(Some(p)) if p.kind() != was.kind() => {
                    check.compared -= 1;
                    check.unknown.insert((year, tile));
                }
                Some(Some(p)) if p != was => {
                    check.changed.insert((year, tile));
                }
                Some(None) => {
                    check.gone.insert((year, tile));
                }
                _ => {}
            }
        }
    }
    Ok(check)
}
