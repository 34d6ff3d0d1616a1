//! `tilecube presets`: the built-in dataset presets, a line each, and the one in effect.

use anyhow::Result;

use tilecube::config::Settings;
use tilecube::preset::{BUILT_IN, Preset};

pub(crate) async fn presets(settings: &Settings, json: bool) -> Result<i32> {
    // With a repository, its cube's own preset is the one in effect (a preset given that is
    // not the cube's is refused as every command refuses it); a repository that is not
    // there, or not a cube, leaves the given or default one.
    let mut own = None;
    if let Some(repo) = &settings.repo {
        match settings.open_cube().await {
            Ok(cube) => own = Some(cube.layout.preset.clone()),
            Err(e) if e.downcast_ref::<tilecube::preset::PresetError>().is_some() => {
                return Err(e);
            }
            Err(e) => eprintln!("no cube read at {repo}: {}", tilecube::anyhow_chain(&e)),
        }
    }
    let mut rows = Vec::new();
    for (name, aliases, _) in BUILT_IN {
        let p = Preset::built_in(name).expect("a built-in preset parses");
        rows.push((name.to_string(), aliases.join(", "), p));
    }
    let current = settings.preset();
    let in_effect = |p: &Preset| p.name == current.name && p.text == current.text;
    if !rows.iter().any(|(_, _, p)| in_effect(p)) {
        rows.push((
            settings
                .preset_given
                .clone()
                .unwrap_or_else(|| format!("{} (the cube's own)", current.name)),
            String::new(),
            current.clone(),
        ));
    }
    if json {
        let out: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, aliases, p)| {
                serde_json::json!({
                    "name": p.name,
                    "given_as": name,
                    "aliases": aliases,
                    "title": p.title,
                    "summary": p.summary(),
                    "variables": p.variables.iter().map(|v| &v.name).collect::<Vec<_>>(),
                    "years": p.years(),
                    "in_effect": in_effect(p),
                    "not_written_yet": p.unsupported(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    for (name, aliases, p) in &rows {
        let mark = if in_effect(p) { "*" } else { " " };
        let also = if aliases.is_empty() {
            String::new()
        } else {
            format!(" (also {aliases})")
        };
        let theirs = if own.as_deref() == Some(p.name.as_str()) && !name.contains("cube's own") {
            " (the cube's own)"
        } else {
            ""
        };
        println!("{mark} {name}{also}{theirs}: {} — {}", p.title, p.summary());
        if let Some(why) = p.unsupported() {
            println!("    described, not written yet: {why}");
        }
    }
    println!("(* in effect; pick one with --preset NAME|PATH or `preset =` in the config file)");
    Ok(0)
}
