//! A tile's overview chunks, made from its chunk strips as they are decoded, in whatever order
//! the workers finish them.
//!
//! Each strip is reduced on its own as far as its rows pair up (a 1,000-row strip: to factor
//! 8, where it is 125 rows); the rows of that level wait, strip by strip, for their turn and
//! go on in order through a [`StripPyramid`] to the finer-than-tile levels below. Each level's
//! rows are gathered into chunk rows; a complete chunk row is cut into chunks.
//!
//! Invariants: every chunk of every level a tile maps to whole chunks of comes out exactly
//! once, after the strips covering it came in, and equals that chunk of the repeated 2×2
//! reduction of the whole tile; memory holds the chunk rows being filled and the reduced
//! strips waiting for an earlier one, never the tile.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::reduce::{Resampling, reduce};
use super::stream::StripPyramid;

/// One chunk of an overview level of a tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelChunk {
    /// 1 for the first overview (factor 2), 2 for factor 4, …
    pub level: usize,
    /// The chunk's row and column within the tile at that level.
    pub row: u64,
    pub col: u64,
    /// `chunk`×`chunk` pixels, row-major.
    pub pixels: Vec<u8>,
}

/// Size of a tile at one level and that level's chunk side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileLevel {
    pub tile: usize,
    pub chunk: usize,
}

impl TileLevel {
    /// A level's tile size and chunk, when a tile maps to whole pixels of it.
    pub fn of(level: &super::Level) -> Option<Self> {
        Some(Self {
            tile: level.tile_pixels? as usize,
            chunk: level.chunk as usize,
        })
    }
}

/// A chunk row of a level being filled.
struct ChunkRow {
    pixels: Vec<u8>,
    rows: usize,
}

/// What the workers share, behind one lock.
struct State {
    /// Rows of level `independent` by strip, waiting for the strips before them.
    waiting: BTreeMap<usize, Vec<u8>>,
    /// The next strip the ordered levels take.
    next: usize,
    ordered: Option<StripPyramid>,
    /// Per level (index 0 = level 1): chunk rows being filled, by chunk row.
    rows: Vec<BTreeMap<usize, ChunkRow>>,
}

/// The overview levels of one tile, fed by its chunk strips (level 0, `side` rows each).
pub struct TilePyramid {
    fill: u8,
    how: Resampling,
    side: usize,
    width: usize,
    levels: Vec<TileLevel>,
    /// Levels each strip is reduced to on its own (its rows pair up down to there).
    independent: usize,
    state: Mutex<State>,
}

impl TilePyramid {
    /// The pyramid of a `width`-pixel tile read in strips of `side` rows, for `levels`
    /// (factor 2, 4, … each the tile's size there and the chunk side that divides it).
    pub fn new(
        width: usize,
        side: usize,
        levels: Vec<TileLevel>,
        fill: u8,
        how: Resampling,
    ) -> Self {
        let independent = (side.trailing_zeros() as usize).min(levels.len());
        let ordered_width = levels
            .get(independent.wrapping_sub(1))
            .map(|l| l.tile)
            .unwrap_or(width);
        let ordered = (independent < levels.len())
            .then(|| StripPyramid::new(ordered_width, levels.len() - independent, fill, how));
        let rows = levels.iter().map(|_| BTreeMap::new()).collect();
        Self {
            fill,
            how,
            side,
            width,
            levels,
            independent,
            state: Mutex::new(State {
                waiting: BTreeMap::new(),
                next: 0,
                ordered,
                rows,
            }),
        }
    }

    /// Whether the tile has any level to make.
    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Whether a strip's first level can be given instead of the strip
    /// ([`TilePyramid::add_first_level`]): the strip's rows pair up, and so do a chunk's.
    pub fn takes_first_level(&self) -> bool {
        self.independent >= 1 && self.width.is_multiple_of(self.side)
    }

    /// The 2×2 reduction of one `side`×`side` chunk of a strip: its piece of the strip's first
    /// level (chunks of an even side reduce exactly as the strip they are cut from).
    pub fn reduce_chunk(&self, chunk: &[u8], side: usize) -> Vec<u8> {
        reduce(chunk, side, side, self.fill, self.how)
    }

    /// A strip's first level from the reductions of its chunks, left to right
    /// ([`TilePyramid::reduce_chunk`]): the pieces side by side.
    pub fn join_first_level(&self, pieces: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
        let (half, width) = (self.side / 2, self.width / 2);
        let mut rows = vec![self.fill; half * width];
        for (sx, piece) in pieces.into_iter().enumerate() {
            for (r, line) in piece.chunks_exact(half).enumerate() {
                let at = r * width + sx * half;
                rows[at..at + half].copy_from_slice(line);
            }
        }
        rows
    }

