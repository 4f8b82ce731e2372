"""Image search: nearest neighbours among embeddings, exactly in torch and at scale with FAISS.
Chapter 6.3 ("Image search") explains everything here.

Images are compared by the cosine similarity of their embeddings (`lib.transfer.embed`). With rows
scaled to unit length (`normalize`), cosine similarity is the inner product, so the k most similar
gallery images of a query are the k largest entries of one matrix product (`exact_search`). That
costs a pass over the whole gallery per query; FAISS (Johnson, Douze and Jegou, "Billion-scale
similarity search with GPUs", 2019) offers the same exact search (`flat_index`) and approximate indexes that
look at a part of the gallery only: an inverted file of `nlist` k-means cells of which a query
visits `nprobe` (`ivf_index`), or a hierarchical navigable small-world graph (Malkov and Yashunin, 2018)
with `m` links per vector, searched with a candidate list of `ef_search` (`hnsw_index`). How much of
the exact answer an approximate index returns is its `recall_at_k`; how many of the returned images
share the query's label is `precision_at_k`; `near_duplicates` lists pairs above a similarity.

Every function checks its input first and raises a one-line `SearchError` saying what to do.
"""

from __future__ import annotations

import numpy as np
import torch

KINDS = ("flat", "ivf", "hnsw")
UNIT_TOLERANCE = 1e-3  # how far from 1 a row's length may be and still count as unit length


class SearchError(ValueError):
    """Input that a search cannot take (wrong shape, dimension or k, unnormalised vectors, too few
    training vectors). The message says what to do."""


# ---------------------------------------------------------------------------------------------
# Vectors


def _matrix(x, name: str) -> np.ndarray:
    """`x` (numpy array or torch tensor) as a C-contiguous float32 matrix (n, d), n >= 1, finite."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise SearchError(f"{name} must be a non-empty matrix (n vectors, d numbers each), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise SearchError(f"{name} must hold numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise SearchError(f"{name} holds NaN or infinite values; check the embeddings that produced them")
    return x


def normalize(x) -> np.ndarray:
    """Rows of `x` scaled to unit length (float32 numpy); a row of zeros, which has no direction,
    is refused. After this, the inner product of two rows is their cosine similarity. Chapter 6.3."""
    x = _matrix(x, "vectors")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if len(zero):
        raise SearchError(f"row {zero[0]} is all zeros and has no direction; drop it before normalising")
    return x / norms


def check_unit(x, name: str = "vectors") -> np.ndarray:
    """`x` as a float32 matrix, refused unless every row has unit length (within UNIT_TOLERANCE)."""
    x = _matrix(x, name)
    norms = np.linalg.norm(x, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1) > UNIT_TOLERANCE)
    if len(bad):
        raise SearchError(f"{name} must have unit length for cosine search (row {bad[0]} has length "
                          f"{norms[bad[0]]:.4g}); pass them through search.normalize first")
    return x


def _check_k(k, n: int) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise SearchError(f"k must be a whole number of at least 1, got {k!r}")
    if k > n:
        raise SearchError(f"k={k} is larger than the gallery ({n} vectors); ask for at most {n}")
    return int(k)


def _check_dims(queries: np.ndarray, d: int) -> None:
    if queries.shape[1] != d:
        raise SearchError(f"queries have dimension {queries.shape[1]} but the gallery has {d}; "
                          "embed both with the same network")


def cosine_similarity(a, b) -> np.ndarray:
    """The matrix of cosine similarities (len(a), len(b)) of two sets of vectors of any length
    (zero rows refused). Chapter 6.3."""
    a, b = normalize(a), normalize(b)
    _check_dims(a, b.shape[1])
    return (torch.from_numpy(a) @ torch.from_numpy(b).T).numpy()


def exact_search(queries, gallery, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k gallery vectors most similar to each query, by exhaustive comparison in torch: scores
    (Q, k) float32, most similar first, and their positions in the gallery (Q, k) int64. Both sets
    must have unit length (`normalize`). Chapter 6.3."""
    queries, gallery = check_unit(queries, "queries"), check_unit(gallery, "gallery")
    _check_dims(queries, gallery.shape[1])
    k = _check_k(k, len(gallery))
    scores = torch.from_numpy(queries) @ torch.from_numpy(gallery).T
    top = scores.topk(k, dim=1, largest=True, sorted=True)
    return top.values.numpy(), top.indices.numpy().astype(np.int64)


# ---------------------------------------------------------------------------------------------
# FAISS indexes (inner product on unit vectors = cosine similarity)


def _faiss():
    try:
        import faiss
    except ImportError:
        raise SearchError("FAISS is not installed; install it with: pip install faiss-cpu") from None
    return faiss


