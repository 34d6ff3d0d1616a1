//! Tile lists: one path or URL per line, as publishers ship them (a year's, a
//! layer's).
//!
//! Each line names a tile by its file name, spelled as the preset's file template spells it
//! ([`FileName`]: `…/2000/70N_180W.tif` for `{tile}.tif`, `…/Forest_gain_10N_020E.tif`
//! for `Forest_{layer}_{tile}.tif`). Blank lines are skipped,
//! repeated tiles are kept once, and a line that names no tile of the grid is reported with
//! its line number and left out, so one bad line never stops the good ones.

use std::collections::BTreeSet;

use crate::grid::{Grid, TileName};

/// A line of a tile list that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListProblem {
    pub line: usize,
    pub text: String,
    pub reason: String,
}

impl std::fmt::Display for ListProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {:?}: {}", self.line, self.text, self.reason)
    }
}

/// A tile's file name as the source spells it: the text around `{tile}` in the last step of
/// its file template (year, parts and layer filled in). Extensions compare without case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    pub prefix: String,
    pub suffix: String,
}

impl FileName {
    /// The file name of a filled template's last step (`{tile}` left in it).
    pub fn of_template(filled: &str) -> Self {
        let last = filled.rsplit(['/', '\\']).next().unwrap_or(filled);
        let (prefix, suffix) = last.split_once("{tile}").unwrap_or((last, ""));
        Self {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        }
    }

    /// `{tile}.tif`: a file named by its tile alone.
    pub fn tif() -> Self {
        Self::of_template("{tile}.tif")
    }

    /// The tile's name in a file name spelled this way.
    fn name_in<'a>(&self, file: &'a str) -> Option<&'a str> {
        let rest = file.strip_prefix(self.prefix.as_str())?;
        let cut = rest.len().checked_sub(self.suffix.len())?;
        (rest.is_char_boundary(cut) && rest[cut..].eq_ignore_ascii_case(&self.suffix))
            .then(|| &rest[..cut])
    }
}

impl std::fmt::Display for FileName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{{tile}}{}", self.prefix, self.suffix)
    }
}

/// The tiles a list names, in the list's order, and the lines left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TileList {
    pub tiles: Vec<TileName>,
    pub problems: Vec<ListProblem>,
}

impl TileList {
    /// Parse a list's text against a grid, its lines naming files spelled as `file`. A
    /// UTF-8 byte-order mark (as some editors save) is not part of the first line.
    pub fn parse(text: &str, grid: &Grid, file: &FileName) -> Self {
        let spelled = file;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut seen = BTreeSet::new();
        let mut out = Self::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let problem = |reason: String| ListProblem {
                line: i + 1,
                text: line.chars().take(120).collect(),
                reason,
            };
            let file = line.rsplit(['/', '\\']).next().unwrap_or(line);
            let Some(stem) = spelled.name_in(file) else {
                out.problems
                    .push(problem(format!("does not name a file like {spelled}")));
                continue;
            };
            let tile = match stem.parse::<TileName>() {
                Ok(t) => t,
                Err(e) => {
                    out.problems.push(problem(e.to_string()));
                    continue;
                }
            };
            if let Err(e) = grid.cell(tile) {
                out.problems.push(problem(e.to_string()));
                continue;
            }
            if !seen.insert(tile) {
                out.problems
                    .push(problem(format!("tile {tile} is listed again; kept once")));
                continue;
            }
            out.tiles.push(tile);
        }
        out
    }

    pub fn contains(&self, tile: TileName) -> bool {
        self.tiles.contains(&tile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset::Preset;

    #[test]
    fn blank_duplicate_and_garbage_lines_are_reported_and_skipped() {
        let grid = Grid::from_preset(&Preset::glad(), None).unwrap();
        let text = "https://storage.googleapis.com/b/GLCLU2000-2020/v2/2000/70N_180W.tif\n\
                    \n   \n\
                    gs://b/v2/2000/00N_010E.tif\r\n\
                    2000/70N_180W.tif\n\
                    this is not a tile\n\
                    2000/75N_180W.tif\n\
                    2000/notatile.tif\n\
                    50S_170E.tif\n";
        let list = TileList::parse(text, &grid, &FileName::tif());
        let names: Vec<String> = list.tiles.iter().map(|t| t.to_string()).collect();
        assert_eq!(names, ["70N_180W", "00N_010E", "50S_170E"]);
        let lines: Vec<usize> = list.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [5, 6, 7, 8]);
        assert!(list.problems[0].to_string().contains("listed again"));
        assert!(list.problems[1].reason.contains(".tif"));
        assert!(list.problems[2].reason.contains("75N_180W"));
        assert!(list.problems[3].reason.contains("notatile"));
    }

    #[test]
    fn a_byte_order_mark_does_not_cost_the_first_tile() {
        let grid = Grid::from_preset(&Preset::glad(), None).unwrap();
        let list = TileList::parse(
            "\u{feff}2000/70N_180W.tif\r\n2000/00N_010E.TIF\r\n",
            &grid,
            &FileName::tif(),
        );
        assert_eq!(list.tiles.len(), 2, "{:?}", list.problems);
        assert!(list.problems.is_empty());
    }

    #[test]
    fn lines_are_taken_by_the_file_name_the_template_spells() {
        let grid = Grid::from_preset(&Preset::glad(), None).unwrap();
        let spelled = FileName::of_template("Hansen_GFC-2023-v1.11_gain_{tile}.tif");
        let text = "https://storage.googleapis.com/earthenginepartners-hansen/GFC-2023-v1.11/Hansen_GFC-2023-v1.11_gain_10N_020E.tif\n\
                    Hansen_GFC-2023-v1.11_lossyear_10N_030E.tif\n\
                    x/Hansen_GFC-2023-v1.11_gain_00N_000E.tif\n";
        let list = TileList::parse(text, &grid, &spelled);
        let names: Vec<String> = list.tiles.iter().map(|t| t.to_string()).collect();
        assert_eq!(names, ["10N_020E", "00N_000E"]);
        assert_eq!(
            list.problems[0].reason,
            "does not name a file like Hansen_GFC-2023-v1.11_gain_{tile}.tif"
        );
    }
}
