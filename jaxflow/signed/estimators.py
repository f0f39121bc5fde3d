"""Frustration estimators as objects, as Diffrax's solvers are: each holds its effort, checks it
when it is made, and turns it into the search settings of a graph (`settings`), with the restarts
it holds at once (`in_flight`, for the memory guard) and its TOML form (`to_toml`,
`from_toml`). `frustration` and `null_model_frustration` take one; `as_estimator` is the shortcut
from a method name and its effort keywords.

The default, `Ladder`, decides its effort from its own evidence; `Layerwise`, `Anneal`, `Greedy`
and `Exact` are the methods by name. The defaults of each (`default_restarts`,
`default_anneal_steps`, `default_tol`, `default_survivors`, `structure`) and the ladder's rules
(`ladder_start`, `ladder_step`, `next_rung`, `idle`, `ladder_batch`, `rung_jobs`, `ladder_jobs`,
`rung_settings`) are written here once.
"""

from __future__ import annotations

import math
from typing import ClassVar, NamedTuple

import equinox as eqx

from .._checks import InputError, check_choice, check_count, check_positive
from .._memo import per_instance
from .._types import FloatLike
from .graph import SignedGraph

METHODS = ("auto", "ladder", "greedy", "layerwise", "anneal", "exact")
GREEDY_MAX_NODES = 8192  # the greedy baseline keeps the dense n×n field matrix A + Aᵀ
EXACT_MAX_EDGES = 5000
LARGE_GRAPH_EDGES = 10**7  # `default_tol`: graphs above this many edges stop at LARGE_GRAPH_TOL
LARGE_GRAPH_TOL = 1e-5
EXACT_TOLERANCE = 1e-9  # relative to Σ|a|: values this close to the bound count as proven optimal
RESTARTS = 64  # default restarts of every method but `"layerwise"`
MAX_SWEEPS = 1000  # default cap on sweeps (`"layerwise"`, `"anneal"`)
GREEDY_FLIPS_PER_NODE = 10  # `"greedy"`: default cap on flips, per node
LAYERWISE_NODE_STATES = 2**16  # `"layerwise"`: default restarts × nodes
LAYERWISE_RESTARTS = (8, 4096)  # `"layerwise"`: the default restarts lie in this range
SCREEN_FRACTION = 4  # `"layerwise"`: one restart in this many goes on past the screen by default
SCREEN_MIN_SURVIVORS = 64  # ... but at least this many (a screen pays off on large batches only)
ANNEAL_STEPS = 200  # `"anneal"`: default sweeps of the temperature schedule
ANNEAL_TEMPERATURES = (2.0, 0.1)  # `"anneal"`: default start and end temperatures (`_search._sweep_schedule`)
SPARSE_MAX_DENSITY = 0.5  # `structure`: graphs with at most this share of their node pairs joined …
SPARSE_MAX_IN_DEGREE = 8  # … and those of at most this mean in-degree are sparse:
SPARSE_RESTARTS = 16  # `"anneal"` on them: this many restarts …
SPARSE_ANNEAL_STEPS = 8000  # … over this many sweeps; the others (convolutions) are local:
LOCAL_ANNEAL_STEPS = 100  # `"anneal"` on them: this many sweeps, restarts as `"layerwise"`'s up to RESTARTS
LADDER_START_SWEEPS = 32  # `"ladder"`: sweeps of its first annealing rung; restarts `ladder_batch`
LADDER_BATCH = 64  # `"ladder"`: the most restarts of one annealing job
LADDER_MAX_RESTARTS = 64  # `"ladder"`: restarts of a rung at most (the default; `restarts=` sets it) …
LADDER_MAX_SWEEPS = 8192  # … and sweeps (the default; `anneal_steps=` sets it)
LADDER_TOL = 2e-3  # `"ladder"`: a rung that lowers the best value by at most this share of it is idle …
LADDER_PATIENCE = 2  # … and the ladder stops after this many idle rungs in a row


