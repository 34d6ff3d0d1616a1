//! Process-wide GDAL set-up: the block cache, quiet error output (each thread keeping its
//! last few messages, so a failure's earlier causes can be reported with it), and the
//! `/vsis3/` options GDAL does not derive from the standard AWS variables itself.
//!
//! Invariant: [`gdal_setup`] runs once per process, before the first dataset is opened;
//! every reader of the engine calls it, so a front end never has to.

/// Process-wide GDAL settings: a small block cache (memory stays bounded whatever the tile
/// size) and quiet error output (errors are reported through results, naming the tile).
/// `TILECUBE_GDAL_CACHEMAX` checked: unset, megabytes (a whole number below 100 000, which
/// GDAL would read as bytes) or a share of the machine's memory (`N%`, N at most 100);
/// anything else is an error naming the variable, as GDAL would silently read it as no cache
/// at all, or as another size.
pub fn check_gdal_cachemax() -> Result<(), String> {
    let Ok(value) = std::env::var("TILECUBE_GDAL_CACHEMAX") else {
        return Ok(());
    };
    let v = value.trim();
    let ok = match v.strip_suffix('%') {
        Some(p) => {
            p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|n| n <= 100)
        }
        None => {
            v.bytes().all(|b| b.is_ascii_digit()) && v.parse::<u32>().is_ok_and(|n| n < 100_000)
        }
    };
    if ok {
        return Ok(());
    }
    Err(format!(
        "TILECUBE_GDAL_CACHEMAX={value:?}: expected GDAL's block cache size in megabytes (a whole \
         number below 100000, e.g. 64) or as a share of memory (at most 100%, e.g. 5%)"
    ))
}

pub fn gdal_setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let cache = std::env::var("TILECUBE_GDAL_CACHEMAX").unwrap_or_else(|_| "64".into());
        let _ = gdal::config::set_config_option("GDAL_CACHEMAX", &cache);
        let _ = gdal::config::set_config_option("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR");
        let _ =
            gdal::config::set_config_option("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", ".tif,.TIF,.txt");
        for (key, value) in gdal_s3_options_from_env(|k| std::env::var(k).ok()) {
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
/// port), `AWS_HTTPS` and path-style addressing. Variables GDAL reads itself (keys, region,
/// profile, `AWS_NO_SIGN_REQUEST`) are left to it.
pub fn gdal_s3_options_from_env(
    var: impl Fn(&str) -> Option<String>,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if var("AWS_S3_ENDPOINT").is_some() {
        return out;
    }
    let Some(url) = var("AWS_ENDPOINT_URL_S3")
        .or_else(|| var("AWS_ENDPOINT_URL"))
        .filter(|u| !u.is_empty())
    else {
        return out;
    };
    let (https, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some((_, rest)) => (true, rest),
        None => (true, url.as_str()),
    };
    out.push(("AWS_S3_ENDPOINT", rest.trim_end_matches('/').to_string()));
    out.push(("AWS_HTTPS", if https { "YES" } else { "NO" }.to_string()));
    out.push(("AWS_VIRTUAL_HOSTING", "FALSE".to_string()));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn aws_endpoint_url_maps_to_gdal_options() {
        let env = |k: &str| (k == "AWS_ENDPOINT_URL").then(|| "http://127.0.0.1:5123/".to_string());
        let opts = super::gdal_s3_options_from_env(env);
        assert_eq!(
            opts,
            vec![
                ("AWS_S3_ENDPOINT", "127.0.0.1:5123".to_string()),
                ("AWS_HTTPS", "NO".to_string()),
                ("AWS_VIRTUAL_HOSTING", "FALSE".to_string()),
            ]
        );
        assert!(super::gdal_s3_options_from_env(|_| None).is_empty());
    }
}
