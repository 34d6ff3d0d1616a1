//! Remote tiles read ahead of the decoder: GDAL opens a remote tile as
//! `/vsitilecube/{id}/{name}`, a virtual file system whose bytes come from byte ranges this
//! module fetches on its own threads, ahead of the windows the workers decode next.
//!
//! GDAL's own network file systems fetch a window's blocks when a worker asks for them, so
//! the worker waits a round trip, then decodes, then waits again: I/O and CPU take turns.
//! Here a tile's window-to-byte-range map (from the TIFF's block offsets) lets
//! [`ReadAhead`] fetch the next windows while the current ones decode, in parts fetched in
//! parallel, so the decoder finds its bytes already there.
//!
//! Invariants:
//! - bytes held are bounded: window parts by the read-ahead's budget (a window being decoded
//!   is always fetched, whatever the budget), loose parts (headers, offsets, reads outside
//!   any planned window) by [`LOOSE_CAP`];
//! - a part is fetched once and read by any number of GDAL handles; a failed fetch is kept as
//!   the file's error ([`RemoteFile::take_error`]), with its typed cause, and the read that
//!   met it returns short, so GDAL fails the window and the tile's attempt fails as a whole
//!   (fetches are not retried here: the tile's retry starts from a fresh file);
//! - a file is reachable by GDAL only while its [`Registered`] guard lives; handles GDAL
//!   still holds keep the file alive, never a dangling pointer.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use bytes::Bytes;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::fault::RemoteError;
use crate::storage_settings::StorageSettings;

mod vsi;

use vsi::*;

/// The GDAL prefix of read-ahead files.
pub const PREFIX: &str = "/vsitilecube/";
const PREFIX_C: &CStr = c"/vsitilecube/";

/// The largest range fetched in one request; a window's bytes are fetched in parts of at
/// most this size, in parallel.
pub const PART_MAX: u64 = 4 << 20;

/// The smallest fetch for a read outside any planned window (GDAL reading the header and
/// the block offsets a few bytes at a time).
const LOOSE_MIN: u64 = 1 << 20;

/// Bytes of loose parts kept; the oldest finished ones go first.
pub const LOOSE_CAP: u64 = 32 << 20;

/// Range requests in flight at once, over every file of the process.
const FETCHES: usize = 16;

/// Gaps between a window's blocks no larger than this are fetched with them.
const COALESCE_GAP: u64 = 64 << 10;

enum PartState {
    Pending,
    Ready(Bytes),
    Failed(RemoteError),
}

struct Part {
    end: u64,
    loose: bool,
    state: Mutex<PartState>,
    ready: Condvar,
}

impl Part {
    /// Wait for the part's bytes.
    fn wait(&self) -> Result<Bytes, RemoteError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match &*s {
                PartState::Pending => s = self.ready.wait(s).unwrap_or_else(|p| p.into_inner()),
                PartState::Ready(b) => return Ok(b.clone()),
                PartState::Failed(e) => return Err(e.clone()),
            }
        }
    }

    fn settle(&self, state: PartState) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
        self.ready.notify_all();
    }
}

#[derive(Default)]
struct Parts {
    by_start: BTreeMap<u64, Arc<Part>>,
    loose: VecDeque<u64>,
    loose_bytes: u64,
    window_bytes: u64,
}

impl Parts {
    /// Forget the part at `start`, keeping the byte counts.
    fn remove(&mut self, start: u64) {
        if let Some(p) = self.by_start.remove(&start) {
            if p.loose {
                self.loose_bytes -= p.end - start;
            } else {
                self.window_bytes -= p.end - start;
            }
        }
    }
}

/// Counters of one file's fetches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FetchStats {
    pub requests: u64,
    pub bytes: u64,
}

/// One remote object read through `/vsitilecube/`.
pub struct RemoteFile {
    url: String,
    gdal_path: String,
    size: u64,
    /// The object's size and version when it was opened.
    provenance: super::Provenance,
    store: Arc<dyn ObjectStore>,
    key: StorePath,
    parts: Mutex<Parts>,
    error: Mutex<Option<RemoteError>>,
    requests: AtomicU64,
    bytes: AtomicU64,
    /// The CRC of each part fetched, for the object's digest ([`RemoteFile::digest`]).
    pieces: Mutex<super::digest::Pieces>,
}

