//! A real terminal for the tests: a tmux server of its own per session, running one
//! command at 80×24; keys go in with send-keys and the screen comes back with capture-pane.

use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of its own running one command in an 80×24 pane.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(cmd: &str) -> Self {
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

    pub fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux (installed by .ci/setup)")
    }

    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            self.cmd(&["send-keys", "-t", "t", k]);
            std::thread::sleep(Duration::from_millis(60));
        }
    }

    pub fn text(&self, text: &str) {
        self.cmd(&["send-keys", "-t", "t", "-l", text]);
    }

    /// The RGB colours (`r;g;b`) the screen uses, from `capture-pane -e`'s escapes.
    pub fn colours(&self) -> std::collections::BTreeSet<String> {
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

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    pub fn wait_for(&self, what: &str) -> String {
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

impl Tmux {
    /// The console's process id (the child of the pane's shell).
    pub fn console_pid(&self) -> String {
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