def threads(n: int) -> None:
    """Let FAISS use `n` CPU threads (1 makes builds and timings reproducible on a shared machine)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise SearchError(f"threads must be a whole number of at least 1, got {n!r}")
    _faiss().omp_set_num_threads(int(n))


def flat_index(dim: int):
    """An empty exact index (FAISS IndexFlatIP): every query is compared with every vector. Chapter 6.3."""
    _check_whole("dim", dim, 1)
    return _faiss().IndexFlatIP(int(dim))


def ivf_index(train, nlist: int, nprobe: int = 8, seed: int = 0):
    """An empty inverted-file index (FAISS IndexIVFFlat, inner product) whose `nlist` cells are the
    k-means clusters of the unit vectors `train`; a query visits the `nprobe` cells whose centres are
    most similar to it and compares itself with their vectors only. Chapter 6.3."""
    train = check_unit(train, "training vectors")
    _check_whole("nlist", nlist, 1)
    _check_whole("nprobe", nprobe, 1)
    if nprobe > nlist:
        raise SearchError(f"nprobe={nprobe} exceeds nlist={nlist}: a query cannot visit more cells than exist")
    if len(train) < nlist:
        raise SearchError(f"an IVF index with nlist={nlist} cells needs at least {nlist} training vectors, got "
                          f"{len(train)}; use fewer cells (about the square root of the gallery size)")
    faiss = _faiss()
    d = train.shape[1]
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, int(nlist), faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = int(seed)
    index.train(train)
    index.nprobe = int(nprobe)
    return index


def hnsw_index(dim: int, m: int = 32, ef_construction: int = 40, ef_search: int = 64):
    """An empty HNSW graph index (FAISS IndexHNSWFlat, inner product): each vector is linked to about
    `m` neighbours per layer; `ef_construction` candidates are kept while inserting, `ef_search`
    while searching (larger: better recall, slower). Chapter 6.3."""
    _check_whole("dim", dim, 1)
    for name, value in (("m", m), ("ef_construction", ef_construction), ("ef_search", ef_search)):
        _check_whole(name, value, 1)
    faiss = _faiss()
    index = faiss.IndexHNSWFlat(int(dim), int(m), faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = int(ef_construction)
    index.hnsw.efSearch = int(ef_search)
    return index


def _check_whole(name: str, value, floor: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < floor:
        raise SearchError(f"{name} must be a whole number of at least {floor}, got {value!r}")


def add(index, vectors) -> None:
    """Add unit `vectors` to a FAISS index (of the same dimension, trained if it needs training);
    their positions continue from `index.ntotal`."""
    vectors = check_unit(vectors, "gallery")
    if vectors.shape[1] != index.d:
        raise SearchError(f"gallery vectors have dimension {vectors.shape[1]} but the index has {index.d}; "
                          "build the index for this dimension")
    if not index.is_trained:
        raise SearchError("the index is not trained; build IVF indexes with search.ivf_index(train, ...)")
    index.add(vectors)


def build(kind: str, gallery, *, nlist: int | None = None, nprobe: int = 8, train_size: int | None = None,
          m: int = 32, ef_construction: int = 40, ef_search: int = 64, seed: int = 0):
    """A FAISS index of the unit vectors `gallery`: 'flat' (exact), 'ivf' (trained on `train_size`
    gallery vectors drawn with `seed`, all of them by default; `nlist` defaults to the square root
    of the gallery size) or 'hnsw'. Chapter 6.3."""
    if kind not in KINDS:
        raise SearchError(f"unknown index kind {kind!r}; choose one of: {', '.join(KINDS)}")
    gallery = check_unit(gallery, "gallery")
    n, d = gallery.shape
    if kind == "flat":
        index = flat_index(d)
    elif kind == "hnsw":
        index = hnsw_index(d, m, ef_construction, ef_search)
    else:
        nlist = max(1, round(n ** 0.5)) if nlist is None else nlist
        if train_size is not None:
            _check_whole("train_size", train_size, 1)
        train = gallery
        if train_size is not None and train_size < n:
            chosen = np.random.default_rng(seed).choice(n, size=train_size, replace=False)
            train = gallery[np.sort(chosen)]
        index = ivf_index(train, nlist, nprobe, seed)
    add(index, gallery)
    return index


def search(index, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Search a FAISS index: scores (Q, k) and gallery positions (Q, k), most similar first. An
    approximate index that finds fewer than k vectors pads with position -1. Chapter 6.3."""
    queries = check_unit(queries, "queries")
    _check_dims(queries, index.d)
    k = _check_k(k, index.ntotal)
    scores, ids = index.search(queries, k)
    return scores, ids.astype(np.int64)


