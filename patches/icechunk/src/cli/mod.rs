//! Command-line interface for Icechunk operations.

#[cfg(feature = "cli")]
pub mod config;
#[cfg(feature = "cli")]
pub mod interface;
