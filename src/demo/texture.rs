//! The pixels of synthetic tiles, in two textures.
//!
//! - [`Texture::Glad`] (the default of `bench` and `demo`) follows the GLAD legend's structure:
//!   patches a few kilometres across (about 100 px), each of one class group, with wavy edges;
//!   inside the groups that carry a quantity pixel by pixel (short-vegetation cover in percent,
//!   tree height in metres, wetland vegetation) every pixel varies around its patch's value, as
//!   GLAD's do; cropland, water, snow and ocean patches are of one value; built-up and desert
//!   are speckled; large zones are ocean, and a few are no data (the fill, 255). About two
//!   blocks of 2×2 in five are of one value, and the tiles compress about as GLAD's do.
//! - [`Texture::Blocky`]: 37×29-px blocks of one class with a 1-in-8 speckle — the tiles of
//!   the first benchmarks, smooth enough to flatter any shortcut for blocks of one value.
//!
//! Invariants: a pixel depends only on (texture, tile, year, x, y), so tiles can be made in
//! any order and checked pixel by pixel; from one 5-year epoch to the next about one patch in
//! ten changes class.

/// Which synthetic pixels a tile gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Texture {
    /// Patches of class groups with per-pixel quantities inside them, like GLAD's tiles.
    #[default]
    Glad,
    /// Blocks of one class with a light speckle (smooth: flatters uniform-block shortcuts).
    Blocky,
    /// The GLAD-like texture whose class groups follow latitude as land cover does (the
    /// demo's): snow and ice near the poles, tundra, boreal forest, temperate cropland and
    /// forest, desert belts near 20–30°, dense vegetation near the equator; lakes and a few
    /// towns everywhere.
    World,
}

impl Texture {
    /// The texture's name, as `--texture` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Glad => "glad",
            Self::Blocky => "blocky",
            Self::World => "world",
        }
    }

    /// Every texture.
    pub const ALL: [Texture; 3] = [Self::Glad, Self::Blocky, Self::World];

    /// Fill `out` with the pixels of row `y` from column `x0` on, in a tile whose pixels are
    /// `pixel_degrees` a side (the world texture places them on the globe; the others do not
    /// look).
    pub fn fill_row(
        self,
        tile: TileName,
        year: i32,
        y: usize,
        x0: usize,
        pixel_degrees: f64,
        out: &mut [u8],
    ) {
        match self {
            Self::Glad => glad_row(tile, year, y, x0, None, out),
            Self::Blocky => blocky_row(tile, year, y, x0, out),
            Self::World => glad_row(tile, year, y, x0, Some(pixel_degrees), out),
        }
    }
}

impl std::str::FromStr for Texture {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown texture {s:?}: use world, glad or blocky"))
    }
}

impl std::fmt::Display for Texture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

use crate::grid::TileName;

pub(super) fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn tile_seed(tile: TileName) -> u64 {
    ((tile.lat + 90) as u64) << 32 | (tile.lon + 180) as u64
}

fn epoch(year: i32) -> u64 {
    ((year - 2000).max(0) / 5) as u64
}

/// Blocky classes 0..=40 with speckle, some water (255), a few blocks changing each year.
fn blocky_row(tile: TileName, year: i32, y: usize, x0: usize, out: &mut [u8]) {
    let seed = tile_seed(tile);
    let epoch = epoch(year);
    let by = (y / 29) as u64;
    let mut x = x0;
    let mut i = 0;
    while i < out.len() {
        let bx = (x / 37) as u64;
        let run = (37 - x % 37).min(out.len() - i);
        let h = mix(seed ^ (bx << 16) ^ (by << 40));
        let class = if h.is_multiple_of(11) {
            255
        } else if mix(h ^ epoch).is_multiple_of(13) {
            (mix(h ^ (epoch << 7)) % 41) as u8
        } else {
            ((h >> 8) % 41) as u8
        };
        for (k, p) in out[i..i + run].iter_mut().enumerate() {
            let xx = (x + k) as u64;
            let speckle = (xx.wrapping_mul(2_654_435_761) ^ (y as u64).wrapping_mul(40_503)) >> 13;
            *p = if class != 255 && speckle & 7 == 0 {
                (class + 1 + (speckle >> 3) as u8 % 3) % 41
            } else {
                class
            };
        }
        x += run;
        i += run;
    }
}

/// Side of a patch, in pixels (about 3 km at GLAD's 0.00025°).
const PATCH: usize = 96;
/// Side of a zone (ocean, no data or land), in pixels.
const ZONE: usize = 1600;
/// How far patch edges wander, in pixels either way.
const WAVE: usize = 12;

