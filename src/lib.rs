//! tilecube: assemble analysis-ready raster datacubes in Icechunk from tiled GeoTIFFs.
//!
//! The engine — [`grid`], [`source`], [`cube`], [`ingest`] — knows nothing of terminals: it
//! reports progress as events on a channel. The headless CLI ([`cli`]) is a thin front end
//! over it.

pub mod cli;
pub mod config;
pub mod cube;
pub mod demo;
pub mod grid;
pub mod ingest;
pub mod preset;
pub mod remote;
pub mod source;

/// Process-wide GDAL settings: a small block cache (memory stays bounded whatever the tile
/// size) and quiet error output (errors are reported through results, naming the tile).
pub fn gdal_setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let cache = std::env::var("TILECUBE_GDAL_CACHEMAX").unwrap_or_else(|_| "64".into());
        let _ = gdal::config::set_config_option("GDAL_CACHEMAX", &cache);
        let _ = gdal::config::set_config_option("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR");
        let _ =
            gdal::config::set_config_option("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", ".tif,.TIF,.txt");
        gdal::config::set_error_handler(|_, _, _| {});
    });
}
