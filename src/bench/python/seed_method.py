"""The seed's method, measured by `tilecube bench --overviews` on the bench's own tiles.

Every tile is opened with rioxarray and read whole, made a year slice of the cube and
written to its region of an Icechunk repository by one task of a local Dask cluster (one
worker process a thread, one thread each); each task writes on a fork of one session, and
the forks are merged and committed once. The cube is laid out first as the seed lays it
out: lclu(year, y, x) uint8 of the GLAD grid (36 x 14 tiles of the tiles' size), chunks
(1, 1000, 1000), fill 255, Zarr's
default codecs, metadata only.

usage: seed_method.py REPO WORKERS YEAR TILE_PATH...
Prints one line: `seconds <wall>` for the writes (cluster start excluded).
"""

import math
import sys
import time

import dask
import dask.array
import icechunk
import numpy as np
import rioxarray
import xarray as xr
from dask.distributed import Client, LocalCluster

YEARS = [2000, 2005, 2010, 2015, 2020]
NORTH, WEST = 80.0, -180.0
ROWS, COLUMNS = 14, 36
CHUNK = 1000


def region_of(tile, year):
    """The tile's slice of the cube, from its own geotransform."""
    x0, pixel, _, y0, _, _ = tile.rio.transform().to_gdal()
    row = int(round((NORTH - y0) / pixel))
    col = int(round((x0 - WEST) / pixel))
    h, w = tile.sizes["y"], tile.sizes["x"]
    i = YEARS.index(year)
    return {"year": slice(i, i + 1), "y": slice(row, row + h), "x": slice(col, col + w)}


def write_one(path, year, session):
    tile = rioxarray.open_rasterio(path, chunks=None).squeeze("band", drop=True)
    region = region_of(tile, year)
    ds = (
        tile.drop_vars(["x", "y", "spatial_ref"], errors="ignore")
        .expand_dims(year=1)
        .to_dataset(name="lclu")
    )
    ds.to_zarr(session.store, region=region, zarr_format=3, consolidated=False)
    return session


def main():
    repo_path, workers, year = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    paths = sys.argv[4:]
    with rioxarray.open_rasterio(paths[0]) as first:
        side = first.sizes["x"]
    shape = (len(YEARS), ROWS * side, COLUMNS * side)
    chunks = (1, min(CHUNK, side), min(CHUNK, side))
    storage = icechunk.local_filesystem_storage(repo_path)
    repo = icechunk.Repository.create(storage)
    session = repo.writable_session("main")
    template = xr.Dataset(
        {"lclu": (("year", "y", "x"), dask.array.zeros(shape, chunks=-1, dtype=np.uint8))},
        coords={"year": YEARS},
    )
    template.to_zarr(
        session.store,
        compute=False,
        mode="w",
        zarr_format=3,
        encoding={"lclu": {"chunks": chunks, "fill_value": 255}},
        consolidated=False,
    )
    session.commit("the cube's layout")
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, memory_limit=0
    )
    client = Client(cluster)
    session = repo.writable_session("main")
    fork = session.fork()
    start = time.perf_counter()
    tasks = [dask.delayed(write_one)(p, year, fork) for p in paths]
    forks = dask.compute(*tasks, scheduler=client)
    session.merge(*forks)
    session.commit(f"{len(paths)} tiles")
    print(f"seconds {time.perf_counter() - start:.3f}")
    client.close()
    cluster.close()


if __name__ == "__main__":
    main()
