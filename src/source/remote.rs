//! Small reads from object storage and HTTP (tile lists, existence probes), configured from
//! the standard environment: `AWS_*` for S3 (including `AWS_ENDPOINT_URL` for S3-compatible
//! services and `AWS_NO_SIGN_REQUEST`), application default credentials or
//! `GS_NO_SIGN_REQUEST` for GCS.
//!
//! Invariants: errors are typed ([`RemoteError`]) and keep their cause; whether one is worth
//! retrying is decided from the HTTP status or the network error's kind, never from text,
//! except for the status of an S3/GCS error that `object_store` reports only in its message.
//! No error carries a credential: URLs are the objects' own addresses.

use bytes::Bytes;

use crate::error_chain;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

/// Why a remote object could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteError {
    #[error("{url}: not found")]
    NotFound { url: String },
    #[error("{url}: access denied (HTTP {status})")]
    Denied { url: String, status: u16 },
    #[error("{url}: HTTP {status}{}", reason.as_deref().map(|r| format!(" {r}")).unwrap_or_default())]
    Status {
        url: String,
        status: u16,
        reason: Option<String>,
    },
    #[error("{url}: {kind}: {message}")]
    Network {
        url: String,
        kind: NetworkKind,
        message: String,
    },
    #[error("{url}: {message}")]
    Other { url: String, message: String },
    #[error("{0:?} is not a gs://, s3:// or http(s):// URL")]
    BadUrl(String),
}

/// What kind of network trouble met a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NetworkKind {
    #[error("cannot connect")]
    Connect,
    #[error("timed out")]
    Timeout,
    #[error("connection dropped")]
    Interrupted,
    #[error("request failed")]
    Request,
    #[error("bad response")]
    Decode,
}

impl RemoteError {
    /// Whether trying again later could succeed: server errors (5xx), throttling (429),
    /// timeouts and connection trouble.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            Self::Network { kind, .. } => !matches!(kind, NetworkKind::Decode),
            _ => false,
        }
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Denied { status, .. } | Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// The Google Cloud Storage endpoint set by the settings (`--gcs-endpoint`, `[gcs]`), for
/// this process: GDAL's `/vsigs/` reads and the list fetches use it alike.
static GCS_ENDPOINT: std::sync::RwLock<Option<String>> = std::sync::RwLock::new(None);

/// Point `gs://` reads at another endpoint (an emulator, a mirror, a proxy). GDAL's GCS
/// endpoint is a process-wide setting, so this one is too. Without it, `CPL_GS_ENDPOINT`
/// from the environment applies to both.
pub fn set_gcs_endpoint(endpoint: &str) {
    let endpoint = format!("{}/", endpoint.trim_end_matches('/'));
    let _ = gdal::config::set_config_option("CPL_GS_ENDPOINT", &endpoint);
    if let Ok(mut e) = GCS_ENDPOINT.write() {
        *e = Some(endpoint);
    }
}

/// The GCS endpoint in force: the settings', else `CPL_GS_ENDPOINT`.
pub fn gcs_endpoint() -> Option<String> {
    GCS_ENDPOINT
        .read()
        .ok()
        .and_then(|e| e.clone())
        .or_else(|| env("CPL_GS_ENDPOINT"))
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.to_ascii_uppercase().as_str(), "YES" | "TRUE" | "1" | "ON"))
        .unwrap_or(false)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Fetch a whole object; `Ok(None)` if it does not exist.
pub async fn fetch(url: &str) -> Result<Option<Bytes>, RemoteError> {
    let (store, path) = store_for(url, None)?;
    let got = match store.get(&path).await {
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    match got {
        Ok(b) => Ok(Some(b)),
        Err(e) => match classify_store_error(url, e) {
            RemoteError::NotFound { .. } => Ok(None),
            e => Err(e),
        },
    }
}

/// Look at an object once, without retries: its size, `Ok(None)` if it does not exist, or
/// the error (an HTTP status, a timeout) that kept us from knowing.
pub async fn probe(url: &str) -> Result<Option<u64>, RemoteError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return probe_http(url).await;
    }
    let no_retry = object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    };
    let (store, path) = store_for(url, Some(no_retry))?;
    match store.head(&path).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(e) => match classify_store_error(url, e) {
            RemoteError::NotFound { .. } => Ok(None),
            e => Err(e),
        },
    }
}

/// A HEAD request over plain HTTP(S), whose status is known exactly.
async fn probe_http(url: &str) -> Result<Option<u64>, RemoteError> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| RemoteError::Other {
            url: url.to_string(),
            message: e.to_string(),
        })?;
    let response = client
        .head(url)
        .send()
        .await
        .map_err(|e| network_error(url, &e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response.content_length());
    }
    match from_status(url, status.as_u16(), status.canonical_reason()) {
        RemoteError::NotFound { .. } => Ok(None),
        e => Err(e),
    }
}

