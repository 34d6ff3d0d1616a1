//! Tile names as a dataset spells them: a pattern of literal text and four fields, and the
//! corner of the tile the name gives.
//!
//! A pattern holds `{lat:0N}` and `{lon:0N}` (whole degrees, N digits, zero-padded),
//! `{NS}` and `{EW}` (the hemisphere letters; 0° is N and E), each once, and any literal text
//! between them: `{lat:02}{NS}_{lon:03}{EW}` spells `10N_020E`, `{NS}{lat:02}{EW}{lon:03}`
//! spells `N39E012`. Invariant: [`TileNaming::read`] of [`TileNaming::print`] gives the same
//! tile back, and a name is read only if printing what was read gives that very text (no
//! other padding, letter case or extra characters).

use std::fmt;

use super::TileName;

/// The corner of a tile its name gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Corner {
    /// The north-west corner (`10N_020E` spans 10N..0N).
    UpperLeft,
    /// The south-west corner (`N39E012` spans 39N..42N for 3° tiles).
    LowerLeft,
}

impl fmt::Display for Corner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::UpperLeft => "upper-left",
            Self::LowerLeft => "lower-left",
        })
    }
}

/// One piece of a name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Lat(usize),
    Lon(usize),
    NorthSouth,
    EastWest,
}

/// A tile-name pattern, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern {
    text: String,
    parts: Vec<Part>,
}

/// Why a pattern is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pattern:?} is not a tile-name pattern: {why}")]
pub struct PatternError {
    pub pattern: String,
    pub why: String,
}

/// The pattern of names by the upper-left corner in whole degrees (`10N_020E`), which
/// [`TileName`] displays.
pub const UPPER_LEFT_PATTERN: &str = "{lat:02}{NS}_{lon:03}{EW}";

impl NamePattern {
    /// Parse a pattern: each of `{lat:0N}`, `{lon:0N}`, `{NS}`, `{EW}` exactly once.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let bad = |why: String| PatternError {
            pattern: text.to_string(),
            why,
        };
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                parts.push(Part::Text(rest.to_string()));
                break;
            };
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .map(|c| open + c)
                .ok_or_else(|| bad(format!("{{ at {:?} is never closed", &rest[open..])))?;
            let field = &rest[open + 1..close];
            let digits = |spec: &str| -> Result<usize, PatternError> {
                let n = spec
                    .strip_prefix('0')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| (1..=3).contains(n));
                n.ok_or_else(|| {
                    bad(format!(
                        "{{{field}}}: give the digits as :0N with N from 1 to 3, like {{lat:02}}"
                    ))
                })
            };
            parts.push(match field.split_once(':') {
                Some(("lat", spec)) => Part::Lat(digits(spec)?),
                Some(("lon", spec)) => Part::Lon(digits(spec)?),
                None if field == "NS" => Part::NorthSouth,
                None if field == "EW" => Part::EastWest,
                _ => {
                    return Err(bad(format!(
                        "{{{field}}} is not a field (the fields are {{lat:0N}}, {{lon:0N}}, {{NS}} and {{EW}})"
                    )));
                }
            });
            rest = &rest[close + 1..];
        }
        for (what, count) in [
            (
                "{lat:0N}",
                parts.iter().filter(|p| matches!(p, Part::Lat(_))).count(),
            ),
            (
                "{lon:0N}",
                parts.iter().filter(|p| matches!(p, Part::Lon(_))).count(),
            ),
            (
                "{NS}",
                parts.iter().filter(|p| **p == Part::NorthSouth).count(),
            ),
            (
                "{EW}",
                parts.iter().filter(|p| **p == Part::EastWest).count(),
            ),
        ] {
            if count != 1 {
                return Err(bad(format!("{what} appears {count} times, not once")));
            }
        }
        if let Some(Part::Text(t)) = parts
            .iter()
            .find(|p| matches!(p, Part::Text(t) if t.contains(['/', '\\', '}'])))
        {
            return Err(bad(format!(
                "the text {t:?} holds a path separator or a brace"
            )));
        }
        Ok(Self {
            text: text.to_string(),
            parts,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The name of the corner at (`lat`, `lon`), or `None` if a field cannot hold it (too
    /// few digits).
    pub fn print(&self, lat: i32, lon: i32) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Lat(n) | Part::Lon(n) => {
                    let v = if matches!(part, Part::Lat(_)) {
                        lat
                    } else {
                        lon
                    };
                    let s = format!("{:0n$}", v.unsigned_abs(), n = *n);
                    if s.len() != *n {
                        return None;
                    }
                    out.push_str(&s);
                }
                Part::NorthSouth => out.push(if lat < 0 { 'S' } else { 'N' }),
                Part::EastWest => out.push(if lon < 0 { 'W' } else { 'E' }),
            }
        }
        Some(out)
    }

    /// The corner a name gives, if it is spelled exactly as this pattern prints.
    pub fn read(&self, name: &str) -> Option<(i32, i32)> {
        let (mut lat, mut lon, mut south, mut west) = (None, None, false, false);
        let mut rest = name;
        for part in &self.parts {
            match part {
                Part::Text(t) => rest = rest.strip_prefix(t.as_str())?,
                Part::Lat(n) | Part::Lon(n) => {
                    let digits = rest.get(..*n)?;
                    if !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let v: i32 = digits.parse().ok()?;
                    if matches!(part, Part::Lat(_)) {
                        lat = Some(v);
                    } else {
                        lon = Some(v);
                    }
                    rest = &rest[*n..];
                }
                Part::NorthSouth | Part::EastWest => {
                    let c = rest.chars().next()?;
                    let (pos, neg) = if *part == Part::NorthSouth {
                        ('N', 'S')
                    } else {
                        ('E', 'W')
                    };
                    let negative = match c {
                        c if c == pos => false,
                        c if c == neg => true,
                        _ => return None,
                    };
                    if *part == Part::NorthSouth {
                        south = negative;
                    } else {
                        west = negative;
                    }
                    rest = &rest[1..];
                }
            }
        }
        if !rest.is_empty() {
            return None;
        }
        let (lat, lon) = (lat?, lon?);
        let (lat, lon) = (
            if south { -lat } else { lat },
            if west { -lon } else { lon },
        );
        if !(-90..=90).contains(&lat) || !(-180..=180).contains(&lon) {
            return None;
        }
        // Exactly as printed: `S00` or `W000` is not a name (0° is N and E).
        (self.print(lat, lon).as_deref() == Some(name)).then_some((lat, lon))
    }
}

