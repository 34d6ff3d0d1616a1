//! `tilecube log`: the branch's commits, the tiles each wrote and the tags naming them;
//! `tilecube tag`: a release's name on a snapshot.

use anyhow::{Context, Result};

use tilecube::config::Settings;
use tilecube::cube::Released;

pub(crate) async fn log(settings: &Settings, as_json: bool) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let history = cube.history().await?;
    let releases = cube.releases().await?;
    let mut tags: std::collections::BTreeMap<&str, Vec<&tilecube::cube::Release>> =
        Default::default();
    for r in &releases {
        tags.entry(r.snapshot.as_str()).or_default().push(r);
    }
    // Tagged snapshots the branch's history no longer passes through (an expire keeps them,
    // off the history, or they were tagged on another branch): listed after it.
    let in_history: std::collections::BTreeSet<&str> =
        history.iter().map(|c| c.id.as_str()).collect();
    let mut off: Vec<tilecube::cube::Commit> = Vec::new();
    for id in tags.keys().filter(|id| !in_history.contains(*id)) {
        off.push(
            cube.commit_of(id)
                .await
                .with_context(|| format!("reading tagged snapshot {id}"))?,
        );
    }
    off.sort_by_key(|c| std::cmp::Reverse(c.time));
    if as_json {
        let mut out = serde_json::to_value(&history)?;
        if let Some(all) = out.as_array_mut() {
            for c in all.iter_mut() {
                c["in_history"] = serde_json::json!(true);
            }
            for c in &off {
                let mut v = serde_json::to_value(c)?;
                v["in_history"] = serde_json::json!(false);
                all.push(v);
            }
        }
        for c in out.as_array_mut().into_iter().flatten() {
            let of = c["id"].as_str().and_then(|id| tags.get(id));
            let names: Vec<&str> = of.into_iter().flatten().map(|r| r.name.as_str()).collect();
            let messages: serde_json::Map<String, serde_json::Value> = of
                .into_iter()
                .flatten()
                .filter_map(|r| Some((r.name.clone(), serde_json::json!(r.message.as_ref()?))))
                .collect();
            c["tags"] = serde_json::json!(names);
            if !messages.is_empty() {
                c["tag_messages"] = serde_json::Value::Object(messages);
            }
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    let heading = format!(
        "tagged snapshots no longer in {}'s history (an expire keeps them, off it):",
        cube.branch
    );
    for (i, c) in history.iter().chain(off.iter()).enumerate() {
        if i == history.len() {
            println!("{heading}");
        }
        let local = c.time.with_timezone(&chrono::Local);
        // The tiles, unless the message names them already (the message a write makes).
        let tiles = if c.tile_count() > 0 && c.message != tilecube::cube::commit_message(&c.written)
        {
            format!("  [{}]", c.tiles_summary(6))
        } else {
            String::new()
        };
        let tagged = match tags.get(c.id.as_str()) {
            Some(rs) => {
                let names: Vec<String> = rs
                    .iter()
                    .map(|r| match &r.message {
                        Some(m) => format!("{}: {m:?}", r.name),
                        None => r.name.clone(),
                    })
                    .collect();
                format!("  (tag: {})", names.join(", "))
            }
            None => String::new(),
        };
        println!(
            "{}  {}  {}{tagged}{tiles}",
            c.id,
            local.format("%Y-%m-%d %H:%M:%S"),
            one_line(&c.message)
        );
    }
    Ok(0)
}

/// A message on one line of the log: line breaks and other control characters escaped
/// (`\n`, `\u{1b}`), so a message can neither break the one-commit-a-line format nor
/// reach the terminal as a control sequence.
pub(crate) fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `tilecube tag NAME [--snapshot ID] [--message M]`: name a snapshot of the branch
/// (default: its head), with release notes.
pub(crate) async fn delete_tag(settings: &Settings, name: &str) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let snapshot = cube
        .delete_release(name)
        .await
        .with_context(|| format!("deleting tag {name}"))?;
    println!(
        "deleted tag {name} (it named {snapshot}); `tilecube gc` reclaims what it alone reached"
    );
    Ok(0)
}

pub(crate) async fn tag(
    settings: &Settings,
    name: &str,
    snapshot: Option<&str>,
    message: Option<&str>,
) -> Result<i32> {
    // A name the repository would refuse is refused before anything is opened.
    tilecube::cube::check_tag_name(name)?;
    let cube = settings.open_cube().await?;
    let id = match snapshot {
        Some(s) => {
            tilecube::cube::canonical_snapshot_id(s).with_context(|| format!("--snapshot {s}"))?
        }
        None => cube.head().await?.to_string(),
    };
    // A tag on a damaged snapshot (manifests lost from storage) is made, and said.
    if let Ok(lost) = cube.lost_manifests_of_snapshot(&id).await
        && !lost.is_empty()
    {
        eprintln!(
            "warning: snapshot {id} lists {} storage no longer has (first: {}): `tilecube verify` would fail on it; a tag keeps it, and `gc` cannot reclaim around it until the tag is deleted (`tilecube tag --delete {name}`)",
            tilecube::text::plural(lost.len(), "manifest"),
            lost[0]
        );
    }
    let done = cube
        .tag(name, &id, message)
        .await
        .with_context(|| format!("tagging snapshot {id} as {name}"))?;
    match done {
        Released::Tagged => println!("tagged {id} as {name}"),
        Released::MessageSet => println!("tag {name} (on {id}): message set"),
        Released::AlreadyThere => println!("tag {name} already names {id}; nothing to do"),
    }
    Ok(0)
}
