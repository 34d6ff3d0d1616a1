//! tilecube: assemble analysis-ready raster datacubes in Icechunk from tiled GeoTIFFs.
//!
//! This library is the engine — [`grid`], [`preset`], [`source`], [`cube`], [`ingest`], and
//! [`scaleout`] for many machines — and the settings that drive it ([`config`]; how this
//! process reaches object storage, read once by a face, is [`storage_settings`]); with the
//! `loopback` feature (the bench's and the tests'), `netem` puts a local server a round trip
//! away, `netfault` makes it fail (the two share one loopback listener, `loopback_proxy`) and
//! `nginx` is their HTTP server. It knows nothing of terminals: it reports progress as
//! [`ingest::Event`]s on a channel. The headless CLI, the console and the benchmark are
//! modules of the `tilecube` binary, thin faces over this library; nothing here depends on
//! them.

pub mod config;
pub mod cube;
pub mod demo;
pub mod fault;
pub mod grid;
pub mod ids;
pub mod ingest;
pub mod legend;
#[cfg(feature = "loopback")]
mod loopback_proxy;
#[cfg(feature = "loopback")]
pub mod netem;
#[cfg(feature = "loopback")]
pub mod netfault;
#[cfg(feature = "loopback")]
pub mod nginx;
pub mod notice;
pub mod overview;
pub mod preset;
pub mod runs;
pub mod scaleout;
pub mod source;
pub mod storage_settings;
pub mod text;

pub use source::gdal_setup;

/// An error and its causes, joined with ": " (a cause already quoted by its parent is not
/// repeated): what the faces print for an engine error.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error_text(e);
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = error_text(c);
        if !s.is_empty() && !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cause = c.source();
    }
    out
}

/// An error's own message, without the empty "context:" trailer Icechunk's errors add when no
/// tracing span was recorded (and without its span trace when one was).
pub fn error_text(e: &dyn std::error::Error) -> String {
    let s = e.to_string();
    match s.find("\n\ncontext:") {
        Some(i) => s[..i].trim_end().to_string(),
        None => s.trim_end().to_string(),
    }
}

/// [`error_chain`] of an `anyhow` error (its contexts and causes).
pub fn anyhow_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for c in e.chain() {
        let s = error_text(c);
        if s.is_empty() || out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out
}

#[cfg(test)]
mod chain_tests {
    #[test]
    fn icechunk_context_trailers_are_left_out() {
        #[derive(Debug)]
        struct Traced;
        impl std::fmt::Display for Traced {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "ref not found\n\ncontext:\n\n")
            }
        }
        impl std::error::Error for Traced {}
        let e = anyhow::Error::new(Traced).context("opening branch dev");
        assert_eq!(super::anyhow_chain(&e), "opening branch dev: ref not found");
        assert_eq!(super::error_chain(&Traced), "ref not found");
    }
}
