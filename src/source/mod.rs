//! Sources: where tiles and tile lists live, reading lists, and opening tiles through GDAL.
//!
//! A source root is a local directory or a `gs://`, `s3://` or `https://` URL. A remote tile
//! is decoded by GDAL from `/vsitilecube/` ([`fetch`]), whose bytes `object_store` fetches
//! ahead of the decoder; with read-ahead off, through GDAL's own network file systems
//! (`/vsigs/`, `/vsis3/`, `/vsicurl/`). Tile lists are small and are fetched with
//! `object_store`. How remote ones are reached is the [`StorageSettings`] a source is given
//! ([`Source::with_storage`]); every remote read below takes them from there.

pub mod digest;
pub mod fetch;
mod gdal;
mod list;
mod location;
mod open;
pub mod provenance;
pub mod remote;
mod tile;

use std::path::PathBuf;

pub use gdal::{gdal_s3_options, gdal_setup};
pub use list::{FileName, ListProblem, TileList};
pub use location::{Store, TileLocation, absolute_path};
pub use open::{OpenTile, ReadAheadOptions};
pub use provenance::{DigestCache, Provenance};
pub use remote::RemoteError;
pub use tile::{TileError, TileReader, crs_wkt};

use std::sync::Arc;

use crate::grid::{Grid, TileName};
use crate::preset::SourceSpec;
use crate::storage_settings::StorageSettings;

/// Errors reading a source's tile lists.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("tile list {path} for {year}")]
    ListRead {
        year: i32,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tile list {path} for {year}")]
    ListFetch {
        year: i32,
        path: String,
        #[source]
        source: RemoteError,
    },
    #[error("source {0:?}: unsupported location; use a directory, gs://, s3:// or https://")]
    Location(String),
    /// A source URL carrying a credential (a user and password, a signed query): refused, as
    /// it would be printed in messages and stored in records.
    #[error(
        "source {shown}: the URL carries a credential ({what}); tilecube never prints or stores one, so it does not take it in the URL: give credentials through the environment (AWS_*, GDAL's, or a netrc) and the plain URL here"
    )]
    CredentialInUrl { shown: String, what: &'static str },
    #[error("no tile list for {year}: {path} is not there")]
    NoList { year: i32, path: String },
    #[error("source directory {0} is not there")]
    NoRoot(String),
}

/// A source root with its layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub root: SourceRoot,
    pub tile_template: String,
    pub list_template: String,
    /// Named parts of the templates by year (`{version}`: `2020` → `v100`).
    parts: crate::preset::Parts,
    /// How its remote tiles and lists are reached (empty settings until
    /// [`Source::with_storage`]: no endpoint, region or no-sign from the environment).
    storage: Arc<StorageSettings>,
}

/// Where a source lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRoot {
    Local(PathBuf),
    /// A URL: `gs://`, `s3://`, `http://` or `https://`, without a trailing slash.
    Remote(String),
}

impl Source {
    /// A source at `root` with the preset's layout.
    pub fn new(root: &str, spec: &SourceSpec) -> Result<Self, SourceError> {
        let root = if ["gs://", "s3://", "http://", "https://"]
            .iter()
            .any(|s| root.starts_with(s))
        {
            let (scheme, rest) = root.split_once("://").unwrap_or(("", root));
            let host = rest.split(['/', '?']).next().unwrap_or_default();
            let query = rest.split_once('?').map(|(_, q)| q.to_ascii_lowercase());
            let what = if host.contains('@') {
                Some("a user and password before the host")
            } else if query.as_deref().is_some_and(|q| {
                ["signature", "x-amz-credential", "sig=", "token", "key="]
                    .iter()
                    .any(|k| q.contains(k))
            }) {
                Some("a signed or keyed query")
            } else {
                None
            };
            if let Some(what) = what {
                let host = host.rsplit('@').next().unwrap_or_default();
                let path = rest[rest.find('/').unwrap_or(rest.len())..]
                    .split('?')
                    .next()
                    .unwrap_or_default();
                return Err(SourceError::CredentialInUrl {
                    shown: format!("{scheme}://…@{host}{path}"),
                    what,
                });
            }
            SourceRoot::Remote(root.trim_end_matches('/').to_string())
        } else if root.contains("://") || root.is_empty() {
            return Err(SourceError::Location(root.to_string()));
        } else {
            // Resolved once, against the directory this process started in: every path
            // made from it (plans, runs, tasks started elsewhere) is absolute.
            SourceRoot::Local(location::absolute_path(std::path::Path::new(root)))
        };
        Ok(Self {
            root,
            tile_template: spec.tile.clone(),
            // A preset without lists is refused before a source is made (Preset::supported).
            list_template: spec.list.clone().unwrap_or_default(),
            parts: spec.parts.clone(),
            storage: Arc::default(),
        })
    }

