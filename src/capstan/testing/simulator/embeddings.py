"""Deterministic embedding vectors, the one generator every vendor's embedding endpoint uses.

A vector is drawn from a Gaussian seeded by whatever the vendor says identifies the input (the
text, the model, the requested size), then scaled to unit length: the same input always embeds
the same way, and cosine similarity behaves as clients expect. Vendors round or encode the
floats their own way (float32, base64, int8, ...).
"""

from __future__ import annotations

import math
import random

from capstan.testing.simulator.text import seed_of


def gaussian_vector(size: int, *seed: object, normalize: bool = True) -> list[float]:
    """`size` floats seeded by `seed` (its parts hashed together), of unit length unless
    `normalize` is False."""
    rng = random.Random(seed_of(*seed))  # noqa: S311 - test data, not crypto
    values = [rng.gauss(0.0, 1.0) for _ in range(size)]
    if not normalize:
        return values
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]
