"""The one module that touches Diffrax internals: a solver wrapper for the flow's state `(w, g)`.

Checked against diffrax 0.7.2 (the 0.7.x series). It relies on these internals, none of them
public API:

- the `AbstractAdaptiveSolver` / `AbstractWrappedSolver` interface (`term_structure`,
  `interpolation_cls`, `order`, `error_order`, `init`, `step`, `func`) and the `scan_kind`
  attribute read by Diffrax's forward-mode adjoints;
- an explicit Runge–Kutta solver's `tableau` (`a_lower`, `c`, `b_error`, `fsal`);
- the dense output of an ERK step, `dict(y0=, y1=, k=)` with `k` the stacked stage increments
  `dt·f_j`, as Diffrax's interpolation classes read it;
- `SubSaveAt`'s default `fn` being one shared function (so identity tells a plain save).
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp

SAVE_Y = diffrax.SubSaveAt(t1=True).fn  # Diffrax's default: save the state


def is_sub(x) -> bool:
    """Whether `x` is a `diffrax.SubSaveAt` (a leaf of `SaveAt.subs`)."""
    return isinstance(x, diffrax.SubSaveAt)


class FlowStepper(diffrax.AbstractAdaptiveSolver, diffrax.AbstractWrappedSolver):
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


def reading_weights(saveat: diffrax.SaveAt, unravel) -> diffrax.SaveAt:
    """`saveat` with every custom `fn` given the weights `unravel(w)` instead of the state `(w, g)`.

    Plain saves stay plain (`diffrax.BacksolveAdjoint` needs them); `saved_weights` unravels them.
    """

    def wrap(sub: diffrax.SubSaveAt) -> diffrax.SubSaveAt:
        if sub.fn is SAVE_Y:
            return sub
        fn = sub.fn
        return diffrax.SubSaveAt(
            t0=sub.t0, t1=sub.t1, ts=sub.ts, steps=sub.steps, fn=lambda t, y, args: fn(t, unravel(y[0]), args)
        )

    return diffrax.SaveAt(subs=jax.tree.map(wrap, saveat.subs, is_leaf=is_sub))


def saved_weights(saveat: diffrax.SaveAt, ys, unravel):
    """The saved values `ys` of a run with `reading_weights(saveat, unravel)`: plain saves unravelled
    to stacked tuples of weights, custom ones as their `fn` returned them."""
    weights = lambda sub, y: jax.vmap(unravel)(y[0]) if sub.fn is SAVE_Y else y
    return jax.tree.map(weights, saveat.subs, ys, is_leaf=is_sub)