/// A class group: how its patch value is chosen and how pixels vary around it.
#[derive(Clone, Copy)]
enum Group {
    /// One value for the patch (cropland, water, snow, ocean).
    Flat,
    /// Each pixel: the patch value plus a step in `-spread..=spread`, within `lo..=hi`.
    Varied { lo: u8, hi: u8, spread: u8 },
    /// The patch value, one pixel in `1/n` another value of the range.
    Speckled { lo: u8, hi: u8, n: u32 },
}

/// The groups and their shares (out of 100) of land patches, with their value ranges.
const GROUPS: &[(u32, Group, u8, u8)] = &[
    // tree cover, height in metres above the class offset
    (
        32,
        Group::Varied {
            lo: 49,
            hi: 96,
            spread: 3,
        },
        55,
        90,
    ),
    // semi-arid and short vegetation, cover in percent
    (
        22,
        Group::Varied {
            lo: 2,
            hi: 24,
            spread: 2,
        },
        4,
        22,
    ),
    // dense short vegetation
    (
        8,
        Group::Varied {
            lo: 25,
            hi: 48,
            spread: 2,
        },
        27,
        46,
    ),
    // wetland vegetation
    (
        5,
        Group::Varied {
            lo: 100,
            hi: 196,
            spread: 3,
        },
        110,
        180,
    ),
    // cropland
    (15, Group::Flat, 244, 249),
    // open surface water
    (6, Group::Flat, 200, 211),
    // snow and ice
    (2, Group::Flat, 241, 241),
    // built-up
    (
        4,
        Group::Speckled {
            lo: 250,
            hi: 253,
            n: 4,
        },
        250,
        253,
    ),
    // true desert
    (6, Group::Speckled { lo: 0, hi: 1, n: 8 }, 0, 1),
];

/// The group and value of a patch (its cell, in patch units) for an epoch; the groups'
/// shares are [`GROUPS`]' own, or `shares` (out of 100, in the order of [`GROUPS`]).
fn patch(seed: u64, px: u64, py: u64, epoch: u64, shares: Option<&[f64; 9]>) -> (Group, u8) {
    let mut h = mix(seed ^ (px << 20) ^ (py << 42) ^ 0x5eed);
    // About one patch in ten changes from an epoch to the next.
    for e in 1..=epoch {
        if mix(h ^ e).is_multiple_of(10) {
            h = mix(h ^ (e << 8));
        }
    }
    let mut pick = (h % 10_000) as f64 / 100.0;
    for (i, &(share, group, lo, hi)) in GROUPS.iter().enumerate() {
        let share = shares.map_or(share as f64, |s| s[i]);
        if pick < share {
            let span = (hi - lo) as u64 + 1;
            return (group, lo + ((h >> 16) % span) as u8);
        }
        pick -= share;
    }
    (Group::Flat, 244)
}

/// The groups' shares (order of [`GROUPS`]: tree cover, semi-arid and short vegetation,
/// dense short vegetation, wetland, cropland, water, snow and ice, built-up, desert) at
/// belts of absolute latitude; between two belts they blend.
const BELTS: &[(f64, [f64; 9])] = &[
    (0.0, [58.0, 5.0, 15.0, 10.0, 8.0, 3.0, 0.0, 1.0, 0.0]),
    (12.0, [40.0, 10.0, 23.5, 6.0, 14.0, 3.0, 0.0, 1.5, 2.0]),
    (22.0, [2.0, 30.0, 3.0, 1.0, 6.0, 1.0, 0.0, 1.0, 56.0]),
    (32.0, [8.0, 38.5, 8.0, 2.0, 18.0, 2.0, 0.0, 1.5, 22.0]),
    (45.0, [30.0, 15.0, 12.0, 4.0, 33.0, 4.0, 0.0, 2.0, 0.0]),
    (58.0, [58.5, 10.0, 5.0, 12.0, 5.0, 8.0, 1.0, 0.5, 0.0]),
    (68.0, [8.0, 48.0, 10.0, 12.0, 0.0, 9.0, 13.0, 0.0, 0.0]),
    (78.0, [0.0, 12.0, 2.0, 3.0, 0.0, 6.0, 77.0, 0.0, 0.0]),
];

