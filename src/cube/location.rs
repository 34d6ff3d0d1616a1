//! Where a repository lives: a local directory (the default), `s3://bucket/prefix` or
//! `gs://bucket/prefix`, and how to reach it.
//!
//! S3 settings not given explicitly come from the standard AWS environment variables, as
//! read once into the [`StorageSettings`] a location is parsed with; credentials are read by
//! the storage client itself, never by tilecube, and never displayed.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use icechunk::Storage;
use icechunk::config::{S3Credentials, S3Options};

use super::CubeError;
use crate::storage_settings::StorageSettings;
pub use crate::storage_settings::{S3Settings, StorageRetries};

/// How long a try of an S3 request waits for its connection.
pub const S3_CONNECT_TIMEOUT_MS: u32 = 10_000;

/// How long a try of an S3 request waits for the server's answer to start (the SDK's read
/// timeout: from the request to the response's first bytes).
pub const S3_READ_TIMEOUT_MS: u32 = 60_000;

/// A repository location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    Local(PathBuf),
    S3 {
        bucket: String,
        prefix: String,
        settings: S3Settings,
        retries: StorageRetries,
    },
    Gcs {
        bucket: String,
        prefix: String,
        anonymous: bool,
        retries: StorageRetries,
    },
}

impl fmt::Display for RepoLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::S3 { bucket, prefix, .. } => write!(f, "s3://{bucket}/{prefix}"),
            Self::Gcs { bucket, prefix, .. } => write!(f, "gs://{bucket}/{prefix}"),
        }
    }
}

fn split_bucket(rest: &str, original: &str) -> Result<(String, String), CubeError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(CubeError::Repository {
            location: original.to_string(),
            source: "the URL names no bucket".into(),
        });
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

