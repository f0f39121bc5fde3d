"""The public API honours its jaxtyping annotations: a fresh interpreter with the jaxtyping import
hook (beartype) installed on `jaxflow` runs the DESIGN walkthrough on small, valid inputs.

One subprocess, so the rest of the suite runs unchecked (fast) and bad-input tests still see
jaxflow's own `ValueError`s rather than the checker's `TypeCheckError`.
"""

import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent(
    """
    import jaxtyping
    jaxtyping.install_import_hook(["jaxflow"], "beartype.beartype")

    import jax
    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import jax.numpy as jnp
    import numpy as np

    import jaxflow
    from jaxflow import (
        DeepLinearNetwork, Task, classify_critical_point, critical_point, critical_values,
        frustration, gradient_descent, gradient_flow, hessian, loss, monotonicity_score,
        null_model_frustration, vector_field, SignedGraph,
    )
    from jaxflow.signed import Activation, Conv2d, Dense, Layer, Pool

    key = jax.random.key(0)
    widths = (2, 3, 2)

    # --- deep linear networks
    net = DeepLinearNetwork.init(widths, key, scheme="gaussian", scale=0.1)
    assert net.widths == widths and net.depth == 2
    A = net.adjacency()
    W = net.end_to_end()
    assert len(net.conserved()) == 1
    for a in (A, np.asarray(A)):
        DeepLinearNetwork.from_adjacency(a, widths)
    DeepLinearNetwork.init(widths, key, scheme="orthogonal")
    DeepLinearNetwork.init(np.array(widths), key)  # widths as NumPy integers
    DeepLinearNetwork.from_adjacency(A, np.array(widths))
    DeepLinearNetwork.init(widths, key, scheme="balanced")

    for sv in (jnp.array([2.0, 1.0]), np.array([2.0, 1.0]), [2.0, 1.0]):
        task = Task.from_spectrum(sv, 2, 2)
    X = np.random.default_rng(0).normal(size=(2, 8))
    Y = np.random.default_rng(1).normal(size=(2, 8))
    for x, y in ((X, Y), (jnp.asarray(X), jnp.asarray(Y))):
        Task.from_data(x, y)
        Task.from_data(x, y, whiten=True)
    DeepLinearNetwork.init(widths, key, scheme="aligned", task=task)

    L = loss(net, task)
    F = vector_field(net, task)
    assert F.widths == widths
    traj = gradient_flow(net, task, 2.0, saveat=5)
    traj.ts, traj.losses, traj.final
    for ts in (jnp.linspace(0.0, 2.0, 3), np.linspace(0.0, 2.0, 3)):
        gradient_flow(net, task, 2.0, saveat=ts)
    gradient_flow(net, task, 2.0, saveat=5, stop_at_convergence=True)
    gradient_descent(net, task, 0.1, 4, save_every=2)
    jax.jit(lambda t1: gradient_flow(net, task, t1, saveat=3).losses)(2.0)  # traced t1

    cvs = critical_values(task, widths)
    critical_values(task, np.array(widths))
    critical_point(task, np.array(widths), (0,))
    assert cvs[0].value <= cvs[-1].value
    for cv in cvs:
        crit = critical_point(task, widths, cv.subset)
    H = hessian(net, task)
    assert H.shape == (net.num_parameters,) * 2
    from jaxflow.linear.hessian import hvp
    from jaxflow.linear.symmetry import apply_symmetry
    for v in (jnp.ones(net.num_parameters), np.ones(net.num_parameters)):
        hvp(net, task, v)
    for T in ([2.0 * jnp.eye(3)], [2.0 * np.eye(3)]):
        apply_symmetry(net, T)
    for subset in ((0,), (1,), (0, 1)):
        rep = classify_critical_point(critical_point(task, widths, subset), task, key=key, probes=2)
        assert rep.kind in ("global_minimum", "strict_saddle", "nonstrict_saddle"), rep.kind
    assert classify_critical_point(net, task, key=key).kind == "not_critical"
    classify_critical_point(critical_point(task, (2, 2, 2, 2), ()), task, key=key, probes=2)

    # --- signed graphs of deep linear networks
    g = SignedGraph.from_network(net)
    for ws in (net.weights, [np.asarray(w) for w in net.weights]):
        g2 = SignedGraph.from_weights(ws)
    dense = g.to_dense()
    assert np.allclose(dense, A)
    xs = tuple(jnp.ones(s) for s in g.shapes)
    g.matvec(xs); g.rmatvec(xs); g.abs_sum(); g.num_edges()
    res = frustration(g, method="layerwise", key=key, restarts=4)
    res.value, res.normalized, res.gauge, res.flat_gauge, res.lower_bound
    frustration(g, method="exact")
    frustration(g, key=key, restarts=4, tol=0)  # ints where floats are meant
    DeepLinearNetwork.init(widths, key, scale=1)
    frustration(g, method="anneal", key=key, restarts=2, anneal_steps=4)
    frustration(g, method="greedy", key=key, restarts=2)
    nul = null_model_frustration(g, jax.random.key(1), samples=3, restarts=4)
    nul.values, nul.mean, nul.std, nul.zscore(res.value), nul.pvalue()

    # --- a tiny conv graph
    k = jax.random.split(key, 3)
    K1 = jax.random.normal(k[0], (2, 1, 3, 3))
    Wd = jax.random.normal(k[1], (3, 2 * 2 * 2))
    conv = SignedGraph.from_layers([
        Layer("x", shape=(1, 4, 4)),
        Layer("h", {"x": Conv2d(K1, (1, 4, 4), padding=1)}, activation=Activation("relu", True)),
        Layer("p", {"h": Pool(2, (2, 4, 4), mode="max")}),
        Layer("y", {"p": Dense(Wd, in_shape=(2, 2, 2))}),
    ])
    SignedGraph.from_layers([
        Layer("x", shape=(1, 4, 4)),
        Layer("h", {"x": Conv2d(np.asarray(K1), (1, 4, 4), padding=1)}),
        Layer("p", {"h": Pool(2, (2, 4, 4), mode="avg")}),
        Layer("y", {"p": Dense(np.asarray(Wd), in_shape=(2, 2, 2))}),
    ])
    conv.to_dense(); conv.matvec(tuple(jnp.ones(s) for s in conv.shapes))
    cres = frustration(conv, key=key, restarts=4)
    null_model_frustration(conv, key, samples=2, restarts=4)

    # --- monotonicity of a tiny MLP (3 inputs -> 2 outputs)
    mlp = eqx.nn.MLP(3, 2, 4, 1, key=key)
    inputs = jax.random.normal(key, (4, 3))
    for s_in, s_out, xin in ((jnp.ones(3), -jnp.ones(2), inputs),
                             (np.ones(3), np.ones(2), np.asarray(inputs))):
        m = monotonicity_score(mlp, s_in, s_out, xin)
        m.mean, m.per_input

    # --- a tiny sweep
    from jaxflow.linear.sweep import Flow, Lanes, Networks, sweep
    sweep(Task.from_spectrum([2.0, 1.0], 2, 2), Networks((2, 2, 2), scale=0.2),
          Flow(t1=5.0, saves=6, gtol=1e-6), Lanes(inits=2, chunk=2, seed=0))

    # --- the hook is on: a wrong-rank array is refused by the checker, not by jaxflow
    try:
        jaxflow.linear.objective.end_to_end_loss(jnp.ones(3), task)
    except jaxtyping.TypeCheckError:
        pass
    else:
        raise AssertionError("the jaxtyping import hook is not active")
    print("contracts ok")
    """
)


def test_public_api_honours_its_annotations():
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, f"contract script failed after {elapsed:.1f} s:\n{proc.stderr[-8000:]}"
    assert "contracts ok" in proc.stdout
