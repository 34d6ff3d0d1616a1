//! Errors of the cube layer, each naming what it was doing.

/// What went wrong opening, reading or writing the cube's repository.
#[derive(Debug, thiserror::Error)]
pub enum CubeError {
    #[error("repository {location}: {message}")]
    Repository { location: String, message: String },
    #[error("no tilecube cube in repository {location}; run `tilecube init` first")]
    NotACube { location: String },
    #[error(
        "repository {location} already holds a repository; pass --force to lay out a fresh cube over it (history is kept)"
    )]
    AlreadyExists { location: String },
    #[error("{what}: {message}")]
    Icechunk { what: String, message: String },
    #[error("cube layout: {0}")]
    Layout(String),
    #[error("snapshot {0:?} not found")]
    UnknownSnapshot(String),
    #[error("{0}")]
    Grid(#[from] crate::grid::GridError),
}

impl CubeError {
    /// Wrap an Icechunk or zarrs error with what was being done.
    pub(crate) fn icechunk(what: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Self::Icechunk {
            what: what.into(),
            message: err.to_string(),
        }
    }
}
