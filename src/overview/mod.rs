//! Overviews: the multiscale pyramid of a cube (factors 2, 4, 8, … down to a level at most
//! 2,048 pixels wide), each level the 2×2 reduction of the one before.
//!
//! This module holds the parts every face of the pyramid shares: its geometry ([`levels`]),
//! the reduction ([`reduce`]), a tile's levels computed strip by strip as its pixels are
//! decoded ([`stream`]) and cut into the levels' chunks ([`tile`]). Invariants are stated in each.

pub mod levels;
pub mod picture;
pub mod reduce;
pub mod stream;
pub mod tile;

pub use levels::{Level, MAX_COARSEST_WIDTH, pyramid, pyramid_to};
pub use reduce::{Resampling, reduce, reduced_size};
pub use stream::{LevelRows, StripPyramid};
pub use tile::{LevelChunk, TileLevel, TilePyramid};