/// Keeps a [`RemoteFile`] reachable by GDAL; dropping it makes the path unknown again.
pub struct Registered(Arc<RemoteFile>);

impl std::ops::Deref for Registered {
    type Target = Arc<RemoteFile>;
    fn deref(&self) -> &Arc<RemoteFile> {
        &self.0
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        registry().remove(&self.0.gdal_path);
    }
}

impl RemoteFile {
    /// Look at the object at `url` (its size; one request, not retried) and make it
    /// readable by GDAL at [`RemoteFile::gdal_path`] while the guard lives; the object is
    /// reached as `storage` says.
    pub fn open(url: &str, storage: &StorageSettings) -> Result<Registered, RemoteError> {
        install();
        let no_retry = object_store::RetryConfig {
            max_retries: 0,
            ..Default::default()
        };
        let (store, key) = super::remote::store_for(url, storage, Some(no_retry))?;
        let store: Arc<dyn ObjectStore> = Arc::from(store);
        let head = {
            let (store, key) = (store.clone(), key.clone());
            runtime().block_on(async move { store.head(&key).await })
        };
        let meta = head.map_err(|e| crate::fault::classify_store_error(url, e))?;
        let size = meta.size;
        let provenance = super::Provenance::of_meta(&meta);
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = url.rsplit('/').next().unwrap_or("tile.tif");
        let file = Arc::new(Self {
            url: url.to_string(),
            gdal_path: format!("{PREFIX}{id}/{name}"),
            size,
            provenance,
            store,
            key,
            parts: Mutex::new(Parts::default()),
            error: Mutex::new(None),
            requests: AtomicU64::new(1),
            bytes: AtomicU64::new(0),
            pieces: Mutex::new(super::digest::Pieces::default()),
        });
        registry().insert(file.gdal_path.clone(), file.clone());
        Ok(Registered(file))
    }

    /// The path GDAL opens it by.
    pub fn gdal_path(&self) -> &str {
        &self.gdal_path
    }

    /// The object's address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The object's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The object's size and version when it was opened.
    pub fn provenance(&self) -> &super::Provenance {
        &self.provenance
    }

    /// The digest of the object's bytes as they were read: the parts fetched, combined, and
    /// whatever the read left out fetched now from the same version (see
    /// [`super::digest`]). An error when that version is gone or a fetch fails.
    pub fn digest(&self) -> Result<String, RemoteError> {
        let pieces = self
            .pieces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let etag = self.provenance.version.strip_prefix("etag:");
        runtime()
            .block_on(super::digest::digest_of_object(
                self.store.as_ref(),
                &self.key,
                self.size,
                &pieces,
                etag,
            ))
            .map_err(|e| crate::fault::classify_store_error(&self.url, e))
    }