fn from_status(url: &str, status: u16, reason: Option<&str>) -> RemoteError {
    match status {
        404 | 410 => RemoteError::NotFound {
            url: url.to_string(),
        },
        401 | 403 => RemoteError::Denied {
            url: url.to_string(),
            status,
        },
        _ => RemoteError::Status {
            url: url.to_string(),
            status,
            reason: reason.map(str::to_string),
        },
    }
}

fn network_error(url: &str, e: &reqwest::Error) -> RemoteError {
    let kind = if e.is_timeout() {
        NetworkKind::Timeout
    } else if e.is_connect() {
        NetworkKind::Connect
    } else if e.is_decode() || e.is_body() {
        NetworkKind::Interrupted
    } else {
        NetworkKind::Request
    };
    RemoteError::Network {
        url: url.to_string(),
        kind,
        message: error_chain(e),
    }
}

/// An `object_store` error, classified by its typed variants and the network error in its
/// chain. Its HTTP status, when the server answered with one that has no variant of its
/// own, is only in its message: that is read as the last resort.
pub(crate) fn classify_store_error(url: &str, e: object_store::Error) -> RemoteError {
    use object_store::Error as E;
    match &e {
        E::NotFound { .. } => {
            return RemoteError::NotFound {
                url: url.to_string(),
            };
        }
        E::PermissionDenied { .. } => {
            return RemoteError::Denied {
                url: url.to_string(),
                status: 403,
            };
        }
        E::Unauthenticated { .. } => {
            return RemoteError::Denied {
                url: url.to_string(),
                status: 401,
            };
        }
        _ => {}
    }
    let message = error_chain(&e);
    if let Some(kind) = network_kind(&e) {
        return RemoteError::Network {
            url: url.to_string(),
            kind,
            message,
        };
    }
    match status_in_message(&message) {
        Some(status) => from_status(url, status, None),
        None => RemoteError::Other {
            url: url.to_string(),
            message,
        },
    }
}

/// The network trouble in an error's chain, told by the typed cause: the object store's
/// HTTP error kind or an I/O error's kind. `None` when no cause is one of these.
fn network_kind(e: &(dyn std::error::Error + 'static)) -> Option<NetworkKind> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(h) = c.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            match h.kind() {
                K::Connect => return Some(NetworkKind::Connect),
                K::Timeout => return Some(NetworkKind::Timeout),
                K::Interrupted => return Some(NetworkKind::Interrupted),
                K::Request => return Some(NetworkKind::Request),
                K::Decode => return Some(NetworkKind::Decode),
                _ => {}
            }
        }
        if let Some(kind) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io_kind(io.kind()))
        {
            return Some(kind);
        }
        cause = c.source();
    }
    None
}

/// Network trouble told by an I/O error's kind.
pub fn io_kind(kind: std::io::ErrorKind) -> Option<NetworkKind> {
    use std::io::ErrorKind as K;
    match kind {
        K::TimedOut => Some(NetworkKind::Timeout),
        K::ConnectionRefused | K::NotConnected | K::HostUnreachable | K::NetworkUnreachable => {
            Some(NetworkKind::Connect)
        }
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            Some(NetworkKind::Interrupted)
        }
        _ => None,
    }
}

