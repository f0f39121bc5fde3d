"""The quadratic loss, its negative gradient (on the weights and on `A`), and the runs that follow it.

`gradient_flow` integrates `dW_i/dt = −∂L/∂W_i` with Diffrax; `gradient_descent` takes Optax steps.
Both return a `Trajectory` of reductions saved along the way (loss, singular values of
`W = W_h ⋯ W_1`, drift of the conserved blocks `C_i`), never the full path of weights.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import optimistix as optx

from .._checks import check_array, check_positive, is_traced
from .._types import Array, Bool, Float, Int, Scalar
from .network import DeepLinearNetwork, layer_offsets
from .task import Task


def end_to_end_loss(W: Float[Array, "d_h d_0"], task: Task) -> Scalar:
    """`L(W) = ½ tr Σ_yy − ⟨Σ_yx, W⟩ + ½ tr(W Σ_xx Wᵀ)`."""
    return 0.5 * task.trace_yy - jnp.vdot(task.sigma_yx, W) + 0.5 * jnp.vdot(W @ task.sigma_xx, W)


def loss(net: DeepLinearNetwork, task: Task) -> Scalar:
    """The loss of the network's end-to-end map `W = W_h ⋯ W_1`."""
    return end_to_end_loss(net.end_to_end(), task)


def residual(W: Float[Array, "d_h d_0"], task: Task) -> Float[Array, "d_h d_0"]:
    """`−∂L/∂W = Σ_yx − W Σ_xx`."""
    return task.sigma_yx - W @ task.sigma_xx


def vector_field(net: DeepLinearNetwork, task: Task) -> DeepLinearNetwork:
    """`−∇L` blockwise: `−∂L/∂W_i = (W_h⋯W_{i+1})ᵀ (Σ_yx − W Σ_xx) (W_{i−1}⋯W_1)ᵀ`.

    Forward prefix products `P_i = W_i ⋯ W_1`, then the residual is carried back through
    `B_h = R`, `B_{i−1} = W_iᵀ B_i`, and `−∂L/∂W_i = B_i P_{i−1}ᵀ`: `3(h−1)` matrix products.
    """
    ws = net.weights
    prefix = [ws[0]]  # prefix[i] = W_{i+1} ⋯ W_1
    for w in ws[1:-1]:
        prefix.append(w @ prefix[-1])
    back = residual(ws[-1] @ prefix[-1] if len(ws) > 1 else ws[0], task)
    grads = []
    for i in range(len(ws) - 1, 0, -1):
        grads.append(back @ prefix[i - 1].T)
        back = ws[i].T @ back
    grads.append(back)
    return DeepLinearNetwork(tuple(reversed(grads)))


def _power(A, k: int):
    out = A
    for _ in range(k - 1):
        out = out @ A
    return out


def _embed(block, widths, row_layer: int, col_layer: int, dtype):
    off = layer_offsets(widths)
    M = jnp.zeros((off[-1], off[-1]), dtype)
    return M.at[off[row_layer] : off[row_layer + 1], off[col_layer] : off[col_layer + 1]].set(block)


def loss_adjacency(A: Float[Array, "n n"], widths, task: Task) -> Scalar:
    """`L(A) = ½ tr Σ_yy − ⟨E, A^h⟩ + ½ tr(A^h S A^hᵀ)`, `E = blk_{h,0}(Σ_yx)`, `S = blk_{0,0}(Σ_xx)`.

    For a whitened task this is `½‖E − A^h‖²_F + const`.
    """
    h = len(widths) - 1
    E = _embed(task.sigma_yx, widths, h, 0, A.dtype)
    S = _embed(task.sigma_xx, widths, 0, 0, A.dtype)
    Ah = _power(A, h)
    return 0.5 * task.trace_yy - jnp.vdot(E, Ah) + 0.5 * jnp.vdot(Ah @ S, Ah)


def vector_field_adjacency(A: Float[Array, "n n"], widths, task: Task) -> Float[Array, "n n"]:
    """`dA/dt = Σ_{j=1..h} (A^{h−j})ᵀ (E − A^h S) (A^{j−1})ᵀ` (block sub-diagonal)."""
    h = len(widths) - 1
    n = A.shape[0]
    E = _embed(task.sigma_yx, widths, h, 0, A.dtype)
    S = _embed(task.sigma_xx, widths, 0, 0, A.dtype)
    powers = [jnp.eye(n, dtype=A.dtype)]
    for _ in range(h):
        powers.append(powers[-1] @ A)
    M = E - powers[h] @ S
    return sum(powers[h - j].T @ M @ powers[j - 1].T for j in range(1, h + 1))


