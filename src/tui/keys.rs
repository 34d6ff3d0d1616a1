//! The console's one table of keys: what each key does where, how the footer and the `?` help
//! name it. `update` looks commands up here, and the footer and the help are generated from
//! here, so the three can never disagree.
//!
//! Invariant: within one scope a key maps to one command; the year keys are `1`..`n` for the
//! cube's `n` years (at most nine).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Left,
    Right,
    Up,
    Down,
    /// The n-th year of the cube (0-based).
    Year(usize),
    PrevYear,
    NextYear,
    Select,
    SelectAll,
    /// Every listed tile not written, in every year.
    SelectAllYears,
    SelectFailed,
    SelectChanged,
    /// The tile's whole story in a popup: state, source, the whole failure reason.
    TileDetails,
    /// The cursor to the next failed tile (any year).
    NextFailed,
    /// The cursor to the next listed tile not written (this year first).
    NextMissing,
    /// Type a tile's name and go there.
    Find,
    /// Copy the tile's name (grid) or the snapshot's id (history) to the clipboard (OSC 52).
    Copy,
    /// In the runs panel: the cursor to the run's first failed tile.
    JumpFailed,
    /// The newest run's log, scrollable.
    Log,
    /// Show only the failed and re-issued tiles (again: all).
    Filter,
    /// Clear the selection, or leave a browsed snapshot.
    Back,
    Write,
    Cancel,
    QuickLook,
    /// The world map in place of the grid, and back.
    Map,
    Focus,
    Open,
    Diff,
    Tag,
    /// The scale-out plan's progress.
    Plan,
    Help,
    Quit,
    /// In a dialog that only shows (help, quick-look, the plan): close it.
    Close,
    /// In a confirmation: go ahead (in the leave dialog: leave the runs going).
    Yes,
    /// In a confirmation: do not (in the leave dialog: stay).
    No,
    /// In the leave dialog: cancel the runs going, then leave.
    CancelAndLeave,
}

impl Command {
    /// Whether the command acts on the repository, and so waits until it is open and its
    /// head's tiles are read (moving, changing year, help and quitting never wait).
    pub fn needs_repository(self) -> bool {
        matches!(
            self,
            Self::SelectAll
                | Self::SelectAllYears
                | Self::Write
                | Self::QuickLook
                | Self::Open
                | Self::Diff
                | Self::Tag
        )
    }
}

/// Where a key acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Wherever the focus is.
    Any,
    /// The tile grid (and the session panel).
    Grid,
    /// The history panel.
    History,
    /// The runs panel (grid keys hold there too).
    Runs,
    /// A dialog that only shows: help, quick-look, the plan.
    Dialog,
    /// A yes/no confirmation (the write's).
    Confirm,
    /// The dialog on leaving with runs going.
    Leave,
}

/// Which footer line shows a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Footer {
    Grid,
    History,
    /// A snapshot browsed read-only, grid focused.
    Browse,
    /// The runs panel focused.
    Runs,
}

/// What the console offers now, beyond the table: keys that would do nothing are neither
/// in the footer nor in the help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The cube's years (the year keys are `1`..`n`).
    pub years: usize,
    /// A plan is watched (`S`).
    pub plan: bool,
    /// Runs are going (`x`).
    pub runs_going: bool,
    /// Some tile failed (the runs panel's `Enter` goes to one).
    pub failures: bool,
    /// Some run is known (`L` shows its log).
    pub runs: bool,
}

impl Offer {
    fn shows(&self, command: Command) -> bool {
        match command {
            Command::Plan => self.plan,
            Command::Cancel => self.runs_going,
            Command::JumpFailed => self.failures,
            Command::Log => self.runs,
            _ => true,
        }
    }
}

/// The keys of a binding.
#[derive(Debug, Clone, Copy)]
pub enum Keys {
    Codes(&'static [KeyCode]),
    /// `1`..`9`, one per year of the cube.
    YearDigits,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub command: Command,
    pub scope: Scope,
    pub keys: Keys,
    /// The keys as the help names them.
    pub label: &'static str,
    /// The keys as the footer names them (shorter).
    pub short: &'static str,
    /// What the help says the key does; empty for a key the help names with another's
    /// (the arrows, `]` next to `[`).
    pub help: &'static str,
    /// The footers that show the key, each with its word there.
    pub footer: &'static [(Footer, &'static str)],
}

