//! The plan popup (`S`, and at start with `--plan`): the scale-out plan watched — what
//! landed, a row per shard (those still to finish first), the failures.
//!
//! Invariants: the plan is read at every poll whether the popup is open or not, so it opens
//! on fresh figures; a failed read keeps the last figures shown and says it failed; the
//! text never runs past the popup.

use ratatui::crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::text::Line;

use super::{Dialog, Popup, Reply, closes};
use crate::tui::state::App;

/// The scale-out plan the console watches (opened with `--plan`).
#[derive(Debug, Clone)]
pub struct PlanView {
    /// Where the plan is.
    pub at: String,
    /// Its progress as last read.
    pub status: Option<tilecube::scaleout::PlanStatus>,
    /// Why the last read failed.
    pub error: Option<String>,
}

/// `S`: the plan watched (or say there is none).
pub fn open(app: &mut App) {
    if app.plan.is_some() {
        app.popup = Some(Popup::Plan);
    } else {
        app.status_line = "no plan watched: open the console with --plan PLAN".into();
    }
}

/// The plan's progress was read (or could not be).
pub fn on_status(app: &mut App, read: Result<tilecube::scaleout::PlanStatus, String>) {
    if let Some(plan) = app.plan.as_mut() {
        match read {
            Ok(status) => {
                plan.status = Some(status);
                plan.error = None;
            }
            Err(e) => plan.error = Some(e),
        }
    }
}

pub fn on_key(app: &mut App, key: &KeyEvent) -> Reply {
    closes(app, Popup::Plan, key)
}

pub fn dialog(app: &App, area: Rect) -> Dialog {
    let inner_w = area.width.saturating_sub(2).min(78);
    let inner_h = area.height.saturating_sub(2);
    let lines = match &app.plan {
        Some(view) => plan_lines(view, inner_w as usize, inner_h as usize),
        None => vec![],
    };
    let n = lines.len() as u16;
    Dialog::new(
        " plan (Esc closes) ",
        lines,
        inner_w + 2,
        (n + 2).min(area.height),
    )
}

/// The plan popup's lines, at most `height` of at most `width` characters: the plan, what
/// landed, a row per shard (as many as fit, those still to finish first), then failures.
fn plan_lines(view: &PlanView, width: usize, height: usize) -> Vec<Line<'static>> {
    plan_text(view, height)
        .into_iter()
        .map(|l| Line::from(l.chars().take(width).collect::<String>()))
        .collect()
}

fn plan_text(view: &PlanView, height: usize) -> Vec<String> {
    let mut out = vec![];
    let Some(st) = &view.status else {
        out.push(format!("reading plan {} ...", view.at));
        if let Some(e) = &view.error {
            out.push(format!("error: {e}"));
        }
        return out;
    };
    out.push(format!(
        "plan {}: {} tiles in {} shards",
        st.id,
        st.jobs,
        st.shards.len()
    ));
    out.push(format!("shards: {}", st.states_line()));
    out.push(st.landed_line());
    if let Some(e) = &view.error {
        out.push(format!("last read failed: {e}"));
    }
    out.push(tilecube::scaleout::ShardStatus::HEADER.to_string());
    let room = height.saturating_sub(out.len() + st.failed.len().min(3) + 1);
    // Shards still to finish first: they are what the operator watches.
    let mut rows: Vec<&tilecube::scaleout::ShardStatus> = st.shards.iter().collect();
    rows.sort_by_key(|s| (s.state == "done", s.shard));
    out.extend(rows.iter().take(room).map(|s| s.row()));
    if rows.len() > room {
        out.push(format!("… {} more shards", rows.len() - room));
    }
    for f in st.failed.iter().take(3) {
        out.push(format!(
            "! {}/{} (shard {}): {}",
            f.failure.year, f.failure.tile, f.shard, f.failure.error
        ));
    }
    out.truncate(height);
    out
}
