//! Re-exports from `icechunk_storage::s3_config`.

pub use icechunk_storage::s3_config::*;
