//! What a tile was read from: its source object's size and version — the ETag (or
//! generation) of an object in `s3://`, `gs://` or over HTTP, the modification time of a
//! local file — recorded by the commit that lands the tile, and looked up again to tell
//! which tiles' sources changed since they were written.
//!
//! Invariants: a provenance holds no credential and no signed URL (only a size and the
//! object's own version tag); its record is compact (`size/kind:value`, a few dozen bytes);
//! two provenances of one object are equal exactly when its size and version are. A local
//! file's record also carries a digest of its bytes (CRC-64, taken after its write read it,
//! from the page cache): a file whose time moved but whose size and bytes did not (a copy
//! without `-p`) is not a change; one whose bytes moved is, whatever its size. Digests taken
//! to compare are kept by path, size and time ([`DigestCache`]), so a file is read once.
//! Looking sources up costs one request per tile at most (a `stat` locally, a HEAD remotely,
//! with bounded concurrency), or one listing per year on S3.

use std::collections::BTreeMap;

use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt as _};

use super::{Source, TileLocation};
use crate::fault::RemoteError;
use crate::grid::TileName;
use crate::storage_settings::StorageSettings;

/// A source object's size and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Provenance {
    pub size: u64,
    /// `etag:…`, `version:…` or `mtime:…` (nanoseconds since the epoch).
    pub version: String,
    /// `crc64:…` of a local file's bytes, when its write took one.
    pub digest: Option<String>,
}

/// HEAD requests in flight at once when sources are looked up one by one.
const LOOKUPS: usize = 16;

impl Provenance {
    /// What kind of version this is: `etag`, `version` or `mtime` (only versions of one
    /// kind can be compared).
    pub fn kind(&self) -> &str {
        self.version.split(':').next().unwrap_or_default()
    }

