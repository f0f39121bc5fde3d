"""The default estimator against the best known value: tuned on one set, validated on another.

    python benchmarks/default_quality.py --set tuning                   # peers families (a)-(d)
    python benchmarks/default_quality.py --set validation --wheels DIR  # pretrained CNNs from wheels
    python benchmarks/default_quality.py --set validation --wheels DIR --side 64  # smaller inputs
    python benchmarks/default_quality.py --set validation --wheels DIR --only nudenet  # some models

Tuning set: the instances of `benchmarks/peers.py` (20 of its 100 dense graphs with proven optima,
the six sparse graphs, the digits MLP and CNN, the ResNet-18-shaped graph at 16²). Validation set:
the pretrained ONNX CNNs of `benchmarks/census.py`'s packages that import, at their native input
shapes (the models of facenet-pytorch and rapidocr are reserved for independent checks and never
used here). Per graph:

- the default, `frustration(graph)` (`"ladder"`): its value, its time cold (the first call,
  compilation included) and warm (the second), and the rungs it climbed;
- the previous default (the `structure` rules: sparse graphs annealed 16 restarts × 8,000 sweeps,
  local ones 100 sweeps, dense and large ones `"layerwise"`), value and warm time;
- the best known value: the least of everything run here, of `"anneal"` at 10× the work of the
  ladder's last rung (ten times its restarts, its sweeps), of `"layerwise"` at 10× its default
  restarts, of dwave-samplers' simulated annealing (8 reads × 10,000 sweeps, graphs up to
  `SA_MAX_EDGES` edges; needs the `peers` extra) and, on the tuning set, of the best value in
  `peers-20261206.json`.

Writes `benchmarks/results/default-quality-<set>-YYYYMMDD.json` and the `.md` table next to it.
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
from _machine import machine_info, record_path, write_record  # noqa: E402

SA_MAX_EDGES = 2 * 10**5  # dwave SA at 10,000 sweeps × 8 reads: minutes past this on 2 cores
PEERS_RECORD = Path(__file__).resolve().parent / "results" / "peers-20261206.json"


def tuning_graphs(dense: int) -> list[tuple[str, str, object, float | None]]:
    """`(family, name, graph, best in the peers record)` of the tuning set."""
    from peers import dense_family, digits_family, resnet_family, sparse_family

    best = {f: r["references"] for f, r in json.loads(PEERS_RECORD.read_text())["results"].items()}
    out = []
    families = {
        "a": lambda: dense_family(100, 200, 2000)[:dense],
        "b": lambda: sparse_family((300, 1500, 5000), 1),
        "c": lambda: digits_family(20, ("mlp", "cnn")),
        "d": lambda: resnet_family(16),
    }
    for family, make in families.items():
        for name, graph in make():
            out.append((family, name, graph, best[family][name]["best"]))
    return out


def validation_graphs(
    wheels: Path | None, into: Path, side: int | None
) -> list[tuple[str, str, object, None]]:
    """`(package, model, graph, None)` of each census model that imports at its native shape, or,
    with `side`, of each with dynamic height and width at `side`² (the others are left out)."""
    from census import NATIVE, find_models

    from jaxflow._checks import InputError
    from jaxflow.signed.importers import load_graph

    out = []
    for package, member, path in find_models(wheels, into):
        shape = NATIVE.get(member)
        if side is not None:
            if shape is None:
                continue
            shape = (*shape[:2], side, side)
        try:
            graph = load_graph(path, input_shape=shape)
        except InputError as e:
            print(f"{member}: not imported ({str(e)[:80]}…)", flush=True)
            continue
        out.append((package, member if side is None else f"{member} at {side}²", graph, None))
    return out


def previous_default(graph) -> dict:
    """The keyword arguments of the previous default (`structure` rules) on `graph`."""
    from jaxflow.signed.estimators import LOCAL_ANNEAL_STEPS, SPARSE_ANNEAL_STEPS, structure

    kind = structure(graph)
    if kind == "sparse":
        return {"method": "anneal", "restarts": 16, "anneal_steps": SPARSE_ANNEAL_STEPS}
    if kind == "local":
        return {"method": "anneal", "anneal_steps": LOCAL_ANNEAL_STEPS}
    return {"method": "layerwise"}


def timed(graph, **kw) -> tuple[float, float, object]:
    import jax

    from jaxflow.signed.frustration import frustration

    t = time.perf_counter()
    res = jax.block_until_ready(frustration(graph, key=jax.random.key(0), bound=False, **kw))
    return float(res.normalized), time.perf_counter() - t, res


def dwave_sa(graph) -> float | None:
    """dwave-samplers' simulated annealing, 8 reads × 10,000 sweeps, scored by `gauge_frustration`."""
    try:
        from dwave.samplers import SimulatedAnnealingSampler
    except ImportError:
        return None
    from peers import to_bqm

    from jaxflow.signed import gauge_frustration

    bqm = to_bqm(graph, graph.to_coo())
    ss = SimulatedAnnealingSampler().sample(bqm, num_reads=8, num_sweeps=10_000, seed=0)
    s = np.empty(graph.num_nodes)
    s[np.asarray(ss.variables, int)] = ss.record.sample[np.argmin(ss.record.energy)]
    return float(gauge_frustration(graph, graph.unflatten(s))) / float(graph.abs_sum())


