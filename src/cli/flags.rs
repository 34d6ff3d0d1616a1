//! The options every command takes, as clap reads them: the engine's [`Overrides`] with
//! their flags (the library knows no argument parser).

use std::path::PathBuf;

use clap::Args;
use tilecube::config::Overrides;

/// The options every command takes (they override the config file), shown under their own
/// heading after each command's own options.
#[derive(Debug, Clone, Args, Default)]
pub struct GlobalArgs {
    /// Config file (default: config.toml in the user config dir, if present).
    #[arg(long, global = true, help_heading = "Global options")]
    pub config: Option<PathBuf>,
    /// Dataset preset: a built-in's name (`tilecube presets`) or a preset file's path
    /// (default: the cube's own, else the first of `tilecube presets`).
    #[arg(long, global = true, help_heading = "Global options")]
    pub preset: Option<String>,
    /// Repository: a local directory, s3://bucket/prefix or gs://bucket/prefix.
    #[arg(long, global = true, help_heading = "Global options")]
    pub repo: Option<String>,
    /// Source root: a directory, gs://, s3:// or https:// URL.
    #[arg(long, global = true, help_heading = "Global options")]
    pub source: Option<String>,
    /// Tile side in pixels (tiles keep their size in degrees).
    #[arg(long, global = true, help_heading = "Global options")]
    pub tile_pixels: Option<u64>,
    /// Icechunk format for new repositories: 1 or 2.
    #[arg(long, global = true, help_heading = "Global options", value_parser = clap::value_parser!(u8).range(1..=2))]
    pub spec_version: Option<u8>,
    /// Branch to read and write.
    #[arg(long, global = true, help_heading = "Global options")]
    pub branch: Option<String>,
    /// S3 endpoint URL for s3:// repositories (default: AWS_ENDPOINT_URL); s3:// sources
    /// and plans are read at AWS_ENDPOINT_URL.
    #[arg(long, global = true, help_heading = "Global options")]
    pub s3_endpoint: Option<String>,
    /// S3 region (default: AWS_REGION).
    #[arg(long, global = true, help_heading = "Global options")]
    pub s3_region: Option<String>,
    /// Path-style S3 addressing (default: on with a custom endpoint).
    #[arg(long, global = true, help_heading = "Global options")]
    pub s3_path_style: Option<bool>,
    /// Unsigned S3 access.
    #[arg(long, global = true, help_heading = "Global options")]
    pub s3_anonymous: bool,
    /// Endpoint of gs:// sources (default: CPL_GS_ENDPOINT, else Google's); anonymous
    /// reads with GS_NO_SIGN_REQUEST=YES.
    #[arg(long, global = true, help_heading = "Global options")]
    pub gcs_endpoint: Option<String>,
}

impl GlobalArgs {
    /// What these flags set over the config file.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            preset: self.preset.clone(),
            repo: self.repo.clone(),
            source: self.source.clone(),
            tile_pixels: self.tile_pixels,
            spec_version: self.spec_version,
            branch: self.branch.clone(),
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
            s3_path_style: self.s3_path_style,
            s3_anonymous: self.s3_anonymous,
            gcs_endpoint: self.gcs_endpoint.clone(),
        }
    }
}
