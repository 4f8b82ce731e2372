"""Exact and approximate nearest-neighbour search as the gallery grows (chapter 6.3, lib.search).

    python benchmarks/bench_search.py [--sizes 10000 100000 1000000] [--dim 1280] [--queries 100]
        [--hnsw-max 100000] [--threads 1] [--seed 0] [--data random|clustered]

The gallery is random unit vectors of dimension `--dim` (1280: EfficientNet-Lite0's embedding),
drawn in blocks of 100,000 from `--seed`, so that a million of them (5.1 GB as float32) never sit in
memory twice: each index is built from the blocks, measured, and freed before the next. The queries
are `--queries` further random unit vectors. For each size and index:

- flat (FAISS IndexFlatIP): exact; its top-10 is the reference for recall;
- IVF-Flat: nlist = round(sqrt(n)) k-means cells trained on 40 * nlist gallery vectors (FAISS asks
  for at least 39 per cell), searched with nprobe = 1, 8 and 32;
- HNSW-Flat: m = 32 links, ef_construction = 40, searched with ef_search = 16, 64 and 256; built only
  up to `--hnsw-max` vectors, because its build is the slowest part.

Printed per row: build time (wall clock and process CPU seconds), query time per query (the batch of
queries in one call, divided by the number of queries; wall clock and CPU), recall@10 against the flat
index, and the memory the index holds (`search.index_bytes`: vectors, ids, cell centres, graph
links). Random vectors in
1280 dimensions have no clusters: every pair is nearly orthogonal and the true top-10 stand out only
slightly, which is the hardest case for an approximate index; embeddings of real images are
clustered, and recall at the same settings is higher (chapter 6.3 measures it on real embeddings).
`--data clustered` draws every vector (gallery and queries) instead around one of 1,000 random unit
centres, plus Gaussian noise of length about 0.5, normalised (cosine similarity to its centre about
0.9): a crude stand-in for embeddings of images of 1,000 kinds.
Results are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time

import numpy as np

from lib import search

BLOCK = 100_000
K = 10


CLUSTERS, NOISE = 1000, 0.5


def draw(rng, rows: int, dim: int, data: str, seed: int) -> np.ndarray:
    """`rows` unit vectors: uniformly random, or around one of CLUSTERS random centres."""
    noise = rng.standard_normal((rows, dim), dtype=np.float32)
    if data == "random":
        return search.normalize(noise)
    centres = search.normalize(np.random.default_rng([seed, 999]).standard_normal((CLUSTERS, dim),
                                                                                  dtype=np.float32))
    return search.normalize(centres[rng.integers(0, CLUSTERS, rows)] + noise * (NOISE / dim ** 0.5))


def blocks(n: int, dim: int, seed: int, data: str = "random"):
    """The gallery of n unit vectors, as float32 blocks of at most BLOCK rows (the same vectors for
    the same seed whatever index asks for them)."""
    for number, start in enumerate(range(0, n, BLOCK)):
        yield draw(np.random.default_rng([seed, number]), min(BLOCK, n - start), dim, data, seed)


def timed_search(index, queries, k: int = K):
    search.search(index, queries[:1], k)  # warm-up: first-call allocations
    started, cpu = time.perf_counter(), time.process_time()
    _, ids = search.search(index, queries, k)
    return ids, (time.perf_counter() - started) / len(queries), (time.process_time() - cpu) / len(queries)


def run(n: int, args, queries) -> list[dict]:
    rows = []

    def report(row):
        rows.append(row)
        print(f"{row['n']:>9,} {row['index']:<6} {row['param']:<20} build {row['build_s']:8.1f} s wall "
              f"{row['build_cpu_s']:8.1f} s cpu | query {row['query_ms']:8.3f} ms wall {row['query_cpu_ms']:8.3f} ms cpu "
              f"| recall@10 "
              f"{row['recall']:.3f} | memory {row['memory_mb']:8.0f} MB", flush=True)

    def build(make, fill=True):
        gc.collect()
        started, cpu = time.perf_counter(), time.process_time()
        index = make()
        if fill:
            for block in blocks(n, args.dim, args.seed, args.data):
                search.add(index, block)
        return index, time.perf_counter() - started, time.process_time() - cpu, search.index_bytes(index) / 1e6

    flat, wall, cpu, memory = build(lambda: search.flat_index(args.dim))
    exact, seconds, cpu_q = timed_search(flat, queries)
    report(dict(n=n, index="flat", param="exact", build_s=wall, build_cpu_s=cpu, query_ms=1e3 * seconds, query_cpu_ms=1e3 * cpu_q,
                recall=search.recall_at_k(exact, exact), memory_mb=memory))
    del flat

    nlist = max(1, round(n ** 0.5))
    train_n = min(n, 40 * nlist)

    def make_ivf():
        train = np.concatenate(list(blocks(train_n, args.dim, args.seed + 1, args.data)))  # same distribution
        return search.ivf_index(train, nlist, 1, seed=args.seed)

    ivf, wall, cpu, memory = build(make_ivf)
    for nprobe in (1, 8, 32):
        ivf.nprobe = min(nprobe, nlist)
        ids, seconds, cpu_q = timed_search(ivf, queries)
        report(dict(n=n, index="ivf", param=f"nlist={nlist} nprobe={ivf.nprobe}", build_s=wall, build_cpu_s=cpu,
                    query_ms=1e3 * seconds, query_cpu_ms=1e3 * cpu_q, recall=search.recall_at_k(ids, exact), memory_mb=memory))
    del ivf

    if n <= args.hnsw_max:
        hnsw, wall, cpu, memory = build(lambda: search.hnsw_index(args.dim, m=32, ef_construction=40))
        for ef in (16, 64, 256):
            hnsw.hnsw.efSearch = ef
            ids, seconds, cpu_q = timed_search(hnsw, queries)
            report(dict(n=n, index="hnsw", param=f"m=32 ef_search={ef}", build_s=wall, build_cpu_s=cpu,
                        query_ms=1e3 * seconds, query_cpu_ms=1e3 * cpu_q, recall=search.recall_at_k(ids, exact), memory_mb=memory))
        del hnsw
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--hnsw-max", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", choices=("random", "clustered"), default="random")
    args = parser.parse_args(argv)
    if min(args.sizes) < K or args.dim < 1 or args.queries < 1:
        parser.error(f"sizes must be at least {K}, dim and queries at least 1")
    search.threads(args.threads)
    import faiss

    print(f"faiss {faiss.__version__}, numpy {np.__version__}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {args.threads} FAISS thread(s), {args.data} vectors, "
          f"load average {os.getloadavg()[0]:.1f}",
          flush=True)
    rng = np.random.default_rng([args.seed, 10**6])
    queries = draw(rng, args.queries, args.dim, args.data, args.seed)
    rows = []
    for n in args.sizes:
        rows += run(n, args, queries)
    print(f"done; load average {os.getloadavg()[0]:.1f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
