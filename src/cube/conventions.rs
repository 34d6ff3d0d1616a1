//! The GeoZarr conventions a cube declares, for the geospatial readers that find a pyramid
//! and its georeferencing through `zarr_conventions`: `multiscales`, `proj` and `spatial`
//! (zarr-conventions, release v0.1 of each).
//!
//! - The root group (level 0's dataset) and every overview level's group declare `proj` and
//!   `spatial` and carry `proj:code` (the preset's EPSG code), `spatial:dimensions`
//!   (`["y", "x"]`), `spatial:transform` (affine, in Rasterio's order `[a, b, c, d, e, f]`),
//!   `spatial:shape` (`[height, width]`), `spatial:bbox` (`[xmin, ymin, xmax, ymax]`) and
//!   `spatial:registration` (`pixel`) of that level.
//! - A cube with a pyramid also declares `multiscales` on the root group, whose layout
//!   names each level's array (`asset`), the level it was reduced from (`derived_from`), the
//!   reduction (`transform`: scale 2 on y and x, 1 on year; no translation, the levels share
//!   their origin), `resampling_method`, and the level's `spatial:transform`/`spatial:shape`.
//!
//! Invariants: the attributes are a function of the layout alone; [`upgrade`] replaces
//! exactly the keys this module owns (and its own `zarr_conventions` entries, found by
//! UUID), keeping every other attribute and convention a group carries; applying it to
//! attributes it made changes nothing.

use serde_json::{Map, Value, json};

use super::layout::Layout;

/// A convention's identity, as its specification registers it.
struct Convention {
    uuid: &'static str,
    name: &'static str,
    schema_url: &'static str,
    spec_url: &'static str,
    description: &'static str,
}

impl Convention {
    fn entry(&self) -> Value {
        json!({
            "uuid": self.uuid,
            "name": self.name,
            "schema_url": self.schema_url,
            "spec_url": self.spec_url,
            "description": self.description,
        })
    }
}

const MULTISCALES: Convention = Convention {
    uuid: "d35379db-88df-4056-af3a-620245f8e347",
    name: "multiscales",
    schema_url: "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v0.1/schema.json",
    spec_url: "https://github.com/zarr-conventions/multiscales/blob/v0.1/README.md",
    description: "Multiscale layout of zarr datasets",
};

const PROJ: Convention = Convention {
    uuid: "f17cb550-5864-4468-aeb7-f3180cfb622f",
    name: "proj",
    schema_url: "https://raw.githubusercontent.com/zarr-conventions/proj/refs/tags/v0.1/schema.json",
    spec_url: "https://github.com/zarr-conventions/proj/blob/v0.1/README.md",
    description: "Coordinate reference system information for geospatial data",
};

const SPATIAL: Convention = Convention {
    uuid: "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    name: "spatial",
    schema_url: "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v0.1/schema.json",
    spec_url: "https://github.com/zarr-conventions/spatial/blob/v0.1/README.md",
    description: "Spatial coordinate information",
};

/// Keys of a group's attributes this module owns besides `proj:*` and `spatial:*`.
const OWNED: [&str; 1] = ["multiscales"];

/// Level `k`'s plane: its shape `[height, width]` and its pixel size in degrees.
fn plane(layout: &Layout, k: usize) -> ([u64; 2], f64) {
    let (shape, _) = layout.level_shape(k);
    let p = layout.grid().pixel_size() * (1u64 << k) as f64;
    ([shape[1], shape[2]], p)
}

/// Level `k`'s affine transform, `[a, b, c, d, e, f]`: x = a·col + b·row + c, y = d·col +
/// e·row + f, with (0, 0) the top-left corner of the top-left pixel.
pub(crate) fn spatial_transform(layout: &Layout, k: usize) -> [f64; 6] {
    let (_, p) = plane(layout, k);
    [
        p,
        0.0,
        layout.origin_lon as f64,
        0.0,
        -p,
        layout.origin_lat as f64,
    ]
}

