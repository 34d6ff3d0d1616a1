//! Errors of the cube layer, each naming what it was doing and keeping its cause.
//!
//! Invariant: an error from Icechunk, zarrs, the storage or the file system is kept as the
//! `source` of a [`CubeError`], never flattened to text, so callers can tell a passing
//! network fault from a bad repository ([`CubeError::is_transient`]) and print the whole
//! chain ([`crate::error_chain`]).

/// A boxed cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong opening, reading or writing the cube's repository.
#[derive(Debug, thiserror::Error)]
pub enum CubeError {
    #[error("repository {location}")]
    Repository {
        location: String,
        #[source]
        source: BoxError,
    },
    #[error(
        "repository {location} is not there (no such directory); check the path, or run `tilecube init`"
    )]
    NoRepository { location: String },
    #[error(
        "repository {location} has no branch {branch:?} (its branches: {branches}); pass --branch"
    )]
    NoBranch {
        location: String,
        branch: String,
        branches: String,
    },
    /// Nothing there yet (an empty directory, an empty S3 prefix).
    #[error("no tilecube cube in repository {location}; run `tilecube init` first")]
    NotACube { location: String },
    /// An Icechunk repository that holds no cube (made by another tool, say): `init` needs
    /// `--force` to lay one out in it.
    #[error(
        "no tilecube cube in repository {location}; `tilecube init --force` lays one out in it (its history is kept)"
    )]
    NoCubeInRepository { location: String },
    /// A local directory that holds files but no repository (what a write left there after
    /// its repository was removed, say): `init` refuses it too.
    #[error(
        "{location} holds no repository but is not empty ({entries}): `tilecube init` makes one only in an empty or new directory, so remove what is there or choose another path"
    )]
    NotARepositoryDirectory { location: String, entries: String },
    #[error(
        "repository {location} already holds a repository; pass --force to lay out a fresh cube over it (history is kept)"
    )]
    AlreadyExists { location: String },
    #[error("{what}")]
    Icechunk {
        what: String,
        #[source]
        source: BoxError,
    },
    /// The cube's layout does not hold what was asked of it, or is not as it should be.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Computing a tile's overview chunks ended without its result (the task panicked).
    #[error("cube layout: computing overviews of {year}/{tile}")]
    OverviewTask {
        year: i32,
        tile: crate::grid::TileName,
        #[source]
        source: tokio::task::JoinError,
    },
    /// A thread of the pipeline could not be started.
    #[error("starting the {what} thread")]
    Thread {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A thread of the pipeline panicked (a bug): what it was doing.
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
    /// A task on the I/O runtime ended without its result (panicked or cancelled).
    #[error("{what}: the task did not finish")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// Another commit changed what this one's chunks belong to (an `extend` grew the arrays,
    /// an `overviews` laid them out) while it was written: Icechunk cannot rebase over it.
    #[error(
        "another commit changed the cube's arrays while this one was written (an `extend` or \
         `overviews` landed on {branch} meanwhile), so it cannot land over it; the tiles of this \
         commit did not land: write them again (`write --missing`)"
    )]
    ArraysChangedUnder {
        branch: String,
        #[source]
        source: BoxError,
    },
    /// The branch no longer descends from the snapshot a write opened on.
    #[error(
        "the branch {branch} of {location} no longer descends from snapshot {base}, which this write started from: the repository was made again at its place, or the branch reset, or an expire dropped that snapshot; the tiles of this commit did not land: write them again (`write --missing`, or the same command)"
    )]
    BaseGone {
        location: String,
        branch: String,
        base: String,
    },
    /// Other processes kept committing to the branch: every attempt to land found it moved.
    #[error("the branch {branch} kept moving: {attempts} attempts at committing failed")]
    BranchKeptMoving { branch: String, attempts: u16 },
    /// The storage refused a write in a way every write would meet (permission denied, a
    /// read-only or full file system, a denied bucket).
    #[error("{what}")]
    StorageRefused {
        what: String,
        #[source]
        source: BoxError,
    },
    #[error(
        "another merge of plan {plan} landed as {commit} while this one ran; this merge landed nothing (`tilecube status --plan` shows whether any shard is left to merge)"
    )]
    MergedConcurrently { plan: String, commit: String },
    /// `extend`: a year outside the years a cube takes.
    #[error("year {year} is not a year a cube takes ({} to {})", crate::preset::YEARS.start(), crate::preset::YEARS.end())]
    YearOutOfRange { year: i32 },
    /// `extend`: the year is in the cube already.
    #[error("year {year} is already in the cube (years: {years}); there is nothing to extend")]
    YearInCube { year: i32, years: String },
    /// `extend`: the year falls before the cube's last year.
    #[error(
        "year {year} comes before the cube's last year, {last}: a year is only appended after the last one (inserting it would move every chunk of the later years)"
    )]
    YearBeforeLast { year: i32, last: i32 },
    /// Icechunk's garbage collection or snapshot expiration failed (`gc`, `expire`).
    #[error("{what} of {location}")]
    Hygiene {
        what: &'static str,
        location: String,
        #[source]
        source: BoxError,
    },
    #[error(
        "snapshot {0:?} not found (a snapshot id is 20 characters, as `tilecube log` shows it)"
    )]
    UnknownSnapshot(String),
    #[error(
        "{given:?} is not a snapshot id as written (it reads as {canonical}, which may not be the one meant): give the id as `tilecube log` shows it"
    )]
    NotCanonical { given: String, canonical: String },
    /// `tag`: a name refused before anything is written.
    #[error("tag name {name:?} is refused: {why}")]
    TagName { name: String, why: &'static str },
    /// `tag`: the name is on another snapshot already.
    #[error(
        "tag {name} is already there, on snapshot {snapshot}: a tag names one snapshot for good; choose another name"
    )]
    TagTaken { name: String, snapshot: String },
    /// Repository metadata asked of a spec-1 repository.
    #[error(
        "{what} is kept in the repository's own metadata, which a spec-1 repository does not have (a spec-2 repository, the default of `init`, has it)"
    )]
    NoRepositoryMetadata { what: &'static str },
    #[error("{0}")]
    Grid(#[from] crate::grid::GridError),
    /// The branch's head snapshot is not in storage.
    #[error(
        "branch {branch} of {location} points at snapshot {snapshot}, whose object snapshots/{snapshot} is not in storage (deleted behind Icechunk's back): nothing of the branch can be read; restore that object from a backup"
    )]
    HeadSnapshotLost {
        location: String,
        branch: String,
        snapshot: String,
    },
    /// A new cube was laid out at the branch (`init --force`) while a write ran.
    #[error(
        "a new cube was laid out on branch {branch} of {location} (`init --force`) while this write ran: its tiles belong to the cube that was replaced, and this commit did not land in the new one"
    )]
    CubeMadeAgain { location: String, branch: String },
    /// The repository was removed (its configuration is gone from storage) while a write ran.
    #[error(
        "the repository {location} was removed while this write ran (storage no longer holds it): the write stopped, and nothing more of it is written there; `tilecube init` makes a new one, then the tiles are written again (`write --missing`)"
    )]
    RepositoryGone { location: String },
    /// A tile showed that the whole source does not fit the cube (another resolution): the
    /// write stopped at it rather than fail every tile the same way.
    #[error(
        "{tile}: {reason}; the write stopped after {tiles} tiles in a row that do not fit, none written, rather than fail every tile of the source the same way"
    )]
    SourceDoesNotFit {
        tile: String,
        reason: String,
        tiles: usize,
    },
    /// `tag --delete`: no such tag.
    #[error("there is no tag {name:?} (the tags: {tags})")]
    NoSuchTag { name: String, tags: String },
    /// `gc`: a branch or tag reaches a snapshot that names objects storage no longer has.
    #[error("{what}")]
    GcUnreadable {
        what: String,
        #[source]
        source: BoxError,
    },
    /// `extend`: another change of the arrays landed while the extension was made.
    #[error(
        "another commit changed the cube's arrays while year {year} was being added (another `extend`, or `overviews`, landed on {branch} meanwhile): nothing was added; `tilecube log` shows what landed, and if {year} is still to come after the cube's years, run `tilecube extend --year {year}` again"
    )]
    ExtendRaced {
        year: i32,
        branch: String,
        #[source]
        source: BoxError,
    },
    /// A writer announcement could not be encoded (`tilecube-writers/`).
    #[error("writer announcement: encoding")]
    Announcement {
        #[source]
        source: serde_json::Error,
    },
    /// `gc` with an age that would delete what a running (or staged) write may still commit.
    #[error(
        "gc --older-than {age} is refused: {writer}; give an age of at least {least} (or wait for it to end: `tilecube runs` shows the runs of this machine)"
    )]
    GcWouldTakeWrites {
        age: String,
        /// The writer, and since when it may commit what it uploaded.
        writer: Box<str>,
        least: String,
    },
    /// A write's announcement went unrefreshed long enough that a gc may have taken it for
    /// gone: what it uploaded before is not committed.
    #[error(
        "this write could not refresh its announcement in the repository for {secs} s (the process was stopped, or the storage unreachable), so a gc may have removed what it uploaded: its uncommitted tiles are not committed; write them again (`write --missing`)"
    )]
    WriterLapsed { secs: u64 },
    /// A write stopped as a whole by `cause`: what had landed at its checkpoints, and what not.
    #[error("{cause_text}; {landed_text}")]
    WriteStopped {
        cause_text: Box<str>,
        landed_text: Box<str>,
        /// Tiles committed before the stop, and those of the write not in the cube (written
        /// but not committed, or not written yet), as year/tile.
        tiles: Box<(Vec<String>, Vec<String>)>,
        #[source]
        cause: Box<CubeError>,
    },
}