use KeyCode::{Char, Down, Enter, Esc, Left, Right, Tab, Up};

/// The table. Its order is the footer's and the help's order.
pub const BINDINGS: &[Binding] = &[
    Binding {
        command: Command::Left,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Left, Char('h')]),
        label: "←↓↑→ hjkl",
        short: "←↓↑→",
        help: "move the cursor",
        footer: &[(Footer::Grid, "move")],
    },
    Binding {
        command: Command::Right,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Right, Char('l')]),
        label: "→ / l",
        short: "→",
        help: "",
        footer: &[],
    },
    Binding {
        command: Command::Up,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Up, Char('k')]),
        label: "↑ / k",
        short: "↑",
        help: "",
        footer: &[],
    },
    Binding {
        command: Command::Down,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Down, Char('j')]),
        label: "↓ / j",
        short: "↓",
        help: "",
        footer: &[],
    },
    Binding {
        command: Command::Up,
        scope: Scope::History,
        keys: Keys::Codes(&[Up, Char('k')]),
        label: "↑↓ jk",
        short: "↑↓",
        help: "history: choose snapshot",
        footer: &[(Footer::History, "snapshot")],
    },
    Binding {
        command: Command::Down,
        scope: Scope::History,
        keys: Keys::Codes(&[Down, Char('j')]),
        label: "↓ / j",
        short: "↓",
        help: "",
        footer: &[],
    },
    Binding {
        command: Command::Year(0),
        scope: Scope::Any,
        keys: Keys::YearDigits,
        label: "1-9, [ ]",
        short: "1-9",
        help: "change year",
        footer: &[(Footer::Grid, "year")],
    },
    Binding {
        command: Command::PrevYear,
        scope: Scope::Any,
        keys: Keys::Codes(&[Char('[')]),
        label: "[",
        short: "[",
        help: "",
        footer: &[],
    },
    Binding {
        command: Command::NextYear,
        scope: Scope::Any,
        keys: Keys::Codes(&[Char(']')]),
        label: "]",
        short: "]",
        help: "",
        footer: &[],
    },
    Binding {
        command: Command::Select,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char(' ')]),
        label: "space",
        short: "space",
        help: "select / unselect tile",
        footer: &[(Footer::Grid, "select")],
    },
    Binding {
        command: Command::SelectAll,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('a')]),
        label: "a",
        short: "a",
        help: "select year's unwritten",
        footer: &[(Footer::Grid, "all")],
    },
    Binding {
        command: Command::SelectAllYears,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('A')]),
        label: "A",
        short: "A",
        help: "... of every year",
        footer: &[],
    },
    Binding {
        command: Command::SelectFailed,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('f')]),
        label: "f",
        short: "f",
        help: "select failed tiles",
        footer: &[(Footer::Grid, "failed")],
    },
    Binding {
        command: Command::SelectChanged,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('C')]),
        label: "C",
        short: "C",
        help: "select re-issued tiles (%)",
        footer: &[],
    },
    Binding {
        command: Command::TileDetails,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Enter]),
        label: "Enter",
        short: "Enter",
        help: "tile details, whole error",
        footer: &[],
    },
    Binding {
        command: Command::NextFailed,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('n')]),
        label: "n / N",
        short: "n",
        help: "next failed / unwritten",
        footer: &[],
    },
    Binding {
        command: Command::NextMissing,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('N')]),
        label: "N",
        short: "N",
        help: "",
        footer: &[],
    },
    Binding {
        command: Command::Find,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('/')]),
        label: "/",
        short: "/",
        help: "go to a tile by name",
        footer: &[(Footer::Grid, "find")],
    },
    Binding {
        command: Command::JumpFailed,
        scope: Scope::Runs,
        keys: Keys::Codes(&[Enter]),
        label: "Enter",
        short: "Enter",
        help: "runs: go to failed tile",
        footer: &[(Footer::Runs, "failed tile")],
    },
    Binding {
        command: Command::Write,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('w')]),
        label: "w",
        short: "w",
        help: "write the selection",
        footer: &[(Footer::Grid, "write")],
    },
    Binding {
        command: Command::Cancel,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('x')]),
        label: "x",
        short: "x",
        help: "cancel runs (asks first)",
        footer: &[(Footer::Grid, "cancel"), (Footer::Runs, "cancel")],
    },
    Binding {
        command: Command::QuickLook,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('p')]),
        label: "p",
        short: "p",
        help: "quick-look of the tile",
        footer: &[(Footer::Grid, "look")],
    },
    Binding {
        command: Command::Map,
        scope: Scope::Any,
        keys: Keys::Codes(&[Char('m')]),
        label: "m",
        short: "m",
        help: "world map / tile grid",
        footer: &[(Footer::Grid, "map"), (Footer::Browse, "map")],
    },
    Binding {
        command: Command::Open,
        scope: Scope::History,
        keys: Keys::Codes(&[Enter]),
        label: "Enter",
        short: "Enter",
        help: "history: open read-only",
        footer: &[(Footer::History, "open")],
    },
    Binding {
        command: Command::Diff,
        scope: Scope::History,
        keys: Keys::Codes(&[Char('d')]),
        label: "d",
        short: "d",
        help: "history: diff with open one",
        footer: &[(Footer::History, "diff")],
    },
    Binding {
        command: Command::Tag,
        scope: Scope::History,
        keys: Keys::Codes(&[Char('t')]),
        label: "t",
        short: "t",
        help: "history: tag the snapshot",
        footer: &[(Footer::History, "tag")],
    },
    Binding {
        command: Command::Log,
        scope: Scope::Any,
        keys: Keys::Codes(&[Char('L')]),
        label: "L",
        short: "L",
        help: "the newest run's log",
        footer: &[(Footer::Runs, "log")],
    },
    Binding {
        command: Command::Filter,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('F')]),
        label: "F",
        short: "F",
        help: "only failed / re-issued",
        footer: &[],
    },
    Binding {
        command: Command::Copy,
        scope: Scope::Any,
        keys: Keys::Codes(&[Char('y')]),
        label: "y",
        short: "y",
        help: "copy tile name / snap id",
        footer: &[(Footer::History, "copy")],
    },
    Binding {
        command: Command::Back,
        scope: Scope::Any,
        keys: Keys::Codes(&[Esc]),
        label: "Esc",
        short: "Esc",
        help: "clear selection / to head",
        footer: &[(Footer::History, "head"), (Footer::Browse, "back to head")],
    },
    Binding {
        command: Command::Focus,
        scope: Scope::Any,
        keys: Keys::Codes(&[Tab]),
        label: "Tab",
        short: "Tab",
        help: "focus grid, history, runs",
        footer: &[
            (Footer::Grid, "panel"),
            (Footer::History, "focus"),
            (Footer::Browse, "history"),
            (Footer::Runs, "focus"),
        ],
    },
    Binding {
        command: Command::Plan,
        scope: Scope::Any,
        keys: Keys::Codes(&[Char('S')]),
        label: "S",
        short: "S",
        help: "shards of the plan (--plan)",
        footer: &[],
    },
    Binding {
        command: Command::Help,
        scope: Scope::Any,
        keys: Keys::Codes(&[Char('?')]),
        label: "?",
        short: "?",
        help: "this help",
        footer: &[
            (Footer::Grid, "help"),
            (Footer::History, "help"),
            (Footer::Browse, "help"),
        ],
    },
    Binding {
        command: Command::Quit,
        scope: Scope::Any,
        keys: Keys::Codes(&[Char('q')]),
        label: "q Ctrl-C",
        short: "q",
        help: "quit",
        footer: &[
            (Footer::Grid, "quit"),
            (Footer::History, "quit"),
            (Footer::Browse, "quit"),
        ],
    },
    Binding {
        command: Command::Close,
        scope: Scope::Dialog,
        keys: Keys::Codes(&[
            Esc,
            Enter,
            Char('q'),
            Char('?'),
            Char('p'),
            Char('S'),
            Char('L'),
        ]),
        label: "Esc",
        short: "Esc",
        help: "",
        footer: &[],
    },
    Binding {
        command: Command::Yes,
        scope: Scope::Confirm,
        keys: Keys::Codes(&[Enter, Char('y'), Char('Y')]),
        label: "Enter / y",
        short: "Enter",
        help: "",
        footer: &[],
    },
    Binding {
        command: Command::No,
        scope: Scope::Confirm,
        keys: Keys::Codes(&[Esc, Char('n'), Char('N')]),
        label: "Esc / n",
        short: "Esc",
        help: "",
        footer: &[],
    },
    Binding {
        command: Command::Yes,
        scope: Scope::Leave,
        keys: Keys::Codes(&[Enter, Char('y'), Char('Y'), Char('l')]),
        label: "Enter",
        short: "Enter",
        help: "",
        footer: &[],
    },
    Binding {
        command: Command::CancelAndLeave,
        scope: Scope::Leave,
        keys: Keys::Codes(&[Char('c'), Char('x')]),
        label: "c",
        short: "c",
        help: "",
        footer: &[],
    },
    Binding {
        command: Command::No,
        scope: Scope::Leave,
        keys: Keys::Codes(&[Esc, Char('n'), Char('N')]),
        label: "Esc",
        short: "Esc",
        help: "",
        footer: &[],
    },
];
impl Binding {
    /// The keys as the help names them, for a cube of `years` years.
    pub fn label(&self, years: usize) -> String {
        match self.keys {
            Keys::YearDigits => format!("{}, [ ]", year_keys(years)),
            Keys::Codes(_) => self.label.to_string(),
        }
    }

