//! The write session: the writable Icechunk session of a cube, the tiles recorded in it since
//! its last commit, and the one path by which they are committed.
//!
//! Invariants:
//! - a tile's chunks are recorded (referenced) only all at once, by [`WriteSession::record_tile`],
//!   after every one of them was uploaded: a tile is never half in the session;
//! - tiles are noted as pending under the session's write lock, and [`WriteSession::commit`]
//!   takes them under the same lock, so every commit — a checkpoint, the operator's, one on a
//!   signal — records exactly the tiles it holds, whoever triggers it;
//! - a failed commit puts its tiles back as pending; a successful one continues on a fresh
//!   session at the new head;
//! - a commit refreshes the coarse overview levels of the tiles it records right before it
//!   lands (and after any rebase), so every level it holds follows from level 0;
//! - a staged session ([`WriteSession::open_staged`]) never touches the branch: its
//!   "commit" hands the session's changes and their tiles to a [`Stager`] and continues on
//!   an empty change set, so only `merge` moves the branch;
//! - a commit records, next to each of its tiles, what the tile was read from (its source's
//!   size and version, [`Provenance`]) when that was known.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use icechunk::format::Path;
use icechunk::format::snapshot::SnapshotProperties;
use icechunk::session::Session;
use serde_json::Value;
use tokio::sync::RwLock;

use super::history::{WrittenTiles, commit_message, written_properties_with};
use super::writer::{PreparedUpload, TileChunks, prepare_upload};
use super::{Cube, CubeError, LayoutError};
use crate::grid::TileName;
use crate::source::Provenance;

/// A commit that landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub snapshot: String,
    pub message: String,
    /// The tiles it recorded.
    pub written: WrittenTiles,
    /// Whether the tiles were staged (`snapshot` names the staged part) rather than
    /// committed to the branch.
    pub staged: bool,
}

impl Committed {
    /// Number of tiles the commit recorded.
    pub fn tile_count(&self) -> usize {
        self.written.values().map(|t| t.len()).sum()
    }
}

/// Where a staged session's changes go instead of the branch: the scale-out stage.
pub trait Stager: Send + Sync {
    /// Keep a session's serialized changes (`Session::as_bytes`), which hold `written`;
    /// returns a name for what was kept.
    fn save<'a>(
        &'a self,
        session: Vec<u8>,
        written: &'a WrittenTiles,
    ) -> BoxFuture<'a, Result<String, CubeError>>;
}

/// A writable session of a cube's branch and its uncommitted tiles.
pub struct WriteSession {
    cube: Cube,
    /// The data variable of each level: 0 the cube itself, `k` the `k`th overview.
    paths: Vec<Path>,
    session: RwLock<Session>,
    pending: std::sync::Mutex<WrittenTiles>,
    /// Chunk references (set or removed) held by the session since its last commit.
    pending_refs: AtomicU64,
    /// Recorded with every commit next to the tiles (e.g. the plan and shard).
    tags: serde_json::Map<String, Value>,
    /// Set: the session is a fork that stages instead of committing.
    stager: Option<Arc<dyn Stager>>,
    /// The message of every commit this session makes, when the operator gave one (else a
    /// commit's message names its tiles).
    message: std::sync::OnceLock<String>,
    /// What each pending tile was read from, recorded with it at its commit.
    sources: std::sync::Mutex<std::collections::BTreeMap<(i32, TileName), Provenance>>,
    /// This writer's announcement in the repository ([`super::writers`]), until
    /// [`WriteSession::close`].
    announced: std::sync::Mutex<Option<Arc<super::writers::Announced>>>,
}

impl WriteSession {
    /// A session at the branch head with nothing pending.
    pub async fn open(cube: &Cube) -> Result<Arc<Self>, CubeError> {
        let session = cube.writable_session().await?;
        Self::new(cube, session, serde_json::Map::new(), None)
            .await
            .map(Arc::new)
    }

