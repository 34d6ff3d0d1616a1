//! The world map, drawn in the grid's place (`m`): whether it is shown, the map as last read
//! (or why it could not be) and the one being read; which map is wanted, and its drawing —
//! the year's data from an overview level, under the grid's cursor and marks.
//!
//! Invariants: the map follows the year, the browsed snapshot and the branch head: a map is
//! shown only when it is the one wanted ([`shown`]); what is wanted and neither read nor
//! being read is read once ([`follow`]; a failed read is not retried in a loop); one read at
//! a time per key.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::Paragraph;
use tilecube::cube::LevelImage;
use tilecube::grid::Cell;

use super::grid::{header_line, row_label};
use crate::tui::msg::Action;
use crate::tui::state::App;
use crate::tui::widgets::{legend_color, shade};

/// Samples across the grid a map is read with: enough for the largest cells drawn.
pub const MAP_SAMPLES_PER_TILE: u64 = 8;

/// What a map shows: a year of the branch head (at the head read) or of a browsed snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapKey {
    pub year: i32,
    pub snapshot: Option<String>,
    pub head: Option<String>,
}

/// The map's own state.
#[derive(Debug, Clone, Default)]
pub struct MapView {
    /// The map is shown in place of the grid (`m`).
    pub shown: bool,
    /// The map as last read (or why it could not be), and what it shows.
    pub image: Option<(MapKey, Result<LevelImage, String>)>,
    /// The map being read.
    pub reading: Option<MapKey>,
}

/// What the map should show now.
pub fn wanted(app: &App) -> MapKey {
    match &app.cube.browse {
        Some(b) => MapKey {
            year: app.year(),
            snapshot: Some(b.snapshot.clone()),
            head: None,
        },
        None => MapKey {
            year: app.year(),
            snapshot: None,
            head: app.cube.head.clone(),
        },
    }
}

/// The map shown, when it is the one [`wanted`].
pub fn shown(app: &App) -> Option<&Result<LevelImage, String>> {
    app.map
        .image
        .as_ref()
        .filter(|(k, _)| *k == wanted(app))
        .map(|(_, m)| m)
}

/// `m`: the map in the grid's place, or the grid again.
pub fn toggle(app: &mut App) {
    app.map.shown = !app.map.shown;
    app.status_line = if app.map.shown {
        "world map: the data of the year shown, from the cube's overviews".into()
    } else {
        "tile grid".into()
    };
}

/// The map follows the year, the browsed snapshot and the branch head: when it is shown
/// and what it shows is neither read nor being read, read it.
pub fn follow(app: &mut App) -> Option<Action> {
    if !app.map.shown || app.cube.loading.is_some() || app.exit.is_some() {
        return None;
    }
    let key = wanted(app);
    let known = app.map.image.as_ref().is_some_and(|(k, _)| *k == key);
    if known || app.map.reading.as_ref() == Some(&key) {
        return None;
    }
    app.map.reading = Some(key.clone());
    Some(Action::LoadMap {
        key,
        width: app.cube.grid.columns as u64 * MAP_SAMPLES_PER_TILE,
    })
}

/// A map was read (or could not be).
pub fn on_read(app: &mut App, key: MapKey, read: Result<LevelImage, String>) {
    if app.map.reading.as_ref() == Some(&key) {
        app.map.reading = None;
    }
    if let Err(e) = &read {
        app.status_line = format!("map: {e}");
    }
    app.map.image = Some((key, read));
}

