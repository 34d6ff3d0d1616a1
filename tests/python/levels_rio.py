"""Open every level of a tilecube pyramid with rioxarray: each gives the cube's CRS and its
own transform, and a `rio.clip_box` of one tile on level x4 equals the numpy mode chain of
that tile's pixels.

usage: levels_rio.py REPO YEAR_INDEX TILE   (TILE: e.g. 50N_070W, a written tile)
Prints "rio ok: N levels" when every check holds.
"""
import sys

import icechunk as ic
import numpy as np
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from affine import Affine

from modes import mode_2x2

problems = []


def check(ok, what):
    if not ok:
        problems.append(what)


def tile_box(name):
    """The tile's bounds (west, south, east, north): its name is its upper-left corner."""
    lat, lon = name.split("_")
    north = int(lat[:-1]) * (1 if lat[-1] == "N" else -1)
    west = int(lon[:-1]) * (1 if lon[-1] == "E" else -1)
    return west, north - 10, west + 10, north


def clip(da, box):
    """The pixels of `box`: rioxarray also takes the pixels whose edge touches the box, so
    the box is narrowed by a quarter pixel on each side."""
    q = abs(da.rio.resolution()[0]) / 4
    w, s, e, n = box
    return da.rio.clip_box(minx=w + q, miny=s + q, maxx=e - q, maxy=n - q)


repo_path, year_index, tile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
repo = ic.Repository.open(ic.local_filesystem_storage(repo_path))
store = repo.readonly_session("main").store
root = xr.open_dataset(store, engine="zarr", consolidated=False, decode_coords="all")
layout = root.attrs["multiscales"]["layout"]
pixel = float(root.spatial_ref.attrs["GeoTransform"].split()[1])
box = tile_box(tile)
level0 = clip(root.lclu.isel(year=year_index), box).values
check(level0.shape[0] == level0.shape[1] and level0.shape[0] > 0, f"level 0 clip {level0.shape}")
for k, entry in enumerate(layout):
    group = entry["asset"].rsplit("/", 1)[0] if k else None
    ds = root if k == 0 else xr.open_dataset(store, group=group, engine="zarr", consolidated=False, decode_coords="all")
    da = ds.lclu.isel(year=year_index)
    where = group or "/"
    check(da.rio.crs is not None and da.rio.crs.to_epsg() == 4326, f"{where}: crs {da.rio.crs!r}")
    p = pixel * 2**k
    t = da.rio.transform()
    check(t.almost_equals(Affine(p, 0.0, -180.0, 0.0, -p, 80.0)), f"{where}: transform {t!r}")
    if k == 2:
        want = mode_2x2(mode_2x2(level0, 255), 255)
        got = clip(da, box).values
        check(got.shape == want.shape, f"{where}: clip of {tile} {got.shape}, expected {want.shape}")
        if got.shape == want.shape:
            wrong = int((got != want).sum())
            check(wrong == 0, f"{where}: {wrong} pixels of {tile} differ from the mode chain")
        check(int((want != 255).sum()) > 0, f"{where}: {tile} holds data")
check(len(layout) >= 3, f"levels {len(layout)}")
if problems:
    print("rio checks failed:\n  " + "\n  ".join(problems))
    sys.exit(1)
print(f"rio ok: {len(layout)} levels")