    async fn new(
        cube: &Cube,
        session: Session,
        tags: serde_json::Map<String, Value>,
        stager: Option<Arc<dyn Stager>>,
    ) -> Result<Self, CubeError> {
        // Announced before anything is uploaded: gc, expire and extend see this writer.
        let base_time = match stager {
            Some(_) => None,
            None => cube
                .commit_of(&session.snapshot_id().to_string())
                .await
                .ok()
                .map(|c| c.time),
        };
        let what = if stager.is_some() {
            "staged write"
        } else {
            "write"
        };
        let announced = cube.announce_writer(what, base_time).await?;
        let paths = (0..=cube.layout.levels().len())
            .map(|k| {
                let level = cube.layout.level_path(k);
                Path::new(&level).map_err(LayoutError::node_path(&level, Some("variable path")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            cube: cube.clone(),
            paths,
            session: RwLock::new(session),
            pending: std::sync::Mutex::new(WrittenTiles::new()),
            pending_refs: AtomicU64::new(0),
            tags,
            stager,
            message: std::sync::OnceLock::new(),
            sources: std::sync::Mutex::new(Default::default()),
            announced: std::sync::Mutex::new(Some(Arc::new(announced))),
        })
    }

    /// This writer's announcement, while it has one.
    fn announced(&self) -> Option<Arc<super::writers::Announced>> {
        self.announced.lock().ok().and_then(|a| a.clone())
    }

    /// The repository was removed from storage under this write (its announcement's refresh
    /// found it gone): the error that stops the write, or `None`.
    pub async fn repository_gone(&self) -> Option<CubeError> {
        // A local repository is looked at each time (a file or two read): the write stops
        // within a tile; a remote one at its announcement's refresh.
        let gone = if self.cube().location.is_local_path() {
            self.cube().repository_gone().await
        } else {
            self.announced().is_some_and(|a| a.repository_gone())
        };
        gone.then(|| CubeError::RepositoryGone {
            location: self.cube().location.to_string(),
        })
    }

    /// The writer is done: its announcement is removed (what it did not commit is no longer
    /// held back from `gc`). Later commits of this session are refused.
    pub async fn close(&self) {
        let taken = self.announced.lock().ok().and_then(|mut a| a.take());
        if let Some(a) = taken.and_then(|a| Arc::try_unwrap(a).ok()) {
            a.end().await;
        }
    }

    /// A staged shard is done: its announcement stays, as `staged` for `plan`, until the
    /// plan's merge removes it ([`Cube::end_staged`]), so `gc` keeps what it staged.
    pub async fn close_staged(&self, plan: &str, what: &str) -> Result<(), CubeError> {
        let taken = self.announced.lock().ok().and_then(|mut a| a.take());
        match taken.and_then(|a| Arc::try_unwrap(a).ok()) {
            Some(a) => a.stage(plan, what).await,
            None => Ok(()),
        }
    }

    /// Give every commit of this session `message` (its tiles stay recorded in its
    /// properties, as always). Set once; a later call is ignored.
    pub fn set_message(&self, message: &str) {
        let _ = self.message.set(message.to_string());
    }

    /// Like [`WriteSession::open`], with `tags` recorded in every commit's properties.
    pub async fn open_tagged(
        cube: &Cube,
        tags: serde_json::Map<String, Value>,
    ) -> Result<Arc<Self>, CubeError> {
        let session = cube.writable_session().await?;
        Self::new(cube, session, tags, None).await.map(Arc::new)
    }

    /// A fork of the branch head that never commits: each checkpoint hands its changes to
    /// `stager` (see [`Stager`]) and the fork continues with an empty change set.
    pub async fn open_staged(cube: &Cube, stager: Arc<dyn Stager>) -> Result<Arc<Self>, CubeError> {
        let fork = cube
            .writable_session()
            .await?
            .fork()
            .await
            .map_err(|e| CubeError::icechunk("forking a session to stage", e))?;
        Self::new(cube, fork, serde_json::Map::new(), Some(stager))
            .await
            .map(Arc::new)
    }

    /// Whether this session stages instead of committing.
    pub fn is_staged(&self) -> bool {
        self.stager.is_some()
    }

    /// The cube this session writes.
    pub fn cube(&self) -> &Cube {
        &self.cube
    }

    /// Tiles written and not yet committed.
    pub fn pending(&self) -> WrittenTiles {
        self.pending.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Give up the tiles waiting for a commit (their commit failed for good): they are no
    /// longer pending, and the session's changes are dropped, so no later commit of it
    /// references their chunks.
    pub async fn take_pending(&self) -> WrittenTiles {
        let mut s = self.session.write().await;
        if let Err(e) = s.discard_changes() {
            log::warn!("dropping a session's changes: {e}");
        }
        self.pending_refs.store(0, Ordering::SeqCst);
        if let Ok(mut sources) = self.sources.lock() {
            sources.clear();
        }
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    /// Chunk references the session holds since its last commit: what its memory grows with.
    pub fn pending_refs(&self) -> u64 {
        self.pending_refs.load(Ordering::SeqCst)
    }

    /// Whether tiles wait for a commit.
    pub fn has_pending(&self) -> bool {
        self.pending.lock().map(|p| !p.is_empty()).unwrap_or(false)
    }

    /// Prepare the upload of one chunk of level `level`'s data variable (0: the cube
    /// itself); the session is held only for this short step, so uploads run side by side.
    pub async fn prepare_upload(
        &self,
        level: usize,
        coords: [u64; 3],
    ) -> Result<PreparedUpload, CubeError> {
        let path = self
            .paths
            .get(level)
            .ok_or(LayoutError::NoLevel { level })?;
        let guard = self.session.read().await;
        prepare_upload(&guard, path, coords)
    }

    /// Record every chunk of an uploaded tile in the session and note the tile as pending.
    /// Returns the number of chunks that hold data.
    pub async fn record_tile(
        &self,
        year: i32,
        tile: TileName,
        chunks: TileChunks,
        provenance: Option<Provenance>,
    ) -> Result<u64, CubeError> {
        let stored = chunks.stored() as u64;
        let refs = chunks.len() as u64;
        let mut s = self.session.write().await;
        chunks.record(&mut s, &self.paths).await?;
        self.pending_refs.fetch_add(refs, Ordering::SeqCst);
        if let Ok(mut p) = self.pending.lock() {
            p.entry(year).or_default().insert(tile, stored);
        }
        if let Ok(mut sources) = self.sources.lock() {
            match provenance {
                Some(p) => sources.insert((year, tile), p),
                None => sources.remove(&(year, tile)),
            };
        }
        Ok(stored)
    }

    /// A read-only copy of the session as it is now (uncommitted tiles included).
    pub async fn snapshot(&self) -> Session {
        self.session.read().await.clone()
    }

    /// Commit the pending tiles (the message names them unless one is given; the snapshot
    /// properties record them), then continue on a fresh session at the new head. `None`
    /// when nothing was pending.
    pub async fn commit(&self, message: Option<&str>) -> Result<Option<Committed>, CubeError> {
        let mut s = self.session.write().await;
        let written = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        if written.is_empty() {
            return Ok(None);
        }
        // A writer whose announcement lapsed may have been taken for gone by a gc, which
        // then removed what it uploaded: nothing of it is committed (or staged).
        let announced = self.announced();
        if let Some(e) = self.repository_gone().await {
            if let Ok(mut p) = self.pending.lock() {
                for (year, tiles) in written {
                    p.entry(year).or_default().extend(tiles);
                }
            }
            return Err(e);
        }
        if let Some(a) = &announced
            && a.lapsed()
        {
            let secs = a
                .silent_for()
                .as_secs()
                .max(super::writers::SELF_LAPSE.as_secs());
            if let Ok(mut p) = self.pending.lock() {
                for (year, tiles) in written {
                    p.entry(year).or_default().extend(tiles);
                }
            }
            return Err(CubeError::WriterLapsed { secs });
        }
        let commit_started = chrono::Utc::now();
        let refs = self.pending_refs.swap(0, Ordering::SeqCst);
        let message = message
            .map(str::to_string)
            .or_else(|| self.message.get().cloned())
            .unwrap_or_else(|| commit_message(&written));
        let landed = match &self.stager {
            Some(stager) => match s.as_bytes() {
                Ok(bytes) => stager.save(bytes, &written).await,
                Err(e) => Err(CubeError::icechunk("serializing a staged session", e)),
            },
            None => {
                // A commit that fails may leave the session part-way (a rebase takes the
                // change set out while it works): on failure the session is put back as it
                // was, so its tiles' chunks are still referenced at the next commit.
                let before = s.clone();
                let mut props = written_properties_with(&written, &self.tags);
                if let Ok(sources) = self.sources.lock() {
                    add_sources(&mut props, &written, &sources);
                }
                let landed =
                    super::commit::commit_refreshing(&self.cube, &mut s, &written, &message, props)
                        .await
                        .map(|id| id.to_string());
                if landed.is_err() {
                    *s = before;
                }
                landed
            }
        };
        let id = match landed {
            Ok(id) => id,
            Err(e) => {
                self.pending_refs.fetch_add(refs, Ordering::SeqCst);
                if let Ok(mut p) = self.pending.lock() {
                    for (year, tiles) in written {
                        p.entry(year).or_default().extend(tiles);
                    }
                }
                return Err(e);
            }
        };
        if let Ok(mut sources) = self.sources.lock() {
            sources.retain(|(y, t), _| !written.get(y).is_some_and(|w| w.contains_key(t)));
        }
        if self.stager.is_some() {
            s.discard_changes()
                .map_err(|e| CubeError::icechunk("emptying a staged session", e))?;
        } else {
            *s = self.cube.writable_session().await?;
            if let Some(a) = &announced {
                a.set_base_time(commit_started);
            }
        }
        Ok(Some(Committed {
            staged: self.stager.is_some(),
            snapshot: id,
            message,
            written,
        }))
    }
}

/// Put what the committed tiles were read from in a commit's properties, next to the
/// tiles: `tilecube.sources: {year: {tile: "size/version"}}` (tiles whose source was not
/// known have none).
fn add_sources(
    props: &mut SnapshotProperties,
    written: &WrittenTiles,
    sources: &std::collections::BTreeMap<(i32, TileName), Provenance>,
) {
    let mut by_year = serde_json::Map::new();
    for (year, tiles) in written {
        let of_year: serde_json::Map<String, Value> = tiles
            .keys()
            .filter_map(|t| {
                sources
                    .get(&(*year, *t))
                    .map(|p| (t.to_string(), Value::String(p.to_record())))
            })
            .collect();
        if !of_year.is_empty() {
            by_year.insert(year.to_string(), Value::Object(of_year));
        }
    }
    if by_year.is_empty() {
        return;
    }
    if let Some(Value::Object(ours)) = props.get_mut(super::layout::props_key()) {
        ours.insert("sources".into(), Value::Object(by_year));
    }
}
