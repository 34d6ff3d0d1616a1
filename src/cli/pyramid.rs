//! `tilecube overviews` (build or refresh the pyramid of a cube) and `tilecube map` (a level
//! of one year as a PNG coloured with the legend).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use tilecube::config::Settings;
use tilecube::cube::Overviews;

#[derive(Debug, Args)]
pub struct OverviewsArgs {
    /// Tiles per commit.
    #[arg(long, default_value_t = 50)]
    pub batch: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MapArgs {
    /// The year to draw.
    #[arg(long)]
    pub year: i32,
    /// Draw this snapshot (default: the branch head).
    #[arg(long)]
    pub snapshot: Option<String>,
    /// The level to draw, by its factor (1: full resolution; default: the coarsest level).
    #[arg(long)]
    pub factor: Option<u64>,
    /// Only this box, in degrees: west,south,east,north.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub bbox: Option<Vec<f64>>,
    /// Where to write the PNG.
    #[arg(long)]
    pub out: PathBuf,
}

pub async fn overviews(settings: &Settings, args: &OverviewsArgs) -> Result<i32> {
    let mut cube = settings.open_cube().await?;
    let Some(wanted) = Overviews::of_preset(settings.preset()) else {
        bail!(
            "the preset {} switches overviews off ([overviews] enabled = false)",
            settings.preset().name
        );
    };
    let quiet = args.json;
    let report = cube
        .build_overviews(wanted, args.batch, |done, total| {
            if !quiet && (done == total || done % 10 == 0) {
                eprintln!("overviews: {done}/{total} tiles");
            }
        })
        .await
        .with_context(|| format!("building the overviews of {}", cube.location))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}{}; {} in {}",
            tilecube::text::plural(report.levels as usize, "level"),
            if report.laid_out { " laid out" } else { "" },
            tilecube::text::plural(report.tiles, "tile"),
            tilecube::text::plural(report.commits.len(), "commit")
        );
    }
    Ok(0)
}

pub async fn map(settings: &Settings, args: &MapArgs) -> Result<i32> {
    // The picture's path is checked before any read: a mistyped one costs nothing.
    if let Some(ext) = args.out.extension()
        && !ext.eq_ignore_ascii_case("png")
    {
        anyhow::bail!(
            "--out {}: map writes a PNG picture; name the file .png",
            args.out.display()
        );
    }
    if let Some(dir) = args.out.parent()
        && !dir.as_os_str().is_empty()
        && !dir.is_dir()
    {
        anyhow::bail!(
            "--out {}: the directory {} is not there",
            args.out.display(),
            dir.display()
        );
    }
    let cube = settings.open_cube().await?;
    let sizes = cube.level_sizes();
    let k = match args.factor {
        Some(f) => cube.level_of_factor(f).with_context(|| {
            let have: Vec<String> = sizes.iter().map(|(_, _, f)| f.to_string()).collect();
            format!(
                "--factor {f}: the cube's levels have factors {}",
                have.join(", ")
            )
        })?,
        None => sizes.len() - 1,
    };
    let (w, h, factor) = sizes[k];
    let window = match &args.bbox {
        None => None,
        Some(b) => {
            let &[west, south, east, north] = b.as_slice() else {
                bail!(
                    "--bbox takes four numbers, west,south,east,north; got {}",
                    b.len()
                );
            };
            if !(west < east && south < north) {
                bail!(
                    "--bbox {west},{south},{east},{north}: west must be below east and south below north"
                );
            }
            let grid = cube.layout.grid();
            let p = grid.pixel_size() * factor as f64;
            let col = |lon: f64| {
                ((lon - grid.origin_lon as f64) / p)
                    .floor()
                    .clamp(0.0, w as f64) as u64
            };
            let row = |lat: f64| {
                ((grid.origin_lat as f64 - lat) / p)
                    .floor()
                    .clamp(0.0, h as f64) as u64
            };
            let (c0, c1) = (col(west), col(east).max(col(west) + 1));
            let (r0, r1) = (row(north), row(south).max(row(north) + 1));
            Some(((r0, r1.min(h)), (c0, c1.min(w))))
        }
    };
    let image = cube
        .read_level(args.snapshot.as_deref(), k, args.year, window)
        .await
        .with_context(|| format!("reading level {k} of {}", args.year))?;
    let caption = format!(
        "{} {} - level {} (1:{}) - {}",
        cube.layout.variable,
        args.year,
        k,
        factor,
        args.snapshot.as_deref().unwrap_or(&cube.branch)
    );
    tilecube::overview::picture::write_png(
        &args.out,
        image.width,
        image.height,
        &image.pixels,
        &caption,
    )?;
    println!(
        "{}: {}×{} px of level {k} (factor {factor}), {}",
        args.out.display(),
        image.width,
        image.height,
        args.year
    );
    if image.pixels.iter().all(|&p| p == cube.layout.fill_value) {
        eprintln!(
            "note: {} holds no data there at this level: the picture is blank (`status --year {}` shows what is written)",
            args.year, args.year
        );
    }
    Ok(0)
}
