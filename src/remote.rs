//! Small reads from object storage (tile lists) with `object_store`, configured from the
//! standard environment: `AWS_*` for S3 (including `AWS_ENDPOINT_URL` for S3-compatible
//! services and `AWS_NO_SIGN_REQUEST`), application default credentials or
//! `GS_NO_SIGN_REQUEST` for GCS. Errors never carry credentials.

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.to_ascii_uppercase().as_str(), "YES" | "TRUE" | "1" | "ON"))
        .unwrap_or(false)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Fetch a whole object; `Ok(None)` if it does not exist.
pub async fn fetch(url: &str) -> Result<Option<Bytes>, String> {
    let (store, path) = store_for(url, None)?;
    match store.get(&path).await {
        Ok(r) => r.bytes().await.map(Some).map_err(|e| e.to_string()),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Look at an object once, without retries: its size, `Ok(None)` if it does not exist, or
/// the error (an HTTP status, a timeout) that kept us from knowing.
pub async fn probe(url: &str) -> Result<Option<u64>, String> {
    let no_retry = object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    };
    let (store, path) = store_for(url, Some(no_retry))?;
    match store.head(&path).await {
        Ok(meta) => Ok(Some(meta.size)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
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

fn store_for(
    url: &str,
    retry: Option<object_store::RetryConfig>,
) -> Result<(Box<dyn ObjectStore>, StorePath), String> {
    let (store, path): (Box<dyn ObjectStore>, StorePath) =
        if let Some(rest) = url.strip_prefix("s3://") {
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
            let store = b.build().map_err(|e| e.to_string())?;
            (Box::new(store), StorePath::from(key))
        } else if let Some(rest) = url.strip_prefix("gs://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            let mut b =
                object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket);
            if env_flag("GS_NO_SIGN_REQUEST") {
                b = b.with_skip_signature(true);
            }
            if let Some(r) = retry.clone() {
                b = b.with_retry(r);
            }
            let store = b.build().map_err(|e| e.to_string())?;
            (Box::new(store), StorePath::from(key))
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let (base, key) = url.rsplit_once('/').ok_or_else(|| "bad URL".to_string())?;
            let mut b = object_store::http::HttpBuilder::new()
                .with_url(base)
                .with_client_options(
                    object_store::ClientOptions::new().with_allow_http(base.starts_with("http://")),
                );
            if let Some(r) = retry.clone() {
                b = b.with_retry(r);
            }
            let store = b.build().map_err(|e| e.to_string())?;
            (Box::new(store), StorePath::from(key))
        } else {
            return Err(format!("{url:?} is not a gs://, s3:// or http(s):// URL"));
        };
    Ok((store, path))
}