def _field(t, weights, task: Task):
    return vector_field(DeepLinearNetwork(weights), task).weights


def gradient_norm(weights, task: Task) -> Scalar:
    """`‖∇L‖` over all weights (the vector field's norm)."""
    return jnp.sqrt(sum(jnp.vdot(g, g) for g in _field(None, weights, task)))


_SAVE_Y = diffrax.SubSaveAt(t1=True).fn  # Diffrax's default: save the state
_is_sub = lambda x: isinstance(x, diffrax.SubSaveAt)


class _FlowStepper(diffrax.AbstractAdaptiveSolver, diffrax.AbstractWrappedSolver):
    """Steps the state `(w, g)` with `solver` (the field leaves `g` alone) and sets `g = ‖∇L(w₁)‖` at
    each step's end, so a stop test at `gtol` reads a number instead of evaluating the field again.

    An explicit FSAL Runge–Kutta solver (Tsit5, Dopri5, Dopri8, Bosh3) is stepped here from its
    Butcher tableau with the stages unrolled: one fused program per step instead of Diffrax's loop
    over stages (~30% less time per step for small networks on CPU); its last stage is `−∇L(w₁)`,
    carried to the next step. Any other solver takes its own step, plus one field evaluation for `g`.
    """

    solver: diffrax.AbstractSolver

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):  # pyright: ignore
        return self.solver.interpolation_cls

    @property
    def scan_kind(self):  # read by Diffrax's forward-mode adjoints
        return getattr(self.solver, "scan_kind", None)

    @property
    def _unrolled(self) -> bool:
        return isinstance(self.solver, diffrax.AbstractERK) and self.solver.tableau.fsal

    def order(self, terms):
        return self.solver.order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args):
        if self._unrolled:
            return terms.vf(t0, y0, args)[0]
        return self.solver.init(terms, t0, t1, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        norm = lambda f: jnp.linalg.norm(jax.lax.stop_gradient(f))  # a diagnostic, not differentiated
        if not self._unrolled:
            y1, error, dense, state, result = self.solver.step(
                terms, t0, t1, y0, args, solver_state, made_jump
            )
            return (y1[0], norm(terms.vf(t1, y1, args)[0])), error, dense, state, result
        # `made_jump` never holds: the flow is autonomous and `solve` sets no jump times.
        tableau, (w0, g0), dt = self.solver.tableau, y0, t1 - t0
        fs = [solver_state]
        for a, c in zip(tableau.a_lower, tableau.c):
            w = w0 + dt * sum(float(a_j) * f for a_j, f in zip(a, fs) if a_j != 0)
            fs.append(terms.vf(t0 + float(c) * dt, (w, g0), args)[0])
        # FSAL: the last stage point is the solution `w₁` and its stage is the field there.
        error = dt * sum(float(b) * f for b, f in zip(tableau.b_error, fs) if b != 0)
        k = (dt * jnp.stack(fs), jnp.zeros((len(fs),), g0.dtype))  # stage increments, as Diffrax's
        dense = dict(y0=y0, y1=(w, g0), k=k)
        return (w, norm(fs[-1])), (error, jnp.zeros_like(g0)), dense, fs[-1], diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return self.solver.func(terms, t0, y0, args)


def _reading_weights(saveat: diffrax.SaveAt, unravel) -> diffrax.SaveAt:
    """`saveat` with every custom `fn` given the weights instead of the state `(w, g)`."""

    def wrap(sub: diffrax.SubSaveAt) -> diffrax.SubSaveAt:
        if sub.fn is _SAVE_Y:  # plain saves stay plain (BacksolveAdjoint needs them); see `solve`
            return sub
        fn = sub.fn
        return diffrax.SubSaveAt(
            t0=sub.t0, t1=sub.t1, ts=sub.ts, steps=sub.steps, fn=lambda t, y, args: fn(t, unravel(y[0]), args)
        )

    return diffrax.SaveAt(subs=jax.tree.map(wrap, saveat.subs, is_leaf=_is_sub))


def solve(
    net: DeepLinearNetwork,
    task: Task,
    t1,
    *,
    solver=None,
    rtol=1e-8,
    atol=1e-8,
    saveat=None,
    gtol=None,
    dt0=None,
    max_steps: int = 100_000,
    throw: bool = True,
    adjoint=None,
):
    """Integrate `dW_i/dt = −∂L/∂W_i` from `net` over `[0, t1]` with Diffrax.

    `gtol` (optional) stops at the first time with `‖∇L‖ < gtol` through a Diffrax event.
    Returns the raw `diffrax.Solution`, whose saved values (`saveat`'s `fn`s, default the
    weights) are functions of the tuple of weights. Pass `rtol`, `atol`, `t1`, `gtol` as arrays
    to avoid retracing when they change.
    """
    # The solver sees one flat vector `w` (its per-step arithmetic is then a few fused loops, not a
    # few per weight matrix: ~30% of a step on CPU for small networks) and a scalar `g`, which
    # `_FlowStepper` keeps at `‖∇L(w)‖` (saving the stop test one field evaluation of the 7 a Tsit5
    # step would make).
    w0, unravel = jax.flatten_util.ravel_pytree(net.weights)

    def field(t, y, task):
        return jax.flatten_util.ravel_pytree(_field(t, unravel(y[0]), task))[0], jnp.zeros_like(y[1])

    solver = diffrax.Tsit5() if solver is None else solver
    g0, event = gradient_norm(net.weights, task), None
    if isinstance(adjoint, diffrax.BacksolveAdjoint):  # it steps an augmented state with `solver`
        if gtol is not None:
            raise ValueError("gtol (a stop event) cannot be combined with diffrax.BacksolveAdjoint")
    else:
        solver = _FlowStepper(solver)
    if gtol is not None:
        event = diffrax.Event(lambda t, y, args, **kw: y[1] < gtol)
    saveat = _reading_weights(diffrax.SaveAt(t1=True) if saveat is None else saveat, unravel)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        solver,
        t0=0.0,
        t1=t1,
        dt0=dt0,
        y0=(w0, g0),
        args=task,
        saveat=saveat,
        # A PI controller (Diffrax's advice for stiff problems): the flow's steps sit at the
        # explicit stability limit once modes are learnt, and PI rejects ~2.5x fewer of them.
        # The error norm is over `w` alone: `g` is bookkeeping, not part of the solution.
        stepsize_controller=diffrax.PIDController(
            rtol=rtol, atol=atol, pcoeff=0.3, icoeff=0.3, norm=lambda error: optx.rms_norm(error[0])
        ),
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        event=event,
        max_steps=max_steps,
        throw=throw,
    )
    weights = lambda sub, ys: jax.vmap(unravel)(ys[0]) if sub.fn is _SAVE_Y else ys
    return eqx.tree_at(lambda s: s.ys, sol, jax.tree.map(weights, saveat.subs, sol.ys, is_leaf=_is_sub))


