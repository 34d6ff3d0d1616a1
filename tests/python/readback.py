"""Read a tilecube repository (Icechunk spec version 1) from Python, as the seed notebook
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
assert dict(ds.sizes) == {"year": n_years, "y": height, "x": width}, dict(ds.sizes)
assert ds.lclu.dims == ("year", "y", "x"), ds.lclu.dims
for name in ("year", "x", "y", "spatial_ref"):
    assert name in ds.coords, f"missing coordinate {name}: {list(ds.coords)}"
assert ds.year.dtype == np.int64 and list(ds.year.values) == expect["years"], ds.year.values
assert ds.x.dtype == np.float64 and ds.y.dtype == np.float64
res = expect["pixel_size"]
assert abs(ds.x.values[0] - (-180 + res / 2)) < 1e-9, ds.x.values[0]
assert abs(ds.y.values[0] - (80 - res / 2)) < 1e-9, ds.y.values[0]
assert abs(ds.x.values[-1] - (180 - res / 2)) < 1e-9, ds.x.values[-1]
assert ds.spatial_ref.dtype == np.int64 and ds.spatial_ref.ndim == 0
assert "WGS 84" in ds.spatial_ref.attrs["crs_wkt"]
assert ds.spatial_ref.attrs["spatial_ref"] == ds.spatial_ref.attrs["crs_wkt"]
assert ds.spatial_ref.attrs["GeoTransform"] == expect["geotransform"], ds.spatial_ref.attrs
assert ds.lclu.dtype == np.uint8, ds.lclu.dtype
assert ds.lclu.attrs["grid_mapping"] == "spatial_ref"
assert ds.lclu.attrs["publication"].startswith("Potapov, P.")
assert ds.lclu.attrs["doi"].startswith("10.3389/frsen")
assert ds.attrs["license"] == "CC BY 4.0", ds.attrs

for t in expect["tiles"]:
    want = np.fromfile(expect_dir / t["file"], dtype=np.uint8).reshape(t["size"], t["size"])
    got = ds.lclu.isel(
        year=t["year_index"],
        y=slice(t["y0"], t["y0"] + t["size"]),
        x=slice(t["x0"], t["x0"] + t["size"]),
    ).values
    assert got.dtype == np.uint8
    assert np.array_equal(got, want), f"{t['name']} differs"
for r in expect["unwritten"]:
    got = ds.lclu.isel(
        year=r["year_index"],
        y=slice(r["y0"], r["y0"] + r["size"]),
        x=slice(r["x0"], r["x0"] + r["size"]),
    ).values
    assert (got == 255).all(), f"unwritten region {r} is not all 255"
print(f"readback ok: {len(expect['tiles'])} tiles, {len(expect['unwritten'])} unwritten regions")
