//! What the console's tests build their states from (test builds only): consoles on small
//! cubes, keys, tile names, commits, runs and their records, and the screen drawn as text.
//!
//! Invariant: fixtures only; no test lives here (each lives beside the component it tests).

use chrono::{TimeZone, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tilecube::cube::{Commit, Coverage, TileState, WrittenTiles};
use tilecube::grid::{Grid, TileName};
use tilecube::preset::Preset;
use tilecube::runs::{Run, RunInfo, RunState};
use tilecube::scaleout::ShardRecord;

use super::App;

/// A key press without modifiers.
pub fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

/// A character key.
pub fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// A tile by name.
pub fn t(s: &str) -> TileName {
    s.parse().unwrap()
}

/// A console on the GLAD grid of 400-pixel tiles, years 2000 and 2005, three tiles listed
/// in 2000 and nothing read of the repository yet.
pub fn app() -> App {
    let grid = Grid::from_preset(&Preset::glad(), Some(400)).unwrap();
    let mut app = App::new("repo".into(), "main".into(), grid, vec![2000, 2005], 2);
    let listed = ["80N_180W", "80N_170W", "70N_180W"].map(|s| s.parse().unwrap());
    app.cube.listed.insert(2000, listed.into_iter().collect());
    app
}

/// A console on a small cube, as the screen tests draw it: five years, five tiles listed in
/// 2000 and one in 2005, 2000/80N_170W written, two commits (the write and the init).
pub fn small_cube() -> App {
    // SAFETY: each test runs in its own process under nextest; set before any thread.
    unsafe { std::env::set_var("TZ", "UTC") };
    let grid = Grid::from_preset(&Preset::glad(), Some(400)).unwrap();
    let mut app = App::new(
        "/data/cube".into(),
        "main".into(),
        grid,
        vec![2000, 2005, 2010, 2015, 2020],
        2,
    );
    let listed = ["80N_180W", "80N_170W", "80N_160W", "70N_180W", "00N_000E"].map(t);
    app.cube.listed.insert(2000, listed.into_iter().collect());
    app.cube
        .listed
        .insert(2005, [t("00N_000E")].into_iter().collect());
    app.cube.coverage = Coverage {
        tiles: [(
            (2000, t("80N_170W")),
            TileState::Written {
                chunks: 1,
                snapshot: "SNAPAAAAAAAAAAAAAAAA".into(),
            },
        )]
        .into(),
        ..Default::default()
    };
    let mut w = WrittenTiles::new();
    w.entry(2000).or_default().insert(t("80N_170W"), 1);
    let time = Utc.with_ymd_and_hms(2026, 11, 24, 12, 30, 0).unwrap();
    app.cube.history = vec![
        Commit {
            id: "SNAPAAAAAAAAAAAAAAAA".into(),
            parent: Some("INITBBBBBBBBBBBBBBBB".into()),
            time,
            message: "write 1 tile: 2000/80N_170W".into(),
            written: w,
            init: false,
            plan: None,
            carried: Default::default(),
            sources: Default::default(),
            layout_changed: false,
        },
        Commit {
            id: "INITBBBBBBBBBBBBBBBB".into(),
            parent: None,
            time,
            message: "initialize array".into(),
            written: WrittenTiles::new(),
            init: true,
            plan: None,
            carried: Default::default(),
            sources: Default::default(),
            layout_changed: false,
        },
    ];
    app
}

/// The screen drawn at `w`×`h`, a line a row, blanks at the ends of lines trimmed.
pub fn render(app: &App, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| crate::tui::view::draw(f, app)).unwrap();
    let buf = term.backend().buffer();
    (0..h)
        .map(|y| {
            let line: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A record of three jobs on two threads that wrote these tiles of 2000 and landed `landed`.
pub fn record(written: &[&str], landed: usize) -> ShardRecord {
    ShardRecord {
        jobs: 3,
        threads: 2,
        written: written.len(),
        landed,
        written_tiles: written.iter().map(|w| format!("2000/{w}")).collect(),
        ..Default::default()
    }
}

/// A commit of the history, by its id, made at `time`.
pub fn commit(id: &str, time: chrono::DateTime<chrono::Utc>) -> Commit {
    Commit {
        id: id.into(),
        parent: None,
        time,
        message: "m".into(),
        written: Default::default(),
        init: false,
        plan: None,
        carried: Default::default(),
        sources: Default::default(),
        layout_changed: false,
    }
}

/// A run of `repo` in `state` with this record (tiles and failures counted from it).
pub fn run(id: &str, state: &str, record: ShardRecord) -> Run {
    let state = match state {
        "starting" => RunState::Starting,
        "running" => RunState::Running,
        "done" => RunState::Done,
        "failed" => RunState::Failed,
        "cancelled" => RunState::Cancelled,
        _ => RunState::Dead,
    };
    let started = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
    Run {
        info: RunInfo {
            id: id.into(),
            repo: "/data/cube".into(),
            cube: String::new(),
            pid: 4242,
            pid_start: 1,
            started,
        },
        state,
        tiles_done: record.skipped + record.landed,
        tiles_total: record.jobs,
        failed: record.failed.len(),
        plan: format!("/state/runs/{id}/plan").into(),
        log: format!("/state/runs/{id}/log.txt").into(),
        record: Some(record),
    }
}
