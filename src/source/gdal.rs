//! Process-wide GDAL set-up from the [`StorageSettings`] handed down: the block cache, quiet
//! error output (each thread keeping its last few messages, so a failure's earlier causes can
//! be reported with it), the `/vsis3/` options GDAL does not derive from the standard AWS
//! variables itself, and the `/vsigs/` endpoint the settings name.
//!
//! Invariant: [`gdal_setup`] runs before the first dataset is opened (its process-wide part
//! once per process); every reader of the engine calls it, so a front end never has to.
//! Nothing here reads the environment: GDAL reads its own variables itself.

use crate::storage_settings::StorageSettings;

/// Process-wide GDAL settings: a small block cache (memory stays bounded whatever the tile
/// size; `TILECUBE_GDAL_CACHEMAX`, checked when the settings were read, else 64 MB), quiet
/// error output (errors are reported through results, naming the tile), the `/vsis3/`
/// options of [`gdal_s3_options`] and, when the settings name one, the GCS endpoint of
/// `/vsigs/` (`CPL_GS_ENDPOINT`; GDAL's is process-wide, so it is set again at each call and
/// the last settings' holds).
pub fn gdal_setup(storage: &StorageSettings) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let cache = storage.gdal_cachemax.as_deref().unwrap_or("64");
        let _ = gdal::config::set_config_option("GDAL_CACHEMAX", cache);
        let _ = gdal::config::set_config_option("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR");
        let _ =
            gdal::config::set_config_option("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", ".tif,.TIF,.txt");
        for (key, value) in gdal_s3_options(storage) {
            let _ = gdal::config::set_config_option(key, &value);
        }
        // Quiet, but each thread keeps its last few messages: GDAL reports a failed read of
        // a remote block as "IReadBlock failed", and the network cause (a connection cut
        // mid-answer, say) is only in a message raised before it.
        gdal::config::set_error_handler(|_, _, msg| {
            RECENT.with_borrow_mut(|recent| {
                if recent.len() == RECENT_KEPT {
                    recent.remove(0);
                }
                recent.push(msg.to_string());
            });
        });
    });
    // Without one in the settings, GDAL reads `CPL_GS_ENDPOINT` from the environment itself.
    if let Some(endpoint) = &storage.gcs.endpoint {
        let _ = gdal::config::set_config_option("CPL_GS_ENDPOINT", endpoint);
    }
}

/// Messages kept per thread.
const RECENT_KEPT: usize = 8;

thread_local! {
    static RECENT: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Forget this thread's recent GDAL messages (before an operation whose causes are wanted).
pub fn clear_recent_errors() {
    RECENT.with_borrow_mut(Vec::clear);
}

/// This thread's GDAL messages since the last [`clear_recent_errors`] (the last few), oldest
/// first; taking them clears them.
pub fn take_recent_errors() -> Vec<String> {
    RECENT.with_borrow_mut(std::mem::take)
}

/// GDAL's `/vsis3/` options derived from the standard AWS variables GDAL does not read
/// itself: `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`) becomes `AWS_S3_ENDPOINT` (host and
/// port), `AWS_HTTPS` and path-style addressing, unless GDAL's own `AWS_S3_ENDPOINT` is set.
/// Variables GDAL reads itself (keys, region, profile, `AWS_NO_SIGN_REQUEST`) are left to it.
pub fn gdal_s3_options(storage: &StorageSettings) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if storage.aws.gdal_s3_endpoint_set {
        return out;
    }
    let Some(url) = storage.aws.endpoint_url.as_deref() else {
        return out;
    };
    let (https, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some((_, rest)) => (true, rest),
        None => (true, url),
    };
    out.push(("AWS_S3_ENDPOINT", rest.trim_end_matches('/').to_string()));
    out.push(("AWS_HTTPS", if https { "YES" } else { "NO" }.to_string()));
    out.push(("AWS_VIRTUAL_HOSTING", "FALSE".to_string()));
    out
}

#[cfg(test)]
mod tests {
    use crate::storage_settings::StorageSettings;

    #[test]
    fn aws_endpoint_url_maps_to_gdal_options() {
        let env = |k: &str| (k == "AWS_ENDPOINT_URL").then(|| "http://127.0.0.1:5123/".to_string());
        let opts = super::gdal_s3_options(&StorageSettings::from_lookup(env).unwrap());
        assert_eq!(
            opts,
            vec![
                ("AWS_S3_ENDPOINT", "127.0.0.1:5123".to_string()),
                ("AWS_HTTPS", "NO".to_string()),
                ("AWS_VIRTUAL_HOSTING", "FALSE".to_string()),
            ]
        );
        assert!(super::gdal_s3_options(&StorageSettings::default()).is_empty());
        let own = |k: &str| match k {
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:5123/".to_string()),
            "AWS_S3_ENDPOINT" => Some("127.0.0.1:9".to_string()),
            _ => None,
        };
        assert!(super::gdal_s3_options(&StorageSettings::from_lookup(own).unwrap()).is_empty());
    }
}
