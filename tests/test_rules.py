"""Each input rule is written once, in `jaxflow/_checks.py`: the package source holds no other copy
of a rule's test or of its message (a positive integer, a shape, layer widths, a SignedGraph, a PRNG
key, one of a few names). A new copy fails here; call the check instead (`check_count`, `check_shape`,
`check_widths`, `check_graph`, `check_key`, `check_choice`; in a config, `config.require`)."""

import re
from pathlib import Path

import pytest

import jaxflow
from jaxflow import InputError
from jaxflow._checks import check_choice, check_count, check_graph, check_key, check_shape, check_widths

PACKAGE = Path(jaxflow.__file__).parent

RULES = {
    "count": r"isinstance\(\w+, bool\) or not isinstance\(\w+, \(int, np\.integer\)\)"
    r"|must be (a positive integer|an integer >=)",
    "shape": r"positive integers[^\"]*got|must be a tuple of positive",
    "widths": r"widths d_0, \.\.\., d_h|two or more widths|positive layer widths",
    "graph": r"must be a SignedGraph|isinstance\(\w+, SignedGraph\)",
    "key": r"dtypes\.prng_key|== np\.uint32|JAX PRNG key",
    "choice": r"must be one of",
}

# Copies in modules whose owners move them onto the checks: (path below jaxflow/, rule).
ELSEWHERE = {
    ("signed/frustration.py", "graph"),
    ("signed/nullmodels.py", "graph"),
    ("signed/nullmodels.py", "key"),
    ("signed/_onnx.py", "count"),
    ("signed/_onnx.py", "shape"),
    ("_lanes.py", "key"),
}


def _copies() -> set[tuple[str, str, int]]:
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name == "_checks.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for rule, pattern in RULES.items():
                if re.search(pattern, line):
                    found.add((name, rule, number))
    return found


def test_each_rule_is_written_once():
    stray = sorted(
        (f"{name}:{number}", rule) for name, rule, number in _copies() if (name, rule) not in ELSEWHERE
    )
    assert not stray, f"a rule of jaxflow/_checks.py written again (use the check): {stray}"


def test_the_patterns_see_the_rules_they_name():
    """Each pattern matches the rule's own wording in `_checks.py`, so a copy of it would be seen."""
    source = (PACKAGE / "_checks.py").read_text()
    for rule, pattern in RULES.items():
        assert re.search(pattern, source), f"the pattern of {rule!r} misses _checks.py itself"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_count(True, "n"), "n must be a positive integer, got True"),
        (lambda: check_count(1, "n", minimum=2), "n must be an integer >= 2, got 1"),
        (lambda: check_shape((2, 0), "in_shape"), r"in_shape\[1\] must be a positive integer, got 0"),
        (lambda: check_shape(3, "in_shape"), "in_shape must be a shape: positive integers, got 3"),
        (lambda: check_widths((3,)), r"widths must be the layer widths .*: 2 or more positive integers"),
        (lambda: check_graph([1.0]), "graph must be a SignedGraph, got list"),
        (lambda: check_key(0), "key must be one JAX PRNG key"),
        (
            lambda: check_choice("euler", "solver", ("tsit5",)),
            r"solver must be one of \['tsit5'\], got 'euler'",
        ),
    ],
)
def test_the_checks_name_the_argument(call, message):
    with pytest.raises(InputError, match=message) as e:
        call()
    assert str(e.value) == f"{e.value.argument} {e.value.problem}"


def test_keys_and_graphs_pass():
    import jax
    import numpy as np

    from jaxflow import SignedGraph

    for key in (jax.random.key(0), jax.random.PRNGKey(0)):
        assert check_key(key) is key
    g = SignedGraph.from_weights([np.ones((2, 3))])
    assert check_graph(g) is g