def conservation_drift(net: DeepLinearNetwork, initial: DeepLinearNetwork) -> Scalar:
    """`max_i ‖C_i − C_i⁰‖_F / (‖W_i‖²_F + ‖W_{i+1}‖²_F)`: how far the conserved blocks of `net`
    moved from those of `initial`, relative to the size of their two terms (0 for depth 1)."""
    ws = net.weights
    drifts = []
    for i, (c, c0) in enumerate(zip(net.conserved(), initial.conserved())):
        size = jnp.vdot(ws[i], ws[i]) + jnp.vdot(ws[i + 1], ws[i + 1])
        drifts.append(jnp.linalg.norm(c - c0) / jnp.where(size > 0, size, 1))
    return jnp.max(jnp.stack(drifts)) if drifts else jnp.zeros((), ws[0].dtype)


class FlowStats(eqx.Module):
    """How a run ended: steps taken, the time reached, `‖∇L‖` there, `converged` (`‖∇L‖ < gtol`)
    and `successful` (no solver failure and a finite end state)."""

    num_steps: Int[Array, ""]
    t_final: Scalar
    grad_norm: Scalar
    converged: Bool[Array, ""]
    successful: Bool[Array, ""]


class Trajectory(eqx.Module):
    """Reductions of a run saved at times `ts`: loss `L`, singular values of `W = W_h ⋯ W_1`
    (descending) and `conservation_drift` against the initial network.

    `reached[k]` is false for save times after the run stopped (at convergence, or on failure
    with `throw=False`); there every field holds its value at `stats.t_final`. `final` is the
    network at `stats.t_final`.
    """

    ts: Float[Array, " T"]
    losses: Float[Array, " T"]
    singular_values: Float[Array, "T r"]
    conservation_drift: Float[Array, " T"]
    reached: Bool[Array, " T"]
    final: DeepLinearNetwork
    stats: FlowStats


