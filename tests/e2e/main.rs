//! The end-to-end tests, one binary so that a fresh build links once: each module drives the
//! real `tilecube` binary against real GeoTIFFs, repositories and servers (`common` starts them).
//! Run one module with `cargo nextest run --release -E 'test(/^resilience::/)'`.

mod common;

mod cli;
mod commit_steps;
mod console;
mod coverage;
mod coverage_cache;
mod epoch;
mod faults;
mod gcs;
mod geozarr;
mod hostile;
mod hygiene;
mod icechunk_patch;
mod ingest;
mod integrity;
mod layouts;
mod maintenance;
mod map;
mod memory;
mod messages;
mod operator_day;
mod overviews;
mod presets;
mod promises;
mod python_readback;
mod readahead;
mod releases;
mod resilience;
mod runs;
mod s3;
mod scaleout;
mod settings;
mod shard_records;
mod signals;
mod terminal;
mod tile_checks;
mod upstream;
