"""The runs that follow `−∇L`: `gradient_flow` (Diffrax), `gradient_descent` (Optax), `solve`.

Both drivers return a `Trajectory` of reductions saved along the way (loss, singular values of
`W = W_h ⋯ W_1`, drift of the conserved blocks `C_i`), never the full path of weights. The loss
and field are in `objective`; the Diffrax solver wrapper is in `_stepper`.
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

from .._checks import InputError, check_array, check_count, check_positive, is_traced
from .._types import Array, ArrayLike, Bool, Float, Int, Scalar
from ._stepper import FlowStepper, reading_weights, saved_weights
from .network import DeepLinearNetwork, check_network
from .objective import conservation_drift, end_to_end_loss, gradient_norm, weights_field
from .task import Task


def _field(t, weights, task: Task):
    """The flow's Diffrax vector field `(t, (W_1, …, W_h), task) ↦ (−∂L/∂W_i)_i`."""
    return weights_field(weights, task)


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
    # `FlowStepper` keeps at `‖∇L(w)‖` (saving the stop test one field evaluation of the 7 a Tsit5
    # step would make).
    w0, unravel = jax.flatten_util.ravel_pytree(net.weights)

    def field(t, y, task):
        return jax.flatten_util.ravel_pytree(_field(t, unravel(y[0]), task))[0], jnp.zeros_like(y[1])

    solver = diffrax.Tsit5() if solver is None else solver
    g0, event = gradient_norm(net.weights, task), None
    if isinstance(adjoint, diffrax.BacksolveAdjoint):  # it steps an augmented state with `solver`
        if gtol is not None:
            raise InputError("gtol (a stop event) cannot be combined with diffrax.BacksolveAdjoint")
    else:
        solver = FlowStepper(solver)
    if gtol is not None:
        event = diffrax.Event(lambda t, y, args, **kw: y[1] < gtol)
    saveat = reading_weights(diffrax.SaveAt(t1=True) if saveat is None else saveat, unravel)
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
    return eqx.tree_at(lambda s: s.ys, sol, saved_weights(saveat, sol.ys, unravel))


def hold_after_stop(saved_ts: Float[Array, " T"], saved, end) -> tuple[Bool[Array, " T"], object]:
    """`(reached, held)`: saved values with the slots after a stop holding the values at the stop.

    Diffrax leaves the save times after an early stop (an event, or a failure with `throw=False`)
    at `inf`; there `reached` is false and each leaf of `saved` (leading axis `T`) takes the
    matching leaf of `end` (the values at the stop), broadcast over that axis.
    """
    reached = jnp.isfinite(saved_ts)
    hold = lambda a, b: jnp.where(reached.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
    return reached, jax.tree.map(hold, saved, end)


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
    reached, (losses, svals, drift) = hold_after_stop(saved_ts, saved, observe(t_end[0], final.weights, task))
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
    saveat: int | Float[ArrayLike, " T"] | None = None,
    stop_at_convergence: bool = False,
    gtol=1e-6,
    max_steps: int = 100_000,
    throw: bool = True,
) -> Trajectory:
    """Integrate `dW_i/dt = −∂L/∂W_i` from `net` over `[0, t1]` (Diffrax, `Tsit5` by default).

    JIT-compiled; composes with `jax.jit`, `jax.vmap` and `jax.grad` (through
    `RecursiveCheckpointAdjoint`).

    Args:
        net: the initial network `W_1 … W_h`; its dtype is the run's dtype.
        task: the `Task` whose loss `L` the flow descends (`d_0`, `d_h` as `net`'s).
        t1: the final time, `> 0`.
        solver: a Diffrax solver (default `diffrax.Tsit5()`).
        rtol: relative tolerance of the PI step-size controller.
        atol: absolute tolerance of the PI step-size controller.
        saveat: the number of equally spaced save times in `[0, t1]` (default 101) or an array of times.
        stop_at_convergence: stop at the end of the first step with `‖∇L‖ < gtol` (a Diffrax
            event); later save times hold the final values (see `Trajectory.reached`).
        gtol: the convergence threshold on `‖∇L‖`; saddles have small gradients too, and near an
            attractor the explicit solver hovers ~`atol` away, so keep it well above `atol`.
        max_steps: the most solver steps.
        throw: raise on a failed run; `False` reports it in `stats.successful` instead.
    """
    _check_net_task(net, task)
    dtype = net.weights[0].dtype
    if solver is not None and not isinstance(solver, diffrax.AbstractSolver):
        raise InputError(f"solver must be a diffrax solver such as diffrax.Tsit5(), got {solver!r}")
    t1 = jnp.asarray(check_positive(t1, "t1"), dtype)
    tols = [
        jnp.asarray(check_positive(v, k), dtype) for k, v in (("rtol", rtol), ("atol", atol), ("gtol", gtol))
    ]
    check_count(max_steps, "max_steps")
    ts = _save_times(101 if saveat is None else saveat, t1)
    return _gradient_flow(net, task, t1, ts, *tols, solver, bool(stop_at_convergence), max_steps, bool(throw))