/// The world map: the year's data from an overview level, two samples a character (upper
/// half-blocks coloured with the legend, or shading glyphs without colour), under the tile
/// grid: the cursor's tile in brackets, selected tiles and tiles a diff changed marked; grown
/// cells (3 characters and more) draw each tile's right and bottom edge.
pub fn draw(frame: &mut Frame, app: &App, area: Rect, (cw, ch): (u16, u16), image: &LevelImage) {
    let grid = &app.cube.grid;
    let year = app.year();
    let cursor = app.grid.cursor;
    let (cols, rows) = (
        grid.columns as usize * cw as usize,
        grid.rows as usize * ch as usize,
    );
    let sample = |x: usize, y2: usize| -> u8 {
        let px = x * image.width / cols.max(1);
        let py = y2 * image.height / (2 * rows).max(1);
        image
            .pixels
            .get(py.min(image.height.saturating_sub(1)) * image.width + px)
            .copied()
            .unwrap_or(255)
    };
    let changed = app.cube.browse.as_ref().map(|b| &b.changed);
    let mut lines = Vec::with_capacity(rows + 1);
    lines.push(header_line(app, cw));
    for r in 0..grid.rows {
        for line in 0..ch {
            let mut spans = vec![row_label(app, r, line)];
            let y = r as usize * ch as usize + line as usize;
            for c in 0..grid.columns {
                let cell = Cell { col: c, row: r };
                let tile = grid.tile_at(cell);
                let selected = app.selection.tiles.contains(&(year, tile));
                let diffed = changed.is_some_and(|set| set.contains(&(year, tile)));
                for i in 0..cw as usize {
                    let x = c as usize * cw as usize + i;
                    let (top, bottom) = (sample(x, 2 * y), sample(x, 2 * y + 1));
                    let first = i == 0 && line == 0;
                    let mark = if cell == cursor && i == 0 {
                        Some('[')
                    } else if cell == cursor && i + 1 == cw as usize {
                        Some(']')
                    } else if first && diffed {
                        Some('◆')
                    } else if first && selected {
                        Some('*')
                    } else {
                        None
                    };
                    let span = match (mark, app.color) {
                        (Some(m), true) => Span::styled(
                            m.to_string(),
                            Style::default()
                                .fg(Color::Yellow)
                                .bg(legend_color(top))
                                .add_modifier(Modifier::BOLD),
                        ),
                        (Some(m), false) => Span::raw(m.to_string()),
                        // Grown cells (a large terminal): a thin line on each tile's right
                        // and bottom edge, so tiles of one class do not merge into a block.
                        (None, true) if cw >= 3 && (i + 1 == cw as usize || line + 1 == ch) => {
                            let edge = if i + 1 == cw as usize { "▕" } else { "▁" };
                            Span::styled(
                                edge,
                                Style::default().fg(Color::DarkGray).bg(legend_color(top)),
                            )
                        }
                        (None, true) => Span::styled(
                            "▀",
                            Style::default()
                                .fg(legend_color(top))
                                .bg(legend_color(bottom)),
                        ),
                        (None, false) => Span::raw(shade(top).to_string()),
                    };
                    spans.push(span);
                }
            }
            lines.push(ratatui::text::Line::from(spans));
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::msg::{Done, Msg};
    use crate::tui::state::Browse;
    use crate::tui::state::fixtures::{app, ch};
    use crate::tui::update::update;
    use tilecube::cube::Coverage;

    #[test]
    fn the_map_follows_the_year_the_head_and_a_browsed_snapshot() {
        let mut a = app();
        a.cube.head = Some("HEAD1".into());
        let load = |actions: Vec<Action>| -> Option<MapKey> {
            actions.into_iter().find_map(|x| match x {
                Action::LoadMap { key, width } => {
                    assert_eq!(width, 36 * MAP_SAMPLES_PER_TILE);
                    Some(key)
                }
                _ => None,
            })
        };
        let key = load(update(&mut a, Msg::Key(ch('m')))).expect("m reads the map");
        assert!(a.map.shown);
        assert_eq!((key.year, key.head.as_deref()), (2000, Some("HEAD1")));
        // While it is being read, nothing asks again.
        assert_eq!(load(update(&mut a, Msg::Key(ch('l')))), None);
        let image = LevelImage {
            level: 3,
            factor: 8,
            row0: 0,
            col0: 0,
            width: 2,
            height: 1,
            pixels: vec![10, 255],
        };
        update(&mut a, Msg::Done(Done::Map(key.clone(), Ok(image.clone()))));
        assert_eq!(shown(&a), Some(&Ok(image)));
        assert_eq!(load(update(&mut a, Msg::Key(ch('h')))), None, "read once");
        // Another year, a moved head, a browsed snapshot: each is read.
        let k2 = load(update(&mut a, Msg::Key(ch('2')))).expect("year 2005");
        assert_eq!(k2.year, 2005);
        assert_eq!(
            shown(&a),
            None,
            "the old year's map is not shown as this one's"
        );
        update(&mut a, Msg::Done(Done::Map(k2, Err("no overviews".into()))));
        assert!(a.status_line.contains("no overviews"), "{}", a.status_line);
        assert_eq!(
            load(update(&mut a, Msg::Poll)),
            None,
            "a failed read is not retried in a loop"
        );
        let refreshed = update(
            &mut a,
            Msg::Done(Done::Refreshed {
                tags: Default::default(),
                years: None,
                coverage: Coverage::default(),
                history: vec![],
                head: Some("HEAD2".into()),
            }),
        );
        let k3 = load(refreshed).expect("a new head is read");
        assert_eq!(k3.head.as_deref(), Some("HEAD2"));
        a.map.reading = None;
        a.cube.browse = Some(Browse {
            snapshot: "SNAP".into(),
            message: String::new(),
            coverage: Default::default(),
            diff_against: None,
            changed: Default::default(),
        });
        let k4 = load(update(&mut a, Msg::Key(ch('h')))).expect("the browsed snapshot");
        assert_eq!((k4.snapshot.as_deref(), k4.head), (Some("SNAP"), None));
        // `m` again: the grid, and no more reads.
        update(&mut a, Msg::Key(ch('m')));
        assert!(!a.map.shown);
        a.map.reading = None;
        assert_eq!(load(update(&mut a, Msg::Key(ch('1')))), None);
    }
}