    /// The keys as the footer names them.
    pub fn short(&self, years: usize) -> String {
        match self.keys {
            Keys::YearDigits => year_keys(years),
            Keys::Codes(_) => self.short.to_string(),
        }
    }

    /// Whether the binding holds in `scope`: the keys of `Any` hold in the panels, never in
    /// a dialog, whose keys are its own; the grid's keys hold in the runs panel too.
    fn applies(&self, scope: Scope) -> bool {
        let dialog = matches!(scope, Scope::Dialog | Scope::Confirm | Scope::Leave);
        self.scope == scope
            || (self.scope == Scope::Any && !dialog)
            || (self.scope == Scope::Grid && scope == Scope::Runs)
    }
}

fn year_keys(years: usize) -> String {
    match years.min(9) {
        0 | 1 => "1".into(),
        n => format!("1-{n}"),
    }
}

/// The command of a key in a scope, for a cube of `years` years.
pub fn command(scope: Scope, key: &KeyEvent, years: usize) -> Option<Command> {
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return (key.code == Char('c')).then_some(Command::Quit);
    }
    // The scope's own keys first (Enter in the runs panel), then those that hold there too.
    let own = BINDINGS.iter().filter(|b| b.scope == scope);
    let shared = BINDINGS
        .iter()
        .filter(|b| b.scope != scope && b.applies(scope));
    own.chain(shared).find_map(|b| match b.keys {
        Keys::Codes(codes) => codes.contains(&key.code).then_some(b.command),
        Keys::YearDigits => match key.code {
            Char(c @ '1'..='9') => {
                let i = c as usize - '1' as usize;
                (i < years).then_some(Command::Year(i))
            }
            _ => None,
        },
    })
}

