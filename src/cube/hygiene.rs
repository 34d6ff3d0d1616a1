//! Storage hygiene with Icechunk's own machinery: `gc` deletes the objects no branch or tag
//! reaches ([`icechunk::ops::gc::garbage_collect`]), `expire` drops old snapshots from the
//! history ([`icechunk::ops::gc::expire`]) after carrying their records forward.
//!
//! Invariants:
//! - nothing younger than the age given is ever deleted: chunks, manifests, snapshots and
//!   transaction logs a write is making now are newer than that, so a write running at the
//!   same time loses nothing (only `--older-than 0s`, for a quiet repository, lifts this);
//! - what a branch or tag reaches is never deleted, so every reachable snapshot reads as
//!   before and `verify` stays clean; Icechunk deletes a kind of object only after the kind
//!   that references it (snapshots, transaction logs, manifests, chunks), so an interrupted
//!   run leaves garbage, never a dangling reference;
//! - `expire` keeps every ref: no branch or tag is deleted, a tagged snapshot and a branch's
//!   head are never expired;
//! - the tiles the cube holds, as `status`, coverage and the console derive them from the
//!   ancestry's records (`tilecube.written`), are the same after `expire`: before Icechunk's
//!   expiry, each branch whose expiry would drop a record (or its layout commit) gains one
//!   commit, landed conditionally on the branch's tip under the reference lock, that carries
//!   those records (`tilecube.carried`, each with the snapshot that wrote the tile, and the
//!   tiles' sources, `tilecube.sources`); the records then count as that commit's, so every
//!   snapshot `status` and the console name for a tile is in the history; when the layout
//!   commit goes, that commit carries the layout marker and with it every record, so the record
//!   still starts where it should;
//! - every change of a branch or of the repository's refs and snapshot list is made under the
//!   reference lock ([`RefLock`]), as commits are;
//! - memory is bounded whatever the repository's history: see [`gc_limits`].

use std::collections::{BTreeMap, HashSet};
use std::num::{NonZeroU16, NonZeroUsize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use icechunk::format::snapshot::SnapshotProperties;
use icechunk::ops::gc::{
    Action, ExpiredRefAction, GCConfig, GCSummary, expire as icechunk_expire, garbage_collect,
};
use icechunk::repository::VersionInfo;
use serde::Serialize;
use serde_json::{Value, json};

use super::commit::{ATTEMPTS, commit_empty_at_tip};
use super::history::{CarriedTiles, Commit};
use super::layout::props_key;
use super::lock::RefLock;
use super::{Cube, CubeError};
use crate::grid::TileName;

/// Objects and bytes of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Removed {
    pub objects: u64,
    pub bytes: u64,
}

/// What `gc` removed (or, in a dry run, would remove), per kind of object.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// The age given, as written (`1d`, `0s`).
    pub older_than: String,
    /// Objects created before this instant could be deleted.
    pub cutoff: DateTime<Utc>,
    pub snapshots: Removed,
    pub transaction_logs: Removed,
    pub manifests: Removed,
    /// Attributes files (spec 1 only; Icechunk 2 writes none). Their bytes, if any, count
    /// with the manifests'.
    pub attributes: Removed,
    pub chunks: Removed,
    /// Objects whose delete failed: still garbage, for the next run.
    pub failed_objects: u64,
    /// The first distinct delete errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub delete_errors: Vec<String>,
    /// Kinds not deleted because an earlier kind's deletes failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// The writes running (or staged and not merged) on the repository, whose uploads the
    /// age given spares.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub writers: Vec<String>,
    /// Announced writes that are gone (killed, or silent past the lapse): not waited for;
    /// a real run removes their announcements.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gone_writers: Vec<String>,
    /// Stopped by the operator before every kind was collected: the figures are what the
    /// passes so far did.
    pub interrupted: bool,
}

impl GcReport {
    /// Objects and bytes of every kind together.
    pub fn total(&self) -> Removed {
        let kinds = [
            self.snapshots,
            self.transaction_logs,
            self.manifests,
            self.attributes,
            self.chunks,
        ];
        Removed {
            objects: kinds.iter().map(|k| k.objects).sum(),
            bytes: kinds.iter().map(|k| k.bytes).sum(),
        }
    }

    /// Whether every delete went through.
    pub fn is_ok(&self) -> bool {
        self.failed_objects == 0 && self.skipped.is_empty() && !self.interrupted
    }
}

