//! Digests of a source's bytes: CRC-64/NVME, written `crc64:{16 hex digits}`, the same for a
//! local file and a remote object of the same bytes.
//!
//! A remote tile's read fetches its object in parts, in any order; [`Pieces`] keeps each
//! part's CRC as it arrives, and [`digest_of_object`] combines them in byte order, fetching
//! only what no part covered (usually nothing: the read covers the file). The same call with
//! no pieces digests a whole object for the check of `--changed`.
//!
//! Invariants: a digest is of the bytes `0..size` in order, each byte counted once (a part
//! overlapping one already counted is left out, its bytes fetched afresh where needed);
//! fetches are at most [`PART_MAX`] bytes and a few at a time, so memory stays bounded
//! whatever the object's size; a gap is fetched only from the version that was read (its
//! ETag must still match), so a digest never mixes two versions of an object.

use std::collections::BTreeMap;
use std::ops::Range;

use crc_fast::CrcAlgorithm;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, GetRange, ObjectStore};

use super::fetch::PART_MAX;

const ALGORITHM: CrcAlgorithm = CrcAlgorithm::Crc64Nvme;

/// Fetches in flight at once for one digest.
const AT_ONCE: usize = 4;

/// A digest as records keep it.
pub fn text(crc: u64) -> String {
    format!("crc64:{crc:016x}")
}

/// The CRCs of the byte ranges of one object fetched so far.
#[derive(Debug, Default, Clone)]
pub struct Pieces {
    /// start → (end, CRC of start..end).
    by_start: BTreeMap<u64, (u64, u64)>,
}

/// One step of a digest, in byte order: a piece already known, or a range to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Known { len: u64, crc: u64 },
    Fetch(Range<u64>),
}

impl Pieces {
    /// Record the bytes fetched from `start`.
    pub fn add(&mut self, start: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let end = start + bytes.len() as u64;
        self.by_start
            .entry(start)
            .or_insert_with(|| (end, crc_fast::checksum(ALGORITHM, bytes)));
    }

    /// The steps that digest `0..size`: the pieces laid end to end from 0, the rest fetched.
    fn steps(&self, size: u64) -> Vec<Step> {
        let mut steps = vec![];
        let mut at = 0;
        let fetch = |steps: &mut Vec<Step>, r: Range<u64>| {
            let mut s = r.start;
            while s < r.end {
                let e = (s + PART_MAX).min(r.end);
                steps.push(Step::Fetch(s..e));
                s = e;
            }
        };
        for (&start, &(end, crc)) in &self.by_start {
            if start < at || end > size {
                continue;
            }
            if start > at {
                fetch(&mut steps, at..start);
            }
            steps.push(Step::Known {
                len: end - start,
                crc,
            });
            at = end;
        }
        fetch(&mut steps, at..size);
        steps
    }
}

/// The digest of the `size` bytes of the object `key` in `store`, from `pieces` already
/// fetched and whatever they leave out, fetched (only while the object's ETag is still
/// `etag`, when one is given).
pub async fn digest_of_object(
    store: &dyn ObjectStore,
    key: &StorePath,
    size: u64,
    pieces: &Pieces,
    etag: Option<&str>,
) -> Result<String, object_store::Error> {
    let steps = pieces.steps(size);
    let if_match = etag.map(|e| format!("\"{}\"", e.trim_matches('"')));
    let mut whole: Option<u64> = None;
    for batch in steps.chunks(AT_ONCE) {
        let crcs = futures::future::join_all(
            batch
                .iter()
                .map(|step| crc_of_step(store, key, step, if_match.clone())),
        )
        .await;
        for next in crcs {
            let (len, crc) = next?;
            whole = Some(match whole {
                None => crc,
                Some(before) => crc_fast::checksum_combine(ALGORITHM, before, crc, len),
            });
        }
    }
    Ok(text(
        whole.unwrap_or_else(|| crc_fast::checksum(ALGORITHM, b"")),
    ))
}

