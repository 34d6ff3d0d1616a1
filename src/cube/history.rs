//! The branch's history: each commit's message, time and the tiles it recorded writing.
//!
//! A commit that writes tiles carries, in its snapshot properties under `tilecube`, a map
//! `written: {year: {tile: stored chunks}}`. A commit that lays out the cube (`init`) carries
//! `init` and starts the record afresh. A commit that `expire` lands before dropping old
//! snapshots carries the records those held, `carried: {year: {tile: [chunks, "snapshot that
//! wrote it"]}}` (and, when the layout commit goes too, `init`, holding then every record).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use icechunk::format::snapshot::{SnapshotInfo, SnapshotProperties};
use icechunk::repository::VersionInfo;
use serde::Serialize;
use serde_json::{Value, json};

use super::layout::props_key;
use super::{Cube, CubeError};
use crate::grid::TileName;

/// Tiles written, by year, with the number of chunks each stored.
pub type WrittenTiles = BTreeMap<i32, BTreeMap<TileName, u64>>;

/// Records carried forward by `expire`, by year: each tile's chunks and the snapshot that
/// wrote it.
pub type CarriedTiles = BTreeMap<i32, BTreeMap<TileName, (u64, String)>>;

/// One tile a commit recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TileRecord {
    pub year: i32,
    pub tile: TileName,
    pub chunks: u64,
}

/// One commit of the branch's ancestry.
#[derive(Debug, Clone, Serialize)]
pub struct Commit {
    pub id: String,
    pub parent: Option<String>,
    pub time: DateTime<Utc>,
    pub message: String,
    /// Tiles this commit wrote.
    pub written: WrittenTiles,
    /// Whether the record starts here: this commit laid out the cube afresh, or carried
    /// every record of the commits before it (an `expire` that dropped the layout commit).
    pub init: bool,
    /// The scale-out plan this commit wrote tiles of, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanTag>,
    /// Records of older commits this commit carries (made by `expire`), each with the
    /// snapshot that wrote the tile; they count as this commit's, and a newer write of a tile
    /// wins over them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub carried: CarriedTiles,
    /// What this commit's tiles were read from (`size/version`, [`crate::source::Provenance`]
    /// records), for the tiles whose source was known.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<i32, BTreeMap<TileName, String>>,
    /// This commit changed the cube's layout (`init`, `extend`): a reader opened before it
    /// reads the layout again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub layout_changed: bool,
}

/// What a commit of a scale-out plan records beside its tiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanTag {
    /// The plan's id.
    pub id: String,
    /// The shard that committed (checkpoint mode).
    pub shard: Option<u64>,
    /// Whether this is the plan's merge of staged shards.
    pub merged: bool,
    /// The shards a merge holds so far (a merge lands in batches that amend one commit).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_shards: Vec<usize>,
    /// Whether the merge took every shard it meant to (false while it is under way, or if
    /// it was interrupted).
    pub complete: bool,
}

impl Commit {
    /// A commit of the ancestry, with the tiles its snapshot properties record.
    pub(crate) fn from_info(info: SnapshotInfo) -> Self {
        let (written, init) = parse_written(&info.metadata);
        let ours = info.metadata.get(props_key());
        let plan = ours
            .and_then(|v| v.get("plan"))
            .and_then(Value::as_str)
            .map(|id| PlanTag {
                id: id.to_string(),
                shard: ours.and_then(|v| v.get("shard")).and_then(Value::as_u64),
                merged: ours
                    .and_then(|v| v.get("merged"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                merged_shards: ours
                    .and_then(|v| v.get("merged_shards"))
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_u64())
                            .map(|s| s as usize)
                            .collect()
                    })
                    .unwrap_or_default(),
                complete: ours
                    .and_then(|v| v.get("complete"))
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
            });
        Commit {
            plan,
            id: info.id.to_string(),
            parent: info.parent_id.map(|p| p.to_string()),
            time: info.flushed_at,
            message: info.message,
            written,
            init,
            carried: parse_carried(&info.metadata),
            sources: parse_sources(&info.metadata),
            // `extend` notes `{"extend": {...}}` beside the layout; `upgrade` rewrites
            // metadata only, not the years.
            layout_changed: ours.is_some_and(|v| v.get("extend").is_some()),
        }
    }

    /// Whether this commit laid the cube out afresh or grew it (`init`, `extend`).
    pub fn changes_layout(&self) -> bool {
        self.init || self.layout_changed
    }

    /// Number of tiles this commit wrote.
    pub fn tile_count(&self) -> usize {
        self.written.values().map(|t| t.len()).sum()
    }

    /// Short description of the tiles, for one-line listings.
    pub fn tiles_summary(&self, max: usize) -> String {
        let all: Vec<String> = self
            .written
            .iter()
            .flat_map(|(y, tiles)| tiles.keys().map(move |t| format!("{y}/{t}")))
            .collect();
        if all.len() <= max {
            all.join(" ")
        } else {
            format!("{} … (+{})", all[..max].join(" "), all.len() - max)
        }
    }
}