/// The commit `expire` landed on a branch to carry records forward.
#[derive(Debug, Clone, Serialize)]
pub struct CarryCommit {
    pub branch: String,
    pub snapshot: String,
    /// Tile records carried.
    pub tiles: usize,
    /// Whether it carries the layout marker (the layout commit was expired).
    pub layout: bool,
}

/// What `expire` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExpireReport {
    /// The age given, as written (`7d`, `0s`).
    pub older_than: String,
    /// Snapshots flushed before this instant were expired (tagged ones and heads kept).
    pub cutoff: DateTime<Utc>,
    /// The commits that carried records forward, one per branch that needed one.
    pub carried: Vec<CarryCommit>,
    /// Snapshots released from the histories (gc then reclaims what no ref reaches), sorted.
    pub released: Vec<String>,
    /// Snapshots re-parented onto the repository's root.
    pub edited: Vec<String>,
    /// The writes running on the repository, and what the expiry kept for them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub writers: Vec<String>,
    /// The cutoff was moved back to this instant so that no running write's base snapshot
    /// is expired (its next commit must still descend from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_for_writers: Option<DateTime<Utc>>,
    /// Stopped by the operator before the expiry itself: only the carry commits listed were
    /// made, nothing was released.
    pub interrupted: bool,
}

/// The memory limits of a garbage collection, chosen so that it stays under 512 MB whatever
/// the repository's size:
/// - at most 8 snapshots in memory at once (a snapshot of a whole global cube of 1,400 tile-years lists ~20 000
///   manifests, ~2 MB);
/// - 32 MiB of compressed manifests in flight and 96 MiB of decoded ones (a manifest holds
///   one tile-year of one level, ≤ 1 600 references, ~100 KB decoded), 16 manifest fetches;
/// - 16 delete requests and 8 listings in flight (deletes stream a listing, a few MB);
/// - above that, Icechunk keeps the set of chunk ids the retained snapshots reference, ~15 to
///   30 bytes an id (a hash set of 12-byte ids): a cube of 1,400 full tile-years with its pyramid
///   (~5.4 M chunks) takes ~120 MB, so the total stays under 512 MB up to ~12 M distinct reachable
///   chunks — the cube and a complete rewrite of it kept in the history. The set follows the
///   history kept, not the objects stored: `expire` first keeps it small.
pub(crate) fn gc_limits(cutoff: DateTime<Utc>, kinds: usize, dry_run: bool) -> GCConfig {
    let n16 = |n: u16| NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN);
    let nsz = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
    // The kinds deleted, in Icechunk's order: snapshots, transaction logs, manifests (with
    // attributes files), chunks.
    let on = |k: usize| {
        if k < kinds {
            Action::DeleteIfCreatedBefore(cutoff)
        } else {
            Action::Keep
        }
    };
    GCConfig::new(
        HashSet::new(),
        on(3),
        on(2),
        on(2),
        on(1),
        on(0),
        n16(8),
        nsz(32 << 20),
        nsz(96 << 20),
        n16(16),
        n16(16),
        n16(10),
        Some(n16(8)),
        dry_run,
    )
}

/// The clocks of two machines may disagree by this much: what a running write may commit
/// is spared from this long before its announcement's start.
pub const CLOCK_MARGIN: Duration = Duration::from_secs(30);

/// Parse an age: a whole number and a unit, `s`, `m`, `h` or `d` (`0s`, `90m`, `12h`, `7d`).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let refused = || {
        format!(
            "{text:?} is not an age: give a whole number and a unit, s, m, h or d (e.g. 0s, 90m, 12h, 7d; at most 100 years)"
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(refused()),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_secs))
        .filter(|s| *s <= 100 * 365 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(refused)
}

