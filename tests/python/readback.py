"""Read a tilecube repository (Icechunk spec 1 with icechunk-python 1.x; spec 1 or 2 with 2.x) from Python, as the seed notebook
reads its cube, and check it against expectations written by the Rust test.

usage: readback.py REPO EXPECT_DIR   (REPO: a directory or s3://bucket/prefix)
EXPECT_DIR holds expect.json and one raw uint8 file per written tile (GDAL's read).
"""
import json
import sys
from pathlib import Path

import icechunk as ic
import numpy as np
import xarray as xr

# Explicit checks, not `assert`: they hold under PYTHONOPTIMIZE too, and every failed one is
# reported before the script exits non-zero.
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


repo_arg, expect_dir = sys.argv[1], Path(sys.argv[2])
expect = json.loads((expect_dir / "expect.json").read_text())

if repo_arg.startswith("s3://"):
    # Endpoint and credentials come from the AWS_* environment, as for tilecube itself.
    import os

    bucket, _, prefix = repo_arg[len("s3://"):].partition("/")
    storage = ic.s3_storage(
        bucket=bucket,
        prefix=prefix,
        region=os.environ.get("AWS_REGION", "us-east-1"),
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        allow_http=True,
        force_path_style=True,
        from_env=True,
    )
else:
    storage = ic.local_filesystem_storage(repo_arg)
repo = ic.Repository.open(storage)
ds = xr.open_dataset(repo.readonly_session("main").store, engine="zarr", consolidated=False)
print(ds)

n_years, height, width = expect["shape"]
check(dict(ds.sizes) == {"year": n_years, "y": height, "x": width}, f"sizes {dict(ds.sizes)!r}, expected year={n_years} y={height} x={width}")
check(ds.lclu.dims == ("year", "y", "x"), f"ds.lclu.dims == ('year', 'y', 'x'): {ds.lclu.dims!r}")
for name in ("year", "x", "y", "spatial_ref"):
    check(name in ds.coords, f"missing coordinate {name}: {list(ds.coords)}")
check(ds.year.dtype == np.int64 and list(ds.year.values) == expect["years"], f"ds.year.dtype == np.int64 and list(ds.year.values) == expect['years']: {ds.year.values!r}")
check(ds.x.dtype == np.float64 and ds.y.dtype == np.float64, 'ds.x.dtype == np.float64 and ds.y.dtype == np.float64')
res = expect["pixel_size"]
check(abs(ds.x.values[0] - (-180 + res / 2)) < 1e-9, f"abs(ds.x.values[0] - (-180 + res / 2)) < 1e-9: {ds.x.values[0]!r}")
check(abs(ds.y.values[0] - (80 - res / 2)) < 1e-9, f"abs(ds.y.values[0] - (80 - res / 2)) < 1e-9: {ds.y.values[0]!r}")
check(abs(ds.x.values[-1] - (180 - res / 2)) < 1e-9, f"abs(ds.x.values[-1] - (180 - res / 2)) < 1e-9: {ds.x.values[-1]!r}")
check(ds.spatial_ref.dtype == np.int64 and ds.spatial_ref.ndim == 0, 'ds.spatial_ref.dtype == np.int64 and ds.spatial_ref.ndim == 0')
check("WGS 84" in ds.spatial_ref.attrs["crs_wkt"], '"WGS 84" in ds.spatial_ref.attrs["crs_wkt"]')
check(ds.spatial_ref.attrs["spatial_ref"] == ds.spatial_ref.attrs["crs_wkt"], 'ds.spatial_ref.attrs["spatial_ref"] == ds.spatial_ref.attrs["crs_wkt"]')
check(ds.spatial_ref.attrs["GeoTransform"] == expect["geotransform"], f"ds.spatial_ref.attrs['GeoTransform'] == expect['geotransform']: {ds.spatial_ref.attrs!r}")
check(ds.lclu.dtype == np.uint8, f"ds.lclu.dtype == np.uint8: {ds.lclu.dtype!r}")
check(ds.lclu.attrs["grid_mapping"] == "spatial_ref", 'ds.lclu.attrs["grid_mapping"] == "spatial_ref"')
check(ds.lclu.attrs["publication"].startswith("Potapov, P."), 'ds.lclu.attrs["publication"].startswith("Potapov, P.")')
check(ds.lclu.attrs["doi"].startswith("10.3389/frsen"), 'ds.lclu.attrs["doi"].startswith("10.3389/frsen")')
check(ds.attrs["license"] == "CC BY 4.0", f"ds.attrs['license'] == 'CC BY 4.0': {ds.attrs!r}")

for t in expect["tiles"]:
    want = np.fromfile(expect_dir / t["file"], dtype=np.uint8).reshape(t["size"], t["size"])
    got = ds.lclu.isel(
        year=t["year_index"],
        y=slice(t["y0"], t["y0"] + t["size"]),
        x=slice(t["x0"], t["x0"] + t["size"]),
    ).values
    check(got.dtype == np.uint8, 'got.dtype == np.uint8')
    check(np.array_equal(got, want), f"{t['name']} differs")
for r in expect["unwritten"]:
    got = ds.lclu.isel(
        year=r["year_index"],
        y=slice(r["y0"], r["y0"] + r["size"]),
        x=slice(r["x0"], r["x0"] + r["size"]),
    ).values
    check((got == 255).all(), f"unwritten region {r} is not all 255")
if failures:
    for f in failures:
        print(f"FAILED: {f}")
    sys.exit(1)
print(f"readback ok: {len(expect['tiles'])} tiles, {len(expect['unwritten'])} unwritten regions")
