//! Settings: what a face sets ([`Overrides`], the command-line flags), resolved over the
//! config file, the environment the face read once ([`StorageSettings::from_env`]) and the
//! defaults into what the engine needs — the repository, the source, the ingest options, how
//! storage is reached ([`Settings::storage`]) and the I/O runtime.
//!
//! Invariants: flags override the config file, which overrides the environment, which
//! overrides the defaults; both faces build their engine options here and nowhere else, so a
//! setting means the same in each; every engine option that reaches storage carries the one
//! [`StorageSettings`] of [`Settings::storage`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

use super::ConfigFile;
use crate::cube::{Cube, RepoLocation, SpecVersion};
use crate::ingest::{
    DEFAULT_COMMIT_INTERVAL, DEFAULT_COMMIT_REFS, DEFAULT_READ_AHEAD, DEFAULT_READ_AHEAD_BYTES,
    IngestOptions,
};
use crate::preset::Preset;
use crate::source::Source;
use crate::storage_settings::StorageSettings;

/// What a face sets over the config file (its command-line flags, say); `None` leaves the
/// config file's value or the default.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Config file (default: config.toml in the user config dir, if present).
    pub config: Option<PathBuf>,
    /// The dataset preset: a built-in's name or a preset file's path (default: the one
    /// the cube was laid out with, else the default one).
    pub preset: Option<String>,
    /// Repository: a local directory, s3://bucket/prefix or gs://bucket/prefix.
    pub repo: Option<String>,
    /// Source root: a directory, gs://, s3:// or https:// URL.
    pub source: Option<String>,
    /// Tile side in pixels (tiles keep their size in degrees).
    pub tile_pixels: Option<u64>,
    /// Icechunk format for new repositories: 1 or 2.
    pub spec_version: Option<u8>,
    /// Branch to read and write.
    pub branch: Option<String>,
    /// S3 endpoint URL for s3:// repositories (default: AWS_ENDPOINT_URL).
    pub s3_endpoint: Option<String>,
    /// S3 region (default: AWS_REGION).
    pub s3_region: Option<String>,
    /// Path-style S3 addressing (default: on with a custom endpoint).
    pub s3_path_style: Option<bool>,
    /// Unsigned S3 access.
    pub s3_anonymous: bool,
    /// Endpoint of gs:// sources (default: CPL_GS_ENDPOINT, else Google's); anonymous
    /// reads with GS_NO_SIGN_REQUEST=YES.
    pub gcs_endpoint: Option<String>,
}

/// The preset a cube records (its text; for cubes laid out before it was recorded, the
/// built-in of its name). A recorded text this tilecube's checks refuse (a later tilecube may
/// check more) is said and passed over: the cube's layout, not its preset, holds its shape.
fn recorded_preset(layout: &crate::cube::Layout) -> Option<Preset> {
    if layout.preset_text.is_empty() {
        return Preset::built_in(&layout.preset);
    }
    match Preset::parse(
        &layout.preset_text,
        &format!("{} recorded in the cube", layout.preset),
    ) {
        Ok(p) => Some(p),
        Err(e) => {
            log::warn!("{e}; the given or default preset lays the source out");
            None
        }
    }
}

/// Settings resolved from flags, config file and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub file: ConfigFile,
    /// The preset named by `--preset` or the config file, else the default one; once a cube is
    /// open, [`Settings::preset`] is the cube's own.
    pub preset: Preset,
    /// What named the preset (`--preset X`, `preset = X` in the config file), if anything did.
    pub preset_given: Option<String>,
    /// The preset the open cube was laid out with, when none was given.
    cube_preset: std::sync::OnceLock<Preset>,
    pub repo: Option<String>,
    pub source: Option<String>,
    pub tile_pixels: Option<u64>,
    pub spec_version: SpecVersion,
    pub branch: String,
    /// The config file read, if any (a detached run's worker reads the same one).
    pub config_path: Option<std::path::PathBuf>,
    /// What the process environment says of storage, as the face read it once;
    /// [`Settings::storage`] lays the flags and the config file over it.
    pub storage_env: StorageSettings,
}

