"""Open every level of a tilecube pyramid from Python, as a generic multiscales reader does,
and check it against a reduction of level 0 computed here with numpy.

usage: overviews.py REPO YEAR_INDEX   (REPO: a local directory; Icechunk spec 1 with
icechunk-python 1.x, spec 1 or 2 with 2.x)
Prints "overviews ok: N levels" when every check holds.
"""
import sys

import icechunk as ic
import numpy as np
import xarray as xr

from modes import mode_2x2

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


repo_path, year_index = sys.argv[1], int(sys.argv[2])
repo = ic.Repository.open(ic.local_filesystem_storage(repo_path))
store = repo.readonly_session("main").store
root = xr.open_dataset(store, engine="zarr", consolidated=False)
fill = 255

conventions = root.attrs.get("zarr_conventions", [])
check(any(c.get("name") == "multiscales" and c.get("uuid") == "d35379db-88df-4056-af3a-620245f8e347" for c in conventions),
      f"zarr_conventions names multiscales: {conventions!r}")
ms = root.attrs.get("multiscales", {})
layout = ms.get("layout", [])
check(len(layout) >= 2, f"multiscales layout lists the levels: {ms!r}")
check(layout and layout[0]["asset"] == "lclu" and "derived_from" not in layout[0], f"level 0 is the root's lclu: {layout[:1]!r}")

pixel = float(root.spatial_ref.attrs["GeoTransform"].split()[1])
level0 = root.lclu.isel(year=year_index).values
current = level0
for k, entry in enumerate(layout[1:], start=1):
    factor = 2 ** k
    asset = entry["asset"]
    check(asset == f"overviews/{factor}/lclu", f"level {k} asset {asset!r}")
    check(entry.get("derived_from") == layout[k - 1]["asset"], f"level {k} derived_from {entry.get('derived_from')!r}")
    check(entry["transform"]["scale"] == [1.0, 2.0, 2.0], f"level {k} scale {entry['transform']!r}")
    check(entry["transform"]["translation"] == [0.0, 0.0, 0.0], f"level {k} translation {entry['transform']!r}")
    check(entry.get("resampling_method", ms.get("resampling_method")) == "mode", f"level {k} resampling {entry!r}")
    group = asset.rsplit("/", 1)[0]
    ds = xr.open_dataset(store, group=group, engine="zarr", consolidated=False)
    current = mode_2x2(current, fill)
    h, w = current.shape
    check(ds.lclu.dims == ("year", "y", "x"), f"{group}: dims {ds.lclu.dims!r}")
    check(dict(ds.sizes) == {"year": root.sizes["year"], "y": h, "x": w}, f"{group}: sizes {dict(ds.sizes)!r}, expected y={h} x={w}")
    check(list(ds.year.values) == list(root.year.values), f"{group}: years {ds.year.values!r}")
    p = pixel * factor
    check(abs(ds.x.values[0] - (-180 + p / 2)) < 1e-9, f"{group}: x[0] {ds.x.values[0]!r}")
    check(abs(ds.y.values[0] - (80 - p / 2)) < 1e-9, f"{group}: y[0] {ds.y.values[0]!r}")
    gt = [float(v) for v in ds.spatial_ref.attrs["GeoTransform"].split()]
    check(gt == [-180.0, p, 0.0, 80.0, 0.0, -p], f"{group}: GeoTransform {gt!r}")
    check(entry.get("spatial:shape") == [h, w], f"{group}: spatial:shape {entry.get('spatial:shape')!r}")
    check(entry.get("spatial:transform") == [p, 0.0, -180.0, 0.0, -p, 80.0], f"{group}: spatial:transform {entry.get('spatial:transform')!r}")
    check(ds.lclu.attrs.get("_FillValue", fill) == fill and ds.lclu.dtype == np.uint8, f"{group}: dtype/fill")
    got = ds.lclu.isel(year=year_index).values
    wrong = int((got != current).sum())
    check(wrong == 0, f"{group}: {wrong} pixels differ from the numpy reduction of level 0")
    check(int((current != fill).sum()) > 0 or int((level0 != fill).sum()) == 0, f"{group}: the level holds data")

if failures:
    print("overview checks failed:\n  " + "\n  ".join(failures))
    sys.exit(1)
print(f"overviews ok: {len(layout) - 1} levels")