    /// The first fetch failure since the last call, with its typed cause.
    pub fn take_error(&self) -> Option<RemoteError> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    /// Requests made and bytes fetched so far (the first request is the size lookup).
    pub fn stats(&self) -> FetchStats {
        FetchStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// Bytes held by window parts, fetched or in flight.
    pub fn window_bytes(&self) -> u64 {
        self.lock_parts().window_bytes
    }

    fn lock_parts(&self) -> std::sync::MutexGuard<'_, Parts> {
        self.parts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start fetching the ranges that no part covers yet, in parts of at most [`PART_MAX`].
    pub fn prefetch(self: &Arc<Self>, ranges: &[Range<u64>]) {
        let mut to_fetch = vec![];
        {
            let mut parts = self.lock_parts();
            for r in ranges {
                let r = r.start.min(self.size)..r.end.min(self.size);
                for gap in uncovered(&parts.by_start, r) {
                    let mut s = gap.start;
                    while s < gap.end {
                        let e = (s + PART_MAX).min(gap.end);
                        let part = Arc::new(Part {
                            end: e,
                            loose: false,
                            state: Mutex::new(PartState::Pending),
                            ready: Condvar::new(),
                        });
                        parts.by_start.insert(s, part.clone());
                        parts.window_bytes += e - s;
                        to_fetch.push((s, part));
                        s = e;
                    }
                }
            }
        }
        for (start, part) in to_fetch {
            self.spawn_fetch(start, part);
        }
    }

    /// Drop the window parts that lie inside `range`: their bytes were decoded.
    pub fn release(&self, range: Range<u64>) {
        if range.start >= range.end {
            return;
        }
        let mut parts = self.lock_parts();
        let gone: Vec<u64> = parts
            .by_start
            .range(range.start..range.end)
            .filter(|(_, p)| !p.loose && p.end <= range.end)
            .map(|(s, _)| *s)
            .collect();
        for s in gone {
            parts.remove(s);
        }
    }

    fn spawn_fetch(self: &Arc<Self>, start: u64, part: Arc<Part>) {
        let file = self.clone();
        runtime().spawn(async move {
            let _permit = fetch_permits().acquire().await;
            let end = part.end;
            file.requests.fetch_add(1, Ordering::Relaxed);
            let got = file.store.get_range(&file.key, start..end).await;
            let state = match got {
                Ok(b) if b.len() as u64 == end - start => {
                    file.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                    file.pieces
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .add(start, &b);
                    PartState::Ready(b)
                }
                Ok(b) => PartState::Failed(RemoteError::Network {
                    url: file.url.clone(),
                    kind: crate::fault::NetworkKind::Interrupted,
                    message: format!(
                        "bytes {start}..{end}: got {} bytes, expected {}",
                        b.len(),
                        end - start
                    ),
                }),
                Err(e) => PartState::Failed(crate::fault::classify_store_error(&file.url, e)),
            };
            part.settle(state);
        });
    }

    /// The part holding byte `at`, or a new loose part from there, fetching.
    fn part_at(self: &Arc<Self>, at: u64, want: u64) -> (u64, Arc<Part>) {
        let mut parts = self.lock_parts();
        if let Some((s, p)) = parts.by_start.range(..=at).next_back()
            && p.end > at
        {
            return (*s, p.clone());
        }
        let next = parts
            .by_start
            .range(at + 1..)
            .next()
            .map(|(s, _)| *s)
            .unwrap_or(self.size);
        let end = (at + want.max(LOOSE_MIN)).min(next).min(self.size);
        let part = Arc::new(Part {
            end,
            loose: true,
            state: Mutex::new(PartState::Pending),
            ready: Condvar::new(),
        });
        parts.by_start.insert(at, part.clone());
        parts.loose.push_back(at);
        parts.loose_bytes += end - at;
        // Forget the oldest finished loose parts beyond the cap.
        let mut kept = VecDeque::new();
        while parts.loose_bytes > LOOSE_CAP {
            let Some(old) = parts.loose.pop_front() else {
                break;
            };
            let finished = match parts.by_start.get(&old) {
                Some(p) if p.loose && old != at => Some(!matches!(
                    *p.state.lock().unwrap_or_else(|e| e.into_inner()),
                    PartState::Pending
                )),
                Some(p) if p.loose => Some(false),
                _ => None,
            };
            match finished {
                Some(true) => parts.remove(old),
                Some(false) => kept.push_back(old),
                None => {}
            }
        }
        while let Some(k) = kept.pop_back() {
            parts.loose.push_front(k);
        }
        drop(parts);
        self.spawn_fetch(at, part.clone());
        (at, part)
    }

    /// Read up to `buf.len()` bytes at `offset`; fewer at the end of the object or when a
    /// fetch failed (the error is kept for [`RemoteFile::take_error`]).
    pub fn read_at(self: &Arc<Self>, offset: u64, buf: &mut [u8]) -> usize {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            if at >= self.size {
                break;
            }
            let (start, part) = self.part_at(at, (buf.len() - done) as u64);
            match part.wait() {
                Ok(bytes) => {
                    let from = (at - start) as usize;
                    let n = (bytes.len() - from).min(buf.len() - done);
                    buf[done..done + n].copy_from_slice(&bytes[from..from + n]);
                    done += n;
                }
                Err(e) => {
                    // The failed part goes, so a later read asks again.
                    let mut parts = self.lock_parts();
                    if parts
                        .by_start
                        .get(&start)
                        .is_some_and(|p| Arc::ptr_eq(p, &part))
                    {
                        parts.remove(start);
                        parts.loose.retain(|s| *s != start);
                    }
                    drop(parts);
                    if let Ok(mut slot) = self.error.lock()
                        && slot.is_none()
                    {
                        *slot = Some(e);
                    }
                    break;
                }
            }
        }
        done
    }
}