def index_bytes(index) -> int:
    """The memory an index holds, counted from its structure: the vectors (4 bytes a number), plus
    for IVF a 64-bit id per vector and the cell centres, plus for HNSW its graph links (4 bytes
    each) and their bookkeeping. Chapter 6.3."""
    faiss = _faiss()
    index = faiss.downcast_index(index)
    vectors = index.ntotal * index.d * 4
    if isinstance(index, faiss.IndexFlat):
        return int(vectors)
    if isinstance(index, faiss.IndexIVF):
        return int(vectors + index.ntotal * 8 + index.nlist * index.d * 4)
    if isinstance(index, faiss.IndexHNSW):
        graph = index.hnsw
        return int(vectors + graph.neighbors.size() * 4 + graph.levels.size() * 4 + graph.offsets.size() * 8)
    raise SearchError(f"index_bytes knows flat, IVF-Flat and HNSW-Flat indexes, not {type(index).__name__}")


# ---------------------------------------------------------------------------------------------
# Measures


def _ids(ids, name: str) -> np.ndarray:
    if isinstance(ids, torch.Tensor):
        ids = ids.cpu().numpy()
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise SearchError(f"{name} must be a matrix of gallery positions (queries, k), got shape {ids.shape} "
                          f"and dtype {ids.dtype}")
    return ids


def recall_at_k(found, exact, k: int | None = None) -> float:
    """The mean over queries of the share of the exact top-k (`exact`, e.g. from `exact_search` or a
    flat index) that appears in the approximate top-k (`found`). 1.0: the index missed nothing.
    Padding (-1) counts as a miss. `k` defaults to the width of `exact`. Chapter 6.3."""
    found, exact = _ids(found, "found"), _ids(exact, "exact")
    if len(found) != len(exact):
        raise SearchError(f"found has {len(found)} queries but exact has {len(exact)}; search the same queries")
    k = exact.shape[1] if k is None else _check_k(k, min(found.shape[1], exact.shape[1]))
    if found.shape[1] < k:
        raise SearchError(f"found has only {found.shape[1]} results per query, fewer than k={k}")
    hits = [len(set(f[:k].tolist()) & set(e[:k].tolist()) - {-1}) for f, e in zip(found, exact)]
    return float(np.mean(hits) / k)


def precision_at_k(ids, gallery_labels, query_labels, k: int | None = None) -> float:
    """The mean over queries of the share of the top-k results whose label equals the query's label.
    `ids` (Q, >= k) are gallery positions; padding (-1) counts as a wrong result. Chapter 6.3."""
    ids = _ids(ids, "ids")
    gallery_labels, query_labels = np.asarray(gallery_labels), np.asarray(query_labels)
    if query_labels.shape != (len(ids),):
        raise SearchError(f"query_labels must hold one label per query ({len(ids)}), got shape {query_labels.shape}")
    if gallery_labels.ndim != 1:
        raise SearchError(f"gallery_labels must be one label per gallery vector, got shape {gallery_labels.shape}")
    k = ids.shape[1] if k is None else _check_k(k, ids.shape[1])
    top = ids[:, :k]
    if top.max() >= len(gallery_labels):
        raise SearchError(f"ids refer to gallery position {top.max()} but gallery_labels has only "
                          f"{len(gallery_labels)} labels; pass the labels of the searched gallery")
    valid = top >= 0
    same = valid & (gallery_labels[np.where(valid, top, 0)] == query_labels[:, None])
    return float(same.mean())


def near_duplicates(vectors, threshold: float, chunk: int = 1024) -> list[tuple[int, int, float]]:
    """Every pair (i, j, similarity) with i < j of unit `vectors` whose cosine similarity is at
    least `threshold`, most similar first; computed exactly in blocks of `chunk` rows. Chapter 6.3."""
    x = torch.from_numpy(check_unit(vectors, "vectors"))
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not -1 <= threshold <= 1:
        raise SearchError(f"threshold must be a cosine similarity between -1 and 1, got {threshold!r}")
    _check_whole("chunk", chunk, 1)
    pairs = []
    for start in range(0, len(x), chunk):
        block = x[start:start + chunk] @ x.T
        rows = torch.arange(start, start + len(block))[:, None]
        mask = (block >= threshold) & (torch.arange(len(x))[None, :] > rows)
        i, j = mask.nonzero(as_tuple=True)
        pairs += [(int(a) + start, int(b), float(block[a, b])) for a, b in zip(i, j)]
    return sorted(pairs, key=lambda pair: (-pair[2], pair[0], pair[1]))
