"""The headline on real networks: pretrained CNNs against their sign-shuffled nulls, beside a twin
of each with random weights.

    python benchmarks/pretrained.py --wheels DIR            # native input sizes
    python benchmarks/pretrained.py --wheels DIR --side 64  # models of dynamic size at 64²

For each validation CNN of `benchmarks/default_quality.py` (the pretrained ONNX models shipped in
the census packages' wheels; never those of facenet-pytorch or rapidocr, which are reserved for
independent checks) and for its random twin (the same graph, each learned weight array redrawn
from a Gaussian of that array's standard deviation), the default study of `jaxflow frustration`
(`frustration_vs_null` with the default config: the `Ladder` estimate, the proven bound, 64
null models climbing the same rungs, and the robustness evidence) gives: the network's `δ/Σ|a|`,
the nulls' mean and standard deviation, z under the ladder and under the independent estimator,
whether their verdicts agree, the proven interval `[bound, δ]`, the gap to the best known value
(from that day's `default-quality-validation` record where it has the graph) and the time.

Writes `benchmarks/results/pretrained-YYYYMMDD.{json,md,png}`; the record is rewritten after each
network, so a long run keeps what it did.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info, write_record  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def random_twin(graph, seed: int = 0):
    """`graph` with each learned weight array redrawn from `N(0, std²)` of that array."""
    import equinox as eqx
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)

    def redraw(w):
        return jnp.asarray(rng.standard_normal(w.shape).astype(w.dtype)) * jnp.std(w)

    blocks = tuple(b.map_weights(redraw) if b.learned else b for b in graph.blocks)
    return eqx.tree_at(lambda g: g.blocks, graph, blocks)


def best_known() -> dict[str, float]:
    """Best known `δ/Σ|a|` of each graph in the newest validation record of `default_quality.py`."""
    records = sorted(RESULTS.glob("default-quality-validation-*.json"))
    if not records:
        return {}
    return {r["graph"]: r["best_known"] for r in json.loads(records[-1].read_text())["rows"]}


def study(name: str, graph, best: float | None) -> dict:
    import jax

    from jaxflow.config import FrustrationConfig
    from jaxflow.experiments.nulls import frustration_vs_null

    start = time.perf_counter()

    def status(text: str) -> None:
        print(f"  [{time.perf_counter() - start:7.1f} s] {text}", flush=True)

    nul, summary = frustration_vs_null(graph, FrustrationConfig(), jax.random.key(0), status=status)
    runs = summary["robustness"]["runs"]
    ladder, independent = runs[-2], runs[-1]  # the last rung, and the independent estimator
    row = {
        "graph": name,
        "nodes": graph.num_nodes,
        "edges": graph.num_edges(),
        "normalized": summary["normalized"],
        "lower_bound": summary["lower_bound"],
        "null_normalized": summary["null_normalized"],
        "null_mean": summary["null_mean"],
        "null_std": summary["null_std"],
        "zscore": summary["zscore"],
        "zscore_independent": independent["zscore"],
        "independent": independent["method"],
        "ladder_last_rung_zscore": ladder["zscore"],
        "agree": summary["robustness"]["agree"],
        "best_known": best,
        "gap_to_best": None if best is None else summary["normalized"] / best - 1,
        "rungs": [list(r) for r in nul.observed.settings.rungs],
        "seconds": time.perf_counter() - start,
    }
    print(
        f"{name}: δ/Σ|a| {row['normalized']:.5f} vs nulls {row['null_mean']:.5f} ± {row['null_std']:.5f}: "
        f"z {row['zscore']:+.2f} (ladder), {row['zscore_independent']:+.2f} ({row['independent']}), "
        f"{'agree' if row['agree'] else 'DISAGREE'}; proven ≥ {row['lower_bound']:.4f}; "
        f"{row['seconds']:.0f} s",
        flush=True,
    )
    return row


def markdown(record: dict) -> str:
    m = record["machine"]
    lines = [
        f"Pretrained CNNs and their random twins against 64 sign-shuffled nulls, {m['date']} on "
        f"{m['cpu']} ({m['cores']} cores).",
        "",
        "| network | edges | δ/Σ\\|a\\| | nulls: mean ± sd | z (ladder) | z (independent) | verdicts "
        "| proven interval | gap to best known | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        gap = "n/a" if r["gap_to_best"] is None else f"{r['gap_to_best']:+.2%}"
        lines.append(
            f"| {r['graph']} | {r['edges']:,} | {r['normalized']:.5f} | {r['null_mean']:.5f} ± "
            f"{r['null_std']:.5f} | {r['zscore']:+.2f} | {r['zscore_independent']:+.2f} "
            f"({r['independent']}) | {'agree' if r['agree'] else 'disagree'} | "
            f"[{r['lower_bound']:.4f}, {r['normalized']:.4f}] | {gap} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def figure(record: dict, path: Path) -> None:
    """Per network (one row each, pretrained and random twins interleaved): the nulls' `δ/Σ|a|` as
    points and a box, the network's as a red diamond, on a shared axis of z units, and both z's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["rows"]
    fig, ax = plt.subplots(figsize=(9, 0.7 * len(rows) + 1.6))
    for i, r in enumerate(rows):
        null = (np.asarray(r["null_normalized"]) - r["null_mean"]) / r["null_std"]
        y = len(rows) - 1 - i
        ax.boxplot(null, positions=[y], vert=False, widths=0.5, showfliers=False)
        ax.scatter(null, y + np.random.default_rng(i).uniform(-0.15, 0.15, null.size), s=6, color="0.5")
        ax.scatter([r["zscore"]], [y], marker="D", s=50, color="tab:red", zorder=3)
        ax.annotate(f"z {r['zscore']:+.1f} / {r['zscore_independent']:+.1f}", (r["zscore"], y + 0.3),
                    fontsize=8, ha="center")  # fmt: skip
    ax.axvspan(-2, 2, color="0.9", zorder=0)
    ax.set_yticks(range(len(rows)), [r["graph"] for r in reversed(rows)], fontsize=8)
    ax.set_xlabel("δ/Σ|a| in standard deviations of its 64 sign-shuffled nulls (network: red diamond)")
    ax.set_title("Pretrained CNNs and random twins against their nulls (z: ladder / independent)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wheels", type=Path, required=True, help="a folder of the census packages' wheels")
    p.add_argument("--side", type=int, default=None, help="models of dynamic size at side² instead")
    p.add_argument("--only", nargs="*", default=None, help="model names (as the census prints them) to run")
    args = p.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    from default_quality import validation_graphs

    best = best_known()
    record = {"machine": machine_info(), "side": args.side, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _, name, graph, _ in validation_graphs(args.wheels, Path(tmp), args.side):
            if args.only and not any(o in name for o in args.only):
                continue
            for label, g in ((name, graph), (f"{name} (random twin)", random_twin(graph))):
                print(label, flush=True)
                record["rows"].append(study(label, g, best.get(label)))
                path = write_record("pretrained", record, quick=False)
                path.with_suffix(".md").write_text(markdown(record))
                figure(record, path.with_suffix(".png"))
    print(markdown(record))


if __name__ == "__main__":
    main()
