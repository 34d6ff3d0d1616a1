//! The cost of one commit, measured on an empty and on a full cube.

use super::*;

/// One-tile commits timed at each end of the commit-cost measurement.
pub(super) const COMMIT_SAMPLES: usize = 9;

/// Time a one-tile commit on an empty full-shape cube, then after `tiles` tiles' worth of
/// chunk references are committed (median of [`COMMIT_SAMPLES`] each).
pub(super) async fn commit_cost(tiles: usize) -> Result<(Duration, Duration)> {
    let preset = Preset::glad();
    let layout = Layout::new(&preset, &Grid::from_preset(&preset, None)?);
    let dir = scratch("bench-commit")?;
    let cube = Cube::init(
        RepoLocation::Local(dir.clone()),
        layout.clone(),
        &InitOptions {
            spec_version: SpecVersion::V2,
            force: false,
            branch: "main".into(),
        },
    )
    .await?;
    let encoder = ChunkEncoder::new(&layout)?;
    let chunk = encoder
        .encode(&vec![7u8; encoder.chunk_len()])?
        .context("encoding a chunk")?;
    let grid = layout.grid();
    let cells: Vec<_> = (0..layout.years.len())
        .flat_map(|y| grid.tiles().map(move |t| (y, t)))
        .collect();
    let mut next = 0usize;

    let mut stage = |count: usize| {
        let batch = &cells[next..next + count];
        next += count;
        batch.to_vec()
    };
    // Manifests hold one reference per chunk, whatever it points to: every chunk of the
    // filled tiles references one uploaded chunk object, so filling the cube does not create
    // (and later delete) hundreds of thousands of files.
    let payload = {
        let session = WriteSession::open(&cube).await?;
        session
            .prepare_upload(0, [0, 0, 0])
            .await?
            .run(Some(chunk))
            .await?
            .context("uploading the shared chunk")?
    };
    let record = |batch: Vec<(usize, TileName)>| {
        let cube = &cube;
        let payload = payload.clone();
        let grid = grid.clone();
        let layout = layout.clone();
        async move {
            let session = WriteSession::open(cube).await?;
            for (yi, t) in &batch {
                let mut tc = TileChunks::default();
                for coords in layout.tile_chunks(*yi, grid.cell(*t)?) {
                    tc.push(coords, Some(payload.clone()));
                }
                session.record_tile(layout.years[*yi], *t, tc, None).await?;
            }
            let start = Instant::now();
            session.commit(Some("bench")).await?;
            Ok::<_, anyhow::Error>(start.elapsed())
        }
    };
    let mut first = vec![];
    for _ in 0..COMMIT_SAMPLES {
        first.push(record(stage(1)).await?);
    }
    let mut filled = COMMIT_SAMPLES;
    while filled < tiles {
        let n = (tiles - filled).min(25);
        record(stage(n)).await?;
        filled += n;
    }
    let mut later = vec![];
    for _ in 0..COMMIT_SAMPLES {
        later.push(record(stage(1)).await?);
    }
    first.sort();
    later.sort();
    let _ = std::fs::remove_dir_all(&dir);
    Ok((first[COMMIT_SAMPLES / 2], later[COMMIT_SAMPLES / 2]))
}
