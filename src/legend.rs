//! The dataset's legend (`assets/legend.toml`): a colour and a label for each class value,
//! shared by the console's views and the `map` picture.
//!
//! Invariant: every value has a colour (values the legend does not name are grey) and a
//! glyph for terminals without colour, each class its own; classes keep the file's order.

use serde::Deserialize;

const LEGEND_TOML: &str = include_str!("../assets/legend.toml");

/// Colour of values the legend does not name.
pub const UNNAMED: [u8; 3] = [128, 128, 128];

#[derive(Debug, Deserialize)]
struct File {
    class: Vec<Class>,
}

/// One class of the legend: values `from..=to`.
#[derive(Debug, Clone, Deserialize)]
pub struct Class {
    pub from: u8,
    pub to: u8,
    pub label: String,
    pub rgb: [u8; 3],
    /// How the class shows without colour.
    #[serde(default = "unnamed_glyph")]
    pub glyph: char,
}

fn unnamed_glyph() -> char {
    '?'
}

/// The embedded legend's classes, in order.
pub fn classes() -> &'static [Class] {
    static LEGEND: std::sync::OnceLock<Vec<Class>> = std::sync::OnceLock::new();
    LEGEND.get_or_init(|| {
        toml::from_str::<File>(LEGEND_TOML)
            .map(|l| l.class)
            .unwrap_or_default()
    })
}

/// The class a value belongs to, if the legend names it.
pub fn class_of(value: u8) -> Option<&'static Class> {
    classes().iter().find(|c| (c.from..=c.to).contains(&value))
}

/// The colour of a value.
pub fn rgb(value: u8) -> [u8; 3] {
    class_of(value).map(|c| c.rgb).unwrap_or(UNNAMED)
}

/// The glyph of a value when colour is off (`?` for values the legend does not name).
pub fn glyph(value: u8) -> char {
    class_of(value).map(|c| c.glyph).unwrap_or('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_legend_names_no_data_and_colours_every_value() {
        assert!(classes().len() >= 5);
        assert_eq!(rgb(255), [0, 0, 0]);
        assert_eq!(class_of(255).map(|c| c.label.as_str()), Some("no data"));
        assert_eq!(rgb(60), [30, 110, 40]);
        assert_eq!(rgb(230), UNNAMED);
        // Every class has a glyph of its own, so the map reads without colour.
        let glyphs: std::collections::BTreeSet<char> = classes().iter().map(|c| c.glyph).collect();
        assert_eq!(glyphs.len(), classes().len());
        assert_eq!((glyph(255), glyph(254), glyph(230)), (' ', '~', '?'));
    }
}
