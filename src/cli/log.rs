//! `tilecube log`: the branch's commits, the tiles each wrote and the tags naming them;
//! `tilecube tag`: a release's name on a snapshot.

use anyhow::{Context, Result, bail};

use tilecube::config::Settings;

pub(crate) async fn log(settings: &Settings, as_json: bool) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let history = cube.history().await?;
    let tags = cube.tags().await?;
    if as_json {
        let mut out = serde_json::to_value(&history)?;
        for c in out.as_array_mut().into_iter().flatten() {
            let names = c["id"]
                .as_str()
                .and_then(|id| tags.get(id))
                .cloned()
                .unwrap_or_default();
            c["tags"] = serde_json::json!(names);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    for c in &history {
        let local = c.time.with_timezone(&chrono::Local);
        let tiles = if c.tile_count() > 0 {
            format!("  [{}]", c.tiles_summary(6))
        } else {
            String::new()
        };
        let tagged = match tags.get(&c.id) {
            Some(names) => format!("  (tag: {})", names.join(", ")),
            None => String::new(),
        };
        println!(
            "{}  {}  {}{tagged}{tiles}",
            c.id,
            local.format("%Y-%m-%d %H:%M:%S"),
            c.message
        );
    }
    Ok(0)
}

/// `tilecube tag NAME [--snapshot ID]`: name a snapshot of the branch (default: its head).
pub(crate) async fn tag(settings: &Settings, name: &str, snapshot: Option<&str>) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let id = match snapshot {
        Some(s) => s.to_string(),
        None => cube.head().await?.to_string(),
    };
    if let Some(names) = cube
        .tags()
        .await?
        .into_iter()
        .find_map(|(at, names)| names.contains(&name.to_string()).then_some((at, names)))
    {
        bail!(
            "tag {name} is already there, on snapshot {}: a tag names one snapshot for good; choose another name",
            names.0
        );
    }
    cube.tag(name, &id)
        .await
        .with_context(|| format!("tagging snapshot {id} as {name}"))?;
    println!("tagged {id} as {name}");
    Ok(0)
}
