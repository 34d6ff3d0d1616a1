//! Merging staged sessions: the changes that scale-out shards staged instead of committing
//! are folded into a session on the branch and land as a single commit.
//!
//! A commit's memory grows with the chunk references it holds (some 450 bytes each), so a
//! merge of a whole cube lands in batches: the first batch is a new commit, each later one
//! amends that same commit (Icechunk spec 2), so the branch gains one commit whatever the
//! number of batches and memory follows the batch, not the cube. On a spec 1 repository,
//! which cannot amend, everything lands in one commit at the end.
//!
//! Staged parts hold the overview levels their shards wrote with each tile; the coarse levels,
//! whose chunks span tiles of several shards, are refreshed for the batch's tiles before the
//! batch lands.
//!
//! Invariants: a staged part is merged whole or not at all (a part that cannot be read stops
//! the merge before its batch is committed); each batch's commit records every tile merged so
//! far; a batch amends only a commit this merger made and that is still the branch's tip,
//! otherwise it lands as a new commit, rebased like every other write.

use icechunk::format::format_constants::SpecVersionBin;
use icechunk::session::Session;
use serde_json::Value;

use super::history::{WrittenTiles, written_properties_with};
use super::{Cube, CubeError};

/// A session on the branch that staged parts are merged into.
pub struct Merger {
    cube: Cube,
    session: Session,
    parts: usize,
    /// Parts absorbed since the last batch's commit.
    pending: usize,
    /// The commit that later batches amend (this merger's, or the one it resumes).
    commit: Option<String>,
    /// Commits made (a batch that could not amend makes a new one).
    commits: usize,
    /// The plan merged: no commit of this merger lands over another merge of it.
    plan: Option<String>,
    /// The merge's announcement (its coarse-level refresh uploads chunks before each commit).
    announced: Option<super::writers::Announced>,
}

impl Cube {
    /// Start merging staged parts of plan `plan` into the branch head; `resume` is an
    /// earlier merge commit of the same plan that later batches may amend (if it is still the
    /// branch's tip). No commit of the merger lands over a merge of the plan made by another
    /// process meanwhile ([`CubeError::MergedConcurrently`]).
    pub async fn merger(&self, plan: &str, resume: Option<String>) -> Result<Merger, CubeError> {
        let announced = self
            .announce_writer(&format!("merge of plan {plan}"), None)
            .await?;
        Ok(Merger {
            announced: Some(announced),
            cube: self.clone(),
            session: self.writable_session().await?,
            parts: 0,
            pending: 0,
            commit: resume,
            commits: 0,
            plan: Some(plan.to_string()),
        })
    }
}

impl Merger {
    /// The merge is done: its announcement is taken back.
    pub async fn close(mut self) {
        if let Some(a) = self.announced.take() {
            a.end().await;
        }
    }

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
        self.pending += 1;
        Ok(())
    }

    /// Parts merged so far.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// New commits this merger made (1 for a merge whose batches all amended its first).
    pub fn commits(&self) -> usize {
        self.commits
    }

    /// Whether the repository can amend (Icechunk spec 2): only then does a merge land in
    /// batches.
    pub fn batches(&self) -> bool {
        self.cube.repo.spec_version() >= SpecVersionBin::V2
    }

    /// Commit the parts absorbed since the last batch with `tags`: amending this merge's
    /// commit when it is the branch's tip (recording `all`, every tile of the merge so far),
    /// else as a new commit (recording `since_last`, the tiles no earlier commit of the merge
    /// recorded). Returns the commit's id.
    pub async fn commit(
        &mut self,
        message: &str,
        all: &WrittenTiles,
        since_last: &WrittenTiles,
        tags: &serde_json::Map<String, Value>,
    ) -> Result<String, CubeError> {
        let amend = self.batches()
            && self
                .commit
                .as_ref()
                .is_some_and(|c| *c == self.session.snapshot_id().to_string());
        let props = written_properties_with(if amend { all } else { since_last }, tags);
        let id = if amend {
            super::overviews::refresh_coarse(&mut self.session, &self.cube.layout, since_last)
                .await?;
            super::commit::amend(&self.cube, &mut self.session, message, props).await?
        } else {
            self.commits += 1;
            super::commit::commit_guarded(
                &self.cube,
                &mut self.session,
                since_last,
                message,
                props,
                self.plan.as_deref(),
            )
            .await?
        }
        .to_string();
        self.session = self.cube.writable_session().await?;
        self.commit = Some(id.clone());
        self.pending = 0;
        release_freed_memory();
        Ok(id)
    }
}

/// Hand the memory a batch freed back to the system, so the next batch does not stack on
/// it: glibc keeps freed blocks in its arenas otherwise, and a merge's peak would follow the
/// whole cube instead of one batch.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator's arenas to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Cap the allocator's arenas for a process that merges: a merge's references are made on
/// whichever I/O thread runs it, and with an arena per thread the freed memory of one batch
/// stays reserved in another thread's arena. Call before the merge starts.
pub fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt adjusts a glibc tunable; M_ARENA_MAX only bounds future arenas.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
