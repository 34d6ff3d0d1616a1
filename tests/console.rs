//! The console end to end, in a real terminal: tmux runs the real binary at 80×24 on a
//! generated source; keys go in with send-keys and the screen comes back with capture-pane.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Work;
use tilecube::demo::Flaw;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &str) -> Self {
        // A socket of its own per session: a server being shut down never meets a new one.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let socket = format!("tilecube-test-{}-{n}", std::process::id());
        let tmux = Self { socket };
        let ok = tmux
            .cmd(&["new-session", "-d", "-s", "t", "-x", "80", "-y", "24", cmd])
            .status
            .success();
        assert!(ok, "tmux new-session failed");
        tmux.cmd(&["set-option", "-g", "escape-time", "0"]);
        tmux
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux (installed by .ci/setup)")
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.cmd(&["send-keys", "-t", "t", k]);
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    fn text(&self, text: &str) {
        self.cmd(&["send-keys", "-t", "t", "-l", text]);
    }

    /// The RGB colours (`r;g;b`) the screen uses, from `capture-pane -e`'s escapes.
    fn colours(&self) -> std::collections::BTreeSet<String> {
        let raw =
            String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-e", "-t", "t"]).stdout)
                .into_owned();
        let mut out = std::collections::BTreeSet::new();
        for part in raw.split("\x1b[").skip(1) {
            let params = part.split('m').next().unwrap_or("");
            let p: Vec<&str> = params.split(';').collect();
            let mut i = 0;
            while i < p.len() {
                if (p[i] == "38" || p[i] == "48") && p.get(i + 1) == Some(&"2") && i + 4 < p.len() {
                    out.insert(format!("{};{};{}", p[i + 2], p[i + 3], p[i + 4]));
                    i += 5;
                } else {
                    i += 1;
                }
            }
        }
        out
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    fn wait_for(&self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// After the console: TTY-SANE when the terminal is out of raw mode (canonical input and
/// echo back on), TTY-RAW otherwise.
const TTY_CHECK: &str = "if stty -a | grep -Eq '(^|[ ;])icanon([ ;]|$)' && stty -a | grep -Eq '(^|[ ;])echo([ ;]|$)'; then echo TTY-SANE; else echo TTY-RAW; fi";

/// The shell command that runs the console on a workspace and reports its exit status and
/// the terminal's mode.
fn console_cmd(w: &Work) -> String {
    format!(
        "TILECUBE_DATA_DIR={} {} --config {} tui; echo CONSOLE-EXITED $?; {TTY_CHECK}; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    )
}

impl Tmux {
    /// The console's process id (the child of the pane's shell).
    fn console_pid(&self) -> String {
        let pane = String::from_utf8_lossy(
            &self
                .cmd(&["display", "-p", "-t", "t", "#{pane_pid}"])
                .stdout,
        )
        .trim()
        .to_string();
        let out = Command::new("pgrep")
            .args(["-P", &pane])
            .output()
            .expect("pgrep");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .expect("console process")
            .to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.cmd(&["kill-server"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_writes_commits_browses_and_quits_in_a_real_terminal() {
    let w = Work::new();
    let tiles = ["80N_180W", "80N_170W", "80N_160W", "70N_180W"];
    for t in tiles {
        w.tile(2000, t, Flaw::None);
    }
    // The quick-look's tile: dense short vegetation (30) above, tree cover (50) below.
    w.two_class_tile(2000, "80N_160W", 30, 50);
    w.list(2000, &tiles, "");
    w.ok(&["init"]);
    let tmux = Tmux::start(&console_cmd(&w));
    let s = tmux.wait_for("1:2000 0/4");
    assert!(s.contains("80N o o o"), "{s}");

    // Select three tiles, write them.
    tmux.keys(&["Space", "l", "Space", "l", "Space", "w"]);
    let s = tmux.wait_for("Write 3 tiles of 1 year(s) on");
    assert!(s.contains("80N o*o*o*"), "{s}");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("write finished: 3 written, 0 failed");
    assert!(s.contains("80N + + + "), "written, not committed: {s}");

    // Commit with a typed message.
    tmux.keys(&["c"]);
    tmux.wait_for("commit message");
    tmux.text(" checked by ops");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("1:2000 3/4");
    assert!(
        s.contains("80N # # # "),
        "committed tiles show as written: {s}"
    );
    assert!(s.contains("committed "), "{s}");

    // A quick-look of a written tile, read back from the cube.
    tmux.keys(&["p"]);
    let s = tmux.wait_for("quick-look (Esc closes)");
    assert!(s.contains("2000/80N_160W"), "{s}");
    let s = tmux.wait_for("▀");
    assert!(!s.contains("reading the tile"), "{s}");
    // Its colours are the legend's for exactly those two classes.
    let colours = tmux.colours();
    let (short_veg, trees) = ("110;170;60", "30;110;40");
    assert!(
        colours.contains(short_veg) && colours.contains(trees),
        "legend colours of classes 30 and 50 in the quick-look: {colours:?}"
    );
    for other in ["254;254;206", "196;216;120"] {
        assert!(!colours.contains(other), "a class the tile lacks: {other}");
    }
    tmux.keys(&["Escape"]);
    tmux.wait_for("←↓↑→ move");

    // The history lists the commit; Enter on the previous snapshot browses it read-only.
    tmux.keys(&["Tab"]);
    let s = tmux.wait_for(" history ");
    assert!(
        s.contains("write 3 tiles: 2000/80N_180W, 2000/80N_170W, 2000/80N_160W"),
        "{s}"
    );
    assert!(s.contains("initialize array"), "{s}");
    tmux.keys(&["Down", "Enter"]);
    let s = tmux.wait_for("SNAPSHOT");
    assert!(
        s.contains("READ-ONLY SNAPSHOT ") && s.contains("\"initialize array\" Esc: head"),
        "{s}"
    );
    assert!(
        s.contains("80N o o o . "),
        "the previous snapshot holds no tile: {s}"
    );
    // d on the newer snapshot: the tiles that changed between the two.
    tmux.keys(&["Up", "d"]);
    let s = tmux.wait_for("DIFF ");
    assert!(s.contains("(3 tiles changed)"), "{s}");
    assert!(s.contains("80N # # # . "), "the changed tiles: {s}");
    // t tags the selected snapshot.
    tmux.keys(&["t"]);
    tmux.wait_for("tag snapshot");
    tmux.text("v1");
    tmux.keys(&["Enter"]);
    tmux.wait_for(" as v1");
    tmux.keys(&["Escape"]);
    let s = tmux.wait_for("back to the branch head");
    assert!(s.contains("80N # # # "), "{s}");

    // Another process commits to the branch: the console notices (it polls the branch).
    w.ok(&["write", "--year", "2000", "--tiles", "70N_180W"]);
    let s = tmux.wait_for("1:2000 4/4");
    assert!(s.contains("70N # "), "{s}");

    // Quit cleanly: the terminal is restored and the exit status is 0.
    tmux.keys(&["q"]);
    let s = tmux.wait_for("TTY-");
    assert!(s.contains("CONSOLE-EXITED 0"), "{s}");
    assert!(s.contains("TTY-SANE"), "raw mode is off after quit: {s}");

    let log: serde_json::Value = serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    assert_eq!(
        log[1]["message"],
        "write 3 tiles: 2000/80N_180W, 2000/80N_170W, 2000/80N_160W checked by ops"
    );
    assert_eq!(log[1]["written"]["2000"].as_object().unwrap().len(), 3);
    assert_eq!(log[0]["message"], "write 1 tile: 2000/70N_180W");
    let cube = w.cube().await;
    let tags = cube.repo.list_tags().await.unwrap();
    assert!(tags.contains("v1"), "{tags:?}");
    let tagged = cube.repo.lookup_tag("v1").await.unwrap().to_string();
    assert_eq!(tagged, log[1]["id"].as_str().unwrap());
}

#[test]
fn failed_tiles_keep_their_reason_across_restarts_and_f_w_retries_them() {
    let w = Work::new();
    w.tile(2000, "80N_180W", Flaw::ThreeBands);
    w.list(2000, &["80N_180W"], "");
    w.ok(&["init"]);
    {
        let tmux = Tmux::start(&console_cmd(&w));
        tmux.wait_for("1:2000 0/1");
        tmux.keys(&["Space", "w"]);
        tmux.wait_for("Write 1 tiles");
        tmux.keys(&["Enter"]);
        let s = tmux.wait_for("write finished: 0 written, 1 failed");
        assert!(s.contains("80N ! "), "{s}");
        assert!(
            s.contains("error (1 attempts): has 3 bands; expected 1"),
            "{s}"
        );
        tmux.keys(&["q"]);
        tmux.wait_for("CONSOLE-EXITED 0");
    }
    // A new console remembers the failure and its reason.
    w.tile(2000, "80N_180W", Flaw::None);
    let tmux = Tmux::start(&console_cmd(&w));
    let s = tmux.wait_for("1:2000 0/1");
    assert!(s.contains("80N ! "), "{s}");
    assert!(s.contains("has 3 bands; expected 1"), "{s}");
    // f selects it, w retries it; success clears the failure.
    tmux.keys(&["f", "w"]);
    tmux.wait_for("Write 1 tiles");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("write finished: 1 written, 0 failed");
    assert!(s.contains("80N + "), "{s}");
    assert!(!s.contains("has 3 bands"), "{s}");
    // ... on disk too: the journal no longer holds the tile.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !w.journal_entries().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the journal still holds {:?}",
            w.journal_entries()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_and_sigterm_end_the_console_and_restore_the_terminal() {
    let w = Work::new();
    w.tile(2000, "80N_180W", Flaw::None);
    w.list(2000, &["80N_180W"], "");
    w.ok(&["init"]);
    for (signal, code) in [("HUP", 129), ("TERM", 143)] {
        let tmux = Tmux::start(&console_cmd(&w));
        tmux.wait_for("1:2000 0/1");
        let pid = tmux.console_pid();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let s = tmux.wait_for("TTY-");
        assert!(
            s.contains(&format!("CONSOLE-EXITED {code}")),
            "SIG{signal}: {s}"
        );
        assert!(
            s.contains("TTY-SANE"),
            "SIG{signal} left the terminal in raw mode: {s}"
        );
        // Back on the normal screen: the console's grid is gone with the alternate screen.
        assert!(
            !s.contains("80N "),
            "SIG{signal} left the console on screen: {s}"
        );
        drop(tmux);
    }
}

#[test]
fn a_signal_commits_the_finished_tiles_before_the_console_leaves() {
    let w = Work::new();
    w.tile(2000, "80N_180W", Flaw::None);
    w.tile(2000, "80N_170W", Flaw::None);
    w.list(2000, &["80N_180W", "80N_170W"], "");
    w.ok(&["init"]);
    let tmux = Tmux::start(&console_cmd(&w));
    tmux.wait_for("1:2000 0/2");
    tmux.keys(&["a", "w"]);
    tmux.wait_for("Write 2 tiles");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("write finished: 2 written");
    assert!(s.contains("80N + + "), "{s}");
    let pid = tmux.console_pid();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let s = tmux.wait_for("CONSOLE-EXITED");
    assert!(s.contains("CONSOLE-EXITED 129"), "{s}");
    let log: serde_json::Value = serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    assert_eq!(
        log[0]["message"],
        "write 2 tiles: 2000/80N_180W, 2000/80N_170W"
    );
    assert_eq!(log[0]["written"]["2000"].as_object().unwrap().len(), 2);
}

#[test]
fn with_checkpoints_configured_the_console_commits_as_it_writes() {
    let w = Work::new();
    for t in ["80N_180W", "80N_170W", "80N_160W"] {
        w.tile(2000, t, Flaw::None);
    }
    w.list(2000, &["80N_180W", "80N_170W", "80N_160W"], "");
    let config = w.dir.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("commit_every = 1\n");
    std::fs::write(&config, text).unwrap();
    w.ok(&["init"]);
    let tmux = Tmux::start(&console_cmd(&w));
    tmux.wait_for("1:2000 0/3");
    tmux.keys(&["a", "w"]);
    tmux.wait_for("Write 3 tiles");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("1:2000 3/3");
    assert!(s.contains("80N # # # "), "{s}");
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
    let log: serde_json::Value = serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    let writes: Vec<_> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["message"].as_str().unwrap().starts_with("write 1 tile"))
        .collect();
    assert_eq!(writes.len(), 3, "one checkpoint commit per tile: {log}");
}

#[test]
fn the_console_works_on_a_repository_on_s3() {
    let moto = common::s3::Moto::start();
    moto.create_bucket("cubes");
    let w = Work::new();
    for t in ["80N_180W", "80N_170W"] {
        w.tile(2000, t, Flaw::None);
    }
    w.list(2000, &["80N_180W", "80N_170W"], "");
    let env = moto.env();
    let out = w.run_with(&["--repo", "s3://cubes/console", "init"], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exports: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    let cmd = format!(
        "{exports}TILECUBE_DATA_DIR={} {} --config {} --repo s3://cubes/console tui; echo CONSOLE-EXITED $?; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    );
    let tmux = Tmux::start(&cmd);
    let s = tmux.wait_for("1:2000 0/2");
    assert!(s.contains("s3://cubes/console @ main"), "{s}");
    tmux.keys(&["a", "w"]);
    tmux.wait_for("Write 2 tiles");
    tmux.keys(&["Enter"]);
    tmux.wait_for("write finished: 2 written, 0 failed");
    tmux.keys(&["c"]);
    tmux.wait_for("commit message");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("1:2000 2/2");
    assert!(s.contains("80N # # "), "{s}");
    assert!(!s.contains(common::s3::SECRET_KEY), "{s}");
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
    let out = w.run_with(&["--repo", "s3://cubes/console", "log", "--json"], &env);
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        log[0]["message"],
        "write 2 tiles: 2000/80N_180W, 2000/80N_170W"
    );
}

/// The glyphs of the 80N row's first `n` cells, as the console shows them.
fn row_80n(screen: &str, n: usize) -> Option<Vec<char>> {
    let line = screen.lines().find(|l| l.starts_with("80N "))?;
    let chars: Vec<char> = line.chars().collect();
    (0..n).map(|c| chars.get(4 + 2 * c).copied()).collect()
}

#[test]
fn a_terminal_killed_mid_write_loses_no_finished_tile() {
    // The terminal goes away as with a dropped SSH link: `tmux kill-server` closes the pty and
    // hangs up the console while it writes. Every tile the console showed as written before
    // must be in the head afterwards. Several trials: the race is the point.
    let names: Vec<String> = (0..10)
        .map(|i| format!("80N_{:03}W", 180 - 10 * i))
        .collect();
    for trial in 0..3 {
        let w = Work::with_tile(2400);
        w.listed_tiles(2000, &names);
        w.ok(&["init"]);
        let tmux = Tmux::start(&console_cmd(&w));
        tmux.wait_for("1:2000 0/10");
        tmux.keys(&["a", "w"]);
        tmux.wait_for("Write 10 tiles");
        tmux.keys(&["Enter"]);
        let pid = tmux.console_pid();
        // Wait until some tiles are written and some are not, then kill the terminal.
        let deadline = Instant::now() + Duration::from_secs(60);
        let shown = loop {
            let row = row_80n(&tmux.screen(), names.len()).unwrap_or_default();
            let done: Vec<usize> = (0..row.len()).filter(|&c| row[c] == '+').collect();
            if !done.is_empty() && done.len() < names.len() {
                break done;
            }
            assert!(
                done.len() < names.len(),
                "trial {trial}: every tile finished before the kill; make the tiles larger"
            );
            assert!(Instant::now() < deadline, "trial {trial}: no tile finished");
            std::thread::sleep(Duration::from_millis(20));
        };
        tmux.cmd(&["kill-server"]);
        // The console finishes its shutdown on its own, terminal gone.
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            assert!(
                Instant::now() < deadline,
                "trial {trial}: the console did not leave"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let committed = committed_tiles(&w);
        for c in &shown {
            assert!(
                committed.contains(&names[*c]),
                "trial {trial}: {} was shown written before the kill but is not in the head; committed {committed:?}",
                names[*c]
            );
        }
        let status: serde_json::Value = serde_json::from_str(&w.ok(&["status", "--json"])).unwrap();
        for c in &shown {
            assert_eq!(
                status["years"]["2000"]["tiles"][&names[*c]], "written",
                "trial {trial}: {status}"
            );
        }
        eprintln!(
            "trial {trial}: {} shown written before the kill, {} committed",
            shown.len(),
            committed.len()
        );
    }
}

/// Ten slow tiles in the 80N row, listed, in an initialized cube; extra config lines.
fn slow_row(config: &str) -> (Work, Vec<String>) {
    let names: Vec<String> = (0..10)
        .map(|i| format!("80N_{:03}W", 180 - 10 * i))
        .collect();
    let w = Work::with_tile(2400);
    w.listed_tiles(2000, &names);
    if !config.is_empty() {
        let path = w.dir.path().join("config.toml");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(config);
        std::fs::write(&path, text).unwrap();
    }
    w.ok(&["init"]);
    (w, names)
}

/// Open the console and start writing every listed tile.
fn start_writing(w: &Work) -> Tmux {
    let tmux = Tmux::start(&console_cmd(w));
    tmux.wait_for("1:2000 0/10");
    tmux.keys(&["a", "w"]);
    tmux.wait_for("Write 10 tiles");
    tmux.keys(&["Enter"]);
    tmux
}

/// Wait until some tiles, not all, show as written (`+`); their columns.
fn some_written(tmux: &Tmux, n: usize) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = row_80n(&tmux.screen(), n).unwrap_or_default();
        let done: Vec<usize> = (0..row.len()).filter(|&c| row[c] == '+').collect();
        if !done.is_empty() && done.len() < n {
            return done;
        }
        assert!(
            done.len() < n,
            "every tile finished first; make the tiles larger"
        );
        assert!(Instant::now() < deadline, "no tile finished");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Tiles of 2000 recorded by the branch's commits.
fn committed_tiles(w: &Work) -> std::collections::BTreeSet<String> {
    w.written_by_commit(2000).into_iter().flatten().collect()
}

/// The head holds whole tiles only: every tile it holds is written, none incomplete.
fn assert_whole_tiles(w: &Work) -> usize {
    let status: serde_json::Value = serde_json::from_str(&w.ok(&["status", "--json"])).unwrap();
    let tiles = status["years"]["2000"]["tiles"].as_object().unwrap();
    for (name, state) in tiles {
        assert!(
            state == "written" || state == "listed",
            "{name} is {state}: {status}"
        );
    }
    tiles.values().filter(|s| *s == "written").count()
}

#[test]
fn x_cancels_a_write_keeping_the_finished_tiles_and_no_half_tile() {
    let (w, names) = slow_row("");
    let tmux = start_writing(&w);
    let shown = some_written(&tmux, names.len());
    tmux.keys(&["x"]);
    let s = tmux.wait_for(", cancelled");
    let row = row_80n(&s, names.len()).unwrap();
    let finished: Vec<usize> = (0..row.len()).filter(|&c| row[c] == '+').collect();
    assert!(finished.len() < names.len(), "the write stopped early: {s}");
    for c in &shown {
        assert!(
            finished.contains(c),
            "{} was finished and is kept: {s}",
            names[*c]
        );
    }
    // The finished tiles are the operator's to commit.
    tmux.keys(&["c"]);
    tmux.wait_for("commit message");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&format!("1:2000 {}/10", finished.len()));
    let committed = committed_tiles(&w);
    let expected: std::collections::BTreeSet<String> =
        finished.iter().map(|c| names[*c].clone()).collect();
    assert_eq!(
        committed, expected,
        "the commit holds exactly the finished tiles"
    );
    assert_eq!(assert_whole_tiles(&w), finished.len());
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}

#[test]
fn quitting_while_writing_asks_first_and_leaves_nothing_behind() {
    let (w, names) = slow_row("");
    let tmux = start_writing(&w);
    some_written(&tmux, names.len());
    tmux.keys(&["q"]);
    let s = tmux.wait_for("Quit while writes are running?");
    assert!(!s.contains("CONSOLE-EXITED"), "{s}");
    // Esc: stay; the write goes on.
    tmux.keys(&["Escape"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while tmux.screen().contains("Quit while") {
        assert!(Instant::now() < deadline, "the prompt stays");
        std::thread::sleep(Duration::from_millis(50));
    }
    tmux.keys(&["q"]);
    tmux.wait_for("Quit while");
    tmux.keys(&["y"]);
    let s = tmux.wait_for("TTY-");
    assert!(
        s.contains("CONSOLE-EXITED 0") && s.contains("TTY-SANE"),
        "{s}"
    );
    // The operator chose to leave the uncommitted tiles: nothing was committed.
    assert!(committed_tiles(&w).is_empty());
    assert_eq!(assert_whole_tiles(&w), 0);
}

#[test]
fn sigterm_and_sighup_mid_write_commit_every_finished_tile() {
    for (signal, code) in [("TERM", 143), ("HUP", 129)] {
        let (w, names) = slow_row("");
        let tmux = start_writing(&w);
        let pid = tmux.console_pid();
        let shown = some_written(&tmux, names.len());
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
        let s = tmux.wait_for("TTY-");
        assert!(
            s.contains(&format!("CONSOLE-EXITED {code}")),
            "SIG{signal}: {s}"
        );
        assert!(s.contains("TTY-SANE"), "SIG{signal}: {s}");
        let committed = committed_tiles(&w);
        for c in &shown {
            assert!(
                committed.contains(&names[*c]),
                "SIG{signal}: {} was written before the signal: {committed:?}",
                names[*c]
            );
        }
        assert!(
            committed.len() < names.len(),
            "SIG{signal}: the write stopped early"
        );
        assert_eq!(assert_whole_tiles(&w), committed.len(), "SIG{signal}");
    }
}

#[test]
fn commit_minutes_checkpoints_the_consoles_writes() {
    // A checkpoint every 0.12 s: a ten-tile write lands in several commits, each recording
    // its own tiles; what is left at the end waits for the operator.
    let (w, names) = slow_row("commit_minutes = 0.002\n");
    let tmux = start_writing(&w);
    tmux.wait_for("write finished: 10 written");
    let checkpoints = w.written_by_commit(2000);
    assert!(
        checkpoints.len() >= 2,
        "checkpoints by time: {checkpoints:?}"
    );
    // Tiles finished after the last checkpoint wait for the operator's commit.
    let s = tmux.screen();
    if row_80n(&s, names.len()).unwrap().contains(&'+') {
        tmux.keys(&["c"]);
        tmux.wait_for("commit message");
        tmux.keys(&["Enter"]);
    }
    tmux.wait_for("1:2000 10/10");
    let committed = committed_tiles(&w);
    assert_eq!(committed.len(), names.len());
    let log: serde_json::Value = serde_json::from_str(&w.ok(&["log", "--json"])).unwrap();
    let recorded: usize = log
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["written"]["2000"].as_object().map(|t| t.len()))
        .sum();
    assert_eq!(
        recorded,
        names.len(),
        "each tile recorded by exactly one commit"
    );
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_inconsistent_tiles() {
    let w = Work::new();
    let names = ["80N_180W", "80N_170W", "80N_160W"];
    for n in names {
        w.tile(2000, n, Flaw::None);
    }
    w.list(2000, &names, "");
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2000", "--tiles", "80N_180W,80N_170W"]);
    common::tamper(&w, 2000, "80N_170W", "80N_160W").await;
    let tmux = Tmux::start(&console_cmd(&w));
    let s = tmux.wait_for("1:2000 1/3");
    assert_eq!(row_80n(&s, 4).unwrap(), vec!['#', '?', '?', '.'], "{s}");
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}

#[test]
fn a_headless_write_on_a_terminal_shows_one_live_progress_line() {
    let (w, _) = slow_row("");
    let cmd = format!(
        "TILECUBE_DATA_DIR={} {} --config {} write --all --year 2000; echo WRITE-EXITED $?; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    );
    let tmux = Tmux::start(&cmd);
    // While it runs: the line counts up in place.
    let s = tmux.wait_for("tiles ");
    assert!(s.contains("writing 10 tiles on"), "{s}");
    let s = tmux.wait_for("WRITE-EXITED 0");
    assert!(s.contains("tiles 10/10") && s.contains("failed 0"), "{s}");
    assert!(s.contains("10 tiles written, 0 failed"), "{s}");
    let lines = s
        .lines()
        .filter(|l| l.contains("tiles ") && l.contains("MB/s"))
        .count();
    assert_eq!(lines, 1, "one progress line, redrawn in place: {s}");
    assert!(
        !s.contains("2000/80N_180W:"),
        "no per-tile lines on a terminal: {s}"
    );
}

#[test]
fn the_console_draws_at_once_and_shows_loading_until_the_coverage_arrives() {
    // A cube on the test S3 server, a long round trip away: opening it and reading its
    // head's tiles takes seconds, and the console must draw its frame at once, say it is
    // loading, and fill the grid in when the coverage arrives.
    let moto = common::s3::Moto::start();
    moto.create_bucket("cubes");
    let w = Work::new();
    let names = ["80N_180W", "80N_170W"];
    for t in names {
        w.tile(2000, t, Flaw::None);
    }
    w.list(2000, &names, "");
    let env = moto.env();
    for args in [
        vec!["--repo", "s3://cubes/far", "init"],
        vec![
            "--repo",
            "s3://cubes/far",
            "write",
            "--all",
            "--year",
            "2000",
        ],
    ] {
        let out = w.run_with(&args, &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let upstream = moto.endpoint.trim_start_matches("http://").parse().unwrap();
    let proxy = rt
        .block_on(tilecube::netem::LatencyProxy::start(
            upstream,
            Duration::from_millis(400),
        ))
        .expect("proxy");
    let exports: String = env
        .iter()
        .filter(|(k, _)| *k != "AWS_ENDPOINT_URL")
        .map(|(k, v)| format!("{k}={v} "))
        .collect();
    let cmd = format!(
        "{exports}AWS_ENDPOINT_URL={} TILECUBE_DATA_DIR={} {} --config {} --repo s3://cubes/far tui; echo CONSOLE-EXITED $?; sleep 60",
        proxy.url(),
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    );
    let start = Instant::now();
    let tmux = Tmux::start(&cmd);
    let mut loading_seen = None;
    let mut listed_while_loading = None;
    let done = loop {
        let s = tmux.screen();
        if s.contains("loading") {
            loading_seen.get_or_insert_with(|| (start.elapsed(), s.clone()));
            // The source's lists (local here) arrive long before the repository answers:
            // their tiles show as loading, not as unwritten.
            if s.contains("80N ~ ~ ") {
                listed_while_loading.get_or_insert(s.clone());
            }
        }
        if s.contains("1:2000 2/2") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the grid never completed:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (at, screen) = loading_seen.expect("a loading state shown before the grid completed");
    eprintln!(
        "loading shown after {at:?}, grid complete after {:?}",
        start.elapsed()
    );
    assert!(screen.contains("tilecube"), "the frame is drawn: {screen}");
    assert!(screen.contains("s3://cubes/far @ main"), "{screen}");
    let listed = listed_while_loading
        .unwrap_or_else(|| panic!("listed tiles never showed as loading; first frame:\n{screen}"));
    assert!(listed.contains("1:2000 …/2"), "{listed}");
    assert!(done.contains("80N # # "), "{done}");
    assert!(!done.contains("loading"), "{done}");
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}

#[test]
fn the_console_watches_a_plans_shards_as_they_land() {
    let w = Work::new();
    let names = common::tile_names(6);
    w.listed_tiles(2000, &names);
    w.ok(&["init"]);
    let plan = w.dir.path().join("plan").display().to_string();
    w.ok(&["plan", "--all", "--shards", "3", "--out", &plan]);
    w.ok(&["write", "--plan", &plan, "--shard", "0", "--threads", "1"]);
    let cmd = format!(
        "TILECUBE_DATA_DIR={} {} --config {} tui --plan {plan}; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    );
    let tmux = Tmux::start(&cmd);
    // The plan opens over the grid: one shard done, its tiles landed, two not started.
    let screen = tmux.wait_for("1 done, 2 not started");
    assert!(screen.contains("landed in main: 2 of 6"), "{screen}");
    // Another shard lands while the console watches: the view follows on its next look.
    w.ok(&["write", "--plan", &plan, "--shard", "2", "--threads", "1"]);
    let screen = tmux.wait_for("2 done, 1 not started");
    assert!(screen.contains("landed in main: 4 of 6"), "{screen}");
    // Esc closes it; S opens it again.
    tmux.keys(&["Escape"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.screen().contains("plan (Esc closes)") {
        assert!(Instant::now() < deadline, "Esc did not close the plan");
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux.keys(&["S"]);
    tmux.wait_for("plan (Esc closes)");
    tmux.keys(&["Escape", "q"]);
}
