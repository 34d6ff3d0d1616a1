//! tilecube: assemble analysis-ready raster datacubes in Icechunk from tiled GeoTIFFs.
//!
//! This library is the engine — [`grid`], [`preset`], [`source`], [`cube`], [`ingest`], and
//! [`scaleout`] for many machines — and
//! the settings that drive it ([`config`]); [`netem`] is the bench's and the tests' way to put a
//! local server a round trip away. It knows nothing of terminals: it reports progress
//! as [`ingest::Event`]s on a channel. The headless CLI, the console and the benchmark are
//! modules of the `tilecube` binary, thin faces over this library; nothing here depends on
//! them.

pub mod config;
pub mod cube;
pub mod demo;
pub mod grid;
pub mod ingest;
pub mod legend;
pub mod netem;
pub mod nginx;
pub mod overview;
pub mod preset;
pub mod runs;
pub mod scaleout;
pub mod source;

pub use source::gdal_setup;

/// An error and its causes, joined with ": " (a cause already quoted by its parent is not
/// repeated): what the faces print for an engine error.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}
