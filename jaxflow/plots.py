"""Figures: each function draws one figure from JSON-ready results and saves it to `path`.

Figures are `matplotlib.figure.Figure` objects saved with their own canvas, so drawing needs no
pyplot state and leaves the user's matplotlib backend alone."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure

from ._store import write_atomic


def _subplots(*grid: int, layout: str | None = None, **kwargs):
    """A new figure and its axes (as `pyplot.subplots`, without pyplot)."""
    fig = Figure(figsize=kwargs.pop("figsize", None), layout=layout)
    return fig, fig.subplots(*grid, **kwargs)


def _save(fig, path) -> Path:
    path = Path(path)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    return write_atomic(path, lambda f: fig.savefig(f, format=path.suffix[1:], dpi=120))


def plot_null_histogram(null, value: float, path, *, title: str, xlabel: str) -> Path:
    """Histogram of a null distribution with the network's own value marked."""
    fig, ax = _subplots(figsize=(5.5, 3.8))
    ax.hist(null, bins=min(30, max(5, len(null) // 3)), color="0.7", edgecolor="0.4", label="null models")
    ax.axvline(value, color="C3", lw=2, label=f"network: {value:.4g}")
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    ax.legend()
    return _save(fig, path)


def _short(name: str, width: int) -> str:
    """`name` cut to `width` characters, the cut marked by an ellipsis."""
    return name if len(name) <= width else name[: width - 1] + "…"


def _zscores(rows, value="normalized") -> np.ndarray:
    out = []
    for r in rows:
        z = r.get("zscore")
        if z is None and r.get("null_std"):
            z = (r[value] - r["null_mean"]) / r["null_std"]
        out.append(np.nan if z is None else float(z))
    return np.asarray(out, float)


def _z_colors(z: np.ndarray) -> list[str]:
    return ["C3" if v < -2 else "C0" if v > 2 else "0.55" for v in np.nan_to_num(z)]


def _distinct_parts(names: list[str]) -> list[str]:
    """`names` without the `/`-separated leading and trailing parts they all share (exporters'
    names such as `/layer1/layer1.0/relu/Relu_output_0` differ in the middle)."""
    if len(set(names)) < 2:
        return names
    prefix = os.path.commonprefix(names)
    suffix = os.path.commonprefix([m[::-1] for m in names])[::-1]
    head = prefix.rfind("/") + 1  # cut at a path separator, not inside a part
    tail = len(suffix) - suffix.find("/") if "/" in suffix else 0
    cut = [m[head : len(m) - tail] for m in names]
    return [c.strip("/._-") or m for c, m in zip(cut, names)]


LABELLED_LAYERS = 12  # up to this many blocks the x axis also names each block's destination


def plot_layer_frustration(layers: list[dict], path) -> Path:
    """Per trained block, by its number `index` (1, 2, … in graph order; the names are in
    `frustration_layers.csv`): above, the normalized frustration against the null mean ± 2 std;
    below, its z-score. Up to `LABELLED_LAYERS` blocks the ticks also carry a short name."""
    n = len(layers)
    x = np.array([lay.get("index", i + 1) for i, lay in enumerate(layers)])
    value = np.array([lay["normalized"] for lay in layers])
    mean = np.array([lay["null_mean"] for lay in layers])
    std = np.array([lay["null_std"] for lay in layers])
    z = _zscores(layers)
    few = n <= LABELLED_LAYERS
    fig, (a, b) = _subplots(
        2, 1, figsize=(min(14.0, max(6.0, 4.0 + 0.05 * n)), 5.6), sharex=True,
        gridspec_kw={"height_ratios": (2.2, 1.0)},
    )  # fmt: skip
    if few:
        a.errorbar(x, mean, yerr=2 * std, fmt="o", color="0.45", capsize=4, label="null mean ± 2 std")
    else:
        a.fill_between(x, mean - 2 * std, mean + 2 * std, color="0.85", step="mid", label="null mean ± 2 std")
        a.plot(x, mean, "-", color="0.45", lw=0.8, drawstyle="steps-mid")
    ms = 6 if n <= 40 else 3 if n <= 120 else 2
    a.plot(x, value, "D" if few else "o-", color="C3", ms=ms, lw=0.8, label="network")
    a.set(ylabel="normalized frustration", title=f"frustration per trained block ({n} blocks)")
    a.legend(fontsize=8, loc="best")
    b.bar(x, np.nan_to_num(z), width=0.8 if n <= 120 else 1.0, color=_z_colors(z))
    b.axhline(0, color="0.3", lw=0.6)
    for level in (-2, 2):
        b.axhline(level, color="0.5", lw=0.6, ls=":")
    b.set(ylabel="z-score")
    if few:
        names = _distinct_parts([lay["destination"] for lay in layers])
        b.set_xticks(
            x, [f"{i}: {_short(m, 16)}" for i, m in zip(x, names)], fontsize=7, rotation=30, ha="right"
        )
    else:
        b.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, nbins=min(n, 20)))
    b.set_xlabel("trained block (index; names in frustration_layers.csv)")
    if n:
        b.set_xlim(x.min() - 0.7, x.max() + 0.7)
    return _save(fig, path)


def plot_models(rows: list[dict], path, *, title: str = "frustration vs null models") -> Path:
    """A study across models, one row per model (in the given order, top to bottom). Left: the
    normalized frustration of the network (red diamond) over its own null models (grey dots, one per
    sample, and their quartile box). Right: the z-score `(value − null mean) / null std` (red
    below −2, blue above 2), with the empirical p-value written beside it. A model that failed
    keeps its row, marked as such."""
    n = len(rows)
    size = 9 if n <= 12 else 8 if n <= 24 else 7
    width = max(24, min(40, max((len(r["model"]) for r in rows), default=0)))
    fig, (a, b) = _subplots(
        1, 2, figsize=(11.5, 1.8 + 0.34 * max(n, 3)), sharey=True, layout="constrained",
        gridspec_kw={"width_ratios": (3.0, 1.5)},
    )  # fmt: skip
    y = np.arange(n)
    ok = [i for i, r in enumerate(rows) if not r.get("error")]
    rng = np.random.default_rng(0)
    for i in ok:
        null = np.asarray(rows[i]["null_normalized"], float)
        if null.size:
            jitter = rng.uniform(-0.18, 0.18, null.size)
            label = "null models (dots: samples; box: quartiles; whiskers: range)" if i == ok[0] else None
            a.plot(null, i + jitter, ".", color="0.55", ms=3, alpha=0.6, zorder=1, label=label)
            grey = {"color": "0.3"}
            a.boxplot(null, positions=[i], orientation="horizontal", widths=0.55, showfliers=False,
                      whis=(0, 100), patch_artist=True, manage_ticks=False, zorder=2,
                      boxprops={"facecolor": "none", "edgecolor": "0.3"},
                      medianprops=grey, whiskerprops=grey, capprops=grey)  # fmt: skip
    a.plot([rows[i]["normalized"] for i in ok], ok, "D", color="C3", ms=6 if n <= 30 else 4, zorder=3,
           label="network")  # fmt: skip
    z = _zscores([rows[i] for i in ok])
    b.axvspan(-2, 2, color="0.92", zorder=0)
    b.axvline(0, color="0.3", lw=0.6)
    b.hlines(ok, 0, np.nan_to_num(z), color=_z_colors(z), lw=2)
    b.scatter(z, ok, c=_z_colors(z), s=22 if n <= 30 else 12, zorder=3)
    finite = z[np.isfinite(z)]
    lo, hi = (min(finite.min(), -3.0), max(finite.max(), 3.0)) if finite.size else (-3.0, 3.0)
    b.set_xlim(lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo))
    texts = ["failed"] * n
    for i, v in zip(ok, z):
        p = rows[i].get("pvalue")
        texts[i] = (
            "z n/a" if not np.isfinite(v) else f"z = {v:.1f}" + (f", p = {p:.2g}" if p is not None else "")
        )
    right = b.twinx()  # the values, as tick labels on the right (laid out with the figure)
    right.set_yticks(y, texts, fontsize=size - 1, color="0.25")
    right.tick_params(axis="y", length=0)
    for i, r in enumerate(rows):
        if r.get("error"):
            a.text(0.01, i, "failed: " + _short(r["error"], 70), transform=a.get_yaxis_transform(),
                   va="center", fontsize=size - 1, color="C3", style="italic")  # fmt: skip
    a.set_yticks(y, [_short(r["model"], width) for r in rows], fontsize=size)
    a.set_ylim(n - 0.5, -0.5)
    right.set_ylim(n - 0.5, -0.5)
    a.set_xlabel("normalized frustration δ / Σ|a|")
    b.set_xlabel("z-score vs null")
    a.grid(axis="x", color="0.9", lw=0.6)
    for ax in (a, b):  # a faint line along each row, to read across the two panels
        ax.hlines(y, 0, 1, transform=ax.get_yaxis_transform(), color="0.94", lw=0.6, zorder=0)
    if ok:
        a.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, frameon=False)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_monotonicity(mono: dict, path) -> Path:
    """Left: the Jacobian score against null-model networks and random orthants. Right: the
    orthant-perturbation test by perturbation size."""
    fig, (a, b) = _subplots(1, 2, figsize=(10, 3.8))
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
    fig, (a, b) = _subplots(1, 2, figsize=(10, 3.8))
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
    fig, (a, b, c) = _subplots(1, 3, figsize=(13, 3.6))
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
    fig, (a, b) = _subplots(2, 1, figsize=(7, 6), sharex=True)
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
    fig, axes = _subplots(1, len(result.widths), figsize=(5.5 * len(result.widths), 4.2), squeeze=False)
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
    fig, axes = _subplots(1, len(result.widths), figsize=(5.5 * len(result.widths), 3.8), squeeze=False)
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
    fig, ax = _subplots(figsize=(7.5, 0.45 * len(rows) + 1.6))
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
