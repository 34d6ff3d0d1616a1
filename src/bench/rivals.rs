//! The other ways to make the same cube from the same tiles, timed side by side with
//! `tilecube write --overviews`: the seed's method (xarray + rioxarray + a local Dask cluster,
//! `python/seed_method.py`, one worker process a thread) and GDAL's own (`gdalbuildvrt` +
//! `gdal_translate` to Zarr, zstd 3, 1000² blocks, `GDAL_NUM_THREADS` at the thread count).
//! Neither writes a pyramid.

use super::*;

/// The seed's method, embedded so the bench needs no checkout.
const SEED_METHOD: &str = include_str!("python/seed_method.py");

/// A Python that has what the seed's method imports: `TILECUBE_PYTHON`, else the checkout's
/// `.venv`, else `python3`; `Err` says what to install.
fn python() -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("TILECUBE_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(".venv/bin/python"), PathBuf::from("python3")])
        .collect();
    for p in &candidates {
        let ok = Command::new(p)
            .args([
                "-c",
                "import rioxarray, dask.distributed, icechunk, xarray, zarr",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(p.clone());
        }
    }
    bail!(
        "no Python with rioxarray, dask[distributed], icechunk, xarray and zarr (tried TILECUBE_PYTHON, \
         .venv/bin/python, python3); install them with `.venv/bin/pip install rioxarray \"dask[distributed]\"` \
         after .ci/setup"
    )
}

/// The seed's method on `tiles` of `year` under `cache` with `workers` worker processes.
/// Returns the run and the seconds its writes took (the cluster's start excluded).
pub(super) fn seed_method(
    cache: &Path,
    tiles: &[TileName],
    year: i32,
    workers: usize,
) -> Result<(ChildRun, f64)> {
    let python = python()?;
    let script = tempfile_path("seed_method.py");
    std::fs::write(&script, SEED_METHOD)?;
    let repo = scratch("bench-seed-repo")?;
    let mut args = vec![
        script.display().to_string(),
        repo.display().to_string(),
        workers.to_string(),
        year.to_string(),
    ];
    args.extend(tiles.iter().map(|t| {
        tilecube::demo::tile_path(cache, year, *t)
            .display()
            .to_string()
    }));
    let run = run_program(&python, &args, &[])?;
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_dir_all(&repo);
    if !run.ok {
        bail!("the seed's method failed: {}", tail(&run.stderr));
    }
    let writes = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("seconds "))
        .and_then(|s| s.trim().parse::<f64>().ok())
        .context("the seed's method printed no time")?;
    Ok((run, writes))
}

/// GDAL's own way: a VRT of the tiles, translated to Zarr (zstd 3, 1000² blocks).
pub(super) fn gdal_zarr(
    cache: &Path,
    tiles: &[TileName],
    year: i32,
    threads: usize,
) -> Result<ChildRun> {
    let dir = scratch("bench-gdal")?;
    std::fs::create_dir_all(&dir)?;
    let vrt = dir.join("tiles.vrt");
    let mut args = vec!["-q".to_string(), vrt.display().to_string()];
    args.extend(tiles.iter().map(|t| {
        tilecube::demo::tile_path(cache, year, *t)
            .display()
            .to_string()
    }));
    let built = run_program(Path::new("gdalbuildvrt"), &args, &[])?;
    if !built.ok {
        bail!("gdalbuildvrt failed: {}", tail(&built.stderr));
    }
    let out = dir.join("cube.zarr");
    let args: Vec<String> = [
        "-q",
        "-of",
        "Zarr",
        "-co",
        "COMPRESS=ZSTD",
        "-co",
        "ZSTD_LEVEL=3",
        "-co",
        "BLOCKSIZE=1000,1000",
        "--config",
        "GDAL_NUM_THREADS",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        threads.to_string(),
        vrt.display().to_string(),
        out.display().to_string(),
    ])
    .collect();
    let run = run_program(Path::new("gdal_translate"), &args, &[])?;
    let _ = std::fs::remove_dir_all(&dir);
    if !run.ok {
        bail!("gdal_translate failed: {}", tail(&run.stderr));
    }
    Ok(run)
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
