//! `tilecube demo`: a GLAD-like source made with GDAL, a cube written from it, and the
//! console (or the status grid) on it; it writes only where it owns everything.

use std::path::PathBuf;

use anyhow::{Result, bail};

use tilecube::config::{Settings, data_dir};
use tilecube::cube::{Cube, RepoLocation};
use tilecube::demo::Texture;
use tilecube::grid::Grid;

use super::{Choice, WriteArgs, init, status, write};

/// The mark the demo leaves in the source it made.
const DEMO_MARK: &str = ".tilecube-demo";

/// Make sure the demo writes only what it owns: it writes `root/source` (tiles and lists) and
/// `root/cube`, so each must be new, empty, or an earlier demo's (its source carries the
/// demo's mark, or is exactly what an earlier demo wrote). Anything else there is refused by
/// name, so an operator's tiles, lists and cube are never overwritten; other files in `root`
/// are not the demo's business. Then the source is marked as the demo's.
///
/// The mark names the texture the tiles were made with; a source made with another one is
/// refused by name rather than mixed (a mark without one is an earlier demo's: blocky).
fn claim_demo_dir(
    root: &std::path::Path,
    grid: &Grid,
    years: &[i32],
    texture: Texture,
) -> Result<()> {
    let source = root.join("source");
    let cube = root.join("cube");
    let holds_anything =
        |dir: &std::path::Path| std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
    let ours =
        source.join(DEMO_MARK).exists() || tilecube::demo::looks_made_by_demo(&source, grid, years);
    if !ours {
        for dir in [&source, &cube] {
            if dir.exists() && (!dir.is_dir() || holds_anything(dir)) {
                bail!(
                    "demo: {} is not the demo's (no earlier demo made it): the demo writes its tiles, lists and cube \
                     at {} and {}, and would overwrite what is there; choose a new or empty --dir",
                    dir.display(),
                    source.display(),
                    cube.display()
                );
            }
        }
    }
    if ours
        && source
            .read_dir()
            .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().is_dir())))
    {
        let mark = std::fs::read_to_string(source.join(DEMO_MARK)).unwrap_or_default();
        let made = mark
            .lines()
            .find_map(|l| l.strip_prefix("texture = "))
            .unwrap_or("blocky")
            .trim()
            .to_string();
        if made != texture.name() {
            bail!(
                "demo: the tiles in {} were made with --texture {made}; run the demo with \
                 --texture {made}, or choose a new --dir for {} tiles",
                source.display(),
                texture.name()
            );
        }
    }
    std::fs::create_dir_all(&source)
        .map_err(|e| anyhow::anyhow!("demo: making {}: {e}", source.display()))?;
    std::fs::write(
        source.join(DEMO_MARK),
        format!(
            "made by `tilecube demo`: its tiles and lists are synthetic\ntexture = {}\n",
            texture.name()
        ),
    )
    .map_err(|e| anyhow::anyhow!("demo: marking {}: {e}", source.display()))?;
    Ok(())
}

pub(crate) async fn demo(
    settings: &Settings,
    dir: Option<PathBuf>,
    pixels: u64,
    texture: Texture,
) -> Result<i32> {
    let root = dir.unwrap_or_else(|| data_dir().join("demo"));
    let source_dir = root.join("source");
    let repo_dir = root.join("cube");
    let mut demo_settings = settings.clone();
    demo_settings.repo = Some(repo_dir.display().to_string());
    demo_settings.source = Some(source_dir.display().to_string());
    demo_settings.tile_pixels = Some(pixels);
    // An earlier demo's cube keeps its tiles' size (another --pixels would not fit it) and
    // its preset, which lays the source out: a preset given that is not its own is refused
    // here, before a file is made.
    if let Ok(cube) = Cube::open(RepoLocation::Local(repo_dir.clone()), &settings.branch).await {
        if cube.layout.tile_pixels != pixels {
            bail!(
                "demo: the demo in {} was made with --pixels {}; run it with --pixels {}, or choose a new --dir for {pixels}-px tiles",
                root.display(),
                cube.layout.tile_pixels,
                cube.layout.tile_pixels
            );
        }
        demo_settings.adopt_preset(&cube.layout)?;
    }
    let preset = demo_settings.preset().clone();
    let grid = Grid::from_preset(&preset, Some(pixels))?;
    let years = preset.years();
    claim_demo_dir(&root, &grid, &years, texture)?;
    // The source is laid out as the preset says (GLAD's `{year}/{tile}.tif` by default).
    let laid_out =
        tilecube::source::Source::new(&source_dir.display().to_string(), &preset.source_spec())?;
    match tilecube::demo::missing_tiles(&laid_out, &grid, &years) {
        0 => eprintln!(
            "the demo source in {} is there from an earlier demo",
            source_dir.display()
        ),
        n => eprintln!(
            "making {} of a demo source in {} ...",
            tilecube::text::plural(n, "tile"),
            source_dir.display()
        ),
    }
    let per_year = {
        let (s, g, y) = (laid_out, grid.clone(), years.clone());
        let storage = settings.storage();
        tokio::task::spawn_blocking(move || {
            tilecube::demo::make_source(&s, &g, &y, texture, &storage)
        })
        .await??
    };
    eprintln!(
        "{per_year} land tiles per year, {}",
        tilecube::text::plural(years.len(), "year")
    );
    let location = demo_settings.location()?;
    if Cube::open(location.clone(), &demo_settings.branch)
        .await
        .is_err()
    {
        init(&demo_settings, false).await?;
    }
    let args = WriteArgs {
        choice: Choice {
            missing: true,
            ..Choice::default()
        },
        plan: None,
        shard: None,
        stage: None,
        detach: false,
        threads: None,
        commit_every: Some(100),
        commit_refs: None,
        read_ahead: None,
        json: false,
        message: None,
    };
    let code = write(&demo_settings, &args).await?;
    {
        use std::io::IsTerminal;
        if std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
            let s = demo_settings.clone();
            // The console runs its own runtime: leave this one's context for it.
            return tokio::task::spawn_blocking(move || crate::tui::run(&s)).await?;
        }
    }
    status(&demo_settings, false, &[], false).await?;
    eprintln!(
        "demo cube: {}\n  try: tilecube --repo {} --source {} log",
        repo_dir.display(),
        repo_dir.display(),
        source_dir.display()
    );
    Ok(code)
}
