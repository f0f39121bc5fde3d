"""Proven lower bounds (`jaxflow.signed.bounds`): never above the optimum (brute force over every
gauge, or `frustration(method="exact")`), never below 0, and exact where theory says so."""

import math
import subprocess
import sys
import tracemalloc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxflow._checks import InputError
from jaxflow.signed import Block, Conv2d, Dense, Layer, Pool, Route, SignedGraph, Skip, bounds
from jaxflow.signed.bounds import BoundResult, block_lower_bound, lower_bound
from jaxflow.signed.frustration import frustration

TOL = 1e-9  # relative to Σ|a|


def whole_symbol(sym) -> np.ndarray:
    """`B(ω)` of every frequency, `(f, p, q)`, tap by tap at once: the reference for the bound's
    slab-by-slab products."""
    out = np.zeros((sym.frequencies, sym.p, sym.q), np.complex128)
    for K, col, phase in zip(sym.kernels, sym.cols, sym.phases(sym.shifts, 0, sym.frequencies).T):
        out[:, :, col : col + K.shape[1]] += phase[:, None, None] * K[None]
    return out


def brute_force(A: np.ndarray) -> float:
    """`min_s δ(s)` over every gauge (node 0 fixed to +1), `A` dense with `n <= 16`."""
    n = len(A)
    idx = np.arange(2 ** (n - 1))[:, None]
    S = np.concatenate([np.ones((idx.size, 1)), 1 - 2 * ((idx >> np.arange(n - 1)) & 1)], axis=1)
    return 0.5 * (np.abs(A).sum() - np.max(np.einsum("mi,ij,mj->m", S, A, S)))


def weights(rng, shape, integer: bool):
    if integer:
        return rng.integers(-3, 4, size=shape).astype(np.float64)
    return rng.normal(size=shape)


def layered(rng, widths, integer=False) -> SignedGraph:
    return SignedGraph.from_weights([weights(rng, (b, a), integer) for a, b in zip(widths, widths[1:])])


def with_skips(rng, integer=False) -> SignedGraph:
    return SignedGraph.from_layers([
        Layer("x", shape=(4,)),
        Layer("h", {"x": Dense(weights(rng, (4, 4), integer))}),
        Layer("r", {"h": Dense(weights(rng, (4, 4), integer)), "x": Skip((4,))}),  # a residual sum
        Layer("y", {"r": Dense(weights(rng, (3, 4), integer)), "x": Dense(weights(rng, (3, 4), integer))}),
    ])  # fmt: skip


def small_conv(rng, integer=False) -> SignedGraph:
    """21 nodes: a conv 1→2 channels (2×2 on 3×3), a pooling and a dense readout."""
    conv = Conv2d(weights(rng, (2, 1, 2, 2), integer), (1, 3, 3))
    return SignedGraph.from_layers([
        Layer("x", shape=(1, 3, 3)),
        Layer("c", {"x": conv}),
        Layer("p", {"c": Pool(2, conv.out_shape, stride=1, mode="max")}),
        Layer("y", {"p": Dense(weights(rng, (2, 2), integer), in_shape=(2, 1, 1))}),
    ])  # fmt: skip


def conv_graph(rng, integer=False) -> SignedGraph:
    """60 nodes: a strided, padded conv, a dilated grouped conv, average pooling, a dense readout."""
    a = Conv2d(weights(rng, (4, 2, 3, 3), integer), (2, 4, 4), stride=2, padding=1)
    b = Conv2d(weights(rng, (2, 2, 2, 2), integer), a.out_shape, padding=1, dilation=2, groups=2)
    pool = Pool(2, b.out_shape, mode="avg")
    return SignedGraph.from_layers([
        Layer("x", shape=(2, 4, 4)),
        Layer("a", {"x": a}),
        Layer("b", {"a": b}),
        Layer("p", {"b": pool}),
        Layer("y", {"p": Dense(weights(rng, (2, 2), integer), in_shape=pool.out_shape)}),
    ])  # fmt: skip


