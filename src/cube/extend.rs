//! A new epoch: one year appended to a written cube (`tilecube extend --year Y`).
//!
//! The year axis is the first of every data array (the variable's and each overview level's), chunked
//! by 1, so a year appended after the last one only changes the arrays' shape: the chunks of
//! the earlier years keep their indices, and so their references and manifests.
//!
//! Invariants:
//! - one commit, or none when the year is refused; it holds metadata and the `year`
//!   coordinates only, and records no tile as written;
//! - no chunk of an earlier year is written, and no manifest of them: the data arrays change
//!   the first axis of their shape alone (Icechunk's `update_array`, which keeps every chunk
//!   reference and reuses every manifest whose extent the arrays' manifest splits still
//!   contain: splits are per year, and the other axes do not change); each dataset's `year`
//!   coordinate (one chunk holding every year) is written whole again with the new year;
//! - the root group's attributes change in the layout's `years` alone (the `tilecube`
//!   attribute); every other attribute, the GeoZarr conventions (which do not depend on the
//!   years) and the level groups stay as they are;
//! - a year is appended only after the cube's last one: a year already there, one before the
//!   last (inserting it would move every chunk of the later years) and one outside
//!   [`crate::preset::YEARS`] are refused by name before anything is written; the check reads
//!   the layout of the snapshot the extension's session opened on, not a handle's copy;
//! - the extension rebases over writers that landed while it ran (their chunk changes do not
//!   conflict with a metadata update); a writer that opened its session before the extension
//!   landed cannot land over it (Icechunk refuses to rebase chunk changes over an array's
//!   metadata update): its commit is refused, the tiles of that commit do not land, and `write --missing`
//!   writes its tiles again; a second extension of the same cube at the same time fails the
//!   same way, and says to run the extension again.

use std::sync::Arc;

use icechunk::format::snapshot::SnapshotProperties;
use serde_json::{Value, json};
use zarrs::array::Array;
use zarrs::group::{Group, GroupBuilder};
use zarrs_icechunk::AsyncIcechunkStore;

use super::layout::{LAYOUT_ATTR, Layout};
use super::{Cube, CubeError, LayoutError};
use crate::preset::YEARS;

/// What [`Cube::extend_year`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Extension {
    /// The year appended.
    pub year: i32,
    /// The cube's years now.
    pub years: Vec<i32>,
    /// The data arrays whose year axis grew: `/lclu`, then each level's.
    pub arrays: Vec<String>,
    /// The commit holding the extension.
    pub snapshot: String,
}

/// Whether `year` may be appended to a cube of `layout`: after its last year, and a year a
/// cube takes.
pub fn check_new_year(layout: &Layout, year: i32) -> Result<(), CubeError> {
    if !YEARS.contains(&year) {
        return Err(CubeError::YearOutOfRange { year });
    }
    if layout.years.contains(&year) {
        return Err(CubeError::YearInCube {
            year,
            years: years_text(&layout.years),
        });
    }
    match layout.years.last() {
        Some(&last) if year < last => Err(CubeError::YearBeforeLast { year, last }),
        _ => Ok(()),
    }
}

/// An Icechunk or zarrs error, with what was being done.
fn failed<E: Into<super::BoxError>>(what: &str) -> impl Fn(E) -> CubeError + '_ {
    move |e| CubeError::icechunk(what, e)
}

