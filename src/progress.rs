//! The headless write's one live progress line, for a terminal: tiles done of total, MB/s of
//! source pixels, the time left and the failures so far, redrawn in place at most ten times a
//! second. Failures, retries, commits and warnings are printed above it as lines of their own.
//! On a pipe, a log or with `--json`, the per-tile lines are printed instead (`cli`).

use std::io::Write;
use std::time::{Duration, Instant};

use tilecube::ingest::Event;
use tilecube::text::plural;

/// What the line shows.
#[derive(Debug, Default)]
pub struct Line {
    started: Option<Instant>,
    total: usize,
    done: usize,
    failed: usize,
    pixel_bytes: u64,
    drawn: Option<Instant>,
}

impl Line {
    /// The text of the line at `now`.
    pub fn text(&self, now: Instant) -> String {
        let secs = self
            .started
            .map(|s| now.duration_since(s).as_secs_f64())
            .unwrap_or(0.0);
        let rate = if secs > 0.0 {
            self.pixel_bytes as f64 / 1e6 / secs
        } else {
            0.0
        };
        let eta = if self.done > 0 && self.done < self.total {
            let left = secs / self.done as f64 * (self.total - self.done) as f64;
            format!("  ETA {}", hms(Duration::from_secs_f64(left)))
        } else {
            String::new()
        };
        format!(
            "tiles {}/{}  {rate:.0} MB/s{eta}  failed {}",
            self.done, self.total, self.failed
        )
    }

    /// Take one event; print what it says to `out` (the line redrawn, or a line above it).
    pub fn on_event(&mut self, ev: &Event, out: &mut impl Write) {
        let now = Instant::now();
        match ev {
            Event::Started { tiles, .. } => {
                self.started = Some(now);
                self.total = *tiles;
            }
            Event::TileWritten { pixel_bytes, .. } => {
                self.done += 1;
                self.pixel_bytes += pixel_bytes;
            }
            Event::TileFailed { .. } => {
                self.done += 1;
                self.failed += 1;
            }
            Event::Finished { .. } => {
                let _ = writeln!(out, "\r\x1b[K{}", self.text(now));
                return;
            }
            _ => {}
        }
        // Every event but a written tile keeps its line, above the live one.
        let above = match ev {
            Event::TileWritten { .. } => None,
            ev => event_line(ev),
        };
        let due = self
            .drawn
            .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(100));
        if above.is_none() && !due {
            return;
        }
        if let Some(line) = above {
            let _ = writeln!(out, "\r\x1b[K{line}");
        }
        let _ = write!(out, "\r\x1b[K{}", self.text(now));
        let _ = out.flush();
        self.drawn = Some(now);
    }
}

/// The line an event prints on its own (on a pipe, every one of them; on a terminal, all but
/// the written tiles, which the live line counts).
pub fn event_line(ev: &Event) -> Option<String> {
    Some(match ev {
        Event::Started { tiles, threads } => format!(
            "writing {} on {}",
            plural(*tiles, "tile"),
            plural(*threads, "thread")
        ),
        Event::TileWritten {
            year,
            tile,
            chunks_stored,
            bytes,
            ..
        } => format!(
            "  {year}/{tile}: {}, {:.1} MB",
            plural(*chunks_stored as usize, "chunk"),
            *bytes as f64 / 1e6
        ),
        Event::TileFailed {
            year, tile, error, ..
        } => format!("  {year}/{tile}: FAILED: {error}"),
        Event::TileRetry {
            year,
            tile,
            attempt,
            error,
        } => format!("  {year}/{tile}: retry {attempt} after: {error}"),
        Event::Committed {
            snapshot, tiles, ..
        } => format!("committed {} as {snapshot}", plural(*tiles, "tile")),
        Event::Staged { part, tiles } => format!("staged {} as {part}", plural(*tiles, "tile")),
        Event::Warning { message } => format!("warning: {message}"),
        _ => return None,
    })
}

fn hms(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s / 60 % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> tilecube::grid::TileName {
        s.parse().unwrap()
    }

    #[test]
    fn the_line_counts_tiles_failures_and_rate_and_prints_failures_above_it() {
        let mut line = Line::default();
        let mut out = Vec::new();
        line.on_event(
            &Event::Started {
                tiles: 4,
                threads: 2,
            },
            &mut out,
        );
        line.on_event(
            &Event::TileWritten {
                year: 2000,
                tile: t("00N_000E"),
                chunks_stored: 16,
                bytes: 10,
                pixel_bytes: 1_000_000,
            },
            &mut out,
        );
        line.on_event(
            &Event::TileFailed {
                year: 2000,
                tile: t("10N_010E"),
                error: "has 3 bands; expected 1".into(),
                transient: false,
                attempts: 1,
            },
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("writing 4 tiles on 2 threads\n"), "{text:?}");
        assert!(
            text.contains("\r\x1b[K  2000/10N_010E: FAILED: has 3 bands; expected 1\n"),
            "a failure is a line of its own: {text:?}"
        );
        assert!(
            !text.contains("00N_000E"),
            "no per-tile line on a terminal: {text:?}"
        );
        let now = line.started.unwrap() + Duration::from_secs(2);
        assert_eq!(line.text(now), "tiles 2/4  0 MB/s  ETA 0m02s  failed 1");
        assert_eq!(hms(Duration::from_secs(3725)), "1h02m");
    }
}