impl Settings {
    /// The flags `g` over the config file (theirs, else the default one) over the storage
    /// settings `storage_env` the face read from the environment.
    pub fn resolve(g: &Overrides, storage_env: StorageSettings) -> Result<Self> {
        let (mut file, config_path) = ConfigFile::load(g.config.as_deref())?;
        // Paths in a config file are the file's: a relative one is taken from the file's
        // directory, wherever the command runs (flags stay relative to the command's).
        if let Some(dir) = config_path.as_deref().and_then(std::path::Path::parent) {
            let anchor = |v: &mut Option<String>| {
                if let Some(p) = v.as_mut()
                    && !p.contains("://")
                    && !p.is_empty()
                    && std::path::Path::new(p.as_str()).is_relative()
                {
                    *p = dir.join(p.as_str()).display().to_string();
                }
            };
            anchor(&mut file.repo);
            anchor(&mut file.source);
            // A preset file's path (not a built-in's name) is the file's too.
            if let Some(p) = file.preset.as_mut()
                && crate::preset::is_path(p)
                && std::path::Path::new(p.as_str()).is_relative()
            {
                *p = dir.join(p.as_str()).display().to_string();
            }
        }
        let s3 = &mut file.s3;
        s3.endpoint_url = g.s3_endpoint.clone().or(s3.endpoint_url.take());
        s3.region = g.s3_region.clone().or(s3.region.take());
        s3.path_style = g.s3_path_style.or(s3.path_style);
        if g.s3_anonymous {
            s3.anonymous = Some(true);
        }
        if let Some(ep) = &g.gcs_endpoint {
            file.gcs.endpoint = Some(ep.clone());
        }
        // Endpoints named by a flag or the config file, checked here so a mistyped one is
        // named with its setting.
        for (what, value) in [
            (
                if g.s3_endpoint.is_some() {
                    "--s3-endpoint"
                } else {
                    "[s3] endpoint_url in the config file"
                },
                s3.endpoint_url.as_deref(),
            ),
            (
                if g.gcs_endpoint.is_some() {
                    "--gcs-endpoint"
                } else {
                    "[gcs] endpoint in the config file"
                },
                file.gcs.endpoint.as_deref(),
            ),
        ] {
            if let Some(v) = value
                && let Some(reason) = crate::storage_settings::endpoint_problem(v)
            {
                anyhow::bail!("{what} {v:?} is not an endpoint URL: {reason}");
            }
        }
        let preset_given = match (&g.preset, &file.preset) {
            (Some(flag), _) => Some((format!("--preset {flag}"), flag.clone())),
            (None, Some(p)) => Some((format!("preset = {p:?} in the config file"), p.clone())),
            (None, None) => None,
        };
        let preset = match &preset_given {
            Some((what, p)) => Preset::find(p).with_context(|| format!("setting {what}"))?,
            None => Preset::default_preset(),
        };
        let preset_given = preset_given.map(|(_, p)| p);
        let branch = g
            .branch
            .clone()
            .or_else(|| file.branch.clone())
            .unwrap_or_else(|| "main".into());
        check_branch_name(&branch)?;
        let spec = g.spec_version.or(file.spec_version).unwrap_or(2);
        let spec_version = SpecVersion::from_number(spec)
            .with_context(|| format!("setting spec_version: {spec} is not 1 or 2"))?;
        Ok(Self {
            repo: g.repo.clone().or_else(|| file.repo.clone()),
            source: g.source.clone().or_else(|| file.source.clone()),
            tile_pixels: g.tile_pixels.or(file.tile_pixels),
            branch,
            spec_version,
            preset,
            preset_given,
            cube_preset: std::sync::OnceLock::new(),
            file,
            config_path,
            storage_env,
        })
    }

    /// The dataset preset: the open cube's own unless one was given, else the one given,
    /// else the default one.
    pub fn preset(&self) -> &Preset {
        self.cube_preset.get().unwrap_or(&self.preset)
    }

