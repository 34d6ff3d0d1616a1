//! The cube as a dataset in the repository: the root group's attributes (the cube's layout,
//! CF attributes and the GeoZarr conventions of [`super::conventions`]), the data variable and its coordinates, and each overview
//! level as a dataset of its own; and the layout read back from the root group.
//!
//! Invariants: what is written here is metadata only (no chunk of data); the layout read back
//! is the one written (`tilecube` root attribute); a root group that cannot be read is an
//! error naming it, and only a repository with no root group has no cube.

use std::sync::Arc;

use icechunk::session::Session;
use serde_json::{Value, json};
use zarrs::array::{ArrayBuilder, data_type};
use zarrs::group::{Group, GroupBuilder};
use zarrs_icechunk::AsyncIcechunkStore;

use super::conventions;
use super::layout::{LAYOUT_ATTR, Layout};
use super::{CubeError, LayoutError};

pub(super) async fn read_layout(session: Session) -> Result<Option<Layout>, CubeError> {
    let store = Arc::new(AsyncIcechunkStore::new(session));
    let group = match Group::async_open(store, "/").await {
        Ok(g) => g,
        Err(zarrs::group::GroupCreateError::MissingMetadata) => return Ok(None),
        // The snapshot or its objects could not be read: say so, not "no cube".
        Err(e) => return Err(CubeError::icechunk("reading the cube's root group", e)),
    };
    Layout::from_root_attributes(group.attributes())
}

fn attrs(pairs: impl IntoIterator<Item = (String, Value)>) -> serde_json::Map<String, Value> {
    pairs.into_iter().collect()
}

fn zarr_err<E: Into<super::error::BoxError>>(what: &str) -> impl Fn(E) -> CubeError + '_ {
    move |e| CubeError::icechunk(what, e)
}

/// Write the cube's groups and arrays: the root group, the data variable and its
/// coordinates, and each overview level as a dataset of its own.
pub(super) async fn write_layout(
    store: &Arc<AsyncIcechunkStore>,
    layout: &Layout,
) -> Result<(), CubeError> {
    write_root_group(store, layout).await?;
    write_dataset(store, layout, 0).await?;
    write_levels(store, layout).await
}

/// The overview levels' groups and datasets (none when the cube has no pyramid).
pub(crate) async fn write_levels(
    store: &Arc<AsyncIcechunkStore>,
    layout: &Layout,
) -> Result<(), CubeError> {
    let levels = layout.levels();
    if levels.is_empty() {
        return Ok(());
    }
    let dataset_attrs = attrs(
        layout
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
    );
    GroupBuilder::new()
        .build(Arc::clone(store), "/overviews")
        .map_err(zarr_err("overviews group"))?
        .async_store_metadata()
        .await
        .map_err(zarr_err("overviews group"))?;
    for (i, level) in levels.iter().enumerate() {
        let what = format!("group {}", level.group());
        let mut level_attrs = dataset_attrs.clone();
        level_attrs.insert("overview_factor".into(), json!(level.factor));
        level_attrs.extend(conventions::attributes(layout, i + 1));
        GroupBuilder::new()
            .attributes(level_attrs)
            .build(Arc::clone(store), &format!("/{}", level.group()))
            .map_err(zarr_err(&what))?
            .async_store_metadata()
            .await
            .map_err(zarr_err(&what))?;
        write_dataset(store, layout, i + 1).await?;
    }
    Ok(())
}

/// The root group: the dataset's attributes, the layout, and the multiscales attributes.
pub(crate) async fn write_root_group(
    store: &Arc<AsyncIcechunkStore>,
    layout: &Layout,
) -> Result<(), CubeError> {
    let mut root_attrs = attrs(
        layout
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
    );
    root_attrs.insert(
        LAYOUT_ATTR.into(),
        serde_json::to_value(layout).map_err(|source| LayoutError::Serialize { source })?,
    );
    root_attrs.extend(conventions::attributes(layout, 0));
    GroupBuilder::new()
        .attributes(root_attrs)
        .build(Arc::clone(store), "/")
        .map_err(zarr_err("root group"))?
        .async_store_metadata()
        .await
        .map_err(zarr_err("root group"))?;
    Ok(())
}

