//! A real HTTP server for the tests: nginx on loopback, serving a directory, with its own
//! config, logs and pid file in a temporary directory (`.ci/setup` installs nginx-light).
//! Serving a directory whose first level is a bucket, it answers the Google Cloud Storage
//! XML API's anonymous reads (`GET /{bucket}/{object}`, with ranges) as GCS does.

use std::path::Path;

/// [`tilecube::nginx::Nginx`], started or the test fails.
pub struct Nginx(tilecube::nginx::Nginx);

impl Nginx {
    /// Serve `root` on a free loopback port.
    pub fn serve(root: &Path) -> Self {
        Self::serve_with(root, "")
    }

    /// Serve `root`, with extra `location` blocks (to answer some paths with an error).
    pub fn serve_with(root: &Path, locations: &str) -> Self {
        Self(
            tilecube::nginx::Nginx::start(root, locations).expect("nginx (installed by .ci/setup)"),
        )
    }
}

impl std::ops::Deref for Nginx {
    type Target = tilecube::nginx::Nginx;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Copy a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

/// A workspace's source served over HTTP through a proxy that adds `rtt` to every round
/// trip, so a write takes long enough to be interrupted mid-way. Returns the server, the
/// proxy (both stop when dropped) and the source's URL.
pub async fn slow_source(
    w: &super::Work,
    rtt: std::time::Duration,
) -> (Nginx, tilecube::netem::LatencyProxy, String) {
    let www = w.dir.path().join("www");
    copy_tree(&w.source(), &www.join("src"));
    let nginx = Nginx::serve(&www);
    let upstream = format!("127.0.0.1:{}", nginx.port)
        .parse()
        .expect("address");
    let proxy = tilecube::netem::LatencyProxy::start(upstream, rtt)
        .await
        .expect("proxy");
    let url = format!("{}/src", proxy.url());
    (nginx, proxy, url)
}

/// One request as [`LoggedNginx`] logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// When the response was finished, in ms since the epoch (nginx `$msec`).
    pub end_ms: u64,
    /// How long the request took, in ms (nginx `$request_time`).
    pub duration_ms: u64,
    pub method: String,
    pub path: String,
    /// The `Range` header's bytes, as a half-open range, if the request had one.
    pub range: Option<std::ops::Range<u64>>,
    pub status: u16,
    /// Bytes of the response's body.
    pub bytes: u64,
}

/// nginx on loopback serving `root`, each response sent at no more than `rate` bytes a
/// second per request (nginx `limit_rate`, e.g. `2m`), every request logged with its end,
/// duration, method, path, `Range` header, status and body size: requests counted and timed
/// at the server. Stopped (and its files removed) on drop.
pub struct LoggedNginx {
    child: std::process::Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl LoggedNginx {
    pub fn serve(root: &Path, rate: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  log_format requests '$msec $request_time $request_method $uri \"$http_range\" $status $body_bytes_sent';\n\
             access_log {d}/access.log requests;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{ listen 127.0.0.1:{port}; root {}; location / {{ limit_rate {rate}; }} }}\n}}\n",
            root.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("nginx.conf");
        let child = std::process::Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx (installed by .ci/setup)");
        let nginx = Self { child, port, dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not start on port {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        nginx
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests logged so far, in the order they finished.
    pub fn requests(&self) -> Vec<Logged> {
        let text = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let f: Vec<&str> = line.split(' ').collect();
                assert_eq!(f.len(), 7, "an access log line: {line:?}");
                let ms = |s: &str| -> u64 {
                    let (secs, frac) = s.split_once('.').expect("seconds.millis");
                    secs.parse::<u64>().expect("seconds") * 1000
                        + frac.parse::<u64>().expect("millis")
                };
                let range = f[4].trim_matches('"');
                let range = range.strip_prefix("bytes=").map(|r| {
                    let (a, b) = r.split_once('-').expect("first-last");
                    a.parse::<u64>().expect("first")..b.parse::<u64>().expect("last") + 1
                });
                Logged {
                    end_ms: ms(f[0]),
                    duration_ms: ms(f[1]),
                    method: f[2].to_string(),
                    path: f[3].to_string(),
                    range,
                    status: f[5].parse().expect("status"),
                    bytes: f[6].parse().expect("bytes"),
                }
            })
            .collect()
    }
}

impl Drop for LoggedNginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
