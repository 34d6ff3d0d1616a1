pub mod ancestry_graph;
mod ansi;
mod svg;

pub use ancestry_graph::AncestryGraph;
