//! `tilecube gc` (the objects no branch or tag reaches, deleted with Icechunk's garbage
//! collection) and `tilecube expire` (old snapshots dropped from the history, their records
//! carried forward first): the engine is `tilecube::cube`'s hygiene.

use std::time::Duration;

use anyhow::{Context, Result};

use tilecube::config::Settings;
use tilecube::cube::{GcReport, Removed, format_age};

/// Bytes as people read them.
fn size(bytes: u64) -> String {
    tilecube::runs::bytes_text(bytes)
}

pub(crate) async fn gc(
    settings: &Settings,
    older_than: Duration,
    dry_run: bool,
    as_json: bool,
) -> Result<i32> {
    if older_than.is_zero() {
        eprintln!(
            "warning: --older-than 0s deletes every object no branch or tag reaches however new it is, \
             the uploads of a write running now too: run it only on a quiet repository"
        );
    }
    let cube = settings.open_cube().await?;
    let report = cube
        .garbage_collect(older_than, dry_run)
        .await
        .with_context(|| format!("gc of {}", cube.location))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_gc(&cube.location.to_string(), &report);
    }
    Ok(if report.is_ok() { 0 } else { 1 })
}

fn print_gc(location: &str, r: &GcReport) {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    println!(
        "{location}: objects no branch or tag reaches, created more than {} ago (before {}){}",
        r.older_than,
        r.cutoff.format("%Y-%m-%d %H:%M:%S UTC"),
        if r.dry_run {
            " — dry run, nothing deleted"
        } else {
            ""
        }
    );
    for w in &r.writers {
        println!("  spared: what {w} may still commit (newer than its start)");
    }
    let row = |name: &str, k: Removed| {
        println!(
            "  {name:<17} {:>9} objects {:>10}",
            k.objects,
            size(k.bytes)
        );
    };
    row("snapshots", r.snapshots);
    row("transaction logs", r.transaction_logs);
    row("manifests", r.manifests);
    if r.attributes.objects > 0 {
        row("attributes", r.attributes);
    }
    row("chunks", r.chunks);
    let total = r.total();
    println!("{verb} {} objects, {}", total.objects, size(total.bytes));
    if r.failed_objects > 0 {
        println!(
            "{} objects could not be deleted (they stay garbage for the next gc): {}",
            r.failed_objects,
            r.delete_errors.join("; ")
        );
    }
    if !r.skipped.is_empty() {
        println!(
            "not deleted, since an earlier kind's deletes failed: {}",
            r.skipped.join(", ")
        );
    }
}

pub(crate) async fn expire(
    settings: &Settings,
    older_than: Duration,
    as_json: bool,
) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let report = cube
        .expire(older_than)
        .await
        .with_context(|| format!("expire of {}", cube.location))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    for w in &report.writers {
        println!("running: {w}");
    }
    if let Some(t) = report.kept_for_writers {
        println!(
            "kept the snapshots flushed since {}: a running write's next commit starts from one of them",
            t.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    for c in &report.carried {
        println!(
            "{}: carried the records of {}{} forward in {}",
            c.branch,
            tilecube::runs::plural(c.tiles, "tile"),
            if c.layout {
                " and the layout marker"
            } else {
                ""
            },
            c.snapshot
        );
    }
    println!(
        "released {} older than {} (flushed before {}) from the history; tagged snapshots and branch heads kept",
        tilecube::runs::plural(report.released.len(), "snapshot"),
        format_age(older_than),
        report.cutoff.format("%Y-%m-%d %H:%M:%S UTC")
    );
    for id in &report.released {
        println!("  {id}");
    }
    if !report.released.is_empty() {
        println!("now `tilecube gc` reclaims their objects that no branch or tag reaches");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1500), "1.5 KB");
        assert_eq!(size(2_000_000), "2.0 MB");
    }
}
