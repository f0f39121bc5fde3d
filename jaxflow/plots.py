"""Figures (matplotlib, Agg backend): each function draws one figure from JSON-ready results and
saves it to `path`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_null_histogram(null, value: float, path, *, title: str, xlabel: str) -> Path:
    """Histogram of a null distribution with the network's own value marked."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.hist(null, bins=min(30, max(5, len(null) // 3)), color="0.7", edgecolor="0.4", label="null models")
    ax.axvline(value, color="C3", lw=2, label=f"network: {value:.4g}")
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    ax.legend()
    return _save(fig, path)


def plot_layer_frustration(layers: list[dict], path) -> Path:
    """Per trained block: normalized frustration and the null mean ± 2 std."""
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(layers) + 2), 3.8))
    x = np.arange(len(layers))
    mean = np.array([lay["null_mean"] for lay in layers])
    std = np.array([lay["null_std"] for lay in layers])
    ax.errorbar(x, mean, yerr=2 * std, fmt="o", color="0.4", capsize=4, label="null mean ± 2 std")
    ax.plot(x, [lay["normalized"] for lay in layers], "D", color="C3", label="network")
    ax.set_xticks(x, [f"{lay['source']}\n→ {lay['destination']}" for lay in layers], fontsize=7)
    ax.set(ylabel="normalized frustration", title="frustration per layer")
    ax.legend()
    return _save(fig, path)


def plot_monotonicity(mono: dict, path) -> Path:
    """Left: the Jacobian score against null-model networks and random orthants. Right: the
    orthant-perturbation test by perturbation size."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    bins = np.linspace(0.3, 1.0, 36)
    a.hist(mono["null_scores"], bins=bins, color="0.7", edgecolor="0.4", label="null networks (own gauge)")
    a.hist(mono["random_orthant_scores"], bins=bins, color="C0", alpha=0.5, label="random orthants")
    a.axvline(mono["score"], color="C3", lw=2, label=f"network: {mono['score']:.3f}")
    a.set(xlabel="Jacobian score", ylabel="count", title="near-monotonicity vs null")
    a.legend(fontsize=8)
    p = mono["perturbation"]
    b.semilogx(p["sizes"], p["coordinate"], "o-", color="C3", label="δ ∈ K_in (coordinates)")
    b.semilogx(p["sizes"], p["reference_coordinate"], "o--", color="C0", label="random orthant (coordinates)")
    b.semilogx(p["sizes"], p["vector"], "s-", color="C1", label="δ ∈ K_in (Δ ∈ K_out)")
    b.semilogx(p["sizes"], p["reference_vector"], "s--", color="C2", label="random orthant (Δ ∈ K_out)")
    null = np.asarray(p["null_coordinate"])
    b.errorbar(p["sizes"], null.mean(0), yerr=2 * null.std(0), fmt="^:", color="0.4", capsize=3,
               label="null networks, own gauge (coordinates, ±2 std)")  # fmt: skip
    b.set(xlabel="‖δ‖", ylabel="fraction agreeing with the order", ylim=(-0.02, 1.02))
    b.set_title("orthant perturbations")
    b.legend(fontsize=7)
    return _save(fig, path)


def plot_active_subnetworks(active: dict, full_normalized: float, path) -> Path:
    """Frustration of the active subnetworks and the agreement of their gauges across inputs."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.hist(active["normalized"], bins=15, color="C0", alpha=0.7, label="active subnetworks")
    a.axvline(full_normalized, color="C3", lw=2, label="whole network")
    a.set(xlabel="normalized frustration", ylabel="inputs", title="active subnetworks")
    a.legend(fontsize=8)
    im = b.imshow(np.asarray(active["agreement"]), vmin=0, vmax=1, cmap="viridis")
    b.set(title="gauge agreement across inputs", xlabel="input", ylabel="input")
    fig.colorbar(im, ax=b)
    return _save(fig, path)


def plot_training(trace: list[dict], path) -> Path:
    """Frustration and Jacobian score along training (with their null means), and the loss."""
    epochs = [c["epoch"] for c in trace]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.6))
    a.plot(epochs, [c["frustration"]["normalized"] for c in trace], "o-", color="C3", label="network")
    mean = np.array([c["frustration"]["null_mean"] for c in trace])
    std = np.array([c["frustration"]["null_std"] for c in trace])
    a.plot(epochs, mean, "o--", color="0.4", label="null mean")
    a.fill_between(epochs, mean - 2 * std, mean + 2 * std, color="0.8")
    a.set(xlabel="epoch", ylabel="normalized frustration", title="frustration along training")
    a.legend(fontsize=8)
    b.plot(epochs, [c["monotonicity"]["score"] for c in trace], "o-", color="C3", label="network")
    b.plot(epochs, [c["monotonicity"]["null_mean"] for c in trace], "o--", color="0.4", label="null mean")
    random = [c["monotonicity"]["random_orthant_mean"] for c in trace]
    b.plot(epochs, random, "o:", color="C0", label="random orthants")
    b.set(xlabel="epoch", ylabel="Jacobian score", title="near-monotonicity along training")
    b.legend(fontsize=8)
    c.plot(epochs, [c["train_loss"] for c in trace], "o-", color="C2", label="train loss")
    c.set(xlabel="epoch", ylabel="cross-entropy", title="training")
    c2 = c.twinx()
    c2.plot(epochs, [c["test_accuracy"] for c in trace], "s--", color="C1", label="test accuracy")
    c2.set_ylabel("test accuracy")
    return _save(fig, path)


