//! The 2×2 reduction of one pyramid level into the next: each output pixel summarises the
//! (up to) four input pixels it covers.
//!
//! Invariants: an output of a `w`×`h` input is `ceil(w/2)`×`ceil(h/2)`; at the right and
//! bottom edges, where a 2×2 block is cut, only the pixels present are used; the fill value
//! never outvotes data: it is the output only when every pixel present is fill. `Mode` (for
//! categorical data) takes the most frequent value, ties going to the smallest; `Average`
//! (for continuous data) takes the mean of the non-fill pixels, rounded half up; `Nearest`
//! takes the first pixel of the block in reading order that is not fill.

use serde::{Deserialize, Serialize};

/// How a 2×2 block becomes one pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resampling {
    /// The most frequent value (ties to the smallest); for classes such as land cover.
    #[default]
    Mode,
    /// The mean of the values, rounded half up; for continuous quantities.
    Average,
    /// The block's upper-left pixel (the next one in reading order where it is fill).
    Nearest,
}

impl Resampling {
    /// The name the `multiscales` convention records (`resampling_method`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Mode => "mode",
            Self::Average => "average",
            Self::Nearest => "nearest",
        }
    }
}

/// The size of the reduction of a `w`×`h` raster: halves, rounded up.
pub fn reduced_size(w: usize, h: usize) -> (usize, usize) {
    (w.div_ceil(2), h.div_ceil(2))
}

/// Reduce a row-major `w`×`h` raster by 2×2 with `how`, treating `fill` as no data.
///
/// # Panics
/// If `src` is not `w * h` long (a caller's bug, never input data).
pub fn reduce(src: &[u8], w: usize, h: usize, fill: u8, how: Resampling) -> Vec<u8> {
    assert_eq!(src.len(), w * h, "reduce: the raster is not {w}×{h}");
    let (ow, oh) = reduced_size(w, h);
    let mut out = vec![fill; ow * oh];
    for oy in 0..oh {
        let y0 = 2 * oy;
        let rows = if y0 + 1 < h { 2 } else { 1 };
        let mut ox = 0;
        if rows == 2 {
            // Whole 2×2 blocks, many at a time.
            let (top, bottom) = (&src[y0 * w..(y0 + 1) * w], &src[(y0 + 1) * w..(y0 + 2) * w]);
            let whole = w / 2;
            let out_row = &mut out[oy * ow..oy * ow + whole];
            match how {
                Resampling::Mode => mode_row(top, bottom, fill, out_row),
                Resampling::Average => average_row(top, bottom, fill, out_row),
                Resampling::Nearest => nearest_row(top, bottom, fill, out_row),
            }
            ox = whole;
        }
        // A cut block at the right or bottom edge: the pixels not there count as fill, which
        // the network and the mean leave out, so only the pixels present decide.
        for ox in ox..ow {
            let x0 = 2 * ox;
            let at = |y: usize, x: usize| {
                if y < h && x < w { src[y * w + x] } else { fill }
            };
            let (a, b, c, d) = (
                at(y0, x0),
                at(y0, x0 + 1),
                at(y0 + 1, x0),
                at(y0 + 1, x0 + 1),
            );
            out[oy * ow + ox] = match how {
                Resampling::Mode => mode4(a, b, c, d, fill),
                Resampling::Average => average4(a, b, c, d, fill),
                Resampling::Nearest => nearest4(a, b, c, d, fill),
            };
        }
    }
    out
}

