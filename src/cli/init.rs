//! `tilecube init`: the repository made and the cube laid out in one commit.

use anyhow::Result;

use tilecube::config::Settings;
use tilecube::cube::{Cube, InitOptions, Layout};
use tilecube::grid::Grid;

pub(crate) async fn init(settings: &Settings, force: bool) -> Result<i32> {
    let location = settings.location()?;
    let started = std::time::Instant::now();
    // Laying out a new cube over one that writes are going on: they are named. With no
    // preset given, the new cube is laid out with the old one's own; of the same preset, at
    // its tile size unless --tile-pixels gives another.
    let mut tile_pixels = settings.tile_pixels;
    if force && let Ok(old) = Cube::open(location.clone(), &settings.branch).await {
        if settings.preset_given.is_none() {
            settings.adopt_preset(&old.layout)?;
            if settings.preset().name != tilecube::preset::Preset::default_preset().name {
                eprintln!(
                    "laying the cube out again with its own preset {} (--preset chooses another)",
                    settings.preset().name
                );
            }
        } else if old.layout.preset != settings.preset().name {
            eprintln!(
                "the cube's preset changes from {} to {}: the new cube is laid out with {}",
                old.layout.preset,
                settings.preset().name,
                settings.preset_given.as_deref().unwrap_or_default()
            );
        }
        if old.layout.preset == settings.preset().name {
            tile_pixels = tile_pixels.or(Some(old.layout.tile_pixels));
        }
        super::extend::warn_running_writes(
            &old,
            "a new cube replaces the one they write (their tiles do not carry over)",
        )
        .await;
    }
    let grid = Grid::from_preset(settings.preset(), tile_pixels)?;
    let layout = Layout::new(settings.preset(), &grid);
    let cube = Cube::init(
        location,
        layout,
        &InitOptions {
            spec_version: settings.spec_version,
            force,
            branch: settings.branch.clone(),
        },
    )
    .await?;
    let [t, h, w] = cube.layout.shape();
    println!(
        "initialized {} ({}): {}(year={t}, y={h}, x={w}) chunks {:?}, in {:.2} s",
        cube.location,
        cube.head().await?,
        cube.layout.variable,
        cube.layout.chunk_shape(),
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}
