//! A real S3-compatible server for the tests: moto in server mode on loopback, from the venv
//! `.ci/setup` creates. Each test gets its own server on a free port, stopped on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;

/// Credentials the tests hand to every process; the secret must never be printed.
pub const ACCESS_KEY: &str = "AKIATILECUBETEST";
pub const SECRET_KEY: &str = "tcSECRETdo-not-print-9f3c1e7a5b";

pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        // The venv's Python (or TILECUBE_PYTHON's) runs moto's server module.
        let child = Command::new(super::python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The environment every process of a test gets.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// Set this server's environment in the current (test) process.
    pub fn export(&self) {
        for (k, v) in self.env() {
            // SAFETY: each integration test runs in its own process under nextest, and this
            // is called before the test starts any thread that reads the environment.
            unsafe { std::env::set_var(k, v) };
        }
    }

    pub fn create_bucket(&self, bucket: &str) {
        let addr = self.endpoint.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).expect("connect moto");
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        assert!(
            resp.starts_with("HTTP/1.1 200"),
            "create bucket {bucket}: {resp}"
        );
    }

    fn store(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_region("us-east-1")
            .build()
            .expect("s3 client")
    }

    /// The keys under `bucket/prefix`.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let store = self.store(bucket);
        let prefix = (!prefix.is_empty()).then(|| object_store::path::Path::from(prefix));
        let metas: Vec<_> = store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .expect("list");
        metas.into_iter().map(|m| m.location.to_string()).collect()
    }

    /// An object's bytes.
    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let store = self.store(bucket);
        store
            .get(&object_store::path::Path::from(key))
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes")
            .to_vec()
    }

    /// Upload a file as `bucket/key` by a multipart upload (its ETag is then not the MD5 of
    /// its bytes, as a single-part upload's is).
    pub async fn upload_multipart(&self, file: &Path, bucket: &str, key: &str) {
        use object_store::ObjectStoreExt;
        let store = self.store(bucket);
        let bytes = std::fs::read(file).expect("read file");
        let mut upload = store
            .put_multipart(&object_store::path::Path::from(key))
            .await
            .expect("start multipart");
        upload.put_part(bytes.into()).await.expect("upload part");
        upload.complete().await.expect("complete multipart");
    }

    /// Upload a local directory tree under `bucket/prefix`.
    pub async fn upload_dir(&self, dir: &Path, bucket: &str, prefix: &str) {
        let store = self.store(bucket);
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("read dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path.strip_prefix(dir).expect("relative");
                let key = format!("{prefix}/{}", rel.display());
                let bytes = std::fs::read(&path).expect("read file");
                store
                    .put(&object_store::path::Path::from(key), bytes.into())
                    .await
                    .expect("upload");
            }
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
