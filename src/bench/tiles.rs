//! The bench's tiles: GLAD-like tiles made with GDAL, COG copies of them, and the floor
//! (decode and encode CPU of one tile) they are measured against.

use super::*;

pub(super) fn generate(cache: &Path, grid: &Grid, year: i32, tiles: &[TileName]) -> Result<()> {
    use rayon::prelude::*;
    let missing: Vec<_> = tiles
        .iter()
        .filter(|t| !tilecube::demo::tile_path(cache, year, **t).exists())
        .collect();
    if !missing.is_empty() {
        println!(
            "generating {} tiles in {} ...",
            missing.len(),
            cache.display()
        );
        let start = Instant::now();
        missing.par_iter().try_for_each(|&&t| {
            let path = tilecube::demo::tile_path(cache, year, t);
            let tmp = path.with_extension("tif.part");
            tilecube::demo::write_tile(&tmp, grid, t, year)?;
            std::fs::rename(&tmp, &path)?;
            Ok::<_, anyhow::Error>(())
        })?;
        println!("  generated in {:.0} s", start.elapsed().as_secs_f64());
    }
    tilecube::demo::write_list(cache, year, tiles)?;
    Ok(())
}

/// COG copies of the tiles (512² blocks, LZW, no overviews: a writer reads full
/// resolution only), made with `gdal_translate` when absent, and their list.
pub(super) fn make_cogs(striped: &Path, cog: &Path, year: i32, tiles: &[TileName]) -> Result<()> {
    for &t in tiles {
        let out = tilecube::demo::tile_path(cog, year, t);
        if out.exists() {
            continue;
        }
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = out.with_extension("tif.part");
        let status = Command::new("gdal_translate")
            .args([
                "-q",
                "-of",
                "COG",
                "-co",
                "BLOCKSIZE=512",
                "-co",
                "COMPRESS=LZW",
            ])
            .args(["-co", "OVERVIEWS=NONE", "-co", "NUM_THREADS=ALL_CPUS"])
            .arg(tilecube::demo::tile_path(striped, year, t))
            .arg(&tmp)
            .status()
            .context("running gdal_translate (gdal-bin)")?;
        if !status.success() {
            bail!("gdal_translate failed for {t}");
        }
        std::fs::rename(&tmp, &out)?;
    }
    tilecube::demo::write_list(cog, year, tiles)?;
    Ok(())
}

/// Single-threaded decode and encode CPU time of one tile.
pub(super) fn floor_tile(
    path: &str,
    grid: &Grid,
    tile: TileName,
    encoder: &ChunkEncoder,
) -> Result<(Duration, Duration)> {
    let (reader, _) = TileReader::open(path, grid, tile)?;
    let side = grid.chunk_pixels as usize;
    let width = grid.tile_pixels as usize;
    let mut strip = vec![0u8; side * width];
    let mut chunk = Vec::with_capacity(side * side);
    let (mut decode, mut encode) = (Duration::ZERO, Duration::ZERO);
    let mut stored = 0usize;
    for sy in 0..grid.chunks_per_side() as usize {
        let t0 = cpu_thread();
        reader.read_rows(sy * side, side, &mut strip)?;
        let t1 = cpu_thread();
        for sx in 0..grid.chunks_per_side() as usize {
            chunk.clear();
            for row in strip.chunks_exact(width) {
                chunk.extend_from_slice(&row[sx * side..(sx + 1) * side]);
            }
            if encoder.encode(&chunk)?.is_some() {
                stored += 1;
            }
        }
        let t2 = cpu_thread();
        decode += t1 - t0;
        encode += t2 - t1;
    }
    std::hint::black_box(stored);
    Ok((decode, encode))
}
