//! The geometry of the pyramid: which overview levels a cube has, their sizes and chunks.
//!
//! Invariants: level `k` has factor `2^k` and is `ceil(size / 2^k)` pixels a side (the same as
//! halving `k` times, rounding up each time); levels go on until one is at most
//! [`MAX_COARSEST_WIDTH`] pixels wide, and that one is the last; wherever a tile maps to whole
//! pixels of a level, the level's chunks divide the tile there, so no chunk straddles two tiles
//! and a tile's overview is written from that tile alone.

/// The coarsest level is the first at most this many pixels wide.
pub const MAX_COARSEST_WIDTH: u64 = 2048;

/// One overview level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Level {
    /// How many level-0 pixels a side one pixel of this level covers (2, 4, 8, …).
    pub factor: u64,
    pub width: u64,
    pub height: u64,
    /// The level's chunk side.
    pub chunk: u64,
    /// A tile's side at this level, when the tile maps to whole pixels of it; `None` where
    /// one chunk spans several tiles (those levels are refreshed from the finest such level).
    pub tile_pixels: Option<u64>,
}

impl Level {
    /// Whether one chunk of this level may span several tiles (it is then refreshed from
    /// the level above at each commit, not written with a tile).
    pub fn is_coarse(&self) -> bool {
        self.tile_pixels.is_none()
    }

    /// The level's group in the repository: `overviews/{factor}`.
    pub fn group(&self) -> String {
        format!("overviews/{}", self.factor)
    }
}

/// The overview levels of a `width`×`height` cube of `tile`-pixel tiles in `chunk`-pixel
/// chunks, finest first. Empty when level 0 is already narrow enough.
pub fn pyramid(width: u64, height: u64, tile: u64, chunk: u64) -> Vec<Level> {
    pyramid_to(width, height, tile, chunk, MAX_COARSEST_WIDTH)
}

/// [`pyramid`] down to the first level at most `coarsest_width` pixels wide.
pub fn pyramid_to(
    width: u64,
    height: u64,
    tile: u64,
    chunk: u64,
    coarsest_width: u64,
) -> Vec<Level> {
    let mut levels = Vec::new();
    let mut factor = 1u64;
    let mut w = width;
    while w > coarsest_width.max(1) {
        factor *= 2;
        w = width.div_ceil(factor);
        let h = height.div_ceil(factor);
        let tile_pixels = tile.is_multiple_of(factor).then(|| tile / factor);
        let level_chunk = match tile_pixels {
            Some(t) => largest_divisor_at_most(t, chunk),
            None => chunk.min(w.max(h)),
        };
        levels.push(Level {
            factor,
            width: w,
            height: h,
            chunk: level_chunk,
            tile_pixels,
        });
    }
    levels
}

/// The largest divisor of `n` that is at most `limit` (1 at worst).
fn largest_divisor_at_most(n: u64, limit: u64) -> u64 {
    if n <= limit {
        return n;
    }
    (1..=limit)
        .rev()
        .find(|d| n.is_multiple_of(*d))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glad_has_ten_levels_down_to_1407_pixels_wide() {
        let levels = pyramid(1_440_000, 560_000, 40_000, 1000);
        let factors: Vec<u64> = levels.iter().map(|l| l.factor).collect();
        assert_eq!(factors, vec![2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]);
        let last = levels.last().expect("levels");
        assert_eq!((last.width, last.height), (1407, 547));
        assert!(last.width <= MAX_COARSEST_WIDTH);
        assert!(levels[levels.len() - 2].width > MAX_COARSEST_WIDTH);
        // 40 000 = 2^6 × 625: tiles map to whole pixels down to factor 64.
        assert_eq!(levels[0].tile_pixels, Some(20_000));
        assert_eq!(levels[0].chunk, 1000);
        assert_eq!(levels[5].tile_pixels, Some(625));
        assert_eq!(levels[5].chunk, 625, "a chunk never straddles two tiles");
        assert_eq!(levels[6].tile_pixels, None);
        assert_eq!(levels[4].group(), "overviews/32");
    }

    #[test]
    fn sizes_round_up_like_repeated_halving_and_chunks_divide_tiles() {
        for (w, h, tile, chunk) in [(14_400, 5_600, 400, 100), (5_000, 3, 1_000, 256)] {
            let levels = pyramid(w, h, tile, chunk);
            let (mut hw, mut hh) = (w, h);
            for l in &levels {
                (hw, hh) = (hw.div_ceil(2), hh.div_ceil(2));
                assert_eq!((l.width, l.height), (hw, hh), "{l:?}");
                if let Some(t) = l.tile_pixels {
                    assert_eq!(t % l.chunk, 0, "{l:?}");
                    assert!(l.chunk <= chunk);
                }
            }
        }
        assert!(
            pyramid(2048, 1000, 512, 256).is_empty(),
            "narrow enough already"
        );
    }
}