def check_valid(graph, optimum, total, **kw):
    """Every candidate is at most the optimum; the reported bound is >= 0."""
    res = lower_bound(graph, method="auto", **kw)
    assert {"blocks", "stars", "eigen"} <= res.candidates.keys()
    cycles = lower_bound(graph, method="cycles", **kw)
    for name, value in (*res.candidates.items(), ("cycles", cycles.value)):
        assert value <= optimum + TOL * max(total, 1), (name, res.candidates, optimum)
    assert 0 <= res.value <= optimum + TOL * max(total, 1)
    assert res.total == pytest.approx(total, rel=1e-12) and cycles.total == pytest.approx(total, rel=1e-12)


@pytest.mark.parametrize("integer", [False, True])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_layered_bounds_never_exceed_brute_force(seed, weighted, integer):
    rng = np.random.default_rng(seed)
    for widths in ((3, 5, 4), (2, 4, 3, 4), (5, 3, 2, 3), (6, 8)):
        g = layered(rng, widths, integer)
        A = np.asarray(g.to_dense()) if weighted else np.sign(np.asarray(g.to_dense()))
        opt = brute_force(A)
        check_valid(g, opt, np.abs(A).sum(), weighted=weighted)
        # small budgets: partial stars (enumerated nodes, groups of 2), small block groups
        check_valid(g, opt, np.abs(A).sum(), weighted=weighted, work=16, group_size=2)


@pytest.mark.parametrize("build", [with_skips, small_conv])
@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("integer", [False, True])
def test_skips_and_pooling_never_exceed_brute_force(build, weighted, integer):
    for seed in range(3):
        g = build(np.random.default_rng(seed), integer)
        assert g.num_nodes <= 21
        A = np.asarray(g.to_dense())
        A = A if weighted else np.sign(A)
        opt = (
            brute_force(A)
            if g.num_nodes <= 16
            else float(frustration(g, method="exact", weighted=weighted).value)
        )
        check_valid(g, opt, np.abs(A).sum(), weighted=weighted)
        check_valid(g, opt, np.abs(A).sum(), weighted=weighted, work=16, group_size=3)


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("integer", [False, True])
def test_conv_graph_never_exceeds_exact(weighted, integer):
    for seed in range(2):
        g = conv_graph(np.random.default_rng(seed), integer)
        exact = frustration(g, method="exact", weighted=weighted)
        assert exact.optimal
        check_valid(g, float(exact.value), float(exact.total), weighted=weighted)


def test_float32_graph():
    g = layered(np.random.default_rng(7), (4, 6, 5)).astype(jnp.float32)
    opt = brute_force(np.asarray(g.to_dense(), np.float64))
    res = lower_bound(g)
    assert 0 <= res.value <= opt + TOL * res.total


def test_balanced_graph_gives_zero():
    rng = np.random.default_rng(3)
    signs = [rng.choice([-1.0, 1.0], w) for w in (4, 5, 3)]
    ws = [
        np.outer(signs[i + 1], signs[i]) * np.abs(rng.normal(size=(len(signs[i + 1]), len(signs[i]))))
        for i in range(2)
    ]
    g = SignedGraph.from_weights(ws)  # gauge-equivalent to all-positive: frustration 0
    for method in ("blocks", "stars", "cycles", "eigen", "auto"):
        assert lower_bound(g, method=method).value == 0.0
    positive = conv_graph(rng).map_weights(jnp.abs)
    assert lower_bound(positive, method="blocks").value == 0.0


def biclique_optimum(W: np.ndarray) -> float:
    """`½(Σ|W| − max_s Σ_c |sᵀW_c|)` by enumerating the rows' signs."""
    k = W.shape[0]
    idx = np.arange(2**k)[:, None]
    S = 1 - 2 * ((idx >> np.arange(k)) & 1)
    return 0.5 * (np.abs(W).sum() - np.max(np.abs(S @ W).sum(1)))