def plot_dln_frustration(dln: dict, path) -> Path:
    """Frustration of `A(t)` along gradient-flow trajectories (one line per initialization, the
    null band of the first) with the loss `L(t)` on a log scale below."""
    ts = np.asarray(dln["ts"])
    value, loss = np.asarray(dln["frustration"]), np.asarray(dln["loss"])
    mean, std = np.asarray(dln["null_mean"]), np.asarray(dln["null_std"])
    fig, (a, b) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    a.fill_between(ts, mean.mean(0) - 2 * std.mean(0), mean.mean(0) + 2 * std.mean(0), color="0.85")
    a.plot(ts, mean.mean(0), "--", color="0.4", label="null mean ± 2 std (avg over inits)")
    for i, v in enumerate(value):
        a.plot(ts, v, color="C3", alpha=0.5, lw=1, label="A(t), one line per init" if i == 0 else None)
    a.set(ylabel="normalized frustration", title="frustration along the gradient flow")
    a.legend(fontsize=8)
    for i, l_ in enumerate(loss):
        b.semilogy(ts, np.maximum(l_, 1e-16), color="C2", alpha=0.5, lw=1, label="loss" if i == 0 else None)
    b2 = b.twinx()
    b2.step(ts, np.median(np.asarray(dln["modes_learnt"]), 0), where="post", color="C1", label="modes learnt")
    b2.set_ylabel("modes learnt (median)")
    b.set(xlabel="t", ylabel="L(t)")
    b.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def plot_sweep_losses(result, path, *, max_curves: int = 64) -> Path:
    """Loss curves of a sweep (up to `max_curves` per architecture) over time, with the critical
    values as horizontal lines; the levels each curve visited are marked on it."""
    fig, axes = plt.subplots(1, len(result.widths), figsize=(5.5 * len(result.widths), 4.2), squeeze=False)
    for a, ax in enumerate(axes[0]):
        rows = np.flatnonzero(result.arch == a)[:max_curves]
        for lvl in result.levels[a]:
            ax.axhline(lvl, color="0.8", lw=0.8, zorder=0)
        for n in rows:
            ax.plot(result.ts, result.losses[n], lw=0.8, alpha=0.6)
            seen = result.visited[n][np.isfinite(result.visited[n])]
            hit = [result.ts[np.argmin(np.abs(result.losses[n] - v))] for v in seen]
            ax.plot(hit, seen, "k.", ms=3)
        ax.set(title=f"widths {list(result.widths[a])}", xlabel="t", ylabel="loss L")
        ax.set_yscale("symlog", linthresh=max(1e-3, float(np.min(np.diff(result.levels[a]), initial=1.0))))
    return _save(fig, path)


def plot_learning_times(result, path) -> Path:
    """Histogram per mode of the time each mode strength first reached half its singular value."""
    fig, axes = plt.subplots(1, len(result.widths), figsize=(5.5 * len(result.widths), 3.8), squeeze=False)
    for a, ax in enumerate(axes[0]):
        times = result.learning_times[result.arch == a]
        finite = times[np.isfinite(times)]
        bins = np.linspace(finite.min(), finite.max() + 1e-12, 30) if finite.size else 10
        for k in range(times.shape[1]):
            tk = times[:, k][np.isfinite(times[:, k])]
            if tk.size:
                ax.hist(tk, bins=bins, alpha=0.6, label=f"mode {k + 1} (σ = {result.sigma[k]:.3g})")
        ax.set(title=f"widths {list(result.widths[a])}", xlabel="time s_k reaches σ_k / 2", ylabel="count")
        ax.legend(fontsize=8)
    return _save(fig, path)


def plot_hessian_spectra(rows: list[dict], path) -> Path:
    """One line per critical point: its Hessian eigenvalues (symlog axis), negative in red, zero
    in grey, positive in blue, labelled with the learnt modes, the value, the kind and the
    inertia `(n_neg, n_zero, n_pos)`."""
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(rows) + 1.6))
    lim = max((max(abs(v) for v in r["eigenvalues"]) for r in rows), default=1.0) or 1.0
    for y, r in enumerate(rows):
        lam = np.asarray(r["eigenvalues"])
        tol = r["tolerance"]
        for mask, color in ((lam < -tol, "C3"), (np.abs(lam) <= tol, "0.5"), (lam > tol, "C0")):
            ax.plot(lam[mask], np.full(mask.sum(), y), "|", color=color, ms=12, mew=1.5)
    modes = ["{" + ",".join(str(j + 1) for j in r["subset"]) + "}" for r in rows]
    labels = [
        f"S={m}  L={r['value']:.4g}  {r['kind'].replace('_', ' ')} {tuple(r['inertia'])}"
        for m, r in zip(modes, rows)
    ]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xscale("symlog", linthresh=1e-3 * lim)
    ax.axvline(0, color="0.8", lw=0.8, zorder=0)
    ax.set(xlabel="Hessian eigenvalue", title="Hessian spectrum at each critical point")
    ax.invert_yaxis()
    return _save(fig, path)