def measure(family: str, name: str, graph, recorded: float | None) -> dict:
    from jaxflow.signed.estimators import default_restarts, ladder_batch

    edges = graph.num_edges()
    value, cold, _ = timed(graph)
    value, warm, res = timed(graph)
    rungs = [list(r) for r in res.settings.rungs]
    old, old_seconds, _ = timed(graph, **previous_default(graph))
    old, old_seconds, _ = timed(graph, **previous_default(graph))
    restarts, sweeps = res.settings.rungs[-1]
    batch = ladder_batch(graph, res.settings)
    candidates = {
        "default": value,
        "previous default": old,
        "anneal 10x": timed(
            graph, method="anneal", restarts=10 * restarts, anneal_steps=sweeps, batch_size=batch
        )[0],
        "layerwise 10x": timed(graph, method="layerwise", restarts=10 * default_restarts(graph, "layerwise"))[
            0
        ],
    }
    if edges <= SA_MAX_EDGES:
        candidates["dwave SA 8x10000"] = dwave_sa(graph)
    if recorded is not None:
        candidates["peers record"] = recorded
    candidates = {k: v for k, v in candidates.items() if v is not None}
    best = min(candidates.values())
    row = {
        "set": family,
        "graph": name,
        "nodes": graph.num_nodes,
        "edges": edges,
        "default": value,
        "default_cold_seconds": cold,
        "default_warm_seconds": warm,
        "rungs": rungs,
        "rung_values": (np.asarray(res.rung_values) / float(res.total)).tolist(),
        "previous_default": old,
        "previous_default_warm_seconds": old_seconds,
        "candidates": candidates,
        "best_known": best,
        "best_by": min(candidates, key=candidates.get),
        "default_excess": value / best - 1,
        "previous_excess": old / best - 1,
    }
    print(
        f"{name}: default {value:.5f} ({row['default_excess']:+.2%}, cold {cold:.1f} s, warm {warm:.2f} s, "
        f"{len(rungs)} rungs to {rungs[-1]}); previous {old:.5f} ({row['previous_excess']:+.2%}, "
        f"{old_seconds:.2f} s); best {best:.5f} by {row['best_by']}",
        flush=True,
    )
    return row


def markdown(record: dict) -> str:
    lines = [
        f"Default estimator against the best known value ({record['set']} set), "
        f"{record['machine']['date']} on {record['machine']['cpu']} ({record['machine']['cores']} cores).",
        "",
        "| set | graph | edges | default: excess | cold s | warm s | rungs | previous: excess | warm s "
        "| best by |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["rows"]:
        last = "×".join(map(str, r["rungs"][-1]))
        lines.append(
            f"| {r['set']} | {r['graph']} | {r['edges']:,} | {r['default_excess']:+.2%} | "
            f"{r['default_cold_seconds']:.1f} | {r['default_warm_seconds']:.2f} | "
            f"{len(r['rungs'])} to {last} | "
            f"{r['previous_excess']:+.2%} | {r['previous_default_warm_seconds']:.2f} | {r['best_by']} |"
        )
    ex = [r["default_excess"] for r in record["rows"]]
    old = [r["previous_excess"] for r in record["rows"]]
    lines += ["", f"Default: mean excess {np.mean(ex):+.3%}, worst {max(ex):+.3%}; previous default: "
              f"mean {np.mean(old):+.3%}, worst {max(old):+.3%}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", choices=("tuning", "validation"), default="tuning")
    p.add_argument("--dense", type=int, default=20, help="dense graphs of family (a) in the tuning set")
    p.add_argument("--wheels", type=Path, default=None, help="a folder of the census packages' wheels")
    p.add_argument(
        "--side", type=int, default=None, help="validation: models of dynamic size at side² instead"
    )
    p.add_argument("--only", nargs="*", default=None, help="validation: model names (or parts) to run")
    args = p.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    record = {"set": args.set, "machine": machine_info(), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        if args.set == "tuning":
            graphs = tuning_graphs(args.dense)
        else:
            graphs = validation_graphs(args.wheels, Path(tmp), args.side)
            graphs = [g for g in graphs if not args.only or any(o in g[1] for o in args.only)]
            earlier = record_path(f"default-quality-{args.set}")
            if args.only and earlier.exists():  # today's rows of the other models stay
                names = {g[1] for g in graphs}
                rows = json.loads(earlier.read_text())["rows"]
                record["rows"] = [r for r in rows if r["graph"] not in names]
        for g in graphs:  # the record is written after each graph: a long run keeps what it did
            record["rows"].append(measure(*g))
            path = write_record(f"default-quality-{args.set}", record, quick=False)
            path.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