@pytest.mark.parametrize("shape", [(5, 9), (9, 5), (12, 40), (40, 12)])
def test_single_biclique_is_exact(shape):
    W = np.random.default_rng(sum(shape)).normal(size=shape)
    W_rows = W if shape[0] <= shape[1] else W.T
    opt = biclique_optimum(W_rows)
    g = SignedGraph.from_weights([W.T])  # one Dense block, W.T of shape (d_1, d_0)
    res = lower_bound(g, method="blocks")
    assert res.value == pytest.approx(opt, rel=1e-10)
    if sum(shape) <= 16:
        assert opt == pytest.approx(brute_force(np.asarray(g.to_dense())), rel=1e-12)


def test_stars_is_exact_when_the_cover_fits():
    rng = np.random.default_rng(11)
    for widths in ((6, 5, 7), (3, 8, 2, 6), (10, 4, 12)):
        g = layered(rng, widths)
        exact = frustration(g, method="exact")
        res = lower_bound(g, method="stars")
        assert res.value == pytest.approx(float(exact.value), rel=1e-10, abs=1e-10)
        assert res.value <= float(exact.value) + TOL * res.total


@pytest.mark.parametrize(
    "kw",
    [
        {"padding": 1},
        {"stride": 2, "padding": 1},
        {"stride": (2, 1), "padding": ((0, 1), (2, 0))},
        {"dilation": 2, "padding": 2},
        {"groups": 2, "padding": 1},
    ],
)
def test_conv_shortcut_equals_dense_pieces(kw):
    """Stars of a convolution enumerated once per in-input tap pattern × positions equal the same
    stars (output channels at each position with their in-edges) read off the dense block."""
    rng = np.random.default_rng(5)
    groups = kw.get("groups", 1)
    conv = Conv2d(rng.normal(size=(4, 4 // groups, 3, 3)), (4, 6, 5), **kw)
    K = bounds._full_kernel(conv)
    mats, counts = bounds._conv_stars(conv, K)
    T = np.asarray(conv.to_dense())  # rows: (channel, y, x) outputs
    c_out, positions = conv.out_shape[0], math.prod(conv.out_shape[1:])
    rows = T.reshape(c_out, positions, -1)
    for k in (1, 2, 4):
        short = bounds._stars_upper(mats, counts, 2**20, k=k)
        dense = sum(bounds._stars_upper([rows[:, o]], np.ones(1), 2**20, k=k) for o in range(positions))
        assert short == pytest.approx(dense, rel=1e-9)
    assert counts.sum() == positions
    # the uses-weighted mass is the dense block's Σ|a|
    assert block_lower_bound(conv)[1] == pytest.approx(np.abs(T).sum(), rel=1e-12)


@pytest.mark.parametrize("kw", [{}, {"stride": 2}, {"groups": 2}])
def test_constant_symbol_equals_dense_spectral(kw):
    """A 1×1 convolution is block diagonal over positions: its symbol bound equals the bound of
    its dense matrix."""
    rng = np.random.default_rng(2)
    conv = Conv2d(rng.normal(size=(6, 4 // kw.get("groups", 1), 1, 1)), (4, 5, 4), **kw)
    T = np.asarray(conv.to_dense())
    sym = bounds._conv_symbol(conv, bounds._full_kernel(conv))
    assert sym.frequencies == 1
    got = bounds._spectral_upper(sym, 0)
    dense = bounds._spectral_upper(bounds._dense_symbol(T), 0)
    assert got == pytest.approx(dense, rel=1e-5)


@pytest.mark.parametrize(
    "kw",
    [{"padding": 1}, {"stride": 2, "padding": 1}, {"dilation": 2, "padding": 1}, {"groups": 2}],
)
def test_conv_spectral_bounds_the_norm(kw):
    """The circulant symbol bounds the zero-padded operator: `‖T‖₂ √(n_out n_in)` and every
    gauge's `sᵀTt` lie below it."""
    rng = np.random.default_rng(4)
    conv = Conv2d(rng.normal(size=(4, 4 // kw.get("groups", 1), 3, 3)), (4, 7, 6), **kw)
    T = np.asarray(conv.to_dense())
    sym = bounds._conv_symbol(conv, bounds._full_kernel(conv))
    symbol_norm = np.linalg.norm(whole_symbol(sym), 2, axis=(1, 2)).max()
    assert symbol_norm >= np.linalg.norm(T, 2) * (1 - 1e-12)
    got = bounds._spectral_upper(sym, 2)
    s, t = rng.choice([-1.0, 1.0], (2000, T.shape[0])), rng.choice([-1.0, 1.0], (2000, T.shape[1]))
    assert np.max(np.einsum("mi,ij,mj->m", s, T, t)) <= got


def test_certified_top_is_an_upper_bound():
    rng = np.random.default_rng(0)
    for B in (rng.normal(size=(6, 7, 9)), rng.normal(size=(4, 9, 5)) + 1j * rng.normal(size=(4, 9, 5))):
        G = B @ np.conj(np.swapaxes(B, 1, 2))
        lam = np.linalg.eigvalsh(G)[:, -1].max()
        gersh = np.abs(G).sum(2).max()
        assert lam <= bounds._certified_top(G, lam) <= lam * (1 + 1e-5)
        for mu in (0.0, 0.5 * lam, 0.99 * lam):  # a proposal below the truth never passes
            assert bounds._certified_top(G, mu) >= lam
        assert bounds._certified_top(G, 1e6) <= gersh * (1 + 1e-12)  # the Gershgorin fallback
        assert bounds._certified_top(np.tril(G), lam) == bounds._certified_top(G, lam)  # lower triangles


def test_gram_terms_match_the_symbol():
    """`Σ_Δ C_Δ e^{−2πiω·Δ}` is the Gram matrix of the scaled symbol, on either side."""
    rng = np.random.default_rng(6)
    conv = Conv2d(rng.normal(size=(3, 2, 3, 3)), (2, 6, 5), stride=2, padding=1)
    sym = bounds._conv_symbol(conv, bounds._full_kernel(conv))
    a, b = rng.uniform(0.5, 2, sym.p), rng.uniform(0.5, 2, sym.q)
    B = whole_symbol(sym) * a[None, :, None] * b[None, None, :]
    for rows, want in ((True, B @ np.conj(np.swapaxes(B, 1, 2))), (False, np.conj(np.swapaxes(B, 1, 2)) @ B)):
        got = sym.gram_at(sym.gram(a, b, rows), 0, sym.frequencies)
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_slabs_match_the_whole_symbol(monkeypatch):
    """Worked a slab at a time (`_CHUNK` lowered so that every symbol takes several), the Gram
    terms and the products `B(ω) v`, `B(ω)ᴴ v` equal those of the whole symbol."""
    rng = np.random.default_rng(7)
    conv = Conv2d(rng.normal(size=(5, 3, 3, 3)), (3, 6, 5), stride=2, padding=1)
    dense = rng.normal(size=(9, 14)).astype(np.float32)
    for sym in (bounds._conv_symbol(conv, bounds._full_kernel(conv)), bounds._dense_symbol(dense)):
        a, b = rng.uniform(0.5, 2, sym.p), rng.uniform(0.5, 2, sym.q)
        whole = [sym.gram(a, b, rows) for rows in (True, False)]
        B = whole_symbol(sym)
        monkeypatch.setattr(bounds, "_CHUNK", 8)
        for rows, (keys, C, terms) in zip((True, False), whole):
            got_keys, got, got_terms = sym.gram(a, b, rows)
            assert got_keys == keys and got_terms == terms
            np.testing.assert_allclose(got, C, atol=1e-12)
        u, v = rng.normal(size=sym.p), rng.normal(size=sym.q)
        for f in range(sym.frequencies):
            np.testing.assert_allclose(sym.times(f, v, False), B[f] @ v, atol=1e-12)
            np.testing.assert_allclose(sym.times(f, u, True), np.conj(B[f]).T @ u, atol=1e-12)
        monkeypatch.undo()


def test_dense_bound_never_copies_the_weights(monkeypatch):
    """A float32 dense block is bounded from its weights as stored, a float64 slab at a time:
    the bound equals that of the same weights in float64, and the bound's own arrays (numpy's,
    traced) stay far below one copy of the weights (VGG-16's first dense layer is 0.4 GB)."""
    monkeypatch.setattr(bounds, "_CHUNK", 2**14)
    W = np.random.default_rng(8).normal(size=(64, 100000)).astype(np.float32)
    wide = block_lower_bound(Dense(W.astype(np.float64)))
    block = Dense(W)
    tracemalloc.start()
    try:
        got = block_lower_bound(block)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == wide
    assert peak < W.nbytes / 2  # (a float64 copy: 2 W.nbytes)


def test_structural_blocks_are_zero():
    rng = np.random.default_rng(0)
    for block in (
        Pool(2, (3, 4, 4), mode="max"),
        Pool(3, (3, 5, 5), stride=1, padding=1, mode="avg"),
        Skip((3, 2), weight=-1.0),
        Route.permute((2, 3), (1, 0)),
    ):
        lb, mass = block_lower_bound(block)
        assert lb == 0.0 and mass == pytest.approx(float(block.abs_sum()))
    # a block type the bounds do not know, small enough to densify, is bounded as dense
    W = rng.normal(size=(3, 4))
    assert block_lower_bound(Matrix(W))[0] == pytest.approx(block_lower_bound(Dense(W))[0], rel=1e-12)
    assert block_lower_bound(Matrix(W))[0] > 0


class Matrix(Block):
    """A dense block of a type `bounds` does not know."""

    weight: jax.Array
    in_shape: tuple = eqx.field(static=True)
    out_shape: tuple = eqx.field(static=True)

    def __init__(self, weight):
        self.weight = jnp.asarray(weight)
        self.out_shape, self.in_shape = (weight.shape[0],), (weight.shape[1],)

    def apply(self, x):
        return self.weight @ x

    def abs_sum(self):
        return jnp.sum(jnp.abs(self.weight))


def sparse_layered(rng, widths, degree=3) -> SignedGraph:
    ws = []
    for a, b in zip(widths, widths[1:]):
        W = np.zeros((b, a))
        for r in range(b):
            W[r, rng.choice(a, size=degree, replace=False)] = rng.normal(size=degree)
        ws.append(W)
    return SignedGraph.from_weights(ws)


def test_the_packing_lp_prints_nothing():
    """HiGHS prints a banner to the C stdout when a process makes its first model: dropped, so a
    bound never writes into a command's output (a fresh process: the first model is this one)."""
    code = "import numpy as np; from jaxflow.signed import bounds; bounds._packing_lp(np.ones(3)).run()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "", (done.stdout, done.stderr[-2000:])


def test_cycles_on_sparse_graphs(monkeypatch):
    """On sparse layered graphs `"auto"` packs frustrated cycles; the packing LP (column
    generation) is valid against the exact optimum and at least the greedy packing."""
    rng = np.random.default_rng(8)
    for widths in ((8, 8, 8), (6, 6, 6, 6)):
        g = sparse_layered(rng, widths)
        exact = frustration(g, method="exact")
        res = lower_bound(g)
        assert "cycles" in res.candidates
        assert 0 <= res.value <= float(exact.value) + TOL * res.total
        A = np.asarray(g.to_dense())
        greedy, _ = bounds._cycles_bound(A, rounds=0)
        assert greedy <= res.candidates["cycles"] + TOL * res.total
    # past CYCLES_MAX_EDGES "auto" leaves the packing out; asked for, it runs
    monkeypatch.setattr(bounds, "CYCLES_MAX_EDGES", 40)
    assert g.num_edges() > 40 and "cycles" not in lower_bound(g).candidates
    assert "cycles" in lower_bound(g, method="cycles").candidates
    # a single frustrated 4-cycle: the bound is its lightest edge, exactly the optimum
    W1, W2 = np.array([[1.0, 2.0], [3.0, -0.5]]), np.array([[1.0, 1.0]])
    g = SignedGraph.from_weights([W1, W2])
    opt = brute_force(np.asarray(g.to_dense()))
    assert lower_bound(g, method="cycles").value == pytest.approx(opt, rel=1e-9)


def test_cycle_rounds_shrink_with_size_and_every_round_is_a_valid_bound(monkeypatch):
    """`"auto"` runs the full column generation on small graphs and fewer rounds on larger ones
    (each round's packing is feasible): the bound grows with the rounds, from the greedy packing
    (0 rounds) to the LP optimum, never past the exact optimum."""
    rounds = [bounds.default_cycle_rounds(e) for e in (100, 600, 601, 1200, 2400, 4700, 5000)]
    assert rounds[:2] == [bounds.CYCLE_ROUNDS] * 2 and rounds[3:5] == [15, 3] and rounds[-2:] == [0, 0]
    assert rounds == sorted(rounds, reverse=True)
    g = sparse_layered(np.random.default_rng(8), (8, 8, 8))
    A, exact = np.asarray(g.to_dense()), float(frustration(g, method="exact").value)
    values = [bounds._cycles_bound(A, rounds=r)[0] for r in (0, 1, 2, bounds.CYCLE_ROUNDS)]
    assert values == sorted(values) and values[-1] <= exact + TOL * float(g.abs_sum())
    monkeypatch.setattr(bounds, "CYCLES_FULL_EDGES", g.num_edges() // 4)  # (16 → 3 rounds)
    assert bounds.default_cycle_rounds(g.num_edges()) == 3
    assert lower_bound(g).candidates["cycles"] == bounds._cycles_bound(A, rounds=3)[0]
    assert lower_bound(g, cycle_rounds=1).candidates["cycles"] == values[1]


def test_eigen_is_exact_when_a_gauge_meets_the_sdp():
    """A positive graph with one light negative edge whose signed Laplacian `Diag(|M|1) − M` is
    positive semidefinite: `d = |M|1` is dual feasible with `Σd = 1ᵀM1 + 4|a_neg|`, the all-(+1)
    gauge attains it, so the SDP bound is the optimum, `|a_neg|`, up to the margin `"eigen"` adds
    to its Lanczos value (`1e−9` of the matrix's scale per node)."""
    rng = np.random.default_rng(4)
    W1, W2 = rng.uniform(1, 2, (4, 3)), rng.uniform(1, 2, (2, 4))
    W1[1, 2] = -0.1
    g = SignedGraph.from_weights([W1, W2])
    A = np.asarray(g.to_dense())
    M = A + A.T
    assert np.linalg.eigvalsh(np.diag(np.abs(M).sum(1)) - M)[0] >= 0  # the premise
    opt = brute_force(A)
    assert opt == pytest.approx(0.1, rel=1e-12)
    res = lower_bound(g, method="eigen")
    assert opt - 1e-7 <= res.value <= opt + TOL * res.total


@pytest.mark.parametrize("build", [lambda rng: layered(rng, (5, 7, 6)), with_skips, conv_graph])
def test_eigen_certificate_is_above_its_estimate_and_the_sdp_point(build):
    """The certified `max sᵀMs` bound is at least the Lanczos value it certifies, which is at least
    the SDP value of the vectors found and every gauge's `sᵀMs` (weak duality); the ascent narrows
    the duality gap, to vectors whose SDP value is above every gauge's."""
    g = build(np.random.default_rng(2))
    A = np.asarray(g.to_dense())
    M = A + A.T
    S = np.random.default_rng(0).choice([-1.0, 1.0], (4000, len(A)))
    best_gauge = np.max(np.einsum("mi,ij,mj->m", S, M, S))
    gaps = []
    for sweeps in (0, 3, bounds.EIGEN_SWEEPS):
        sparse, _ = bounds._symmetric_adjacency(g)
        upper, estimate, primal = bounds._eigen_upper(sparse, g.offsets, sweeps, bounds.EIGEN_MAX_FILL)
        assert max(primal, best_gauge) <= estimate * (1 + 1e-12) and estimate <= upper
        gaps.append(estimate - primal)
    assert gaps[-1] <= gaps[0] and gaps[-1] <= 1e-3 * primal and best_gauge <= primal


def test_block_cholesky_matches_dense(monkeypatch):
    """In chunks of 2 nodes (fill between chunks of different layers), the factor's `‖R̂‖_F²` is the
    dense Cholesky factor's; a diagonal below `λ_max(M)` fails to factor."""
    monkeypatch.setattr(bounds, "_FACTOR_CHUNK", 2)
    g = with_skips(np.random.default_rng(1))
    sparse, _ = bounds._symmetric_adjacency(g)
    M = sparse.toarray()
    np.testing.assert_array_equal(M, np.asarray(g.to_dense()) + np.asarray(g.to_dense()).T)
    cuts = bounds._chunk_cuts(g.offsets)
    assert np.diff(cuts).max() == 2 and set(g.offsets) <= set(cuts)
    below, entries = bounds._chunk_pattern(sparse, cuts)
    n, lam = len(M), np.linalg.eigvalsh(M)[-1]
    assert entries <= n * (n + 1) // 2
    diag = np.full(n, 1.01 * lam)
    L = np.linalg.cholesky(np.diag(diag) - M)
    assert bounds._block_cholesky(sparse, diag, cuts, below) == pytest.approx(np.sum(L**2), rel=1e-12)
    assert bounds._block_cholesky(sparse, np.full(n, 0.99 * lam), cuts, below) is None


def test_eigen_limits(monkeypatch):
    """`"auto"` runs `"eigen"` up to `EIGEN_AUTO_NODES` nodes; asked for, it runs while its factor
    fits `EIGEN_MAX_FILL`; Lanczos and the dense eigensolver propose the same `μ`."""
    g = layered(np.random.default_rng(3), (4, 6, 5))
    monkeypatch.setattr(bounds, "EIGEN_AUTO_NODES", g.num_nodes - 1)
    assert "eigen" not in lower_bound(g).candidates
    assert lower_bound(g, method="eigen").candidates.keys() == {"eigen"}
    # Lanczos (on larger graphs) proposes the dense solver's `μ`: the same certified bound
    sparse, _ = bounds._symmetric_adjacency(g)
    dense = bounds._eigen_upper(sparse, g.offsets, 50, bounds.EIGEN_MAX_FILL)
    monkeypatch.setattr(bounds, "_EIGEN_DENSE", 0)
    lanczos = bounds._eigen_upper(sparse, g.offsets, 50, bounds.EIGEN_MAX_FILL)
    np.testing.assert_allclose(lanczos, dense, rtol=1e-9)
    monkeypatch.setattr(bounds, "EIGEN_MAX_FILL", 10)
    with pytest.raises(InputError, match="EIGEN_MAX_FILL"):
        lower_bound(g, method="eigen")


def test_result_fields():
    g = layered(np.random.default_rng(1), (4, 6, 3))
    res = lower_bound(g)
    assert isinstance(res, BoundResult) and res.method in res.candidates
    assert res.value == max(res.candidates.values())
    assert sum(res.blocks) == pytest.approx(res.candidates["blocks"], rel=1e-12)
    assert res.normalized == pytest.approx(res.value / res.total)
    assert res.gap(2 * res.value) == pytest.approx(0.5)
    assert lower_bound(g, method="blocks").candidates.keys() == {"blocks"}


def test_errors():
    g = layered(np.random.default_rng(0), (3, 4))
    with pytest.raises(InputError, match="method"):
        lower_bound(g, method="sdp")
    with pytest.raises(InputError, match="work"):
        lower_bound(g, work=0)
    with pytest.raises(InputError, match="stars_max_nodes"):
        lower_bound(g, method="stars", stars_max_nodes=5)
    with pytest.raises(InputError, match="stars_max_nodes"):
        lower_bound(g, method="cycles", stars_max_nodes=5)
    with pytest.raises(InputError, match="eigen_sweeps"):
        lower_bound(g, eigen_sweeps=-1)
    with pytest.raises(InputError, match="SignedGraph"):
        lower_bound(np.eye(3))
