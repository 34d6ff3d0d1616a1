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
