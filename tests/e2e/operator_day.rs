//! An operator's day in the console at 80×24, in a real terminal (tmux): the footer always
//! offers help and quit; a write with a commit message; a tile GDAL cannot read fails with
//! its whole reason — cut in no panel, whole in the tile popup with GDAL's earlier messages;
//! the runs panel names the failed tile and `Enter` goes there; `n` and `/` find tiles; `y`
//! copies a tile's name to the terminal's clipboard (OSC 52, which tmux keeps as a paste
//! buffer); a snapshot browsed read-only says why it takes no write key; tags show in the
//! history.

use crate::common;

use common::Work;
use common::tmux::Tmux;
use tilecube::demo::Flaw;

fn console_cmd(w: &Work) -> String {
    format!(
        "TILECUBE_DATA_DIR={} {} --config {} tui; echo CONSOLE-EXITED $?; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    )
}

/// The lines of the screen, trimmed at the end.
fn lines(s: &str) -> Vec<&str> {
    s.lines().map(str::trim_end).collect()
}

#[test]
fn an_operators_day_at_80x24() {
    let w = Work::new();
    w.tile(2000, "00N_000E", Flaw::None);
    // A tile cut short: GDAL fails reading its last strip, after libtiff's short read.
    let cut = w.tile(2000, "30N_030E", Flaw::None);
    let len = std::fs::metadata(&cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len * 2 / 3)
        .unwrap();
    w.list(2000, &["00N_000E", "30N_030E"], "");
    w.ok(&["init"]);

    let tmux = Tmux::start(&console_cmd(&w));
    tmux.cmd(&["set-option", "-g", "set-clipboard", "on"]);
    let s = tmux.wait_for("1:2000 0/2");
    // The footer ends with help and quit at 80 columns, and fits them.
    let footer = *lines(&s).iter().rev().find(|l| !l.is_empty()).unwrap();
    assert!(footer.ends_with("? help  q quit"), "{s}");
    assert!(footer.chars().count() <= 80, "{s}");

    // a selects both, w asks with the branch and takes a commit message.
    tmux.keys(&["a"]);
    tmux.wait_for("2 tiles selected in 1 year");
    tmux.keys(&["w"]);
    tmux.wait_for("Write 2 tiles of 1 year to branch main on");
    tmux.text("first ingest");
    tmux.wait_for("commit message: first ingest_");
    tmux.keys(&["Enter"]);
    tmux.wait_for("write finished: 1/2 written, 1 landed, 1 failed");
    let log: serde_json::Value = serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    assert_eq!(log[0]["message"], "first ingest", "{log}");

    // L shows the run's own log, in the console.
    tmux.keys(&["L"]);
    tmux.wait_for(" log (");
    // The popup opens at once, saying so while the log is read.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut s = tmux.screen();
    while s.contains("reading the log") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        s = tmux.screen();
    }
    assert!(
        s.contains("30N_030E"),
        "the run's log names the failed tile:\n{s}"
    );
    tmux.keys(&["Escape"]);

    // The runs panel names the failed tile; Enter goes there.
    tmux.keys(&["Tab", "Tab"]);
    let s = tmux.wait_for("failed: 2000/30N_030E");
    assert!(s.contains("1 commit"), "{s}");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("2000/30N_030E  failed");
    // The whole reason in the tile popup: the failing read and GDAL's earlier message.
    tmux.keys(&["Enter"]);
    let popup = tmux.wait_for(" tile (Esc closes) ");
    let text: String = lines(&popup).join(" ");
    assert!(
        text.contains("TIFFReadEncodedStrip() failed") || text.contains("IReadBlock failed"),
        "{popup}"
    );
    assert!(
        text.contains("(after: "),
        "GDAL's earlier message:\n{popup}"
    );
    assert!(s.contains("failed (1 attempt): reading rows "), "{s}");
    tmux.keys(&["Escape"]);

    // y copies the tile's name: tmux keeps OSC 52 as its newest paste buffer.
    tmux.keys(&["y"]);
    tmux.wait_for("copied 30N_030E");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let buffer = String::from_utf8_lossy(&tmux.cmd(&["show-buffer"]).stdout).into_owned();
        if buffer == "30N_030E" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "clipboard holds {buffer:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // `/` goes to a tile by name, n to the failed one.
    tmux.keys(&["/"]);
    tmux.text("00n_000e");
    tmux.keys(&["Enter"]);
    tmux.wait_for("2000/00N_000E  written");
    tmux.keys(&["n"]);
    tmux.wait_for("2000/30N_030E failed: Enter shows why");

    // Tag the head in the history: a name with a space is refused as typed, then fixed.
    tmux.keys(&["Tab", "t"]);
    tmux.text("first ingest");
    tmux.wait_for("refused: only letters, digits");
    for _ in 0.." ingest".len() {
        tmux.keys(&["BSpace"]);
    }
    tmux.keys(&["Enter"]);
    tmux.wait_for("(first) first ingest");
    // Browse it read-only: a write key says why it does nothing.
    tmux.keys(&["Enter"]);
    tmux.wait_for("READ-ONLY SNAPSHOT");
    tmux.keys(&["Tab", "Tab", "Space"]);
    tmux.wait_for("read-only snapshot: it cannot be written; Esc returns to the head");
    tmux.keys(&["Escape", "q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}
