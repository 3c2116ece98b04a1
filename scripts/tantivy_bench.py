#!/usr/bin/python3
"""The tantivy side of `recommender-lab bench-lexical`: indexes the same papers (title and abstract)
once into DIR, in one segment, as the service weighs and analyses them as far as tantivy's API
allows: one text field of the title twice and the abstract (the service counts title words
twice in one vector), words that hold a letter, lower-cased, the service's stop words dropped,
Snowball English stemming. It runs each query on one thread (the words of the query ORed, as
BM25 ranks them): all of them once untimed (a warm-up, as the Go side does), then timed, the timer around
parsing and searching only (the ids are read after it, as the service's search returns its
ids from memory). It prints one JSON object per line for the Go command: the indexing time,
then each query's seconds, CPU seconds (the process's, every thread) and ids.

usage: tantivy_bench.py PAPERS.jsonl[.gz] DIR QUERIES.jsonl K STOPWORDS
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
    b.add_text_field("text", stored=False, tokenizer_name="ours", index_option="freq")  # no positions: no phrase queries
    return b.build()


def analyzer(stopwords):
    """The service's analysis, as near as tantivy's filters come: a word is a run of letters and
    digits holding a letter."""
    return (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(r"[\p{L}\p{N}]*\p{L}[\p{L}\p{N}]*"))
            .filter(tantivy.Filter.lowercase())
            .filter(tantivy.Filter.custom_stopword(stopwords))
            .filter(tantivy.Filter.stemmer("english"))
            .build())


def build(papers, d, stopwords):
    os.makedirs(d)
    index = tantivy.Index(schema(), path=d)
    index.register_tokenizer("ours", analyzer(stopwords))
    writer = index.writer(heap_size=1 << 30, num_threads=1)  # one segment, as the service's one index
    opener = gzip.open if papers.endswith(".gz") else open
    with opener(papers, "rt") as f:
        for line in f:
            p = json.loads(line)
            title = p.get("title", "")
            writer.add_document(tantivy.Document(id=p["id"], text=f"{title}\n{title}\n{p.get('abstract', '')}"))
    writer.commit()
    writer.wait_merging_threads()
    return index


def main():
    papers, d, queries, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    stopwords = [w.strip() for w in open(sys.argv[5]) if w.strip()]
    built = 0.0
    if os.path.isdir(d):
        index = tantivy.Index.open(d)
        index.register_tokenizer("ours", analyzer(stopwords))
    else:
        start = time.perf_counter()
        index = build(papers, d, stopwords)
        built = time.perf_counter() - start
    print(json.dumps({"build_seconds": built}), flush=True)
    index.reload()
    searcher = index.searcher()
    words = re.compile(r"\w+")
    texts = [" ".join(words.findall(json.loads(line)["text"])) for line in open(queries)]  # the parser's syntax characters dropped

    def run(text):
        query = index.parse_query(text, ["text"])
        return searcher.search(query, k, count=False).hits  # counting every match would stop its pruning

    for text in texts:  # warm-up, untimed
        run(text)
    for text in texts:
        start, cpu = time.perf_counter(), time.process_time()
        hits = run(text)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        ids = [searcher.doc(addr)["id"][0] for _, addr in hits]
        print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "ids": ids}))


if __name__ == "__main__":
    main()