/// Level `k`'s `proj:` and `spatial:` attributes.
fn georeferencing(layout: &Layout, k: usize) -> Vec<(String, Value)> {
    let ([height, width], p) = plane(layout, k);
    let (west, north) = (layout.origin_lon as f64, layout.origin_lat as f64);
    vec![
        ("proj:code".into(), json!(format!("EPSG:{}", layout.epsg))),
        ("spatial:dimensions".into(), json!(["y", "x"])),
        (
            "spatial:transform".into(),
            json!(spatial_transform(layout, k)),
        ),
        ("spatial:shape".into(), json!([height, width])),
        (
            "spatial:bbox".into(),
            json!([
                west,
                north - height as f64 * p,
                west + width as f64 * p,
                north
            ]),
        ),
        ("spatial:registration".into(), json!("pixel")),
    ]
}

/// The `multiscales` attribute of a cube's root group (none without a pyramid).
fn multiscales(layout: &Layout) -> Option<Value> {
    let levels = layout.levels();
    let o = layout.overviews.filter(|_| !levels.is_empty())?;
    let method = o.resampling.name();
    let asset = |k: usize| layout.level_path(k).trim_start_matches('/').to_string();
    let entry = |k: usize| {
        let ([height, width], _) = plane(layout, k);
        let mut e = json!({
            "asset": asset(k),
            "transform": { "scale": [1.0, 1.0, 1.0], "translation": [0.0, 0.0, 0.0] },
            "spatial:transform": spatial_transform(layout, k),
            "spatial:shape": [height, width],
        });
        if k > 0 {
            e["derived_from"] = json!(asset(k - 1));
            e["transform"] = json!({ "scale": [1.0, 2.0, 2.0], "translation": [0.0, 0.0, 0.0] });
            e["resampling_method"] = json!(method);
        }
        e
    };
    let layout_entries: Vec<Value> = (0..=levels.len()).map(entry).collect();
    Some(json!({ "layout": layout_entries, "resampling_method": method }))
}

/// The convention attributes of level `k`'s group (0: the root group).
pub(crate) fn attributes(layout: &Layout, k: usize) -> Vec<(String, Value)> {
    let pyramid = if k == 0 { multiscales(layout) } else { None };
    let mut declared = vec![];
    if pyramid.is_some() {
        declared.push(MULTISCALES.entry());
    }
    declared.extend([PROJ.entry(), SPATIAL.entry()]);
    let mut out = vec![("zarr_conventions".to_string(), Value::Array(declared))];
    out.extend(georeferencing(layout, k));
    if let Some(m) = pyramid {
        out.push(("multiscales".into(), m));
    }
    out
}

/// Whether `key` is one this module owns.
fn owned(key: &str) -> bool {
    key.starts_with("proj:") || key.starts_with("spatial:") || OWNED.contains(&key)
}

/// Whether a `zarr_conventions` entry is one of this module's conventions (by UUID, or by
/// name or URL for entries an older writer made).
fn ours(entry: &Value) -> bool {
    [&MULTISCALES, &PROJ, &SPATIAL].iter().any(|c| {
        let name = entry["name"].as_str().unwrap_or_default();
        entry["uuid"] == c.uuid
            || name.trim_end_matches(':') == c.name
            || entry["schema_url"]
                .as_str()
                .is_some_and(|u| u.contains(&format!("/{}/", c.name)))
    })
}

