#!/usr/bin/python3
"""The hnswlib side of `recommender-lab bench-ann`: builds hnswlib (Debian's python3-hnswlib) on the
same vectors with the same M and ef_construction, queries with one thread, and prints one JSON
object per line for the Go command to tabulate.

usage: hnswlib_bench.py DIR M EF_CONSTRUCTION EF[,EF...] [BUILD_THREADS]
DIR holds meta.json, base.f32, queries.f32 and gt.i32 as written by bench-ann.
"""
import json
import os
import sys
import time

import hnswlib
import numpy as np


def rss_mib(field="VmRSS:"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    d, m, efc, efs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(e) for e in sys.argv[4].split(",")]
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    meta = json.load(open(os.path.join(d, "meta.json")))
    n, q, dims, k = meta["n"], meta["queries"], meta["dims"], meta["k"]
    base = np.fromfile(os.path.join(d, "base.f32"), dtype=np.float32).reshape(n, dims)
    queries = np.fromfile(os.path.join(d, "queries.f32"), dtype=np.float32).reshape(q, dims)
    gt = np.fromfile(os.path.join(d, "gt.i32"), dtype=np.int32).reshape(q, k)

    before = rss_mib()
    index = hnswlib.Index(space="ip", dim=dims)  # the vectors are unit length: ip is cosine
    index.init_index(max_elements=n, M=m, ef_construction=efc, random_seed=1)
    index.set_num_threads(threads)
    start = time.perf_counter()
    index.add_items(base, np.arange(n))
    build = time.perf_counter() - start
    index.set_num_threads(1)
    after = rss_mib()
    print(json.dumps({"peer": "hnswlib", "build_seconds": build, "index_mib": after - before,
                      "peak_rss_mib": rss_mib("VmHWM:")}), flush=True)

    for ef in efs:
        index.set_ef(ef)
        start = time.perf_counter()
        hits, runs = 0, 0
        # One query at a time, one thread, the set again until a second has passed, as the Go
        # side does; recall from the first pass.
        while runs == 0 or time.perf_counter() - start < 1.0:
            for i in range(q):
                labels, _ = index.knn_query(queries[i], k=k)
                if runs == 0:
                    hits += len(set(labels[0].tolist()) & set(gt[i].tolist()))
            runs += 1
        secs = time.perf_counter() - start
        print(json.dumps({"peer": "hnswlib", "ef": ef, "recall": hits / (q * k), "qps": runs * q / secs}), flush=True)

    path = os.path.join(d, "hnswlib.bin")
    index.save_index(path)
    start = time.perf_counter()
    loaded = hnswlib.Index(space="ip", dim=dims)
    loaded.load_index(path, max_elements=n)
    print(json.dumps({"peer": "hnswlib", "reload_seconds": time.perf_counter() - start}), flush=True)
    os.remove(path)


if __name__ == "__main__":
    main()