/// The length and CRC of one step: known, or fetched now.
async fn crc_of_step(
    store: &dyn ObjectStore,
    key: &StorePath,
    step: &Step,
    if_match: Option<String>,
) -> Result<(u64, u64), object_store::Error> {
    let r = match step {
        Step::Known { len, crc } => return Ok((*len, *crc)),
        Step::Fetch(r) => r.clone(),
    };
    let options = GetOptions {
        range: Some(GetRange::Bounded(r.clone())),
        if_match,
        ..Default::default()
    };
    let bytes = store.get_opts(key, options).await?.bytes().await?;
    if bytes.len() as u64 != r.end - r.start {
        return Err(object_store::Error::Generic {
            store: "source",
            source: format!(
                "bytes {}..{}: got {} bytes, expected {}",
                r.start,
                r.end,
                bytes.len(),
                r.end - r.start
            )
            .into(),
        });
    }
    Ok((r.end - r.start, crc_fast::checksum(ALGORITHM, &bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7919 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn pieces_in_any_order_with_overlaps_and_gaps_give_the_files_digest() {
        let data = bytes(10_000_000);
        let store = InMemory::new();
        let key = StorePath::from("t.tif");
        store
            .put(&key, PutPayload::from(data.clone()))
            .await
            .expect("put");
        let whole = text(crc_fast::checksum(ALGORITHM, &data));
        // Nothing known: the whole object is fetched.
        let none = Pieces::default();
        assert_eq!(
            digest_of_object(&store, &key, data.len() as u64, &none, None)
                .await
                .unwrap(),
            whole
        );
        // Pieces out of order, one overlapping another, a gap between them.
        let mut p = Pieces::default();
        p.add(6_000_000, &data[6_000_000..10_000_000]);
        p.add(0, &data[0..1_000_000]);
        p.add(500_000, &data[500_000..2_000_000]);
        p.add(1_000_000, &data[1_000_000..3_000_000]);
        assert_eq!(
            p.steps(data.len() as u64),
            vec![
                Step::Known {
                    len: 1_000_000,
                    crc: crc_fast::checksum(ALGORITHM, &data[0..1_000_000])
                },
                Step::Known {
                    len: 2_000_000,
                    crc: crc_fast::checksum(ALGORITHM, &data[1_000_000..3_000_000])
                },
                Step::Fetch(3_000_000..6_000_000),
                Step::Known {
                    len: 4_000_000,
                    crc: crc_fast::checksum(ALGORITHM, &data[6_000_000..])
                },
            ]
        );
        assert_eq!(
            digest_of_object(&store, &key, data.len() as u64, &p, None)
                .await
                .unwrap(),
            whole
        );
        // A file's digest is the same text.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.tif");
        std::fs::write(&f, &data).unwrap();
        assert_eq!(super::super::Provenance::digest_of_file(&f).unwrap(), whole);
        // One byte changed in a gap changes the digest.
        let mut other = data.clone();
        other[4_000_000] ^= 1;
        store.put(&key, PutPayload::from(other)).await.expect("put");
        assert_ne!(
            digest_of_object(&store, &key, data.len() as u64, &p, None)
                .await
                .unwrap(),
            whole
        );
    }

    #[tokio::test]
    async fn an_empty_object_and_a_gap_fetched_from_another_version_are_told() {
        let store = InMemory::new();
        let key = StorePath::from("e.tif");
        store
            .put(&key, PutPayload::from(Vec::<u8>::new()))
            .await
            .expect("put");
        assert_eq!(
            digest_of_object(&store, &key, 0, &Pieces::default(), None)
                .await
                .unwrap(),
            text(crc_fast::checksum(ALGORITHM, b""))
        );
        store
            .put(&key, PutPayload::from(bytes(100)))
            .await
            .expect("put");
        let refused =
            digest_of_object(&store, &key, 100, &Pieces::default(), Some("not-its-etag")).await;
        assert!(refused.is_err(), "{refused:?}");
    }
}