/// What is wrong with the cube's layout, or with what was asked of it: the kinds of
/// [`CubeError::Layout`], each message starting "cube layout: ".
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cube layout: year {year} is not in the cube")]
    YearNotInCube { year: i32 },
    /// A level (0: the cube itself, then its overviews) the cube does not have.
    #[error("cube layout: the cube has no level {level}")]
    NoLevel { level: usize },
    /// A chunk was recorded for a level the cube does not have.
    #[error("cube layout: a chunk of level {level}, which the cube does not have")]
    ChunkOfNoLevel { level: usize },
    /// An array's path that Icechunk refuses; the message names it by `label` when given
    /// ("level path", "variable path"), else by the path itself.
    #[error("cube layout: {}", label.unwrap_or(path.as_str()))]
    NodePath {
        path: String,
        label: Option<&'static str>,
        #[source]
        source: icechunk::format::PathError,
    },
    #[error("cube layout: {path} is not an array")]
    NotAnArray { path: String },
    /// An array whose first axis does not hold the layout's years.
    #[error(
        "cube layout: {path} has shape {shape:?}, whose first axis should be the layout's {years} years"
    )]
    YearAxis {
        path: String,
        shape: Vec<u64>,
        years: usize,
    },
    /// The root group's attribute `name` does not read as a layout.
    #[error("cube layout: root attribute {name}")]
    Attribute {
        name: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cube layout: root attribute {name} is not a map")]
    AttributeNotAMap { name: &'static str },
    /// `extend`: the layout with the year appended does not read back as written.
    #[error("cube layout: root attribute {name} does not read back with year {year} appended")]
    YearNotAppended { name: &'static str, year: i32 },
    /// The layout could not be encoded as the root group's attribute (its message is the
    /// encoder's).
    #[error("cube layout: {source}")]
    Serialize {
        #[source]
        source: serde_json::Error,
    },
    /// The layout's CRS is not one GDAL knows.
    #[error("cube layout: CRS EPSG:{epsg}")]
    Crs {
        epsg: u32,
        #[source]
        source: gdal::errors::GdalError,
    },
    /// A tile size given for the cube is not the cube's.
    #[error(
        "cube layout: --tile-pixels {given} disagrees with the cube, whose tiles are {cube} px"
    )]
    TilePixelsMismatch { given: u64, cube: u64 },
    /// A level whose chunks would have an axis of no pixels.
    #[error("cube layout: empty chunk")]
    EmptyChunk,
    #[error("cube layout: a stored chunk decodes to {len} bytes, not {expected}")]
    ChunkSize { len: usize, expected: usize },
    /// The pyramid asked for is not the one laid out (a laid-out pyramid is kept).
    #[error(
        "cube layout: the cube's overviews are {} down to {} px wide, the preset asks for {} down to {} px: \
         a laid-out pyramid is not changed",
        cube.resampling.name(),
        cube.coarsest_width,
        asked.resampling.name(),
        asked.coarsest_width
    )]
    OverviewsDiffer {
        cube: super::Overviews,
        asked: super::Overviews,
    },
    /// A read of the whole cube too large to make, and no overview to read instead.
    #[error(
        "cube layout: the cube has no overviews and is {width}×{height} px: read a smaller --bbox, or, if its preset has a pyramid, build it with `tilecube overviews`"
    )]
    TooLargeNoOverviews { width: u64, height: u64 },
    /// A read of a level too large to make.
    #[error(
        "cube layout: level {level} (factor {factor}) is {width}×{height} px there: too large to read whole; choose a coarser level or a smaller box"
    )]
    LevelTooLarge {
        level: usize,
        factor: u64,
        width: u64,
        height: u64,
    },
}