fn years_text(years: &[i32]) -> String {
    years
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Cube {
    /// Append `year` after the cube's last year, in one commit: every data array's year axis
    /// grows by one, every dataset's `year` coordinate gains the year, and the layout in the
    /// root group's attributes lists it. No chunk or manifest of an earlier year is written.
    /// On success this handle's layout is the new one.
    pub async fn extend_year(&mut self, year: i32) -> Result<Extension, CubeError> {
        if !YEARS.contains(&year) {
            return Err(CubeError::YearOutOfRange { year });
        }
        let session = self.writable_session().await?;
        let store = Arc::new(AsyncIcechunkStore::new(session));
        let reading_root = |e| CubeError::icechunk("reading the cube's root group", e);
        let root = Group::async_open(Arc::clone(&store), "/")
            .await
            .map_err(reading_root)?;
        let mut root_attrs = root.attributes().clone();
        let layout = Layout::from_root_attributes(&root_attrs)?.ok_or_else(|| {
            CubeError::NoCubeInRepository {
                location: self.location.to_string(),
            }
        })?;
        check_new_year(&layout, year)?;
        let mut grown = layout.clone();
        grown.years.push(year);

        let mut arrays = Vec::new();
        for k in 0..=layout.levels().len() {
            let path = layout.level_path(k);
            let growing = format!("growing the year axis of {path}");
            let mut array = Array::async_open(Arc::clone(&store), &path)
                .await
                .map_err(|e| CubeError::icechunk(format!("reading {path}"), e))?;
            let mut shape = array.shape().to_vec();
            // The array must hold the layout's years on its first axis: anything else is a
            // cube this extension would make inconsistent.
            if shape.first() != Some(&(layout.years.len() as u64)) {
                return Err(LayoutError::YearAxis {
                    path,
                    shape,
                    years: layout.years.len(),
                }
                .into());
            }
            shape[0] += 1;
            array.set_shape(shape).map_err(failed(&growing))?;
            array
                .async_store_metadata()
                .await
                .map_err(failed(&growing))?;
            let prefix = path.rsplit_once('/').map(|(p, _)| p).unwrap_or_default();
            super::dataset::write_year(&store, &grown, prefix).await?;
            arrays.push(path);
        }

        // The layout's years, and nothing else of the root group, change.
        let stored = root_attrs
            .get_mut(LAYOUT_ATTR)
            .and_then(Value::as_object_mut)
            .ok_or(LayoutError::AttributeNotAMap { name: LAYOUT_ATTR })?;
        stored.insert("years".into(), json!(grown.years));
        if Layout::from_root_attributes(&root_attrs)?.as_ref() != Some(&grown) {
            return Err(LayoutError::YearNotAppended {
                name: LAYOUT_ATTR,
                year,
            }
            .into());
        }
        let writing_root = "rewriting the cube's root group";
        GroupBuilder::new()
            .attributes(root_attrs)
            .build(Arc::clone(&store), "/")
            .map_err(failed(writing_root))?
            .async_store_metadata()
            .await
            .map_err(failed(writing_root))?;

        let session = store.session();
        let mut session = session.write().await;
        let mut props = SnapshotProperties::new();
        props.insert(
            LAYOUT_ATTR.into(),
            json!({ "extend": { "year": year, "years": grown.years } }),
        );
        let message = format!(
            "add year {year}: the cube's years are {}",
            years_text(&grown.years)
        );
        let id = match super::commit::commit(self, &mut session, &message, props).await {
            Err(CubeError::ArraysChangedUnder { branch, source }) => {
                return Err(CubeError::ExtendRaced {
                    year,
                    branch,
                    source,
                });
            }
            r => r?,
        };
        self.layout = grown;
        Ok(Extension {
            year,
            years: self.layout.years.clone(),
            arrays,
            snapshot: id.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_year_is_appended_only_after_the_last_and_refusals_say_why() {
        let l = Layout::glad();
        assert!(check_new_year(&l, 2025).is_ok());
        assert!(check_new_year(&l, 2021).is_ok());
        assert!(check_new_year(&l, 9999).is_ok());
        let said = |year| check_new_year(&l, year).unwrap_err().to_string();
        assert_eq!(
            said(2020),
            "year 2020 is already in the cube (years: 2000, 2005, 2010, 2015, 2020); there is nothing to extend"
        );
        assert_eq!(
            said(2005),
            "year 2005 is already in the cube (years: 2000, 2005, 2010, 2015, 2020); there is nothing to extend"
        );
        assert_eq!(
            said(2012),
            "year 2012 comes before the cube's last year, 2020: a year is only appended after the last one (inserting it would move every chunk of the later years)"
        );
        assert_eq!(
            said(1990),
            "year 1990 comes before the cube's last year, 2020: a year is only appended after the last one (inserting it would move every chunk of the later years)"
        );
        for year in [0, -2025, 10_000, i32::MAX] {
            assert_eq!(
                said(year),
                format!("year {year} is not a year a cube takes (1 to 9999)")
            );
        }
    }

    #[test]
    fn a_grown_layout_places_the_new_year_after_the_others() {
        let mut l = Layout::glad();
        l.years.push(2025);
        assert_eq!(l.shape(), [6, 560_000, 1_440_000]);
        assert_eq!(l.year_index(2025), Some(5));
        assert_eq!(l.level_shape(3).0[0], 6);
        let cell = l.grid().cell("50S_170E".parse().unwrap()).unwrap();
        let first = l.tile_chunks(5, cell).next().unwrap();
        assert_eq!(first, [5, 520, 1400]);
        assert_eq!(
            l.tile_of_chunk(&[5, 559, 1439]),
            Some((2025, "50S_170E".parse().unwrap()))
        );
    }
}
