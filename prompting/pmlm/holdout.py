"""Which patients are held out from learning: one rule for the RL refiner and the evaluation. No Django import.

A patient is held out when a hash of (seed, her key) falls below `share`. The split depends on
nothing but her key and the seed, so it does not move when patients are added or removed: a
patient held out from a refinement run stays held out for every evaluation with the same seed,
and neither ever learns from her.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable

DEFAULT_SEED = 7
DEFAULT_SHARE = 0.25


def _position(key: Hashable, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_patients(
    keys: Iterable[Hashable], *, share: float = DEFAULT_SHARE, seed: int = DEFAULT_SEED
) -> tuple[list, list]:
    """(learning, held_out), each in a seeded order. With two or more patients each side has at least one."""
    if not 0 < share < 1:
        raise ValueError(f"The held-out share must be between 0 and 1, got {share!r}.")
    ordered = sorted(set(keys), key=lambda key: _position(key, seed))
    held = [key for key in ordered if _position(key, seed) < share]
    if len(ordered) > 1:
        if not held:
            held = ordered[:1]
        elif len(held) == len(ordered):
            held = ordered[:-1]
    held_set = set(held)
    return [key for key in ordered if key not in held_set], held