impl LayoutError {
    /// An array path Icechunk refused, named in the message by `label` (or by the path
    /// itself when `None`).
    pub(crate) fn node_path(
        path: impl Into<String>,
        label: Option<&'static str>,
    ) -> impl FnOnce(icechunk::format::PathError) -> CubeError {
        let path = path.into();
        move |source| {
            CubeError::Layout(Self::NodePath {
                path,
                label,
                source,
            })
        }
    }
}

impl CubeError {
    /// The failure of a tile whose chunks this error kept from being written: the whole
    /// chain as its reason, transient as [`CubeError::is_transient`] decides.
    pub fn as_tile_error(&self) -> crate::source::TileError {
        crate::source::TileError::Write {
            reason: crate::error_chain(self),
            transient: self.is_transient(),
        }
    }

    /// Wrap an Icechunk or zarrs error with what was being done.
    pub(crate) fn icechunk(what: impl Into<String>, err: impl Into<BoxError>) -> Self {
        Self::Icechunk {
            what: what.into(),
            source: err.into(),
        }
    }

    /// Whether trying again could succeed: decided from the typed causes in the chain
    /// (I/O error kinds, HTTP errors of the object store), never from the text.
    pub fn is_transient(&self) -> bool {
        crate::fault::transient_cause(self).unwrap_or(false)
    }

