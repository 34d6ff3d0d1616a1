//! `tilecube log`: the branch's commits and the tiles each wrote.

use anyhow::Result;

use tilecube::config::Settings;

pub(crate) async fn log(settings: &Settings, as_json: bool) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let history = cube.history().await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&history)?);
        return Ok(0);
    }
    for c in &history {
        let local = c.time.with_timezone(&chrono::Local);
        let tiles = if c.tile_count() > 0 {
            format!("  [{}]", c.tiles_summary(6))
        } else {
            String::new()
        };
        println!(
            "{}  {}  {}{tiles}",
            c.id,
            local.format("%Y-%m-%d %H:%M:%S"),
            c.message
        );
    }
    Ok(0)
}
