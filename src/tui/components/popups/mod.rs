//! The dialogs over the screen, one module each: each owns its state (a variant of
//! [`Popup`]), how it opens, the keys it takes while open and what it draws ([`Dialog`]).
//! This module holds what they share: the dispatch of a key to the popup open, the frame
//! every dialog is drawn in, and the text field's editing.
//!
//! Invariants: while a popup is open it takes every key (but Ctrl-C, which asks to quit:
//! `update` sees to it); a popup's key handler gets the popup by value and hands it back to
//! stay open ([`Reply`]), so no handler reaches into another popup's state.

pub mod cancel;
pub mod find;
pub mod help;
pub mod leave;
pub mod log;
pub mod plan;
pub mod quicklook;
pub mod tag;
pub mod tile;
pub mod write;

use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use super::look::centered;
use crate::tui::keys::{self, Command, Scope};
use crate::tui::msg::Action;
use crate::tui::state::App;

/// A dialog over the screen, with its own state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Popup {
    Help,
    /// The write's confirmation, with the commit message being typed.
    ConfirmWrite(write::WriteAsk),
    /// Cancelling the runs going: asked first.
    ConfirmCancel(cancel::CancelAsk),
    /// Quitting while runs are going: leave them running (the default) or cancel them.
    Leave,
    /// Tagging a snapshot: the name being typed.
    TagPrompt(tag::TagPrompt),
    /// A tile's whole story: state, source, the whole failure reason.
    Tile(tile::TileCard),
    /// A run's log, scrolled.
    Log(log::LogView),
    /// Going to a tile by name.
    Find(find::FindPrompt),
    /// A tile read back from the cube.
    QuickLook(quicklook::QuickLook),
    /// The scale-out plan's progress, per shard.
    Plan,
}

/// What a popup made of a key: itself, if it stays open, and the work it asks for.
pub struct Reply {
    pub stay: Option<Popup>,
    pub actions: Vec<Action>,
}

impl Reply {
    /// The popup stays open (changed or not).
    pub fn stay(popup: Popup) -> Self {
        Self {
            stay: Some(popup),
            actions: Vec::new(),
        }
    }

    /// The popup closes, asking for `actions`.
    pub fn close(actions: Vec<Action>) -> Self {
        Self {
            stay: None,
            actions,
        }
    }
}

/// A key while a popup is open: the popup takes it.
pub fn on_key(app: &mut App, key: KeyEvent) -> Vec<Action> {
    let Some(popup) = app.popup.take() else {
        return Vec::new();
    };
    let reply = match popup {
        Popup::Log(view) => view.on_key(app, &key),
        Popup::ConfirmWrite(ask) => ask.on_key(app, &key),
        Popup::ConfirmCancel(ask) => ask.on_key(app, &key),
        Popup::TagPrompt(prompt) => prompt.on_key(app, &key),
        Popup::Find(prompt) => prompt.on_key(app, &key),
        Popup::Tile(card) => card.on_key(app, &key),
        Popup::QuickLook(look) => look.on_key(app, &key),
        Popup::Leave => leave::on_key(app, &key),
        Popup::Help => help::on_key(app, &key),
        Popup::Plan => plan::on_key(app, &key),
    };
    app.popup = reply.stay;
    reply.actions
}

/// A dialog that only shows: its close keys close it, others do nothing.
fn closes(app: &App, popup: Popup, key: &KeyEvent) -> Reply {
    if is_close(app, key) {
        Reply::close(Vec::new())
    } else {
        Reply::stay(popup)
    }
}

/// Whether the key closes a dialog that only shows.
fn is_close(app: &App, key: &KeyEvent) -> bool {
    keys::command(Scope::Dialog, key, app.cube.years.len()) == Some(Command::Close)
}

/// A text field's key: a character is typed, Backspace takes the last one back.
fn edit(text: &mut String, key: &KeyEvent) {
    match key.code {
        KeyCode::Char(c) => text.push(c),
        KeyCode::Backspace => {
            text.pop();
        }
        _ => {}
    }
}

/// What a popup draws: its title, its lines and its size, its lines centred or not.
pub struct Dialog {
    pub title: String,
    pub lines: Vec<Line<'static>>,
    pub width: u16,
    pub height: u16,
    pub centred: bool,
}

impl Dialog {
    /// A dialog of left-aligned lines.
    pub fn new(
        title: impl Into<String>,
        lines: Vec<Line<'static>>,
        width: u16,
        height: u16,
    ) -> Self {
        Self {
            title: title.into(),
            lines,
            width,
            height,
            centred: false,
        }
    }
}

/// Draw the popup open over `area`: cleared, framed, its title on the frame.
pub fn draw(frame: &mut Frame, app: &App, popup: &Popup, area: Rect) {
    let dialog = match popup {
        Popup::Help => help::dialog(app, area),
        Popup::ConfirmWrite(ask) => ask.dialog(app),
        Popup::ConfirmCancel(ask) => ask.dialog(app),
        Popup::TagPrompt(prompt) => prompt.dialog(app),
        Popup::Find(prompt) => prompt.dialog(app),
        Popup::Log(view) => view.dialog(app, area),
        Popup::Tile(card) => card.dialog(app, area),
        Popup::Leave => leave::dialog(app),
        Popup::Plan => plan::dialog(app, area),
        Popup::QuickLook(look) => look.dialog(app, area),
    };
    let rect = centered(area, dialog.width, dialog.height);
    frame.render_widget(Clear, rect);
    let mut p = Paragraph::new(dialog.lines)
        .wrap(Wrap { trim: false })
        .block(Block::default().borders(Borders::ALL).title(dialog.title));
    if dialog.centred {
        p = p.alignment(ratatui::layout::Alignment::Center);
    }
    frame.render_widget(p, rect);
}
