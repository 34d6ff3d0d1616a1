//! Small reads from object storage and HTTP (tile lists, existence probes), configured from
//! the standard environment: `AWS_*` for S3 (including `AWS_ENDPOINT_URL` for S3-compatible
//! services and `AWS_NO_SIGN_REQUEST`), application default credentials or
//! `GS_NO_SIGN_REQUEST` for GCS.
//!
//! Invariants: errors are typed ([`RemoteError`], classified in [`crate::fault`]) and keep
//! their cause. No error carries a credential: URLs are the objects' own addresses.

use bytes::Bytes;

use crate::error_chain;
pub use crate::fault::{NetworkKind, RemoteError};
use crate::fault::{classify_store_error, from_status, network_error};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

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