    /// Take the preset a cube was laid out with: a preset given that is another is refused,
    /// naming both; none given, the cube's own is used from here on.
    pub fn adopt_preset(&self, layout: &crate::cube::Layout) -> Result<()> {
        if let Some(given) = &self.preset_given {
            let shown = if *given == self.preset.name {
                given.clone()
            } else {
                format!("{given} ({})", self.preset.name)
            };
            if self.preset.name != layout.preset {
                return Err(crate::preset::PresetError::Differs {
                    recorded: layout.preset.clone(),
                    given: shown,
                }
                .into());
            }
            // Of the same name, it describes the same cube: only where its files are
            // (`[source]`) and its pyramid (`[overviews]`, built by `tilecube overviews`)
            // may differ from the one recorded.
            if !layout.preset_text.is_empty()
                && let Some(recorded) = recorded_preset(layout)
            {
                let differ = self.preset.differs_from(&recorded);
                if !differ.is_empty() {
                    return Err(crate::preset::PresetError::SameNameDiffers {
                        name: layout.preset.clone(),
                        given: shown,
                        keys: differ.join(", "),
                    }
                    .into());
                }
            }
            return Ok(());
        }
        if let Some(p) = recorded_preset(layout) {
            let _ = self.cube_preset.set(p);
        }
        Ok(())
    }

    /// How storage is reached: the environment's settings with the flags' and config file's
    /// `[s3]`, `[gcs]` endpoint and `[storage_retries]` over them. The value every engine
    /// option built here carries.
    pub fn storage(&self) -> Arc<StorageSettings> {
        Arc::new(self.storage_env.clone().with_config(
            &self.file.s3,
            self.file.gcs.endpoint.as_deref(),
            self.file.storage_retries,
        ))
    }

    pub fn location(&self) -> Result<RepoLocation> {
        let Some(repo) = self.repo.as_deref() else {
            anyhow::bail!(
                "no repository: pass --repo or set `repo` in the config file{}",
                demo_hint()
            );
        };
        Ok(RepoLocation::parse(repo, &self.storage())?)
    }

    pub fn source(&self) -> Result<Source> {
        let root = self
            .source
            .as_deref()
            .context("no source: pass --source or set `source` in the config file")?;
        Ok(Source::new(root, &self.preset().source_spec())?.with_storage(self.storage()))
    }

    pub async fn open_cube(&self) -> Result<Cube> {
        let cube = Cube::open(self.location()?, &self.branch)
            .await?
            .with_coverage_cache(super::cache_dir());
        cube.layout.check_tile_pixels(self.tile_pixels)?;
        self.adopt_preset(&cube.layout)?;
        Ok(cube)
    }

    /// What a plan made with these settings records of how its tasks reach things: the
    /// repository's absolute address, non-secret connection settings, the preset's text.
    pub fn plan_origin(&self) -> Result<crate::scaleout::PlanOrigin> {
        let preset = self.preset().text.clone();
        Ok(crate::scaleout::PlanOrigin {
            repo: crate::scaleout::build::absolute(self.repo.as_deref().unwrap_or_default()),
            s3: self.file.s3.clone(),
            gcs_endpoint: self.file.gcs.endpoint.clone(),
            preset,
            tile_pixels: self.tile_pixels,
        })
    }

    /// Reader/encoder threads: the flag, else the config, else every core; at most
    /// [`max_threads`] (the pipeline is CPU-bound: more threads only cost memory).
    pub fn threads(&self, flag: Option<usize>) -> Result<usize> {
        let threads = self.threads_asked(flag);
        if threads == 0 {
            bail!("--threads must be at least 1");
        }
        Ok(threads.min(max_threads()))
    }

    fn threads_asked(&self, flag: Option<usize>) -> usize {
        flag.or(self.file.threads)
            .unwrap_or_else(|| IngestOptions::default().threads)
    }

    /// What to tell the operator when the threads asked for were capped.
    pub fn threads_note(&self, flag: Option<usize>) -> Option<String> {
        let asked = self.threads_asked(flag);
        let max = max_threads();
        (asked > max).then(|| {
            format!(
                "warning: {asked} threads asked for; using {max} (4 per core: the write is CPU-bound, more threads only cost memory)"
            )
        })
    }

