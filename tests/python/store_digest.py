"""Print every key of a tilecube repository's head on `main` with the SHA-256 of its bytes, as
JSON: arrays' metadata, chunks (as stored: compressed) and the root group's metadata without
tilecube's own `tilecube` attribute (the layout record, which may gain fields).

usage: store_digest.py REPO   (a local directory; icechunk-python 2.x)
"""
import asyncio
import hashlib
import json
import os
import sys

import icechunk as ic
from zarr.core.buffer import default_buffer_prototype


async def main(path):
    repo = ic.Repository.open(ic.local_filesystem_storage(path))
    store = repo.readonly_session(branch="main").store
    out = {}
    keys = sorted([k async for k in store.list()])
    for key in keys:
        buf = await store.get(key, prototype=default_buffer_prototype())
        data = buf.to_bytes()
        if key == "zarr.json":
            meta = json.loads(data)
            meta.get("attributes", {}).pop("tilecube", None)
            data = json.dumps(meta, sort_keys=True).encode()
        out[key] = hashlib.sha256(data).hexdigest()
    print(json.dumps(out, indent=1, sort_keys=True))


asyncio.run(main(sys.argv[1]))
# The digest is out: leave without the interpreter's teardown, where the native extension's
# runtime has been seen to end the process with a failure status after all was printed.
sys.stdout.flush()
os._exit(0)