class SearchSettings(NamedTuple):
    """How a gauge was searched for (the effort, resolved for one graph), so null models can repeat
    it exactly."""

    method: str = "layerwise"
    restarts: int = RESTARTS
    max_iterations: int = MAX_SWEEPS
    tol: FloatLike = 0.0
    anneal_steps: int = ANNEAL_STEPS
    anneal_temperatures: tuple[float, float] = ANNEAL_TEMPERATURES
    batch_size: int | None = None
    survivors: int | None = None
    rungs: tuple[tuple[int, int], ...] = ()


def ladder_batch(graph: SignedGraph, settings: SearchSettings) -> int:
    """Restarts of one annealing job of `"ladder"`: `"layerwise"`'s node-state rule capped at
    `LADDER_BATCH` (`min(64, max(8, 2^16 // n))`: restarts run as one batch of products, far
    cheaper per restart than one at a time), at most `settings.restarts` and
    `settings.batch_size`."""
    low, _ = LAYERWISE_RESTARTS
    batch = min(LADDER_BATCH, max(low, LAYERWISE_NODE_STATES // graph.num_nodes), settings.restarts)
    return min(batch, settings.batch_size or batch)


def rung_jobs(rung: tuple[int, int], batch: int) -> list[tuple[int, int]]:
    """The jobs of a rung `(restarts, sweeps)`: `(0, restarts)`, one descent from `restarts`
    random gauges (`"layerwise"`, screened), when `sweeps` is 0; else `(sweeps, b)` for each batch
    `b` of `batch` restarts annealed over `sweeps` sweeps (restarts rounded up to whole batches).
    A rung that doubles the restarts of the last reuses its batches."""
    restarts, sweeps = rung
    if not sweeps:
        return [(0, restarts)]
    return [(sweeps, b) for b in range(-(-restarts // batch))]


def ladder_jobs(rungs, batch: int) -> tuple[list[tuple[int, int]], list[int]]:
    """The distinct jobs of `rungs` in the order first needed, and after each rung how many of
    them it has needed so far (the best value after rung `k` is the least over the first
    `ends[k]` jobs)."""
    jobs, ends = [], []
    for rung in rungs:
        jobs += [job for job in rung_jobs(rung, batch) if job not in jobs]
        ends.append(len(jobs))
    return jobs, ends


def rung_settings(settings: SearchSettings, rung: tuple[int, int]) -> SearchSettings:
    """The search of one `"ladder"` rung `(restarts, sweeps)`: `"layerwise"` from `restarts`
    random gauges when `sweeps` is 0, else `"anneal"` of `restarts` restarts over `sweeps`
    sweeps; stopping rule, temperatures and `batch_size` from the ladder's `settings`."""
    restarts, sweeps = rung
    return settings._replace(
        method="anneal" if sweeps else "layerwise",
        restarts=restarts,
        anneal_steps=sweeps or ANNEAL_STEPS,
        survivors=None if sweeps else default_survivors(restarts),
        rungs=(),
    )


def ladder_start(graph: SignedGraph, batch: int, max_sweeps: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The first two rungs `(restarts, sweeps)` of `"ladder"`: the `"layerwise"` default
    (`(default_restarts(graph, "layerwise"), 0)`), then `batch` restarts annealed over
    `min(LADDER_START_SWEEPS, max_sweeps)` sweeps."""
    return (default_restarts(graph, "layerwise"), 0), (batch, min(LADDER_START_SWEEPS, max_sweeps))


def ladder_step(rung: tuple[int, int], grow: str, max_restarts: int, max_sweeps: int):
    """The rung after `rung`: its sweeps (`grow="sweeps"`) or restarts (`"restarts"`) doubled, up
    to `max_sweeps` or `max_restarts`; `None` when that one is at its cap."""
    restarts, sweeps = rung
    if grow == "sweeps":
        return (restarts, min(2 * sweeps, max_sweeps)) if sweeps < max_sweeps else None
    return (min(2 * restarts, max_restarts), sweeps) if restarts < max_restarts else None


def next_rung(rung: tuple[int, int], grow: str, idle_rungs: int, max_restarts: int, max_sweeps: int):
    """The rung after the annealing rung `rung` and the effort it doubles: `grow`
    (`ladder_step`), the other one after an idle rung or where `grow` is at its cap; `None` once
    `idle_rungs`, the idle rungs in a row, reach `LADDER_PATIENCE`, or both are at their caps."""
    if idle_rungs >= LADDER_PATIENCE:
        return None, grow
    if idle_rungs:
        grow = _other(grow)
    step = ladder_step(rung, grow, max_restarts, max_sweeps)
    if step is None:  # this one is at its cap: the other
        grow = _other(grow)
        step = ladder_step(rung, grow, max_restarts, max_sweeps)
    return step, grow


def _other(grow: str) -> str:
    return "restarts" if grow == "sweeps" else "sweeps"


def idle(before: float, after: float) -> bool:
    """Whether a rung that moved the best value from `before` to `after` lowered it by at most
    `LADDER_TOL` of it."""
    return before - after <= LADDER_TOL * after


# ------------------------------------------------------------------ defaults and checks


@per_instance  # (host-side edge counts, asked for on every call)
def structure(graph: SignedGraph) -> str:
    """The kind of graph whose defaults `"anneal"` takes when asked for by name
    (`default_anneal_steps`, `default_restarts`), from its density (edges over its blocks' node
    pairs) and mean in-degree (edges per non-input node): `"dense"` (density above
    `SPARSE_MAX_DENSITY`: dense layers); `"large"` (the others past `LARGE_GRAPH_EDGES` edges);
    `"sparse"` (density and in-degree at most `SPARSE_MAX_DENSITY`, `SPARSE_MAX_IN_DEGREE`:
    pruned-network-like) or `"local"` (the rest: locally connected, as convolutions with
    `k²·C_in` in-edges per node). The default, `"ladder"`, does not use it."""
    slots = sum(math.prod(b.in_shape) * math.prod(b.out_shape) for b in graph.blocks)
    fed = graph.num_nodes - math.prod(graph.shapes[0])
    edges = graph.num_edges()
    if slots == 0 or fed <= 0 or edges > SPARSE_MAX_DENSITY * slots:
        return "dense"
    if edges > LARGE_GRAPH_EDGES:
        return "large"
    return "sparse" if edges <= SPARSE_MAX_IN_DEGREE * fed else "local"


def default_restarts(graph: SignedGraph, method: str) -> int:
    """The default restarts of `method`: for `"layerwise"` as many as fit `2^16` node-states
    (`min(4096, max(8, 2^16 // n))`), screened down to a quarter (`default_survivors`);
    `"anneal"`: `SPARSE_RESTARTS` on sparse graphs, the same node-state rule capped at `RESTARTS`
    on local ones, else `RESTARTS` (`structure`); `"auto"` and `"ladder"`: the most restarts of a
    rung, `LADDER_MAX_RESTARTS`; the others `RESTARTS`."""
    if method in ("auto", "ladder"):
        return LADDER_MAX_RESTARTS
    return _restarts(graph, method, structure(graph) if method == "anneal" else "dense")


def default_anneal_steps(graph: SignedGraph) -> int:
    """`"anneal"`'s default schedule: `SPARSE_ANNEAL_STEPS` sweeps on sparse graphs,
    `LOCAL_ANNEAL_STEPS` on local ones, else `ANNEAL_STEPS` (`structure`)."""
    return _anneal_steps(structure(graph))


def _anneal_steps(kind: str) -> int:
    return {"sparse": SPARSE_ANNEAL_STEPS, "local": LOCAL_ANNEAL_STEPS}.get(kind, ANNEAL_STEPS)


def _restarts(graph: SignedGraph, method: str, kind: str) -> int:
    low, high = LAYERWISE_RESTARTS
    if method == "anneal":
        if kind != "local":
            return SPARSE_RESTARTS if kind == "sparse" else RESTARTS
        high = RESTARTS
    elif method != "layerwise":
        return RESTARTS
    return int(min(high, max(low, LAYERWISE_NODE_STATES // graph.num_nodes)))


def default_tol(graph: SignedGraph) -> float:
    """The default stopping rule: `0` (sweep until nothing changes) for graphs of up to
    `LARGE_GRAPH_EDGES` (10^7) edges, `LARGE_GRAPH_TOL` (10^-5) above: stop once no restart gains
    more than `tol·Σ|a|` in a sweep. Past 10^7 edges the last sweeps to a fixed point lower `δ` by
    ~10^-5 of itself (a 1e7-edge MLP: 64 sweeps → 37; ResNet-18-shaped, 2.2e7 edges: 90 → 45;
    1.7e9 edges: ~300 → 53), far below the estimator's own gap to the best known value; below
    ~10^6 edges the rule changes nothing."""
    slots = sum(math.prod(b.in_shape) * math.prod(b.out_shape) for b in graph.blocks)
    if slots <= LARGE_GRAPH_EDGES:  # no more edges than node pairs: small, without counting them
        return 0.0
    return LARGE_GRAPH_TOL if graph.num_edges() > LARGE_GRAPH_EDGES else 0.0


def default_survivors(restarts: int) -> int:
    """`"layerwise"` restarts that go on past the screen by default: a quarter, at least 64 (a
    screen pays off on large batches; up to 64 restarts all descend)."""
    return min(restarts, max(SCREEN_MIN_SURVIVORS, restarts // SCREEN_FRACTION))


def _rungs(rungs) -> tuple[tuple[int, int], ...] | None:
    """A ladder's rungs as `(restarts >= 1, sweeps >= 0)` pairs, at least one (`None`: none given)."""
    if rungs is None:
        return None
    try:
        pairs = tuple((r, t) for r, t in rungs)
    except (TypeError, ValueError):
        raise InputError(f"rungs must be a sequence of (restarts, sweeps) pairs, got {rungs!r}") from None
    if not pairs:
        raise InputError("rungs must hold at least one (restarts, sweeps) pair")
    return tuple(
        (check_count(r, f"rungs[{k}] restarts"), check_count(t, f"rungs[{k}] sweeps", minimum=0))
        for k, (r, t) in enumerate(pairs)
    )


def _temperatures(t) -> tuple[float, float]:
    """Start and end temperatures, `start >= end > 0`."""
    try:
        t0, t1 = (float(x) for x in t)
    except (TypeError, ValueError):
        raise InputError(f"temperatures must be a pair (start, end), got {t!r}") from None
    if not (math.isfinite(t0) and math.isfinite(t1) and t0 >= t1 > 0):
        raise InputError(f"temperatures must satisfy start >= end > 0, got {t!r}")
    return t0, t1


# ------------------------------------------------------------------ the estimators


def _field(default=None):
    return eqx.field(default=default, static=True)


class Estimator(eqx.Module):
    """A frustration estimator and its effort. `settings(graph)` resolves the effort left unset to
    the defaults for `graph`."""

    name: ClassVar[str] = ""

    def settings(self, graph: SignedGraph) -> SearchSettings:
        """The search settings for `graph`."""
        raise NotImplementedError

    def in_flight(self, graph: SignedGraph) -> int:
        """The most restarts it holds at once on `graph` (its memory is this many gauges and fields)."""
        settings = self.settings(graph)
        return min(settings.restarts, settings.batch_size or settings.restarts)

    def to_toml(self) -> dict:
        """Its TOML table: `name` and every field that differs from the default."""
        fields = {f: getattr(self, f) for f in self.__dataclass_fields__}
        base = type(self)()
        return {"name": self.name} | {
            f: list(v) if isinstance(v, tuple) else v for f, v in fields.items() if v != getattr(base, f)
        }


def _common(tol, batch_size) -> None:
    if tol is not None:
        check_positive(tol, "tol", allow_zero=True)
    if batch_size is not None:
        check_count(batch_size, "batch_size")


class Ladder(Estimator):
    """The default: an effort ladder that decides from its own evidence. Rung 0 is the
    `"layerwise"` descent at its default restarts; rung 1 anneals `ladder_batch` restarts over
    `LADDER_START_SWEEPS` sweeps; each next rung doubles the sweeps while that lowers the best
    value, else the restarts (and back), up to `max_restarts` and `max_sweeps`, until
    `LADDER_PATIENCE` rungs in a row lower it by at most `LADDER_TOL` of it (`idle`). With
    `rungs`, it climbs exactly those `(restarts, sweeps)` (sweeps 0: the descent)."""

    name: ClassVar[str] = "ladder"
    max_restarts: int = _field(LADDER_MAX_RESTARTS)
    max_sweeps: int = _field(LADDER_MAX_SWEEPS)
    temperatures: tuple[float, float] = _field(ANNEAL_TEMPERATURES)
    rungs: tuple[tuple[int, int], ...] | None = _field()
    max_iterations: int = _field(MAX_SWEEPS)
    tol: FloatLike | None = _field()
    batch_size: int | None = _field()

    def __check_init__(self):
        check_count(self.max_restarts, "restarts")
        check_count(self.max_sweeps, "max_sweeps")
        check_count(self.max_iterations, "max_iterations")
        _temperatures(self.temperatures)
        _rungs(self.rungs)
        _common(self.tol, self.batch_size)

    def settings(self, graph: SignedGraph) -> SearchSettings:
        return SearchSettings(
            method="ladder",
            restarts=self.max_restarts,
            max_iterations=self.max_iterations,
            tol=default_tol(graph) if self.tol is None else self.tol,
            anneal_steps=self.max_sweeps,
            anneal_temperatures=_temperatures(self.temperatures),
            batch_size=self.batch_size,
            rungs=_rungs(self.rungs) or (),
        )

    def in_flight(self, graph: SignedGraph) -> int:
        settings = self.settings(graph)
        descent = default_restarts(graph, "layerwise")
        return max(min(descent, self.batch_size or descent), ladder_batch(graph, settings))


class Layerwise(Estimator):
    """Block-coordinate descent: every layer set to the sign of its local field `h = (A + Aᵀ)s`
    at once, sweeps until the stopping rule (`tol`), from `restarts` random gauges (default
    `default_restarts`), restart 0 from all-plus; after `SCREEN_SWEEPS` sweeps only the
    `survivors` lowest in `δ` go on (default `default_survivors`)."""

    name: ClassVar[str] = "layerwise"
    restarts: int | None = _field()
    survivors: int | None = _field()
    max_iterations: int = _field(MAX_SWEEPS)
    tol: FloatLike | None = _field()
    batch_size: int | None = _field()

    def __check_init__(self):
        for value, what in ((self.restarts, "restarts"), (self.survivors, "survivors")):
            if value is not None:
                check_count(value, what)
        check_count(self.max_iterations, "max_iterations")
        _common(self.tol, self.batch_size)

    def settings(self, graph: SignedGraph) -> SearchSettings:
        restarts = default_restarts(graph, "layerwise") if self.restarts is None else self.restarts
        survivors = default_survivors(restarts) if self.survivors is None else min(self.survivors, restarts)
        return SearchSettings(
            method="layerwise",
            restarts=restarts,
            max_iterations=self.max_iterations,
            tol=default_tol(graph) if self.tol is None else self.tol,
            batch_size=self.batch_size,
            survivors=survivors,
        )


class Anneal(Estimator):
    """Heat-bath annealing with the layer-parallel updates over `sweeps` sweeps (default
    `default_anneal_steps`), in float32, temperatures `temperatures` in units of the
    root-mean-square field of a random gauge `sqrt(2Σa²/n)`, then `Layerwise` descent; `restarts`
    default `default_restarts`."""

    name: ClassVar[str] = "anneal"
    restarts: int | None = _field()
    sweeps: int | None = _field()
    temperatures: tuple[float, float] = _field(ANNEAL_TEMPERATURES)
    max_iterations: int = _field(MAX_SWEEPS)
    tol: FloatLike | None = _field()
    batch_size: int | None = _field()

    def __check_init__(self):
        for value, what in ((self.restarts, "restarts"), (self.sweeps, "anneal_steps")):
            if value is not None:
                check_count(value, what)
        check_count(self.max_iterations, "max_iterations")
        _temperatures(self.temperatures)
        _common(self.tol, self.batch_size)

    def settings(self, graph: SignedGraph) -> SearchSettings:
        return SearchSettings(
            method="anneal",
            restarts=default_restarts(graph, "anneal") if self.restarts is None else self.restarts,
            max_iterations=self.max_iterations,
            tol=default_tol(graph) if self.tol is None else self.tol,
            anneal_steps=default_anneal_steps(graph) if self.sweeps is None else self.sweeps,
            anneal_temperatures=_temperatures(self.temperatures),
            batch_size=self.batch_size,
        )


class Greedy(Estimator):
    """The published greedy heuristic: flip the node whose row-plus-column sum `s_i h_i` is most
    negative until none is; dense, up to `GREEDY_MAX_NODES` nodes; at most `max_flips` flips
    (default `GREEDY_FLIPS_PER_NODE · n`)."""

    name: ClassVar[str] = "greedy"
    restarts: int = _field(RESTARTS)
    max_flips: int | None = _field()
    batch_size: int | None = _field()

    def __check_init__(self):
        check_count(self.restarts, "restarts")
        if self.max_flips is not None:
            check_count(self.max_flips, "max_iterations")
        _common(None, self.batch_size)

    def settings(self, graph: SignedGraph) -> SearchSettings:
        if graph.num_nodes > GREEDY_MAX_NODES:
            raise InputError(
                f'method="greedy" keeps the dense n×n matrix A + Aᵀ and takes up to {GREEDY_MAX_NODES} '
                f'nodes, this graph has {graph.num_nodes}; use method="layerwise"'
            )
        flips = GREEDY_FLIPS_PER_NODE * graph.num_nodes if self.max_flips is None else self.max_flips
        return SearchSettings(
            method="greedy", restarts=self.restarts, max_iterations=flips, batch_size=self.batch_size
        )


class Exact(Estimator):
    """The proven optimum, on graphs of up to `max_edges` edges: every gauge of a vertex cover
    `S` when `2^{|S|−1}·n <= 2^36` (and, with `time_limit`, what fits in it), the other nodes set
    to their best sign, else an integer program solved by HiGHS below the best gauge of
    `incumbent` (an `Anneal`), stopped at `time_limit` seconds if given."""

    name: ClassVar[str] = "exact"
    max_edges: int = _field(EXACT_MAX_EDGES)
    time_limit: FloatLike | None = _field()
    incumbent: Anneal = _field(Anneal())

    def __check_init__(self):
        check_count(self.max_edges, "max_edges")
        if self.time_limit is not None:
            check_positive(self.time_limit, "time_limit")

    def settings(self, graph: SignedGraph) -> SearchSettings:
        return self.incumbent.settings(graph)._replace(method="exact")


ESTIMATORS = {cls.name: cls for cls in (Ladder, Layerwise, Anneal, Greedy, Exact)}
"""Estimator name → class (`"auto"` is `Ladder`)."""

_COMMON = {"max_iterations": "max_iterations", "tol": "tol", "batch_size": "batch_size"}
_ANNEALING = {"anneal_steps": "sweeps", "anneal_temperatures": "temperatures"}
_SHORTCUTS = {  # `as_estimator`'s keywords → each estimator's fields
    "ladder": {"restarts": "max_restarts", "anneal_steps": "max_sweeps", "rungs": "rungs", **_COMMON}
    | {"anneal_temperatures": "temperatures"},
    "layerwise": {"restarts": "restarts", "survivors": "survivors", **_COMMON},
    "anneal": {"restarts": "restarts", **_ANNEALING, **_COMMON},
    "greedy": {"restarts": "restarts", "max_iterations": "max_flips", "batch_size": "batch_size"},
    "exact": {"max_edges": "max_edges", "time_limit": "time_limit"},
}
EFFORT_KEYWORDS = sorted({k for table in _SHORTCUTS.values() for k in table})
"""Every effort keyword `as_estimator` knows."""


def as_estimator(method: str = "auto", **effort) -> Estimator:
    """The estimator `method` (`METHODS`; `"auto"` is `Ladder`) with the effort keywords of
    `frustration`'s shortcut (`restarts`, `anneal_steps`, `anneal_temperatures`, `survivors`,
    `max_iterations`, `tol`, `batch_size`, `rungs`, `time_limit`, `max_edges`); `None` leaves a
    default. `"exact"` takes `restarts`, `anneal_steps` and the rest for its `Anneal` incumbent.

    Raises:
        InputError: an unknown method, or a keyword the method does not take.
    """
    check_choice(method, "method", METHODS)
    name = "ladder" if method == "auto" else method
    given = {k: v for k, v in effort.items() if v is not None}
    if name == "exact":
        own = {_SHORTCUTS["exact"][k]: given.pop(k) for k in list(given) if k in _SHORTCUTS["exact"]}
        return Exact(**own, incumbent=as_estimator("anneal", **given))
    fields = _SHORTCUTS[name]
    for k in given:
        if k not in fields:
            known = k in EFFORT_KEYWORDS
            why = f"applies to {_takers(k)} only" if known else "is not an effort keyword"
            raise InputError(f"{k} {why}, got method={method!r}")
    return ESTIMATORS[name](**{fields[k]: v for k, v in given.items()})


def _takers(keyword: str) -> str:
    names = [f'method="{n}"' for n, table in _SHORTCUTS.items() if keyword in table]
    return " or ".join(names)


def from_toml(value) -> Estimator:
    """An estimator from its TOML form: a method name, or a table `{name = "anneal", sweeps = 200,
    ...}` of an estimator's fields (lists for pairs).

    Raises:
        InputError: an unknown name or field.
    """
    if isinstance(value, str):
        return as_estimator(value)
    if not isinstance(value, dict) or "name" not in value:
        raise InputError(f'method must be a name or a table {{name = "...", ...}}, got {value!r}')
    fields = dict(value)
    name = fields.pop("name")
    name = "ladder" if check_choice(name, "method.name", METHODS) == "auto" else name
    cls = ESTIMATORS[name]
    unknown = sorted(set(fields) - set(cls.__dataclass_fields__))
    if unknown:
        known = ", ".join(cls.__dataclass_fields__)
        raise InputError(f"method.{unknown[0]}: unknown field of {cls.__name__} ({known})")
    tuples = {k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
              for k, v in fields.items()}  # fmt: skip
    return cls(**tuples)


def resolve_estimator(estimator, method: str | None, effort: dict) -> Estimator:
    """The estimator given (an `Estimator` or a name), or the one the shortcut `method` and
    `effort` name (`as_estimator`), default `Ladder()`.

    Raises:
        InputError: both given, or neither an estimator nor a name.
    """
    if estimator is None:
        return as_estimator(method or "auto", **effort)
    if method is not None or effort:
        raise InputError("give an estimator or method= with effort keywords, not both")
    if isinstance(estimator, str):
        return as_estimator(estimator)
    if not isinstance(estimator, Estimator):
        what = type(estimator).__name__
        raise InputError(f"estimator must be an Estimator (Ladder(), Anneal(), …), got {what}")
    return estimator