    /// Options of a headless write: checkpoints every `commit_every` tiles and whenever the
    /// session holds `commit_refs` chunk references (flag, else config, else
    /// [`DEFAULT_COMMIT_REFS`]), every `commit_minutes` (default ten), and a final commit.
    pub fn write_options(
        &self,
        threads: Option<usize>,
        commit_every: Option<usize>,
        commit_refs: Option<usize>,
    ) -> Result<IngestOptions> {
        let f = &self.file;
        Ok(IngestOptions {
            threads: self.threads(threads)?,
            max_uploads: f.max_uploads.unwrap_or(32),
            commit_every: commit_every.or(f.commit_every).unwrap_or(0),
            commit_refs: commit_refs.or(f.commit_refs).unwrap_or(DEFAULT_COMMIT_REFS),
            commit_interval: Some(f.commit_interval().unwrap_or(DEFAULT_COMMIT_INTERVAL)),
            attempts: f.retries.unwrap_or(3),
            read_ahead: f.read_ahead.unwrap_or(DEFAULT_READ_AHEAD),
            read_ahead_bytes: f
                .read_ahead_mb
                .map(|m| m << 20)
                .unwrap_or(DEFAULT_READ_AHEAD_BYTES),
            storage: self.storage(),
            ..IngestOptions::default()
        })
    }
}

/// Refuse a branch name that Icechunk's references or a shell would trip on: it must be
/// non-empty, of letters, digits, `.`, `_` and `-`, not start with `.` or `-`, and not hold
/// `..`.
pub fn check_branch_name(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty()
        || !ok_chars
        || name.starts_with(['.', '-'])
        || name.contains("..")
        || name.len() > 100
    {
        bail!(
            "branch {name:?}: a branch name is 1–100 letters, digits, '.', '_' or '-', not starting with '.' or '-' and without '..'"
        );
    }
    Ok(())
}

/// The most reader/encoder threads a write runs: four per core.
pub fn max_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * 4
}

/// The I/O runtime both faces run the engine on: two tokio workers (the CPU work has its
/// own rayon pool).
pub fn io_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .thread_name("tilecube-io")
        .build()
        .context("starting the I/O runtime")
}

/// Where `tilecube demo` made its cube, if it did (with its source): said where no
/// repository is configured, so a new user finds the cube the demo just made.
pub fn demo_cube() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let root = super::data_dir().join("demo");
    let (cube, source) = (root.join("cube"), root.join("source"));
    (cube.is_dir() && std::fs::read_dir(&cube).is_ok_and(|mut d| d.next().is_some()))
        .then_some((cube, source))
}

/// "; the demo's cube is …: `tilecube --repo … status`", or nothing without a demo cube.
pub fn demo_hint() -> String {
    match demo_cube() {
        Some((cube, source)) => format!(
            "; `tilecube demo` made a cube at {}: `tilecube --repo {} --source {} status` (or without `status`, the console)",
            cube.display(),
            cube.display(),
            source.display()
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_storage_settings_are_the_environments_under_the_config_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            "[s3]\nendpoint_url = \"http://config:9000\"\n\
             [gcs]\nendpoint = \"http://config-gcs\"\n\
             [storage_retries]\ntries = 4\n",
        )
        .unwrap();
        let env = StorageSettings::from_lookup(|k| match k {
            "AWS_ENDPOINT_URL" => Some("http://env:9000".into()),
            "AWS_REGION" => Some("eu-west-1".into()),
            "GS_NO_SIGN_REQUEST" => Some("yes".into()),
            _ => None,
        })
        .unwrap();
        let overrides = Overrides {
            config: Some(config),
            repo: Some("s3://cubes/glad".into()),
            source: Some("gs://tiles/glad".into()),
            s3_region: Some("us-west-2".into()),
            ..Default::default()
        };
        let settings = Settings::resolve(&overrides, env).unwrap();
        let storage = settings.storage();
        assert_eq!(
            storage.repo_s3().endpoint_url.as_deref(),
            Some("http://config:9000")
        );
        assert_eq!(storage.repo_s3().region.as_deref(), Some("us-west-2"));
        assert_eq!(storage.aws.endpoint_url.as_deref(), Some("http://env:9000"));
        assert_eq!(storage.gcs_endpoint(), Some("http://config-gcs/"));
        assert!(storage.gcs.no_sign_request);
        assert_eq!(storage.retries.tries.map(|t| t.get()), Some(4));
        match settings.location().unwrap() {
            RepoLocation::S3 {
                settings: s3,
                retries,
                ..
            } => {
                assert_eq!(s3.endpoint_url.as_deref(), Some("http://config:9000"));
                assert_eq!(retries, storage.retries);
            }
            other => panic!("{other:?}"),
        }
        let source = settings.source().unwrap();
        assert_eq!(**source.storage(), *storage);
        let options = settings.write_options(None, None, None).unwrap();
        assert_eq!(*options.storage, *storage);
    }
}
