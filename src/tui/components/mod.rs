//! The console by feature: each part of the screen is a module that owns its state (held in
//! [`crate::tui::state::App`]), the commands it takes (resolved by the one key table,
//! [`crate::tui::keys`], and dispatched here by `update` to the panel focused or the popup
//! open) and its drawing (called by [`crate::tui::view`], which only lays the screen out).
//!
//! - [`grid`]: the tile grid — year, cursor, filter; moving, selecting, writing;
//! - [`map`]: the world map in the grid's place — what is shown, read and being read;
//! - [`history`]: the history panel — the snapshot chosen; open, diff, tag;
//! - [`runs`]: the runs panel — the newest run, the failures; Enter goes to one;
//! - [`details`]: the tile's details, the panel's and the tile popup's;
//! - [`legend`]: the tiles per state (or the map's classes);
//! - [`popups`]: the dialogs, one module each;
//! - [`look`]: the colours and frames they share.
//!
//! Invariant: a component changes the state only from `update` (its commands, and the
//! results of the work it asked for) and draws only from a shared borrow of it.

pub mod details;
pub mod grid;
pub mod history;
pub mod legend;
pub mod look;
pub mod map;
pub mod popups;
pub mod runs;
