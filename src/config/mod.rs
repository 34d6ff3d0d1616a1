//! The configuration file and how it meets the command line.
//!
//! Settings come from, in order of precedence: command-line flags, the config file
//! (`--config`, else `config.toml` in the user config dir), the environment's storage
//! settings a face read once ([`crate::storage_settings`]), built-in defaults. Every command
//! runs without a config file.

#[cfg(feature = "test-support")]
mod keys;
mod settings;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cube::{S3Settings, StorageRetries};

#[cfg(feature = "test-support")]
pub use keys::setting_keys;
pub use settings::{Overrides, Settings, demo_cube, demo_hint, io_runtime, max_threads};

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("setting {key}: {reason}")]
    Setting { key: String, reason: String },
}

/// The config file's contents; every key is optional.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub repo: Option<String>,
    pub source: Option<String>,
    /// A built-in preset's name, or a preset file's path.
    pub preset: Option<String>,
    pub tile_pixels: Option<u64>,
    pub spec_version: Option<u8>,
    pub branch: Option<String>,
    pub threads: Option<usize>,
    pub max_uploads: Option<usize>,
    pub commit_every: Option<usize>,
    pub commit_minutes: Option<f64>,
    pub commit_refs: Option<usize>,
    pub retries: Option<u32>,
    /// Windows each worker reads ahead from a remote tile (0: GDAL streams on demand).
    pub read_ahead: Option<usize>,
    /// Megabytes a remote tile's read-ahead may hold.
    pub read_ahead_mb: Option<u64>,
    #[serde(default)]
    pub s3: S3Settings,
    #[serde(default)]
    pub gcs: GcsSettings,
    /// How the repository's storage client retries a failed request.
    #[serde(default)]
    pub storage_retries: StorageRetries,
}

/// Settings of `gs://` sources.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GcsSettings {
    /// Endpoint of GCS reads (default: `CPL_GS_ENDPOINT`, else Google's).
    pub endpoint: Option<String>,
}

/// The user's config directory for tilecube.
pub fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("org", "tilecube", "tilecube")
}

/// The default config file path (it need not exist).
pub fn default_config_path() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().join("config.toml"))
}

/// The user's cache directory for tilecube (coverage of snapshots already read):
/// `TILECUBE_CACHE_DIR`, else `cache` inside a relocated `TILECUBE_DATA_DIR`, else the
/// platform's cache dir.
pub fn cache_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TILECUBE_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Ok(dir) = std::env::var("TILECUBE_DATA_DIR") {
        return PathBuf::from(dir).join("cache");
    }
    project_dirs()
        .map(|d| d.cache_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("tilecube-cache"))
}

/// Where detached runs are kept: `runs/` under the user data dir.
pub fn runs() -> crate::runs::Runs {
    crate::runs::Runs::at(runs_dir())
}

/// The digests of local source files taken to compare them (`digests.json` under the
/// user cache dir).
pub fn digest_cache() -> crate::source::DigestCache {
    crate::source::DigestCache::at(cache_dir().join("digests.json"))
}

/// Where detached runs keep their plans, records and logs: `runs/` under the user data dir.
pub fn runs_dir() -> PathBuf {
    data_dir().join("runs")
}

/// Where failure journals are kept: `journal/` under the user data dir.
pub fn journal_dir() -> PathBuf {
    data_dir().join("journal")
}

/// The user's data directory for tilecube (demo cube, failure journal, runs).
pub fn data_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TILECUBE_DATA_DIR") {
        return PathBuf::from(dir);
    }
    project_dirs()
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("tilecube"))
}

impl ConfigFile {
    /// Read `explicit` (which must exist), else the default file if it exists, else nothing.
    pub fn load(explicit: Option<&Path>) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => match default_config_path() {
                Some(p) if p.exists() => p,
                _ => return Ok((Self::default(), None)),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let cfg = Self::parse(&text, &path.display().to_string())?;
        Ok((cfg, Some(path)))
    }

    /// Parse a config file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError::File {
            path: origin.to_string(),
            reason: e.to_string(),
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| {
            Err(ConfigError::Setting {
                key: key.into(),
                reason: reason.into(),
            })
        };
        if let Some(v) = self.spec_version
            && !(1..=2).contains(&v)
        {
            return bad("spec_version", "must be 1 or 2");
        }
        if self.threads == Some(0) {
            return bad("threads", "must be at least 1");
        }
        if self.max_uploads == Some(0) {
            return bad("max_uploads", "must be at least 1");
        }
        if self.tile_pixels == Some(0) {
            return bad("tile_pixels", "must be positive");
        }
        if let Some(m) = self.commit_minutes
            && !(m > 0.0 && m.is_finite())
        {
            return bad("commit_minutes", "must be a positive number of minutes");
        }
        Ok(())
    }

    /// The checkpoint interval, if set.
    pub fn commit_interval(&self) -> Option<Duration> {
        self.commit_minutes
            .map(|m| Duration::from_secs_f64(m * 60.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../config.example.toml");
        let cfg = ConfigFile::parse(text, "config.example.toml").unwrap();
        assert_eq!(cfg.branch.as_deref(), Some("main"));
        assert_eq!(cfg.spec_version, Some(2));
    }

    #[test]
    fn bad_settings_are_named() {
        let err = ConfigFile::parse("spec_version = 3", "c.toml").unwrap_err();
        assert!(err.to_string().contains("spec_version"), "{err}");
        let err = ConfigFile::parse("threads = 0", "c.toml").unwrap_err();
        assert!(err.to_string().contains("threads"), "{err}");
        let err = ConfigFile::parse("colour = \"blue\"", "c.toml").unwrap_err();
        assert!(
            err.to_string().contains("c.toml") && err.to_string().contains("colour"),
            "{err}"
        );
        let err = ConfigFile::parse("commit_minutes = -1.0", "c.toml").unwrap_err();
        assert!(err.to_string().contains("commit_minutes"), "{err}");
    }
}
