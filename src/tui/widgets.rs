//! Console widgets: the quick-look of a tile, drawn with half-block cells and coloured with
//! the dataset's legend (`assets/legend.toml`).

use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};

/// The legend colour of a class value (grey for values the legend does not name).
pub fn legend_color(value: u8) -> Color {
    let [r, g, b] = tilecube::legend::rgb(value);
    Color::Rgb(r, g, b)
}

/// The glyph of a value when colour is off: the legend's, one per class.
pub fn shade(value: u8) -> char {
    tilecube::legend::glyph(value)
}

/// Decimate a `side`×`side` tile into `width`×(2·`height`) samples and draw them with
/// upper-half blocks: each cell shows two pixels, top in the foreground, bottom behind it.
pub fn quicklook_lines(
    side: usize,
    px: &[u8],
    width: usize,
    height: usize,
    color: bool,
) -> Vec<Line<'static>> {
    if side == 0 || px.len() < side * side || width == 0 || height == 0 {
        return vec![Line::from("no pixels")];
    }
    let n = width.min(height * 2).min(side);
    let rows = n.div_ceil(2);
    let sample = |r: usize, c: usize| -> u8 {
        let y = (r * side / n).min(side - 1);
        let x = (c * side / n).min(side - 1);
        px[y * side + x]
    };
    (0..rows)
        .map(|hr| {
            let spans: Vec<Span<'static>> = (0..n)
                .map(|c| {
                    let top = sample(hr * 2, c);
                    let bottom = if hr * 2 + 1 < n {
                        sample(hr * 2 + 1, c)
                    } else {
                        top
                    };
                    if color {
                        Span::styled(
                            "▀",
                            Style::default()
                                .fg(legend_color(top))
                                .bg(legend_color(bottom)),
                        )
                    } else {
                        Span::raw(shade(top).to_string())
                    }
                })
                .collect();
            Line::from(spans)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legend_colours_classes_and_marks_no_data() {
        assert_eq!(legend_color(255), Color::Rgb(0, 0, 0));
        assert_eq!(legend_color(60), Color::Rgb(30, 110, 40));
        assert_eq!(legend_color(230), Color::Rgb(128, 128, 128));
    }

    #[test]
    fn quicklook_decimates_into_half_blocks() {
        let side = 8;
        let px: Vec<u8> = (0..64).map(|i| if i < 32 { 60 } else { 255 }).collect();
        let lines = quicklook_lines(side, &px, 4, 2, true);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].spans.len(), 4);
        assert_eq!(lines[0].spans[0].style.fg, Some(Color::Rgb(30, 110, 40)));
        assert_eq!(lines[1].spans[0].style.bg, Some(Color::Rgb(0, 0, 0)));
        let plain = quicklook_lines(side, &px, 4, 2, false);
        assert_eq!(plain[1].spans[0].content, " ");
    }
}
