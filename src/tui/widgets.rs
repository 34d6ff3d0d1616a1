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

/// The legend of what `px` shows: its classes by the pixels they cover, most first, as
/// swatches (colour, or the class's glyph without it) and labels, on one line of at most
/// `width` characters (classes that do not fit are counted: "+2 more").
pub fn classes_line(px: &[u8], width: usize, color: bool) -> Line<'static> {
    let classes = tilecube::legend::classes();
    let mut counts = vec![0usize; classes.len()];
    for &v in px {
        if let Some(i) = classes.iter().position(|c| (c.from..=c.to).contains(&v)) {
            counts[i] += 1;
        }
    }
    let mut order: Vec<usize> = (0..classes.len()).filter(|&i| counts[i] > 0).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(counts[i]));
    let mut spans = Vec::new();
    let mut used = 0;
    for (k, &i) in order.iter().enumerate() {
        let c = &classes[i];
        let label = format!(" {}  ", c.label);
        let left = order.len() - k - 1;
        let tail = if left > 0 { 8 } else { 0 };
        if used + 2 + label.chars().count() + tail > width {
            spans.push(Span::raw(format!("+{} more", order.len() - k)));
            break;
        }
        spans.push(if color {
            Span::styled("██", Style::default().fg(legend_color(c.from)))
        } else {
            Span::raw(format!("{}{}", c.glyph, c.glyph))
        });
        used += 2 + label.chars().count();
        spans.push(Span::raw(label));
    }
    Line::from(spans)
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
    fn the_classes_line_names_what_the_pixels_show_most_first_and_fits() {
        // Three quarters one class, a quarter another, one pixel of no data.
        let mut px = vec![60u8; 48];
        px.extend([10u8; 16]);
        px.push(255);
        let text: String = classes_line(&px, 200, false)
            .spans
            .iter()
            .map(|s| s.content.to_string())
            .collect();
        let first = tilecube::legend::class_of(60).unwrap().label.clone();
        let second = tilecube::legend::class_of(10).unwrap().label.clone();
        let (a, b) = (text.find(&first).unwrap(), text.find(&second).unwrap());
        assert!(a < b, "most first: {text}");
        let narrow: String = classes_line(&px, 24, false)
            .spans
            .iter()
            .map(|s| s.content.to_string())
            .collect();
        assert!(narrow.chars().count() <= 24 + 8, "{narrow}");
        assert!(narrow.contains("more"), "{narrow}");
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