/// The commit message naming the tiles.
pub fn commit_message(written: &WrittenTiles) -> String {
    let names: Vec<String> = written
        .iter()
        .flat_map(|(y, t)| t.keys().map(move |t| format!("{y}/{t}")))
        .collect();
    let n = names.len();
    let shown = names.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    let more = if n > 8 {
        format!(" and {} more", n - 8)
    } else {
        String::new()
    };
    let s = if n == 1 { "" } else { "s" };
    format!("write {n} tile{s}: {shown}{more}")
}

/// Snapshot properties recording the tiles a commit wrote.
pub fn written_properties(written: &WrittenTiles) -> SnapshotProperties {
    written_properties_with(written, &serde_json::Map::new())
}

/// Snapshot properties recording the tiles a commit wrote, and `tags` beside them (the
/// plan and shard of a scale-out write).
pub fn written_properties_with(
    written: &WrittenTiles,
    tags: &serde_json::Map<String, Value>,
) -> SnapshotProperties {
    let map: serde_json::Map<String, Value> = written
        .iter()
        .map(|(year, tiles)| {
            let t: serde_json::Map<String, Value> = tiles
                .iter()
                .map(|(tile, n)| (tile.to_string(), json!(n)))
                .collect();
            (year.to_string(), Value::Object(t))
        })
        .collect();
    let mut ours = tags.clone();
    ours.insert("written".into(), Value::Object(map));
    let mut props = SnapshotProperties::new();
    props.insert(props_key().into(), Value::Object(ours));
    props
}

/// The sources a commit's properties record for its tiles (`tilecube.sources`).
fn parse_sources(props: &SnapshotProperties) -> BTreeMap<i32, BTreeMap<TileName, String>> {
    let mut out = BTreeMap::new();
    let Some(Value::Object(years)) = props.get(props_key()).and_then(|o| o.get("sources")) else {
        return out;
    };
    for (year, tiles) in years {
        let (Ok(year), Value::Object(tiles)) = (year.parse::<i32>(), tiles) else {
            continue;
        };
        let entry: &mut BTreeMap<TileName, String> = out.entry(year).or_default();
        for (name, record) in tiles {
            if let (Ok(tile), Some(r)) = (name.parse::<TileName>(), record.as_str()) {
                entry.insert(tile, r.to_string());
            }
        }
    }
    out
}

pub(crate) fn parse_written(props: &SnapshotProperties) -> (WrittenTiles, bool) {
    let mut out = WrittenTiles::new();
    let Some(ours) = props.get(props_key()) else {
        return (out, false);
    };
    let init = ours.get("init").is_some();
    if let Some(Value::Object(years)) = ours.get("written") {
        for (year, tiles) in years {
            let (Ok(year), Value::Object(tiles)) = (year.parse::<i32>(), tiles) else {
                continue;
            };
            let entry = out.entry(year).or_default();
            for (name, n) in tiles {
                if let Ok(tile) = name.parse::<TileName>() {
                    entry.insert(tile, n.as_u64().unwrap_or(0));
                }
            }
        }
    }
    (out, init)
}

