//! Overviews: the multiscale pyramid of a cube (factors 2, 4, 8, … down to a level at most
//! 2,048 pixels wide), each level the 2×2 reduction of the one before.
//!
//! This module holds the parts every face of the pyramid shares: its geometry ([`levels`])
//! and the reduction ([`reduce`]). Invariants are stated in each.

pub mod levels;
pub mod reduce;

pub use levels::{Level, MAX_COARSEST_WIDTH, pyramid};
pub use reduce::{Resampling, reduce, reduced_size};
