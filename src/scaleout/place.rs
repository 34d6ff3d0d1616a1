//! Places: where a plan, its shards' progress records and their staged sessions live — a
//! local directory (shared by the nodes, e.g. NFS) or an object-store prefix (`s3://`,
//! `gs://`), read and written as whole small objects.
//!
//! Invariants: every write replaces an object whole (a temporary file renamed into place on
//! a directory, a single PUT on an object store), so a reader sees the old object or the new
//! one, never half of one; errors name the object's address; an object store is reached as
//! the [`StorageSettings`] handed down say, its credentials read by the store's client from
//! the environment (`AWS_*`, Google's application default credentials), never part of an
//! address.

use std::path::PathBuf;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::ScaleError;
use crate::fault::classify_store_error;
use crate::source::remote::store_for;
use crate::storage_settings::StorageSettings;

/// A directory or object-store prefix holding named objects.
pub enum Place {
    Local(PathBuf),
    Remote {
        url: String,
        store: Box<dyn ObjectStore>,
        prefix: StorePath,
    },
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::Remote { url, .. } => write!(f, "{url}"),
        }
    }
}

impl Place {
    /// A place from a path or an `s3://` / `gs://` URL, reached as `storage` says.
    pub fn parse(text: &str, storage: &StorageSettings) -> Result<Self, ScaleError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ScaleError::EmptyLocation);
        }
        if text.starts_with("s3://") || text.starts_with("gs://") {
            let url = text.trim_end_matches('/').to_string();
            let (store, prefix) = store_for(&url, storage, None)?;
            return Ok(Self::Remote { url, store, prefix });
        }
        if text.contains("://") {
            return Err(ScaleError::NotALocation { text: text.into() });
        }
        Ok(Self::Local(PathBuf::from(text)))
    }

    /// Whether this place is a path on this machine's file system.
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local(_))
    }

    /// The address of an object of this place, for messages.
    pub fn address(&self, name: &str) -> String {
        match self {
            Self::Local(p) => p.join(name).display().to_string(),
            Self::Remote { url, .. } => format!("{url}/{name}"),
        }
    }

    fn key(&self, name: &str) -> StorePath {
        match self {
            Self::Remote { prefix, .. } => {
                let mut parts: Vec<String> =
                    prefix.parts().map(|p| p.as_ref().to_string()).collect();
                parts.extend(
                    name.split('/')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
                StorePath::from(parts.join("/"))
            }
            Self::Local(_) => StorePath::from(name),
        }
    }

    /// An object's bytes; `None` when it is not there.
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>, ScaleError> {
        match self {
            Self::Local(dir) => {
                let path = dir.join(name);
                match tokio::fs::read(&path).await {
                    Ok(b) => Ok(Some(Bytes::from(b))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(ScaleError::io(&path, e)),
                }
            }
            Self::Remote { store, .. } => {
                let key = self.key(name);
                let got = match store.get(&key).await {
                    Ok(r) => r.bytes().await,
                    Err(e) => Err(e),
                };
                match got {
                    Ok(b) => Ok(Some(b)),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(classify_store_error(&self.address(name), e).into()),
                }
            }
        }
    }

    /// Write an object whole, replacing any earlier one.
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<(), ScaleError> {
        match self {
            Self::Local(dir) => {
                let path = dir.join(name);
                let parent = path
                    .parent()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| dir.clone());
                tokio::fs::create_dir_all(&parent)
                    .await
                    .map_err(|e| ScaleError::io(&parent, e))?;
                let file = path
                    .file_name()
                    .map(|f| f.to_string_lossy().to_string())
                    .unwrap_or_default();
                let tmp = parent.join(format!(".{file}.{}.tmp", std::process::id()));
                tokio::fs::write(&tmp, &bytes)
                    .await
                    .map_err(|e| ScaleError::io(&tmp, e))?;
                tokio::fs::rename(&tmp, &path)
                    .await
                    .map_err(|e| ScaleError::io(&path, e))
            }
            Self::Remote { store, .. } => store
                .put(&self.key(name), PutPayload::from_bytes(bytes))
                .await
                .map(|_| ())
                .map_err(|e| classify_store_error(&self.address(name), e).into()),
        }
    }

    /// Remove an object; one that is not there is no error.
    pub async fn delete(&self, name: &str) -> Result<(), ScaleError> {
        match self {
            Self::Local(dir) => match tokio::fs::remove_file(dir.join(name)).await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(ScaleError::io(&dir.join(name), e)),
            },
            Self::Remote { store, .. } => match store.delete(&self.key(name)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(classify_store_error(&self.address(name), e).into()),
            },
        }
    }

    /// Names (relative to `dir` of this place) of the objects directly or deeper under
    /// `dir`; empty when there is none.
    pub async fn list(&self, dir: &str) -> Result<Vec<String>, ScaleError> {
        match self {
            Self::Local(root) => {
                let base = root.join(dir);
                let mut out = Vec::new();
                let mut stack = vec![base.clone()];
                while let Some(d) = stack.pop() {
                    let mut entries = match tokio::fs::read_dir(&d).await {
                        Ok(e) => e,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(ScaleError::io(&d, e)),
                    };
                    while let Some(entry) = entries
                        .next_entry()
                        .await
                        .map_err(|e| ScaleError::io(&d, e))?
                    {
                        let path = entry.path();
                        if path.is_dir() {
                            stack.push(path);
                        } else if let Ok(rel) = path.strip_prefix(&base) {
                            let rel = rel.display().to_string();
                            if !rel.rsplit('/').next().is_some_and(|f| f.starts_with('.')) {
                                out.push(rel);
                            }
                        }
                    }
                }
                out.sort();
                Ok(out)
            }
            Self::Remote { store, .. } => {
                let key = self.key(dir);
                let base: Vec<String> = key.parts().map(|p| p.as_ref().to_string()).collect();
                let metas: Vec<_> = store
                    .list(Some(&key))
                    .try_collect()
                    .await
                    .map_err(|e| classify_store_error(&self.address(dir), e))?;
                let mut out: Vec<String> = metas
                    .into_iter()
                    .map(|m| {
                        let parts: Vec<String> =
                            m.location.parts().map(|p| p.as_ref().to_string()).collect();
                        parts[base.len().min(parts.len())..].join("/")
                    })
                    .collect();
                out.sort();
                Ok(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_local_place_puts_gets_lists_and_deletes_whole_objects() {
        let dir = tempfile::tempdir().unwrap();
        let place = Place::parse(
            &dir.path().join("plan").display().to_string(),
            &Default::default(),
        )
        .unwrap();
        assert!(place.get("plan.json").await.unwrap().is_none());
        assert!(place.list("shards").await.unwrap().is_empty());
        place
            .put("plan.json", Bytes::from_static(b"one"))
            .await
            .unwrap();
        place
            .put("shards/0001.json", Bytes::from_static(b"a"))
            .await
            .unwrap();
        place
            .put("shards/0000.json", Bytes::from_static(b"b"))
            .await
            .unwrap();
        place
            .put("plan.json", Bytes::from_static(b"two"))
            .await
            .unwrap();
        assert_eq!(place.get("plan.json").await.unwrap().unwrap(), "two");
        assert_eq!(
            place.list("shards").await.unwrap(),
            ["0000.json", "0001.json"]
        );
        place.delete("shards/0000.json").await.unwrap();
        place.delete("shards/0000.json").await.unwrap();
        assert_eq!(place.list("shards").await.unwrap(), ["0001.json"]);
        for bad in ["", "http://x/y", "ftp://a/b"] {
            assert!(Place::parse(bad, &Default::default()).is_err(), "{bad}");
        }
    }
}
