"""The exact solvers: enumeration over a vertex cover and HiGHS, against brute force and each other."""

import jax
import numpy as np
import pytest
from test_frustration import brute_force, random_weights  # tests/signed is on sys.path

from jaxflow.signed import (
    Dense,
    Layer,
    SignedGraph,
    frustration as frustration_module,
    gauge_frustration,
)
from jaxflow.signed._exact import (
    ENUMERATION_WORK_PER_SECOND,
    enumerate_cover,
    enumeration_work,
    independent_set,
)
from jaxflow.signed.frustration import frustration


def skip_graph(seed):
    """A layered graph with a skip `x → z` (so no parity class is independent): 3 + 4 + 4 + 3 nodes."""
    rng = np.random.default_rng(seed)
    w = lambda o, i: Dense(rng.normal(size=(o, i)))
    return SignedGraph.from_layers(
        [
            Layer("x", shape=(3,)),
            Layer("y", {"x": w(4, 3)}),
            Layer("z", {"y": w(4, 4), "x": w(4, 3)}),
            Layer("out", {"z": w(3, 4)}),
        ]
    )


@pytest.fixture
def milp_only(monkeypatch):
    """`"exact"` with the enumeration switched off: HiGHS on every graph."""
    monkeypatch.setattr(frustration_module, "ENUMERATION_MAX_WORK", -1)


@pytest.mark.parametrize("seed", range(12))
def test_independent_set_is_independent_and_maximal(seed):
    A = np.asarray(
        (skip_graph(seed) if seed % 2 else SignedGraph.from_weights(random_weights(seed))).to_dense()
    )
    T = independent_set(A)
    adjacent = (A != 0) | (A.T != 0)
    assert not adjacent[np.ix_(T, T)].any()  # independent
    assert adjacent[np.ix_(~T, T)].any(1).all()  # maximal: every other node touches T


def test_a_layered_chain_enumerates_its_smaller_parity_class():
    widths = (5, 9, 4, 8)  # odd layers 9 + 8 = 17 nodes, even 5 + 4 = 9
    A = np.asarray(SignedGraph.from_weights(random_weights(0, widths)).to_dense())
    T = independent_set(A)
    assert int((~T).sum()) == 9 and enumeration_work(T) == 2**8 * sum(widths)


@pytest.mark.parametrize("seed", range(20))
def test_enumeration_and_highs_equal_brute_force_with_skips(seed, monkeypatch):
    g = skip_graph(seed)
    A = np.asarray(g.to_dense())
    optimum = brute_force(A)
    s, bound, count = enumerate_cover(A, independent_set(A))
    assert count < 2 ** (A.shape[0] - 1)
    np.testing.assert_allclose(gauge_frustration(g, s), optimum, rtol=1e-13)
    assert optimum - 1e-12 * np.abs(A).sum() <= bound <= optimum  # rounding slack 2n·ε·Σ|a|
    monkeypatch.setattr(frustration_module, "ENUMERATION_MAX_WORK", -1)
    milp = frustration(g, method="exact")
    assert milp.optimal and int(milp.iterations) < count  # branch-and-bound nodes, not gauges
    np.testing.assert_allclose(milp.value, optimum, rtol=1e-12)


def test_enumeration_beyond_brute_force_matches_highs(milp_only):
    g = SignedGraph.from_weights(random_weights(21, (6, 9, 9, 6)))  # 30 nodes, cover of 12
    A = np.asarray(g.to_dense())
    s, _, _ = enumerate_cover(A, independent_set(A))
    milp = frustration(g, method="exact")
    assert milp.optimal
    np.testing.assert_allclose(gauge_frustration(g, s), milp.value, rtol=1e-12)


def test_highs_stopped_early_keeps_the_anneal_incumbent_and_a_valid_bound(milp_only):
    """HiGHS searches below `"anneal"`'s best gauge (same key and effort): cut short, `"exact"` is
    never worse than `"anneal"`, and its bound never exceeds the optimum."""
    g = SignedGraph.from_weights(random_weights(14, (8, 12, 12, 8)))  # 336 edges: seconds to prove
    key = jax.random.key(3)
    anneal = frustration(g, method="anneal", key=key)
    short = frustration(g, method="exact", key=key, time_limit=0.05)
    A = np.asarray(g.to_dense())
    optimum = gauge_frustration(g, enumerate_cover(A, independent_set(A))[0])
    assert not short.optimal and optimum <= short.value <= anneal.value
    assert 0 <= short.lower_bound <= optimum + 1e-9  # HiGHS' dual bound at the time limit
    assert short.value == gauge_frustration(g, short.gauge)


def test_a_time_limit_too_short_to_enumerate_goes_to_highs():
    """(14, 30, 14): a vertex cover of 28 nodes, 2^27·58 ≈ 8e9 gauge evaluations (seconds): within
    0.2 s `"exact"` runs HiGHS on time, from `"anneal"`'s incumbent, and its interval still holds."""
    g = SignedGraph.from_weights(random_weights(5, (14, 30, 14)))
    A = np.asarray(g.to_dense())
    assert enumeration_work(independent_set(A)) > ENUMERATION_WORK_PER_SECOND * 0.2
    short = frustration(g, method="exact", time_limit=0.2)
    assert int(short.iterations) < 2**27  # branch-and-bound nodes, not the gauges of the cover
    anneal = frustration(g, method="anneal")  # the same key and effort as the incumbent
    assert 0 <= short.lower_bound <= short.value <= anneal.value
    with pytest.raises(ValueError, match="time_limit must be finite and > 0"):
        frustration(g, method="exact", time_limit=-1)
