//! What a tile was read from: its source object's size and version — the ETag (or
//! generation) of an object in `s3://`, `gs://` or over HTTP, the modification time of a
//! local file — recorded by the commit that lands the tile, and looked up again to tell
//! which tiles' sources changed since they were written.
//!
//! Invariants: a provenance holds no credential and no signed URL (only a size and the
//! object's own version tag); its record is compact (`size/kind:value`, a few dozen bytes);
//! two provenances of one object are equal exactly when its size and version are.
//! Looking sources up costs one request per tile at most (a `stat` locally, a HEAD remotely,
//! with bounded concurrency), or one listing per year on S3.

use std::collections::BTreeMap;

use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::{Source, TileLocation};
use crate::fault::RemoteError;
use crate::grid::TileName;

/// A source object's size and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Provenance {
    pub size: u64,
    /// `etag:…`, `version:…` or `mtime:…` (nanoseconds since the epoch).
    pub version: String,
}

/// HEAD requests in flight at once when sources are looked up one by one.
const LOOKUPS: usize = 16;

impl Provenance {
    /// What kind of version this is: `etag`, `version` or `mtime` (only versions of one
    /// kind can be compared).
    pub fn kind(&self) -> &str {
        self.version.split(':').next().unwrap_or_default()
    }

    /// The record kept in a commit: `size/version`.
    pub fn to_record(&self) -> String {
        format!("{}/{}", self.size, self.version)
    }

    /// A record read back; `None` if it is not one.
    pub fn from_record(record: &str) -> Option<Self> {
        let (size, version) = record.split_once('/')?;
        Some(Self {
            size: size.parse().ok()?,
            version: version.to_string(),
        })
    }

    /// A local file's: its size and modification time.
    pub fn of_file(path: &std::path::Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        let mtime = meta
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(Self {
            size: meta.len(),
            version: format!("mtime:{mtime}"),
        })
    }

    /// An object's, from what its store says of it (a HEAD or a listing).
    pub fn of_meta(meta: &object_store::ObjectMeta) -> Self {
        let version = match (&meta.e_tag, &meta.version) {
            (Some(e), _) => format!("etag:{}", e.trim_matches('"')),
            (None, Some(v)) => format!("version:{v}"),
            (None, None) => format!(
                "mtime:{}",
                meta.last_modified
                    .timestamp_nanos_opt()
                    .unwrap_or(meta.last_modified.timestamp())
            ),
        };
        Self {
            size: meta.size,
            version,
        }
    }

    /// The provenance of the object at `location` now; `Ok(None)` if it is not there.
    pub async fn look_up(location: &TileLocation) -> Result<Option<Self>, RemoteError> {
        match location {
            TileLocation::Local(path) => {
                let at = path.clone();
                let found = tokio::task::spawn_blocking(move || Self::of_file(&at))
                    .await
                    .map_err(|e| RemoteError::Other {
                        url: path.display().to_string(),
                        message: e.to_string(),
                    })?;
                match found {
                    Ok(p) => Ok(Some(p)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(RemoteError::Other {
                        url: path.display().to_string(),
                        message: e.to_string(),
                    }),
                }
            }
            TileLocation::Object { url, .. } => {
                let (store, key) = super::remote::store_for(url, None)?;
                match store.head(&key).await {
                    Ok(meta) => Ok(Some(Self::of_meta(&meta))),
                    Err(e) => match crate::fault::classify_store_error(url, e) {
                        RemoteError::NotFound { .. } => Ok(None),
                        e => Err(e),
                    },
                }
            }
        }
    }
}

/// The provenance of the sources of `tiles` (of one year) now: each tile's, `None` for a
/// tile whose source is not there. An `s3://` source is listed once (its listing carries
/// sizes and ETags); other sources are looked up tile by tile, [`LOOKUPS`] at a time.
pub async fn look_up_year(
    source: &Source,
    year: i32,
    tiles: &[TileName],
) -> Result<BTreeMap<TileName, Option<Provenance>>, RemoteError> {
    let mut out = BTreeMap::new();
    let locations: Vec<(TileName, TileLocation)> =
        tiles.iter().map(|&t| (t, source.tile(year, t))).collect();
    let listed = match locations.first() {
        Some((_, TileLocation::Object { url, .. })) if url.starts_with("s3://") => {
            let dir = url.rsplit_once('/').map(|(d, _)| d).unwrap_or(url);
            Some(list_s3(dir).await?)
        }
        _ => None,
    };
    if let Some(listed) = listed {
        for (tile, location) in locations {
            let found = match &location {
                TileLocation::Object { url, .. } => listed.get(url).cloned(),
                TileLocation::Local(_) => None,
            };
            out.insert(tile, found);
        }
        return Ok(out);
    }
    let mut looked = futures::stream::iter(locations)
        .map(|(tile, location)| async move { (tile, Provenance::look_up(&location).await) })
        .buffer_unordered(LOOKUPS);
    while let Some((tile, found)) = looked.next().await {
        out.insert(tile, found?);
    }
    Ok(out)
}

/// Every object under an `s3://` prefix, by URL, with its provenance: one listing.
async fn list_s3(dir: &str) -> Result<BTreeMap<String, Provenance>, RemoteError> {
    let probe = format!("{dir}/_");
    let (store, key) = super::remote::store_for(&probe, None)?;
    let prefix = object_store::path::Path::from(
        key.as_ref()
            .rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or_default(),
    );
    let mut out = BTreeMap::new();
    let mut listing = store.list(Some(&prefix));
    while let Some(item) = listing.next().await {
        let meta = item.map_err(|e| crate::fault::classify_store_error(dir, e))?;
        let name = meta.location.filename().unwrap_or_default();
        out.insert(format!("{dir}/{name}"), Provenance::of_meta(&meta));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_hold_no_more_than_size_and_version() {
        let p = Provenance {
            size: 1_600_000_000,
            version: "etag:9b2cf535f27731c974343645a3985328".into(),
        };
        let r = p.to_record();
        assert_eq!(r, "1600000000/etag:9b2cf535f27731c974343645a3985328");
        assert_eq!(Provenance::from_record(&r), Some(p));
        assert_eq!(Provenance::from_record("garbage"), None);
    }

    #[test]
    fn a_local_files_provenance_changes_when_it_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.tif");
        std::fs::write(&f, b"one").unwrap();
        let a = Provenance::of_file(&f).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"two").unwrap();
        let b = Provenance::of_file(&f).unwrap();
        assert_eq!(a.size, b.size);
        assert_ne!(a, b, "same size, other mtime");
    }
}
