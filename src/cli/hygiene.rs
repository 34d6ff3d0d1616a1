//! `tilecube gc` (the objects no branch or tag reaches, deleted with Icechunk's garbage
//! collection) and `tilecube expire` (old snapshots dropped from the history, their records
//! carried forward first): the engine is `tilecube::cube`'s hygiene.

use std::time::Duration;

use anyhow::{Context, Result};

use tilecube::config::Settings;
use tilecube::cube::{GcReport, Removed, format_age};

/// Bytes as people read them.
fn size(bytes: u64) -> String {
    tilecube::text::bytes_text(bytes)
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
    // Ctrl-C stops gc after the kind it is deleting (a second one at once): what it did is
    // reported, and the exit code is 130.
    let (stop, watcher) = stop_on_ctrl_c(
        "interrupted: gc stops after the kind of object it is deleting (Ctrl-C again stops at once; nothing a branch or tag reaches is touched either way)",
        Some(
            "interrupted again: gc stopped at once; what it deleted was garbage, the rest stays for the next gc",
        ),
    );
    let report = cube
        .garbage_collect_until(older_than, dry_run, &stop)
        .await
        .with_context(|| format!("gc of {}", cube.location));
    watcher.abort();
    let report = report?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_gc(&cube.location.to_string(), &report);
    }
    if report.interrupted {
        return Ok(130);
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
    for w in &r.gone_writers {
        println!("  not waited for: {w} (gone: its process ended, or no sign of life for 60 s)");
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
    if r.interrupted {
        println!(
            "interrupted: the kinds after the last one shown were not collected; run gc again for them"
        );
    }
}

/// A flag Ctrl-C sets, saying `first`; with `again`, a second Ctrl-C says it and exits 130
/// at once. The watcher is aborted when the command ends.
fn stop_on_ctrl_c(
    first: &'static str,
    again: Option<&'static str>,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    tokio::task::JoinHandle<()>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("{first}");
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(again) = again
                && tokio::signal::ctrl_c().await.is_ok()
            {
                eprintln!("{again}");
                std::process::exit(130);
            }
        }
    });
    (stop, watcher)
}

pub(crate) async fn expire(
    settings: &Settings,
    older_than: Duration,
    as_json: bool,
) -> Result<i32> {
    let cube = settings.open_cube().await?;
    let (stop, watcher) = stop_on_ctrl_c(
        "interrupted: expire stops after the step under way (a commit carrying records, or the expiry: each all or nothing)",
        None,
    );
    let report = cube
        .expire_until(older_than, &stop)
        .await
        .with_context(|| format!("expire of {}", cube.location));
    watcher.abort();
    let report = report?;
    let code = if report.interrupted { 130 } else { 0 };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(code);
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
            tilecube::text::plural(c.tiles, "tile"),
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
        tilecube::text::plural(report.released.len(), "snapshot"),
        format_age(older_than),
        report.cutoff.format("%Y-%m-%d %H:%M:%S UTC")
    );
    // A long history is not listed whole (`--json` has every id).
    const SHOWN: usize = 20;
    for id in report.released.iter().take(SHOWN) {
        println!("  {id}");
    }
    if report.released.len() > SHOWN {
        println!(
            "  … and {} more (`--json` lists them all)",
            report.released.len() - SHOWN
        );
    }
    if !report.released.is_empty() {
        println!("now `tilecube gc` reclaims their objects that no branch or tag reaches");
    }
    if report.interrupted {
        println!(
            "interrupted before the expiry: the commits above carried records forward, no snapshot was released; run expire again"
        );
    }
    Ok(code)
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