/// The mode of each whole 2×2 block of a row pair: `out[i]` from `top[2i..2i + 2]` and
/// `bottom[2i..2i + 2]`. Sixteen blocks at a time in SSE2 registers on x86-64 (every x86-64
/// has it), the rest one by one through the same compare network.
fn mode_row(top: &[u8], bottom: &[u8], fill: u8, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    let done = sse2::mode_row(top, bottom, fill, out);
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    for (k, o) in out.iter_mut().enumerate().skip(done) {
        *o = mode4(
            top[2 * k],
            top[2 * k + 1],
            bottom[2 * k],
            bottom[2 * k + 1],
            fill,
        );
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    //! The compare network on sixteen blocks at once. A block's four values are split into four
    //! registers (its top-left, top-right, bottom-left and bottom-right pixels); each value's
    //! count among the four is one minus its equality masks, zero for fill; the running best
    //! is replaced by a value with a higher count, or the same count and a smaller value. When
    //! all sixteen blocks are of one value, that value is the answer with no more work.

    use std::arch::x86_64::*;

    /// Reduce the first blocks of a row pair, sixteen at a time; returns how many were done
    /// (a multiple of 16, the rest left to the caller).
    pub(super) fn mode_row(top: &[u8], bottom: &[u8], fill: u8, out: &mut [u8]) -> usize {
        let n = out.len() / 16 * 16;
        assert!(
            top.len() >= 2 * n && bottom.len() >= 2 * n,
            "mode_row: short rows"
        );
        let mut k = 0;
        while k < n {
            // SAFETY: SSE2 is part of the x86-64 baseline; the loads read 32 bytes of each row
            // from 2k, and 2k + 32 <= 2n <= the rows' length (asserted above); the store writes
            // 16 bytes from k, and k + 16 <= n <= out's length.
            unsafe {
                let r = sixteen(top.as_ptr().add(2 * k), bottom.as_ptr().add(2 * k), fill);
                _mm_storeu_si128(out.as_mut_ptr().add(k) as *mut __m128i, r);
            }
            k += 16;
        }
        n
    }

    /// The modes of the sixteen blocks whose rows start at `top` and `bottom` (32 bytes each).
    ///
    /// # Safety
    /// `top` and `bottom` must each be readable for 32 bytes.
    #[inline(always)]
    unsafe fn sixteen(top: *const u8, bottom: *const u8, fill: u8) -> __m128i {
        // SAFETY: the caller guarantees 32 readable bytes behind each pointer; the rest are
        // register operations of SSE2.
        unsafe {
            let low = _mm_set1_epi16(0x00ff);
            let t0 = _mm_loadu_si128(top as *const __m128i);
            let t1 = _mm_loadu_si128(top.add(16) as *const __m128i);
            let b0 = _mm_loadu_si128(bottom as *const __m128i);
            let b1 = _mm_loadu_si128(bottom.add(16) as *const __m128i);
            let even = |x: __m128i, y: __m128i| {
                _mm_packus_epi16(_mm_and_si128(x, low), _mm_and_si128(y, low))
            };
            let odd = |x: __m128i, y: __m128i| {
                _mm_packus_epi16(_mm_srli_epi16(x, 8), _mm_srli_epi16(y, 8))
            };
            let (a, b, c, d) = (even(t0, t1), odd(t0, t1), even(b0, b1), odd(b0, b1));
            let (ab, ac, ad) = (
                _mm_cmpeq_epi8(a, b),
                _mm_cmpeq_epi8(a, c),
                _mm_cmpeq_epi8(a, d),
            );
            if _mm_movemask_epi8(_mm_and_si128(_mm_and_si128(ab, ac), ad)) == 0xffff {
                return a;
            }
            let (bc, bd, cd) = (
                _mm_cmpeq_epi8(b, c),
                _mm_cmpeq_epi8(b, d),
                _mm_cmpeq_epi8(c, d),
            );
            let f = _mm_set1_epi8(fill as i8);
            let one = _mm_set1_epi8(1);
            // Equality masks are -1: one minus three of them is the count; fill counts zero.
            let count = |v: __m128i, e1: __m128i, e2: __m128i, e3: __m128i| {
                let n = _mm_sub_epi8(_mm_sub_epi8(_mm_sub_epi8(one, e1), e2), e3);
                _mm_andnot_si128(_mm_cmpeq_epi8(v, f), n)
            };
            let (mut best, mut best_n) = (a, count(a, ab, ac, ad));
            for (v, n) in [
                (b, count(b, ab, bc, bd)),
                (c, count(c, ac, bc, cd)),
                (d, count(d, ad, bd, cd)),
            ] {
                let more = _mm_cmpgt_epi8(n, best_n);
                let smaller = _mm_cmpeq_epi8(_mm_min_epu8(v, best), v);
                let take = _mm_or_si128(more, _mm_and_si128(_mm_cmpeq_epi8(n, best_n), smaller));
                best = _mm_or_si128(_mm_and_si128(take, v), _mm_andnot_si128(take, best));
                best_n = _mm_max_epu8(n, best_n);
            }
            best
        }
    }
}

/// The mode of four values, fill ignored, ties to the smallest, with no branch: each value's
/// key is its count among the four (0 for fill) above its complement, and the largest key
/// wins; all fill gives fill.
#[inline(always)]
/// A row of whole blocks by their first pixel that is not fill.
fn nearest_row(top: &[u8], bottom: &[u8], fill: u8, out: &mut [u8]) {
    for (i, o) in out.iter_mut().enumerate() {
        let x = 2 * i;
        *o = nearest4(top[x], top[x + 1], bottom[x], bottom[x + 1], fill);
    }
}

/// The first of four pixels, in reading order, that is not fill (fill if all are).
fn nearest4(a: u8, b: u8, c: u8, d: u8, fill: u8) -> u8 {
    [a, b, c, d]
        .into_iter()
        .find(|&p| p != fill)
        .unwrap_or(fill)
}

fn mode4(a: u8, b: u8, c: u8, d: u8, fill: u8) -> u8 {
    let e = |x: u8, y: u8| (x == y) as i16;
    let (ab, ac, ad, bc, bd, cd) = (e(a, b), e(a, c), e(a, d), e(b, c), e(b, d), e(c, d));
    let key = |v: u8, count: i16| ((count * (v != fill) as i16) << 8) | (255 - v) as i16;
    let ka = key(a, 1 + ab + ac + ad);
    let kb = key(b, 1 + ab + bc + bd);
    let kc = key(c, 1 + ac + bc + cd);
    let kd = key(d, 1 + ad + bd + cd);
    255 - (ka.max(kb).max(kc.max(kd)) & 0xff) as u8
}

/// The mean of each whole 2×2 block's non-fill values, rounded half up (fill when all are).
fn average_row(top: &[u8], bottom: &[u8], fill: u8, out: &mut [u8]) {
    for (k, o) in out.iter_mut().enumerate() {
        *o = average4(
            top[2 * k],
            top[2 * k + 1],
            bottom[2 * k],
            bottom[2 * k + 1],
            fill,
        );
    }
}

/// The mean of four values' non-fill ones, rounded half up; fill when all four are.
fn average4(a: u8, b: u8, c: u8, d: u8, fill: u8) -> u8 {
    let (mut n, mut sum) = (0u32, 0u32);
    for x in [a, b, c, d] {
        let present = (x != fill) as u32;
        n += present;
        sum += present * x as u32;
    }
    if n == 0 {
        fill
    } else {
        ((2 * sum + n) / (2 * n)) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const FILL: u8 = 255;

    /// The reduction as the definition says it, one output pixel at a time, with no
    /// shortcut: the reference the fast loop is held to.
    fn reference(src: &[u8], w: usize, h: usize, how: Resampling) -> Vec<u8> {
        reference_with(src, w, h, FILL, how)
    }

    fn reference_with(src: &[u8], w: usize, h: usize, fill: u8, how: Resampling) -> Vec<u8> {
        let mut out = Vec::new();
        for oy in 0..h.div_ceil(2) {
            for ox in 0..w.div_ceil(2) {
                let mut present = Vec::new();
                for y in 2 * oy..(2 * oy + 2).min(h) {
                    for x in 2 * ox..(2 * ox + 2).min(w) {
                        if src[y * w + x] != fill {
                            present.push(src[y * w + x]);
                        }
                    }
                }
                out.push(if present.is_empty() {
                    fill
                } else {
                    match how {
                        Resampling::Mode => {
                            let mut counts = BTreeMap::<u8, usize>::new();
                            for v in &present {
                                *counts.entry(*v).or_default() += 1;
                            }
                            let top = counts.values().copied().max().unwrap_or(0);
                            // BTreeMap iterates ascending: the first at the top count is
                            // the smallest.
                            counts
                                .iter()
                                .find(|(_, c)| **c == top)
                                .map(|(v, _)| *v)
                                .unwrap_or(fill)
                        }
                        Resampling::Average => {
                            let sum: f64 = present.iter().map(|&v| v as f64).sum();
                            (sum / present.len() as f64 + 0.5).floor() as u8
                        }
                        // `present` is in reading order within the block.
                        Resampling::Nearest => present[0],
                    }
                });
            }
        }
        out
    }

    /// A deterministic raster of few classes and some fill, so ties and fill both occur.
    fn raster(w: usize, h: usize, seed: u64) -> Vec<u8> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..w * h)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 7 {
                    0 => FILL,
                    k => [10, 20, 30, 40, 50, 60][k as usize - 1],
                }
            })
            .collect()
    }

    #[test]
    fn every_size_and_method_matches_the_definition_edges_included() {
        for (w, h) in [(1, 1), (2, 2), (3, 5), (7, 4), (16, 9), (33, 31)] {
            for seed in 0..4 {
                let src = raster(w, h, seed);
                for how in [Resampling::Mode, Resampling::Average, Resampling::Nearest] {
                    let got = reduce(&src, w, h, FILL, how);
                    assert_eq!(got.len(), w.div_ceil(2) * h.div_ceil(2));
                    assert_eq!(
                        got,
                        reference(&src, w, h, how),
                        "{w}×{h} seed {seed} {how:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn mode_breaks_ties_to_the_smallest_and_fill_never_outvotes_data() {
        // 2×2 blocks, row-major, each its own case.
        let cases: [([u8; 4], u8); 5] = [
            ([30, 10, 10, 30], 10),     // tie: smallest
            ([50, 40, 40, 40], 40),     // majority
            ([FILL, FILL, FILL, 7], 7), // fill ignored
            ([FILL; 4], FILL),          // all fill
            ([9, 8, 7, 6], 6),          // all different: smallest
        ];
        for (block, want) in cases {
            assert_eq!(
                reduce(&block, 2, 2, FILL, Resampling::Mode),
                vec![want],
                "{block:?}"
            );
        }
        // The same cases side by side in a row pair of 32 blocks: the vector path.
        let blocks: Vec<([u8; 4], u8)> = cases.iter().cycle().take(32).copied().collect();
        let (mut top, mut bottom) = (vec![], vec![]);
        for (b, _) in &blocks {
            top.extend([b[0], b[1]]);
            bottom.extend([b[2], b[3]]);
        }
        let src = [top, bottom].concat();
        let want: Vec<u8> = blocks.iter().map(|(_, w)| *w).collect();
        assert_eq!(reduce(&src, 64, 2, FILL, Resampling::Mode), want);
        assert_eq!(
            reduce(&[1, 2, FILL, FILL], 2, 2, FILL, Resampling::Average),
            vec![2],
            "1.5 rounds half up; fill is not averaged in"
        );
    }

    use proptest::prelude::*;

    /// A raster of `w`×`h` values drawn from `alphabet` (small alphabets make ties and
    /// uniform blocks common; the fill is among them or not).
    fn rasters() -> impl Strategy<Value = (usize, usize, Vec<u8>, u8)> {
        (
            1usize..200,
            1usize..12,
            1usize..=256,
            any::<u8>(),
            any::<u64>(),
        )
            .prop_map(|(w, h, alphabet, fill, seed)| {
                let mut x = seed | 1;
                let px = (0..w * h)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        // Runs of one value, as land cover has, now and then.
                        if x % 5 < 2 {
                            (seed % alphabet as u64) as u8
                        } else {
                            ((x >> 8) % alphabet as u64) as u8
                        }
                    })
                    .collect();
                (w, h, px, fill)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn the_fast_loops_equal_the_definition_on_random_rasters(
            (w, h, src, fill) in rasters()
        ) {
            for how in [Resampling::Mode, Resampling::Average] {
                prop_assert_eq!(
                    reduce(&src, w, h, fill, how),
                    reference_with(&src, w, h, fill, how),
                    "{}x{} fill {} {:?}", w, h, fill, how
                );
            }
        }

        #[test]
        fn the_compare_network_is_the_mode_of_any_four_values(
            v in any::<[u8; 4]>(), fill in any::<u8>(), pick in 0usize..5
        ) {
            // Fill in any of the places, or none.
            let mut v = v;
            if pick < 4 {
                v[pick] = fill;
            }
            prop_assert_eq!(
                reduce(&v, 2, 2, fill, Resampling::Mode),
                reference_with(&v, 2, 2, fill, Resampling::Mode)
            );
        }
    }
}