/// The status in `object_store`'s "Server returned non-2xx status code: 503 …" message.
fn status_in_message(message: &str) -> Option<u16> {
    let rest = message.split("status code: ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (digits.len() == 3).then(|| digits.parse().ok()).flatten()
}

/// Whether a typed cause in an error's chain says if retrying could help: network errors
/// by their kind, I/O errors by theirs, object-store errors by their variant and status.
/// `None` when no cause in the chain is one of these.
pub fn transient_cause(e: &(dyn std::error::Error + 'static)) -> Option<bool> {
    if let Some(kind) = network_kind(e) {
        return Some(kind != NetworkKind::Decode);
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<RemoteError>() {
            return Some(r.is_transient());
        }
        if let Some(o) = c.downcast_ref::<object_store::Error>() {
            use object_store::Error as E;
            match o {
                E::NotFound { .. }
                | E::PermissionDenied { .. }
                | E::Unauthenticated { .. }
                | E::AlreadyExists { .. }
                | E::Precondition { .. } => return Some(false),
                E::Generic { .. } => {
                    if let Some(status) = status_in_message(&o.to_string()) {
                        return Some(status >= 500 || status == 429);
                    }
                }
                _ => {}
            }
        }
        cause = c.source();
    }
    None
}

/// Whether an error's chain holds a refusal that every write to the same storage would
/// meet: permission denied, a read-only or full file system or quota (I/O error kinds), or
/// an object store's denial of the credentials.
pub fn refusal_cause(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                K::PermissionDenied | K::ReadOnlyFilesystem | K::StorageFull | K::QuotaExceeded
            )
        {
            return true;
        }
        if let Some(o) = c.downcast_ref::<object_store::Error>()
            && matches!(
                o,
                object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            )
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// The location a GDAL virtual path reads, as a URL.
pub fn url_of_gdal_path(path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("/vsicurl/") {
        Some(rest.to_string())
    } else if let Some(rest) = path.strip_prefix("/vsis3/") {
        Some(format!("s3://{rest}"))
    } else {
        path.strip_prefix("/vsigs/")
            .map(|rest| format!("gs://{rest}"))
    }
}

pub(crate) fn store_for(
    url: &str,
    retry: Option<object_store::RetryConfig>,
) -> Result<(Box<dyn ObjectStore>, StorePath), RemoteError> {
    let build_err = |e: object_store::Error| RemoteError::Other {
        url: url.to_string(),
        message: error_chain(&e),
    };
    let (store, path): (Box<dyn ObjectStore>, StorePath) = if let Some(rest) =
        url.strip_prefix("s3://")
    {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(ep) = env("AWS_ENDPOINT_URL_S3").or_else(|| env("AWS_ENDPOINT_URL")) {
            b = b
                .with_allow_http(ep.starts_with("http://"))
                .with_endpoint(ep)
                .with_virtual_hosted_style_request(false);
        }
        if env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_none() {
            b = b.with_region("us-east-1");
        }
        if env_flag("AWS_NO_SIGN_REQUEST") {
            b = b.with_skip_signature(true);
        }
        if let Some(r) = retry.clone() {
            b = b.with_retry(r);
        }
        (
            Box::new(b.build().map_err(build_err)?),
            StorePath::from(key),
        )
    } else if let Some(rest) = url.strip_prefix("gs://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let mut b =
            object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
        if let Some(ep) = gcs_endpoint() {
            b = b
                .with_base_url(ep.trim_end_matches('/'))
                .with_client_options(
                    object_store::ClientOptions::new().with_allow_http(ep.starts_with("http://")),
                );
        }
        if env_flag("GS_NO_SIGN_REQUEST") {
            b = b.with_skip_signature(true);
        }
        if let Some(r) = retry.clone() {
            b = b.with_retry(r);
        }
        (
            Box::new(b.build().map_err(build_err)?),
            StorePath::from(key),
        )
    } else if url.starts_with("http://") || url.starts_with("https://") {
        let (base, key) = url
            .rsplit_once('/')
            .ok_or_else(|| RemoteError::BadUrl(url.to_string()))?;
        let mut b = object_store::http::HttpBuilder::new()
            .with_url(base)
            .with_client_options(
                object_store::ClientOptions::new().with_allow_http(base.starts_with("http://")),
            );
        if let Some(r) = retry.clone() {
            b = b.with_retry(r);
        }
        (
            Box::new(b.build().map_err(build_err)?),
            StorePath::from(key),
        )
    } else {
        return Err(RemoteError::BadUrl(url.to_string()));
    };
    Ok((store, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_network_kinds_decide_transience() {
        let s = |status| from_status("http://h/x", status, None);
        assert!(s(503).is_transient());
        assert!(s(500).is_transient());
        assert!(s(429).is_transient(), "throttling is retried");
        assert!(!s(400).is_transient());
        assert!(matches!(s(404), RemoteError::NotFound { .. }));
        assert!(matches!(s(403), RemoteError::Denied { .. }));
        assert!(!s(403).is_transient());
        let net = |kind| RemoteError::Network {
            url: "u".into(),
            kind,
            message: String::new(),
        };
        assert!(net(NetworkKind::Timeout).is_transient());
        assert!(net(NetworkKind::Connect).is_transient());
        assert!(!net(NetworkKind::Decode).is_transient());
        assert_eq!(
            io_kind(std::io::ErrorKind::ConnectionReset),
            Some(NetworkKind::Interrupted)
        );
        assert_eq!(io_kind(std::io::ErrorKind::InvalidData), None);
    }

    #[test]
    fn status_is_read_from_object_store_messages_only_after_its_marker() {
        assert_eq!(
            status_in_message(
                "Error performing GET in 1ms - Server returned non-2xx status code: 503 Service Unavailable: "
            ),
            Some(503)
        );
        assert_eq!(status_in_message("Not enough data at scanline 15000"), None);
        assert_eq!(status_in_message("status code: 5000"), None);
    }
}
