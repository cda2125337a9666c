"""Pedersen commitments over ristretto255: C = v·G + r·H, homomorphic and perfectly hiding.

G is the standard basepoint; H and the vector generators Gᵢ come from hash-to-group with
documented labels ("pedersen/H", "pedersen/G" ‖ i), so no one knows a discrete log relation
between any of them and the commitments are computationally binding.
"""

from __future__ import annotations

from functools import cache

from guardians.crypto.group import BASEPOINT, Point, Scalar, multiscalar

G = BASEPOINT
H = Point.hash_to_group("pedersen/H")


@cache
def vector_generator(i: int) -> Point:
    return Point.hash_to_group("pedersen/G", i.to_bytes(8, "big"))


def commit(value: Scalar, blinding: Scalar) -> Point:
    return G * value + H * blinding


def commit_vector(values: list[Scalar], blinding: Scalar) -> Point:
    gens = [vector_generator(i) for i in range(len(values))]
    return multiscalar([*values, blinding], [*gens, H])