/// The sub-ranges of `r` that no part covers.
fn uncovered(parts: &BTreeMap<u64, Arc<Part>>, r: Range<u64>) -> Vec<Range<u64>> {
    let mut out = vec![];
    let mut at = r.start;
    if let Some((_, p)) = parts.range(..=at).next_back()
        && p.end > at
    {
        at = p.end;
    }
    if at >= r.end {
        return out;
    }
    for (s, p) in parts.range(at..r.end) {
        if *s > at {
            out.push(at..*s);
        }
        at = at.max(p.end);
    }
    if at < r.end {
        out.push(at..r.end);
    }
    out
}

/// Sort and merge byte ranges, joining those closer than [`COALESCE_GAP`].
pub fn coalesce(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.retain(|r| r.end > r.start);
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = vec![];
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end + COALESCE_GAP => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// A tile's read-ahead: its windows' byte ranges, fetched in window order ahead of the
/// workers, at most `ahead` windows past the newest one started and within `budget` bytes.
pub struct ReadAhead {
    file: Arc<RemoteFile>,
    windows: Vec<Vec<Range<u64>>>,
    ahead: usize,
    budget: u64,
    state: Mutex<AheadState>,
}

#[derive(Default)]
struct AheadState {
    /// The first window not asked for yet.
    next: usize,
    /// The newest window a worker started.
    newest: usize,
}

impl ReadAhead {
    /// `windows[w]`: the byte ranges window `w` decodes.
    pub fn new(
        file: Arc<RemoteFile>,
        windows: Vec<Vec<Range<u64>>>,
        ahead: usize,
        budget: u64,
    ) -> Self {
        let windows = windows.into_iter().map(coalesce).collect();
        let ra = Self {
            file,
            windows,
            ahead,
            budget,
            state: Mutex::new(AheadState::default()),
        };
        ra.pump(&mut ra.lock());
        ra
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AheadState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A worker starts window `w`: its bytes are fetched now if they were not yet, and the
    /// windows after it as the budget allows.
    pub fn start(&self, w: usize) {
        let mut s = self.lock();
        if w >= s.next {
            if let Some(r) = self.windows.get(w) {
                self.file.prefetch(r);
            }
            s.next = w + 1;
        }
        s.newest = s.newest.max(w);
        self.pump(&mut s);
    }

    /// Window `w` is decoded: its bytes go, and more windows are fetched.
    pub fn done(&self, w: usize) {
        if let Some(r) = self.windows.get(w) {
            for range in r {
                self.file.release(range.clone());
            }
        }
        let mut s = self.lock();
        self.pump(&mut s);
    }

    fn pump(&self, s: &mut AheadState) {
        while s.next < self.windows.len() && s.next <= s.newest + self.ahead {
            let size: u64 = self.windows[s.next].iter().map(|r| r.end - r.start).sum();
            if self.file.window_bytes() + size > self.budget {
                break;
            }
            self.file.prefetch(&self.windows[s.next]);
            s.next += 1;
        }
    }
}

/// The fetch threads: network I/O only, apart from the workers that decode.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tilecube-fetch")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the fetch threads: {e}"))
    })
}

fn fetch_permits() -> &'static tokio::sync::Semaphore {
    static SEM: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SEM.get_or_init(|| tokio::sync::Semaphore::new(FETCHES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_coalesce_across_small_gaps_only() {
        let got = coalesce(vec![
            100..200,
            0..50,
            200..300,
            1_000_000..1_000_010,
            40..60,
        ]);
        assert_eq!(got, vec![0..300, 1_000_000..1_000_010]);
        assert_eq!(
            coalesce(std::iter::once(5..5).collect()),
            Vec::<Range<u64>>::new()
        );
    }

    #[test]
    fn uncovered_ranges_skip_existing_parts() {
        let mut parts = BTreeMap::new();
        let part = |end| {
            Arc::new(Part {
                end,
                loose: false,
                state: Mutex::new(PartState::Pending),
                ready: Condvar::new(),
            })
        };
        parts.insert(10, part(20));
        parts.insert(30, part(40));
        assert_eq!(uncovered(&parts, 0..50), vec![0..10, 20..30, 40..50]);
        assert_eq!(uncovered(&parts, 12..35), vec![20..30]);
        assert_eq!(uncovered(&parts, 10..20), Vec::<Range<u64>>::new());
        assert_eq!(uncovered(&parts, 12..18), Vec::<Range<u64>>::new());
    }
}
