//! Small reads from object storage and HTTP (tile lists, existence probes), reached as the
//! [`StorageSettings`] handed down say: for S3 the environment's endpoint (`AWS_ENDPOINT_URL`
//! for S3-compatible services), region and `AWS_NO_SIGN_REQUEST`; for GCS the settings' or
//! `CPL_GS_ENDPOINT`'s endpoint and `GS_NO_SIGN_REQUEST`.
//!
//! Invariants: errors are typed ([`RemoteError`], classified in [`crate::fault`]) and keep
//! their cause. No error carries a credential: URLs are the objects' own addresses.
//! Credentials (`AWS_*` keys and profiles, Google's application default credentials) are read
//! by the object-store clients' own builders, never by this module.

use bytes::Bytes;

use crate::error_chain;
pub use crate::fault::{NetworkKind, RemoteError};
use crate::fault::{classify_store_error, from_status, network_error};
use crate::storage_settings::StorageSettings;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

/// Fetch a whole object; `Ok(None)` if it does not exist.
pub async fn fetch(url: &str, storage: &StorageSettings) -> Result<Option<Bytes>, RemoteError> {
    let (store, path) = store_for(url, storage, None)?;
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
pub async fn probe(url: &str, storage: &StorageSettings) -> Result<Option<u64>, RemoteError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return probe_http(url).await;
    }
    let no_retry = object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    };
    let (store, path) = store_for(url, storage, Some(no_retry))?;
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

/// The client and key of the object at `url`, reached as `storage` says.
pub(crate) fn store_for(
    url: &str,
    storage: &StorageSettings,
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
        // The builder's own reading of the environment brings the credentials.
        let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        let aws = &storage.aws;
        if let Some(ep) = &aws.endpoint_url {
            b = b
                .with_allow_http(ep.starts_with("http://"))
                .with_endpoint(ep)
                .with_virtual_hosted_style_request(false);
        }
        b = b.with_region(aws.region.as_deref().unwrap_or("us-east-1"));
        if aws.no_sign_request {
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
        if let Some(ep) = storage.gcs_endpoint() {
            b = b
                .with_base_url(ep.trim_end_matches('/'))
                .with_client_options(
                    object_store::ClientOptions::new().with_allow_http(ep.starts_with("http://")),
                );
        }
        if storage.gcs.no_sign_request {
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