impl RepoLocation {
    /// Parse `--repo`: a local path, `s3://bucket/prefix` or `gs://bucket/prefix`, reached
    /// as `storage` says (an S3 repository's settings over the environment's endpoint and
    /// region, GCS anonymously with `GS_NO_SIGN_REQUEST`, the storage client's retries).
    pub fn parse(text: &str, storage: &StorageSettings) -> Result<Self, CubeError> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = split_bucket(rest, text)?;
            return Ok(Self::S3 {
                bucket,
                prefix,
                settings: storage.repo_s3(),
                retries: storage.retries,
            });
        }
        if let Some(rest) = text.strip_prefix("gs://") {
            let (bucket, prefix) = split_bucket(rest, text)?;
            // Application default credentials, or none with GS_NO_SIGN_REQUEST=YES.
            return Ok(Self::Gcs {
                bucket,
                prefix,
                anonymous: storage.gcs.no_sign_request,
                retries: storage.retries,
            });
        }
        if text.contains("://") {
            return Err(CubeError::Repository {
                location: text.to_string(),
                source: "unsupported scheme; use a local path, s3:// or gs://".into(),
            });
        }
        if text.is_empty() {
            return Err(CubeError::Repository {
                location: text.to_string(),
                source: "empty repository path".into(),
            });
        }
        Ok(Self::Local(PathBuf::from(text)))
    }

    /// Icechunk's storage settings for this location: its retries, if any differ from
    /// Icechunk's defaults, and for S3 the timeouts of a request ([`S3_CONNECT_TIMEOUT_MS`],
    /// [`S3_READ_TIMEOUT_MS`]): an endpoint that takes a connection and never answers fails
    /// the try instead of holding it forever.
    pub fn storage_settings(&self) -> Option<icechunk::storage::Settings> {
        let (retries, timeouts) = match self {
            Self::Local(_) => return None,
            Self::S3 { retries, .. } => (
                retries,
                Some(icechunk::storage::TimeoutSettings {
                    connect_timeout_ms: Some(S3_CONNECT_TIMEOUT_MS),
                    read_timeout_ms: Some(S3_READ_TIMEOUT_MS),
                    ..Default::default()
                }),
            ),
            Self::Gcs { retries, .. } => (retries, None),
        };
        let retries = (!retries.is_default()).then_some(icechunk::storage::RetriesSettings {
            max_tries: retries.tries,
            initial_backoff_ms: retries.initial_backoff_ms,
            max_backoff_ms: retries.max_backoff_ms,
        });
        (retries.is_some() || timeouts.is_some()).then(|| icechunk::storage::Settings {
            retries,
            timeouts,
            ..Default::default()
        })
    }

    /// An error about this repository.
    pub fn error(&self, e: impl Into<super::error::BoxError>) -> CubeError {
        CubeError::Repository {
            location: self.to_string(),
            source: e.into(),
        }
    }

    /// Whether the repository is a path on this machine's file system.
    pub fn is_local_path(&self) -> bool {
        matches!(self, Self::Local(_))
    }

    /// A key naming this repository, for per-repository state kept elsewhere.
    pub fn key(&self) -> String {
        match self {
            Self::Local(p) => {
                let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                format!("file://{}", abs.display())
            }
            other => other.to_string(),
        }
    }

    /// Build the Icechunk storage for this location. A local directory is made only when
    /// `create` (by `init`): opening a path that is not there creates nothing.
    pub async fn storage(&self, create: bool) -> Result<Arc<dyn Storage + Send + Sync>, CubeError> {
        match self {
            Self::Local(path) => {
                if path.exists() && !path.is_dir() {
                    return Err(self.error("exists and is not a directory"));
                }
                if !create && !path.exists() {
                    return Err(CubeError::NoRepository {
                        location: self.to_string(),
                    });
                }
                std::fs::create_dir_all(path).map_err(|e| self.error(e))?;
                icechunk::new_local_filesystem_storage(path)
                    .await
                    .map_err(|e| self.error(e))
            }
            Self::S3 {
                bucket,
                prefix,
                settings,
                ..
            } => {
                // The environment's endpoint and region were laid under these at parse.
                let endpoint_url = settings.endpoint_url.clone();
                let allow_http = endpoint_url
                    .as_deref()
                    .is_some_and(|u| u.starts_with("http://"));
                let region = settings
                    .region
                    .clone()
                    .or_else(|| endpoint_url.as_ref().map(|_| "us-east-1".to_string()));
                let anonymous = settings.anonymous.unwrap_or(false);
                let mut options = S3Options::default();
                options.region = region;
                options.force_path_style = settings.path_style.unwrap_or(endpoint_url.is_some());
                options.endpoint_url = endpoint_url;
                options.anonymous = anonymous;
                options.allow_http = allow_http;
                options.network_stream_timeout_seconds = Some(60);
                let credentials = if anonymous {
                    S3Credentials::Anonymous
                } else {
                    S3Credentials::FromEnv
                };
                icechunk::new_s3_storage(
                    options,
                    bucket.clone(),
                    Some(prefix.clone()),
                    Some(credentials),
                    vec![],
                    vec![],
                    None,
                )
                .map_err(|e| self.error(e))
            }
            Self::Gcs {
                bucket,
                prefix,
                anonymous,
                ..
            } => {
                let credentials = anonymous.then_some(icechunk::config::GcsCredentials::Anonymous);
                icechunk::storage::new_gcs_storage(
                    bucket.clone(),
                    Some(prefix.clone()),
                    credentials,
                    None,
                    vec![],
                    vec![],
                )
                .map_err(|e| self.error(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_display_without_settings() {
        let s3 = StorageSettings::default().with_config(
            &S3Settings {
                endpoint_url: Some("http://127.0.0.1:9000".into()),
                ..Default::default()
            },
            None,
            StorageRetries::default(),
        );
        let l = RepoLocation::parse("s3://bucket/some/prefix/", &s3).unwrap();
        assert_eq!(l.to_string(), "s3://bucket/some/prefix");
        let l = RepoLocation::parse("gs://b", &s3).unwrap();
        assert_eq!(l.to_string(), "gs://b/");
        let l = RepoLocation::parse("./cube", &s3).unwrap();
        assert_eq!(l, RepoLocation::Local("./cube".into()));
        for bad in ["s3://", "ftp://x/y", ""] {
            assert!(RepoLocation::parse(bad, &s3).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_location_takes_the_environment_under_its_settings() {
        let storage = StorageSettings::from_lookup(|k| match k {
            "AWS_ENDPOINT_URL" => Some("http://env:9000".into()),
            "AWS_REGION" => Some("eu-west-1".into()),
            "GS_NO_SIGN_REQUEST" => Some("YES".into()),
            _ => None,
        })
        .unwrap();
        let retries = StorageRetries {
            max_backoff_ms: Some(500),
            ..Default::default()
        };
        let flags = S3Settings {
            region: Some("us-west-2".into()),
            ..Default::default()
        };
        let storage = storage.with_config(&flags, None, retries);
        match RepoLocation::parse("s3://b/p", &storage).unwrap() {
            RepoLocation::S3 {
                settings, retries, ..
            } => {
                assert_eq!(settings.endpoint_url.as_deref(), Some("http://env:9000"));
                assert_eq!(settings.region.as_deref(), Some("us-west-2"));
                assert_eq!(retries.max_backoff_ms, Some(500));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            RepoLocation::parse("gs://b/p", &storage).unwrap(),
            RepoLocation::Gcs {
                anonymous: true,
                ..
            }
        ));
    }
}