    /// The record kept in a commit: `size/version`, and `#digest` when there is one.
    pub fn to_record(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}/{}#{d}", self.size, self.version),
            None => format!("{}/{}", self.size, self.version),
        }
    }

    /// A record read back; `None` if it is not one.
    pub fn from_record(record: &str) -> Option<Self> {
        let (record, digest) = match record.split_once('#') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (record, None),
        };
        let (size, version) = record.split_once('/')?;
        Some(Self {
            size: size.parse().ok()?,
            version: version.to_string(),
            digest,
        })
    }

    /// Whether the object is as it was: the same size and version (the digest aside).
    pub fn same_as(&self, other: &Self) -> bool {
        self.size == other.size && self.version == other.version
    }

    /// The digest of a local file's bytes (`crc64:…`, CRC-64/NVME).
    pub fn digest_of_file(path: &std::path::Path) -> std::io::Result<String> {
        let text = path.to_str().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8")
        })?;
        let crc = crc_fast::checksum_file(crc_fast::CrcAlgorithm::Crc64Nvme, text, None)?;
        Ok(super::digest::text(crc))
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
            digest: None,
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
            digest: None,
        }
    }

    /// The provenance of the object at `location` now, reached as `storage` says; `Ok(None)`
    /// if it is not there.
    pub async fn look_up(
        location: &TileLocation,
        storage: &StorageSettings,
    ) -> Result<Option<Self>, RemoteError> {
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
                let (store, key) = super::remote::store_for(url, storage, None)?;
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

/// Digests of sources taken to compare them — local files by path, size and time, remote
/// objects by URL, size and version (a JSON file under the user cache dir) — so a copied or
/// re-uploaded source is read once, not at every `status`.
#[derive(Debug, Clone)]
pub struct DigestCache {
    file: Option<std::path::PathBuf>,
}

impl DigestCache {
    /// The cache in `file`.
    pub fn at(file: std::path::PathBuf) -> Self {
        Self { file: Some(file) }
    }

    /// A cache that keeps nothing.
    pub fn disabled() -> Self {
        Self { file: None }
    }

    fn load(&self) -> BTreeMap<String, String> {
        self.file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The digest of each local file of `files` (path with its provenance now), from the
    /// cache or read; a file that cannot be read has none.
    pub fn digests(
        &self,
        files: &[(std::path::PathBuf, Provenance)],
    ) -> BTreeMap<std::path::PathBuf, String> {
        let mut kept = self.load();
        let mut out = BTreeMap::new();
        let mut added = false;
        for (path, now) in files {
            let key = format!("{}|{}|{}", path.display(), now.size, now.version);
            let digest = match kept.get(&key) {
                Some(d) => Some(d.clone()),
                None => Provenance::digest_of_file(path).ok().inspect(|d| {
                    kept.insert(key, d.clone());
                    added = true;
                }),
            };
            if let Some(d) = digest {
                out.insert(path.clone(), d);
            }
        }
        if added {
            self.save(&kept);
        }
        out
    }

    /// The digest of each remote object of `objects` (URL with its provenance now), from the
    /// cache or read whole (a few at a time, in bounded parts); one that cannot be read has
    /// none.
    pub async fn object_digests(
        &self,
        objects: &[(String, Provenance)],
        storage: &crate::storage_settings::StorageSettings,
    ) -> BTreeMap<String, String> {
        let mut kept = self.load();
        let key = |url: &str, now: &Provenance| format!("{url}|{}|{}", now.size, now.version);
        let to_read: Vec<(String, Provenance)> = objects
            .iter()
            .filter(|(url, now)| !kept.contains_key(&key(url, now)))
            .cloned()
            .collect();
        let mut read: Vec<(String, Option<String>)> = vec![];
        for batch in to_read.chunks(4) {
            read.extend(
                futures::future::join_all(batch.iter().map(|(url, now)| async move {
                    let digest = match super::remote::store_for(url, storage, None) {
                        Ok((store, path)) => super::digest::digest_of_object(
                            store.as_ref(),
                            &path,
                            now.size,
                            &super::digest::Pieces::default(),
                            now.version.strip_prefix("etag:"),
                        )
                        .await
                        .ok(),
                        Err(_) => None,
                    };
                    (key(url, now), digest)
                }))
                .await,
            );
        }
        let mut added = false;
        for (k, d) in read {
            if let Some(d) = d {
                kept.insert(k, d);
                added = true;
            }
        }
        let out = objects
            .iter()
            .filter_map(|(url, now)| kept.get(&key(url, now)).map(|d| (url.clone(), d.clone())))
            .collect();
        if added {
            self.save(&kept);
        }
        out
    }

    fn save(&self, kept: &BTreeMap<String, String>) {
        if let Some(file) = &self.file {
            if let Some(dir) = file.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let tmp = file.with_extension(format!("{}.tmp", std::process::id()));
            if let Ok(bytes) = serde_json::to_vec(kept)
                && std::fs::write(&tmp, bytes).is_ok()
                && std::fs::rename(&tmp, file).is_err()
            {
                let _ = std::fs::remove_file(&tmp);
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
            Some(list_s3(dir, source.storage()).await?)
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
        .map(|(tile, location)| async move {
            (tile, Provenance::look_up(&location, source.storage()).await)
        })
        .buffer_unordered(LOOKUPS);
    while let Some((tile, found)) = looked.next().await {
        out.insert(tile, found?);
    }
    Ok(out)
}

/// Every object under an `s3://` prefix, by URL, with its provenance: one listing.
async fn list_s3(
    dir: &str,
    storage: &StorageSettings,
) -> Result<BTreeMap<String, Provenance>, RemoteError> {
    let probe = format!("{dir}/_");
    let (store, key) = super::remote::store_for(&probe, storage, None)?;
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
            digest: None,
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
        assert!(!a.same_as(&b));
    }

    #[test]
    fn a_digest_rides_in_the_record_and_tells_bytes_apart_whatever_the_time() {
        let dir = tempfile::tempdir().unwrap();
        let (f, g) = (dir.path().join("t.tif"), dir.path().join("u.tif"));
        std::fs::write(&f, b"one").unwrap();
        std::fs::copy(&f, &g).unwrap();
        let d = Provenance::digest_of_file(&f).unwrap();
        assert!(d.starts_with("crc64:"), "{d}");
        assert_eq!(Provenance::digest_of_file(&g).unwrap(), d);
        std::fs::write(&g, b"two").unwrap();
        assert_ne!(Provenance::digest_of_file(&g).unwrap(), d);
        let mut p = Provenance::of_file(&f).unwrap();
        p.digest = Some(d);
        assert_eq!(Provenance::from_record(&p.to_record()), Some(p.clone()));
        // Kept: a file read once.
        let cache = DigestCache::at(dir.path().join("cache").join("digests.json"));
        let now = Provenance::of_file(&f).unwrap();
        let first = cache.digests(&[(f.clone(), now.clone())]);
        assert_eq!(first.get(&f), p.digest.as_ref());
        assert!(dir.path().join("cache").join("digests.json").exists());
    }
}