    /// The same source, its remote tiles and lists reached as `storage` says.
    pub fn with_storage(mut self, storage: Arc<StorageSettings>) -> Self {
        self.storage = storage;
        self
    }

    /// How the source's remote tiles and lists are reached.
    pub fn storage(&self) -> &Arc<StorageSettings> {
        &self.storage
    }

    fn fill(&self, template: &str, year: i32, tile: Option<TileName>) -> String {
        let s = crate::preset::fill_year(template, year, &self.parts);
        match tile {
            Some(t) => s.replace("{tile}", &t.to_string()),
            None => s,
        }
    }

    /// Where a tile is, as the user would write it.
    pub fn tile_location(&self, year: i32, tile: TileName) -> String {
        let rel = self.fill(&self.tile_template, year, Some(tile));
        match &self.root {
            SourceRoot::Local(dir) => dir.join(rel).display().to_string(),
            SourceRoot::Remote(url) => format!("{url}/{rel}"),
        }
    }

    /// Where a tile is, typed: what a plan records and the reader opens.
    pub fn tile(&self, year: i32, tile: TileName) -> TileLocation {
        let rel = self.fill(&self.tile_template, year, Some(tile));
        match &self.root {
            SourceRoot::Local(dir) => TileLocation::Local(dir.join(rel)),
            SourceRoot::Remote(url) => TileLocation::Object {
                // A remote root's scheme was checked when the source was made.
                store: Store::of_url(url).unwrap_or(Store::Http),
                url: format!("{url}/{rel}"),
            },
        }
    }

    /// The path GDAL opens for a tile.
    pub fn gdal_path(&self, year: i32, tile: TileName) -> String {
        self.tile(year, tile).gdal_path()
    }

