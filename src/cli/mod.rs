//! The headless front end: `tilecube init|write|status|log|demo`, for scripts and CI.
//!
//! It reads the environment's storage settings once, resolves settings (flags over config file
//! over environment over defaults), calls the engine, and prints
//! results as text or `--json`. Errors name the setting or tile at fault.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use tilecube::config::{Settings, io_runtime};
use tilecube::storage_settings::StorageSettings;

mod demo;
mod extend;
mod flags;
mod hygiene;
mod init;
mod log;
mod presets;
mod pyramid;
mod runs;
mod shard;
mod status;
mod upgrade;
mod verify;
mod write;

use demo::demo;
use init::init;
use log::log;
pub(crate) use status::status;
use upgrade::upgrade;
pub(crate) use verify::REPAIR_HINT;
use verify::{repair, verify};
use write::write;
pub(crate) use write::{
    print_report, refuse_lost_manifests, report_plan_problems, run_ingest, selection,
};

/// tilecube: assemble analysis-ready raster datacubes in Icechunk from tiled GeoTIFFs.
#[derive(Debug, Parser)]
#[command(name = "tilecube", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: flags::GlobalArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the repository and the cube's layout (no data) in one commit.
    Init {
        /// Lay out a fresh, empty cube over an existing repository (history is kept).
        #[arg(long)]
        force: bool,
    },
    /// Write tiles into the cube and commit them.
    Write(WriteArgs),
    /// Show which tiles are listed and written, per year (or a plan's progress).
    Status {
        #[arg(long)]
        json: bool,
        /// Only these years.
        #[arg(long = "year")]
        years: Vec<i32>,
        /// Show this scale-out plan's progress: per shard, tiles landed or staged, failures.
        #[arg(long)]
        plan: Option<String>,
        /// The plan's stage location (default: the one its shards' records name).
        #[arg(long, requires = "plan")]
        stage: Option<String>,
        /// Also list the repository's manifest objects to find lost ones (as `verify` does);
        /// without it, status shows the manifests the last listing here found lost.
        #[arg(long, conflicts_with = "plan")]
        deep: bool,
    },
    /// Fix the work of a scale-out write once: the base snapshot, the (year, tile) jobs and
    /// their split into balanced shards, saved for every task to read.
    Plan(shard::PlanArgs),
    /// Merge the staged shards of a plan into the branch as one commit.
    Merge(shard::MergeArgs),
    /// Detached runs (`write --detach`): list them, stop one, show its log.
    Runs {
        #[command(subcommand)]
        action: Option<RunsAction>,
        #[arg(long)]
        json: bool,
    },
    /// Build or refresh the overview pyramid of a cube (one written before it had one).
    Overviews(pyramid::OverviewsArgs),
    /// Draw a level of one year as a PNG coloured with the legend.
    Map(pyramid::MapArgs),
    /// Check every chunk the branch head references against the objects in storage.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Drop the branch head's references to manifests and chunk objects lost from storage,
    /// in one commit, so the branch can move again (see `verify`).
    Repair {
        #[arg(long)]
        json: bool,
    },
    /// Bring the metadata of a cube written by an earlier tilecube to today's form (the
    /// GeoZarr conventions on the root and level groups), in one commit that touches no chunk.
    Upgrade {
        #[arg(long)]
        json: bool,
    },
    /// Append a year after the cube's last (a new epoch) in one commit that writes no chunk
    /// of an earlier year; `write --year Y --missing` then fills it.
    Extend {
        /// The year to append: after the cube's last year.
        #[arg(long, allow_negative_numbers = true)]
        year: i32,
        #[arg(long)]
        json: bool,
    },
    /// Name a snapshot for good (a release): the branch head, or `--snapshot ID`.
    Tag {
        /// The tag's name, e.g. v1.0.
        name: String,
        /// The snapshot to tag (default: the branch head).
        #[arg(long, conflicts_with = "delete")]
        snapshot: Option<String>,
        /// Release notes kept with the tag (in the repository's metadata; spec 2). Given
        /// again on a tag already on that snapshot, it replaces the message.
        #[arg(long, value_parser = non_empty_tag_message, conflicts_with = "delete")]
        message: Option<String>,
        /// Delete the tag instead (its snapshot stays while a branch or another tag reaches
        /// it; `gc` then reclaims what it alone held).
        #[arg(long)]
        delete: bool,
    },
    /// Delete the objects no branch or tag reaches (a failed write's uploads, expired
    /// snapshots' chunks and manifests, merged shards' parts) with Icechunk's garbage
    /// collection, and say what was removed per kind.
    Gc {
        /// Count what would be removed, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove only objects created more than this long ago (0s, 90m, 12h, 7d). Every
        /// write announces itself in the repository while it runs (and a staged shard until
        /// its plan's merge); an age reaching past the start of one that is going on is
        /// refused, naming it, so no running or staged write loses an upload, whatever
        /// machine it runs on. A write that died is forgotten 60 s after its last sign of
        /// life, a staged shard never merged after 14 days. `0s` is for a quiet repository.
        #[arg(long, default_value = "1d", value_parser = tilecube::cube::parse_age)]
        older_than: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
    /// Drop the untagged snapshots older than --older-than from the history (heads and
    /// tagged snapshots kept), with Icechunk's expiration, after one commit that carries
    /// their records of tiles forward; `gc` then reclaims their objects. The snapshots a
    /// running write started from are kept, so its commits still land.
    Expire {
        /// Expire the snapshots older than this (0s, 90m, 12h, 7d).
        #[arg(long, value_parser = tilecube::cube::parse_age)]
        older_than: std::time::Duration,
        #[arg(long)]
        json: bool,
    },
    /// List the built-in dataset presets, a line each, and the one in effect.
    Presets {
        #[arg(long)]
        json: bool,
    },
    /// Show the branch's commits, the tiles each wrote and the tags naming them.
    Log {
        #[arg(long)]
        json: bool,
    },
    /// Make a GLAD-like demo source and cube under the user data dir, write it, show it.
    Demo {
        /// Where to put the demo (default: the user data dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Tile side in pixels of the demo tiles.
        #[arg(long, default_value_t = 400)]
        pixels: u64,
        /// The tiles' pixels: `world` (GLAD-like patches whose classes follow latitude, a
        /// plausible planet), `glad` (the same patches, any class anywhere) or `blocky`
        /// (smooth blocks of one class).
        #[arg(long, default_value = "world")]
        texture: tilecube::demo::Texture,
    },
    /// Measure ingest speed and memory against the hardware's floor (full-size tiles).
    #[cfg(feature = "bench")]
    Bench(crate::bench::BenchArgs),
    /// Print a completion script for a shell: `tilecube completions bash > /etc/bash_completion.d/tilecube`
    /// (or `source <(tilecube completions bash)`; zsh and fish alike).
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The operator console (also what `tilecube` alone opens on a terminal).
    Tui {
        /// Watch this scale-out plan's shards (its repository and branch are opened).
        #[arg(long)]
        plan: Option<String>,
    },
}