/// How a dataset names its tiles: a pattern and the corner it gives, for tiles of a side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileNaming {
    pub pattern: NamePattern,
    pub corner: Corner,
    /// The tiles' side in whole degrees (a lower-left name is its tile's upper edge minus
    /// this).
    pub tile_degrees: i32,
}

impl TileNaming {
    /// Names by the upper-left corner, as [`TileName`] displays them, of tiles of a side.
    pub fn upper_left(tile_degrees: i32) -> Self {
        Self {
            pattern: NamePattern::parse(UPPER_LEFT_PATTERN).expect("the built-in pattern parses"),
            corner: Corner::UpperLeft,
            tile_degrees,
        }
    }

    /// The dataset's name of a tile, or `None` if the pattern cannot spell its corner.
    pub fn print(&self, tile: TileName) -> Option<String> {
        let lat = match self.corner {
            Corner::UpperLeft => tile.lat,
            Corner::LowerLeft => tile.lat - self.tile_degrees,
        };
        self.pattern.print(lat, tile.lon)
    }

    /// The tile a name gives, if it is spelled exactly as the pattern prints.
    pub fn read(&self, name: &str) -> Option<TileName> {
        let (lat, lon) = self.pattern.read(name)?;
        let lat = match self.corner {
            Corner::UpperLeft => lat,
            Corner::LowerLeft => lat + self.tile_degrees,
        };
        Some(TileName::new(lat, lon))
    }

    /// Whether names are spelled as [`TileName`] displays them (upper-left, [`UPPER_LEFT_PATTERN`]).
    pub fn is_upper_left_default(&self) -> bool {
        self.corner == Corner::UpperLeft && self.pattern.as_str() == UPPER_LEFT_PATTERN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower_left() -> TileNaming {
        TileNaming {
            pattern: NamePattern::parse("{NS}{lat:02}{EW}{lon:03}").unwrap(),
            corner: Corner::LowerLeft,
            tile_degrees: 3,
        }
    }

    #[test]
    fn upper_left_names_print_and_read_back_as_tile_names_do() {
        let n = TileNaming::upper_left(10);
        for (lat, lon) in [(80, -180), (0, 0), (-50, 170), (10, 20), (-10, -60)] {
            let tile = TileName::new(lat, lon);
            let name = n.print(tile).unwrap();
            assert_eq!(name, tile.to_string());
            assert_eq!(n.read(&name), Some(tile));
        }
    }

    #[test]
    fn lower_left_names_give_the_tile_above_their_corner() {
        let n = lower_left();
        for (name, upper_lat, lon) in [
            ("N39E012", 42, 12),
            ("S03E009", 0, 9),
            ("N81W180", 84, -180),
            ("S60W180", -57, -180),
            ("N00E000", 3, 0),
        ] {
            let tile = n.read(name).unwrap_or_else(|| panic!("{name} reads"));
            assert_eq!(tile, TileName::new(upper_lat, lon), "{name}");
            assert_eq!(n.print(tile).as_deref(), Some(name));
        }
    }

    #[test]
    fn only_names_spelled_exactly_as_printed_are_read() {
        let n = lower_left();
        for bad in [
            "",
            "N39E12",
            "N039E012",
            "n39e012",
            "N39E012.tif",
            "X39E012",
            "S00E009",
            "N39W000",
            "N91E000",
            "N39E181",
            "N39_E012",
        ] {
            assert_eq!(n.read(bad), None, "{bad:?} read");
        }
        let u = TileNaming::upper_left(10);
        for bad in ["70n_180w", "7N_180W", "70N_1800W", " 70N_180W", "00S_010E"] {
            assert_eq!(u.read(bad), None, "{bad:?} read");
        }
    }

    #[test]
    fn a_pattern_that_cannot_spell_a_corner_prints_nothing() {
        let p = NamePattern::parse("{lat:02}{NS}{lon:02}{EW}").unwrap();
        assert_eq!(p.print(10, 99).as_deref(), Some("10N99E"));
        assert_eq!(p.print(10, 170), None);
    }

    #[test]
    fn malformed_patterns_are_refused_with_why() {
        for (pattern, says) in [
            ("{lat:02}{NS}_{lon:03}", "{EW} appears 0 times"),
            (
                "{lat:02}{NS}{lat:02}{EW}{lon:03}",
                "{lat:0N} appears 2 times",
            ),
            ("{lat:2}{NS}{EW}{lon:03}", "give the digits as :0N"),
            ("{lat:04}{NS}{EW}{lon:03}", "give the digits as :0N"),
            ("{row}{NS}{EW}{lon:03}", "{row} is not a field"),
            ("{lat:02}{NS}{EW}{lon:03", "never closed"),
            ("{lat:02}{NS}/{EW}{lon:03}", "path separator"),
        ] {
            let err = NamePattern::parse(pattern).unwrap_err().to_string();
            assert!(err.contains(says), "{pattern}: {err}");
        }
    }
}
