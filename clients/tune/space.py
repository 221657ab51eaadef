"""What `percept tune` varies: one :class:`Candidate` is one repository configuration of the network.

A candidate turns into the :class:`~serving.model_config.RepositoryOptions` the repository builder
takes (everything it does not vary stays at the builder's defaults) and into the `percept repo
build` flags that reproduce it. The :class:`SearchSpace` holds the values tried per knob; the
defaults candidate (the builder's own defaults) is always measured, as the baseline.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, fields, replace
from pathlib import Path

from serving.errors import SpecError
from serving.model_config import RepositoryOptions

NO_PREFERRED = 0  # preferred_batch value: no preferred batch size (the builder's default)


@dataclass(frozen=True, order=True)
class Candidate:
    instances: int  # instances of the model that runs the network: the raw network and the frame model
    threads: int  # ONNX Runtime intra-op threads per instance
    max_batch: int  # the dynamic batcher's max batch size
    preferred_batch: int  # 0: none
    queue_delay_us: int  # the dynamic batcher's max queue delay
    precision: str = "fp32"  # which ONNX file (fp32, or a reduced-precision file beside it)

    @classmethod
    def defaults(cls, precision: str = "fp32") -> Candidate:
        """The repository builder's defaults (serving.model_config), for the given file's precision."""
        base = RepositoryOptions()
        preferred = base.batching.preferred_batch_sizes
        return cls(
            instances=base.network_instances,
            threads=base.intra_op_threads,
            max_batch=base.batching.max_batch_size,
            preferred_batch=preferred[0] if preferred else NO_PREFERRED,
            queue_delay_us=base.batching.max_queue_delay_us,
            precision=precision,
        )

    @property
    def valid(self) -> bool:
        return self.preferred_batch <= self.max_batch

    @property
    def label(self) -> str:
        pref = f" pref {self.preferred_batch}" if self.preferred_batch else ""
        return (
            f"{self.instances}x{self.threads}t b{self.max_batch}{pref} "
            f"d{self.queue_delay_us}us {self.precision}"
        )

    def repository_options(self, base: RepositoryOptions | None = None) -> RepositoryOptions:
        base = base or RepositoryOptions()
        batching = replace(
            base.batching,
            max_batch_size=self.max_batch,
            preferred_batch_sizes=(self.preferred_batch,) if self.preferred_batch else (),
            max_queue_delay_us=self.queue_delay_us,
        )
        return replace(
            base,
            batching=batching,
            network_instances=self.instances,
            frame_instances=self.instances,
            intra_op_threads=self.threads,
        )

    def repo_build_flags(self) -> list[str]:
        """The `percept repo build` options that differ from its defaults (the builder's)."""
        flags: list[str] = []
        base = Candidate.defaults(self.precision)
        pairs = (
            ("--instances", self.instances, base.instances),
            ("--threads", self.threads, base.threads),
            ("--max-batch-size", self.max_batch, base.max_batch),
            ("--max-queue-delay-us", self.queue_delay_us, base.queue_delay_us),
        )
        for flag, value, default in pairs:
            if value != default:
                flags += [flag, str(value)]
                if flag == "--instances":  # the frame model runs the network for the pipeline
                    flags += ["--frame-instances", str(value)]
        if self.preferred_batch:
            flags += ["--preferred-batch-size", str(self.preferred_batch)]
        return flags

    def config_values(self) -> dict[str, object]:
        """The config.pbtxt fields of the network model this candidate sets (README's names)."""
        return {
            "instance_group.count": self.instances,
            "parameters.intra_op_threads": self.threads,
            "max_batch_size": self.max_batch,
            "dynamic_batching.preferred_batch_size": [self.preferred_batch] if self.preferred_batch else [],
            "dynamic_batching.max_queue_delay_microseconds": self.queue_delay_us,
        }


KNOBS = tuple(f.name for f in fields(Candidate))
# quick mode's coordinates, in order; instances and threads share the cores, so they move together
COORDINATES: tuple[tuple[str, ...], ...] = (
    ("instances", "threads"),
    ("max_batch",),
    ("preferred_batch",),
    ("queue_delay_us",),
    ("precision",),
)


def _ints(name: str, values: tuple[int, ...], low: int) -> None:
    if not values:
        raise SpecError(f"give at least one {name} value")
    if min(values) < low:
        raise SpecError(f"{name} values must be >= {low}, got {values}")


@dataclass(frozen=True)
class SearchSpace:
    """The values tried per knob (each a non-empty tuple, in the order given)."""

    instances: tuple[int, ...] = (1, 2, 4)
    threads: tuple[int, ...] = (1, 2)
    max_batch: tuple[int, ...] = (4, 8)
    preferred_batch: tuple[int, ...] = (NO_PREFERRED,)
    queue_delay_us: tuple[int, ...] = (0, 2000)
    precision: tuple[str, ...] = ("fp32",)

    def __post_init__(self) -> None:
        _ints("instances", self.instances, 1)
        _ints("threads", self.threads, 1)
        _ints("max batch", self.max_batch, 1)
        _ints("preferred batch", self.preferred_batch, 0)
        _ints("queue delay", self.queue_delay_us, 0)
        if not self.precision:
            raise SpecError("give at least one precision")
        for name in KNOBS:
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise SpecError(f"{name} values repeat: {values}")

    def values(self, knob: str) -> tuple:
        return tuple(getattr(self, knob))

    def grid(self) -> list[Candidate]:
        """Every valid combination, in the order of the values given."""
        combos = itertools.product(*(self.values(k) for k in KNOBS))
        return [c for c in (Candidate(*combo) for combo in combos) if c.valid]

    def along(self, start: Candidate, coordinate: tuple[str, ...]) -> list[Candidate]:
        """The valid candidates that differ from ``start`` only in the knobs of ``coordinate``."""
        out = []
        for combo in itertools.product(*(self.values(k) for k in coordinate)):
            c = replace(start, **dict(zip(coordinate, combo, strict=True)))
            if c.valid:
                out.append(c)
        return out

    def limit_max_batch(self, profile_max: int | None) -> SearchSpace:
        """Without the max batch values beyond the export's batch profile (which the builder refuses)."""
        if profile_max is None:
            return self
        kept = tuple(b for b in self.max_batch if b <= profile_max)
        if not kept:
            raise SpecError(
                f"every max batch value {self.max_batch} exceeds the export's batch profile max "
                f"{profile_max}; give --max-batch values <= {profile_max}"
            )
        return replace(self, max_batch=kept)

    @property
    def size(self) -> int:
        return len(self.grid())


def parse_ints(text: str, name: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4); ``none`` (preferred batch) -> 0."""
    try:
        return tuple(
            NO_PREFERRED if part.strip() == "none" else int(part) for part in text.split(",") if part.strip()
        )
    except ValueError:
        raise SpecError(f"{name} {text!r}: expected a list of integers like 1,2,4") from None


def files_for(candidates: list[Candidate], variants: dict[str, Path]) -> None:
    """Every candidate's precision must have a file; the error names the one missing."""
    missing = sorted({c.precision for c in candidates} - set(variants))
    if missing:
        have = ", ".join(f"{p} ({path.name})" for p, path in variants.items())
        raise SpecError(
            f"no {'/'.join(missing)} ONNX beside the model (found {have}); export it with "
            f"`percept export ... --precision {missing[0]}`"
        )