/// The footer's last words, always shown whatever the width.
const FOOTER_TAIL: &str = "? help  q quit";

/// Which keys a narrow footer keeps first (lower first); the rest keep the table's order.
fn footer_rank(command: Command) -> u8 {
    match command {
        Command::Cancel => 0,
        Command::Write | Command::Open | Command::Back => 1,
        Command::Select
        | Command::Up
        | Command::Left
        | Command::Year(_)
        | Command::JumpFailed
        | Command::Focus => 2,
        Command::Find | Command::Diff | Command::Map => 3,
        _ => 5,
    }
}

/// A footer line at most `width` characters: the keys this footer shows, as many as fit
/// before `? help  q quit` (which always show), the most needed first (`x` while runs
/// go, `w`, `Enter`), in the table's order.
pub fn footer(which: Footer, offer: Offer, width: usize) -> String {
    let prefix = match which {
        Footer::Browse if width >= 40 => "read-only snapshot",
        _ => "",
    };
    let items: Vec<(usize, u8, String)> = BINDINGS
        .iter()
        .enumerate()
        .filter(|(_, b)| !matches!(b.command, Command::Help | Command::Quit))
        .filter(|(_, b)| offer.shows(b.command))
        .filter_map(|(i, b)| {
            let (_, word) = b.footer.iter().find(|(f, _)| *f == which)?;
            let item = format!("{} {word}", b.short(offer.years));
            Some((i, footer_rank(b.command), item.trim_end().to_string()))
        })
        .collect();
    let mut room = width
        .saturating_sub(FOOTER_TAIL.chars().count() + 2)
        .saturating_sub(prefix.chars().count());
    let mut by_rank: Vec<&(usize, u8, String)> = items.iter().collect();
    by_rank.sort_by_key(|(i, rank, _)| (*rank, *i));
    let mut kept = Vec::new();
    for item in by_rank {
        let cost = item.2.chars().count() + 2;
        if cost <= room {
            room -= cost;
            kept.push(item);
        }
    }
    kept.sort_by_key(|(i, _, _)| *i);
    let mut parts: Vec<&str> = Vec::new();
    if !prefix.is_empty() {
        parts.push(prefix);
    }
    parts.extend(kept.iter().map(|(_, _, t)| t.as_str()));
    parts.push(FOOTER_TAIL);
    parts.join("  ")
}

