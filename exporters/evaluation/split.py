"""The fixed validation split: world seeds that the trainer never renders."""

from __future__ import annotations

from serving.errors import SpecError

VALIDATION_BASE_SEED = 1_000_000  # training draws its seeds below this, validation at and above it
MAX_VALIDATION_SCENES = 100_000


def validation_seeds(n: int = 200) -> list[int]:
    """The first ``n`` seeds of the validation split; the README's numbers use n=200."""
    if not 1 <= n <= MAX_VALIDATION_SCENES:
        raise SpecError(f"validation split size must be in 1..{MAX_VALIDATION_SCENES}, got {n}")
    return list(range(VALIDATION_BASE_SEED, VALIDATION_BASE_SEED + n))


def is_validation_seed(seed: int) -> bool:
    return VALIDATION_BASE_SEED <= seed < VALIDATION_BASE_SEED + MAX_VALIDATION_SCENES


def training_seed(index: int, base: int = 0) -> int:
    """Seed of the ``index``-th training scene; never a validation seed."""
    seed = (base + index) % VALIDATION_BASE_SEED
    return seed