class _Observe(eqx.Module):
    """The reductions saved along a run, as a Diffrax `SaveAt(fn=...)`."""

    initial: DeepLinearNetwork

    def __call__(self, t, weights, task: Task):
        net = DeepLinearNetwork(weights)
        W = net.end_to_end()
        # A diagnostic, not differentiated: its norm has no derivative where the drift is 0.
        drift = conservation_drift(jax.lax.stop_gradient(net), jax.lax.stop_gradient(self.initial))
        return end_to_end_loss(W, task), jnp.linalg.svd(W, compute_uv=False), drift


def _stats(num_steps, t_final, final: DeepLinearNetwork, task: Task, gtol, solver_ok) -> FlowStats:
    g = gradient_norm(final.weights, task)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(w)) for w in final.weights]))
    return FlowStats(num_steps, t_final, g, g < gtol, solver_ok & finite)


@eqx.filter_jit
def _gradient_flow(net, task, t1, ts, rtol, atol, gtol, solver, stop, max_steps, throw) -> Trajectory:
    observe = _Observe(net)
    saveat = diffrax.SaveAt(subs=(diffrax.SubSaveAt(ts=ts, fn=observe), diffrax.SubSaveAt(t1=True)))
    sol = solve(
        net,
        task,
        t1,
        solver=solver,
        rtol=rtol,
        atol=atol,
        saveat=saveat,
        gtol=gtol if stop else None,
        max_steps=max_steps,
        throw=throw,
    )
    (saved_ts, t_end), (saved, y_end) = sol.ts, sol.ys
    final = DeepLinearNetwork(tuple(w[0] for w in y_end))
    reached = jnp.isfinite(saved_ts)  # Diffrax leaves save slots after a stop at inf
    held = observe(t_end[0], final.weights, task)
    losses, svals, drift = jax.tree.map(
        lambda a, b: jnp.where(reached.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), saved, held
    )
    stats = _stats(sol.stats["num_steps"], t_end[0], final, task, gtol, diffrax.is_okay(sol.result))
    return Trajectory(ts, losses, svals, drift, reached, final, stats)


def gradient_flow(
    net: DeepLinearNetwork,
    task: Task,
    t1,
    *,
    solver: diffrax.AbstractSolver | None = None,
    rtol=1e-8,
    atol=1e-8,
    saveat: int | Float[Array, " T"] | None = None,
    stop_at_convergence: bool = False,
    gtol=1e-6,
    max_steps: int = 100_000,
    throw: bool = True,
) -> Trajectory:
    """Integrate `dW_i/dt = −∂L/∂W_i` from `net` over `[0, t1]` (Diffrax, `Tsit5` by default).

    `saveat`: the number of equally spaced save times in `[0, t1]` (default 101) or an array of
    times. With `stop_at_convergence` the run stops at the end of the first step with
    `‖∇L‖ < gtol` (a Diffrax event), and later save times hold the final values (see
    `Trajectory.reached`); saddles have small gradients too, and near an attractor the explicit
    solver hovers ~`atol` away, so keep `gtol` well above `atol`. `throw=False` reports a failed run in
    `stats.successful` instead of raising. JIT-compiled; composes with `jax.jit`, `jax.vmap` and
    `jax.grad` (through `RecursiveCheckpointAdjoint`).
    """
    _check_net_task(net, task)
    dtype = net.weights[0].dtype
    if solver is not None and not isinstance(solver, diffrax.AbstractSolver):
        raise ValueError(f"solver must be a diffrax solver such as diffrax.Tsit5(), got {solver!r}")
    t1 = jnp.asarray(check_positive(t1, "t1"), dtype)
    tols = [
        jnp.asarray(check_positive(v, k), dtype) for k, v in (("rtol", rtol), ("atol", atol), ("gtol", gtol))
    ]
    _check_count(max_steps, "max_steps")
    ts = _save_times(101 if saveat is None else saveat, t1)
    return _gradient_flow(net, task, t1, ts, *tols, solver, bool(stop_at_convergence), max_steps, bool(throw))