/// The groups' shares at a place on the globe: by latitude, the belts' edges wandering by
/// up to 7° with a smooth noise of the place, so they are not straight lines.
fn shares_at(lat: f64, lon: f64) -> [f64; 9] {
    let a = (lat.abs() + 7.0 * smooth_noise(lon / 15.0, lat / 15.0)).clamp(0.0, 90.0);
    let i = BELTS.iter().rposition(|(l, _)| *l <= a).unwrap_or(0);
    let Some(&(l1, s1)) = BELTS.get(i + 1) else {
        return BELTS[i].1;
    };
    let (l0, s0) = BELTS[i];
    let t = (a - l0) / (l1 - l0);
    std::array::from_fn(|g| s0[g] + (s1[g] - s0[g]) * t)
}

/// Value noise in -1..=1, smooth in (u, v): lattice values blended with a smoothstep.
fn smooth_noise(u: f64, v: f64) -> f64 {
    let (i, j) = (u.floor(), v.floor());
    let (fu, fv) = (u - i, v - j);
    let corner = |di: f64, dj: f64| {
        let h = mix((((i + di) as i64 as u64) << 32) ^ ((j + dj) as i64 as u64) ^ 0x77_0d1d);
        (h % 2001) as f64 / 1000.0 - 1.0
    };
    let s = |t: f64| t * t * (3.0 - 2.0 * t);
    let (su, sv) = (s(fu), s(fv));
    let top = corner(0.0, 0.0) + (corner(1.0, 0.0) - corner(0.0, 0.0)) * su;
    let bottom = corner(0.0, 1.0) + (corner(1.0, 1.0) - corner(0.0, 1.0)) * su;
    top + (bottom - top) * sv
}

/// The value of a zone: `None` for land, else ocean (254) or no data (255); the world
/// texture has none (its tiles lie where the land mask has land).
fn zone(seed: u64, zx: u64, zy: u64, world: bool) -> Option<u8> {
    if world {
        return None;
    }
    match mix(seed ^ (zx << 24) ^ (zy << 44) ^ 0x2002) % 100 {
        0..=11 => Some(254),
        12..=13 => Some(255),
        _ => None,
    }
}

