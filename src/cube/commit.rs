//! Landing commits: the one path every commit of the cube takes — a write's checkpoints,
//! `overviews`, a merge's batches, a repair, the layout of `init`, the records `expire`
//! carries forward.
//!
//! Invariants:
//! - every branch update is made under the reference lock ([`RefLock`]: a local repository's
//!   file lock; object stores' conditional writes): a commit never overwrites another's;
//! - a commit that records tiles lands with the coarse overview levels of those tiles
//!   computed from everything the branch holds: they are refreshed before the commit and
//!   again after every rebase over another writer's commit;
//! - a merge's commit never lands over another merge of the same plan (checked and landed in
//!   one conditional step);
//! - an amend replaces the branch's tip only if it is still the commit the session opened
//!   on;
//! - after [`ATTEMPTS`] tries against a branch that kept moving, the commit gives up with
//!   [`CubeError::BranchKeptMoving`].

use icechunk::conflicts::basic_solver::BasicConflictSolver;
use icechunk::format::SnapshotId;
use icechunk::format::snapshot::SnapshotProperties;
use icechunk::session::{Session, SessionErrorKind};

use super::history::WrittenTiles;
use super::lock::RefLock;
use super::overviews::refresh_coarse;
use super::steps::{self, Mechanism};
use super::{Cube, CubeError};

/// Number of attempts to rebase a plain commit over concurrent commits to the branch.
const REBASE_ATTEMPTS: u16 = 50;

/// Attempts at landing a commit whose coarse levels are refreshed after each rebase.
pub(crate) const ATTEMPTS: u16 = 50;

/// Commit a session that records `tiles`: the coarse levels of those tiles are refreshed
/// first, and again after every rebase over concurrent commits, so the commit that lands
/// holds coarse chunks computed from everything the branch holds. Without coarse levels (or
/// tiles) this is a plain commit.
pub(crate) async fn commit_refreshing(
    cube: &Cube,
    session: &mut Session,
    tiles: &WrittenTiles,
    message: &str,
    properties: SnapshotProperties,
) -> Result<SnapshotId, CubeError> {
    commit_guarded(cube, session, tiles, message, properties, None).await
}

/// [`commit_refreshing`], and with `merge_of` (a plan's id) the commit never lands over
/// another merge commit of that plan: when the branch moved since the session's snapshot,
/// the commits since are read first, and a merge of the plan among them stops this commit
/// ([`CubeError::MergedConcurrently`]). The check and the landing are one step: the commit
/// is made without rebase (conditional on the branch tip) and tried again after a check
/// when the branch moved.
pub(crate) async fn commit_guarded(
    cube: &Cube,
    session: &mut Session,
    tiles: &WrittenTiles,
    message: &str,
    properties: SnapshotProperties,
    merge_of: Option<&str>,
) -> Result<SnapshotId, CubeError> {
    let coarse = cube.layout.levels().iter().any(|l| l.is_coarse()) && !tiles.is_empty();
    if !coarse && merge_of.is_none() {
        return commit(cube, session, message, properties).await;
    }
    super::steps::reached("chunks-uploaded");
    let _lock = match RefLock::acquire(&cube.location).await {
        Ok(lock) => lock,
        Err(e) => return Err(made_again(cube, e).await),
    };
    ensure_descends(cube, session).await?;
    let solver = BasicConflictSolver::default();
    let no_rebase = steps::disabled(Mechanism::Rebase);
    let no_refresh_after_rebase = steps::disabled(Mechanism::RefreshAfterRebase);
    for _ in 0..ATTEMPTS {
        let base = session.snapshot_id().to_string();
        let mut rebased = false;
        if cube.head().await?.to_string() != base && !no_rebase {
            if let Some(plan) = merge_of {
                let newer = cube.history_until(&base).await?;
                if let Some(c) = newer
                    .iter()
                    .find(|c| c.plan.as_ref().is_some_and(|p| p.merged && p.id == plan))
                {
                    return Err(CubeError::MergedConcurrently {
                        plan: plan.to_string(),
                        commit: c.id.clone(),
                    });
                }
            }
            // Behind the branch: move onto its tip first (a coarse chunk written by an
            // earlier attempt is ours, and is computed again below).
            let rebase = session.rebase(&solver).await.map_err(|e| {
                if matches!(e.kind(), SessionErrorKind::RebaseFailed { .. }) {
                    rebase_refused(cube, e)
                } else {
                    CubeError::icechunk("rebasing over a concurrent commit", e)
                }
            });
            if let Err(e) = rebase {
                return Err(made_again(cube, e).await);
            }
            rebased = true;
        }
        if coarse && !(rebased && no_refresh_after_rebase) {
            refresh_coarse(session, &cube.layout, tiles).await?;
        }
        match session
            .commit(message)
            .properties(properties.clone())
            .execute()
            .await
        {
            Ok(id) => return Ok(id),
            Err(e) if matches!(e.kind(), SessionErrorKind::Conflict { .. }) => continue,
            Err(e) => return Err(CubeError::icechunk("committing", e)),
        }
    }
    Err(CubeError::BranchKeptMoving {
        branch: cube.branch.clone(),
        attempts: ATTEMPTS,
    })
}