@eqx.filter_jit
def _gradient_descent(net, task, learning_rate, gtol, steps, save_every, optimizer) -> Trajectory:
    opt = optimizer(learning_rate)
    observe = _Observe(net)

    def step(carry, _):
        weights, state = carry
        grads = jax.tree.map(jnp.negative, _field(None, weights, task))
        updates, state = opt.update(grads, state, weights)
        return (optax.apply_updates(weights, updates), state), None

    def chunk(carry, _):
        carry, _ = jax.lax.scan(step, carry, length=save_every)
        return carry, observe(None, carry[0], task)

    (weights, _), saved = jax.lax.scan(
        chunk, (net.weights, opt.init(net.weights)), length=steps // save_every
    )
    first = observe(None, net.weights, task)
    losses, svals, drift = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, saved)
    ts = learning_rate * jnp.arange(0, steps + 1, save_every, dtype=learning_rate.dtype)
    final = DeepLinearNetwork(weights)
    stats = _stats(jnp.asarray(steps), ts[-1], final, task, gtol, jnp.asarray(True))
    return Trajectory(ts, losses, svals, drift, jnp.ones(ts.shape, bool), final, stats)


def gradient_descent(
    net: DeepLinearNetwork,
    task: Task,
    learning_rate,
    steps: int,
    optimizer: Callable[..., optax.GradientTransformation] | None = None,
    *,
    save_every: int = 1,
    gtol=1e-6,
) -> Trajectory:
    """`steps` discrete steps `W_i ← W_i − η ∂L/∂W_i` (or those of `optimizer(η)`, an Optax
    factory such as `optax.adam`; default `optax.sgd`), saved every `save_every` steps at the
    flow-time `t = kη`, so that it compares with `gradient_flow` (`ts`, `losses`, … as there).
    """
    _check_net_task(net, task)
    dtype = net.weights[0].dtype
    learning_rate = jnp.asarray(check_positive(learning_rate, "learning_rate"), dtype)
    gtol = jnp.asarray(check_positive(gtol, "gtol"), dtype)
    _check_count(steps, "steps")
    _check_count(save_every, "save_every")
    if steps % save_every:
        raise ValueError(f"save_every must divide steps, got steps={steps}, save_every={save_every}")
    optimizer = optax.sgd if optimizer is None else optimizer
    if not callable(optimizer):
        raise ValueError(
            "optimizer must be an Optax factory taking the learning rate (e.g. optax.adam or "
            f"functools.partial(optax.sgd, momentum=0.9)), got {optimizer!r}"
        )
    return _gradient_descent(net, task, learning_rate, gtol, steps, save_every, optimizer)


def _check_net_task(net, task) -> None:
    if not isinstance(net, DeepLinearNetwork):
        raise ValueError(f"net must be a DeepLinearNetwork, got {type(net).__name__}")
    if not isinstance(task, Task):
        raise ValueError(f"task must be a Task, got {type(task).__name__}")
    if net.depth == 0:
        raise ValueError("net has depth 0 (no weights); a network needs at least one layer W_1")
    for i, w in enumerate(net.weights):
        check_array(w, f"net.weights[{i}]", ndim=2)
    check_array(task.sigma_yx, "task.sigma_yx")
    check_array(task.sigma_xx, "task.sigma_xx")
    if (net.widths[0], net.widths[-1]) != (task.d_in, task.d_out):
        raise ValueError(
            f"net maps d_0 = {net.widths[0]} -> d_h = {net.widths[-1]} (widths {net.widths}) but "
            f"task maps d_in = {task.d_in} -> d_out = {task.d_out}"
        )
    dtypes = {jnp.dtype(a.dtype) for a in (*net.weights, task.sigma_xx, task.sigma_yx)}
    if len(dtypes) > 1 or not jnp.issubdtype(next(iter(dtypes)), jnp.floating):
        raise ValueError(f"net and task must share one floating dtype, got {sorted(map(str, dtypes))}")


def _check_count(n, name: str) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")


def _save_times(saveat, t1) -> Float[Array, " T"]:
    if isinstance(saveat, (int, np.integer)) and not isinstance(saveat, bool):
        if saveat < 2:
            raise ValueError(f"saveat as a count must be >= 2 (times 0 and t1 at least), got {saveat}")
        return jnp.linspace(0, t1, int(saveat), dtype=t1.dtype)
    check_array(saveat, "saveat", ndim=1)
    if not is_traced(saveat):
        ts = np.asarray(saveat, float)
        if ts.size == 0 or ts[0] < 0 or np.any(np.diff(ts) < 0):
            raise ValueError(f"saveat must be non-empty, non-decreasing and >= 0, got {ts.tolist()}")
        if not is_traced(t1) and ts[-1] > float(t1):
            raise ValueError(f"saveat times must lie in [0, t1 = {float(t1)}], got a last time {ts[-1]}")
    return jnp.asarray(saveat, t1.dtype)