/// An age in the largest unit that writes it whole (`90m`, `7d`, `0s`).
pub fn format_age(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The instant `age` before now.
fn cutoff_of(age: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|d| Utc::now().checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// What `expire` must carry on one branch: the records its expiry would drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CarryPlan {
    pub records: CarriedTiles,
    /// The sources the records' commits noted for those tiles (`tilecube.sources`), carried
    /// with them.
    pub sources: BTreeMap<i32, BTreeMap<TileName, String>>,
    /// The layout commit (or a commit that carried the layout marker) goes with the expiry:
    /// its id; the marker is carried, and with it every record.
    pub layout: Option<String>,
}

impl CarryPlan {
    fn tiles(&self) -> usize {
        self.records.values().map(BTreeMap::len).sum()
    }
}

/// What a commit on top of `history` (a branch's ancestry, newest first) must carry for an
/// expiry of every snapshot flushed before `cutoff`, or `None` when the expiry drops no
/// record and not the layout commit. Once that commit lands the ancestry's head is no longer
/// the branch's head, so it goes too if it is old enough; when nothing but the head is old
/// enough, nothing is dropped and nothing is carried.
pub(crate) fn carry_plan(history: &[Commit], cutoff: DateTime<Utc>) -> Option<CarryPlan> {
    // Each tile's newest record, as `recorded_tiles` reads it (with the snapshot that wrote
    // the tile), the source its holder noted, and whether its holder goes.
    type Noted = ((u64, String), Option<String>, bool);
    let mut records: BTreeMap<(i32, TileName), Noted> = BTreeMap::new();
    let mut needed = false;
    let mut layout = None;
    for (i, commit) in history.iter().enumerate() {
        let goes = commit.time < cutoff;
        let mut note = |key: (i32, TileName), record: (u64, String)| {
            if let std::collections::btree_map::Entry::Vacant(e) = records.entry(key) {
                let source = commit.sources.get(&key.0).and_then(|t| t.get(&key.1));
                e.insert((record, source.cloned(), goes));
                needed |= goes && i > 0;
            }
        };
        for (year, tiles) in &commit.written {
            for (tile, n) in tiles {
                note((*year, *tile), (*n, commit.id.clone()));
            }
        }
        for (year, tiles) in &commit.carried {
            for (tile, record) in tiles {
                note((*year, *tile), record.clone());
            }
        }
        if commit.init {
            if goes {
                layout = Some(commit.id.clone());
                needed |= i > 0;
            }
            break;
        }
    }
    if !needed {
        return None;
    }
    let mut carried = CarriedTiles::new();
    let mut sources: BTreeMap<i32, BTreeMap<TileName, String>> = BTreeMap::new();
    for ((year, tile), (record, source, goes)) in records {
        if goes || layout.is_some() {
            carried.entry(year).or_default().insert(tile, record);
            if let Some(source) = source {
                sources.entry(year).or_default().insert(tile, source);
            }
        }
    }
    Some(CarryPlan {
        records: carried,
        sources,
        layout,
    })
}

/// The snapshot properties of a carrying commit.
fn carried_properties(plan: &CarryPlan, age: &str, cutoff: DateTime<Utc>) -> SnapshotProperties {
    let years: serde_json::Map<String, Value> = plan
        .records
        .iter()
        .map(|(year, tiles)| {
            let t: serde_json::Map<String, Value> = tiles
                .iter()
                .map(|(tile, (n, origin))| (tile.to_string(), json!([n, origin])))
                .collect();
            (year.to_string(), Value::Object(t))
        })
        .collect();
    let mut ours = serde_json::Map::new();
    ours.insert("carried".into(), Value::Object(years));
    if !plan.sources.is_empty() {
        ours.insert("sources".into(), json!(plan.sources));
    }
    ours.insert(
        "expire".into(),
        json!({ "older_than": age, "cutoff": cutoff.to_rfc3339() }),
    );
    if let Some(layout) = &plan.layout {
        ours.insert("init".into(), json!({ "carried_from": layout }));
    }
    let mut props = SnapshotProperties::new();
    props.insert(props_key().into(), Value::Object(ours));
    props
}

/// The message of a carrying commit.
fn carry_message(plan: &CarryPlan, age: &str, cutoff: DateTime<Utc>) -> String {
    let n = plan.tiles();
    let s = if n == 1 { "" } else { "s" };
    let marker = if plan.layout.is_some() {
        " and the layout marker"
    } else {
        ""
    };
    format!(
        "carry the records of {n} tile{s}{marker} before expiring snapshots older than {age} (flushed before {})",
        cutoff.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

impl Cube {
    fn hygiene_error(&self, what: &'static str, e: impl Into<super::BoxError>) -> CubeError {
        CubeError::Hygiene {
            what,
            location: self.location.to_string(),
            source: e.into(),
        }
    }

    /// Delete the objects no branch or tag reaches and created more than `older_than` ago
    /// (with `dry_run`, count them and delete nothing), with Icechunk's garbage collection.
    ///
    /// It runs one pass a kind, each deleting that kind and the ones before it in Icechunk's
    /// order (snapshots, transaction logs, manifests, chunks): the report then holds the
    /// bytes of each kind, not only their sum. A real run holds the reference lock
    /// throughout (it rewrites the repository's list of snapshots); a dry run takes none.
    pub async fn garbage_collect(
        &self,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<GcReport, CubeError> {
        self.garbage_collect_until(older_than, dry_run, &AtomicBool::new(false))
            .await
    }

    /// [`Cube::garbage_collect`], stopping after the pass under way once `stop` is set (an
    /// operator's Ctrl-C): the report then holds what the passes so far did, and says so.
    pub async fn garbage_collect_until(
        &self,
        older_than: Duration,
        dry_run: bool,
        stop: &AtomicBool,
    ) -> Result<GcReport, CubeError> {
        let cutoff = cutoff_of(older_than);
        let age = format_age(older_than);
        // What running and staged writes may still commit is newer than their `started`:
        // an age that reaches past it is refused, with the writer named.
        let now = Utc::now();
        let all = self.writers().await?;
        let (live, gone): (Vec<_>, Vec<_>) = all.into_iter().partition(|a| a.is_live(now));
        if !dry_run && let Some(oldest) = live.iter().min_by_key(|a| a.started) {
            let spare =
                oldest.started - chrono::Duration::from_std(CLOCK_MARGIN).unwrap_or_default();
            if cutoff > spare {
                let need = (now - spare).to_std().unwrap_or_default();
                let least = Duration::from_secs(need.as_secs().div_ceil(60).max(1) * 60);
                return Err(CubeError::GcWouldTakeWrites {
                    age,
                    writer: format!(
                        "{} may still commit objects created since {}",
                        oldest.describe(now),
                        oldest.started.format("%Y-%m-%d %H:%M:%S UTC")
                    )
                    .into(),
                    least: format_age(least),
                });
            }
        }
        let writers: Vec<String> = live.iter().map(|a| a.describe(now)).collect();
        let _lock = if dry_run {
            None
        } else {
            Some(RefLock::acquire(&self.location).await?)
        };
        let config = self.repo.config();
        let mut passes: Vec<GCSummary> = Vec::new();
        for kinds in 1..=4 {
            let summary = garbage_collect(
                Arc::clone(self.repo.asset_manager()),
                &gc_limits(cutoff, kinds, dry_run),
                Some(config.repo_update_retries()),
                config.num_updates_per_repo_info_file(),
            )
            .await;
            let summary = match summary {
                Ok(s) => s,
                Err(e) => return Err(self.gc_failed(e).await),
            };
            let failed = summary.objects_failed_to_delete > 0 || !summary.skipped_phases.is_empty();
            passes.push(summary);
            if failed {
                break;
            }
            if kinds < 4 && stop.load(Ordering::SeqCst) {
                break;
            }
        }
        let mut report = gc_report(&passes, dry_run, age, cutoff);
        report.writers = writers;
        report.gone_writers = gone.iter().map(|a| a.describe(now)).collect();
        if !dry_run && !gone.is_empty() {
            let _ = self.clear_lapsed_writers().await;
        }
        if passes.len() < 4 && stop.load(Ordering::SeqCst) {
            report.interrupted = true;
        }
        Ok(report)
    }

    /// A gc that failed: when a branch or tag reaches an object storage no longer has, the
    /// error names the ref, the snapshot and the object, and what to do.
    async fn gc_failed(&self, e: icechunk::ops::gc::GCError) -> CubeError {
        let damaged = match self.unreadable_refs().await {
            Ok(d) if !d.is_empty() => d,
            _ => return self.hygiene_error("garbage collection", e),
        };
        let what: Vec<String> = damaged
            .iter()
            .map(|(r, why)| {
                let fix = match (r.strip_prefix("tag "), why.starts_with("its snapshot")) {
                    (Some(tag), _) => format!(
                        "delete the tag (`tilecube tag --delete {tag}`) if what it names is lost anyway"
                    ),
                    (None, true) => "run `tilecube repair` on it".to_string(),
                    (None, false) => String::new(),
                };
                let fix = if fix.is_empty() { String::new() } else { format!("; {fix}") };
                format!("{r}: {why}{fix}")
            })
            .collect();
        CubeError::GcUnreadable {
            what: format!(
                "gc of {} cannot read what a branch or tag reaches, so it cannot tell what is garbage: {}",
                self.location,
                what.join("; ")
            ),
            source: Box::new(e),
        }
    }

    /// Expire every snapshot flushed more than `older_than` ago from the histories (tagged
    /// snapshots and branch heads are kept, no ref is deleted), with Icechunk's expiration,
    /// after carrying forward on every branch the records the expiry would drop.
    pub async fn expire(&self, older_than: Duration) -> Result<ExpireReport, CubeError> {
        self.expire_until(older_than, &AtomicBool::new(false)).await
    }

    /// [`Cube::expire`], stopping before its next step once `stop` is set (an operator's
    /// Ctrl-C): each carry commit and the expiry itself are all or nothing; the report says
    /// what was done.
    pub async fn expire_until(
        &self,
        older_than: Duration,
        stop: &AtomicBool,
    ) -> Result<ExpireReport, CubeError> {
        let mut cutoff = cutoff_of(older_than);
        let age = format_age(older_than);
        // A running write's next commit must descend from the snapshot it started from:
        // the snapshots flushed since its base are kept.
        let now = Utc::now();
        let live = self.live_writers().await?;
        let writers: Vec<String> = live.iter().map(|a| a.describe(now)).collect();
        let margin = chrono::Duration::from_std(CLOCK_MARGIN).unwrap_or_default();
        let mut kept_for_writers = None;
        if let Some(base) = live
            .iter()
            .filter(|a| a.kind == super::WriterKind::Write)
            .map(|a| a.base_time.unwrap_or(a.started) - margin)
            .min()
            && base < cutoff
        {
            cutoff = base;
            kept_for_writers = Some(base);
        }
        let branches = self
            .repo
            .list_branches()
            .await
            .map_err(|e| CubeError::icechunk("listing the branches", e))?;
        let mut carried = Vec::new();
        // Stopped between steps: only the carry commits made so far, nothing released.
        let mut stopped = false;
        for branch in branches {
            stopped = stop.load(Ordering::SeqCst);
            if stopped {
                break;
            }
            let mut cube = self.clone();
            cube.branch = branch;
            if let Some(c) = cube.carry_records(&age, cutoff).await? {
                carried.push(c);
            }
        }
        if stopped || stop.load(Ordering::SeqCst) {
            return Ok(ExpireReport {
                older_than: age,
                cutoff,
                carried,
                writers,
                kept_for_writers,
                interrupted: true,
                ..Default::default()
            });
        }
        let _lock = RefLock::acquire(&self.location).await?;
        let config = self.repo.config();
        let result = icechunk_expire(
            Arc::clone(self.repo.asset_manager()),
            cutoff,
            ExpiredRefAction::Ignore,
            ExpiredRefAction::Ignore,
            Some(config.repo_update_retries()),
            config.num_updates_per_repo_info_file(),
        )
        .await
        .map_err(|e| self.hygiene_error("snapshot expiration", e))?;
        let sorted = |ids: HashSet<icechunk::format::SnapshotId>| {
            let mut v: Vec<String> = ids.iter().map(ToString::to_string).collect();
            v.sort();
            v
        };
        Ok(ExpireReport {
            older_than: age,
            cutoff,
            carried,
            released: sorted(result.released_snapshots),
            edited: sorted(result.edited_snapshots),
            writers,
            kept_for_writers,
            interrupted: false,
        })
    }

    /// Land on this cube's branch the commit that carries the records an expiry before
    /// `cutoff` would drop, if it drops any: made on the branch's tip and landed only there,
    /// read again and made anew when another commit landed meanwhile.
    async fn carry_records(
        &self,
        age: &str,
        cutoff: DateTime<Utc>,
    ) -> Result<Option<CarryCommit>, CubeError> {
        for _ in 0..ATTEMPTS {
            let mut session = self.writable_session().await?;
            let base = session.snapshot_id().clone();
            let history = self.history_of(&VersionInfo::SnapshotId(base)).await?;
            let Some(plan) = carry_plan(&history, cutoff) else {
                return Ok(None);
            };
            let props = carried_properties(&plan, age, cutoff);
            let message = carry_message(&plan, age, cutoff);
            if let Some(id) = commit_empty_at_tip(self, &mut session, &message, props).await? {
                return Ok(Some(CarryCommit {
                    branch: self.branch.clone(),
                    snapshot: id.to_string(),
                    tiles: plan.tiles(),
                    layout: plan.layout.is_some(),
                }));
            }
        }
        Err(CubeError::BranchKeptMoving {
            branch: self.branch.clone(),
            attempts: ATTEMPTS,
        })
    }
}

/// The report of a garbage collection's passes: pass `k` deleted the kinds up to the `k`-th.
/// In a real run a kind's objects are those its passes deleted and its bytes those of the
/// pass that first deleted it (a later pass finds only what became garbage meanwhile); in a
/// dry run each pass counts again what the earlier ones counted, so a kind's bytes are its
/// pass's total less the pass before's.
fn gc_report(
    passes: &[GCSummary],
    dry_run: bool,
    older_than: String,
    cutoff: DateTime<Utc>,
) -> GcReport {
    let mut r = GcReport {
        dry_run,
        older_than,
        cutoff,
        ..Default::default()
    };
    let bytes_of = |k: usize| -> u64 {
        let Some(pass) = passes.get(k) else {
            return 0;
        };
        if dry_run {
            let before = k.checked_sub(1).map_or(0, |b| passes[b].bytes_deleted);
            pass.bytes_deleted.saturating_sub(before)
        } else {
            pass.bytes_deleted
        }
    };
    let objects = |f: fn(&GCSummary) -> u64| -> u64 {
        if dry_run {
            passes.last().map_or(0, f)
        } else {
            passes.iter().map(f).sum()
        }
    };
    r.snapshots = Removed {
        objects: objects(|s| s.snapshots_deleted),
        bytes: bytes_of(0),
    };
    r.transaction_logs = Removed {
        objects: objects(|s| s.transaction_logs_deleted),
        bytes: bytes_of(1),
    };
    r.manifests = Removed {
        objects: objects(|s| s.manifests_deleted),
        bytes: bytes_of(2),
    };
    r.attributes = Removed {
        objects: objects(|s| s.attributes_deleted),
        bytes: 0,
    };
    r.chunks = Removed {
        objects: objects(|s| s.chunks_deleted),
        bytes: bytes_of(3),
    };
    for p in passes {
        r.failed_objects += p.objects_failed_to_delete;
        for e in &p.delete_errors {
            if !r.delete_errors.contains(e) {
                r.delete_errors.push(e.clone());
            }
        }
        for s in &p.skipped_phases {
            if !r.skipped.contains(s) {
                r.skipped.push(s.clone());
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cube::WrittenTiles;
    use crate::cube::history::parse_carried;

    fn t(s: &str) -> TileName {
        s.parse().unwrap()
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap()
            + chrono::Duration::minutes(minutes)
    }

    fn commit(id: &str, minute: i64, tiles: &[(&str, u64)], init: bool) -> Commit {
        let written: WrittenTiles = if tiles.is_empty() {
            WrittenTiles::new()
        } else {
            [(2000, tiles.iter().map(|(n, c)| (t(n), *c)).collect())].into()
        };
        Commit {
            id: id.into(),
            parent: None,
            time: at(minute),
            message: String::new(),
            written,
            init,
            plan: None,
            carried: Default::default(),
            sources: Default::default(),
            layout_changed: false,
        }
    }

    /// The commit a plan lands, as the history reads it back.
    fn landed(id: &str, minute: i64, plan: &CarryPlan) -> Commit {
        let props = carried_properties(plan, "1m", at(minute));
        let (written, init) = crate::cube::history::parse_written(&props);
        Commit {
            carried: parse_carried(&props),
            sources: plan.sources.clone(),
            written,
            init,
            ..commit(id, minute, &[], false)
        }
    }

    #[test]
    fn ages_parse_and_print() {
        for (text, secs) in [("0s", 0), ("90m", 5400), ("12h", 43_200), ("7d", 604_800)] {
            assert_eq!(parse_age(text), Ok(Duration::from_secs(secs)));
            assert_eq!(format_age(Duration::from_secs(secs)), text);
        }
        assert_eq!(format_age(Duration::from_secs(86_400)), "1d");
        for bad in ["", "7", "d", "-1d", "1.5h", "7w", "1 d", "99999999999999d"] {
            let e = parse_age(bad).unwrap_err();
            assert!(e.contains("not an age"), "{bad}: {e}");
        }
    }

    #[test]
    fn carried_records_count_as_the_carrying_commits_and_yield_to_newer_writes() {
        // newest first: a rewrite after the carry, the carry (layout marker), nothing older
        let plan = CarryPlan {
            records: [(
                2000,
                [
                    (t("00N_000E"), (16, "W1".to_string())),
                    (t("10N_010E"), (16, "W2".to_string())),
                ]
                .into(),
            )]
            .into(),
            sources: Default::default(),
            layout: Some("INIT".into()),
        };
        let history = vec![
            commit("W3", 10, &[("10N_010E", 9)], false),
            landed("K", 5, &plan),
            commit("W0", 1, &[("20N_020E", 4)], false),
        ];
        assert!(
            history[1].init,
            "the carried layout marker starts the record"
        );
        let rec = Cube::recorded_tiles(&history);
        assert_eq!(rec[&(2000, t("00N_000E"))], (16, "K".into()));
        assert_eq!(rec[&(2000, t("10N_010E"))], (9, "W3".into()));
        assert!(
            !rec.contains_key(&(2000, t("20N_020E"))),
            "the record stops at the carried marker"
        );
    }

    #[test]
    fn a_plan_carries_what_the_expiry_drops_and_everything_when_the_layout_goes() {
        let mut o2 = commit("O2", 8, &[("10N_010E", 16), ("00N_000E", 16)], false);
        o2.sources = [(2000, [(t("10N_010E"), "123/v1".to_string())].into())].into();
        let history = vec![
            commit("N2", 30, &[("00N_000E", 16)], false),
            o2,
            commit("O1", 6, &[("20N_020E", 3)], false),
            commit("INIT", 5, &[], true),
            commit("BEFORE", 1, &[("30N_030E", 1)], false),
        ];
        // The layout stays: nothing older matters, nothing carried.
        assert_eq!(carry_plan(&history, at(4)), None);
        assert_eq!(carry_plan(&history[..3], at(7)).unwrap().layout, None);
        // Without a layout commit in sight, only the dropped records are carried: O1's.
        let p = carry_plan(&history[..3], at(7)).unwrap();
        assert_eq!(p.records[&2000].len(), 1);
        assert_eq!(p.records[&2000][&t("20N_020E")], (3, "O1".into()));
        // The layout goes: every record, with the marker.
        let p = carry_plan(&history, at(10)).unwrap();
        assert_eq!(p.layout.as_deref(), Some("INIT"));
        assert_eq!(
            p.records[&2000],
            [
                (t("00N_000E"), (16, "N2".to_string())),
                (t("10N_010E"), (16, "O2".to_string())),
                (t("20N_020E"), (3, "O1".to_string())),
            ]
            .into()
        );
        // Nothing but the head is old enough: it stays the head, nothing is carried.
        assert_eq!(carry_plan(&history[3..4], at(60)), None);
        assert_eq!(
            p.sources,
            [(2000, [(t("10N_010E"), "123/v1".to_string())].into())].into(),
            "a record's source goes with it"
        );
        // A second expiry carries the carried records again, under their writers.
        let after = vec![
            landed("K1", 40, &p),
            commit("N3", 50, &[("20N_020E", 5)], false),
        ];
        let after: Vec<Commit> = after.into_iter().rev().collect();
        let p2 = carry_plan(&after, at(60)).unwrap();
        assert_eq!(p2.layout.as_deref(), Some("K1"));
        assert_eq!(p2.records[&2000][&t("10N_010E")], (16, "O2".into()));
        assert_eq!(p2.records[&2000][&t("20N_020E")], (5, "N3".into()));
        assert_eq!(p2.sources, p.sources, "and their sources");
        let k2 = landed("K2", 61, &p2);
        let chunks = |h: &[Commit]| -> BTreeMap<(i32, TileName), u64> {
            Cube::recorded_tiles(h)
                .into_iter()
                .map(|(k, (n, _))| (k, n))
                .collect()
        };
        assert_eq!(
            chunks(&[k2]),
            chunks(&after),
            "the tiles recorded are the same after the second carry"
        );
    }

    #[test]
    fn a_carry_message_says_what_and_why() {
        let plan = CarryPlan {
            records: [(2000, [(t("00N_000E"), (1, "W".to_string()))].into())].into(),
            sources: Default::default(),
            layout: Some("I".into()),
        };
        let m = carry_message(&plan, "7d", at(0));
        assert!(
            m.starts_with(
                "carry the records of 1 tile and the layout marker before expiring snapshots older than 7d"
            ),
            "{m}"
        );
    }
}