    /// Whether `location` lies under this source's root: below the root, with no empty or
    /// `..` step out of it.
    pub fn holds(&self, location: &TileLocation) -> bool {
        let (root, path) = match (&self.root, location) {
            (SourceRoot::Local(dir), TileLocation::Local(p)) => {
                (dir.display().to_string(), p.display().to_string())
            }
            (SourceRoot::Remote(root), TileLocation::Object { url, .. }) => {
                (root.clone(), url.clone())
            }
            _ => return false,
        };
        path.strip_prefix(root.trim_end_matches('/'))
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| {
                !rest.is_empty() && rest.split('/').all(|c| !c.is_empty() && c != "..")
            })
    }

    /// The location a plan recorded (the path GDAL opens), if it lies under this source.
    pub fn locate(&self, recorded: &str) -> Option<TileLocation> {
        TileLocation::from_gdal_path(recorded).filter(|l| self.holds(l))
    }

    /// Where a year's tile list is.
    pub fn list_location(&self, year: i32) -> String {
        let rel = self.fill(&self.list_template, year, None);
        match &self.root {
            SourceRoot::Local(dir) => dir.join(rel).display().to_string(),
            SourceRoot::Remote(url) => format!("{url}/{rel}"),
        }
    }

    /// Read and parse a year's tile list. A list that is not there is an error naming it
    /// ([`SourceError::NoList`]), and so is a local source directory that is not there.
    pub async fn tile_list(&self, year: i32, grid: &Grid) -> Result<TileList, SourceError> {
        let location = self.list_location(year);
        if let SourceRoot::Local(dir) = &self.root
            && !tokio::fs::try_exists(dir).await.unwrap_or(false)
        {
            return Err(SourceError::NoRoot(dir.display().to_string()));
        }
        let text = match &self.root {
            SourceRoot::Local(_) => match tokio::fs::read(&location).await {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(SourceError::NoList {
                        year,
                        path: location,
                    });
                }
                Err(source) => {
                    return Err(SourceError::ListRead {
                        year,
                        path: location,
                        source,
                    });
                }
            },
            SourceRoot::Remote(_) => match remote::fetch(&location, &self.storage).await {
                Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                Ok(None) => {
                    return Err(SourceError::NoList {
                        year,
                        path: location,
                    });
                }
                Err(source) => {
                    return Err(SourceError::ListFetch {
                        year,
                        path: location,
                        source,
                    });
                }
            },
        };
        let spelled = FileName::of_template(&self.fill(&self.tile_template, year, None));
        Ok(TileList::parse(&text, grid, &spelled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_url_with_a_credential_is_refused_without_saying_it() {
        let spec = crate::preset::Preset::glad().source;
        for url in [
            "http://user:s3cretPW@127.0.0.1:8765/glad",
            "https://example.org/glad?X-Amz-Signature=s3cretPW&x=1",
        ] {
            let e = Source::new(url, &spec).unwrap_err().to_string();
            assert!(e.contains("carries a credential"), "{e}");
            assert!(!e.contains("s3cretPW"), "{e}");
        }
        assert!(Source::new("https://storage.googleapis.com/glad", &spec).is_ok());
    }
    use crate::preset::Preset;

    #[test]
    fn locations_follow_the_preset_layout() {
        let spec = Preset::glad().source;
        let t: TileName = "70N_180W".parse().unwrap();
        let s = Source::new("gs://earthenginepartners-hansen/GLCLU2000-2020/v2/", &spec).unwrap();
        assert_eq!(
            s.gdal_path(2000, t),
            "/vsigs/earthenginepartners-hansen/GLCLU2000-2020/v2/2000/70N_180W.tif"
        );
        assert_eq!(
            s.list_location(2005),
            "gs://earthenginepartners-hansen/GLCLU2000-2020/v2/2005.txt"
        );
        let s = Source::new("/data/glad", &spec).unwrap();
        assert_eq!(s.gdal_path(2020, t), "/data/glad/2020/70N_180W.tif");
        assert!(s.locate("/data/glad/2020/70N_180W.tif").is_some());
        for outside in [
            "s4/2000/80N_160W.tif",
            "/data/glad2/2020/70N_180W.tif",
            "/data/glad/../etc/x.tif",
            "/data/glad/",
            "/vsicurl/https://host/x/2020/70N_180W.tif",
        ] {
            assert!(s.locate(outside).is_none(), "{outside}");
        }
        let rel = Source::new("rel/glad", &spec).unwrap();
        let p = rel.gdal_path(2020, t);
        assert!(
            p.starts_with('/') && p.ends_with("/rel/glad/2020/70N_180W.tif"),
            "{p}"
        );
        assert!(rel.locate(&p).is_some());
        let s = Source::new("https://host/x", &spec).unwrap();
        assert_eq!(
            s.gdal_path(2020, t),
            "/vsicurl/https://host/x/2020/70N_180W.tif"
        );
        assert!(
            s.locate("/vsicurl/https://host/x/2020/70N_180W.tif")
                .is_some()
        );
        assert!(
            s.locate("/vsicurl/https://host/xy/2020/70N_180W.tif")
                .is_none()
        );
        assert!(s.locate("/vsis3/host/x/2020/70N_180W.tif").is_none());
        assert!(Source::new("ftp://x", &spec).is_err());
    }
}
