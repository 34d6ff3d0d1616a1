//! The world map, as a picture and in the console. `tilecube map` draws the cube as it was
//! at `--snapshot`, the level of `--factor` at that level's size, and exactly the pixels of
//! `--bbox` (each picture decoded with GDAL and compared pixel for pixel with the legend's
//! colours of the pixels expected); the console's map (`m`) marks with `◆` exactly the tiles
//! a diff of two snapshots changed, in a real terminal (tmux).

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use common::tmux::Tmux;
use common::{TILE, Work, gdal_pixels, t};
use tilecube::demo::Flaw;
use tilecube::legend;

const FILL: u8 = 255;
const WHITE: [u8; 3] = [255, 255, 255];

/// A PNG's pixels, decoded by GDAL.
struct Picture {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Picture {
    fn open(path: &Path) -> Self {
        let ds = gdal::Dataset::open(path).expect("open the picture");
        let (width, height) = ds.raster_size();
        assert_eq!(ds.raster_count(), 3, "an RGB picture");
        let bands: Vec<Vec<u8>> = (1..=3)
            .map(|b| {
                ds.rasterband(b)
                    .expect("band")
                    .read_as::<u8>((0, 0), (width, height), (width, height), None)
                    .expect("read")
                    .data()
                    .to_vec()
            })
            .collect();
        let rgb = (0..width * height)
            .map(|i| [bands[0][i], bands[1][i], bands[2][i]])
            .collect();
        Self { width, height, rgb }
    }

    fn at(&self, x: usize, y: usize) -> [u8; 3] {
        self.rgb[y * self.width + x]
    }

