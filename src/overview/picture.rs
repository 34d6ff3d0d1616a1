//! A level of the cube as a picture: each pixel coloured with the legend, a legend strip
//! below (a swatch and a label per class), written as PNG through GDAL.
//!
//! Invariants: the map's pixels are the level's pixels one for one, at the top left of the
//! picture (row `y`, column `x` of the picture is pixel (`y`, `x`) of the image read); the
//! strip lists the legend's classes in order; nothing else is drawn over the map.

use std::path::Path;

use crate::legend;

/// Errors writing a picture.
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    /// The raster handed over does not hold `width`×`height` pixels (or is empty).
    #[error("cannot write {path}: the raster is {pixels} pixels, not {width}×{height}")]
    Size {
        path: String,
        pixels: usize,
        width: usize,
        height: usize,
    },
    /// GDAL could not write the picture.
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: gdal::errors::GdalError,
    },
}

/// Height of one line of the legend strip at font scale `s`.
fn line_height(s: usize) -> usize {
    9 * s + 4
}

/// An RGB picture being drawn.
struct Canvas {
    width: usize,
    height: usize,
    rgb: [Vec<u8>; 3],
}

impl Canvas {
    fn new(width: usize, height: usize, background: [u8; 3]) -> Self {
        Self {
            width,
            height,
            rgb: background.map(|c| vec![c; width * height]),
        }
    }

    fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            for (band, v) in self.rgb.iter_mut().zip(c) {
                band[y * self.width + x] = v;
            }
        }
    }

    fn rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.put(xx, yy, c);
            }
        }
    }

    /// Draw `text` at (`x`, `y`) in the 5×7 font at scale `s`; returns the x after it.
    fn text(&mut self, mut x: usize, y: usize, text: &str, s: usize, c: [u8; 3]) -> usize {
        for ch in text.chars() {
            let rows = glyph(ch);
            for (ry, bits) in rows.iter().enumerate() {
                for rx in 0..5 {
                    if bits & (0x10 >> rx) != 0 {
                        self.rect(x + rx * s, y + ry * s, s, s, c);
                    }
                }
            }
            x += 6 * s;
        }
        x
    }
}

/// Lay the legend out in lines no wider than `width`: (x, line) of each class.
fn legend_layout(width: usize, s: usize) -> (Vec<(usize, usize)>, usize) {
    let mut at = Vec::new();
    let (mut x, mut line) = (4, 0);
    for class in legend::classes() {
        let w = 12 * s + 6 * s * class.label.chars().count() + 8 * s;
        if x > 4 && x + w > width {
            x = 4;
            line += 1;
        }
        at.push((x, line));
        x += w;
    }
    (at, line + 1)
}

/// Write a `width`×`height` raster of class values as a PNG coloured with the legend, with
/// the legend strip below it and `caption` on the strip's first line.
pub fn write_png(
    path: &Path,
    width: usize,
    height: usize,
    pixels: &[u8],
    caption: &str,
) -> Result<(), PictureError> {
    if pixels.len() != width * height || width == 0 || height == 0 {
        return Err(PictureError::Size {
            path: path.display().to_string(),
            pixels: pixels.len(),
            width,
            height,
        });
    }
    let s = if width >= 1000 { 2 } else { 1 };
    let picture_width = width.max(400);
    let (at, lines) = legend_layout(picture_width, s);
    let strip = (lines + 1) * line_height(s) + 4;
    let mut canvas = Canvas::new(picture_width, height + strip, [255, 255, 255]);
    for (i, &v) in pixels.iter().enumerate() {
        canvas.put(i % width, i / width, legend::rgb(v));
    }
    let ink = [20, 20, 20];
    let top = height + 4;
    canvas.text(4, top, caption, s, ink);
    for (class, (x, line)) in legend::classes().iter().zip(at) {
        let y = top + (line + 1) * line_height(s);
        canvas.rect(x, y, 9 * s, 7 * s, ink);
        canvas.rect(x + 1, y + 1, 9 * s - 2, 7 * s - 2, class.rgb);
        canvas.text(x + 12 * s, y, &class.label, s, ink);
    }
    save(path, &canvas).map_err(|source| PictureError::Write {
        path: path.display().to_string(),
        source,
    })
}

fn save(path: &Path, canvas: &Canvas) -> Result<(), gdal::errors::GdalError> {
    let mem = gdal::DriverManager::get_driver_by_name("MEM")?;
    let ds = mem.create_with_band_type::<u8, _>("", canvas.width, canvas.height, 3)?;
    for (i, band) in canvas.rgb.iter().enumerate() {
        let mut b = ds.rasterband(i + 1)?;
        let mut buf = gdal::raster::Buffer::new((canvas.width, canvas.height), band.clone());
        b.write((0, 0), (canvas.width, canvas.height), &mut buf)?;
    }
    let png = gdal::DriverManager::get_driver_by_name("PNG")?;
    ds.create_copy(&png, path, &gdal::raster::RasterCreationOptions::default())?;
    // GDAL leaves a side file of georeferencing hints next to a PNG; the picture needs none.
    let _ = std::fs::remove_file(format!("{}.aux.xml", path.display()));
    Ok(())
}

/// The 5×7 glyph of a character (letters in capitals; unknown characters as a box).
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        ' ' => [0; 7],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '×' => [0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00],
        _ => [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_picture_holds_the_raster_through_the_legend_and_a_strip_below() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.png");
        let (w, h) = (30, 10);
        let px: Vec<u8> = (0..w * h).map(|i| [0u8, 60, 255, 230][i % 4]).collect();
        write_png(&path, w, h, &px, "2000 level 3").unwrap();
        let ds = gdal::Dataset::open(&path).unwrap();
        let (pw, ph) = ds.raster_size();
        assert_eq!(
            pw, 400,
            "a narrow map gets a strip wide enough for the legend"
        );
        assert!(ph > h + 2 * line_height(1));
        let band = |i| {
            ds.rasterband(i)
                .unwrap()
                .read_as::<u8>((0, 0), (pw, ph), (pw, ph), None)
                .unwrap()
                .data()
                .to_vec()
        };
        let (r, g, b) = (band(1), band(2), band(3));
        for y in 0..h {
            for x in 0..w {
                let want = legend::rgb(px[y * w + x]);
                let i = y * pw + x;
                assert_eq!([r[i], g[i], b[i]], want, "({x}, {y})");
            }
        }
        // The strip draws every class's colour somewhere below the map.
        for class in legend::classes() {
            let found = (h * pw..pw * ph).any(|i| [r[i], g[i], b[i]] == class.rgb);
            assert!(found, "no swatch of {}", class.label);
        }
        assert!(!dir.path().join("m.png.aux.xml").exists());
    }
}
