//! Where one tile's bytes are: a local file or an object behind a URL, typed from the moment a
//! source names the tile (or a plan's record is checked against its source) to the moment the
//! tile is opened.
//!
//! Invariants: a local location is absolute; an object location is a `gs://`, `s3://`,
//! `http://` or `https://` URL whose store is known from its scheme. The text form of a location
//! ([`TileLocation::gdal_path`], also its `Display`) is what plans record and errors name, and
//! [`TileLocation::from_gdal_path`] reads it back exactly.

use std::fmt;
use std::path::{Path, PathBuf};

/// The store an object location is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Store {
    /// Google Cloud Storage (`gs://`).
    Gcs,
    /// S3 or an S3-compatible service (`s3://`).
    S3,
    /// Plain HTTP(S), GCS-style public buckets included.
    Http,
}

impl Store {
    /// The store of a URL, by its scheme.
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("gs://") {
            Some(Self::Gcs)
        } else if url.starts_with("s3://") {
            Some(Self::S3)
        } else if url.starts_with("http://") || url.starts_with("https://") {
            Some(Self::Http)
        } else {
            None
        }
    }
}

/// Where one tile is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TileLocation {
    /// An absolute path on this machine.
    Local(PathBuf),
    /// An object: its URL and the store it lives in.
    Object { store: Store, url: String },
}

impl TileLocation {
    /// A location as a user or a template writes it: a URL, or a path (made absolute against
    /// the working directory). `None` for another kind of URL.
    pub fn parse(location: &str) -> Option<Self> {
        if let Some(store) = Store::of_url(location) {
            return Some(Self::Object {
                store,
                url: location.to_string(),
            });
        }
        if location.contains("://") || location.is_empty() {
            return None;
        }
        Some(Self::Local(absolute_path(Path::new(location))))
    }

    /// A location from the path GDAL opens (as plans record it). A relative local path is
    /// refused: a recorded location never depends on where it is read.
    pub fn from_gdal_path(path: &str) -> Option<Self> {
        let object = |store, url: String| Some(Self::Object { store, url });
        if let Some(rest) = path.strip_prefix("/vsicurl/") {
            (rest.starts_with("http://") || rest.starts_with("https://"))
                .then(|| rest.to_string())
                .and_then(|url| object(Store::Http, url))
        } else if let Some(rest) = path.strip_prefix("/vsis3/") {
            object(Store::S3, format!("s3://{rest}"))
        } else if let Some(rest) = path.strip_prefix("/vsigs/") {
            object(Store::Gcs, format!("gs://{rest}"))
        } else if path.starts_with("/vsi") || !path.starts_with('/') {
            None
        } else {
            Some(Self::Local(PathBuf::from(path)))
        }
    }

    /// The path GDAL opens through its own file systems.
    pub fn gdal_path(&self) -> String {
        match self {
            Self::Local(p) => p.display().to_string(),
            Self::Object { store, url } => match store {
                Store::Gcs => format!("/vsigs/{}", &url["gs://".len()..]),
                Store::S3 => format!("/vsis3/{}", &url["s3://".len()..]),
                Store::Http => format!("/vsicurl/{url}"),
            },
        }
    }

    /// The object's URL, for an object.
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Local(_) => None,
            Self::Object { url, .. } => Some(url),
        }
    }

    /// Whether the bytes come over the network.
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Object { .. })
    }
}

/// `path` made absolute against the working directory, with its `.` and `..` steps taken
/// out by name (as `filepath.Clean` does): what is recorded for other processes, started in
/// other directories, must not depend on the directory it was made from.
pub fn absolute_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            // Above the root is the root, as the file system has it.
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    // `pop` never removes the root, so an absolute path stays absolute.
    out
}

impl fmt::Display for TileLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.gdal_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdal_paths_read_back_exactly() {
        for (written, gdal) in [
            ("gs://b/2000/x.tif", "/vsigs/b/2000/x.tif"),
            ("s3://b/k/x.tif", "/vsis3/b/k/x.tif"),
            ("https://h/x/2020/t.tif", "/vsicurl/https://h/x/2020/t.tif"),
            ("http://h:8080/t.tif", "/vsicurl/http://h:8080/t.tif"),
            ("/data/glad/2020/t.tif", "/data/glad/2020/t.tif"),
        ] {
            let l = TileLocation::parse(written).unwrap();
            assert_eq!(l.gdal_path(), gdal);
            assert_eq!(TileLocation::from_gdal_path(gdal), Some(l.clone()));
            assert_eq!(l.is_remote(), l.url().is_some());
        }
        // This directory, as `std::path::absolute` takes a relative path from it.
        let here = std::path::absolute(Path::new("x")).unwrap();
        let here = here.parent().unwrap();
        assert_eq!(
            absolute_path(Path::new("a/./b/../../c/t.tif")),
            here.join("c/t.tif")
        );
        assert_eq!(absolute_path(Path::new("/x/../../y")), PathBuf::from("/y"));
        let rel = TileLocation::parse("rel/t.tif").unwrap();
        assert!(rel.gdal_path().starts_with('/') && rel.gdal_path().ends_with("/rel/t.tif"));
        for refused in ["rel/t.tif", "/vsizip/a.zip", "/vsicurl/ftp://h/t.tif", ""] {
            assert_eq!(TileLocation::from_gdal_path(refused), None, "{refused}");
        }
        assert_eq!(TileLocation::parse("ftp://h/t.tif"), None);
    }
}