    /// Take strip `sy` (rows `sy * side ..`) of level 0; returns the chunks it completes.
    pub fn add_strip(&self, sy: usize, strip: &[u8]) -> Vec<LevelChunk> {
        if self.independent == 0 {
            return self.add_levels(sy, Vec::new(), strip);
        }
        let first = reduce(strip, self.width, self.side, self.fill, self.how);
        self.add_levels(sy, vec![first], strip)
    }

    /// Take strip `sy`'s first overview level (`side / 2` rows of the level's width), reduced
    /// already (see [`TilePyramid::takes_first_level`]); returns the chunks it completes.
    pub fn add_first_level(&self, sy: usize, first: Vec<u8>) -> Vec<LevelChunk> {
        self.add_levels(sy, vec![first], &[])
    }

    /// The levels of strip `sy` from `own` (its first levels, reduced already) on; `strip` is
    /// the strip itself, used only when it has no level of its own.
    fn add_levels(&self, sy: usize, mut own: Vec<Vec<u8>>, strip: &[u8]) -> Vec<LevelChunk> {
        // Each strip on its own, outside the lock, as far as its rows pair up.
        let (mut w, mut h) = (self.width, self.side);
        for _ in 0..own.len() {
            (w, h) = (w.div_ceil(2), h.div_ceil(2));
        }
        while own.len() < self.independent {
            let src: &[u8] = own.last().map(Vec::as_slice).unwrap_or(strip);
            let reduced = reduce(src, w, h, self.fill, self.how);
            (w, h) = (w.div_ceil(2), h.div_ceil(2));
            own.push(reduced);
        }
        let Ok(mut state) = self.state.lock() else {
            return Vec::new();
        };
        let mut complete = Vec::new();
        for (i, pixels) in own.iter().enumerate() {
            let rows_per_strip = self.side >> (i + 1);
            self.place(&mut state, i, sy * rows_per_strip, pixels, &mut complete);
        }
        // The ordered levels, strip after strip.
        if state.ordered.is_some() {
            let rows = own.pop().unwrap_or_else(|| strip.to_vec());
            state.waiting.insert(sy, rows);
            let strips = self.width / self.side;
            loop {
                let next = state.next;
                let Some(rows) = state.waiting.remove(&next) else {
                    break;
                };
                state.next += 1;
                let mut out = match state.ordered.as_mut() {
                    Some(p) => p.push(&rows),
                    None => Vec::new(),
                };
                if state.next == strips
                    && let Some(p) = state.ordered.take()
                {
                    out.extend(p.finish());
                }
                for r in out {
                    let level = self.independent + r.level;
                    self.place(&mut state, level, r.first_row, &r.pixels, &mut complete);
                }
            }
        }
        drop(state);
        complete
            .into_iter()
            .flat_map(|(i, row, pixels)| self.cut(i, row, pixels))
            .collect()
    }

    /// Put rows `first..` of level index `i` into their chunk rows; complete ones go to
    /// `complete`.
    fn place(
        &self,
        state: &mut State,
        i: usize,
        first: usize,
        pixels: &[u8],
        complete: &mut Vec<(usize, usize, Vec<u8>)>,
    ) {
        let TileLevel { tile, chunk } = self.levels[i];
        let n = pixels.len() / tile;
        let mut r = 0;
        while r < n {
            let row = first + r;
            let cr = row / chunk;
            let take = (chunk - row % chunk).min(n - r);
            let slot = state.rows[i].entry(cr).or_insert_with(|| ChunkRow {
                pixels: vec![self.fill; chunk * tile],
                rows: 0,
            });
            let at = (row % chunk) * tile;
            slot.pixels[at..at + take * tile].copy_from_slice(&pixels[r * tile..(r + take) * tile]);
            slot.rows += take;
            if slot.rows >= chunk
                && let Some(done) = state.rows[i].remove(&cr)
            {
                complete.push((i, cr, done.pixels));
            }
            r += take;
        }
    }