/// The `year` coordinate of the dataset at `prefix` (`""`: the root, `/overviews/2`, …): its
/// metadata and its one chunk, holding every year of the layout. Written whole again when
/// the cube gains a year (`extend`): it is one chunk, not a data chunk of any year.
pub(super) async fn write_year(
    store: &Arc<AsyncIcechunkStore>,
    layout: &Layout,
    prefix: &str,
) -> Result<(), CubeError> {
    let what = match prefix {
        "" => "year coordinate".to_string(),
        p => format!("year coordinate of {}", p.trim_start_matches('/')),
    };
    let years: Vec<i64> = layout.years.iter().map(|&y| y as i64).collect();
    let year = ArrayBuilder::new(
        vec![years.len() as u64],
        vec![years.len() as u64],
        data_type::int64(),
        0i64,
    )
    .bytes_to_bytes_codecs(vec![Arc::new(zarrs::array::codec::ZstdCodec::new(
        layout.zstd_level,
        false,
    ))])
    .dimension_names(Some(["year"]))
    .attributes(attrs([("long_name".to_string(), json!("year"))]))
    .build(Arc::clone(store), &format!("{prefix}/year"))
    .map_err(zarr_err(&what))?;
    year.async_store_metadata().await.map_err(zarr_err(&what))?;
    year.async_store_chunk(&[0], years)
        .await
        .map_err(zarr_err(&what))?;
    Ok(())
}

/// Level `k`'s dataset (0: the cube itself, at the root): the data variable with no chunk,
/// `year`, `x` and `y` at the level's pixel centres, and `spatial_ref` with its transform.
async fn write_dataset(
    store: &Arc<AsyncIcechunkStore>,
    layout: &Layout,
    k: usize,
) -> Result<(), CubeError> {
    let zstd = || -> Vec<Arc<dyn zarrs::array::BytesToBytesCodecTraits>> {
        vec![Arc::new(zarrs::array::codec::ZstdCodec::new(
            layout.zstd_level,
            false,
        ))]
    };
    let var_path = layout.level_path(k);
    let prefix = var_path
        .rsplit_once('/')
        .map(|(p, _)| p.to_string())
        .unwrap_or_default();
    let factor = 1u64 << k;

    // The data variable: metadata only, no chunk.
    let mut var_attrs = attrs(
        layout
            .variable_attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    var_attrs.insert("grid_mapping".into(), json!("spatial_ref"));
    var_attrs.insert("coordinates".into(), json!("spatial_ref"));
    let what = format!("data variable {var_path}");
    super::writer::level_builder(layout, k)
        .attributes(var_attrs)
        .build(Arc::clone(store), &var_path)
        .map_err(zarr_err(&what))?
        .async_store_metadata()
        .await
        .map_err(zarr_err(&what))?;

    write_year(store, layout, &prefix).await?;

    // x and y pixel centres
    let (shape, _) = layout.level_shape(k);
    let p = layout.grid().pixel_size() * factor as f64;
    let xs: Vec<f64> = (0..shape[2])
        .map(|i| layout.origin_lon as f64 + (i as f64 + 0.5) * p)
        .collect();
    let ys: Vec<f64> = (0..shape[1])
        .map(|j| layout.origin_lat as f64 - (j as f64 + 0.5) * p)
        .collect();
    for (name, values, std_name, units, axis) in [
        ("x", xs, "longitude", "degrees_east", "X"),
        ("y", ys, "latitude", "degrees_north", "Y"),
    ] {
        let what = format!("{name} coordinate");
        let len = values.len() as u64;
        let chunk = len.min(layout.tile_pixels * 4);
        let array = ArrayBuilder::new(vec![len], vec![chunk], data_type::float64(), f64::NAN)
            .bytes_to_bytes_codecs(zstd())
            .dimension_names(Some([name]))
            .attributes(attrs([
                ("standard_name".to_string(), json!(std_name)),
                ("long_name".to_string(), json!(std_name)),
                ("units".to_string(), json!(units)),
                ("axis".to_string(), json!(axis)),
            ]))
            .build(Arc::clone(store), &format!("{prefix}/{name}"))
            .map_err(zarr_err(&what))?;
        array
            .async_store_metadata()
            .await
            .map_err(zarr_err(&what))?;
        for (i, part) in values.chunks(chunk as usize).enumerate() {
            let mut buf = part.to_vec();
            buf.resize(chunk as usize, f64::NAN);
            array
                .async_store_chunk(&[i as u64], buf)
                .await
                .map_err(zarr_err(&what))?;
        }
    }

    // spatial_ref: scalar carrying the CRS
    let wkt = crate::source::crs_wkt(layout.epsg).map_err(|source| LayoutError::Crs {
        epsg: layout.epsg,
        source,
    })?;
    let sr = ArrayBuilder::new(
        Vec::<u64>::new(),
        Vec::<u64>::new(),
        data_type::int64(),
        0i64,
    )
    .attributes(attrs([
        ("crs_wkt".to_string(), json!(wkt)),
        ("spatial_ref".to_string(), json!(wkt)),
        (
            "GeoTransform".to_string(),
            json!(layout.geotransform_attr_at(factor)),
        ),
        ("grid_mapping_name".to_string(), json!("latitude_longitude")),
    ]))
    .build(Arc::clone(store), &format!("{prefix}/spatial_ref"))
    .map_err(zarr_err("spatial_ref"))?;
    sr.async_store_metadata()
        .await
        .map_err(zarr_err("spatial_ref"))?;
    Ok(())
}
