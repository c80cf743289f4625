"""pgvector's binary form: encode_vector, and both decoders agree to the bit."""

from __future__ import annotations

import array
import math
import random
from collections.abc import Callable, Sequence

from adapters.postgres.database import decode_vector, decode_vector_array, encode_vector
from domain.context.fusion import Diversifier


def test_both_decoders_give_back_the_float32_values() -> None:
    rng = random.Random(5)
    values = [rng.uniform(-1, 1) for _ in range(384)] + [0.0, -0.0, 1e-38, 3.4e38, -2.5]
    wire = encode_vector(values)
    as_tuple, as_array = decode_vector(wire), decode_vector_array(wire)
    assert isinstance(as_array, array.array) and as_array.typecode == "f"
    assert len(as_tuple) == len(as_array) == len(values)
    assert list(as_array) == list(as_tuple)  # the same float32s, not merely close
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(as_array, values, strict=True))
    assert decode_vector_array(encode_vector([])) == array.array("f")


def test_mmr_picks_the_same_order_from_arrays_as_from_tuples() -> None:
    rng = random.Random(9)
    vectors = {k: [rng.gauss(0, 1) for _ in range(16)] for k in range(12)}
    relevance = {k: rng.random() for k in vectors}

    def order(convert: Callable[[list[float]], Sequence[float]]) -> list[int]:
        picker = Diversifier([(k, convert(v)) for k, v in vectors.items()], relevance, 0.5)
        out = []
        while (key := picker.pop()) is not None:
            picker.select(key)
            out.append(key)
        return out

    as_floats32 = {k: list(array.array("f", v)) for k, v in vectors.items()}
    vectors = as_floats32  # both kinds hold the same float32 values
    assert order(tuple) == order(lambda v: array.array("f", v)) and len(order(tuple)) == 12