/// The records a commit carries forward (`tilecube.carried`), if any.
pub(crate) fn parse_carried(props: &SnapshotProperties) -> CarriedTiles {
    let mut out = CarriedTiles::new();
    let Some(Value::Object(years)) = props.get(props_key()).and_then(|v| v.get("carried")) else {
        return out;
    };
    for (year, tiles) in years {
        let (Ok(year), Value::Object(tiles)) = (year.parse::<i32>(), tiles) else {
            continue;
        };
        for (name, record) in tiles {
            let (Ok(tile), Some(n), Some(origin)) = (
                name.parse::<TileName>(),
                record.get(0).and_then(Value::as_u64),
                record.get(1).and_then(Value::as_str),
            ) else {
                continue;
            };
            out.entry(year)
                .or_default()
                .insert(tile, (n, origin.to_string()));
        }
    }
    out
}

impl Cube {
    /// The ancestry of a version, newest first.
    pub async fn history_of(&self, version: &VersionInfo) -> Result<Vec<Commit>, CubeError> {
        let stream = self
            .repo
            .ancestry(version)
            .await
            .map_err(|e| CubeError::icechunk("reading the history", e))?;
        let infos: Vec<_> = stream
            .try_collect()
            .await
            .map_err(|e| CubeError::icechunk("reading the history", e))?;
        Ok(infos.into_iter().map(Commit::from_info).collect())
    }

    /// The commit that made snapshot `id` (one snapshot read, whatever its ancestry): for
    /// snapshots a tag keeps that the branch's history no longer passes through.
    pub async fn commit_of(&self, id: &str) -> Result<Commit, CubeError> {
        let reading = |e| CubeError::icechunk(format!("reading snapshot {id}"), e);
        let snapshot = icechunk::format::SnapshotId::try_from(id)
            .map_err(|_| CubeError::UnknownSnapshot(id.to_string()))?;
        let mut stream = Box::pin(
            self.repo
                .ancestry(&VersionInfo::SnapshotId(snapshot))
                .await
                .map_err(reading)?,
        );
        match stream.try_next().await.map_err(reading)? {
            Some(info) => Ok(Commit::from_info(info)),
            None => Err(CubeError::UnknownSnapshot(id.to_string())),
        }
    }

    /// The branch's ancestry, newest first.
    pub async fn history(&self) -> Result<Vec<Commit>, CubeError> {
        self.history_of(&VersionInfo::BranchTipRef(self.branch.clone()))
            .await
    }

    /// The branch's ancestry, newest first, reading only the commits newer than `known` (an
    /// ancestry read before, newest first): on a repository that walks snapshots one by one
    /// a refresh costs the new commits, not the whole history. When the branch no longer
    /// descends from `known`'s newest commit, the whole ancestry is read.
    pub async fn history_since(&self, known: &[Commit]) -> Result<Vec<Commit>, CubeError> {
        let Some(top) = known.first() else {
            return self.history().await;
        };
        let (mut out, found) = self.ancestry_until(&top.id).await?;
        if found {
            out.extend_from_slice(known);
        }
        Ok(out)
    }

    /// The branch's commits newer than `stop` (a snapshot id), newest first: only those are
    /// read, so the cost follows the commits since `stop`, not the whole history. When
    /// `stop` is not an ancestor, the whole ancestry is read.
    pub async fn history_until(&self, stop: &str) -> Result<Vec<Commit>, CubeError> {
        Ok(self.ancestry_until(stop).await?.0)
    }

    /// The branch's ancestry, newest first, down to (not including) `stop`, and whether
    /// `stop` was met (else the whole ancestry was read).
    pub(crate) async fn ancestry_until(
        &self,
        stop: &str,
    ) -> Result<(Vec<Commit>, bool), CubeError> {
        let reading = |e| CubeError::icechunk("reading the history", e);
        let mut stream = Box::pin(
            self.repo
                .ancestry(&VersionInfo::BranchTipRef(self.branch.clone()))
                .await
                .map_err(reading)?,
        );
        let mut out = Vec::new();
        while let Some(info) = stream.try_next().await.map_err(reading)? {
            if info.id.to_string() == stop {
                return Ok((out, true));
            }
            out.push(Commit::from_info(info));
        }
        Ok((out, false))
    }

