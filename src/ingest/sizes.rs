//! The bytes a write of chosen tiles will read: each tile's size at its source, for the
//! console's selection and write confirmation.
//!
//! Invariants: costs follow the chosen tiles, never the cube — one listing per year on S3,
//! else a lookup per tile with bounded concurrency (as [`super::changed`] compares
//! sources); a tile the source does not hold is reported as such (`None`), not as zero bytes.

use std::collections::{BTreeMap, BTreeSet};

use crate::grid::TileName;
use crate::source::Source;

use super::changed::CheckError;

/// Each tile's size at the source now (`None`: not there).
pub async fn source_sizes(
    source: &Source,
    tiles: &BTreeSet<(i32, TileName)>,
) -> Result<BTreeMap<(i32, TileName), Option<u64>>, CheckError> {
    let mut by_year: BTreeMap<i32, Vec<TileName>> = BTreeMap::new();
    for &(year, tile) in tiles {
        by_year.entry(year).or_default().push(tile);
    }
    // The years are looked at together: their round trips overlap.
    let looked = futures::future::join_all(by_year.iter().map(|(&year, tiles)| async move {
        crate::source::provenance::look_up_year(source, year, tiles)
            .await
            .map(|found| (year, found))
            .map_err(|source| CheckError::Source { year, source })
    }))
    .await;
    let mut out = BTreeMap::new();
    for found in looked {
        let (year, found) = found?;
        for (tile, p) in found {
            out.insert((year, tile), p.map(|p| p.size));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_tiles_are_sized_and_a_missing_one_is_said_missing() {
        let dir = tempfile::tempdir().unwrap();
        let spec = crate::preset::Preset::glad().source;
        let source = Source::new(&dir.path().display().to_string(), &spec).unwrap();
        std::fs::create_dir_all(dir.path().join("2000")).unwrap();
        std::fs::write(dir.path().join("2000/10N_010E.tif"), vec![7u8; 1234]).unwrap();
        let here: TileName = "10N_010E".parse().unwrap();
        let gone: TileName = "20N_010E".parse().unwrap();
        let sizes = source_sizes(&source, &[(2000, here), (2000, gone)].into())
            .await
            .unwrap();
        assert_eq!(sizes.get(&(2000, here)), Some(&Some(1234)));
        assert_eq!(sizes.get(&(2000, gone)), Some(&None));
    }
}
