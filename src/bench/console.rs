//! The console's key latency measured in a real terminal (tmux) while a write saturates
//! the pool.

use super::*;

/// Drive the real console in tmux: launch a write of the tiles, then while it runs move the
/// cursor and time each key until the details panel names the new tile.
pub(super) fn key_latency(
    cache: &Path,
    px: &str,
    tiles: &[TileName],
    presses: usize,
) -> Result<Vec<f64>> {
    let exe = std::env::current_exe()?;
    let repo = scratch("bench-console")?;
    let repo_s = repo.display().to_string();
    let init = run_child(&["--repo", &repo_s, "--tile-pixels", px, "init"])?;
    if !init.ok {
        bail!("init failed: {}", init.stderr);
    }
    let socket = format!("tilecube-bench-{}", std::process::id());
    let tmux = |args: &[&str]| -> Result<String> {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&socket)
            .args(args)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let cmd = format!(
        "{} --repo {repo_s} --source {} --tile-pixels {px} tui",
        exe.display(),
        cache.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "b",
        "-x",
        "120",
        "-y",
        "40",
        &cmd,
    ])?;
    tmux(&["set-option", "-g", "escape-time", "0"])?;
    let wait = |what: &str, secs: u64| -> Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if tmux(&["capture-pane", "-p", "-t", "b"])?.contains(what) {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(false)
    };
    let result = (|| -> Result<Vec<f64>> {
        if !wait("1:2000", 20)? {
            bail!("the console did not start");
        }
        let grid = Grid::from_preset(&Preset::glad(), Some(px.parse()?))?;
        // Select the bench tiles (all on the first rows), then write them.
        for t in tiles {
            let cell = grid.cell(*t)?;
            let mut keys = vec!["Home".to_string()];
            keys.extend(std::iter::repeat_n("l".to_string(), cell.col as usize));
            keys.extend(std::iter::repeat_n("j".to_string(), cell.row as usize));
            keys.push("Space".into());
            for k in [&["k"; 14][..], &["h"; 36][..]].concat() {
                tmux(&["send-keys", "-t", "b", k])?;
            }
            for k in &keys[1..] {
                tmux(&["send-keys", "-t", "b", k])?;
            }
        }
        tmux(&["send-keys", "-t", "b", "w"])?;
        wait("Write ", 10)?;
        tmux(&["send-keys", "-t", "b", "Enter"])?;
        if !wait("writing: ", 30)? {
            bail!("the write did not start");
        }
        std::thread::sleep(Duration::from_millis(500));
        let mut out = Vec::new();
        let row0 = grid.tile_at(tilecube::grid::Cell { col: 0, row: 4 });
        for k in ["k"; 14]
            .iter()
            .chain(["h"; 36].iter())
            .chain(["j"; 4].iter())
        {
            tmux(&["send-keys", "-t", "b", k])?;
        }
        wait(&format!("2000/{row0}"), 10)?;
        for i in 0..presses {
            let (key, col) = if i % 2 == 0 { ("l", 1) } else { ("h", 0) };
            let target = grid.tile_at(tilecube::grid::Cell { col, row: 4 });
            let start = Instant::now();
            tmux(&["send-keys", "-t", "b", key])?;
            loop {
                let screen = tmux(&["capture-pane", "-p", "-t", "b"])?;
                if screen.contains("write finished") {
                    return Ok(out);
                }
                if screen.contains(&format!("2000/{target} ")) {
                    out.push(start.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                if start.elapsed() > Duration::from_secs(5) {
                    bail!("key {i} got no answer in 5 s");
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(out)
    })();
    let _ = tmux(&["kill-server"]);
    let _ = std::fs::remove_dir_all(&repo);
    result
}