@eqx.filter_jit
def _gradient_descent(net, task, learning_rate, gtol, steps, save_every, optimizer) -> Trajectory:
    opt = optimizer(learning_rate)
    observe = _Observe(net)

    def step(carry, _):
        weights, state = carry
        grads = jax.tree.map(jnp.negative, weights_field(weights, task))
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
    check_count(steps, "steps")
    check_count(save_every, "save_every")
    if steps % save_every:
        raise InputError(f"save_every must divide steps, got steps={steps}, save_every={save_every}")
    optimizer = optax.sgd if optimizer is None else optimizer
    if not callable(optimizer):
        raise InputError(
            "optimizer must be an Optax factory taking the learning rate (e.g. optax.adam or "
            f"functools.partial(optax.sgd, momentum=0.9)), got {optimizer!r}"
        )
    return _gradient_descent(net, task, learning_rate, gtol, steps, save_every, optimizer)


def _check_net_task(net, task) -> None:
    check_network(net)
    if not isinstance(task, Task):
        raise InputError(f"task must be a Task, got {type(task).__name__}")
    if net.depth == 0:
        raise InputError("net has depth 0 (no weights); a network needs at least one layer W_1")
    for i, w in enumerate(net.weights):
        check_array(w, f"net.weights[{i}]", ndim=2)
    check_array(task.sigma_yx, "task.sigma_yx")
    check_array(task.sigma_xx, "task.sigma_xx")
    if (net.widths[0], net.widths[-1]) != (task.d_in, task.d_out):
        raise InputError(
            f"net maps d_0 = {net.widths[0]} -> d_h = {net.widths[-1]} (widths {net.widths}) but "
            f"task maps d_in = {task.d_in} -> d_out = {task.d_out}"
        )
    dtypes = {jnp.dtype(a.dtype) for a in (*net.weights, task.sigma_xx, task.sigma_yx)}
    if len(dtypes) > 1 or not jnp.issubdtype(next(iter(dtypes)), jnp.floating):
        raise InputError(f"net and task must share one floating dtype, got {sorted(map(str, dtypes))}")


def _save_times(saveat, t1) -> Float[Array, " T"]:
    if isinstance(saveat, (int, np.integer)) and not isinstance(saveat, bool):  # a count, 0 and t1 included
        return jnp.linspace(0, t1, check_count(saveat, "saveat", minimum=2), dtype=t1.dtype)
    check_array(saveat, "saveat", ndim=1)
    if not is_traced(saveat):
        ts = np.asarray(saveat, float)
        if ts.size == 0 or ts[0] < 0 or np.any(np.diff(ts) < 0):
            raise InputError(f"saveat must be non-empty, non-decreasing and >= 0, got {ts.tolist()}")
        if not is_traced(t1) and ts[-1] > float(t1):
            raise InputError(f"saveat times must lie in [0, t1 = {float(t1)}], got a last time {ts[-1]}")
    return jnp.asarray(saveat, t1.dtype)