    /// Cut a complete chunk row of level index `i` into its chunks.
    fn cut(&self, i: usize, row: usize, pixels: Vec<u8>) -> Vec<LevelChunk> {
        let TileLevel { tile, chunk } = self.levels[i];
        (0..tile / chunk)
            .map(|col| {
                let mut out = Vec::with_capacity(chunk * chunk);
                for line in pixels.chunks_exact(tile) {
                    out.extend_from_slice(&line[col * chunk..(col + 1) * chunk]);
                }
                LevelChunk {
                    level: i + 1,
                    row: row as u64,
                    col: col as u64,
                    pixels: out,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILL: u8 = 255;

    fn raster(w: usize, h: usize) -> Vec<u8> {
        (0..w * h)
            .map(|i| match (i * 7 + i / w * 3 + i / 97) % 11 {
                0 | 1 => FILL,
                k => (k as u8) * 10,
            })
            .collect()
    }

    /// Every level's chunks, from the whole tile's repeated reduction.
    fn reference(tile: &[u8], w: usize, levels: &[TileLevel]) -> Vec<LevelChunk> {
        let (mut cur, mut cw) = (tile.to_vec(), w);
        let mut out = Vec::new();
        for (i, l) in levels.iter().enumerate() {
            cur = reduce(&cur, cw, cw, FILL, Resampling::Mode);
            cw = cw.div_ceil(2);
            assert_eq!(cw, l.tile);
            for row in 0..l.tile / l.chunk {
                for col in 0..l.tile / l.chunk {
                    let mut px = Vec::new();
                    for y in row * l.chunk..(row + 1) * l.chunk {
                        px.extend_from_slice(
                            &cur[y * cw + col * l.chunk..y * cw + (col + 1) * l.chunk],
                        );
                    }
                    out.push(LevelChunk {
                        level: i + 1,
                        row: row as u64,
                        col: col as u64,
                        pixels: px,
                    });
                }
            }
        }
        out
    }

    fn sorted(mut v: Vec<LevelChunk>) -> Vec<LevelChunk> {
        v.sort_by_key(|c| (c.level, c.row, c.col));
        v
    }

    #[test]
    fn strips_in_any_order_give_the_whole_tiles_chunks_once() {
        // 400-px tiles in 100-row strips: factor 2 and 4 from each strip alone (100 = 4×25),
        // factor 8 and 16 in order; chunks 100, 100, 50, 25.
        let (w, side) = (400, 100);
        let levels = vec![
            TileLevel {
                tile: 200,
                chunk: 100,
            },
            TileLevel {
                tile: 100,
                chunk: 100,
            },
            TileLevel {
                tile: 50,
                chunk: 50,
            },
            TileLevel {
                tile: 25,
                chunk: 25,
            },
        ];
        let tile = raster(w, w);
        let want = sorted(reference(&tile, w, &levels));
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
            let p = TilePyramid::new(w, side, levels.clone(), FILL, Resampling::Mode);
            let mut got = Vec::new();
            for sy in order {
                got.extend(p.add_strip(sy, &tile[sy * side * w..(sy + 1) * side * w]));
            }
            assert_eq!(sorted(got), want, "strips in order {order:?}");
        }
    }

    #[test]
    fn first_levels_reduced_chunk_by_chunk_give_the_same_chunks() {
        let (w, side) = (400, 100);
        let levels = vec![
            TileLevel {
                tile: 200,
                chunk: 100,
            },
            TileLevel {
                tile: 100,
                chunk: 50,
            },
            TileLevel {
                tile: 50,
                chunk: 50,
            },
        ];
        let tile = raster(w, w);
        let p = TilePyramid::new(w, side, levels.clone(), FILL, Resampling::Mode);
        assert!(p.takes_first_level());
        let mut got = Vec::new();
        for sy in [2, 0, 3, 1] {
            let strip = &tile[sy * side * w..(sy + 1) * side * w];
            // Each chunk reduced on its own, the pieces put side by side.
            let pieces = (0..w / side).map(|sx| {
                let chunk: Vec<u8> = strip
                    .chunks_exact(w)
                    .flat_map(|row| row[sx * side..(sx + 1) * side].to_vec())
                    .collect();
                p.reduce_chunk(&chunk, side)
            });
            let first = p.join_first_level(pieces);
            got.extend(p.add_first_level(sy, first));
        }
        assert_eq!(sorted(got), sorted(reference(&tile, w, &levels)));
    }

    #[test]
    fn an_odd_strip_height_reduces_every_level_in_order() {
        let (w, side) = (40, 5);
        let levels = vec![
            TileLevel { tile: 20, chunk: 5 },
            TileLevel {
                tile: 10,
                chunk: 10,
            },
            TileLevel { tile: 5, chunk: 5 },
        ];
        let tile = raster(w, w);
        let p = TilePyramid::new(w, side, levels.clone(), FILL, Resampling::Mode);
        assert_eq!(p.independent, 0);
        let mut got = Vec::new();
        for sy in (0..8).rev() {
            got.extend(p.add_strip(sy, &tile[sy * side * w..(sy + 1) * side * w]));
        }
        assert_eq!(sorted(got), sorted(reference(&tile, w, &levels)));
    }
}
