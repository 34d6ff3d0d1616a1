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
    SelectFailed,
    SelectChanged,
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
            Self::SelectAll | Self::Write | Self::QuickLook | Self::Open | Self::Diff | Self::Tag
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
        label: "arrows / hjkl",
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
        label: "↑↓ / jk",
        short: "↑↓",
        help: "history: choose a snapshot",
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
        help: "select / unselect the tile",
        footer: &[(Footer::Grid, "select")],
    },
    Binding {
        command: Command::SelectAll,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('a')]),
        label: "a",
        short: "a",
        help: "select every listed, unwritten tile of the year",
        footer: &[(Footer::Grid, "all")],
    },
    Binding {
        command: Command::SelectFailed,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('f')]),
        label: "f",
        short: "f",
        help: "select the failed tiles",
        footer: &[(Footer::Grid, "failed")],
    },
    Binding {
        command: Command::SelectChanged,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('C')]),
        label: "C",
        short: "C",
        help: "select the tiles whose source changed since they were written",
        footer: &[],
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
        help: "cancel the runs going (finished tiles kept)",
        footer: &[(Footer::Grid, "cancel")],
    },
    Binding {
        command: Command::QuickLook,
        scope: Scope::Grid,
        keys: Keys::Codes(&[Char('p')]),
        label: "p",
        short: "p",
        help: "quick-look of the tile from the cube",
        footer: &[(Footer::Grid, "look")],
    },
    Binding {
        command: Command::Map,
        scope: Scope::Any,
        keys: Keys::Codes(&[Char('m')]),
        label: "m",
        short: "m",
        help: "world map of the year's data (again: the tile grid)",
        footer: &[(Footer::Grid, "map"), (Footer::Browse, "map")],
    },
    Binding {
        command: Command::Open,
        scope: Scope::History,
        keys: Keys::Codes(&[Enter]),
        label: "Enter",
        short: "Enter",
        help: "history: open the snapshot read-only",
        footer: &[(Footer::History, "open")],
    },
    Binding {
        command: Command::Diff,
        scope: Scope::History,
        keys: Keys::Codes(&[Char('d')]),
        label: "d",
        short: "d",
        help: "history: tiles changed against the open snapshot",
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
        command: Command::Back,
        scope: Scope::Any,
        keys: Keys::Codes(&[Esc]),
        label: "Esc",
        short: "Esc",
        help: "clear the selection / back to the head",
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
            (Footer::Grid, ""),
            (Footer::History, "focus"),
            (Footer::Browse, "history"),
        ],
    },
    Binding {
        command: Command::Plan,
        scope: Scope::Any,
        keys: Keys::Codes(&[Char('S')]),
        label: "S",
        short: "S",
        help: "shards of the plan watched (--plan)",
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
        label: "q / Ctrl-C",
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
        keys: Keys::Codes(&[Esc, Enter, Char('q'), Char('?'), Char('p'), Char('S')]),
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
    /// a dialog, whose keys are its own.
    fn applies(&self, scope: Scope) -> bool {
        let dialog = matches!(scope, Scope::Dialog | Scope::Confirm | Scope::Leave);
        self.scope == scope || (self.scope == Scope::Any && !dialog)
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
    BINDINGS
        .iter()
        .filter(|b| b.applies(scope))
        .find_map(|b| match b.keys {
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

/// A footer line: every key the footer shows, in the table's order.
pub fn footer(which: Footer, years: usize) -> String {
    let items: Vec<String> = BINDINGS
        .iter()
        .filter_map(|b| {
            let word = b.footer.iter().find(|(f, _)| *f == which)?.1;
            Some(format!("{} {word}", b.short(years)).trim_end().to_string())
        })
        .collect();
    let line = items.join("  ");
    match which {
        Footer::Browse => format!("read-only snapshot  {line}"),
        _ => line,
    }
}

/// The help's lines: (keys, what they do), in the table's order.
pub fn help(years: usize) -> Vec<(String, &'static str)> {
    BINDINGS
        .iter()
        .filter(|b| !b.help.is_empty())
        .map(|b| (b.label(years), b.help))
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
        assert!(footer(Footer::Grid, 2).contains("1-2 year"));
        assert!(footer(Footer::Grid, 5).contains("1-5 year"));
        assert!(help(7).iter().any(|(k, _)| k == "1-7, [ ]"));
    }

    #[test]
    fn footers_and_help_are_generated_from_the_table() {
        // Every footer word and every help line comes from a binding of the table, and every
        // binding is in the help.
        let h = help(5);
        let described: Vec<_> = BINDINGS.iter().filter(|b| !b.help.is_empty()).collect();
        assert_eq!(h.len(), described.len());
        assert!(h.len() <= 20, "the help fits an 80x24 terminal");
        for (b, (label, what)) in described.iter().zip(&h) {
            assert_eq!(*label, b.label(5));
            assert_eq!(*what, b.help);
        }
        for b in BINDINGS {
            for (which, word) in b.footer {
                let line = footer(*which, 5);
                let item = format!("{} {word}", b.short(5));
                assert!(
                    line.contains(item.trim_end()),
                    "{which:?} footer lacks {item:?}: {line}"
                );
            }
        }
        assert_eq!(
            footer(Footer::Grid, 5),
            "←↓↑→ move  1-5 year  space select  a all  f failed  w write  x cancel  p look  m map  Tab  ? help  q quit"
        );
        assert_eq!(
            footer(Footer::History, 5),
            "↑↓ snapshot  Enter open  d diff  t tag  Esc head  Tab focus  ? help  q quit"
        );
        assert_eq!(
            footer(Footer::Browse, 5),
            "read-only snapshot  m map  Esc back to head  Tab history  ? help  q quit"
        );
    }

    #[test]
    fn ctrl_c_quits_anywhere() {
        let k = KeyEvent::new(Char('c'), KeyModifiers::CONTROL);
        assert_eq!(command(Scope::History, &k, 5), Some(Command::Quit));
        assert_eq!(command(Scope::Grid, &k, 5), Some(Command::Quit));
    }
}
