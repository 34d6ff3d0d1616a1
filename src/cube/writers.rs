//! Running writers, announced in the repository itself, so that maintenance run from any
//! machine (gc, expire, extend, repair) sees them: the repository is shared by processes that
//! see nothing of each other.
//!
//! A write announces itself before it uploads anything, as one small object
//! `tilecube-writers/{id}.json` in the repository's storage (S3, GCS or a local directory
//! alike), and refreshes it every [`HEARTBEAT`]; it removes it when it ends. A staged shard
//! of a scale-out plan leaves its announcement (kind `staged`) behind when its process ends:
//! its uploads wait for the plan's merge, which removes it.
//!
//! Invariants:
//! - an announcement's `started` is no later than the creation of any object the writer may
//!   still commit: `gc` deletes nothing created after the oldest live announcement's
//!   `started` (it refuses an age that would), so a write running now, or staged and not yet
//!   merged, never loses an upload;
//! - a write announcement whose heartbeat is older than [`LAPSE`] belongs to a writer that
//!   died (or was stopped): it no longer holds anything back; a writer that could not refresh
//!   its announcement for longer than [`SELF_LAPSE`] (less than [`LAPSE`]) knows that a gc may
//!   have taken it for dead, and lands none of the tiles it uploaded before ([`Announced::lapsed`]);
//! - a staged announcement lives until its plan's merge, or [`STAGED_KEEP`] after it was
//!   staged (a plan abandoned on a cluster holds nothing back for ever);
//! - an announcement holds the host, process id, branch and what is written, never a
//!   credential.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::{Cube, CubeError};

/// Where the announcements live, under the repository's root.
pub const WRITERS_PREFIX: &str = "tilecube-writers";

/// How often a running writer refreshes its announcement.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// A write announcement not refreshed for this long belongs to a writer that is gone.
pub const LAPSE: Duration = Duration::from_secs(60);

/// A writer that could not refresh its announcement for this long lands nothing it
/// uploaded before: a gc elsewhere may have seen it as gone (a margin of [`LAPSE`] less this
/// for the clocks of two machines).
pub const SELF_LAPSE: Duration = Duration::from_secs(40);

/// How long a staged shard's announcement holds its uploads back without a merge.
pub const STAGED_KEEP: Duration = Duration::from_secs(14 * 86_400);

/// What kind of writer an announcement stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriterKind {
    /// A process writing now (headless, detached, the console's, a shard's).
    Write,
    /// A scale-out shard's uploads, staged and waiting for the plan's merge.
    Staged,
}

/// One announcement, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub id: String,
    pub kind: WriterKind,
    pub host: String,
    pub pid: u32,
    pub branch: String,
    /// No object the writer may still commit was created before this.
    pub started: DateTime<Utc>,
    /// The last refresh (for `staged`: when it was staged).
    pub heartbeat: DateTime<Utc>,
    /// What is written, for people ("write of 12 tiles", "plan P shard 3").
    pub what: String,
    /// The plan of a staged shard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// No later than the flush of the snapshot the writer's next commit starts from: `expire`
    /// keeps the snapshots flushed since, so the commit still descends from its base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_time: Option<DateTime<Utc>>,
    /// The writing process's start (clock ticks since boot): on its own host, a write whose
    /// process is gone (or is another process of the same id) is known gone at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
}

impl Announcement {
    /// Whether it still holds back what it announces, at `now`: a write refreshed within
    /// [`LAPSE`] whose process, if it ran on this host, is still there; a staged shard within
    /// [`STAGED_KEEP`].
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        if self.kind == WriterKind::Write
            && self.host == host_name()
            && let Some(start) = self.pid_start
            && crate::ids::process_start(self.pid) != Some(start)
        {
            return false;
        }
        let keep = match self.kind {
            WriterKind::Write => LAPSE,
            WriterKind::Staged => STAGED_KEEP,
        };
        chrono::Duration::from_std(keep)
            .ok()
            .and_then(|k| self.heartbeat.checked_add_signed(k))
            .is_some_and(|until| until > now)
    }

    /// "write of 12 tiles on host (pid 123), started 40 s ago".
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        let ago = |t: DateTime<Utc>| human_age((now - t).to_std().unwrap_or_default());
        match self.kind {
            WriterKind::Write => format!(
                "{} on {} (pid {}, branch {}), started {} ago",
                self.what,
                self.host,
                self.pid,
                self.branch,
                ago(self.started)
            ),
            WriterKind::Staged => format!(
                "{} on {} (branch {}), staged since {} ago and waiting for its merge",
                self.what,
                self.host,
                self.branch,
                ago(self.started)
            ),
        }
    }
}