    /// The picture's map is `w`×`h` pixels at its top left, pixel (x, y) coloured
    /// `colour(x, y)`; beside it (the picture is at least 400 px wide, for the legend strip)
    /// and under it (the strip's margin) the picture is blank.
    fn assert_map(&self, w: usize, h: usize, colour: impl Fn(usize, usize) -> [u8; 3], what: &str) {
        assert_eq!(self.width, w.max(400), "{what}: the picture's width");
        assert!(self.height > h + 4, "{what}: a legend strip under the map");
        let mut wrong = vec![];
        for y in 0..h {
            for x in 0..w {
                let want = colour(x, y);
                if self.at(x, y) != want {
                    wrong.push((x, y, self.at(x, y), want));
                }
            }
            for x in w..self.width {
                if self.at(x, y) != WHITE {
                    wrong.push((x, y, self.at(x, y), WHITE));
                }
            }
        }
        for y in h..h + 4 {
            for x in 0..self.width {
                if self.at(x, y) != WHITE {
                    wrong.push((x, y, self.at(x, y), WHITE));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{what}: {} pixels differ, the first (x, y, got, want): {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(8)]
        );
    }
}

/// A tile written in two classes: the upper half of its cell `top`, the lower half `bottom`.
struct TwoClass {
    col: usize,
    row: usize,
    top: u8,
    bottom: u8,
}

impl TwoClass {
    fn new(w: &Work, name: &str, top: u8, bottom: u8) -> Self {
        w.two_class_tile(2000, name, top, bottom);
        let cell = w.grid.cell(t(name)).expect("cell");
        Self {
            col: cell.col as usize,
            row: cell.row as usize,
            top,
            bottom,
        }
    }
}

/// The legend's colour of pixel (x, y) of the level of `factor` of a year holding `tiles`
/// alone: a tile's cell is `TILE / factor` pixels a side (the mode of uniform halves is
/// their class), the rest is fill.
fn colour_at(tiles: &[&TwoClass], factor: usize, x: usize, y: usize) -> [u8; 3] {
    let side = TILE as usize / factor;
    let class = tiles
        .iter()
        .find(|c| x / side == c.col && y / side == c.row)
        .map(|c| if y % side < side / 2 { c.top } else { c.bottom })
        .unwrap_or(FILL);
    legend::rgb(class)
}

/// Run `map` with these arguments into `name` in the workspace; returns its stdout and the
/// picture's path.
fn map(w: &Work, args: &[&str], name: &str) -> (String, std::path::PathBuf) {
    let png = w.dir.path().join(name);
    let mut all = vec!["map", "--year", "2000"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", png.to_str().expect("path")]);
    (w.ok(&all), png)
}

// The test grid: 36×14 tiles of 400 px, 14 400 × 5 600 px; levels ×2, ×4 and ×8 (the first
// at most 2 048 px wide: 1 800 × 700), levels 1, 2 and 3.

#[test]
fn map_at_an_old_snapshot_draws_the_cube_as_it_was_then() {
    let w = Work::new();
    let a = TwoClass::new(&w, "00N_000E", 30, 200);
    let b = TwoClass::new(&w, "10N_010E", 244, 50);
    w.list(2000, &["00N_000E", "10N_010E"], "");
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2000", "--tiles", "00N_000E"]);
    let log: serde_json::Value = serde_json::from_str(&w.ok(&["log", "--json"])).expect("log");
    let with_a = log[0]["id"].as_str().expect("snapshot id").to_string();
    assert_eq!(log[0]["message"], "write 1 tile: 2000/00N_000E");
    w.ok(&["write", "--year", "2000", "--tiles", "10N_010E"]);

    // At the snapshot of the first write: tile A, and no trace of B.
    let (out, png) = map(&w, &["--snapshot", &with_a], "then.png");
    assert!(
        out.contains("1800×700 px of level 3 (factor 8), 2000"),
        "{out}"
    );
    Picture::open(&png).assert_map(
        1800,
        700,
        |x, y| colour_at(&[&a], 8, x, y),
        "the map at the first write's snapshot",
    );
    // At the head: both.
    let (_, png) = map(&w, &[], "now.png");
    Picture::open(&png).assert_map(
        1800,
        700,
        |x, y| colour_at(&[&a, &b], 8, x, y),
        "the map at the head",
    );
}

#[test]
fn map_factor_draws_that_level_at_its_size() {
    let w = Work::new();
    let a = TwoClass::new(&w, "00N_000E", 30, 200);
    w.list(2000, &["00N_000E"], "");
    w.ok(&["init"]);
    w.ok(&["write", "--all", "--year", "2000"]);

    // By default the coarsest level; `--factor 4` the level of factor 4, 14 400 / 4 wide.
    let (out, png) = map(&w, &[], "coarsest.png");
    assert!(
        out.contains("1800×700 px of level 3 (factor 8), 2000"),
        "{out}"
    );
    Picture::open(&png).assert_map(1800, 700, |x, y| colour_at(&[&a], 8, x, y), "×8");
    let (out, png) = map(&w, &["--factor", "4"], "x4.png");
    assert!(
        out.contains("3600×1400 px of level 2 (factor 4), 2000"),
        "{out}"
    );
    Picture::open(&png).assert_map(3600, 1400, |x, y| colour_at(&[&a], 4, x, y), "×4");

    // A factor the cube has no level of is refused by name, with the factors it has.
    let none = w.dir.path().join("x16.png");
    let o = w.run(&[
        "map",
        "--year",
        "2000",
        "--factor",
        "16",
        "--out",
        none.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{said}");
    assert!(
        said.contains("--factor 16: the cube's levels have factors 1, 2, 4, 8"),
        "{said}"
    );
    assert!(!none.exists());
}

#[test]
fn map_bbox_crops_to_exactly_the_box() {
    let w = Work::new();
    // A: the demo's texture, checked at full resolution against GDAL's read of the file.
    let a_path = w.tile(2000, "00N_000E", Flaw::None);
    let b = TwoClass::new(&w, "10N_010E", 244, 50);
    w.list(2000, &["00N_000E", "10N_010E"], "");
    w.ok(&["init"]);
    w.ok(&["write", "--all", "--year", "2000"]);

    // The box of tile A (named by its north-west corner: 0°..10°E, 10°S..0°) at full
    // resolution: its 400×400 pixels, each as GDAL reads it.
    let (out, png) = map(&w, &["--factor", "1", "--bbox", "0,-10,10,0"], "a.png");
    assert!(
        out.contains("400×400 px of level 0 (factor 1), 2000"),
        "{out}"
    );
    let source = gdal_pixels(&a_path);
    Picture::open(&png).assert_map(
        400,
        400,
        |x, y| legend::rgb(source[y * 400 + x]),
        "tile A's box at full resolution",
    );

    // A box across A and B at ×8 (0.2° a pixel): 100×100 px, the whole level's pixels
    // from column (180 − 5) / 0.2 = 875 and row (80 − 15) / 0.2 = 325.
    let (_, whole) = map(&w, &[], "whole.png");
    let whole = Picture::open(&whole);
    let (out, png) = map(&w, &["--bbox", "-5,-5,15,15"], "box.png");
    assert!(
        out.contains("100×100 px of level 3 (factor 8), 2000"),
        "{out}"
    );
    let crop = Picture::open(&png);
    let (x0, y0) = (875, 325);
    crop.assert_map(
        100,
        100,
        |x, y| whole.at(x0 + x, y0 + y),
        "the box across A and B",
    );
    // The box holds both tiles: B's two classes, and A's texture.
    let colours: BTreeSet<[u8; 3]> = (0..100)
        .flat_map(|y| (0..100).map(move |x| (x, y)))
        .map(|(x, y)| crop.at(x, y))
        .collect();
    assert!(colours.contains(&legend::rgb(b.top)), "{colours:?}");
    assert!(colours.contains(&legend::rgb(b.bottom)), "{colours:?}");
    assert!(colours.len() > 4, "A's texture: {colours:?}");
}

/// The grid rows' labels, top to bottom.
fn row_labels(w: &Work) -> Vec<String> {
    (0..w.grid.rows)
        .map(|r| {
            w.grid
                .tile_at(tilecube::grid::Cell { col: 0, row: r })
                .to_string()[..3]
                .to_string()
        })
        .collect()
}

/// Every `◆` of the map's rows, as (row label, tile column), where the map draws a tile's
/// first character at column 4 + 2 × its grid column (80×24: two characters a tile). The
/// title and the year tabs above the map say how many differ with the same glyph.
fn diff_marks(screen: &str, labels: &[String]) -> Vec<(String, usize)> {
    let mut marks = vec![];
    for line in screen.lines().skip(3) {
        let chars: Vec<char> = line.chars().collect();
        for (i, _) in chars.iter().enumerate().filter(|(_, c)| **c == '◆') {
            let label: String = chars.iter().take(3).collect();
            assert!(
                labels.contains(&label) && i >= 4 && (i - 4) % 2 == 0,
                "a mark outside a tile's first character: {line:?}\n{screen}"
            );
            marks.push((label, (i - 4) / 2));
        }
    }
    marks
}

#[test]
fn the_console_map_marks_exactly_the_tiles_a_diff_changed() {
    let w = Work::new();
    let names = ["00N_000E", "10N_010E", "20S_030W"];
    w.two_class_tile(2000, "00N_000E", 30, 200);
    w.two_class_tile(2000, "10N_010E", 244, 50);
    w.two_class_tile(2000, "20S_030W", 60, 60);
    w.list(2000, &names, "");
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2000", "--tiles", "00N_000E,10N_010E"]);
    // The next commit rewrites A with other pixels and writes C; B stays as it was.
    w.two_class_tile(2000, "00N_000E", 50, 50);
    w.ok(&["write", "--year", "2000", "--tiles", "00N_000E,20S_030W"]);

    let cmd = format!(
        "TILECUBE_DATA_DIR={} {} --config {} tui; echo CONSOLE-EXITED $?; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    );
    let tmux = Tmux::start(&cmd);
    tmux.wait_for("1:2000 3/3");
    tmux.keys(&["m"]);
    tmux.wait_for("map: 2000 from level 3 (1:8)");
    let labels = row_labels(&w);

    // The history: Enter opens the head read-only; the map follows it, with no mark yet.
    tmux.keys(&["Tab"]);
    tmux.wait_for(" history ");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("READ-ONLY SNAPSHOT");
    assert!(
        s.contains("write 2 tiles: 2000/00N_000E, 2000/20S_030W"),
        "{s}"
    );
    let s = wait_until(&tmux, "the map at the snapshot", |s| {
        row_line(s, "00N").contains('▀')
    });
    assert_eq!(diff_marks(&s, &labels), vec![], "no diff, no mark: {s}");

    // d on the commit before it: A (rewritten) and C (new) changed; B did not.
    tmux.keys(&["Down", "d"]);
    let s = tmux.wait_for(": 2 tiles differ (◆)");
    assert!(s.contains("DIFF "), "{s}");
    let s = tmux.wait_for("◆");
    let cell = |name: &str| {
        let c = w.grid.cell(t(name)).expect("cell");
        (labels[c.row as usize].clone(), c.col as usize)
    };
    let mut marks = diff_marks(&s, &labels);
    marks.sort();
    let mut want = vec![cell("00N_000E"), cell("20S_030W")];
    want.sort();
    assert_eq!(marks, want, "◆ on exactly the tiles the diff changed: {s}");
    let in_map: usize = s.lines().skip(3).map(|l| l.matches('◆').count()).sum();
    assert_eq!(in_map, 2, "{s}");
    assert!(
        row_line(&s, &cell("10N_010E").0).contains('▀'),
        "B's row is drawn, unmarked: {s}"
    );

    // Esc leaves the diff: the marks go.
    tmux.keys(&["Escape"]);
    let s = tmux.wait_for("back to the branch head");
    assert_eq!(diff_marks(&s, &labels), vec![], "{s}");
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}

/// The line of the screen that starts with a grid row's label.
fn row_line(screen: &str, label: &str) -> String {
    screen
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_default()
        .to_string()
}

/// Wait (a minute at most) until the screen meets `ok`; returns it.
fn wait_until(tmux: &Tmux, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = tmux.screen();
        if ok(&s) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; screen:\n{s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
