//! The bench's tiles: GLAD-like tiles made with GDAL (in either texture), COG copies of them,
//! and the floor (decode, encode and pyramid CPU of one tile) they are measured against.

use super::*;

pub(super) fn generate(
    cache: &Path,
    grid: &Grid,
    year: i32,
    tiles: &[TileName],
    texture: tilecube::demo::Texture,
) -> Result<()> {
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
            tilecube::demo::write_textured_tile(&tmp, grid, t, year, texture)?;
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

/// What one tile costs on one core, and what its pixels are like.
#[derive(Debug, Default)]
pub(super) struct TileFloor {
    pub decode: Duration,
    pub encode: Duration,
    /// The overview levels a tile maps to whole chunks of: reduction (and cutting), and the
    /// levels' chunks' encoding.
    pub pyramid: Duration,
    pub level_encode: Duration,
    pub level_bytes: u64,
    pub raw_bytes: u64,
    pub chunk_bytes: u64,
    pub uniform_blocks: u64,
    pub blocks: u64,
    /// A few of its chunk strips, for the reduction's micro-benchmark.
    pub sample: Vec<Vec<u8>>,
}

/// Single-threaded decode, encode and pyramid CPU time of one tile, with its 2×2 blocks of one
/// value and its chunks' zstd bytes counted; keeps `sample` chunk strips from its middle.
pub(super) fn floor_tile(
    path: &str,
    grid: &Grid,
    tile: TileName,
    layout: &Layout,
    sample: usize,
) -> Result<TileFloor> {
    use tilecube::overview::{Resampling, TileLevel, TilePyramid};
    let encoder = ChunkEncoder::new(layout)?;
    // A local tile: no storage settings to reach it with.
    let (reader, _) = TileReader::open(path, grid, tile, &Default::default())?;
    let side = grid.chunk_pixels as usize;
    let width = grid.tile_pixels as usize;
    let levels: Vec<TileLevel> = layout
        .tile_levels()
        .iter()
        .filter_map(TileLevel::of)
        .collect();
    let level_encoders = (1..=levels.len())
        .map(|k| ChunkEncoder::for_level(layout, k))
        .collect::<Result<Vec<_>, _>>()?;
    let pyramid = TilePyramid::new(width, side, levels, layout.fill_value, Resampling::Mode);
    let mut strip = vec![0u8; side * width];
    let mut chunk = Vec::with_capacity(side * side);
    let mut f = TileFloor::default();
    let strips = grid.chunks_per_side() as usize;
    let first_sample = strips.saturating_sub(sample) / 2;
    for sy in 0..strips {
        let t0 = cpu_thread();
        reader.read_rows(sy * side, side, &mut strip)?;
        let t1 = cpu_thread();
        // As the write does: the first level reduced chunk by chunk while each is in cache.
        let mut pieces = Vec::new();
        let mut reducing = Duration::ZERO;
        for sx in 0..grid.chunks_per_side() as usize {
            chunk.clear();
            for row in strip.chunks_exact(width) {
                chunk.extend_from_slice(&row[sx * side..(sx + 1) * side]);
            }
            if pyramid.takes_first_level() {
                let r0 = cpu_thread();
                pieces.push(pyramid.reduce_chunk(&chunk, side));
                reducing += cpu_thread() - r0;
            }
            if let Some(bytes) = encoder.encode(&chunk)? {
                f.chunk_bytes += bytes.len() as u64;
            }
        }
        let t2 = cpu_thread();
        let level_chunks = if pyramid.takes_first_level() {
            pyramid.add_first_level(sy, pyramid.join_first_level(pieces))
        } else {
            pyramid.add_strip(sy, &strip)
        };
        let t3 = cpu_thread();
        for c in level_chunks {
            if let Some(bytes) = level_encoders[c.level - 1].encode(&c.pixels)? {
                f.level_bytes += bytes.len() as u64;
            }
        }
        let t4 = cpu_thread();
        f.decode += t1 - t0;
        f.encode += t2 - t1 - reducing;
        f.pyramid += t3 - t2 + reducing;
        f.level_encode += t4 - t3;
        f.raw_bytes += strip.len() as u64;
        for pair in strip.chunks_exact(2 * width) {
            let (top, bottom) = pair.split_at(width);
            for (t, b) in top.chunks_exact(2).zip(bottom.chunks_exact(2)) {
                f.uniform_blocks += (t[0] == t[1] && t[0] == b[0] && t[0] == b[1]) as u64;
            }
        }
        f.blocks += (side / 2 * width / 2) as u64;
        if (first_sample..first_sample + sample).contains(&sy) {
            f.sample.push(strip.clone());
        }
    }
    Ok(f)
}