/// "3 s", "4 min", "2 h", "5 d".
pub fn human_age(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

/// This machine's name, for announcements.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer given.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A fresh announcement id: the time, the process and a counter.
fn new_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        Utc::now().format("%Y%m%dT%H%M%S%.6f"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn object_path(id: &str) -> String {
    format!("{WRITERS_PREFIX}/{id}.json")
}

/// A writer's live announcement: refreshed on a task of its own until [`Announced::end`] (or
/// drop, which stops the refresh and leaves the object to lapse).
pub struct Announced {
    cube: Cube,
    record: Arc<std::sync::Mutex<Announcement>>,
    /// Milliseconds since the epoch of the last successful refresh.
    last_ok: Arc<AtomicI64>,
    /// Set once a refresh came later than [`SELF_LAPSE`]: the writer may have been taken
    /// for gone.
    lapsed: Arc<AtomicBool>,
    /// Set once a refresh found the repository gone from storage (removed under the write):
    /// the refresh stops writing there.
    gone: Arc<AtomicBool>,
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Announced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Announced")
            .field("record", &self.record)
            .finish()
    }
}

impl Announced {
    /// The announcement's id.
    pub fn id(&self) -> String {
        self.record.lock().map(|r| r.id.clone()).unwrap_or_default()
    }

    /// Whether the announcement went without a refresh for longer than [`SELF_LAPSE`] at
    /// some point (or does now): what was uploaded before may be gone.
    pub fn lapsed(&self) -> bool {
        let since = Utc::now().timestamp_millis() - self.last_ok.load(Ordering::SeqCst);
        if since > SELF_LAPSE.as_millis() as i64 {
            self.lapsed.store(true, Ordering::SeqCst);
        }
        self.lapsed.load(Ordering::SeqCst)
    }

    /// Whether a refresh found the repository removed from storage under the writer.
    pub fn repository_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    /// Seconds since the last refresh that went through.
    pub fn silent_for(&self) -> Duration {
        let ms = Utc::now().timestamp_millis() - self.last_ok.load(Ordering::SeqCst);
        Duration::from_millis(ms.max(0) as u64)
    }

    /// After a lapse the writer starts over: nothing uploaded before is committed, and the
    /// announcement starts again now.
    pub async fn restart(&self) -> Result<(), CubeError> {
        let now = Utc::now();
        let record = {
            let mut r = self
                .record
                .lock()
                .map_err(|_| CubeError::Panicked("writer announcement"))?;
            r.started = now;
            r.heartbeat = now;
            r.clone()
        };
        put(&self.cube, &record).await?;
        self.last_ok.store(now.timestamp_millis(), Ordering::SeqCst);
        self.lapsed.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// The writer's next commit starts from a snapshot flushed no earlier than `time`.
    pub fn set_base_time(&self, time: DateTime<Utc>) {
        if let Ok(mut r) = self.record.lock() {
            r.base_time = Some(time);
        }
    }

    /// End the announcement: the writer committed or gave up everything it uploaded.
    pub async fn end(mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        let id = self.id();
        if self.repository_gone() {
            return;
        }
        if let Err(e) = remove(&self.cube, &id).await {
            crate::notice::notice(&format!(
                "warning: removing the announcement of this write ({}) failed: {}; it lapses in {} s",
                object_path(&id),
                crate::error_chain(&e),
                LAPSE.as_secs()
            ));
        }
    }

    /// Turn a write's announcement into a staged one, kept until the merge of `plan`: the
    /// refresh stops, the object stays.
    pub async fn stage(mut self, plan: &str, what: &str) -> Result<(), CubeError> {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
        let record = {
            let mut r = self
                .record
                .lock()
                .map_err(|_| CubeError::Panicked("writer announcement"))?;
            r.kind = WriterKind::Staged;
            r.plan = Some(plan.to_string());
            r.what = what.to_string();
            r.heartbeat = Utc::now();
            r.clone()
        };
        put(&self.cube, &record).await
    }
}

impl Drop for Announced {
    fn drop(&mut self) {
        if let Some(r) = self.refresher.take() {
            r.abort();
        }
    }
}

async fn put(cube: &Cube, record: &Announcement) -> Result<(), CubeError> {
    let bytes =
        serde_json::to_vec_pretty(record).map_err(|source| CubeError::Announcement { source })?;
    let storage = cube.repo.storage();
    let ctx = cube.repo.storage_context();
    storage
        .put_object(
            &ctx,
            &object_path(&record.id),
            Bytes::from(bytes),
            Some("application/json"),
            Vec::new(),
            None,
        )
        .await
        .map_err(|e| {
            CubeError::icechunk(
                format!("writing the announcement {}", object_path(&record.id)),
                e,
            )
        })?;
    Ok(())
}

async fn remove(cube: &Cube, id: &str) -> Result<(), CubeError> {
    let storage = cube.repo.storage();
    let ctx = cube.repo.storage_context();
    storage
        .delete_batch(&ctx, WRITERS_PREFIX, vec![(format!("{id}.json"), 0)])
        .await
        .map_err(|e| CubeError::icechunk(format!("removing {}", object_path(id)), e))?;
    Ok(())
}

impl Cube {
    /// Whether the repository is gone from storage (removed under this process): a local
    /// directory that is not there, or a storage that says it holds no repository. A
    /// lookup that fails says nothing (false).
    pub(crate) async fn repository_gone(&self) -> bool {
        if let super::RepoLocation::Local(dir) = &self.location
            && !dir.exists()
        {
            return true;
        }
        matches!(
            icechunk::Repository::exists(self.repo.storage().clone(), None).await,
            Ok(false)
        )
    }

    /// Announce a writer of this cube's branch (`what`: for people) and keep the
    /// announcement fresh until it ends.
    pub async fn announce_writer(
        &self,
        what: &str,
        base_time: Option<DateTime<Utc>>,
    ) -> Result<Announced, CubeError> {
        let now = Utc::now();
        let record = Announcement {
            id: new_id(),
            kind: WriterKind::Write,
            host: host_name(),
            pid: std::process::id(),
            branch: self.branch.clone(),
            started: now,
            heartbeat: now,
            what: what.to_string(),
            plan: None,
            base_time,
            pid_start: crate::ids::process_start(std::process::id()),
        };
        put(self, &record).await?;
        let last_ok = Arc::new(AtomicI64::new(now.timestamp_millis()));
        let lapsed = Arc::new(AtomicBool::new(false));
        let gone = Arc::new(AtomicBool::new(false));
        let record = Arc::new(std::sync::Mutex::new(record));
        let refresher = {
            let (cube, last_ok, lapsed, gone, record) = (
                self.clone(),
                Arc::clone(&last_ok),
                Arc::clone(&lapsed),
                Arc::clone(&gone),
                Arc::clone(&record),
            );
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(HEARTBEAT);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let now = Utc::now();
                    if now.timestamp_millis() - last_ok.load(Ordering::SeqCst)
                        > SELF_LAPSE.as_millis() as i64
                    {
                        lapsed.store(true, Ordering::SeqCst);
                    }
                    // A repository removed under the writer (`rm -rf`, a deleted prefix):
                    // said once, and nothing written there again (a refresh would make its
                    // directory again). A lookup that fails is left to the refresh below.
                    if cube.repository_gone().await {
                        gone.store(true, Ordering::SeqCst);
                        return;
                    }
                    let Ok(current) = record.lock().map(|mut r| {
                        r.heartbeat = now;
                        r.clone()
                    }) else {
                        return;
                    };
                    match put(&cube, &current).await {
                        Ok(()) => last_ok.store(now.timestamp_millis(), Ordering::SeqCst),
                        Err(e) => crate::notice::notice(&format!(
                            "warning: refreshing this write's announcement in the repository failed ({}); it is tried again in {} s",
                            crate::error_chain(&e),
                            HEARTBEAT.as_secs()
                        )),
                    }
                }
            })
        };
        Ok(Announced {
            cube: self.clone(),
            record,
            last_ok,
            lapsed,
            gone,
            refresher: Some(refresher),
        })
    }

    /// Every announcement in the repository, live or not (one listing and a read each).
    /// An object that cannot be read as an announcement is skipped with a warning.
    pub async fn writers(&self) -> Result<Vec<Announcement>, CubeError> {
        let storage = self.repo.storage();
        let ctx = self.repo.storage_context();
        let listing = |e| CubeError::icechunk(format!("listing {WRITERS_PREFIX}/"), e);
        let mut names = Vec::new();
        let mut objects = storage
            .list_objects(&ctx, WRITERS_PREFIX)
            .await
            .map_err(listing)?;
        while let Some(info) = objects.try_next().await.map_err(listing)? {
            let id = info.id.rsplit('/').next().unwrap_or(&info.id).to_string();
            if id.ends_with(".json") {
                names.push(id);
            }
        }
        drop(objects);
        let mut out = Vec::new();
        for name in names {
            let path = format!("{WRITERS_PREFIX}/{name}");
            let read = async {
                let (stream, _) = storage.get_object_range(&ctx, &path, None).await?;
                let parts: Vec<Bytes> = stream.try_collect().await?;
                Ok::<_, icechunk::storage::StorageError>(parts.concat())
            };
            match read.await {
                Ok(bytes) => match serde_json::from_slice::<Announcement>(&bytes) {
                    Ok(a) => out.push(a),
                    Err(e) => log::warn!("{path} is not a writer announcement: {e}; ignored"),
                },
                // Removed between the listing and the read: its writer ended.
                Err(e)
                    if matches!(
                        e.kind(),
                        icechunk::storage::StorageErrorKind::ObjectNotFound
                    ) => {}
                Err(e) => return Err(CubeError::icechunk(format!("reading {path}"), e)),
            }
        }
        out.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The announcements that hold something back now.
    pub async fn live_writers(&self) -> Result<Vec<Announcement>, CubeError> {
        let now = Utc::now();
        Ok(self
            .writers()
            .await?
            .into_iter()
            .filter(|a| a.is_live(now))
            .collect())
    }

    /// Remove the staged announcements of `plan` (its merge landed, or it was dropped).
    pub async fn end_staged(&self, plan: &str) -> Result<usize, CubeError> {
        let mut n = 0;
        for a in self.writers().await? {
            if a.kind == WriterKind::Staged && a.plan.as_deref() == Some(plan) {
                remove(self, &a.id).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Remove the write announcements that lapsed (their writers are gone); staged ones stay.
    pub async fn clear_lapsed_writers(&self) -> Result<usize, CubeError> {
        let now = Utc::now();
        let mut n = 0;
        for a in self.writers().await? {
            if !a.is_live(now) {
                remove(self, &a.id).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(kind: WriterKind, heartbeat_ago: i64) -> Announcement {
        ann_at(Utc::now(), kind, heartbeat_ago)
    }

    fn ann_at(now: DateTime<Utc>, kind: WriterKind, heartbeat_ago: i64) -> Announcement {
        Announcement {
            id: "x".into(),
            kind,
            host: "h".into(),
            pid: 1,
            branch: "main".into(),
            started: now - chrono::Duration::seconds(heartbeat_ago + 5),
            heartbeat: now - chrono::Duration::seconds(heartbeat_ago),
            what: "write of 1 tile".into(),
            plan: None,
            base_time: None,
            pid_start: None,
        }
    }

    #[test]
    fn a_write_lapses_after_a_minute_without_refresh_and_a_staged_shard_holds_for_days() {
        let now = Utc::now();
        assert!(ann(WriterKind::Write, 5).is_live(now));
        assert!(!ann(WriterKind::Write, 61).is_live(now));
        assert!(ann(WriterKind::Staged, 3 * 86_400).is_live(now));
        assert!(!ann(WriterKind::Staged, 15 * 86_400).is_live(now));
        assert!(SELF_LAPSE < LAPSE && HEARTBEAT * 3 < SELF_LAPSE);
    }

    #[test]
    fn an_announcement_says_who_and_since_when() {
        let now = Utc::now();
        let d = ann_at(now, WriterKind::Write, 1).describe(now);
        assert!(
            d.contains("write of 1 tile on h (pid 1, branch main), started 6 s ago"),
            "{d}"
        );
        let ids: std::collections::HashSet<String> = (0..100).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 100, "ids are unique within a process");
        assert_eq!(human_age(Duration::from_secs(7200)), "2 h");
    }
}