/// `attrs` with the convention attributes of level `k` in place of whatever of them it
/// held (an older tilecube's, say); every other attribute and convention entry kept.
pub(crate) fn upgrade(attrs: &Map<String, Value>, layout: &Layout, k: usize) -> Map<String, Value> {
    let mut out: Map<String, Value> = attrs
        .iter()
        .filter(|(key, _)| !owned(key) && *key != "zarr_conventions")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let foreign: Vec<Value> = attrs
        .get("zarr_conventions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|e| !ours(e)).cloned().collect())
        .unwrap_or_default();
    for (key, value) in attributes(layout, k) {
        let value = match (key.as_str(), value) {
            ("zarr_conventions", Value::Array(mut declared)) => {
                declared.extend(foreign.iter().cloned());
                Value::Array(declared)
            }
            (_, v) => v,
        };
        out.insert(key, value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glads_root_declares_the_three_conventions_with_its_georeferencing() {
        let layout = Layout::glad();
        let attrs: Map<String, Value> = attributes(&layout, 0).into_iter().collect();
        let uuids: Vec<&str> = attrs["zarr_conventions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["uuid"].as_str().unwrap())
            .collect();
        assert_eq!(uuids, [MULTISCALES.uuid, PROJ.uuid, SPATIAL.uuid]);
        assert_eq!(attrs["proj:code"], "EPSG:4326");
        assert_eq!(attrs["spatial:dimensions"], json!(["y", "x"]));
        assert_eq!(
            attrs["spatial:transform"],
            json!([0.00025, 0.0, -180.0, 0.0, -0.00025, 80.0])
        );
        assert_eq!(attrs["spatial:shape"], json!([560_000, 1_440_000]));
        assert_eq!(attrs["spatial:bbox"], json!([-180.0, -60.0, 180.0, 80.0]));
        let entries = attrs["multiscales"]["layout"].as_array().unwrap();
        assert_eq!(entries.len(), layout.levels().len() + 1);
        assert_eq!(entries[0]["asset"], "lclu");
        assert_eq!(entries[1]["asset"], "overviews/2/lclu");
        assert_eq!(entries[1]["derived_from"], "lclu");
        assert_eq!(
            entries[1]["spatial:transform"],
            json!([0.0005, 0.0, -180.0, 0.0, -0.0005, 80.0])
        );
        assert_eq!(entries[1]["spatial:shape"], json!([280_000, 720_000]));
        assert_eq!(entries[1]["resampling_method"], "mode");
    }

    #[test]
    fn a_level_group_declares_proj_and_spatial_at_its_own_resolution() {
        let layout = Layout::glad();
        let attrs: Map<String, Value> = attributes(&layout, 2).into_iter().collect();
        assert_eq!(attrs["zarr_conventions"].as_array().unwrap().len(), 2);
        assert!(!attrs.contains_key("multiscales"));
        assert_eq!(attrs["spatial:shape"], json!([140_000, 360_000]));
        assert_eq!(attrs["spatial:transform"][0], 0.001);
    }

    #[test]
    fn upgrade_replaces_what_it_owns_keeps_the_rest_and_is_idempotent() {
        let layout = Layout::glad();
        let old = json!({
            "title": "GLAD",
            "zarr_conventions": [
                {"uuid": MULTISCALES.uuid, "name": "multiscales",
                 "schema_url": "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v1/schema.json"},
                {"uuid": "00000000-0000-0000-0000-000000000000", "name": "other"}
            ],
            "multiscales": {"layout": [{"asset": "lclu", "proj:transform": [1, 2, 3, 4, 5, 6]}]},
            "proj:shape": [1, 2],
        });
        let up = upgrade(old.as_object().unwrap(), &layout, 0);
        assert_eq!(up["title"], "GLAD");
        assert!(!up.contains_key("proj:shape"));
        let conventions = up["zarr_conventions"].as_array().unwrap();
        assert_eq!(conventions.len(), 4, "three of ours and the other one");
        assert_eq!(conventions[3]["name"], "other");
        assert_eq!(conventions[0]["schema_url"], MULTISCALES.schema_url);
        assert!(
            up["multiscales"]["layout"][0]
                .get("proj:transform")
                .is_none()
        );
        assert_eq!(upgrade(&up, &layout, 0), up);
    }
}
