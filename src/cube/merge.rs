//! Merging staged sessions: the changes that scale-out shards staged instead of committing
//! are folded into one session on the branch and land in a single commit.
//!
//! Invariants: a staged part is merged whole or not at all (a part that cannot be read stops
//! the merge before anything is committed); the commit records every tile it was given and
//! goes through the same locked, rebasing commit as every other write.

use icechunk::session::Session;
use serde_json::Value;

use super::history::{WrittenTiles, written_properties_with};
use super::{Cube, CubeError};

/// A session on the branch that staged parts are merged into.
pub struct Merger {
    cube: Cube,
    session: Session,
    parts: usize,
}

impl Cube {
    /// Start merging staged parts into the branch head.
    pub async fn merger(&self) -> Result<Merger, CubeError> {
        Ok(Merger {
            cube: self.clone(),
            session: self.writable_session().await?,
            parts: 0,
        })
    }
}

impl Merger {
    /// Fold one staged part (`Session::as_bytes` of a fork) into the session; `name` says
    /// which part in an error.
    pub async fn absorb(&mut self, name: &str, bytes: &[u8]) -> Result<(), CubeError> {
        let part = Session::from_bytes(bytes)
            .map_err(|e| CubeError::icechunk(format!("reading staged part {name}"), e))?;
        self.session
            .merge(part)
            .await
            .map_err(|e| CubeError::icechunk(format!("merging staged part {name}"), e))?;
        self.parts += 1;
        Ok(())
    }

    /// Parts merged so far.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// Commit everything merged as one snapshot recording `written` (and `tags`); returns
    /// its id.
    pub async fn commit(
        mut self,
        message: &str,
        written: &WrittenTiles,
        tags: &serde_json::Map<String, Value>,
    ) -> Result<String, CubeError> {
        let props = written_properties_with(written, tags);
        super::repo::commit(&self.cube, &mut self.session, message, props)
            .await
            .map(|id| id.to_string())
    }
}
