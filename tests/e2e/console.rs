//! The console end to end, in a real terminal: tmux runs the real binary at 80×24 on a
//! generated source; keys go in with send-keys and the screen comes back with capture-pane.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Work;
use common::tmux::Tmux;
use tilecube::demo::Flaw;

/// The test S3 server with a `cubes` bucket, and a workspace whose source holds `names` of
/// 2000, listed.
fn s3_workspace(names: &[&str]) -> (common::s3::Moto, Work) {
    let moto = common::s3::Moto::start();
    moto.create_bucket("cubes");
    let w = Work::new();
    for t in names {
        w.tile(2000, t, Flaw::None);
    }
    w.list(2000, names, "");
    (moto, w)
}

/// The shell command that runs the console on an S3 cube, its requests sent to `endpoint`
/// (a proxy in front of the test's server), and reports its exit status.
fn s3_console_cmd(w: &Work, env: &[(&str, String)], endpoint: &str, repo: &str) -> String {
    let exports: String = env
        .iter()
        .filter(|(k, _)| *k != "AWS_ENDPOINT_URL")
        .map(|(k, v)| format!("{k}={v} "))
        .collect();
    format!(
        "{exports}AWS_ENDPOINT_URL={endpoint} TILECUBE_DATA_DIR={} {} --config {} --repo {repo} tui; echo CONSOLE-EXITED $?; sleep 60",
        w.dir.path().join("data").display(),
        env!("CARGO_BIN_EXE_tilecube"),
        w.dir.path().join("config.toml").display()
    )
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_writes_browses_and_quits_in_a_real_terminal() {
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
    let s = tmux.wait_for("Write 3 tiles of 1 year to branch main on");
    assert!(s.contains("80N o*o*o*"), "{s}");
    tmux.keys(&["Enter"]);
    // The write runs as a detached run; the console watches it end and the tiles land.
    let s = tmux.wait_for("write finished: 3/3 written, 3 landed, 0 failed (run ");
    assert!(!s.contains("80N o o o"), "{s}");
    let s = tmux.wait_for("1:2000 3/4");
    assert!(
        s.contains("80N # # # "),
        "committed tiles show as written: {s}"
    );
    // The runs panel (Tab twice) tells how the run ended, and where its log is.
    tmux.keys(&["Tab", "Tab"]);
    let s = tmux.wait_for(" runs ");
    assert!(
        s.contains(" done: 3/3 written, 3 landed, 0 failed, 1 commit"),
        "{s}"
    );
    assert!(s.contains("log.txt"), "{s}");
    tmux.keys(&["Tab"]);

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
    // Old -> new, the differing tiles marked with their own glyph, the tabs counting them.
    let s = tmux.wait_for("DIFF ");
    assert!(s.contains(": 3 tiles differ (◆)"), "{s}");
    assert!(s.contains("80N ◆ ◆ ◆ . "), "the changed tiles: {s}");
    assert!(s.contains("1:2000 ◆3"), "{s}");
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
    assert!(
        log[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("write 3 tiles: 2000/80N_180W, 2000/80N_170W, 2000/80N_160W"),
        "{log}"
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
        tmux.wait_for("Write 1 tile of");
        tmux.keys(&["Enter"]);
        let s = tmux.wait_for("write finished: 0/1 written, 0 landed, 1 failed");
        assert!(s.contains("80N ! "), "{s}");
        assert!(
            s.contains("failed (1 attempt): has 3 bands; expected 1"),
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
    tmux.wait_for("Write 1 tile of");
    tmux.keys(&["Enter"]);
    tmux.wait_for("write finished: 1/1 written, 1 landed, 0 failed");
    let s = tmux.wait_for("1:2000 1/1");
    assert!(s.contains("80N # "), "{s}");
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
    let (moto, w) = s3_workspace(&["80N_180W", "80N_170W"]);
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
    tmux.wait_for("write finished: 2/2 written, 2 landed, 0 failed");
    let s = tmux.wait_for("1:2000 2/2");
    assert!(s.contains("80N # # "), "{s}");
    assert!(!s.contains(common::s3::SECRET_KEY), "{s}");
    // The run's plan, record and log hold no credential.
    let runs_dir = w.dir.path().join("data").join("runs");
    let mut read = std::collections::BTreeSet::new();
    for f in walk(&runs_dir) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !text.contains(common::s3::SECRET_KEY),
            "{} holds the secret",
            f.display()
        );
        let rel = f.strip_prefix(&runs_dir).unwrap().components().skip(1);
        read.insert(rel.collect::<std::path::PathBuf>().display().to_string());
    }
    for f in [
        "run.json",
        "log.txt",
        "plan/plan.json",
        "plan/shards/0000.json",
    ] {
        assert!(read.contains(f), "the scan read no {f}: {read:?}");
    }
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
    let out = w.run_with(&["--repo", "s3://cubes/console", "log", "--json"], &env);
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        log[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("write 2 tiles: 2000/80N_180W, 2000/80N_170W"),
        "{log}"
    );
}

/// Every file under a directory.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// The glyphs of the 80N row's first `n` cells, as the console shows them.
fn row_80n(screen: &str, n: usize) -> Option<Vec<char>> {
    let line = screen.lines().find(|l| l.starts_with("80N "))?;
    let chars: Vec<char> = line.chars().collect();
    (0..n).map(|c| chars.get(4 + 2 * c).copied()).collect()
}

/// The 80N row's first `n` tile names (180W eastwards).
fn row_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("80N_{:03}W", 180 - 10 * i))
        .collect()
}

