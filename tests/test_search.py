"""lib.search: exact cosine top-k, FAISS indexes, recall, precision, near-duplicates (chapter 6.3)."""

import numpy as np
import pytest
import torch

from lib import search


def unit(n, d=32, seed=0):
    return search.normalize(np.random.default_rng(seed).standard_normal((n, d)))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    search.threads(1)


def test_normalize_gives_unit_rows_and_cosine_is_their_inner_product():
    x = np.array([[3.0, 4.0], [0.0, -2.0]])
    assert np.allclose(search.normalize(x), [[0.6, 0.8], [0.0, -1.0]])
    assert np.allclose(search.cosine_similarity(x, x), [[1.0, -0.8], [-0.8, 1.0]], atol=1e-6)
    a, b = np.random.default_rng(1).standard_normal((2, 5, 7))
    expected = torch.nn.functional.cosine_similarity(torch.tensor(a)[:, None], torch.tensor(b)[None], dim=-1)
    assert np.allclose(search.cosine_similarity(a, b), expected.numpy(), atol=1e-5)


def test_exact_torch_top_k_equals_a_brute_force_sort_and_faiss_flat():
    gallery, queries = unit(500, seed=1), unit(20, seed=2)
    scores, ids = search.exact_search(queries, gallery, 10)
    brute = np.argsort(-(queries.astype(np.float64) @ gallery.T.astype(np.float64)), axis=1)[:, :10]
    assert np.array_equal(ids, brute)
    assert np.all(np.diff(scores, axis=1) <= 0)
    flat_scores, flat_ids = search.search(search.build("flat", gallery), queries, 10)
    assert np.array_equal(flat_ids, ids)
    assert np.allclose(flat_scores, scores, atol=1e-5)


def test_recall_of_an_exact_index_is_one_and_of_a_crippled_ivf_is_less():
    gallery, queries = unit(2000, seed=3), unit(50, seed=4)
    _, exact = search.exact_search(queries, gallery, 10)
    _, flat = search.search(search.build("flat", gallery), queries, 10)
    assert search.recall_at_k(flat, exact) == 1.0
    ivf = search.build("ivf", gallery, nlist=40, nprobe=1)
    _, found = search.search(ivf, queries, 10)
    assert search.recall_at_k(found, exact) < 0.5  # one cell of 40 on structureless data misses most
    ivf.nprobe = 40  # every cell visited: exact again
    _, found = search.search(ivf, queries, 10)
    assert search.recall_at_k(found, exact) == 1.0


def test_hnsw_with_a_wide_search_finds_the_exact_neighbours():
    gallery, queries = unit(1000, seed=5), unit(30, seed=6)
    _, exact = search.exact_search(queries, gallery, 5)
    index = search.build("hnsw", gallery, m=16, ef_construction=80, ef_search=400)
    _, found = search.search(index, queries, 5)
    assert search.recall_at_k(found, exact) >= 0.98


def test_recall_counts_overlap_per_query():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, -1], [8, 7, 6, 5]])
    assert search.recall_at_k(found, exact) == pytest.approx((2 / 4 + 4 / 4) / 2)
    assert search.recall_at_k(found, exact, k=2) == pytest.approx((0 + 0) / 2)


def test_precision_at_k_on_a_hand_made_case():
    gallery_labels = np.array([0, 0, 1, 1, 2])
    ids = np.array([[0, 1, 2], [2, 4, 3], [4, -1, 0]])
    query_labels = np.array([0, 1, 2])
    # query 0: labels 0, 0, 1 -> 2/3; query 1: 1, 2, 1 -> 2/3; query 2: 2, (missing), 0 -> 1/3
    assert search.precision_at_k(ids, gallery_labels, query_labels) == pytest.approx(5 / 9)
    assert search.precision_at_k(ids, gallery_labels, query_labels, k=1) == 1.0
    assert search.precision_at_k(ids, gallery_labels, query_labels, k=2) == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)


def test_near_duplicates_finds_the_planted_pairs_only():
    base = unit(50, d=64, seed=7)
    copies = search.normalize(base[[3, 17]] + 0.01 * np.random.default_rng(8).standard_normal((2, 64)))
    x = np.concatenate([base, copies])  # rows 50 and 51 copy rows 3 and 17
    pairs = search.near_duplicates(x, 0.95, chunk=16)
    assert [(i, j) for i, j, _ in pairs] in ([(3, 50), (17, 51)], [(17, 51), (3, 50)])
    assert all(s >= 0.95 for *_, s in pairs) and pairs[0][2] >= pairs[1][2]


def test_index_bytes_counts_vectors_and_structure():
    gallery = unit(300, d=16, seed=9)
    assert search.index_bytes(search.build("flat", gallery)) == 300 * 16 * 4
    assert search.index_bytes(search.build("ivf", gallery, nlist=10, nprobe=2)) == 300 * 16 * 4 + 300 * 8 + 10 * 16 * 4
    assert search.index_bytes(search.build("hnsw", gallery, m=8)) > 300 * 16 * 4 + 300 * 8 * 4


@pytest.mark.parametrize("call, message", [
    (lambda: search.exact_search(unit(3, d=8), unit(10, d=16), 2), "dimension 8 but the gallery has 16"),
    (lambda: search.exact_search(unit(3), unit(10), 11), "k=11 is larger than the gallery"),
    (lambda: search.exact_search(unit(3), 2 * unit(10), 2), "unit length"),
    (lambda: search.exact_search(unit(3), unit(10), 0), "k must be a whole number"),
    (lambda: search.ivf_index(unit(20), nlist=50), "needs at least 50 training vectors, got 20"),
    (lambda: search.ivf_index(unit(100), nlist=5, nprobe=6), "nprobe=6 exceeds nlist=5"),
    (lambda: search.build("lsh", unit(10)), "unknown index kind 'lsh'"),
    (lambda: search.search(search.build("flat", unit(10)), unit(2, d=8), 3), "dimension 8 but the gallery has 32"),
    (lambda: search.search(search.build("flat", unit(10)), unit(2), 20), "k=20 is larger than the gallery"),
    (lambda: search.normalize(np.zeros((2, 3))), "row 0 is all zeros"),
    (lambda: search.normalize(np.ones(3)), "non-empty matrix"),
    (lambda: search.normalize([[np.nan, 1.0]]), "NaN"),
    (lambda: search.near_duplicates(unit(5), 1.5), "threshold must be a cosine similarity"),
    (lambda: search.recall_at_k(np.zeros((2, 3), int), np.zeros((3, 3), int)), "found has 2 queries"),
    (lambda: search.precision_at_k(np.array([[0, 5]]), np.array([0, 1]), np.array([0])), "position 5"),
])
def test_bad_input_gets_a_one_line_error(call, message):
    with pytest.raises(search.SearchError, match=message) as error:
        call()
    assert "\n" not in str(error.value)
