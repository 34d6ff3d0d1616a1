//! Tiles changed upstream: the written tiles whose source is no longer what they were read
//! from (a publisher re-issued them), found by comparing what each tile's last write
//! recorded ([`crate::source::Provenance`]) with the source now.
//!
//! Invariants: costs follow the tiles, not the chunks — the snapshot's coverage (whose
//! recorded sources are cached with it by snapshot id, so no history is read again) and one
//! listing per year on S3, else a lookup per tile with bounded concurrency; a tile whose last write recorded no source (written before provenance was
//! recorded, or carried by an expiry) is "source unknown", never changed, and so is one read
//! from another kind of source than the one configured now (an ETag then, a file's time
//! now); a tile whose source is gone is not changed either (it is reported apart); a local
//! file whose size is the same and whose time moved is changed only if its bytes' digest
//! differs from the one its write recorded (a copy is not a change), and so is a remote
//! object of the same size whose ETag or version moved (a re-upload of the same bytes is not
//! a change: it is read whole, once); digests kept by [`DigestCache`] so each such source is
//! read once.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::cube::{Coverage, TileState};
use crate::fault::RemoteError;
use crate::grid::TileName;
use crate::source::{DigestCache, Provenance, Source, TileLocation};

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
    #[error("looking at the source of year {year}: {source}")]
    Source {
        year: i32,
        #[source]
        source: RemoteError,
    },
}

/// Compare the sources of the tiles of `years` a snapshot holds (its `coverage`, whose
/// recorded sources come with it from the coverage cache) with what their writes recorded.
pub async fn check_sources(
    coverage: &Coverage,
    source: &Source,
    years: &[i32],
    digests: &DigestCache,
) -> Result<SourceCheck, CheckError> {
    // Local files of the same size whose time moved, with the digest their write recorded:
    // decided by their bytes below.
    let mut by_content: Vec<((i32, TileName), std::path::PathBuf, Provenance, String)> = Vec::new();
    // Remote objects likewise (their ETag or version moved): read whole below.
    let mut by_object: Vec<((i32, TileName), String, Provenance, String)> = Vec::new();
    let mut check = SourceCheck::default();
    let mut asked: Vec<(i32, Vec<(TileName, Provenance)>)> = Vec::new();
    for &year in years {
        let of_year: Vec<(TileName, Provenance)> = coverage
            .tiles
            .iter()
            .filter(|((y, _), state)| *y == year && !matches!(state, TileState::Unrecorded { .. }))
            .filter_map(|(&(_, t), _)| {
                match coverage
                    .sources
                    .get(&(year, t))
                    .and_then(|r| Provenance::from_record(r))
                {
                    Some(p) => Some((t, p)),
                    None => {
                        check.unknown.insert((year, t));
                        None
                    }
                }
            })
            .collect();
        if !of_year.is_empty() {
            asked.push((year, of_year));
        }
    }
    // The years are looked at together: their listings' round trips overlap.
    let looked = futures::future::join_all(asked.iter().map(|(year, of_year)| async move {
        let tiles: Vec<TileName> = of_year.iter().map(|(t, _)| *t).collect();
        crate::source::provenance::look_up_year(source, *year, &tiles)
            .await
            .map_err(|source| CheckError::Source {
                year: *year,
                source,
            })
    }))
    .await;
    for ((year, of_year), now) in asked.into_iter().zip(looked) {
        let now = now?;
        for (tile, was) in of_year {
            check.compared += 1;
            match now.get(&tile) {
                // Read from another kind of source than now configured (an HTTP mirror then,
                // a local copy now): the two say nothing of each other.
                Some(Some(p)) if p.kind() != was.kind() => {
                    check.compared -= 1;
                    check.unknown.insert((year, tile));
                }
                Some(Some(p)) if !p.same_as(&was) => match (&was.digest, source.tile(year, tile)) {
                    (Some(d), TileLocation::Local(path)) if p.size == was.size => {
                        by_content.push(((year, tile), path, p.clone(), d.clone()));
                    }
                    (Some(d), TileLocation::Object { url, .. }) if p.size == was.size => {
                        by_object.push(((year, tile), url, p.clone(), d.clone()));
                    }
                    _ => {
                        check.changed.insert((year, tile));
                    }
                },
                Some(None) => {
                    check.gone.insert((year, tile));
                }
                _ => {}
            }
        }
    }
    if !by_content.is_empty() {
        let files: Vec<(std::path::PathBuf, Provenance)> = by_content
            .iter()
            .map(|(_, path, now, _)| (path.clone(), now.clone()))
            .collect();
        let cache = digests.clone();
        let now = tokio::task::spawn_blocking(move || cache.digests(&files))
            .await
            .unwrap_or_default();
        for (key, path, _, was) in by_content {
            if now.get(&path) != Some(&was) {
                check.changed.insert(key);
            }
        }
    }
    if !by_object.is_empty() {
        let objects: Vec<(String, Provenance)> = by_object
            .iter()
            .map(|(_, url, now, _)| (url.clone(), now.clone()))
            .collect();
        let now = digests.object_digests(&objects, source.storage()).await;
        for (key, url, _, was) in by_object {
            if now.get(&url) != Some(&was) {
                check.changed.insert(key);
            }
        }
    }
    Ok(check)
}
