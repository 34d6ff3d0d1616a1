//! The reduction's micro-benchmark: the 2×2 mode of the bench tiles' chunk strips on one
//! core, in nanoseconds per output pixel, next to the loop it replaced (a sort per block
//! that was not of one value), on the same strips in the same run.

use super::*;
use tilecube::overview::{Resampling, reduce};

/// Nanoseconds per output pixel of the reduction and of the loop it replaced, on `strips`
/// (`width` pixels wide, `rows` rows each), one core; the two are checked equal.
pub(super) fn reduction_ns(
    strips: &[Vec<u8>],
    width: usize,
    rows: usize,
    fill: u8,
) -> Result<(f64, f64)> {
    let out_px = (width.div_ceil(2) * rows.div_ceil(2) * strips.len()) as f64;
    let (mut now, mut before) = (Duration::ZERO, Duration::ZERO);
    // Alternate the two, three rounds, so drift hits both alike.
    for _ in 0..3 {
        let t0 = cpu_thread();
        for s in strips {
            std::hint::black_box(reduce(s, width, rows, fill, Resampling::Mode));
        }
        let t1 = cpu_thread();
        for s in strips {
            std::hint::black_box(sorting_mode(s, width, rows, fill));
        }
        let t2 = cpu_thread();
        now += t1 - t0;
        before += t2 - t1;
    }
    for s in strips {
        if reduce(s, width, rows, fill, Resampling::Mode) != sorting_mode(s, width, rows, fill) {
            bail!("the reduction and the loop it replaced disagree on the bench's tiles");
        }
    }
    let ns = |d: Duration| d.as_secs_f64() * 1e9 / 3.0 / out_px;
    Ok((ns(now), ns(before)))
}

/// The loop the reduction replaced: a block of one value is that value, any other block's
/// non-fill values are sorted and the longest run wins (ties to the smallest). Whole rows of
/// blocks only (even sizes), which is what the strips are.
fn sorting_mode(src: &[u8], w: usize, h: usize, fill: u8) -> Vec<u8> {
    let (ow, oh) = (w / 2, h / 2);
    let mut out = vec![fill; ow * oh];
    let mut block = [0u8; 4];
    for oy in 0..oh {
        let (top, bottom) = (
            &src[2 * oy * w..(2 * oy + 1) * w],
            &src[(2 * oy + 1) * w..(2 * oy + 2) * w],
        );
        for (o, (t, b)) in out[oy * ow..(oy + 1) * ow]
            .iter_mut()
            .zip(top.chunks_exact(2).zip(bottom.chunks_exact(2)))
        {
            let (a, b2, c, d) = (t[0], t[1], b[0], b[1]);
            *o = if a == b2 && a == c && a == d {
                a
            } else {
                let mut n = 0;
                for v in [a, b2, c, d] {
                    if v != fill {
                        block[n] = v;
                        n += 1;
                    }
                }
                if n == 0 {
                    fill
                } else {
                    let values = &mut block[..n];
                    values.sort_unstable();
                    let (mut best, mut best_n, mut i) = (values[0], 0, 0);
                    while i < n {
                        let mut j = i;
                        while j < n && values[j] == values[i] {
                            j += 1;
                        }
                        if j - i > best_n {
                            best = values[i];
                            best_n = j - i;
                        }
                        i = j;
                    }
                    best
                }
            };
        }
    }
    out
}