/// Commit a session to the cube's branch, rebasing over concurrent commits when they
/// touched other chunks. The reference lock is held throughout, so commits from other
/// processes are seen and rebased over, never overwritten.
pub(crate) async fn commit(
    cube: &Cube,
    session: &mut Session,
    message: &str,
    properties: SnapshotProperties,
) -> Result<SnapshotId, CubeError> {
    super::steps::reached("chunks-uploaded");
    let _lock = match RefLock::acquire(&cube.location).await {
        Ok(lock) => lock,
        Err(e) => return Err(made_again(cube, e).await),
    };
    ensure_descends(cube, session).await?;
    let solver = BasicConflictSolver::default();
    let attempts = if steps::disabled(Mechanism::Rebase) {
        0
    } else {
        REBASE_ATTEMPTS
    };
    match session
        .commit(message)
        .properties(properties)
        .rebase(&solver, attempts)
        .execute()
        .await
    {
        Ok(id) => Ok(id),
        Err(e) => Err(made_again(cube, rebase_refused(cube, e)).await),
    }
}

/// A commit refused because the arrays changed under it is told apart when the change was
/// an `init --force` laying out a new cube at the branch (its identity, `cube_id`, differs);
/// any refusal is told as the repository's removal when storage no longer holds it.
async fn made_again(cube: &Cube, e: CubeError) -> CubeError {
    // Any refusal, when the repository itself is gone from storage, is told as that.
    if cube.repository_gone().await {
        return CubeError::RepositoryGone {
            location: cube.location.to_string(),
        };
    }
    if !matches!(e, CubeError::ArraysChangedUnder { .. }) || cube.layout.cube_id.is_empty() {
        return e;
    }
    match Cube::open(cube.location.clone(), &cube.branch).await {
        Ok(now) if now.layout.cube_id != cube.layout.cube_id => CubeError::CubeMadeAgain {
            location: cube.location.to_string(),
            branch: cube.branch.clone(),
        },
        _ => e,
    }
}

/// Refuse to land a session on a branch that no longer descends from the snapshot it opened
/// on: the repository was deleted and made again at its place, or the branch was reset, or
/// an expire dropped that snapshot from its history. A rebase onto such a branch would land a
/// commit recording tiles whose chunks it does not hold. The check reads the commits since
/// the session's base (none when the branch did not move); under the reference lock.
async fn ensure_descends(cube: &Cube, session: &Session) -> Result<(), CubeError> {
    let base = session.snapshot_id().to_string();
    // A read that fails here (the storage failing) is left to the commit, which meets the
    // same storage and says so in its own words, with its retries.
    let Ok(head) = cube.head().await else {
        return Ok(());
    };
    if head.to_string() == base {
        return Ok(());
    }
    let Ok((_, found)) = cube.ancestry_until(&base).await else {
        return Ok(());
    };
    if found {
        Ok(())
    } else {
        Err(CubeError::BaseGone {
            location: cube.location.to_string(),
            branch: cube.branch.clone(),
            base,
        })
    }
}

/// A commit's error, told apart when Icechunk could not rebase it over the branch.
fn rebase_refused(cube: &Cube, e: icechunk::session::SessionError) -> CubeError {
    if matches!(e.kind(), SessionErrorKind::RebaseFailed { .. }) {
        CubeError::ArraysChangedUnder {
            branch: cube.branch.clone(),
            source: Box::new(e),
        }
    } else {
        CubeError::icechunk("committing", e)
    }
}

/// Land a commit that changes no chunk or metadata (its snapshot properties are the change:
/// the records `expire` carries forward) only if the branch's tip is still the snapshot the
/// session opened on: [`commit_at_tip`] of an empty session.
pub(crate) async fn commit_empty_at_tip(
    cube: &Cube,
    session: &mut Session,
    message: &str,
    properties: SnapshotProperties,
) -> Result<Option<SnapshotId>, CubeError> {
    land_at_tip(cube, session, message, properties, true).await
}

/// Amend the branch's tip commit with a session opened on it: the tip is replaced by one
/// holding its changes and the session's, so the branch gains no commit. Needs spec 2.
/// Under the reference lock; fails if the tip moved since the session opened.
pub(crate) async fn amend(
    cube: &Cube,
    session: &mut Session,
    message: &str,
    properties: SnapshotProperties,
) -> Result<SnapshotId, CubeError> {
    super::steps::reached("chunks-uploaded");
    let _lock = RefLock::acquire(&cube.location).await?;
    session
        .commit(message)
        .properties(properties)
        .amend()
        .execute()
        .await
        .map_err(|e| CubeError::icechunk("amending the merge commit", e))
}

/// Land a session's changes only if the branch's tip is still the snapshot the session
/// opened on: under the reference lock, without rebase (the changes were decided from that
/// snapshot, as `repair`'s are). `Ok(None)` when the branch moved meanwhile: the caller reads
/// the branch again and makes its commit anew.
pub(crate) async fn commit_at_tip(
    cube: &Cube,
    session: &mut Session,
    message: &str,
    properties: SnapshotProperties,
) -> Result<Option<SnapshotId>, CubeError> {
    land_at_tip(cube, session, message, properties, false).await
}

async fn land_at_tip(
    cube: &Cube,
    session: &mut Session,
    message: &str,
    properties: SnapshotProperties,
    allow_empty: bool,
) -> Result<Option<SnapshotId>, CubeError> {
    let _lock = RefLock::acquire(&cube.location).await?;
    match session
        .commit(message)
        .properties(properties)
        .allow_empty(allow_empty)
        .execute()
        .await
    {
        Ok(id) => Ok(Some(id)),
        Err(e) if matches!(e.kind(), SessionErrorKind::Conflict { .. }) => Ok(None),
        Err(e) => Err(CubeError::icechunk("committing", e)),
    }
}
