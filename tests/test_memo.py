"""`per_instance`: one computation per live object, by identity, and no entry past its object."""

import gc

from jaxflow._memo import per_instance


class Box:
    def __init__(self, value):
        self.value = value


def test_per_instance_computes_once_per_object_and_forgets_it_with_the_object():
    calls = []

    @per_instance
    def double(box):
        calls.append(box)
        return 2 * box.value

    a, b = Box(1), Box(1)  # equal contents, distinct objects: one computation each
    assert [double(a), double(a), double(b), double(a)] == [2, 2, 2, 2]
    assert calls == [a, b]
    cache = double.cache
    assert set(cache) == {id(a), id(b)}
    del calls[:], b
    gc.collect()
    assert set(cache) == {id(a)}  # b's entry left with b
    c = Box(5)
    assert double(c) == 10 and double(a) == 2