/// A workspace of `n` listed tiles in the 80N row, served over HTTP `rtt` away, so that a
/// run of them takes seconds; extra config lines. Keep the returned guard alive.
struct SlowRow {
    w: Work,
    names: Vec<String>,
    url: String,
    _servers: (
        common::nginx::Nginx,
        tilecube::netem::LatencyProxy,
        tokio::runtime::Runtime,
    ),
}

fn slow_remote_row(n: usize, rtt_ms: u64, config: &str) -> SlowRow {
    let w = Work::new();
    let names = row_names(n);
    w.listed_tiles(2000, &names);
    let path = w.dir.path().join("config.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(config);
    std::fs::write(&path, text).unwrap();
    w.ok(&["init"]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (nginx, proxy, url) = rt.block_on(common::nginx::slow_source(
        &w,
        Duration::from_millis(rtt_ms),
    ));
    SlowRow {
        w,
        names,
        url,
        _servers: (nginx, proxy, rt),
    }
}

impl SlowRow {
    /// The console on this row's slow source.
    fn console(&self) -> String {
        self.console_with(&[])
    }

    /// The console with more environment (its runs' workers inherit it).
    fn console_with(&self, env: &[(&str, String)]) -> String {
        let exports: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        format!(
            "{exports}TILECUBE_DATA_DIR={} {} --config {} --source {} tui; echo CONSOLE-EXITED $?; {TTY_CHECK}; sleep 60",
            self.w.dir.path().join("data").display(),
            env!("CARGO_BIN_EXE_tilecube"),
            self.w.dir.path().join("config.toml").display(),
            self.url
        )
    }

    /// Open the console and launch a run of every listed tile.
    fn launch_from_console(&self) -> Tmux {
        self.launch_from_console_with(&[])
    }

    /// The same, the console (and so its run's worker) started with more environment.
    fn launch_from_console_with(&self, env: &[(&str, String)]) -> Tmux {
        let tmux = Tmux::start(&self.console_with(env));
        tmux.wait_for(&format!("1:2000 0/{}", self.names.len()));
        tmux.keys(&["a", "w"]);
        tmux.wait_for(&format!("Write {} tiles", self.names.len()));
        tmux.keys(&["Enter"]);
        tmux.wait_for("writing: ");
        tmux
    }
}

/// The runs, as `runs --json` lists them.
fn runs(w: &Work) -> Vec<serde_json::Value> {
    let out: serde_json::Value =
        serde_json::from_str(&w.ok(&["runs", "--json"])).expect("runs JSON");
    out.as_array().expect("runs").clone()
}

/// Wait until the newest run satisfies `ok`; returns it.
fn wait_run(w: &Work, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let all = runs(w);
        if let Some(r) = all.first()
            && ok(r)
        {
            return r.clone();
        }
        assert!(Instant::now() < deadline, "no run {what}: {all:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The run's pid, alive.
fn alive(r: &serde_json::Value) -> bool {
    let pid = r["pid"].as_u64().expect("pid");
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z"))
        .unwrap_or(false)
}

/// Each tile of `names` is in the head, pixel for pixel as its source, recorded once.
fn assert_every_tile_landed(w: &Work, names: &[String]) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cube = w.cube().await;
        for n in names {
            let t: tilecube::grid::TileName = n.parse().unwrap();
            let want = common::gdal_pixels(&tilecube::demo::tile_path(&w.source(), 2000, t));
            assert!(
                common::cube_pixels(&cube, 2000, t).await == want,
                "2000/{n} differs from its source"
            );
        }
    });
    let mut recorded = std::collections::BTreeMap::<String, usize>::new();
    for tiles in w.written_by_commit(2000) {
        for t in tiles {
            *recorded.entry(t).or_default() += 1;
        }
    }
    assert_eq!(recorded.len(), names.len(), "{recorded:?}");
    assert!(recorded.values().all(|&n| n == 1), "{recorded:?}");
}

#[test]
fn a_run_launched_from_the_console_outlives_its_terminal() {
    // The terminal goes away as with a dropped SSH link: `tmux kill-server` closes the pty
    // and hangs up the console while its run writes. The run is not the console's: its
    // worker finishes, and the cube holds every tile, pixel for pixel.
    // The worker is held before its commit, so it cannot end before it is looked at.
    let row = slow_remote_row(6, 150, "threads = 1\n");
    let tmux = row.launch_from_console_with(&row.w.hold_env("chunks-uploaded#1"));
    let console = tmux.console_pid();
    row.w.wait_held("chunks-uploaded", 1);
    let r = wait_run(&row.w, "running", |r| r["state"] == "running");
    assert_eq!(r["tiles_done"], 0, "nothing landed before the kill: {r}");
    tmux.cmd(&["kill-server"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::path::Path::new(&format!("/proc/{console}")).exists() {
        assert!(Instant::now() < deadline, "the console did not leave");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        alive(&r),
        "the worker goes on without the console: {r}\nits log:\n{}",
        std::fs::read_to_string(r["log"].as_str().unwrap_or_default()).unwrap_or_default()
    );
    row.w.release("chunks-uploaded", 1);
    let r = wait_run(&row.w, "ended", |r| {
        r["state"] != "running" && r["state"] != "starting"
    });
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["tiles_done"], 6, "{r}");
    assert_every_tile_landed(&row.w, &row.names);
}

#[test]
fn reopening_the_console_attaches_to_the_run_and_x_cancels_it() {
    let row = slow_remote_row(10, 200, "threads = 1\ncommit_every = 1\n");
    let tmux = row.launch_from_console();
    // q asks; Esc stays; q then Enter leaves the run going.
    tmux.keys(&["q"]);
    let s = tmux.wait_for("leave running and quit");
    assert!(s.contains("1 run going: "), "{s}");
    tmux.keys(&["Escape"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.screen().contains("leave running") {
        assert!(Instant::now() < deadline, "Esc did not close the question");
        std::thread::sleep(Duration::from_millis(50));
    }
    tmux.keys(&["q"]);
    tmux.wait_for("leave running and quit");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("TTY-");
    assert!(
        s.contains("CONSOLE-EXITED 0") && s.contains("TTY-SANE"),
        "{s}"
    );
    assert!(s.contains("keeps going"), "{s}");
    drop(tmux);
    let r = wait_run(&row.w, "running", |r| r["state"] == "running");
    assert!(alive(&r), "{r}");

    // Another console on the same repository finds the run and shows it moving.
    let tmux = Tmux::start(&row.console());
    let first = tmux.wait_for("writing: ");
    let done_of = |s: &str| -> Option<usize> {
        let line = s.lines().find(|l| l.starts_with("writing: "))?;
        line.split_whitespace()
            .nth(1)?
            .split('/')
            .next()?
            .parse()
            .ok()
    };
    let before = done_of(&first).expect("progress line");
    let deadline = Instant::now() + Duration::from_secs(60);
    let moving = loop {
        let s = tmux.screen();
        if let Some(n) = done_of(&s)
            && n > before
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the progress did not move from {before}:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(moving.contains(" busy"), "{moving}");
    // x asks first (Esc keeps the run going), then cancels it: it stops at its next strip,
    // its finished tiles committed.
    tmux.keys(&["x"]);
    let s = tmux.wait_for("Cancel 1 run going (");
    assert!(s.contains("Enter/y: cancel them"), "{s}");
    tmux.keys(&["Escape"]);
    tmux.keys(&["x"]);
    tmux.wait_for("Cancel 1 run going (");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("write cancelled: ");
    let r = wait_run(&row.w, "cancelled", |r| r["state"] == "cancelled");
    let landed = r["tiles_done"].as_u64().unwrap() as usize;
    assert!((1..10).contains(&landed), "{r}");
    assert!(!alive(&r), "{r}");
    let committed = committed_tiles(&row.w);
    assert_eq!(committed.len(), landed, "{committed:?} {r}");
    assert_eq!(assert_whole_tiles(&row.w), landed);
    let shown = tmux.wait_for(&format!("1:2000 {landed}/10"));
    let row_glyphs = row_80n(&shown, 10).unwrap();
    assert_eq!(
        row_glyphs.iter().filter(|&&c| c == '#').count(),
        landed,
        "{s}\n{shown}"
    );
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}

#[test]
fn two_consoles_on_one_run_show_the_same_tiles_done() {
    let row = slow_remote_row(6, 150, "threads = 1\ncommit_every = 2\n");
    // The run is launched headless and held in its third commit, every tile written, two
    // commits landed; both consoles attach to it while it is held there.
    row.w.ok_with(
        &[
            "--source", &row.url, "write", "--detach", "--all", "--year", "2000",
        ],
        &row.w.hold_env("chunks-uploaded#3"),
    );
    let one = Tmux::start(&row.console());
    let two = Tmux::start(&row.console());
    row.w.wait_held("chunks-uploaded", 3);
    // While it is going, at one and the same record: the same grid and the same progress line.
    let held = |t: &Tmux| {
        t.wait_for("writing: 6/6 written, 4 landed, 0 failed");
        let s = t.wait_for("1:2000 4/6");
        (row_80n(&s, 6), progress_line(&s), s)
    };
    let (grid_a, line_a, a) = held(&one);
    let (grid_b, line_b, b) = held(&two);
    assert_eq!(grid_a, Some(vec!['#', '#', '#', '#', '+', '+']), "{a}");
    assert_eq!(grid_a, grid_b, "{a}\n{b}");
    assert_eq!(line_a, line_b, "{a}\n{b}");
    assert!(
        line_a
            .as_deref()
            .is_some_and(|l| l.starts_with("writing: 6/6 written, 4 landed, 0 failed")),
        "{a}"
    );
    row.w.release("chunks-uploaded", 3);
    // Both see it end, with the same tiles in the same states.
    one.wait_for("write finished: 6/6 written, 6 landed, 0 failed (run ");
    let b = two.wait_for("write finished: 6/6 written, 6 landed, 0 failed (run ");
    let a = one.wait_for("1:2000 6/6");
    let b2 = two.wait_for("1:2000 6/6");
    assert_eq!(row_80n(&a, 6), row_80n(&b2, 6), "{a}\n{b}");
    assert_eq!(row_80n(&a, 6).unwrap(), vec!['#'; 6], "{a}");
    let status = |s: &str| {
        s.lines()
            .find(|l| l.contains("write finished"))
            .map(String::from)
    };
    assert_eq!(status(&a), status(&b2));
    one.keys(&["q"]);
    two.keys(&["q"]);
    one.wait_for("CONSOLE-EXITED 0");
    two.wait_for("CONSOLE-EXITED 0");
}

/// The console's progress line of a run: the line that says `writing`.
fn progress_line(screen: &str) -> Option<String> {
    screen
        .lines()
        .find(|l| l.contains("writing: "))
        .map(|l| l.trim_end().to_string())
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
fn sigterm_and_sighup_leave_the_console_and_its_run_goes_on() {
    for (signal, code) in [("TERM", 143), ("HUP", 129)] {
        let row = slow_remote_row(4, 150, "threads = 1\n");
        let tmux = row.launch_from_console();
        let pid = tmux.console_pid();
        let r = wait_run(&row.w, "running", |r| r["state"] == "running");
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
        assert!(alive(&r), "SIG{signal}: the run goes on: {r}");
        let r = wait_run(&row.w, "ended", |r| {
            r["state"] != "running" && r["state"] != "starting"
        });
        assert_eq!(r["state"], "done", "SIG{signal}: {r}");
        assert_every_tile_landed(&row.w, &row.names);
    }
}

#[test]
fn commit_minutes_checkpoints_the_consoles_runs() {
    // A checkpoint every 0.12 s: a ten-tile run lands in several commits, each recording
    // its own tiles, and the rest at its end.
    let (w, names) = slow_row("commit_minutes = 0.002\n");
    let tmux = Tmux::start(&console_cmd(&w));
    tmux.wait_for("1:2000 0/10");
    tmux.keys(&["a", "w"]);
    tmux.wait_for("Write 10 tiles");
    let started = chrono::Utc::now();
    tmux.keys(&["Enter"]);
    tmux.wait_for("write finished: 10/10 written, 10 landed, 0 failed");
    tmux.wait_for("1:2000 10/10");
    let checkpoints = w.written_by_commit(2000);
    assert!(
        checkpoints.len() >= 2,
        "checkpoints by time: {checkpoints:?}"
    );
    // None before its time: each checkpoint 0.12 s or more after the one before.
    let timed = w.assert_checkpoints_by_time(2000, started, Duration::from_millis(120));
    assert_eq!(timed, checkpoints.len());
    let committed = committed_tiles(&w);
    assert_eq!(committed.len(), names.len());
    let recorded: usize = checkpoints.iter().map(Vec::len).sum();
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

/// Ten tiles of 2400 px in the 80N row, listed, in an initialized cube.
fn slow_row(config: &str) -> (Work, Vec<String>) {
    let names = row_names(10);
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
    // While it runs: the line counts up in place — one progress line on every screen, on
    // the same row while the tiles come in, its count rising.
    let s = tmux.wait_for("tiles ");
    assert!(s.contains("writing 10 tiles on"), "{s}");
    let mut seen: Vec<(usize, u32)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let s = loop {
        let s = tmux.screen();
        if s.contains("WRITE-EXITED") {
            break s;
        }
        let lines: Vec<(usize, &str)> = s
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains("tiles ") && l.contains("MB/s"))
            .collect();
        assert!(lines.len() <= 1, "one progress line: {s}");
        if let Some((row, line)) = lines.first()
            && let Some(done) = line
                .split("tiles ")
                .nth(1)
                .and_then(|t| t.split('/').next())
                .and_then(|n| n.trim().parse::<u32>().ok())
            && seen.last() != Some(&(*row, done))
        {
            seen.push((*row, done));
        }
        assert!(Instant::now() < deadline, "the write never ended: {s}");
        std::thread::sleep(Duration::from_millis(30));
    };
    let counts: Vec<u32> = seen.iter().map(|(_, n)| *n).collect();
    assert!(counts.windows(2).all(|p| p[0] <= p[1]), "{seen:?}");
    assert!(
        counts.iter().filter(|n| (1..10).contains(*n)).count() >= 2,
        "the line counted up while the tiles came in: {seen:?}"
    );
    let rows: std::collections::BTreeSet<usize> = seen
        .iter()
        .filter(|(_, n)| *n < 10)
        .map(|(r, _)| *r)
        .collect();
    assert_eq!(rows.len(), 1, "the line stays on its row: {seen:?}");
    let s = if s.contains("WRITE-EXITED 0") {
        s
    } else {
        tmux.wait_for("WRITE-EXITED 0")
    };
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
    let names = ["80N_180W", "80N_170W"];
    let (moto, w) = s3_workspace(&names);
    let env = moto.env();
    w.ok_with(&["--repo", "s3://cubes/far", "init"], &env);
    w.ok_with(
        &[
            "--repo",
            "s3://cubes/far",
            "write",
            "--all",
            "--year",
            "2000",
        ],
        &env,
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let upstream = moto.endpoint.trim_start_matches("http://").parse().unwrap();
    let proxy = rt
        .block_on(tilecube::netem::LatencyProxy::start(
            upstream,
            Duration::from_millis(400),
        ))
        .expect("proxy");
    let cmd = s3_console_cmd(&w, &env, &proxy.url(), "s3://cubes/far");
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
    let complete = start.elapsed();
    eprintln!("loading shown after {at:?}, grid complete after {complete:?}");
    // The first frame comes at once (a generous bound for a loaded machine), long before
    // the repository's answers, each 400 ms away, complete the grid.
    assert!(at < Duration::from_secs(3), "first frame after {at:?}");
    assert!(
        at + Duration::from_millis(800) < complete,
        "first frame after {at:?}, the grid complete after {complete:?}"
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

/// The line of the screen that starts with a grid row's label.
fn row_line(screen: &str, label: &str) -> String {
    screen
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_world_map_shows_the_data_follows_the_cursor_and_a_new_tile_appears() {
    let w = Work::new();
    // Built-up land (250, `@` without colour) in one tile; cropland (244, `#`) in the next
    // one written while the map is open.
    w.two_class_tile(2000, "00N_000E", 250, 250);
    w.two_class_tile(2000, "10N_010E", 244, 244);
    w.list(2000, &["00N_000E", "10N_010E"], "");
    w.ok(&["init"]);
    w.ok(&["write", "--year", "2000", "--tiles", "00N_000E"]);
    let cmd = format!("NO_COLOR=1 {}", console_cmd(&w));
    let tmux = Tmux::start(&cmd);
    tmux.wait_for("1:2000 1/2");
    tmux.keys(&["m"]);
    let s = tmux.wait_for("map: 2000 from level 3 (1:8)");
    // Without colour the map reads by the legend's glyphs: the written tile is built-up,
    // the rest no data; the cursor's tile is bracketed at the top left.
    let row = row_line(&s, "00N");
    assert_eq!(row.matches('@').count(), 2, "one tile of `@`: {row:?}\n{s}");
    assert!(row_line(&s, "80N").starts_with("80N []"), "{s}");
    assert!(!s.contains('#'), "no cropland yet: {s}");
    tmux.keys(&["l"]);
    let s = tmux.wait_for("80N   []");
    assert!(
        s.contains("80N   []"),
        "the cursor moved one tile east: {s}"
    );

    // Another process writes a tile: the console sees the branch move and the map shows it.
    w.ok(&["write", "--year", "2000", "--tiles", "10N_010E"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = tmux.screen();
        let row = row_line(&s, "10N");
        if row.matches('#').count() == 2 {
            assert!(s.contains("1:2000 2/2"), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "the new tile never showed: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // `m` again: the tile grid.
    tmux.keys(&["m"]);
    let s = tmux.wait_for("00N ");
    assert!(
        row_line(&s, "00N").contains('#'),
        "the grid's written glyph: {s}"
    );
}

#[test]
fn the_console_keeps_answering_while_its_repository_fails_and_goes_silent() {
    // A cube on the test S3 server behind the fault proxy: a fifth of the connections are
    // answered 503 or 500, a tenth reset mid-stream. Then the network goes silent (no byte
    // moves on any connection) while the operator presses keys; then it comes back and a
    // tile another process wrote meanwhile shows at a later poll.
    use tilecube::netfault::{FaultProxy, Faults};
    let names = ["80N_180W", "80N_170W", "80N_160W"];
    let (moto, w) = s3_workspace(&names);
    let env = moto.env();
    let repo = "s3://cubes/faulty";
    w.ok_with(&["--repo", repo, "init"], &env);
    w.ok_with(
        &[
            "--repo",
            repo,
            "write",
            "--year",
            "2000",
            "--tiles",
            "80N_180W,80N_170W",
        ],
        &env,
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let upstream = moto.endpoint.trim_start_matches("http://").parse().unwrap();
    let proxy = rt
        .block_on(FaultProxy::start(
            upstream,
            Faults {
                slow_down: 0.1,
                server_error: 0.1,
                reset: 0.1,
                seed: 31,
                ..Faults::default()
            },
        ))
        .expect("proxy");
    let cmd = s3_console_cmd(&w, &env, &proxy.url(), repo);
    let tmux = Tmux::start(&cmd);
    let s = tmux.wait_for("1:2000 2/3");
    assert!(s.contains("s3://cubes/faulty @ main"), "{s}");

    // Silence: keys are still answered at once.
    proxy.hold(true);
    let pressed = Instant::now();
    tmux.keys(&["?"]);
    let s = tmux.wait_for(" keys ");
    let answered = pressed.elapsed();
    assert!(
        answered < Duration::from_secs(3),
        "help took {answered:?}:\n{s}"
    );
    tmux.keys(&["Escape"]);
    std::thread::sleep(Duration::from_secs(6)); // a poll falls in the silence
    let s = tmux.screen();
    assert!(!s.contains("CONSOLE-EXITED"), "the console left:\n{s}");
    assert!(s.contains("1:2000 2/3"), "the grid stays as it was:\n{s}");

    // Another process writes the third tile straight to the server; the network comes back
    // and a later poll, retried through the faults, shows it.
    let out = w.run_with(
        &[
            "--repo", repo, "write", "--year", "2000", "--tiles", "80N_160W",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    proxy.hold(false);
    let s = tmux.wait_for("1:2000 3/3");
    eprintln!("{}", proxy.counts());
    assert!(
        proxy.counts().slow_down + proxy.counts().server_error > 0,
        "{}",
        proxy.counts()
    );
    assert!(s.contains("80N # # #"), "{s}");
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}

#[test]
fn a_failed_read_shows_on_the_status_line_and_the_next_poll_reads_again() {
    // One try per request: the repository's outage fails the console's polls at once.
    use tilecube::netfault::{FaultProxy, Faults};
    let names = ["80N_180W", "80N_170W"];
    let (moto, w) = s3_workspace(&names);
    let config = w.dir.path().join("config.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("\n[storage_retries]\ntries = 1\n");
    std::fs::write(&config, text).expect("config");
    let env = moto.env();
    let repo = "s3://cubes/outage";
    w.ok_with(&["--repo", repo, "init"], &env);
    w.ok_with(
        &[
            "--repo", repo, "write", "--year", "2000", "--tiles", "80N_180W",
        ],
        &env,
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let upstream = moto.endpoint.trim_start_matches("http://").parse().unwrap();
    let proxy = rt
        .block_on(FaultProxy::start(upstream, Faults::default()))
        .expect("proxy");
    let tmux = Tmux::start(&s3_console_cmd(&w, &env, &proxy.url(), repo));
    tmux.wait_for("1:2000 1/2");

    // The repository fails every request: a poll says so on the status line; keys answer.
    proxy.outage(true);
    let s = tmux.wait_for("reading the repository failed");
    assert!(s.contains("1:2000 1/2"), "the grid stays as it was:\n{s}");
    tmux.keys(&["?"]);
    tmux.wait_for(" keys ");
    tmux.keys(&["Escape"]);

    // Another process writes the second tile straight to the server; the repository comes
    // back and the next poll reads the new head.
    w.ok_with(
        &[
            "--repo", repo, "write", "--year", "2000", "--tiles", "80N_170W",
        ],
        &env,
    );
    proxy.outage(false);
    let s = tmux.wait_for("1:2000 2/2");
    let s = if s.contains("the repository answers again") {
        s
    } else {
        tmux.wait_for("the repository answers again")
    };
    assert!(!s.contains("reading the repository failed"), "{s}");
    eprintln!("{}", proxy.counts());
    assert!(proxy.counts().slow_down > 0, "{}", proxy.counts());
    tmux.keys(&["q"]);
    tmux.wait_for("CONSOLE-EXITED 0");
}
