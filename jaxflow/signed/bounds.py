"""Proven lower bounds on the frustration `min_s δ(s)`, matrix-free, at any scale.

`δ(s) = ½(Σ|a| − sᵀAs)`, so any upper bound `U ≥ max_s sᵀAs` gives `min_s δ(s) ≥ ½(Σ|a| − U)`.
Every candidate is a sum over a partition of the edges (weights may be split among pieces):
`min_s Σ_k δ_k(s) ≥ Σ_k min_s δ_k(s)`, each piece's minimum bounded from below on its own.
`lower_bound` reports the largest candidate:

- `"blocks"` (any size, matrix-free): the pieces are the graph's blocks. A block `B` (source layer to
  destination layer) is bipartite, and `max s_dstᵀ B s_src` is bounded by the smaller of
  * *stars*: the destination nodes split into groups of `k`; a group with all its in-edges is a
    piece whose maximum `max_{s_R} Σ_c |Σ_{r∈R} s_r B_rc|` is enumerated exactly (the sources take
    their best signs). A dense block groups its smaller side. A convolution's piece is a group of
    `k` output channels at one position with the in-window taps, so it depends only on which taps
    lie inside the input: it is enumerated once per such pattern and multiplied by the number of
    positions that have it. `k` is as large as the `work` budget allows (at most 16).
  * *spectral* (the SDP dual of the bipartite piece, with per-channel diagonal scalings):
    `sᵀBt = (s/a)ᵀ diag(a) B diag(b) (t/b) ≤ ‖diag(a) B diag(b)‖₂ √(Σ 1/a²) √(Σ 1/b²)` for any
    positive `a`, `b` constant on each channel. A zero-padded, strided, dilated, grouped convolution
    is a submatrix of a block-circulant operator (stride by polyphase: a stride-1 convolution on
    `C_in·stride²` phase channels), so its norm is at most `max_ω ‖B(ω)‖₂` over the grid's
    frequencies: small `C_out × C_in·stride²` matrices, never the graph. Their Gram matrices come
    from the kernel's autocorrelation, `Σ_Δ C_Δ e^{−2πiω·Δ}` (one matrix product for all `ω`).
    Scalings: uniform or degree (`a_i = (Σ_j |B_ij|)^{−½}`, optimal for a rank-one block),
    whichever is smaller, then a few multiplicative subgradient steps on small blocks.
  Pooling, skips, routing, broadcasts (every destination has one in-edge, or all weights of one
  sign) have minimum 0 exactly; any other block counts 0 unless it is small enough to densify.
- `"stars"` (graphs of up to `stars_max_nodes` nodes, dense): `T` an independent set, `S` the rest
  (a vertex cover, as in `method="exact"`). The `x` most connected nodes of `S` are enumerated
  (`2^{x−1}` patterns); the other `S` nodes form groups of `group_size`, each group a piece with its
  edges to `T` and to later groups, whose free ends take their best signs; a `T` node's field from
  the enumerated nodes is split among its groups in proportion to its weight into each. For each
  enumerated pattern this bounds the maximum over the rest; the bound is the max over patterns.
  When all of `S` fits the `work` budget it is `"exact"`'s enumeration and the bound is the optimum.
- `"cycles"` (the same graphs; by `"auto"` on sparse ones): pieces are closed walks with an odd
  number of negative edges, each frustrated at least once by every gauge: a packing of such walks
  into the edge weights, the greedy one, then column generation towards the LP optimum (the
  odd-cycle relaxation's bound), as many rounds as the graph's size affords.
- `"eigen"` (by `"auto"` on graphs of up to `EIGEN_AUTO_NODES` nodes; asked for, while its
  Cholesky factor fits `EIGEN_MAX_FILL` entries): the whole graph as one piece, by the max-cut
  SDP's dual (Delorme–Poljak, Poljak–Rendl). With `M = A + Aᵀ`, any `d` with `Diag(d) − M ⪰ 0`
  gives `sᵀMs ≤ sᵀDiag(d)s = Σd` for every gauge, so `max sᵀAs ≤ ½Σd`. The dual point comes from
  the primal `max Σ_ij M_ij v_i·v_j` over unit vectors (rank `EIGEN_RANK`), by block-coordinate
  ascent (each layer's `v_i ← (Mv)_i/‖(Mv)_i‖` at once; `eigen_sweeps` sweeps): `d_i = v_i·(Mv)_i`,
  shifted by `μ ≈ λ_max(M − Diag(d))` from Lanczos so that `Diag(d + μ) − M` is positive
  semidefinite up to Lanczos' error. That `μ` is a proposal only: the bound is `Σ(d + μ)` once
  `Diag(d + μ) − M` has a Cholesky factorization, computed chunk by chunk in layer order (a layer
  has no edges inside it; fill only where the layer structure puts it), `μ` raised until one runs
  to completion.

Why the bounds are rigorous, not only approximate: every candidate is a true bound in real
arithmetic (a relaxation), and floating-point error is bounded explicitly, with constants carrying
a safety factor of at least 4 (blocked BLAS orderings, complex arithmetic): enumerated values carry
`γ`-style margins (`(terms + 2)·ε` relative to the absolute mass summed); a spectral norm is never a
Ritz value: Lanczos only proposes `μ`, and `μ ≥ λ_max(G)` for each Gram matrix `G` is certified by
a Cholesky factorization of `μI − G` that runs to completion (Higham, *Accuracy and Stability of
Numerical Algorithms*, Thm 10.3: `R̂ᴴR̂ = H + ΔH` with `|ΔH| ≤ γ_{n+1}|R̂ᴴ||R̂|`, so `λ_min(H) ≥
−γ_{n+1}‖R̂‖_F²`), plus the error of forming `G` from the kernel (`≤ c·terms·ε·‖|a| |B| |b|‖_F²`),
with Gershgorin's bound as the fallback when no `μ` certifies; a packing's overdraw of any edge
(floats, LP tolerances) is charged back. `"eigen"`'s matrix `Diag(d + μ) − M` is formed exactly
(its diagonal is the floats factored; `A` is a DAG's, so `M`'s entries are single weights), and a
completed factorization `R̂` proves `λ_min ≥ −c_chol·‖R̂‖_F²` by the same theorem (the blocked
factorization does LAPACK's `potrf` operations, less those on exact zeros), so `Σ(d + μ) +
n·c_chol·‖R̂‖_F²`, summed with its rounding charged, bounds `max sᵀMs`. All of it runs in float64
on the host from the weights (exactly converted from float32 when the graph is float32, a slab of
rows at a time: a large block is never copied whole).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from typing import NamedTuple

import highspy
import jax.numpy as jnp
import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.linalg.lapack

from .._checks import InputError, check_choice, check_count, check_graph
from ._exact import independent_set
from .blocks import Conv2d, Dense, Sparse, _axis_inside
from .graph import SignedGraph

METHODS = ("auto", "blocks", "stars", "cycles", "eigen")
DEFAULT_WORK = 2**28
"""Default enumeration budget, in pattern × node evaluations: all of `"stars"` (about a second of
numpy on a 2-core CPU), and an eighth of it for each block of `"blocks"`."""
STARS_MAX_NODES = 4096  # `"stars"` and `"cycles"` keep the dense n×n adjacency
CYCLES_MAX_EDGES = 5000  # `"auto"` runs `"cycles"` on graphs of up to this many edges …
CYCLES_MAX_DEGREE = 8.0  # … and mean degree (on dense layered graphs `"stars"` is far better)
CYCLE_ROUNDS = 60  # column-generation rounds of `"cycles"` on graphs of up to CYCLES_FULL_EDGES edges;
CYCLES_FULL_EDGES = 600  # fewer above (`default_cycle_rounds`), as a round's time grows about as edges²
EIGEN_AUTO_NODES = 4096  # `"auto"` runs `"eigen"` on graphs of up to this many nodes
EIGEN_MAX_FILL = 2**28  # `"eigen"`'s Cholesky factor may hold this many entries (2 GB in float64)
EIGEN_SWEEPS = 200  # default sweeps of `"eigen"`'s coordinate ascent on the SDP
EIGEN_RANK = 16  # columns of `"eigen"`'s vectors
DENSIFY_MAX_EDGES = 2**22  # an unknown block with at most this many entries is bounded as dense
MAX_GROUP = 16  # largest star group enumerated by `"blocks"`
_EPS = float(np.finfo(np.float64).eps)
_CLOSED = 1e-9  # `upper`: a candidate this close below it closes the interval
_CHUNK = 2**22  # elements of a working array (32 MB in float64)
_CACHE_ELEMENTS = 2**25  # Gram matrices up to this many entries (512 MB complex) are built once
_STEP_ELEMENTS = 2**20  # spectral bounds of up to this many Gram entries take the scaling steps
_EIGEN_DENSE = 512  # `"eigen"` proposes `μ` by a dense eigensolver up to this many nodes, else Lanczos
_FACTOR_CHUNK = 1024  # `"eigen"`'s block Cholesky: chunks of at most this many nodes
_ZERO_BLOCKS = ("Pool", "Skip", "Route", "ChannelRoute", "ChannelScale", "Broadcast")
"""Block types whose minimum frustration is 0: every destination node has one in-edge (a forest:
`Skip`, `Route`, `ChannelRoute`, `ChannelScale`, `Broadcast`) or every edge into a destination has
the same sign (`Pool`: set the sources to +1 and each destination to the sign of its weight)."""


class BoundResult(NamedTuple):
    """A proven lower bound on the frustration `min_s δ(s)` of a graph.

    `value ≤ min_s δ(s)` (weighted, or the number of frustrated edges when not `weighted`);
    `total` is `Σ|a|` (or the number of edges), `normalized = value / total`. `candidates` maps
    each candidate computed (`"blocks"`, `"stars"`, `"cycles"`, `"eigen"`) to its bound; `value` is their
    max and `method` names it. `blocks` holds the `"blocks"` candidate's bound per block of the graph (in
    `graph.blocks` order; they sum to it up to rounding margins), `seconds` the wall time.
    """

    value: float
    total: float
    method: str
    candidates: dict
    blocks: tuple[float, ...]
    seconds: float
    weighted: bool

    @property
    def normalized(self) -> float:
        """`value / total`: the bound on the normalized frustration."""
        return self.value / self.total if self.total > 0 else 0.0

    def gap(self, estimate) -> float:
        """`(estimate − value) / estimate`: how far an estimate (an upper bound) can be from optimal."""
        estimate = float(estimate)
        return (estimate - self.value) / estimate if estimate > 0 else 0.0


def lower_bound(
    graph: SignedGraph,
    *,
    weighted: bool = True,
    method: str = "auto",
    work: int = DEFAULT_WORK,
    group_size: int = 8,
    scaling_steps: int = 2,
    stars_max_nodes: int = STARS_MAX_NODES,
    cycle_rounds: int | None = None,
    eigen_sweeps: int = EIGEN_SWEEPS,
    upper: float | None = None,
) -> BoundResult:
    """A proven lower bound on `min_s δ(s)`, the (weighted) frustration of `graph`.

    `method`: `"blocks"` (every block bounded on its own, from its weights only: matrix-free, for
    graphs of any size), `"stars"` (a vertex cover split into enumerated nodes and star groups of
    `group_size`, on the dense adjacency: graphs of up to `stars_max_nodes` nodes), `"cycles"`
    (a packing of frustrated closed walks, same graphs), `"eigen"` (the max-cut SDP's dual,
    certified by a Cholesky factorization; sparse, while the factor fits `EIGEN_MAX_FILL`), or
    `"auto"` (`"blocks"`; with `"stars"` where it applies, `"cycles"` on sparse graphs, mean degree
    <= `CYCLES_MAX_DEGREE` and up to `CYCLES_MAX_EDGES` edges, and `"eigen"` up to
    `EIGEN_AUTO_NODES` nodes; the largest reported). `work` caps the enumerations (pattern ×
    node evaluations: all of `"stars"`, an eighth of it per block of `"blocks"`);
    `scaling_steps` is the number of per-channel scaling steps of the spectral bounds;
    `cycle_rounds` the column-generation rounds of `"cycles"` (default `default_cycle_rounds`;
    every round's packing is a valid bound, more rounds a larger one), `eigen_sweeps` the sweeps
    of `"eigen"`'s ascent (fewer stop it early; the bound stays valid). `upper`, a
    known upper bound on the minimum (a heuristic's value), ends `"auto"` at the first candidate
    that reaches it (the interval is then closed). See the module docstring for the bounds and why
    they are valid.
    """
    start = time.perf_counter()
    check_graph(graph)
    check_choice(method, "method", METHODS)
    check_count(work, "work")
    check_count(group_size, "group_size")
    check_count(scaling_steps, "scaling_steps", minimum=0)
    if cycle_rounds is not None:
        check_count(cycle_rounds, "cycle_rounds", minimum=0)
    check_count(eigen_sweeps, "eigen_sweeps", minimum=0)
    if method in ("stars", "cycles") and graph.num_nodes > stars_max_nodes:
        raise InputError(
            f'method="{method}" keeps the dense n×n adjacency and takes up to stars_max_nodes='
            f'{stars_max_nodes} nodes, this graph has {graph.num_nodes}; use method="blocks"'
        )
    target = graph if weighted else graph.map_weights(jnp.sign)
    candidates, per_block, total = {}, (), None
    if method in ("auto", "blocks"):
        per_block, total = _blocks_bound(target, max(int(work) // 8, 1), int(scaling_steps))
        candidates["blocks"] = float(sum(per_block))
    small = graph.num_nodes <= stars_max_nodes
    A = (
        np.asarray(target.to_dense(), np.float64)
        if method in ("stars", "cycles") or (method == "auto" and small)
        else None
    )
    closed = lambda: upper is not None and max(candidates.values()) >= upper * (1 - _CLOSED)
    if method == "stars" or (method == "auto" and small and not closed()):
        candidates["stars"], total = _stars_bound(A, int(work), int(group_size))
    if method == "cycles" or (method == "auto" and small and _sparse(A) and not closed()):
        rounds = default_cycle_rounds(np.count_nonzero(A)) if cycle_rounds is None else int(cycle_rounds)
        candidates["cycles"], total = _cycles_bound(A, rounds)
    if method == "eigen" or (method == "auto" and graph.num_nodes <= EIGEN_AUTO_NODES and not closed()):
        candidates["eigen"], total = _eigen_bound(target, int(eigen_sweeps), EIGEN_MAX_FILL)
    best = max(candidates, key=candidates.get)
    return BoundResult(
        value=max(candidates[best], 0.0),
        total=float(total),
        method=best,
        candidates=candidates,
        blocks=per_block,
        seconds=time.perf_counter() - start,
        weighted=weighted,
    )


# ----------------------------------------------------------------------- blocks


def _blocks_bound(graph: SignedGraph, work: int, steps: int) -> tuple[tuple[float, ...], float]:
    """Per-block lower bounds `min δ_b` and `Σ|a|` (float64, from the weights)."""
    bounds, total = [], 0.0
    for block in graph.blocks:
        lb, mass = block_lower_bound(block, work=work, scaling_steps=steps)
        bounds.append(lb)
        total += mass
    return tuple(bounds), total


def block_lower_bound(block, *, work: int = DEFAULT_WORK // 8, scaling_steps: int = 2) -> tuple[float, float]:
    """`(bound, Σ|a|)` for one block: a proven lower bound on `min_s δ_b(s)` (the block's own
    frustrated weight, its two layers' gauges free) and its absolute weight, both float64."""
    kind = type(block).__name__
    if isinstance(block, Dense):  # (its weights as stored: float64 a slab at a time)
        return _dense_bound(np.asarray(block.weight), work, scaling_steps)
    if isinstance(block, Conv2d):
        return _conv_bound(block, work, scaling_steps)
    if kind in _ZERO_BLOCKS:
        return 0.0, float(block.abs_sum())
    if isinstance(block, Sparse):
        w = np.asarray(block.weight)
        if np.all(w >= 0) or np.all(w <= 0):  # single-signed: all +1 (and −1 downstream) satisfies all
            return 0.0, float(block.abs_sum())
    size = math.prod(block.in_shape) * math.prod(block.out_shape)
    if size <= DENSIFY_MAX_EDGES:
        return _dense_bound(np.asarray(block.to_dense(), np.float64), work, scaling_steps)
    return 0.0, float(block.abs_sum())


def _dense_bound(W: np.ndarray, work: int, steps: int) -> tuple[float, float]:
    """Bound of a dense bipartite block `W` (destinations × sources, any float dtype)."""
    mass, lo = _mass(W)
    if mass == 0:
        return 0.0, mass
    rows = W if W.shape[0] <= W.shape[1] else W.T  # stars of the smaller side
    spectral = _spectral_upper(_dense_symbol(W), steps)
    upper = min(spectral, _stars_upper([rows], np.ones(1), work, cap=spectral))
    return max(0.5 * (lo - upper), 0.0), mass


def _mass(weights: np.ndarray, counts=None) -> tuple[float, float]:
    """`Σ|a|` over `weights` (each times `counts`, broadcast to them), in float64 a slab at a
    time (`_slabs`), and a lower bound on it (the sum's rounding taken off)."""
    mass = 0.0
    for _, rows in _slabs(weights):
        mass += float(np.sum(np.abs(rows) if counts is None else np.abs(rows) * counts))
    return mass, mass * (1 - 2 * (weights.size + 2) * _EPS)


def _slabs(W: np.ndarray):
    """`W` in float64 slabs along its first axis of about `_CHUNK` entries each, `(first row,
    slab)`: a large block's weights (VGG-16's first dense layer: 0.4 GB in float32) are never
    copied whole."""
    step = max(1, _CHUNK * W.shape[0] // max(W.size, 1))
    for start in range(0, W.shape[0], step):
        yield start, np.asarray(W[start : start + step], np.float64)


def _pick_group(p: int, columns: int, work: int) -> int:
    """The largest star size `k <= min(p, MAX_GROUP)` with `2^{k−1}·⌈p/k⌉·columns <= work` (at least 1)."""
    for k in range(min(p, MAX_GROUP), 1, -1):
        if 2 ** (k - 1) * -(-p // k) * columns <= work:
            return k
    return 1


def _patterns(k: int, start: int, stop: int) -> np.ndarray:
    """`±1` patterns `start..stop−1` of `k` nodes, node 0 always +1 (bit `j` of the index: node `j+1`)."""
    idx = np.arange(start, stop)[:, None]
    rest = 1 - 2 * ((idx >> np.arange(k - 1)[None]) & 1).astype(np.float64)
    return np.concatenate([np.ones((stop - start, 1)), rest], axis=1)


def _group_max(R: np.ndarray) -> float:
    """`max_{s ∈ ±1^k} Σ_c |(sᵀR)_c|` for a `(k, q)` matrix, every pattern tried (s and −s agree)."""
    k, q = R.shape
    count = 2 ** (k - 1)
    step = max(1, _CHUNK // max(q, 1))
    best = 0.0
    for start in range(0, count, step):
        P = _patterns(k, start, min(count, start + step))
        best = max(best, float(np.max(np.sum(np.abs(P @ R), axis=1))))
    return best


def _stars_upper(
    mats: list[np.ndarray], counts: np.ndarray, work: int, cap: float = np.inf, k: int | None = None
) -> float:
    """Upper bound on `max Σ_m counts[m]·s_mᵀ mats[m] t_m` over independent `s_m`, `t_m` (the
    pieces `m` share rows only through their gauges, which the partition frees): rows in groups
    of `k`, each group's maximum enumerated; with the rounding margin. Returns `inf` without
    enumerating when it cannot beat `cap`: a group's maximum is at least its patterns' mean,
    `Σ_c E|sᵀR_c| ≥ Σ_c ‖R_c‖₂/√2` (Szarek's Khintchine constant). `k` overrides the group size."""
    p = mats[0].shape[0]
    columns = sum(m.shape[1] for m in mats)
    k = _pick_group(p, columns, work) if k is None else min(k, p)
    groups = np.array_split(np.arange(p), -(-p // k))
    group = lambda mat, g: np.asarray(mat[g], np.float64)
    floor = sum(
        count * sum(float(np.sum(np.linalg.norm(group(mat, g), axis=0))) for g in groups)
        for mat, count in zip(mats, counts)
    )
    if floor / math.sqrt(2) >= cap:
        return np.inf
    upper, slack = 0.0, 0.0
    for mat, count in zip(mats, counts):
        value = sum(_group_max(group(mat, g)) for g in groups)
        upper += count * value
        slack += count * _mass(mat)[0]
    return upper + 4 * (k + columns + p + len(mats) + 4) * _EPS * slack


# ------------------------------------------------------------------------ conv


def _conv_bound(block: Conv2d, work: int, steps: int) -> tuple[float, float]:
    K = _full_kernel(block)  # (C_out, C_in, kh, kw), groups expanded with zeros
    uses = block._tap_uses
    mass, lo = _mass(K, uses[None, None])
    if mass == 0:
        return 0.0, mass
    mats, counts = _conv_stars(block, K)
    spectral = _spectral_upper(_conv_symbol(block, K), steps)
    upper = min(spectral, _stars_upper(mats, counts, work, cap=spectral))
    return max(0.5 * (lo - upper), 0.0), mass


def _full_kernel(block: Conv2d) -> np.ndarray:
    k = np.asarray(block.kernel, np.float64)
    g = block.groups
    if g == 1:
        return k
    c_out, c_in_g, kh, kw = k.shape
    full = np.zeros((c_out, c_in_g * g, kh, kw))
    per = c_out // g
    for i in range(g):
        full[i * per : (i + 1) * per, i * c_in_g : (i + 1) * c_in_g] = k[i * per : (i + 1) * per]
    return full


def _conv_stars(block: Conv2d, K: np.ndarray):
    """The star pieces of a convolution: per pattern of in-input taps, the `(C_out, C_in·taps)`
    matrix of those taps and the number of output positions that have that pattern."""
    (ry, cy), (rx, cx) = (np.unique(_axis_inside(block, a), axis=0, return_counts=True) for a in (0, 1))
    mats, counts = [], []
    for my, ny in zip(ry, cy):
        for mx, nx in zip(rx, cx):
            if my.any() and mx.any():
                mats.append(K[:, :, my][:, :, :, mx].reshape(K.shape[0], -1))
                counts.append(ny * nx)
    return mats, np.asarray(counts, np.float64)


class _Symbol:
    """A block written as the block-circulant symbol `B(ω) = Σ_t K_t e^{−2πi ω·δ_t}`, `K_t` (rows ×
    `c_t`) placed in columns `col_t..col_t+c_t` (`p × q` in all), `δ_t` a shift on a periodic grid
    `(N_y, N_x)`; the block is a submatrix of the circulant operator, so `‖block‖₂ ≤ max_ω ‖B(ω)‖₂`
    over the grid's frequencies. Row `i` stands for `pos_out[i]` nodes of the block, column `j` for
    `pos_in[j]`. A dense block is one tap on a 1×1 grid."""

    def __init__(self, kernels, cols, shifts, grid, q, pos_out, pos_in):
        self.kernels, self.cols, self.shifts, self.grid = kernels, cols, shifts, tuple(grid)
        self.p, self.q = kernels[0].shape[0], q
        self.pos_out, self.pos_in = np.asarray(pos_out, np.float64), np.asarray(pos_in, np.float64)
        # frequencies: all of axis 0, half of axis 1 (a real kernel's B(−ω) is conj B(ω))
        self.fy = np.repeat(np.arange(grid[0]), grid[1] // 2 + 1)
        self.fx = np.tile(np.arange(grid[1] // 2 + 1), grid[0])
        self.frequencies = self.fy.size

    def phases(self, deltas, start: int, stop: int) -> np.ndarray:
        """`e^{−2πi ω·Δ}` for frequencies `start..stop−1` (rows) and shifts `Δ` (columns)."""
        (ny, nx), d = self.grid, np.asarray(deltas).reshape(-1, 2)
        fy, fx = self.fy[start:stop, None], self.fx[start:stop, None]
        turns = (fy * d[None, :, 0] % ny) / ny + (fx * d[None, :, 1] % nx) / nx
        return np.exp(-2j * np.pi * turns)

    def times(self, f: int, v: np.ndarray, adjoint: bool) -> np.ndarray:
        """`B(ω_f) v` (`adjoint`: `B(ω_f)ᴴ v`) tap by tap, a slab of rows at a time (`_slabs`):
        never `B(ω_f)` whole."""
        out = np.zeros(self.q if adjoint else self.p, np.complex128)
        for K, col, phase in zip(self.kernels, self.cols, self.phases(self.shifts, f, f + 1)[0]):
            cols = slice(col, col + K.shape[1])
            for start, rows in _slabs(K):
                part = slice(start, start + len(rows))
                if adjoint:
                    out[cols] += np.conj(phase) * (rows.T @ v[part])
                else:
                    out[part] += phase * (rows @ v[cols])
        return out

    def abs_rows(self):
        """`|B|` (each tap's `|K_t|` added in its columns) in float64 slabs of rows of about
        `_CHUNK` entries: `(first row, slab)`."""
        step = max(1, _CHUNK // self.q)
        for start in range(0, self.p, step):
            slab = np.zeros((min(step, self.p - start), self.q))
            for K, col in zip(self.kernels, self.cols):
                slab[:, col : col + K.shape[1]] += np.abs(K[start : start + step])
            yield start, slab

    def gram(self, a, b, rows: bool):
        """The smaller Gram matrix of `diag(a) B(ω) diag(b)` as `Σ_Δ C_Δ e^{−2πi ω·Δ}`: `rows`,
        `B Bᴴ` (`p × p`; only taps in the same columns meet); else `Bᴴ B` (`q × q`). Returns the
        shifts `Δ`, the stacked real `C_Δ` and a bound on the terms summed into an entry. The
        products run over slabs of the summed axis (columns for `rows`, else rows) in float64, so a
        large kernel is never scaled or converted whole."""
        n = self.p if rows else self.q
        axis = 1 if rows else 0  # the axis the products sum over
        largest = max(self.kernels, key=lambda K: K.size)
        step = max(1, _CHUNK * largest.shape[axis] // largest.size)
        terms = {}
        for lo in range(0, max(K.shape[axis] for K in self.kernels), step):
            cut = (slice(None), slice(lo, lo + step)) if rows else (slice(lo, lo + step), slice(None))
            scaled = [
                a[cut[0], None] * np.asarray(K[cut], np.float64) * b[None, col : col + K.shape[1]][:, cut[1]]
                for K, col in zip(self.kernels, self.cols)
            ]
            for Kt, ct, dt in zip(scaled, self.cols, self.shifts):
                for Ku, cu, du in zip(scaled, self.cols, self.shifts):
                    if rows and ct != cu:
                        continue
                    if rows:
                        key = (dt[0] - du[0], dt[1] - du[1])
                        C = terms.setdefault(key, np.zeros((n, n)))
                        C += Kt @ Ku.T
                    else:
                        key = (du[0] - dt[0], du[1] - dt[1])
                        C = terms.setdefault(key, np.zeros((n, n)))
                        C[ct : ct + Kt.shape[1], cu : cu + Ku.shape[1]] += Kt.T @ Ku
        pairs = sum(1 for ct in self.cols for cu in self.cols if not rows or ct == cu)
        inner = max(self.p, *(K.shape[1] for K in self.kernels))
        C = np.stack(list(terms.values())) if len(terms) > 1 else next(iter(terms.values()))[None]
        return list(terms), C, pairs * inner + len(terms)

    def gram_at(self, gram, start: int, stop: int) -> np.ndarray:
        """The Gram matrices of frequencies `start..stop−1`, `(f, n, n)`, from `gram()`'s terms."""
        keys, C, _ = gram
        n = C.shape[1]
        if self.grid == (1, 1):
            return np.broadcast_to(C.sum(0) if len(C) > 1 else C[0], (stop - start, n, n))
        E = self.phases(keys, start, stop)
        flat = C.reshape(len(keys), -1)
        return ((E.real @ flat) + 1j * (E.imag @ flat)).reshape(-1, n, n)


def _dense_symbol(W: np.ndarray) -> _Symbol:
    return _Symbol([W], [0], [(0, 0)], (1, 1), W.shape[1], np.ones(W.shape[0]), np.ones(W.shape[1]))


def _conv_symbol(block: Conv2d, K: np.ndarray) -> _Symbol:
    """The block-circulant symbol of a convolution (`C_out × phases·C_in`).

    Along each axis, tap `u` reads input `o·stride − pad + u·dil = stride·(o + q_u) + a_u`: phase
    `a_u`, shift `q_u`. On phase images the convolution has stride 1 and shifts `q_u − min q`, so on
    a periodic grid of `N >= H_out + max q − min q` points no two taps alias and the block is a
    submatrix (rows: its outputs, columns: the input positions it reads) of the circulant whose
    symbol is `Σ_taps K_u e^{−2πi ω·(q_u − min q)/N}` in column block `a_u` (polyphase). Taps that
    never land inside the input carry no edge and are left out; an axis whose taps share one shift
    has a constant symbol (`N = 1`). A column (phase, channel) stands for the input positions of
    that phase that the block reads; a row for the `H_out·W_out` outputs of its channel.
    """
    c_out, c_in = K.shape[:2]
    used, phase, shift, grid, reads = [], [], [], [], []
    for a in range(2):
        s, lo, d, k = block.stride[a], block.padding[a][0], block.dilation[a], K.shape[2 + a]
        inside = _axis_inside(block, a)
        live = inside.any(axis=0)
        offset = -lo + np.arange(k) * d
        ph, q = offset % s, offset // s
        phases = np.unique(ph[live])
        phase.append(np.searchsorted(phases, ph))
        shift.append(q - q[live].min())
        out = block.out_shape[1 + a]
        span = int(q[live].max() - q[live].min())
        grid.append(1 if span == 0 else out + span)
        rows = np.unique((np.arange(out)[:, None] * s + offset[None])[inside])
        reads.append(np.array([np.count_nonzero(rows % s == p) for p in phases], np.float64))
        used.append(np.flatnonzero(live))
    n_px = len(reads[1])
    kernels, cols, shifts = [], [], []
    for u in used[0]:
        for v in used[1]:
            kernels.append(K[:, :, u, v])
            cols.append((phase[0][u] * n_px + phase[1][v]) * c_in)
            shifts.append((int(shift[0][u]), int(shift[1][v])))
    pos_in = np.repeat(np.outer(reads[0], reads[1]).ravel(), c_in)
    pos_out = np.full(c_out, float(block.out_shape[1] * block.out_shape[2]))
    return _Symbol(kernels, cols, shifts, grid, pos_in.size, pos_out, pos_in)


# -------------------------------------------------------------------- spectral


def _spectral_upper(symbol: _Symbol, steps: int) -> float:
    """Certified upper bound on `max sᵀBt` (`s`, `t` `±1` on the block's nodes) from the symbol:
    `max_ω ‖diag(a) B(ω) diag(b)‖₂ √(Σ pos_out/a²) √(Σ pos_in/b²)` for per-channel scalings `a`,
    `b`: the better (by Lanczos estimates) of uniform and degree scaling (`a_i = (Σ_j |B_ij|)^{−½}`,
    optimal for a rank-one block), then up to `steps` multiplicative subgradient steps kept only
    when they improve the estimate (symbols of up to `_STEP_ELEMENTS` Gram entries; on larger ones,
    random-like convolutions, they gained nothing measurable); certified once at the end."""
    p, q, F = symbol.p, symbol.q, symbol.frequencies
    pos_r, pos_c = symbol.pos_out, symbol.pos_in
    row_mass, col_mass = np.zeros(p), np.zeros(q)  # of |B|
    for start, slab in symbol.abs_rows():
        row_mass[start : start + len(slab)] = slab.sum(1)
        col_mass += slab.sum(0)
    if not row_mass.any():
        return 0.0
    rows = p <= q
    n = min(p, q)
    chunk = max(1, _CHUNK // (2 * n * n))
    spans = [(i, min(F, i + chunk)) for i in range(0, F, chunk)]

    def weight(a, b):
        return math.sqrt(float(np.sum(pos_r / a**2)) * float(np.sum(pos_c / b**2)))

    def evaluate(a, b):
        gram = symbol.gram(a, b, rows)
        keep = F * n * n <= _CACHE_ELEMENTS
        cache, thetas, top = [], [], (-1.0, 0, None)
        with _blas_threads(1):
            for start, stop in spans:
                G = symbol.gram_at(gram, start, stop)
                theta, vectors = _top_eigen(G)
                i = int(np.argmax(theta))
                if theta[i] > top[0]:
                    top = (float(theta[i]), start + i, vectors[i])
                thetas.append(theta)
                if keep:
                    cache.append(G)
        estimate = math.sqrt(max(top[0], 0.0)) * weight(a, b)
        return estimate, (a, b, gram, cache if keep else None, top)

    def degree(mass):
        return 1 / np.sqrt(np.maximum(mass, 1e-12 * mass.max()))

    best = evaluate(np.ones(p), np.ones(q))
    a, b = degree(row_mass), degree(col_mass)
    if max(np.ptp(np.log(a)), np.ptp(np.log(b))) > 0.1:  # else degree scaling is nearly uniform
        best = min(best, evaluate(a, b), key=lambda r: r[0])
    rate = 0.25
    for _ in range(steps if F * n * n <= _STEP_ELEMENTS else 0):
        a, b, _, _, (theta, f, vector) = best[1]
        if theta <= 0:
            break
        # the top singular pair at the worst frequency: one side from the Gram, the other through B
        other = b * symbol.times(f, a * vector, True) if rows else a * symbol.times(f, b * vector, False)
        other /= max(np.linalg.norm(other), 1e-300)
        x, y = (vector, other) if rows else (other, vector)
        # d log(bound)/d log a_i = |x_i|² − w_i with w_i = (pos_i/a_i²)/Σ: move toward |x_i|² = w_i
        w_r, w_c = pos_r / a**2, pos_c / b**2
        w_r, w_c = w_r / w_r.sum(), w_c / w_c.sum()
        a = a * np.clip((w_r / np.maximum(np.abs(x) ** 2, 1e-30)) ** rate, 0.25, 4.0)
        b = b * np.clip((w_c / np.maximum(np.abs(y) ** 2, 1e-30)) ** rate, 0.25, 4.0)
        trial = evaluate(a, b)
        if trial[0] < best[0]:
            best = trial
        else:
            rate /= 2
    a, b, gram, cache, (theta, _, _) = best[1]
    squares = sum(float(np.sum((B * a[i : i + len(B), None] * b) ** 2)) for i, B in symbol.abs_rows())
    slack = 8 * (gram[2] + 16) * _EPS * squares  # forming G: ‖ΔG‖₂ ≤ this (squares: of |B| scaled)
    lam = 0.0
    for i, (start, stop) in enumerate(spans):
        G = cache[i] if cache is not None else symbol.gram_at(gram, start, stop)
        lam = max(lam, _certified_top(G, theta, slack))
    return math.sqrt(lam) * weight(a, b) * (1 + 8 * (p + q + 4) * _EPS)


def _top_eigen(G: np.ndarray, steps: int = 16):
    """Lanczos estimates of each Hermitian matrix's top eigenvalue and eigenvector (not rigorous:
    they choose scalings and propose `μ` to `_certified_top`). `G` holds the lower triangles
    (and may hold the full matrices)."""
    F, n, _ = G.shape
    H = np.tril(G)  # Hermitian from the lower triangles (added in place: a dense block's n is 4096)
    H += np.swapaxes(np.tril(G, -1), 1, 2).conj()
    m = min(n, steps)
    rng = np.random.default_rng(0)
    v = (np.ones((F, n)) + 0.1 * rng.standard_normal((F, n))).astype(G.dtype)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    Q = np.zeros((F, m, n), G.dtype)
    alpha, beta = np.zeros((F, m)), np.zeros((F, m))
    for j in range(m):
        Q[:, j] = v
        w = (H @ v[..., None])[..., 0]
        alpha[:, j] = np.real(np.sum(v.conj() * w, axis=1))
        for _ in range(2):  # full reorthogonalization, twice
            basis = Q[:, : j + 1]
            w = w - (np.swapaxes(basis, 1, 2) @ (basis.conj() @ w[..., None]))[..., 0]
        beta[:, j] = np.linalg.norm(w, axis=1)
        v = w / np.where(beta[:, j : j + 1] > 0, beta[:, j : j + 1], 1.0)
    T = np.zeros((F, m, m))
    idx = np.arange(m)
    T[:, idx, idx] = alpha
    T[:, idx[:-1], idx[1:]] = T[:, idx[1:], idx[:-1]] = beta[:, :-1]
    values, vectors = np.linalg.eigh(T)
    top = (np.swapaxes(Q, 1, 2) @ vectors[:, :, -1:].astype(G.dtype))[..., 0]
    top /= np.maximum(np.linalg.norm(top, axis=1, keepdims=True), 1e-300)
    return np.maximum(values[:, -1], 0.0), top


def _certified_top(G: np.ndarray, mu: float, slack: float = 0.0) -> float:
    """A rigorous upper bound on `max_f λ_max(G_f)` for Hermitian `G_f` known up to `‖ΔG_f‖₂ ≤
    slack`, given as the lower triangles of the computed matrices; `μ` a proposed bound.

    `μ` is certified for each `f` by a Cholesky factorization `R̂` of the computed `μI − G_f` (lower
    triangle) that runs to completion: then `λ_max ≤ μ + c_chol·‖R̂‖_F² + 2ε(μ + max diag G_f) +
    slack` (the factorization's backward error, Higham Thm 10.3, `c_chol = 4(n+2)ε` real, `8(n+2)ε`
    complex; subtracting the diagonal; forming `G`). A failed factorization retries with `μ`
    raised (by 1e-6 … 2.7e2 relative); a matrix that fails at every `μ` tried falls back to
    Gershgorin's bound `max_i Σ_j |G_ij|`.
    """
    F, n, _ = G.shape
    complex_ = np.iscomplexobj(G)
    c_chol = (8 if complex_ else 4) * (n + 2) * _EPS
    potrf = scipy.linalg.lapack.zpotrf if complex_ else scipy.linalg.lapack.dpotrf
    diag = np.arange(n)
    mu = mu * (1 + 1e-6) + 1e-300
    worst = 0.0
    with _blas_threads(None if n >= 256 else 1):
        for f in range(F):
            Gf = np.tril(G[f])
            absolute = np.abs(Gf)
            gersh = float(np.max(absolute.sum(0) + absolute.sum(1) - absolute[diag, diag]))
            del absolute  # (before the factorizations' copies)
            bound = gersh * (1 + 4 * (n + 2) * _EPS)
            top = float(np.max(np.real(Gf[diag, diag])))
            for attempt in range(8):
                mu_try = mu * (1 + 1e-6 * 16**attempt)
                if mu_try >= bound:
                    break
                H = np.negative(Gf, order="F")  # (Fortran order: potrf factors it in place, no copy)
                H[diag, diag] += mu_try
                R, info = potrf(H, lower=1, clean=1, overwrite_a=1)
                if info == 0:
                    r2 = float(np.linalg.norm(R)) ** 2 * (1 + 4 * (n * n + 2) * _EPS)  # (no |R|² array)
                    bound = min(bound, mu_try + c_chol * r2 + 2 * _EPS * (mu_try + abs(top)))
                    break
            worst = max(worst, bound)
    return (worst + slack) * (1 + 4 * _EPS)


@functools.cache
def _threadpools():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return None
    return ThreadpoolController()


def _blas_threads(n):
    """Limit BLAS threads (`None`: leave them): many small products run far faster on one thread."""
    controller = _threadpools()
    if n is None or controller is None:
        return contextlib.nullcontext()
    return controller.limit(limits=n, user_api="blas")


# ------------------------------------------------------------------------ eigen


def _eigen_bound(graph: SignedGraph, sweeps: int, max_fill: int) -> tuple[float, float]:
    """The `"eigen"` bound (see the module docstring) and `Σ|a|`."""
    M, mass = _symmetric_adjacency(graph)
    total, lo = _mass(mass)
    if total == 0:
        return 0.0, total
    upper, _, _ = _eigen_upper(M, graph.offsets, sweeps, max_fill)
    return max(0.5 * (lo - 0.5 * upper), 0.0), total


def _symmetric_adjacency(graph: SignedGraph):
    """`M = A + Aᵀ` as a float64 CSR matrix (exact: `A` is a DAG's, so `A_pq` and `A_qp` are never
    both non-zero) and the absolute weights of the edges."""
    import scipy.sparse

    r, c, v = graph.to_coo()
    n = graph.num_nodes
    both = (np.concatenate([r, c]), np.concatenate([c, r]))
    return scipy.sparse.csr_array((np.concatenate([v, v]), both), (n, n)), np.abs(v)


def _eigen_upper(M, offsets, sweeps: int, max_fill: int) -> tuple[float, float, float]:
    """A certified upper bound on `max_s sᵀMs`, with the uncertified estimate it certifies and the
    value `Σ_ij M_ij v_i·v_j` of the unit vectors `v_i` found (a feasible point of the max-cut SDP).

    The vectors: `sweeps` sweeps of block-coordinate ascent on the SDP (each layer's `v_i ← (Mv)_i /
    ‖(Mv)_i‖` at once: a layer has no edges inside it), from random ones of `EIGEN_RANK` columns,
    stopping when a sweep gains less than `1e−9` of the value. The dual point `d_i = v_i·(Mv)_i`,
    `μ ≈ λ_max(M − Diag(d))` by Lanczos (a dense solver up to `_EIGEN_DENSE` nodes), then
    `Diag(d + μ) − M ⪰ 0` certified by `_block_cholesky`, `μ` raised until it factors (the trivial
    `Σ|M|` when it never does). Raises `InputError` when the factor would exceed `max_fill` entries.
    """
    import scipy.sparse.linalg

    n = M.shape[0]
    cuts = _chunk_cuts(offsets)
    below, fill = _chunk_pattern(M, cuts)
    if fill > max_fill:
        raise InputError(
            f'method="eigen" factors Diag(d) − M in blocks of {fill:.3g} entries in all, more than '
            f'EIGEN_MAX_FILL={max_fill:.3g}; use method="blocks"'
        )
    rng = np.random.default_rng(0)
    V = rng.standard_normal((n, min(EIGEN_RANK, n)))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    layers = [(a, b, M[a:b]) for a, b in zip(offsets[:-1], offsets[1:]) if b > a]
    value = -np.inf
    for _ in range(sweeps):
        for a, b, rows in layers:
            field = rows @ V
            norm = np.linalg.norm(field, axis=1, keepdims=True)
            V[a:b] = np.where(norm > 0, field / np.where(norm > 0, norm, 1.0), V[a:b])
        last, value = value, float(np.sum((M @ V) * V))
        if value - last <= 1e-9 * abs(value):
            break
    d = np.sum((M @ V) * V, axis=1)
    primal = float(np.sum(d))
    shifted = M - scipy.sparse.diags_array(d)
    if n <= _EIGEN_DENSE:
        mu = float(np.linalg.eigvalsh(shifted.toarray())[-1])
    else:
        try:
            start = rng.standard_normal(n)
            mu = float(scipy.sparse.linalg.eigsh(shifted, 1, which="LA", v0=start, tol=1e-10)[0][0])
        except scipy.sparse.linalg.ArpackNoConvergence:
            mu = float(np.max(abs(M).sum(1) - d))  # Gershgorin's bound
    estimate = primal + n * mu
    scale = float(np.max(np.abs(d))) + float(np.max(abs(M).sum(1)))
    for attempt in range(8):
        diag = d + (mu + scale * 1e-9 * 16**attempt)
        r2 = _block_cholesky(M, diag, cuts, below)
        if r2 is not None:
            tau = 4 * (n + 2) * _EPS * r2 * (1 + 4 * (n * n + 2) * _EPS)  # Higham Thm 10.3
            upper = float(np.sum(diag)) + n * tau + (n + 2) * _EPS * float(np.sum(np.abs(diag)))
            return upper * (1 + 4 * _EPS), estimate, primal
    return float(np.sum(abs(M))) * (1 + 4 * (n + 2) * _EPS), estimate, primal


def _chunk_cuts(offsets) -> np.ndarray:
    """Boundaries of the factorization's chunks: each layer split into near-equal runs of at most
    `_FACTOR_CHUNK` nodes."""
    cuts = [0]
    for a, b in zip(offsets[:-1], offsets[1:]):
        cuts += [int(x) for x in np.linspace(a, b, -(-(b - a) // _FACTOR_CHUNK) + 1).round()[1:]]
    return np.asarray(cuts)


def _chunk_pattern(M, cuts) -> tuple[list[list[int]], int]:
    """The chunks below each chunk `j` whose block of the Cholesky factor of `Diag(d) − M` may be
    non-zero (`M`'s blocks and their fill, by symbolic elimination in order), and the number of
    entries of the factor's blocks (lower triangles of the diagonal ones)."""
    K = len(cuts) - 1
    below = [set() for _ in range(K)]
    for i in range(K):
        cols = M[cuts[i] : cuts[i + 1]].indices
        for j in np.unique(np.searchsorted(cuts, cols, side="right") - 1):
            if j < i:
                below[int(j)].add(i)
    sizes = np.diff(cuts)
    entries = 0
    for j in range(K):
        col = sorted(below[j])
        for t, k in enumerate(col):
            below[k].update(col[t + 1 :])
        entries += int(sizes[j] * (sizes[j] + 1) // 2 + sizes[j] * sizes[col].sum())
    return [sorted(b) for b in below], entries


def _block_cholesky(M, diag: np.ndarray, cuts, below) -> float | None:
    """`‖R̂‖_F²` of the computed Cholesky factor of `Diag(diag) − M`, or `None` when a pivot fails.

    Right-looking, chunk by chunk (`potrf` of a diagonal block, `trsm` for the blocks below it, then
    their products subtracted from the trailing blocks), blocks of `below`'s pattern only: the
    operations of LAPACK's blocked `potrf` on the whole matrix, less those on exact zeros. The
    factor's blocks are dropped once counted; only the trailing matrix is kept."""
    K = len(cuts) - 1
    span = [slice(cuts[i], cuts[i + 1]) for i in range(K)]
    pivots = [np.diag(diag[s]) for s in span]
    trailing = {}
    for i in range(K):
        rows = M[span[i]]
        for j in range(i):
            if i in below[j]:
                trailing[i, j] = -rows[:, span[j]].toarray()
    r2 = 0.0
    with _blas_threads(None):
        for j in range(K):
            L, info = scipy.linalg.lapack.dpotrf(pivots[j], lower=1, clean=1, overwrite_a=1)
            if info != 0:
                return None
            r2 += float(np.sum(L**2))
            col = {i: scipy.linalg.blas.dtrsm(1.0, L, trailing.pop((i, j)), side=1, lower=1, trans_a=1)
                   for i in below[j]}  # fmt: skip
            for i, Li in col.items():
                r2 += float(np.sum(Li**2))
                pivots[i] -= Li @ Li.T
                for k, Lk in col.items():
                    if k < i:
                        trailing[i, k] = trailing.get((i, k), 0.0) - Li @ Lk.T
    return r2


# ------------------------------------------------------------------------ stars


def _stars_bound(A: np.ndarray, work: int, group_size: int) -> tuple[float, float]:
    """The `"stars"` bound of the dense adjacency `A` (see the module docstring) and `Σ|a|`."""
    n = len(A)
    total = float(np.sum(np.abs(A)))
    if total == 0:
        return 0.0, 0.0
    M = A + A.T
    adjacent = M != 0
    T = independent_set(A)
    S, Tn = np.flatnonzero(~T), np.flatnonzero(T)
    degree = np.abs(M[S]).sum(1)
    order = S[np.argsort(-degree, kind="stable")]
    x = _pick_enumerated(order, adjacent, T, work, group_size)
    X, rest = np.sort(order[:x]), np.sort(order[x:])
    groups = np.array_split(rest, -(-rest.size // group_size)) if rest.size else []
    count = 2 ** max(x - 1, 0)
    # T nodes: their field from X, split among their groups by weight into each
    into = (
        np.stack([np.abs(M[np.ix_(Tn, g)]).sum(1) for g in groups], 1) if groups else np.zeros((Tn.size, 0))
    )
    spread = into.sum(1)
    share = np.divide(into, spread[:, None], out=np.zeros_like(into), where=spread[:, None] > 0)
    lone = spread == 0  # T nodes that see only X: their |field| is exact
    M_TX, M_XX = M[np.ix_(Tn, X)], M[np.ix_(X, X)]
    pieces, claimed, in_x = [], np.zeros(n, bool), np.isin(np.arange(n), X)
    for gi, g in enumerate(groups):
        claimed[g] = True
        free = np.flatnonzero(adjacent[:, g].any(1) & ~claimed & ~in_x)  # T nodes and later groups
        alpha = np.zeros(free.size)
        is_t = T[free]
        alpha[is_t] = share[np.searchsorted(Tn, free[is_t]), gi]
        half = _patterns(len(g), 0, 2 ** (len(g) - 1))
        Pg = np.concatenate([half, -half])  # all 2^|g| patterns: the X terms break the symmetry
        h_g = Pg @ M[np.ix_(free, g)].T  # (patterns, free)
        c_g = 0.5 * np.einsum("mi,ij,mj->m", Pg, M[np.ix_(g, g)], Pg)
        pieces.append((h_g, c_g, (M[np.ix_(free, X)] * alpha[:, None]).T, M[np.ix_(X, g)] @ Pg.T))
    widest = max([h.size for h, *_ in pieces] + [Tn.size, 1])
    step = max(1, _CHUNK // widest)
    upper = -np.inf
    for start in range(0, count, step):  # X patterns in chunks; each piece maximised per pattern
        P = _patterns(x, start, min(count, start + step)) if x else np.ones((1, 0))
        value = 0.5 * np.einsum("mi,ij,mj->m", P, M_XX, P) + np.abs(P @ M_TX[lone].T).sum(1)
        for h_g, c_g, field, cross in pieces:
            H = (P @ field)[:, None, :] + h_g[None]
            value = value + (c_g[None] + P @ cross + np.abs(H).sum(2)).max(1)
        upper = max(upper, float(np.max(value)))
    upper = upper + 8 * (n + 8) * _EPS * 2 * total
    lo = total * (1 - 2 * (A.size + 2) * _EPS)
    return 0.5 * (lo - upper), total


def _pick_enumerated(order, adjacent, T, work: int, group_size: int) -> int:
    """The most nodes `x` of `S` (in `order`) to enumerate so that `2^{x−1}·Σ_g 2^{|g|}·|free_g|`,
    the `"stars"` work with the rest in groups of `group_size`, fits `work`; all of `S` when the
    plain enumeration (`2^{|S|−1}·n`) fits."""
    n, s = len(T), order.size
    if s == 0 or 2 ** (s - 1) * n <= work:
        return s

    def cost(x):
        rest = np.sort(order[x:])
        total = 0
        for g in np.array_split(rest, -(-rest.size // group_size)) if rest.size else []:
            total += 2 ** len(g) * int(np.count_nonzero(adjacent[:, g].any(1)))
        return 2 ** max(x - 1, 0) * (total + n)

    lo, hi = 0, s  # cost grows with x (roughly): bisect for the largest x that fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cost(mid) <= work:
            lo = mid
        else:
            hi = mid - 1
    return lo


# ----------------------------------------------------------------------- cycles


def default_cycle_rounds(edges: int) -> int:
    """`"cycles"`' column-generation rounds for a graph of `edges` edges.

    `CYCLE_ROUNDS` up to `CYCLES_FULL_EDGES` edges and `⌊CYCLE_ROUNDS·(CYCLES_FULL_EDGES/edges)²⌋`
    above, as a round's time grows about as edges² (a Dijkstra from every node, a larger LP); 0 (the
    greedy packing alone) on the largest graphs. Every round's packing is a valid bound; the
    benchmarks page shows the time and bound at each size.
    """
    if edges <= CYCLES_FULL_EDGES:
        return CYCLE_ROUNDS
    return int(CYCLE_ROUNDS * (CYCLES_FULL_EDGES / edges) ** 2)


def _cycles_bound(A: np.ndarray, rounds: int = CYCLE_ROUNDS) -> tuple[float, float]:
    """The odd-cycle packing bound and `Σ|a|`.

    In the signed double cover (node `(v, σ)`; an edge of sign `±` joins `(p, σ)` to `(q, ±σ)`) a
    path from `(v, +)` to `(v, −)` is a closed walk through `v` with an odd number of negative edge
    occurrences, so every gauge frustrates at least one occurrence: the walk, with weight `y` on
    each occurrence, is a piece whose minimum is at least `y`. Any packing `y ≥ 0` with
    `Σ_C mult_C(e)·y_C ≤ |a_e|` leaves a residual piece of minimum `≥ 0`, so `min δ ≥ Σ_C y_C`.
    Two packings, the larger kept: a greedy one (shortest walks by breadth-first search through
    each node in turn, sweep after sweep, each taking the bottleneck of the remaining weights), and
    up to `rounds` rounds of column generation on the packing LP (0: the greedy one alone):
    Dijkstra in the double cover with the LP's edge prices (0 at first) finds, through each node,
    the cheapest walk priced below 1 (a column that improves the LP), added to one HiGHS model
    whose primal simplex restarts from the last basis (rather than solving each round's LP
    afresh); when none is left the LP value is the
    odd-cycle relaxation's. Every round's LP solution is a packing, so a valid bound.
    Rounding: weight the packing overdraws from an edge (floats, solver tolerances) is charged back.
    """
    import scipy.sparse
    from scipy.sparse.csgraph import breadth_first_order, dijkstra

    n = len(A)
    M = np.triu(A + A.T, 1)  # one entry per undirected edge
    p, q = np.nonzero(M)
    a = M[p, q]
    total = float(np.sum(np.abs(A)))
    if a.size == 0:
        return 0.0, total
    m = a.size
    weight, neg = np.abs(a), (a < 0).astype(np.int64)
    # double-cover arcs, both directions: arc → edge id, found by searching the sorted arc keys
    tail = np.concatenate([p, p + n, q, q + n])
    head = np.concatenate([q + n * neg, q + n * (1 - neg), p + n * neg, p + n * (1 - neg)])
    arc_edge = np.tile(np.arange(m), 4)
    keys = tail * (2 * n) + head
    order = np.argsort(keys)
    keys, arc_edge_sorted = keys[order], arc_edge[order]

    def walk_edges(pred, v):
        nodes = [v + n]
        while nodes[-1] != v:
            nodes.append(int(pred[nodes[-1]]))
        nodes = np.asarray(nodes[::-1])
        return arc_edge_sorted[np.searchsorted(keys, nodes[:-1] * (2 * n) + nodes[1:])]

    def arcs(mask, cost):
        e = np.flatnonzero(mask[arc_edge])
        return scipy.sparse.csr_array((cost[arc_edge[e]], (tail[e], head[e])), shape=(2 * n, 2 * n))

    # greedy packing
    left, alive = weight.copy(), weight > 0
    pool, packed, found = {}, 0.0, True
    graph = arcs(alive, np.ones(m))
    while found:
        found = False
        for v in range(n):
            _, pred = breadth_first_order(graph, v, directed=True, return_predecessors=True)
            if pred[v + n] < 0:
                continue
            found = True
            edges, mult = np.unique(walk_edges(pred, v), return_counts=True)
            y = float(np.min(left[edges] / mult))
            left[edges] = np.maximum(left[edges] - y * mult, 0.0)
            packed += y
            alive[edges[left[edges] <= 1e-12 * weight[edges]]] = False
            graph = arcs(alive, np.ones(m))
    best = _charged(packed, weight - left, weight)
    # column generation on the packing LP, from the shortest walks (all prices 0): each round adds
    # its columns to one HiGHS model, whose simplex restarts from the last basis
    lp, pool, price = _packing_lp(weight), set(), np.zeros(m)
    rows, cols, mults = [], [], []  # every column's entries, to charge the packing back
    for _ in range(rounds):
        graph = arcs(weight > 0, price + 1e-9)  # the tiny cost prefers short walks among free ones
        new = []
        for start in range(0, n, 256):
            sources = np.arange(start, min(n, start + 256))
            dist, pred = dijkstra(graph, directed=True, indices=sources, return_predecessors=True)
            for i, v in enumerate(sources):
                if dist[i, v + n] < 1 - 1e-7 and pred[i, v + n] >= 0:
                    edges, mult = np.unique(walk_edges(pred[i], v), return_counts=True)
                    if (column := (tuple(edges), tuple(mult))) not in pool:
                        pool.add(column)
                        new.append((edges, mult))
        if not new:
            break
        first = len(rows)
        rows += [e for e, _ in new]
        mults += [k.astype(np.float64) for _, k in new]
        cols += [np.full(e.size, first + j) for j, (e, _) in enumerate(new)]
        sizes = np.array([e.size for e, _ in new])
        lp.addCols(len(new), np.ones(len(new)), np.zeros(len(new)), np.full(len(new), np.inf),
                   int(sizes.sum()), np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32),
                   np.concatenate(rows[first:]).astype(np.int32), np.concatenate(mults[first:]))  # fmt: skip
        lp.run()
        if lp.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            break
        solution = lp.getSolution()
        y = np.maximum(np.asarray(solution.col_value), 0.0)
        used = np.bincount(np.concatenate(rows), np.concatenate(mults) * y[np.concatenate(cols)], minlength=m)
        best = max(best, _charged(float(np.sum(y)), used, weight))
        price = np.maximum(np.asarray(solution.row_dual), 0.0)
    return best, total


def _packing_lp(weight: np.ndarray):
    """`max Σ y` subject to `Σ_C mult_C(e)·y_C ≤ weight_e`, with no column yet, in a quiet HiGHS
    model (its banner, printed to the C stdout when the first model is made, is dropped)."""
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            lp = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    lp.setOptionValue("output_flag", False)
    lp.setOptionValue("presolve", "off")  # keep the basis: each round restarts from the last one …
    lp.setOptionValue("simplex_strategy", 4)  # … by the primal simplex (new columns keep it feasible)
    lp.changeObjectiveSense(highspy.ObjSense.kMaximize)
    m, none = weight.size, np.zeros(0, np.int32)
    lp.addRows(m, np.full(m, -np.inf), weight, 0, none, none, np.zeros(0))
    return lp


def _sparse(A: np.ndarray) -> bool:
    edges = np.count_nonzero(A)
    return bool(edges <= CYCLES_MAX_EDGES and 2 * edges <= CYCLES_MAX_DEGREE * len(A))


def _charged(packed: float, used: np.ndarray, weight: np.ndarray) -> float:
    """`Σ y` of a packing, less the weight it overdraws from any edge (floats, solver tolerance)."""
    gamma = 8 * (used.size + 4) * _EPS
    return packed * (1 - gamma) - float(np.sum(np.maximum(used * (1 + gamma) - weight, 0.0)))
