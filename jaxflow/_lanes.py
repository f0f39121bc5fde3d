"""Lanes: independent runs (a sweep's initializations, null samples, search chunks) split along
one axis over every device of every process, and their results gathered back to the host."""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def lanes_mesh() -> Mesh:
    """All devices of all processes along one axis, `"lanes"`."""
    return Mesh(np.array(jax.devices()), ("lanes",))


def put_lanes(data: np.ndarray, mesh: Mesh) -> jax.Array:
    """The host array `data` (the same on every process) split along its first axis over `mesh`."""
    return jax.make_array_from_callback(data.shape, NamedSharding(mesh, P("lanes")), lambda i: data[i])


def put_lane_keys(keys, rows: np.ndarray, mesh: Mesh) -> jax.Array:
    """The PRNG keys `keys[rows]` (typed or legacy, the same on every process) split over `mesh`."""
    typed = jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key)
    lanes = put_lanes(np.asarray(jax.random.key_data(keys) if typed else keys)[rows], mesh)
    return jax.random.wrap_key_data(lanes, impl=jax.random.key_impl(keys)) if typed else lanes


def to_host(tree):
    """A pytree of (possibly multi-process) sharded arrays as NumPy arrays on every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)