/// The help's lines: (keys, what they do), in the table's order, for the keys offered.
pub fn help(offer: Offer) -> Vec<(String, &'static str)> {
    BINDINGS
        .iter()
        .filter(|b| !b.help.is_empty() && offer.shows(b.command))
        .map(|b| (b.label(offer.years), b.help))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn every_key_of_the_table_resolves_to_its_own_command() {
        for b in BINDINGS {
            let scope = match b.scope {
                Scope::Any => Scope::Grid,
                s => s,
            };
            match b.keys {
                Keys::Codes(codes) => {
                    for code in codes {
                        assert_eq!(
                            command(scope, &key(*code), 5),
                            Some(b.command),
                            "{code:?} in {scope:?}"
                        );
                    }
                }
                Keys::YearDigits => {
                    assert_eq!(command(scope, &key(Char('1')), 5), Some(Command::Year(0)));
                    assert_eq!(command(scope, &key(Char('5')), 5), Some(Command::Year(4)));
                }
            }
        }
    }

    fn offer(years: usize) -> Offer {
        Offer {
            years,
            plan: false,
            runs_going: false,
            failures: false,
            runs: false,
        }
    }

    #[test]
    fn year_keys_follow_the_cubes_years() {
        assert_eq!(
            command(Scope::Grid, &key(Char('2')), 2),
            Some(Command::Year(1))
        );
        assert_eq!(
            command(Scope::Grid, &key(Char('3')), 2),
            None,
            "no third year"
        );
        assert!(footer(Footer::Grid, offer(2), 200).contains("1-2 year"));
        assert!(footer(Footer::Grid, offer(5), 200).contains("1-5 year"));
        assert!(help(offer(7)).iter().any(|(k, _)| k == "1-7, [ ]"));
    }

    #[test]
    fn footers_and_help_are_generated_from_the_table() {
        // Every footer word and every help line comes from a binding of the table, and every
        // binding is in the help.
        let all = Offer {
            years: 5,
            plan: true,
            runs_going: true,
            failures: true,
            runs: true,
        };
        let h = help(all);
        let described: Vec<_> = BINDINGS.iter().filter(|b| !b.help.is_empty()).collect();
        assert_eq!(h.len(), described.len());
        // Two columns of them and the glyphs fit an 80x24 terminal.
        assert!(h.len() <= 28, "{} help lines", h.len());
        for (label, what) in &h {
            assert!(
                label.chars().count() <= 9,
                "{label:?} is too long for the help"
            );
            assert!(
                what.chars().count() <= 27,
                "{what:?} is too long for the help"
            );
        }
        for (b, (label, what)) in described.iter().zip(&h) {
            assert_eq!(*label, b.label(5));
            assert_eq!(*what, b.help);
        }
        for b in BINDINGS {
            for (which, word) in b.footer {
                let line = footer(*which, all, 400);
                let item = format!("{} {word}", b.short(5));
                assert!(
                    line.contains(item.trim_end()),
                    "{which:?} footer lacks {item:?}: {line}"
                );
            }
        }
        assert_eq!(
            footer(Footer::Grid, offer(5), 400),
            "←↓↑→ move  1-5 year  space select  a all  f failed  / find  w write  p look  m map  Tab panel  ? help  q quit"
        );
        assert_eq!(
            footer(Footer::History, offer(5), 400),
            "↑↓ snapshot  Enter open  d diff  t tag  y copy  Esc head  Tab focus  ? help  q quit"
        );
        assert_eq!(
            footer(Footer::Browse, offer(5), 400),
            "read-only snapshot  m map  Esc back to head  Tab history  ? help  q quit"
        );
    }

    #[test]
    fn help_and_quit_always_show_and_the_footer_fits_its_width() {
        for which in [Footer::Grid, Footer::History, Footer::Browse, Footer::Runs] {
            for width in [14, 40, 60, 80, 100] {
                let line = footer(which, offer(5), width);
                assert!(
                    line.ends_with("? help  q quit"),
                    "{which:?} at {width}: {line}"
                );
                assert!(
                    line.chars().count() <= width.max(14),
                    "{which:?} at {width}: {line}"
                );
            }
        }
        // At 80 columns the grid's footer keeps the most needed keys, in the table's order.
        assert_eq!(
            footer(Footer::Grid, offer(5), 80),
            "←↓↑→ move  1-5 year  space select  / find  w write  Tab panel  ? help  q quit"
        );
    }

    #[test]
    fn keys_that_would_do_nothing_are_not_offered() {
        // `S` shows the plan watched: without one, neither the help nor a footer names it.
        assert!(!help(offer(5)).iter().any(|(k, _)| k == "S"));
        let with_plan = Offer {
            years: 5,
            plan: true,
            runs_going: false,
            failures: true,
            runs: true,
        };
        assert!(help(with_plan).iter().any(|(k, _)| k == "S"));
        // `x` cancels the runs going: with none, it is not offered either.
        assert!(!help(offer(5)).iter().any(|(k, _)| k == "x"));
        assert!(!footer(Footer::Grid, offer(5), 400).contains("x cancel"));
        let going = Offer {
            runs_going: true,
            ..offer(5)
        };
        assert!(footer(Footer::Grid, going, 80).contains("x cancel"));
    }

    #[test]
    fn the_runs_panel_takes_enter_and_keeps_the_grids_keys() {
        assert_eq!(
            command(Scope::Runs, &key(Enter), 5),
            Some(Command::JumpFailed)
        );
        assert_eq!(
            command(Scope::Grid, &key(Enter), 5),
            Some(Command::TileDetails)
        );
        assert_eq!(
            command(Scope::Runs, &key(Char('w')), 5),
            Some(Command::Write)
        );
        assert_eq!(
            command(Scope::Runs, &key(Char('x')), 5),
            Some(Command::Cancel)
        );
    }

    #[test]
    fn ctrl_c_quits_anywhere() {
        let k = KeyEvent::new(Char('c'), KeyModifiers::CONTROL);
        assert_eq!(command(Scope::History, &k, 5), Some(Command::Quit));
        assert_eq!(command(Scope::Grid, &k, 5), Some(Command::Quit));
    }
}
