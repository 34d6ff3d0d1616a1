"""Validate a tilecube repository's GeoZarr conventions with geozarr-toolkit, an
independent validator, and check the values against the arrays they describe.

usage: geozarr.py REPO   (REPO: a local directory; Icechunk spec 1 or 2, icechunk-python 2.x)
Every group is validated for the conventions it must declare: the root group for
`multiscales`, `proj` and `spatial` (and the multiscales structure: every asset and
`derived_from` present), each overview level's group for `proj` and `spatial`. Prints each
problem and exits 1, or prints "geozarr ok: N groups".
"""
import sys

import icechunk as ic
import zarr
from geozarr_toolkit.helpers.validation import validate_group, validate_multiscales_structure

UUIDS = {
    "multiscales": "d35379db-88df-4056-af3a-620245f8e347",
    "proj": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "spatial": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
}

problems = []


def check(ok, what):
    if not ok:
        problems.append(what)


def validate(group, path, conventions):
    results = validate_group(group, conventions)
    for name in conventions:
        check(name in results, f"{path}: {name} not validated: {results!r}")
    for name, errors in results.items():
        for e in errors:
            problems.append(f"{path}: {name}: {e[:300]}")
    declared = {c.get("uuid") for c in group.attrs.get("zarr_conventions", [])}
    for name in conventions:
        check(UUIDS[name] in declared, f"{path}: zarr_conventions does not declare {name}")


def georeferencing(attrs, path, shape, pixel):
    check(attrs.get("proj:code") == "EPSG:4326", f"{path}: proj:code {attrs.get('proj:code')!r}")
    check(attrs.get("spatial:dimensions") == ["y", "x"], f"{path}: spatial:dimensions")
    check(attrs.get("spatial:shape") == list(shape), f"{path}: spatial:shape {attrs.get('spatial:shape')!r}, array {shape}")
    t = attrs.get("spatial:transform")
    check(t == [pixel, 0.0, -180.0, 0.0, -pixel, 80.0], f"{path}: spatial:transform {t!r}")
    h, w = shape
    bbox = attrs.get("spatial:bbox")
    check(bbox == [-180.0, 80.0 - h * pixel, -180.0 + w * pixel, 80.0], f"{path}: spatial:bbox {bbox!r}")


repo = ic.Repository.open(ic.local_filesystem_storage(sys.argv[1]))
root = zarr.open_group(repo.readonly_session("main").store, mode="r")
attrs = dict(root.attrs)
validate(root, "/", ["multiscales", "proj", "spatial"])
ok, errors = validate_multiscales_structure(root)
problems.extend(f"/: multiscales structure: {e}" for e in errors)
check(ok, "/: multiscales structure")

# The pixel size from the CF GeoTransform of spatial_ref, not from the attributes checked.
pixel0 = float(root["spatial_ref"].attrs["GeoTransform"].split()[1])
georeferencing(attrs, "/", root["lclu"].shape[1:], pixel0)
layout = attrs.get("multiscales", {}).get("layout", [])
check(len(layout) >= 2, f"multiscales layout: {layout!r}")
groups = 1
for k, entry in enumerate(layout):
    asset = entry["asset"]
    array = root[asset]
    shape = list(array.shape[1:])
    pixel = pixel0 * 2**k
    check(entry.get("spatial:shape") == shape, f"{asset}: layout spatial:shape {entry.get('spatial:shape')!r}, array {shape}")
    check(entry.get("spatial:transform") == [pixel, 0.0, -180.0, 0.0, -pixel, 80.0], f"{asset}: layout spatial:transform {entry.get('spatial:transform')!r}")
    if k == 0:
        check("derived_from" not in entry, f"{asset}: level 0 derived from {entry.get('derived_from')!r}")
        continue
    check(entry.get("derived_from") == layout[k - 1]["asset"], f"{asset}: derived_from {entry.get('derived_from')!r}")
    check(entry.get("transform", {}).get("scale") == [1.0, 2.0, 2.0], f"{asset}: transform {entry.get('transform')!r}")
    check(entry.get("resampling_method") == "mode", f"{asset}: resampling_method {entry.get('resampling_method')!r}")
    path = asset.rsplit("/", 1)[0]
    group = root[path]
    validate(group, path, ["proj", "spatial"])
    georeferencing(dict(group.attrs), path, shape, pixel)
    groups += 1

if problems:
    print("geozarr problems:\n  " + "\n  ".join(problems))
    sys.exit(1)
print(f"geozarr ok: {groups} groups")
