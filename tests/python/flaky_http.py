"""A static file server for the retry tests: serves a directory with Range support, and
answers 503 to the first N requests for each .tif file it has (or always, for paths named
with --always-fail); a path it does not have is a 404 from the first request. Prints its port on stdout once listening.

usage: flaky_http.py ROOT --fail-first N [--always-fail REL ...]
"""
import argparse
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("root")
ap.add_argument("--fail-first", type=int, default=1)
ap.add_argument("--always-fail", action="append", default=[])
args = ap.parse_args()
seen = {}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def _fail(self, rel):
        if not rel.endswith(".tif"):
            return False
        if rel in args.always_fail:
            return True
        n = seen.get(rel, 0)
        seen[rel] = n + 1
        return n < args.fail_first

    def _serve(self, body):
        rel = self.path.split("?")[0].lstrip("/")
        path = os.path.join(args.root, rel)
        if not os.path.isfile(path):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self._fail(rel):
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = os.path.getsize(path)
        start, end = 0, size - 1
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[len("bytes="):].partition("-")
            start = int(a) if a else 0
            end = min(int(b), size - 1) if b else size - 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if body:
            with open(path, "rb") as f:
                f.seek(start)
                self.wfile.write(f.read(end - start + 1))

    def do_HEAD(self):
        self._serve(False)

    def do_GET(self):
        self._serve(True)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