    /// The source each of `recorded`'s tiles was read from, as the commit that recorded it
    /// (its snapshot in `recorded`, one of `history`'s) noted it; tiles whose commit noted
    /// none have no entry.
    pub fn recorded_sources(
        history: &[Commit],
        recorded: &BTreeMap<(i32, TileName), (u64, String)>,
    ) -> BTreeMap<(i32, TileName), String> {
        let by_id: BTreeMap<&str, &Commit> = history.iter().map(|c| (c.id.as_str(), c)).collect();
        recorded
            .iter()
            .filter_map(|(key, (_, snapshot))| {
                let s = by_id
                    .get(snapshot.as_str())?
                    .sources
                    .get(&key.0)?
                    .get(&key.1)?;
                Some((*key, s.clone()))
            })
            .collect()
    }

    /// The tiles recorded as written in an ancestry (newest first), with the snapshot that
    /// last wrote each: everything since the latest layout commit. A carried record counts
    /// as the carrying commit's (the snapshot that wrote the tile may be gone).
    pub fn recorded_tiles(history: &[Commit]) -> BTreeMap<(i32, TileName), (u64, String)> {
        let mut out = BTreeMap::new();
        for commit in history {
            for (year, tiles) in &commit.written {
                for (tile, n) in tiles {
                    out.entry((*year, *tile))
                        .or_insert_with(|| (*n, commit.id.clone()));
                }
            }
            for (year, tiles) in &commit.carried {
                for (tile, record) in tiles {
                    out.entry((*year, *tile))
                        .or_insert_with(|| (record.0, commit.id.clone()));
                }
            }
            if commit.init {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_tiles_round_trip_through_properties() {
        let mut w = WrittenTiles::new();
        w.entry(2000)
            .or_default()
            .insert("70N_180W".parse().unwrap(), 1600);
        w.entry(2020)
            .or_default()
            .insert("00N_000E".parse().unwrap(), 0);
        let props = written_properties(&w);
        let (back, init) = parse_written(&props);
        assert_eq!(back, w);
        assert!(!init);
    }

    #[test]
    fn recorded_tiles_stop_at_the_latest_layout_commit() {
        let t = |s: &str| s.parse::<TileName>().unwrap();
        let mk = |id: &str, tiles: &[&str], init: bool| Commit {
            id: id.into(),
            parent: None,
            time: Utc::now(),
            message: String::new(),
            written: if tiles.is_empty() {
                WrittenTiles::new()
            } else {
                [(2000, tiles.iter().map(|s| (t(s), 1)).collect())].into()
            },
            init,
            plan: None,
            carried: Default::default(),
            sources: Default::default(),
            layout_changed: false,
        };
        // newest first
        let history = vec![
            mk("C", &["10N_010E"], false),
            mk("B", &["00N_000E", "10N_010E"], false),
            mk("INIT", &[], true),
            mk("A", &["70N_180W"], false),
        ];
        let rec = Cube::recorded_tiles(&history);
        assert_eq!(rec.len(), 2);
        assert_eq!(rec[&(2000, t("10N_010E"))].1, "C");
        assert_eq!(rec[&(2000, t("00N_000E"))].1, "B");
        assert!(!rec.contains_key(&(2000, t("70N_180W"))));
    }

    #[test]
    fn commit_messages_name_the_tiles() {
        let t = |s: &str| s.parse::<TileName>().unwrap();
        let w: WrittenTiles = [(2000, [(t("70N_180W"), 3), (t("60N_170W"), 0)].into())].into();
        assert_eq!(
            commit_message(&w),
            "write 2 tiles: 2000/70N_180W, 2000/60N_170W"
        );
        let many: WrittenTiles = [(
            2005,
            (0..10).map(|i| (TileName::new(0, i * 10), 1)).collect(),
        )]
        .into();
        let m = commit_message(&many);
        assert!(
            m.starts_with("write 10 tiles: 2005/00N_000E") && m.ends_with("and 2 more"),
            "{m}"
        );
    }
}
