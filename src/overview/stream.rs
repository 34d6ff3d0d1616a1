//! A tile's overview levels computed as its pixels stream by, strip after strip, from the
//! pixels already decoded (no second read), in memory that does not grow with the tile.
//!
//! Invariants: pushing a tile's rows in strips of any heights yields, for each level, exactly
//! the rows of the repeated 2×2 reduction of the whole tile ([`super::reduce`]); between
//! pushes each level holds at most one row waiting for its pair, so memory is a few rows a
//! level whatever the tile's size; [`StripPyramid::finish`] reduces a last unpaired row (the
//! bottom edge) as the reduction does.

use super::reduce::{Resampling, reduce};

/// Rows of one level, ready to be written: `rows` rows of the level's width, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelRows {
    /// 0 for the first overview (factor 2), 1 for factor 4, …
    pub level: usize,
    /// The first row's index within the tile at this level.
    pub first_row: usize,
    pub rows: usize,
    pub pixels: Vec<u8>,
}

/// One level's state: its width, a row waiting for its pair, and rows emitted so far.
#[derive(Debug)]
struct Stage {
    width: usize,
    pending: Vec<u8>,
    emitted: usize,
}

/// The overview levels of one tile, fed by strips of level-0 rows.
#[derive(Debug)]
pub struct StripPyramid {
    fill: u8,
    how: Resampling,
    /// Level 0's width and rows received, then each overview level.
    width: usize,
    stages: Vec<Stage>,
}

impl StripPyramid {
    /// `levels` overview levels of a tile `width` pixels wide.
    pub fn new(width: usize, levels: usize, fill: u8, how: Resampling) -> Self {
        let mut stages = Vec::with_capacity(levels);
        let mut w = width;
        for _ in 0..levels {
            w = w.div_ceil(2);
            stages.push(Stage {
                width: w,
                pending: Vec::new(),
                emitted: 0,
            });
        }
        Self {
            fill,
            how,
            width,
            stages,
        }
    }

    /// Take the next `pixels.len() / width` rows of level 0; returns the level rows they
    /// complete, finest level first.
    pub fn push(&mut self, pixels: &[u8]) -> Vec<LevelRows> {
        let mut out = Vec::new();
        self.feed(0, pixels, self.width, false, &mut out);
        out
    }

    /// The tile's last rows: a level's unpaired bottom row is reduced on its own.
    pub fn finish(mut self) -> Vec<LevelRows> {
        let mut out = Vec::new();
        self.feed(0, &[], self.width, true, &mut out);
        out
    }

    /// Give `rows` of the level above stage `k` (width `w`) to stage `k`, and what it
    /// completes to the stages below.
    fn feed(&mut self, k: usize, rows: &[u8], w: usize, last: bool, out: &mut Vec<LevelRows>) {
        let Some(stage) = self.stages.get_mut(k) else {
            return;
        };
        let mut input = std::mem::take(&mut stage.pending);
        input.extend_from_slice(rows);
        let n = input.len().checked_div(w).unwrap_or(0);
        // Pairs now; an odd last row waits for its pair, unless the tile ends here.
        let take = if last { n } else { n - n % 2 };
        if take < n {
            stage.pending = input[take * w..].to_vec();
        }
        if take == 0 {
            if last {
                self.feed(k + 1, &[], self.stages[k].width, true, out);
            }
            return;
        }
        let reduced = reduce(&input[..take * w], w, take, self.fill, self.how);
        let stage = &mut self.stages[k];
        let produced = take.div_ceil(2);
        let first_row = stage.emitted;
        stage.emitted += produced;
        let width = stage.width;
        out.push(LevelRows {
            level: k,
            first_row,
            rows: produced,
            pixels: reduced.clone(),
        });
        self.feed(k + 1, &reduced, width, last, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILL: u8 = 255;

    fn raster(w: usize, h: usize) -> Vec<u8> {
        (0..w * h)
            .map(|i| match (i * 7 + i / w * 3) % 9 {
                0 => FILL,
                k => (k as u8) * 10,
            })
            .collect()
    }

    /// Each level of the whole tile, by repeated reduction.
    fn whole(src: &[u8], w: usize, h: usize, levels: usize, how: Resampling) -> Vec<Vec<u8>> {
        let (mut cur, mut cw, mut ch) = (src.to_vec(), w, h);
        let mut out = Vec::new();
        for _ in 0..levels {
            cur = reduce(&cur, cw, ch, FILL, how);
            (cw, ch) = (cw.div_ceil(2), ch.div_ceil(2));
            out.push(cur.clone());
        }
        out
    }

    #[test]
    fn strips_of_any_height_give_the_whole_tiles_levels() {
        for (w, h) in [(40, 40), (37, 29), (16, 1), (5, 64)] {
            let src = raster(w, h);
            for how in [Resampling::Mode, Resampling::Average] {
                let want = whole(&src, w, h, 4, how);
                for strip in [1, 2, 3, 8, 10, 64] {
                    let mut p = StripPyramid::new(w, 4, FILL, how);
                    let mut got = vec![Vec::new(); 4];
                    let mut next_row = [0usize; 4];
                    let mut take = |rows: Vec<LevelRows>| {
                        for r in rows {
                            assert_eq!(r.first_row, next_row[r.level], "rows in order");
                            next_row[r.level] += r.rows;
                            got[r.level].extend(r.pixels);
                        }
                    };
                    for chunk in src.chunks(strip * w) {
                        take(p.push(chunk));
                    }
                    take(p.finish());
                    assert_eq!(got, want, "{w}×{h} in strips of {strip} ({how:?})");
                }
            }
        }
    }

    #[test]
    fn a_level_holds_at_most_one_row_between_strips() {
        let (w, h) = (64, 64);
        let src = raster(w, h);
        let mut p = StripPyramid::new(w, 5, FILL, Resampling::Mode);
        for chunk in src.chunks(3 * w) {
            p.push(chunk);
            // A stage's pending row is one row of the level above: at most twice its width.
            for s in &p.stages {
                assert!(s.pending.len() <= 2 * s.width, "{}", s.pending.len());
            }
        }
    }
}
