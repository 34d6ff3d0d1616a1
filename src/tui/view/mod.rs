//! Drawing the console: the screen's layout — title, year tabs, status line, footer — with
//! each component drawn in its place (the grid or the map, the details, runs, history and
//! legend panels, the popup open: [`super::components`]).
//!
//! At 80×24 the grid always fits and one panel (the focused one) sits below it; wider and
//! taller terminals show the details, runs and history panels beside the grid, grow the
//! grid's cells to the room there is and add a legend panel. The world map (`m`) is drawn in
//! the grid's place, on the same cells, so the cursor and marks sit where the grid's would.
//!
//! Invariants: drawing only — the view reads the state through a shared borrow and changes
//! nothing; below 80×24 it says the terminal is too small rather than draw a clipped grid;
//! the screens are pinned by the snapshots in `snapshots/` (the tests below).

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::components::legend::{LEGEND_NARROW_WIDTH, SUMMARY_STATES};
use super::components::look::{panel, short, style};
use super::components::{details, grid, history, legend, popups, runs};
use super::keys::{self, Footer};
use super::state::{App, Focus};

/// The grid's width at two columns a cell: row labels and the cells (the header's last label,
/// `170E`, reaches two columns further: the grid panel is this + 3 wide).
fn grid_width(app: &App) -> u16 {
    4 + app.cube.grid.columns as u16 * 2
}

/// The smallest terminal the console draws in.
pub const MIN_SIZE: (u16, u16) = (80, 24);

/// Draw the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        return draw_too_small(frame, area);
    }
    let wide = area.width >= grid_width(app) + 40 && area.height >= 24;
    let cell = cell_size(area, app);
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Length(1),
            Constraint::Length(1),
            Constraint::Length(1 + app.cube.grid.rows as u16 * cell.1),
            Constraint::Min(if wide { 1 } else { 3 }),
            Constraint::Length(1),
        ])
        .split(area);
    draw_title(frame, app, rows[0]);
    draw_tabs(frame, app, rows[1]);
    if wide {
        let grid_width = 4 + app.cube.grid.columns as u16 * cell.0 + 3;
        let cols = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Length(grid_width), Constraint::Min(30)])
            .split(Rect {
                height: rows[2].height + rows[3].height,
                ..rows[2]
            });
        grid::draw(frame, app, cols[0], cell);
        let below = Rect {
            y: rows[3].y,
            height: rows[3].height,
            ..cols[0]
        };
        draw_status(frame, app, Rect { height: 1, ..below });
        let side = Layout::default()
            .direction(Direction::Vertical)
            .constraints([
                Constraint::Length(9),
                Constraint::Length(7),
                Constraint::Min(4),
            ])
            .split(cols[1]);
        details::draw(frame, app, side[0]);
        runs::draw(frame, app, side[1]);
        // A tall terminal also shows the legend: the tiles' states per year, or the map's
        // classes.
        let legend_height = 2 + if app.map.shown {
            tilecube::legend::classes().len() as u16
        } else {
            SUMMARY_STATES.len() as u16 + 1
        };
        let side2 = if side[2].height >= legend_height + 8 {
            let parts = Layout::default()
                .direction(Direction::Vertical)
                .constraints([Constraint::Length(legend_height), Constraint::Min(4)])
                .split(side[2]);
            legend::draw(frame, app, parts[0]);
            parts[1]
        } else {
            side[2]
        };
        let side = [side[0], side[1], side2];
        if app.show_logs && side[2].height > 12 {
            let parts = Layout::default()
                .direction(Direction::Vertical)
                .constraints([Constraint::Min(6), Constraint::Length(8)])
                .split(side[2]);
            history::draw(frame, app, parts[0]);
            draw_logs(frame, parts[1]);
        } else {
            history::draw(frame, app, side[2]);
        }
    } else {
        // Room right of the grid (100 columns and more): the year's tiles by state.
        let grid_w = grid_width(app) + 3;
        let (grid_area, beside) = if rows[2].width >= grid_w + LEGEND_NARROW_WIDTH {
            let cols = Layout::default()
                .direction(Direction::Horizontal)
                .constraints([
                    Constraint::Length(grid_w),
                    Constraint::Min(LEGEND_NARROW_WIDTH),
                ])
                .split(rows[2]);
            (cols[0], Some(cols[1]))
        } else {
            (rows[2], None)
        };
        grid::draw(frame, app, grid_area, cell);
        if let Some(beside) = beside {
            legend::draw_narrow(frame, app, beside);
        }
        let panel = rows[3];
        draw_status(frame, app, Rect { height: 1, ..panel });
        let rest = Rect {
            y: panel.y + 1,
            height: panel.height.saturating_sub(1),
            ..panel
        };
        match app.focus {
            // A taller terminal (30 rows and more) shows the runs under the tile.
            Focus::Grid if rest.height >= 11 => {
                let parts = Layout::default()
                    .direction(Direction::Vertical)
                    .constraints([Constraint::Min(5), Constraint::Length(6)])
                    .split(rest);
                details::draw(frame, app, parts[0]);
                runs::draw(frame, app, parts[1]);
            }
            Focus::Grid => details::draw(frame, app, rest),
            Focus::Runs if app.show_logs && rest.height > 6 => {
                let parts = Layout::default()
                    .direction(Direction::Vertical)
                    .constraints([Constraint::Length(4), Constraint::Min(2)])
                    .split(rest);
                runs::draw(frame, app, parts[0]);
                draw_logs(frame, parts[1]);
            }
            Focus::Runs => runs::draw(frame, app, rest),
            Focus::History => history::draw(frame, app, rest),
        }
    }
    draw_footer(frame, app, rows[4]);
    if let Some(popup) = &app.popup {
        popups::draw(frame, app, popup, area);
    }
}

