"""`per_instance`: a function of one immutable object (a graph, a block), cached per object."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def per_instance(fn: Callable[[object], T]) -> Callable[[object], T]:
    """`fn(obj)` computed once per live `obj` (by identity; the entry leaves with `obj`). For pure
    host-side functions of immutable objects, e.g. an Equinox module's edge count, asked for on
    every call of an estimator."""
    cache: dict[int, tuple[weakref.ref, T]] = {}

    @functools.wraps(fn)
    def cached(obj):
        key = id(obj)
        hit = cache.get(key)
        if hit is not None and hit[0]() is obj:
            return hit[1]
        value = fn(obj)
        cache[key] = (weakref.ref(obj, lambda _: cache.pop(key, None)), value)
        return value

    cached.cache = cache  # (the entries by `id`, for inspection)
    return cached
