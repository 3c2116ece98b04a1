#!/usr/bin/python3
"""The tantivy side of `recommender-lab bench-lexical`: indexes the same papers (title and abstract,
English stemming) once into DIR, then runs each query on one thread (title boosted 2x, the
words of the query ORed, as BM25 ranks them) and prints one JSON object per line for the Go
command: the indexing time, then each query's seconds and ids.

usage: tantivy_bench.py PAPERS.jsonl[.gz] DIR QUERIES.jsonl K
needs: pip install tantivy==0.27.0
"""
import gzip
import json
import os
import re
import sys
import time

import tantivy


def schema():
    b = tantivy.SchemaBuilder()
    b.add_text_field("id", stored=True, tokenizer_name="raw")
    b.add_text_field("title", stored=False, tokenizer_name="en_stem")
    b.add_text_field("abstract", stored=False, tokenizer_name="en_stem")
    return b.build()


def build(papers, d):
    os.makedirs(d)
    index = tantivy.Index(schema(), path=d)
    writer = index.writer(heap_size=1 << 30, num_threads=2)
    opener = gzip.open if papers.endswith(".gz") else open
    with opener(papers, "rt") as f:
        for line in f:
            p = json.loads(line)
            writer.add_document(tantivy.Document(id=p["id"], title=p.get("title", ""), abstract=p.get("abstract", "")))
    writer.commit()
    writer.wait_merging_threads()
    return index


def main():
    papers, d, queries, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    built = 0.0
    if os.path.isdir(d):
        index = tantivy.Index.open(d)
    else:
        start = time.perf_counter()
        index = build(papers, d)
        built = time.perf_counter() - start
    print(json.dumps({"build_seconds": built}), flush=True)
    index.reload()
    searcher = index.searcher()
    words = re.compile(r"\w+")
    for line in open(queries):
        q = json.loads(line)
        start = time.perf_counter()
        text = " ".join(words.findall(q["text"]))  # the query parser's syntax characters dropped
        query = index.parse_query(text, ["title", "abstract"], field_boosts={"title": 2.0})
        hits = searcher.search(query, k, count=False).hits  # counting every match would stop its pruning
        ids = [searcher.doc(addr)["id"][0] for _, addr in hits]
        print(json.dumps({"seconds": time.perf_counter() - start, "ids": ids}))


if __name__ == "__main__":
    main()