/// A terminal smaller than [`MIN_SIZE`]: say so rather than draw a clipped grid (`q` still
/// quits; a resize redraws).
fn draw_too_small(frame: &mut Frame, area: Rect) {
    let text = vec![
        Line::from("terminal too small"),
        Line::from(format!(
            "the console needs {}x{}; this one is {}x{}",
            MIN_SIZE.0, MIN_SIZE.1, area.width, area.height
        )),
        Line::from("enlarge it, or q to quit"),
    ];
    let h = (text.len() as u16).min(area.height);
    let rect = Rect {
        y: area.y + area.height.saturating_sub(h) / 2,
        height: h,
        ..area
    };
    frame.render_widget(
        Paragraph::new(text)
            .alignment(ratatui::layout::Alignment::Center)
            .wrap(Wrap { trim: true }),
        rect,
    );
}

fn draw_title(frame: &mut Frame, app: &App, area: Rect) {
    let mut spans = vec![];
    // A browsed snapshot's banner comes first, so it shows however narrow the terminal.
    if let Some(b) = &app.cube.browse {
        let what = match &b.diff_against {
            Some(older) => format!(
                "DIFF {} -> {}: {} {} (◆) Esc: head",
                short(older),
                short(&b.snapshot),
                tilecube::text::plural(b.changed.len(), "tile"),
                if b.changed.len() == 1 {
                    "differs"
                } else {
                    "differ"
                }
            ),
            None => format!(
                "READ-ONLY SNAPSHOT {} \"{}\" Esc: head",
                short(&b.snapshot),
                b.message
            ),
        };
        spans.push(Span::styled(
            what,
            style(app, Color::Yellow).add_modifier(Modifier::REVERSED),
        ));
        spans.push(Span::raw(" "));
    }
    spans.push(Span::styled(
        "tilecube ",
        Style::default().add_modifier(Modifier::BOLD),
    ));
    spans.push(Span::raw(format!(
        "{} @ {}",
        app.cube.repo, app.cube.branch
    )));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_tabs(frame: &mut Frame, app: &App, area: Rect) {
    let mut texts: Vec<String> = Vec::new();
    let diff = app
        .cube
        .browse
        .as_ref()
        .filter(|b| b.diff_against.is_some());
    for (i, &y) in app.cube.years.iter().enumerate() {
        let (w, l) = app.completeness(y);
        let text = match (diff, &app.cube.loading) {
            // A diff counts the tiles that differ in each year.
            (Some(b), _) => format!(
                " {}:{y} ◆{} ",
                i + 1,
                b.changed.iter().filter(|(yy, _)| *yy == y).count()
            ),
            (None, Some(_)) => format!(" {}:{y} …/{l} ", i + 1),
            (None, None) => format!(" {}:{y} {w}/{l} ", i + 1),
        };
        texts.push(text);
    }
    // Too many years for the width (an extended cube at 80 columns): the other years show
    // only their key and year, so the chosen one and the filter's mark stay in sight.
    let mark = if app.grid.filter { 14 } else { 0 };
    let wide: usize = texts.iter().map(|t| t.chars().count()).sum::<usize>() + mark;
    let mut spans = vec![];
    for (i, text) in texts.into_iter().enumerate() {
        let chosen = i == app.grid.year_index;
        let text = if wide > area.width as usize && !chosen {
            format!(" {}:{} ", i + 1, app.cube.years[i])
        } else {
            text
        };
        let s = if chosen {
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::default()
        };
        spans.push(Span::styled(text, s));
    }
    if app.grid.filter {
        spans.push(Span::styled(
            " only ! % (F) ",
            style(app, Color::Yellow).add_modifier(Modifier::REVERSED),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Characters a tile takes across and down: 2×1 at 80×24, growing with the room beside the
/// panels on a large terminal (3×3 at 160×48).
fn cell_size(area: Rect, app: &App) -> (u16, u16) {
    let wide = area.width >= grid_width(app) + 40 && area.height >= 24;
    if !wide {
        return (2, 1);
    }
    let (cols, rows) = (
        app.cube.grid.columns.max(1) as u16,
        app.cube.grid.rows.max(1) as u16,
    );
    let w = (area.width.saturating_sub(4 + 3 + PANELS_MIN_WIDTH) / cols).clamp(2, 6);
    let h = (area.height.saturating_sub(5) / rows).clamp(1, 4);
    (w, h)
}

/// The narrowest the panels beside a grown grid get.
const PANELS_MIN_WIDTH: u16 = 40;

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let now = app.now;
    let text = if app.runs.writing && !app.runs.cancelling.is_empty() {
        format!(
            "cancelling: {}  (running tiles stop at their next strip)",
            app.runs.progress.tally
        )
    } else if app.runs.writing {
        let p = &app.runs.progress;
        match app.stall_note() {
            // Stalled: no rate and no time left to show, only how long nothing moved.
            Some(note) => format!("writing: {}  {note}", p.tally),
            None => {
                let eta = p
                    .eta(now)
                    .map(|d| format!("{}s", d.as_secs()))
                    .unwrap_or_else(|| "-".into());
                format!(
                    "writing: {}  {:.0} MB/s  ETA {eta}  {}/{} busy",
                    p.tally,
                    p.mb_per_s(now),
                    p.busy.min(p.threads),
                    p.threads,
                )
            }
        }
    } else if let Some(what) = &app.cube.loading {
        format!("loading: {what}…")
    } else {
        app.status_line.clone()
    };
    frame.render_widget(Paragraph::new(text).style(style(app, Color::Yellow)), area);
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let which = match app.focus {
        Focus::History => Footer::History,
        _ if app.cube.browse.is_some() => Footer::Browse,
        Focus::Runs => Footer::Runs,
        Focus::Grid => Footer::Grid,
    };
    frame.render_widget(
        Paragraph::new(keys::footer(which, app.offer(), area.width as usize))
            .style(Style::default().add_modifier(Modifier::DIM)),
        area,
    );
}

/// The log panel: engine and console messages go here, never to the screen underneath; an
/// operator's words only (time, level, message), no source file or line.
fn draw_logs(frame: &mut Frame, area: Rect) {
    let w = tui_logger::TuiLoggerWidget::default()
        .output_target(false)
        .output_file(false)
        .output_line(false)
        .output_timestamp(Some("%H:%M:%S".into()))
        .block(panel(" log ", false));
    frame.render_widget(w, area);
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::tui::components::map;
    use crate::tui::components::popups::Popup;
    use crate::tui::components::popups::cancel::CancelAsk;
    use crate::tui::components::popups::find::FindPrompt;
    use crate::tui::components::popups::log::LogView;
    use crate::tui::components::popups::plan::PlanView;
    use crate::tui::components::popups::quicklook::QuickLook;
    use crate::tui::components::popups::tag::TagPrompt;
    use crate::tui::components::popups::tile::TileCard;
    use crate::tui::components::popups::write::WriteAsk;
    use crate::tui::state::Browse;
    use crate::tui::state::fixtures::{render, run, small_cube as app, t};
    use crate::tui::state::runs::Failure;
    use crate::tui::state::selection::SelectionBytes;
    use ratatui::style::Color;
    use tilecube::cube::Coverage;
    use tilecube::preset::Preset;

    /// 2000/80N_180W failed with `error` after `attempts` attempts.
    fn fail_80n_180w(a: &mut App, error: &str, attempts: u32) {
        a.runs.failed.insert(
            (2000, t("80N_180W")),
            Failure {
                error: error.into(),
                attempts,
            },
        );
    }

    fn both(name: &str, app: &App) {
        insta::assert_snapshot!(format!("{name}_80x24"), render(app, 80, 24));
        insta::assert_snapshot!(format!("{name}_160x48"), render(app, 160, 48));
    }

    #[test]
    fn loading() {
        // The first frame on a repository still being read: tiles listed, none known yet.
        let mut a = app();
        a.cube.coverage = Coverage::default();
        a.cube.history.clear();
        a.cube.loading = Some("opening s3://bucket/cube".into());
        both("loading", &a);
    }

    #[test]
    fn idle() {
        both("idle", &app());
    }

    #[test]
    fn plan_watched() {
        use tilecube::scaleout::record::{RecordFailure, ShardRecord, ShardState};
        use tilecube::scaleout::watch::PlanFailure;
        use tilecube::scaleout::{PlanStatus, ShardStatus};
        let time = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let record = |shard: usize, state: ShardState, failed: Vec<RecordFailure>| ShardRecord {
            plan: "3f2a9c81d07e".into(),
            shard,
            attempt: "a".into(),
            host: format!("node{shard:02}"),
            pid: 100,
            task: format!("SLURM_ARRAY_TASK_ID={shard} (Slurm)"),
            mode: "checkpoint".into(),
            stage: None,
            state,
            started: time,
            updated: time,
            jobs: 4,
            skipped: 0,
            written: 2,
            landed: 2,
            failed,
            ..Default::default()
        };
        let failure = RecordFailure {
            year: 2000,
            tile: "80N_160W".into(),
            error: "not a GeoTIFF".into(),
            attempts: 1,
        };
        let shard =
            |i: usize, state: &str, landed: usize, record: Option<ShardRecord>| ShardStatus {
                shard: i,
                jobs: 4,
                state: state.into(),
                landed,
                staged: None,
                record,
                problem: None,
            };
        let mut a = app();
        a.plan = Some(PlanView {
            at: "s3://bucket/plans/glad".into(),
            status: Some(PlanStatus {
                id: "3f2a9c81d07e".into(),
                repo: "s3://bucket/glad".into(),
                branch: "main".into(),
                base: "INITBBBBBBBBBBBBBBBB".into(),
                jobs: 16,
                landed: 9,
                staged: None,
                merged: None,
                commits: 5,
                shards: vec![
                    shard(0, "done", 4, Some(record(0, ShardState::Done, vec![]))),
                    shard(
                        1,
                        "running",
                        2,
                        Some(record(1, ShardState::Running, vec![])),
                    ),
                    shard(
                        2,
                        "failed",
                        3,
                        Some(record(2, ShardState::Failed, vec![failure.clone()])),
                    ),
                    shard(3, "not started", 0, None),
                ],
                failed: vec![PlanFailure { shard: 2, failure }],
            }),
            error: None,
        });
        a.popup = Some(Popup::Plan);
        both("plan", &a);
    }

    #[test]
    fn selection() {
        let mut a = app();
        a.selection.tiles.insert((2000, t("80N_180W")));
        a.selection.tiles.insert((2000, t("80N_160W")));
        a.grid.cursor = tilecube::grid::Cell { col: 2, row: 0 };
        both("selection", &a);
    }

    #[test]
    fn running_with_progress() {
        use tilecube::scaleout::ShardRecord;
        use tilecube::scaleout::record::TileChunks;
        let mut a = app();
        let record = ShardRecord {
            jobs: 3,
            written: 1,
            threads: 2,
            running: vec![TileChunks {
                tile: "2000/80N_180W".into(),
                done: 3,
                total: 16,
            }],
            queued: vec!["2000/80N_160W".into()],
            written_tiles: vec!["2000/70N_180W".into()],
            // Started now: the ETA reads 0 s whenever the test runs.
            started: chrono::Utc::now(),
            ..Default::default()
        };
        a.apply_runs(vec![run("7c1e0a9b3f21", "running", record)]);
        both("running", &a);
        a.focus = Focus::Runs;
        both("running_runs_panel", &a);
    }

    #[test]
    fn failed_tile_with_its_error() {
        let mut a = app();
        fail_80n_180w(&mut a, "has 3 bands; expected 1", 1);
        both("failed", &a);
    }

    /// A GDAL failure as a run records it: the cause, then GDAL's earlier messages.
    const GDAL_FAILURE: &str = "reading rows 0..400: CPL error class: '3', error number: 1: TIFFReadEncodedStrip() failed (GDAL said before: 20S_060W.tif: Read error at scanline 399; got 1462 bytes, expected 1637)";

    #[test]
    fn a_failure_reason_is_shown_whole_and_enter_opens_it() {
        let mut a = app();
        fail_80n_180w(&mut a, GDAL_FAILURE, 3);
        // The panel at 80x24 ends with the cause (it comes before the source line).
        let small = render(&a, 80, 24);
        assert!(small.contains("got 1462 bytes, expected 1637)"), "{small}");
        both("failed_long", &a);
        a.popup = Some(Popup::Tile(TileCard {
            year: 2000,
            tile: t("80N_180W"),
        }));
        let popup = render(&a, 80, 24);
        assert!(popup.contains("expected 1637)"), "{popup}");
        both("tile_popup", &a);
    }

    #[test]
    fn a_stalled_run_says_so_where_the_rate_was() {
        use tilecube::scaleout::ShardRecord;
        let mut a = app();
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let record = ShardRecord {
            jobs: 1295,
            written: 470,
            landed: 400,
            threads: 2,
            started: t0,
            progressed: Some(t0 + chrono::Duration::seconds(60)),
            ..Default::default()
        };
        a.apply_runs(vec![run("7c1e0a9b3f21", "running", record)]);
        a.now = t0 + chrono::Duration::seconds(80);
        let moving = render(&a, 80, 24);
        assert!(
            moving.contains("writing: 470/1295 written, 400 landed, 0 failed  "),
            "{moving}"
        );
        assert!(!moving.contains("no progress"), "{moving}");
        a.now = t0 + chrono::Duration::seconds(60 + 45);
        let stalled = render(&a, 80, 24);
        assert!(stalled.contains("no progress for 45 s"), "{stalled}");
        assert!(!stalled.contains("ETA"), "{stalled}");
        both("stalled", &a);
        // The quit dialog counts in the same words.
        a.popup = Some(Popup::Leave);
        let quit = render(&a, 80, 24);
        assert!(
            quit.contains("1 run going: 470/1295 written, 400 landed, 0 failed."),
            "{quit}"
        );
    }

    #[test]
    fn an_ocean_cell_says_only_that_the_source_has_no_tile() {
        let mut a = app();
        a.cube.source =
            Some(tilecube::source::Source::new("/data/glad", &Preset::glad().source).unwrap());
        a.grid.cursor = tilecube::grid::Cell { col: 5, row: 7 };
        let s = render(&a, 80, 24);
        assert!(s.contains("the source lists no tile here for 2000"), "{s}");
        assert!(!s.contains("chunks 0/"), "{s}");
        assert!(!s.contains("/data/glad"), "{s}");
        both("ocean", &a);
    }

    #[test]
    fn history_shows_tags_position_and_the_chosen_message_whole() {
        let mut a = with_history(app());
        a.focus = Focus::History;
        a.history.index = 2;
        a.cube
            .tags
            .insert(a.cube.history[2].id.clone(), vec!["v1.0".into()]);
        a.cube.tags.insert(
            a.cube.history[0].id.clone(),
            vec!["latest".into(), "v1.1".into()],
        );
        let s = render(&a, 80, 24);
        assert!(s.contains(" history 3/32 "), "{s}");
        assert!(s.contains("(v1.0) write 12 tiles"), "{s}");
        assert!(
            s.contains(&format!(
                "{} (tag: v1.0): write 12 tiles",
                a.cube.history[2].id
            )),
            "{s}"
        );
        both("history_tags", &a);
    }

    #[test]
    fn six_years_at_80_columns_keep_the_chosen_tab_and_the_filter_mark_in_sight() {
        let mut a = app();
        a.cube.years.push(2025);
        a.grid.year_index = 5;
        a.grid.filter = true;
        let s = render(&a, 80, 24);
        let tabs = s.lines().nth(1).unwrap();
        assert!(
            tabs.contains(" 6:2025 0/0 ") && tabs.contains("only ! % (F)"),
            "{s}"
        );
        assert!(
            tabs.contains(" 1:2000 ") && !tabs.contains(" 1:2000 1/5"),
            "{s}"
        );
        // With room, every tab has its counts.
        let s = render(&a, 160, 48);
        assert!(s.lines().nth(1).unwrap().contains(" 1:2000 1/5 "), "{s}");
    }

    #[test]
    fn the_log_popup_and_the_filter() {
        let mut a = app();
        fail_80n_180w(&mut a, "has 3 bands; expected 1", 1);
        a.grid.cursor = tilecube::grid::Cell { col: 5, row: 5 };
        a.grid.filter = true;
        let s = render(&a, 80, 24);
        let row = s.lines().nth(3).unwrap();
        assert!(row.starts_with("80N !"), "{s}");
        assert!(
            !row.contains('#') && !row.contains('o'),
            "only ! and % drawn: {s}"
        );
        assert!(s.lines().nth(1).unwrap().contains("only ! % (F)"), "{s}");
        both("filter", &a);
        a.grid.filter = false;
        a.popup = Some(Popup::Log(LogView {
            run: "7c1e0a9b3f21".into(),
            scroll: 2,
            lines: Ok((1..=40)
                .map(|i| format!("2026-12-01T04:00:{i:02}Z INFO line {i}"))
                .collect()),
        }));
        let s = render(&a, 80, 24);
        assert!(
            s.contains("line 38") && !s.contains("line 39"),
            "2 lines up from the end: {s}"
        );
        both("log", &a);
    }

    #[test]
    fn below_80x24_the_console_says_the_terminal_is_too_small() {
        let s = render(&app(), 60, 20);
        assert!(s.contains("terminal too small"), "{s}");
        assert!(s.contains("needs 80x24; this one is 60x20"), "{s}");
        insta::assert_snapshot!("too_small_60x20", s);
    }

    #[test]
    fn at_100x30_the_legend_and_the_runs_use_the_room() {
        let mut a = app();
        fail_80n_180w(&mut a, "has 3 bands; expected 1", 1);
        let s = render(&a, 100, 30);
        assert!(s.contains(" ! failed"), "the legend beside the grid:\n{s}");
        assert!(s.contains(" runs "), "the runs under the tile:\n{s}");
        insta::assert_snapshot!("room_100x30", s);
        // The room beside the grid is used: a row of the legend beside each of the grid's
        // first ten rows.
        let beside = s
            .lines()
            .skip(2)
            .take(10)
            .filter(|l| l.chars().count() > 82)
            .count();
        assert_eq!(beside, 10, "{s}");
    }

    #[test]
    fn at_80x24_the_footer_keeps_tab() {
        let s = render(&app(), 80, 24);
        let footer = s.lines().last().unwrap_or_default();
        assert!(footer.contains("Tab"), "{footer}");
    }

    #[test]
    fn dialogs_say_what_they_do() {
        let mut a = app();
        a.popup = Some(Popup::ConfirmWrite(WriteAsk {
            tiles: 3,
            years: 1,
            threads: 2,
            branch: "main".into(),
            rewrites: 1,
            message: "fix 2000".into(),
            bytes: Some(SelectionBytes {
                bytes: 1_234_000_000,
                absent: 0,
            }),
        }));
        let spec = Preset::glad().source;
        a.cube.source = Some(tilecube::source::Source::new("/data/glad", &spec).unwrap());
        let s = render(&a, 80, 24);
        assert!(s.contains("It reads 1.2 GB at the source."), "{s}");
        assert!(
            s.contains("Write 3 tiles of 1 year to branch main on 2 threads?"),
            "{s}"
        );
        assert!(s.contains("1 of them is written already"), "{s}");
        assert!(s.contains("commit message: fix 2000_"), "{s}");
        both("confirm_write", &a);
        let record = tilecube::scaleout::ShardRecord {
            jobs: 10,
            written: 5,
            landed: 4,
            ..Default::default()
        };
        a.apply_runs(vec![run("7c1e0a9b3f21", "running", record)]);
        a.popup = Some(Popup::ConfirmCancel(CancelAsk {
            runs: vec!["7c1e0a9b3f21".into()],
        }));
        let s = render(&a, 80, 24);
        assert!(s.contains("Cancel 1 run going (7c1e0a9b3f21)?"), "{s}");
        assert!(
            s.contains("So far: 5/10 written, 4 landed, 0 failed."),
            "{s}"
        );
        both("confirm_cancel", &a);
        a.popup = Some(Popup::TagPrompt(TagPrompt {
            snapshot: "SNAPAAAAAAAAAAAAAAAA".into(),
            name: "first release".into(),
            refused: tilecube::cube::tag_name_problem("first release"),
        }));
        let s = render(&a, 80, 24);
        assert!(s.contains("refused: only letters, digits"), "{s}");
        both("tag_refused", &a);
        a.popup = Some(Popup::Find(FindPrompt {
            text: "99N_000E".into(),
            error: Some("\"99N_000E\" is not a tile name (like 10N_020E)".into()),
        }));
        both("find", &a);
    }

    #[test]
    fn snapshot_browse_and_diff() {
        let mut a = app();
        a.cube.browse = Some(Browse {
            snapshot: "INITBBBBBBBBBBBBBBBB".into(),
            message: "initialize array".into(),
            coverage: Default::default(),
            diff_against: None,
            changed: Default::default(),
        });
        both("browse", &a);
        a.cube.browse = Some(Browse {
            snapshot: "SNAPAAAAAAAAAAAAAAAA".into(),
            message: "1 tiles changed".into(),
            coverage: [(2000, t("80N_170W"))].into(),
            diff_against: Some("INITBBBBBBBBBBBBBBBB".into()),
            changed: [(2000, t("80N_170W"))].into(),
        });
        a.focus = Focus::History;
        both("diff", &a);
    }

    /// A map image of the whole grid: ocean (254) around a land block of classes by
    /// column, no data (255) in the north.
    fn map_app() -> App {
        let mut a = app();
        let (w, h) = (36 * 8, 14 * 8);
        let pixels = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                if y < 8 {
                    255
                } else if (60..230).contains(&x) && (20..90).contains(&y) {
                    [10, 30, 60, 120, 244, 250][(x / 30) % 6]
                } else {
                    254
                }
            })
            .collect();
        a.map.shown = true;
        a.cube.head = Some("SNAPAAAAAAAAAAAAAAAA".into());
        let key = map::wanted(&a);
        a.map.image = Some((
            key,
            Ok(tilecube::cube::LevelImage {
                level: 3,
                factor: 8,
                row0: 0,
                col0: 0,
                width: w,
                height: h,
                pixels,
            }),
        ));
        a.grid.cursor = tilecube::grid::Cell { col: 12, row: 5 };
        a.selection.tiles.insert((2000, t("00N_000E")));
        a
    }

    /// Share of a rendered screen's cells that are blank.
    fn blank_share(screen: &str, w: usize, h: usize) -> f64 {
        let filled: usize = screen
            .lines()
            .map(|l| l.chars().filter(|c| *c != ' ').count())
            .sum();
        1.0 - filled as f64 / (w * h) as f64
    }

    #[test]
    fn world_map_in_colour_and_without() {
        let a = map_app();
        both("map", &a);
        let mut plain = map_app();
        plain.color = false;
        both("map_no_color", &plain);
        // Grown cells (160x48) mark each tile's edges; 80x24's two-character cells do not.
        assert!(render(&a, 160, 48).contains('▕'));
        assert!(!render(&a, 80, 24).contains('▕'));
        // At 80x24, where no legend panel is, the tile panel names the classes shown.
        let small = render(&a, 80, 24);
        let ocean = tilecube::legend::class_of(254).unwrap().label.clone();
        assert!(small.contains(&ocean), "{small}");
        // Without colour the data still reads: ocean, classes and no data by glyph.
        let screen = render(&plain, 80, 24);
        for glyph in ['░', '▒', '▓', '%', '#', '@', '~', '[', '*'] {
            assert!(screen.contains(glyph), "{glyph} missing:\n{screen}");
        }
    }

    /// A console on a cube being written: a history that fills its panel.
    fn with_history(mut a: App) -> App {
        let first = a.cube.history[0].clone();
        for i in 0..30 {
            let mut c = first.clone();
            c.id = format!("SNAP{i:0>16}");
            c.message = format!("write 12 tiles: 2000/{i:02}N_010E, 2000/{i:02}N_020E, …");
            a.cube.history.insert(0, c);
        }
        a
    }

    #[test]
    fn a_large_terminal_grows_the_cells_and_leaves_little_blank() {
        let grid = render(&with_history(app()), 160, 48);
        let map = render(&with_history(map_app()), 160, 48);
        for (name, screen) in [("grid", &grid), ("map", &map)] {
            let blank = blank_share(screen, 160, 48);
            assert!(
                blank <= 0.25,
                "{name}: {:.0} % blank at 160×48:\n{screen}",
                blank * 100.0
            );
        }
        // Three columns and three lines a tile: the grid's rows reach line 45.
        assert!(grid.lines().nth(44).is_some_and(|l| l.starts_with("    ")));
        let small = render(&app(), 80, 24);
        assert!(blank_share(&small, 80, 24) < 0.6, "80×24 still fits");
    }

    #[test]
    fn quicklook_help_and_quit_confirm() {
        let mut a = app();
        let px: Vec<u8> = (0..64 * 64)
            .map(|i| match (i / 64, i % 64) {
                (row, _) if row < 20 => 255,
                (_, col) if col < 40 => 10,
                (_, col) => col as u8,
            })
            .collect();
        a.popup = Some(Popup::QuickLook(QuickLook {
            year: 2000,
            tile: t("80N_170W"),
            pixels: Some((64, px)),
        }));
        a.color = false;
        // The quick-look names the classes it shows, under the picture, most first.
        let s = render(&a, 80, 24);
        let label = tilecube::legend::class_of(10).unwrap().label.clone();
        assert!(s.contains(&label[..label.len().min(12)]), "{s}");
        both("quicklook", &a);
        let mut a = app();
        a.popup = Some(Popup::Help);
        both("help", &a);
        let record = tilecube::scaleout::ShardRecord {
            jobs: 10,
            landed: 4,
            ..Default::default()
        };
        a.apply_runs(vec![run("7c1e0a9b3f21", "running", record)]);
        a.popup = Some(Popup::Leave);
        both("quit_confirm", &a);
    }

    #[test]
    fn no_color_keeps_every_state_readable_by_glyph() {
        let mut a = app();
        fail_80n_180w(&mut a, "bad", 1);
        a.runs.uncommitted.insert((2000, t("80N_160W")));
        a.color = false;
        both("no_color", &a);
        let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
        term.draw(|f| draw(f, &a)).unwrap();
        let buf = term.backend().buffer();
        for cell in buf.content() {
            assert_eq!(cell.fg, Color::Reset, "no colour with NO_COLOR");
            assert_eq!(cell.bg, Color::Reset, "no colour with NO_COLOR");
        }
        let row = render(&a, 80, 24).lines().nth(3).unwrap().to_string();
        assert!(row.starts_with("80N ! # + "), "{row}");
        // With colour the same states differ by colour as well.
        a.color = true;
        let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
        term.draw(|f| draw(f, &a)).unwrap();
        assert_eq!(term.backend().buffer()[(4, 3)].fg, Color::Red);
        assert_eq!(term.backend().buffer()[(6, 3)].fg, Color::Green);
    }
}