/// A cheap per-pixel hash.
#[inline(always)]
fn noise(x: u64, y: u64, seed: u64) -> u32 {
    let mut n = (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ y.wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
        .wrapping_add(seed);
    n ^= n >> 29;
    n = n.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (n >> 32) as u32
}

/// A GLAD-like row; with `pixel_degrees`, the patches' class groups follow the latitude of
/// the place the tile's pixels lie at.
fn glad_row(
    tile: TileName,
    year: i32,
    y: usize,
    x0: usize,
    pixel_degrees: Option<f64>,
    out: &mut [u8],
) {
    let seed = tile_seed(tile);
    let epoch = epoch(year);
    // Patch edges wave: rows shift the column grid, columns shift the row grid.
    let shift_x = (mix(seed ^ (y as u64 / 4) ^ 0xa11) % (2 * WAVE as u64 + 1)) as usize;
    let yw = y as u64;
    let mut cache: Option<((u64, u64), (Group, u8))> = None;
    let mut zone_cache: Option<((u64, u64), Option<u8>)> = None;
    for (i, p) in out.iter_mut().enumerate() {
        let x = x0 + i;
        let shift_y = (mix(seed ^ (x as u64 / 4) ^ 0xb22) % (2 * WAVE as u64 + 1)) as usize;
        let (xx, yy) = (x + shift_x, y + shift_y);
        let z = ((xx / ZONE) as u64, (yy / ZONE) as u64);
        let in_zone = match zone_cache {
            Some((c, v)) if c == z => v,
            _ => {
                let v = zone(seed, z.0, z.1, pixel_degrees.is_some());
                zone_cache = Some((z, v));
                v
            }
        };
        if let Some(v) = in_zone {
            *p = v;
            continue;
        }
        let cell = ((xx / PATCH) as u64, (yy / PATCH) as u64);
        let (group, value) = match cache {
            Some((c, g)) if c == cell => g,
            _ => {
                let shares = pixel_degrees.map(|d| {
                    let middle = |c: u64| (c as f64 + 0.5) * PATCH as f64 * d;
                    shares_at(
                        tile.lat as f64 - middle(cell.1),
                        tile.lon as f64 + middle(cell.0),
                    )
                });
                let g = patch(seed, cell.0, cell.1, epoch, shares.as_ref());
                cache = Some((cell, g));
                g
            }
        };
        let n = noise(x as u64, yw, seed);
        *p = match group {
            Group::Flat => value,
            Group::Varied { lo, hi, spread } => {
                let step = (n % (2 * spread as u32 + 1)) as i32 - spread as i32;
                (value as i32 + step).clamp(lo as i32, hi as i32) as u8
            }
            Group::Speckled { lo, hi, n: every } => {
                if n.is_multiple_of(every) {
                    lo + ((n >> 8) % (hi - lo + 1) as u32) as u8
                } else {
                    value
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Share of 2×2 blocks of one value over a sample of rows.
    fn uniform_share(texture: Texture, tile: TileName) -> f64 {
        let w = 4000;
        let (mut top, mut bottom) = (vec![0u8; w], vec![0u8; w]);
        let (mut uniform, mut blocks) = (0, 0);
        for y in (0..4000).step_by(40) {
            texture.fill_row(tile, 2000, y, 0, 0.00025, &mut top);
            texture.fill_row(tile, 2000, y + 1, 0, 0.00025, &mut bottom);
            for k in 0..w / 2 {
                let a = top[2 * k];
                uniform +=
                    (a == top[2 * k + 1] && a == bottom[2 * k] && a == bottom[2 * k + 1]) as usize;
                blocks += 1;
            }
        }
        uniform as f64 / blocks as f64
    }

    #[test]
    fn glad_like_tiles_vary_pixel_by_pixel_and_blocky_ones_do_not() {
        let tile: TileName = "50N_010E".parse().unwrap();
        let glad = uniform_share(Texture::Glad, tile);
        let blocky = uniform_share(Texture::Blocky, tile);
        eprintln!("blocks of one value: glad-like {glad:.3}, blocky {blocky:.3}");
        assert!((0.25..0.5).contains(&glad), "glad: {glad}");
        assert!(blocky > glad + 0.1, "blocky: {blocky}, glad: {glad}");
    }

    #[test]
    fn a_pixel_depends_on_its_place_only_and_epochs_change_some_patches() {
        let tile: TileName = "00N_010E".parse().unwrap();
        let mut row = vec![0u8; 3000];
        Texture::Glad.fill_row(tile, 2000, 777, 0, 0.00025, &mut row);
        let mut part = vec![0u8; 1000];
        Texture::Glad.fill_row(tile, 2000, 777, 1500, 0.00025, &mut part);
        assert_eq!(&row[1500..2500], &part[..]);
        let mut later = vec![0u8; 3000];
        Texture::Glad.fill_row(tile, 2020, 777, 0, 0.00025, &mut later);
        let changed = row.iter().zip(&later).filter(|(a, b)| a != b).count();
        assert!(changed > 0 && changed < row.len(), "{changed}");
        // Every value is one the legend names.
        assert!(
            row.iter().all(|&v| crate::legend::class_of(v).is_some()),
            "{row:?}"
        );
    }

    /// Share of a 400-px demo tile's pixels in each value range.
    fn share_of(tile: &str, ranges: &[std::ops::RangeInclusive<u8>]) -> f64 {
        let tile: TileName = tile.parse().unwrap();
        let mut row = vec![0u8; 400];
        let (mut hit, mut all) = (0, 0);
        for y in 0..400 {
            Texture::World.fill_row(tile, 2020, y, 0, 0.025, &mut row);
            hit += row
                .iter()
                .filter(|v| ranges.iter().any(|r| r.contains(v)))
                .count();
            all += row.len();
        }
        hit as f64 / all as f64
    }

    #[test]
    fn the_world_texture_follows_latitude() {
        let snow = share_of("80N_060W", &[241..=241]);
        let desert = share_of("30N_010E", &[0..=1, 2..=24]);
        let trees = share_of("00N_020E", &[49..=96, 25..=48]);
        eprintln!("snow near the pole {snow:.2}, desert belt {desert:.2}, equator {trees:.2}");
        assert!(snow > 0.4, "snow and ice near the pole: {snow}");
        assert!(desert > 0.5, "desert and semi-arid near 25N: {desert}");
        assert!(
            trees > 0.4,
            "trees and dense vegetation at the equator: {trees}"
        );
        assert!(
            share_of("00N_020E", &[241..=241]) == 0.0,
            "no snow at the equator"
        );
        assert!(
            share_of("80N_060W", &[0..=1]) == 0.0,
            "no desert at the pole"
        );
        for (lat, shares) in BELTS {
            assert!(
                (shares.iter().sum::<f64>() - 100.0).abs() < 1e-9,
                "belt {lat}"
            );
        }
    }
}
