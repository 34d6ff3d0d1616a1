"""Read a cube of a preset of one's own with xarray and rioxarray (icechunk-python 2.x) and
check it against expectations the Rust test wrote from GDAL's reads of the source tiles: the
variable by its preset name, its CF attributes (flag values and meanings as the preset gives
them), the CRS as rioxarray sees it, and pixels at given longitudes and latitudes.

usage: preset_readback.py REPO EXPECT.json
"""
import json
import sys

import icechunk as ic
import numpy as np
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


repo_dir, expect = sys.argv[1], json.load(open(sys.argv[2]))
repo = ic.Repository.open(ic.local_filesystem_storage(repo_dir))
ds = xr.open_dataset(repo.readonly_session("main").store, engine="zarr", consolidated=False)
var = expect["variable"]
check(var in ds.data_vars, f"{var} not among {list(ds.data_vars)}")
da = ds[var]
check(da.dims == ("year", "y", "x"), f"dims {da.dims}")
check(da.dtype == np.uint8, f"dtype {da.dtype}")
for key, want in expect["attrs"].items():
    got = da.attrs.get(key)
    got = list(got) if isinstance(got, (list, tuple, np.ndarray)) else got
    check(got == want, f"attribute {key}: {got!r}, expected {want!r}")
check(ds.attrs.get("title") == expect["title"], f"title {ds.attrs.get('title')!r}")
crs = da.rio.crs
check(crs is not None and crs.to_epsg() == 4326, f"rioxarray CRS {crs}")
res = da.rio.resolution()
check(abs(res[0] - expect["pixel_size"]) < 1e-12 and abs(res[1] + expect["pixel_size"]) < 1e-12, f"rioxarray resolution {res}")
for p in expect["points"]:
    got = int(da.sel(year=p["year"], x=p["lon"], y=p["lat"], method="nearest").values)
    check(got == p["value"], f"{p}: {got}")
if failures:
    print("\n".join(failures))
    sys.exit(1)
print(f"{len(expect['points'])} points and {len(expect['attrs'])} attributes as expected")