    /// Whether the storage refused the write for reasons that hold for every write alike
    /// (told from the typed causes: I/O error kinds, the object store's denials).
    pub fn is_storage_refusal(&self) -> bool {
        crate::fault::refusal_cause(self)
    }

    /// Whether the cube a write wrote into is not there any more: laid out again at its
    /// branch, the branch moved off the write's base, or the repository removed (what it
    /// landed before is not in any cube there now).
    pub fn cube_replaced(&self) -> bool {
        match self {
            Self::CubeMadeAgain { .. } | Self::BaseGone { .. } | Self::RepositoryGone { .. } => {
                true
            }
            Self::WriteStopped { cause, .. } => cause.cube_replaced(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cube::Layout;
    use crate::cube::layout::LAYOUT_ATTR;

    #[test]
    fn a_caller_matches_a_layout_kind_and_reads_the_message_it_always_read() {
        let layout = Layout::glad();
        let e = layout.check_tile_pixels(Some(512)).unwrap_err();
        assert!(matches!(
            e,
            CubeError::Layout(LayoutError::TilePixelsMismatch { given: 512, cube })
                if cube == layout.tile_pixels
        ));
        assert_eq!(
            crate::error_chain(&e),
            format!(
                "cube layout: --tile-pixels 512 disagrees with the cube, whose tiles are {} px",
                layout.tile_pixels
            )
        );
        let e = CubeError::from(LayoutError::YearNotInCube { year: 1999 });
        assert_eq!(
            crate::error_chain(&e),
            "cube layout: year 1999 is not in the cube"
        );
    }

    #[test]
    fn a_kept_cause_prints_after_its_prefix_as_when_it_was_formatted_in() {
        // A path Icechunk refuses, named by its label or by itself: "prefix: cause", as the
        // text `format!("level path: {e}")` made.
        let refused = icechunk::format::Path::new("no-slash").unwrap_err();
        for (label, shown) in [(Some("level path"), "level path"), (None, "no-slash")] {
            let e = LayoutError::node_path("no-slash", label)(refused.clone());
            assert_eq!(
                crate::error_chain(&e),
                format!("cube layout: {shown}: {refused}")
            );
            let CubeError::Layout(LayoutError::NodePath { path, source, .. }) = &e else {
                panic!("{e:?}");
            };
            assert_eq!((path.as_str(), source), ("no-slash", &refused));
        }
        // A root attribute that is no layout: the decoder's words after the attribute's name.
        let mut attrs = serde_json::Map::new();
        attrs.insert(LAYOUT_ATTR.into(), serde_json::json!({"years": "none"}));
        let e = Layout::from_root_attributes(&attrs).unwrap_err();
        let decoded = serde_json::from_value::<Layout>(attrs[LAYOUT_ATTR].clone()).unwrap_err();
        assert_eq!(
            crate::error_chain(&e),
            format!("cube layout: root attribute {LAYOUT_ATTR}: {decoded}")
        );
        assert!(matches!(
            e,
            CubeError::Layout(LayoutError::Attribute {
                name: LAYOUT_ATTR,
                ..
            })
        ));
        // A serde error alone is the whole message, as `e.to_string()` made it.
        let encoding = serde_json::from_str::<u8>("x").unwrap_err();
        let text = encoding.to_string();
        let e = CubeError::from(LayoutError::Serialize { source: encoding });
        assert_eq!(crate::error_chain(&e), format!("cube layout: {text}"));
    }
}
