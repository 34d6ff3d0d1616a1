//! The cube in its Icechunk repository: layout, opening and creating, chunk writes, commits,
//! history and coverage, and the overview pyramid's levels (their metadata, the coarse levels'
//! refresh at commit, reads of a level, and building them for an older cube).
//!
//! The repository is the source of truth: the layout lives in the root group's attributes,
//! every commit that writes tiles records them in its snapshot properties, and the chunks
//! present in a snapshot say which regions hold data.

mod commit;
mod conventions;
mod coverage;
mod coverage_cache;
mod dataset;
mod error;
mod extend;
mod history;
mod hygiene;
mod init;
mod layout;
mod location;
mod lock;
mod merge;
mod overviews;
mod overviews_build;
mod releases;
mod repair;
mod repo;
mod session;
mod snapshots;
pub mod steps;
mod upgrade;
mod verify;
mod writer;
mod writers;

pub use coverage::{ChunkCounts, Coverage, CoverageCache, ManifestsListed, TileState};
pub use error::{BoxError, CubeError, LayoutError};
pub use extend::{Extension, check_new_year};
pub use history::{
    CarriedTiles, Commit, PlanTag, TileRecord, WrittenTiles, commit_message, written_properties,
    written_properties_with,
};
pub use hygiene::{CarryCommit, ExpireReport, GcReport, Removed, format_age, parse_age};
pub use layout::{Layout, Overviews, SPATIAL_REF_ATTRS_KEY};
pub use location::{RepoLocation, S3Settings, StorageRetries};
pub use lock::LOCK_FILE;
pub use merge::{Merger, limit_allocator_arenas};
pub use overviews::{LevelImage, MAX_LEVEL_READ};
pub use overviews_build::OverviewReport;
pub use releases::{MAX_TAG_LEN, Release, Released, check_tag_name, tag_name_problem};
pub use repair::RepairReport;
pub use repo::{Cube, InitOptions, SpecVersion};
pub use session::{Committed, Stager, WriteSession};
pub use snapshots::{TileKey, canonical_snapshot_id};
pub use upgrade::Upgrade;
pub use verify::{LostManifest, Verification};
pub use writer::{ChunkEncoder, EncodedChunk, PreparedUpload, TileChunks};
pub use writers::{
    Announced, Announcement, HEARTBEAT, LAPSE, SELF_LAPSE, STAGED_KEEP, WRITERS_PREFIX, WriterKind,
    human_age,
};