/// Which tiles to write (or plan).
#[derive(Debug, Args, Default)]
pub struct Choice {
    /// Year to write (repeatable; default: every year of the cube).
    #[arg(long = "year")]
    pub years: Vec<i32>,
    /// Tiles to write, comma separated (e.g. 70N_180W,60N_170W).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["all", "missing"])]
    pub tiles: Vec<String>,
    /// Every tile in the year's list.
    #[arg(long, conflicts_with = "missing")]
    pub all: bool,
    /// Listed tiles the branch head does not hold yet.
    #[arg(long, conflicts_with = "failed")]
    pub missing: bool,
    /// The tiles of the failure journal (tiles that failed before).
    #[arg(long, conflicts_with_all = ["all", "tiles"])]
    pub failed: bool,
    /// Written tiles whose source changed since they were written (re-issued upstream).
    #[arg(long, conflicts_with_all = ["all", "tiles", "missing", "failed"])]
    pub changed: bool,
}

/// What to do with runs.
#[derive(Debug, Subcommand)]
pub enum RunsAction {
    /// Stop a run: it stops at its next strip, its finished tiles committed.
    Cancel { id: String },
    /// Print a run's log.
    Log { id: String },
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    #[command(flatten)]
    pub choice: Choice,
    /// Write one shard of a plan made by `tilecube plan` (a directory or s3:// / gs://
    /// location) instead of choosing tiles.
    #[arg(long, conflicts_with_all = ["tiles", "all", "missing", "failed", "years"])]
    pub plan: Option<String>,
    /// The plan's shard to write: its number, or `auto` (the default) from the scheduler's
    /// array task variables (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, …).
    #[arg(long, requires = "plan")]
    pub shard: Option<String>,
    /// Stage the shard's session under this location instead of committing; `tilecube merge`
    /// then lands every shard in one commit.
    #[arg(long, requires = "plan")]
    pub stage: Option<String>,
    /// Run the write in a worker process of its own that outlives this terminal (see
    /// `tilecube runs`).
    #[arg(long, conflicts_with = "plan")]
    pub detach: bool,
    /// Reader/encoder threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Commit after this many finished tiles (default: config, else only at the end).
    #[arg(long)]
    pub commit_every: Option<usize>,
    /// Commit whenever the session holds this many chunk references, so memory stays
    /// bounded however long the run (default: config, else 200000; 0: no limit).
    #[arg(long)]
    pub commit_refs: Option<usize>,
    /// Windows each worker fetches ahead of its decoding from a remote tile, so network
    /// and CPU overlap (default: config, else 2; 0: GDAL fetches on demand).
    #[arg(long)]
    pub read_ahead: Option<usize>,
    /// The message of the write's commits (each still records its tiles), e.g. "write
    /// the 2020 release"; default: a message naming the tiles.
    #[arg(long, value_parser = non_empty_message)]
    pub message: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run the CLI; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    // The one read of the environment's storage settings: every command hands them down.
    let storage_env = StorageSettings::from_env()?;
    #[cfg(feature = "bench")]
    if let Some(Command::Bench(args)) = &cli.command {
        crate::bench::run(args, &storage_env)?;
        return Ok(0);
    }
    if let Some(Command::Completions { shell }) = &cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(*shell, &mut cmd, "tilecube", &mut std::io::stdout());
        return Ok(0);
    }
    let overrides = cli.global.overrides();
    let settings = Settings::resolve(&overrides, storage_env)?;
    if let Some(Command::Merge(_)) = &cli.command {
        tilecube::cube::limit_allocator_arenas();
    }
    let rt = io_runtime()?;
    match cli.command {
        Some(Command::Init { force }) => rt.block_on(init(&settings, force)),
        Some(Command::Write(args)) if args.detach => rt.block_on(runs::detach(&settings, &args)),
        Some(Command::Runs { action, json }) => match action {
            None => runs::list(json),
            Some(RunsAction::Cancel { id }) => runs::cancel(&id),
            Some(RunsAction::Log { id }) => runs::log(&id),
        },
        Some(Command::Write(args)) if args.plan.is_some() => {
            rt.block_on(shard::write(&settings, &overrides, &args))
        }
        Some(Command::Write(args)) => rt.block_on(write(&settings, &args)),
        Some(Command::Status {
            json,
            plan: Some(plan),
            stage,
            ..
        }) => rt.block_on(shard::status(&settings, &plan, stage.as_deref(), json)),
        Some(Command::Status {
            json, years, deep, ..
        }) => rt.block_on(status(&settings, json, &years, deep)),
        Some(Command::Plan(args)) => rt.block_on(shard::plan(&settings, &args)),
        Some(Command::Merge(args)) => rt.block_on(shard::merge(&settings, &overrides, &args)),
        Some(Command::Log { json }) => rt.block_on(log(&settings, json)),
        Some(Command::Presets { json }) => rt.block_on(presets::presets(&settings, json)),
        Some(Command::Gc {
            dry_run,
            older_than,
            json,
        }) => rt.block_on(hygiene::gc(&settings, older_than, dry_run, json)),
        Some(Command::Expire { older_than, json }) => {
            rt.block_on(hygiene::expire(&settings, older_than, json))
        }
        Some(Command::Tag {
            name, delete: true, ..
        }) => rt.block_on(log::delete_tag(&settings, &name)),
        Some(Command::Tag {
            name,
            snapshot,
            message,
            ..
        }) => rt.block_on(log::tag(
            &settings,
            &name,
            snapshot.as_deref(),
            message.as_deref(),
        )),
        Some(Command::Verify { json }) => rt.block_on(verify(&settings, json)),
        Some(Command::Repair { json }) => rt.block_on(repair(&settings, json)),
        Some(Command::Upgrade { json }) => rt.block_on(upgrade(&settings, json)),
        Some(Command::Extend { year, json }) => rt.block_on(extend::extend(&settings, year, json)),
        Some(Command::Overviews(args)) => rt.block_on(pyramid::overviews(&settings, &args)),
        Some(Command::Map(args)) => rt.block_on(pyramid::map(&settings, &args)),
        Some(Command::Demo {
            dir,
            pixels,
            texture,
        }) => rt.block_on(demo(&settings, dir, pixels, texture)),
        #[cfg(feature = "bench")]
        Some(Command::Bench(_)) => Ok(0),
        Some(Command::Completions { .. }) => Ok(0),
        Some(Command::Tui { plan: None }) => {
            drop(rt);
            crate::tui::run(&settings)
        }
        Some(Command::Tui { plan: Some(at) }) => {
            let (place, plan, settings) =
                rt.block_on(shard::load_plan(&settings, &overrides, &at))?;
            drop(rt);
            crate::tui::run_watching(&settings, Arc::new((place, plan)))
        }
        None => {
            use std::io::IsTerminal;
            if settings.repo.is_some() && std::io::stdout().is_terminal() {
                drop(rt);
                crate::tui::run(&settings)
            } else if settings.repo.is_some() {
                rt.block_on(status(&settings, false, &[], false))
            } else {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                cmd.print_help()?;
                let hint = tilecube::config::demo_hint();
                if !hint.is_empty() {
                    println!(
                        "\nNo repository is configured (--repo, or `repo` in the config file){hint}"
                    );
                }
                Ok(0)
            }
        }
    }
}

/// A `--message`: some text (an empty one is refused: leave the flag out instead).
/// A tag's message, if it says anything.
fn non_empty_tag_message(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("the message is empty; give the release notes, or leave --message out".into())
    } else {
        Ok(s.to_string())
    }
}

fn non_empty_message(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("an empty message; leave --message out (commits then name their tiles)".into())
    } else {
        Ok(s.to_string())
    }
}

/// "tilecube write": the program and the subcommand it runs, for the notes other processes
/// read (no flag or value is named).
pub(crate) fn command_name(cli: &Cli) -> String {
    match &cli.command {
        None => "tilecube".into(),
        Some(c) => {
            let debug = format!("{c:?}");
            let variant: String = debug.chars().take_while(|c| c.is_alphanumeric()).collect();
            format!("tilecube {}", variant.to_lowercase())
        }
    }
}
