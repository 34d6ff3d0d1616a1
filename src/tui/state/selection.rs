//! The tiles chosen to write (year, tile), and what they weigh at the source.
//!
//! Invariants: the selection is only ever of the branch head (a snapshot browsed is read
//! only); a tile's size is looked up once (a re-issued tile's is forgotten, to be looked up
//! again) and one lookup goes at a time; the bytes are known only once every selected
//! tile's size is.

use std::collections::{BTreeMap, BTreeSet};

use tilecube::grid::TileName;

/// How the selection's line on the status line ends (it is redrawn when sizes come in).
pub const SELECTION_TAIL: &str = ": w writes, Esc clears";

/// What the selected tiles weigh at the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectionBytes {
    /// Bytes of the selected tiles the source holds.
    pub bytes: u64,
    /// Selected tiles the source does not hold.
    pub absent: usize,
}

impl SelectionBytes {
    /// "3.4 GB at the source" (and how many are not there).
    pub fn text(&self) -> String {
        let mut s = format!("{} at the source", tilecube::text::bytes_text(self.bytes));
        if self.absent > 0 {
            s.push_str(&format!(" ({} not there)", self.absent));
        }
        s
    }
}

/// The tiles selected and their sizes.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub tiles: BTreeSet<(i32, TileName)>,
    /// Tiles' sizes at the source as looked up for a selection (`None`: not there).
    pub sizes: BTreeMap<(i32, TileName), Option<u64>>,
    /// A lookup of sizes is under way.
    pub sizing: bool,
}

impl Selection {
    /// What the selection weighs at the source, once every selected tile's size is known.
    pub fn bytes(&self) -> Option<SelectionBytes> {
        let mut out = SelectionBytes {
            bytes: 0,
            absent: 0,
        };
        for k in &self.tiles {
            match self.sizes.get(k)? {
                Some(b) => out.bytes += b,
                None => out.absent += 1,
            }
        }
        Some(out)
    }

    /// The years the selected tiles are of.
    pub fn years(&self) -> BTreeSet<i32> {
        self.tiles.iter().map(|(y, _)| *y).collect()
    }

    /// "12 tiles selected in 2 years, 3.4 GB at the source" (or nothing selected).
    pub fn line(&self) -> String {
        if self.tiles.is_empty() {
            return "nothing selected".into();
        }
        format!(
            "{} selected in {}{}{SELECTION_TAIL}",
            tilecube::text::plural(self.tiles.len(), "tile"),
            tilecube::text::plural(self.years().len(), "year"),
            self.bytes()
                .map(|b| format!(", {}", b.text()))
                .unwrap_or_default()
        )
    }

    /// The selected tiles whose size is not known yet, to be looked up; `None` when there
    /// are none, or a lookup is under way. Marks the lookup under way.
    pub fn start_sizing(&mut self) -> Option<BTreeSet<(i32, TileName)>> {
        if self.sizing || self.tiles.is_empty() {
            return None;
        }
        let unknown: BTreeSet<(i32, TileName)> = self
            .tiles
            .iter()
            .filter(|k| !self.sizes.contains_key(k))
            .copied()
            .collect();
        if unknown.is_empty() {
            return None;
        }
        self.sizing = true;
        Some(unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::SELECTION_TAIL;
    use crate::tui::components::popups::Popup;
    use crate::tui::msg::{Action, Done, Msg};
    use crate::tui::state::fixtures::{app, ch, key};
    use crate::tui::update::{on_key, update};
    use ratatui::crossterm::event::KeyCode;

    #[test]
    fn the_selection_is_sized_at_the_source_and_the_confirmation_says_what_it_reads() {
        let mut a = app();
        let spec = tilecube::preset::Preset::glad().source;
        a.cube.source = Some(tilecube::source::Source::new("/data/glad", &spec).unwrap());
        on_key(&mut a, ch('a'));
        let selected = a.selection.tiles.clone();
        let now = a.now;
        assert_eq!(selected.len(), 3);
        // Selecting asks for the sizes of what is selected, once.
        assert_eq!(
            update(&mut a, Msg::Tick(now)),
            vec![Action::SizeTiles(selected.clone())]
        );
        assert!(
            update(&mut a, Msg::Tick(now)).is_empty(),
            "one lookup at a time"
        );
        assert!(a.status_line.ends_with(SELECTION_TAIL), "{}", a.status_line);
        on_key(&mut a, ch('w'));
        assert!(matches!(&a.popup, Some(Popup::ConfirmWrite(ask)) if ask.bytes.is_none()));
        // Two tiles weigh 1.5 GB in all, one is not at the source.
        let mut sizes: std::collections::BTreeMap<_, _> = Default::default();
        for (i, k) in selected.iter().enumerate() {
            sizes.insert(*k, (i < 2).then_some(750_000_000u64));
        }
        update(&mut a, Msg::Done(Done::Sizes(Ok(sizes))));
        let Some(Popup::ConfirmWrite(ask)) = &a.popup else {
            panic!("{:?}", a.popup)
        };
        assert_eq!(
            ask.bytes.map(|b| b.text()).as_deref(),
            Some("1.5 GB at the source (1 not there)")
        );
        on_key(&mut a, key(KeyCode::Esc));
        // The status line says it too once the sizes are in; known sizes are not asked again.
        on_key(&mut a, ch(' '));
        on_key(&mut a, ch(' '));
        assert_eq!(
            a.status_line,
            "3 tiles selected in 1 year, 1.5 GB at the source (1 not there): w writes, Esc clears"
        );
        assert!(update(&mut a, Msg::Tick(now)).is_empty());
    }
}
