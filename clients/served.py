"""What a server serves, and whether a request can work with the model it names.

Every client command that takes a model name (`percept video`, `percept loadtest`, `percept eval
--backend triton`, the library's clients) reads the model's config before its first request; a
model that is not there is reported here with what the server does serve (its repository index),
and a request that cannot work with the served model (a raw network without ``raw``, a pipeline
with it, a fusion pipeline without LiDAR) is refused here, naming the fix, before any frame is sent.

Only the I/O differs between the sync and asyncio clients: they fetch the index and the configs,
the functions here are plain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from clients._core import ModelInfo
from clients.errors import ModelNotFoundError
from serving import spec as S
from serving.errors import SpecError
from serving.spec import ModelSpec

READY = "READY"
ENSEMBLE = "ensemble"


class ModelNotServedError(ModelNotFoundError):
    """The model named is not loaded on the server (absent, or present but not ready)."""


class MisuseError(SpecError):
    """A request that cannot work with the served model (e.g. a raw network asked without raw=True)."""


@dataclass(frozen=True)
class Served:
    """The READY models of a server that a client can name, from its repository index and configs."""

    pipelines: tuple[str, ...] = ()  # ensembles: what clients call by default
    networks: tuple[str, ...] = ()  # raw networks (they take the letterboxed ``images``): with raw=True
    states: dict[str, str] = field(default_factory=dict)  # every model of the index -> its state (reason)
    pipeline_of: dict[str, str] = field(default_factory=dict)  # raw network -> the pipeline calling it

    def describe(self) -> str:
        """One line: the pipelines, then the raw networks."""
        if not self.pipelines and not self.networks:
            return "it serves no perception model"
        text = f"it serves the pipelines {', '.join(self.pipelines) or '(none)'}"
        if self.networks:
            text += f"; raw networks (with --raw): {', '.join(self.networks)}"
        return text


def index_entries(index) -> list[dict]:
    """tritonclient's repository index as JSON (a dict with ``models``, or the list itself)."""
    models = index.get("models", []) if isinstance(index, dict) else index
    return [m for m in models or [] if "name" in m]


def served_from(index: list[dict], configs: dict[str, dict]) -> Served:
    """Served from the index entries and the configs of its READY models."""
    states: dict[str, str] = {}
    for m in index:
        state = m.get("state") or "UNKNOWN"
        states[m["name"]] = f"{state}: {m['reason']}" if m.get("reason") else state
    pipelines, networks, pipeline_of = [], [], {}  # type: list[str], list[str], dict[str, str]
    for name in sorted(configs):
        config = configs[name]
        inputs = {t["name"] for t in config.get("input", [])}
        if config.get("platform") == ENSEMBLE:
            pipelines.append(name)
            for step in (config.get("ensemble_scheduling") or {}).get("step") or []:
                step_name = step.get("model_name", "")
                pipeline_of.setdefault(step_name, name)
                pipeline_of.setdefault(step_name.removesuffix("_frame"), name)
        elif S.IMAGES in inputs:
            networks.append(name)
    return Served(tuple(pipelines), tuple(networks), states, pipeline_of)


def ready_names(index: list[dict]) -> list[str]:
    return sorted({m["name"] for m in index if m.get("state") == READY})


def fetch_served(get_index: Callable[[], object], get_config: Callable[[str], dict]) -> Served:
    """Served of a server, through the caller's calls (with its deadline, retries and headers):
    ``get_index()`` the repository index as JSON, ``get_config(model)`` one config as JSON."""
    index = index_entries(get_index())
    return served_from(index, {name: get_config(name) for name in ready_names(index)})


def not_served_error(name: str, url: str, served: Served | None) -> ModelNotServedError:
    """The error for a model the server did not find: not ready (it is in the index) or not served.
    ``served`` None: the server would not list its models."""
    if served is None:
        return ModelNotServedError(f"model {name!r} is not served by {url} (it does not list what it serves)")
    state = served.states.get(name)
    if state is not None and not state.startswith(READY):
        return ModelNotServedError(
            f"model {name!r} is in the repository of {url} but not ready ({state}); {served.describe()}"
        )
    return ModelNotServedError(f"model {name!r} is not served by {url}: {served.describe()}")


def check_use(info: ModelInfo, raw: bool, lidar: bool | None, served: Served | None = None) -> None:
    """Refuse a use of the served model ``info`` (clients._core.ModelInfo) that cannot work.

    ``raw``: the client letterboxes and decodes (ClientOptions.raw). ``lidar``: whether the inputs
    carry LiDAR points (None: not known). ``served`` names the fix where it can (a network's pipeline).
    """
    flag = "--raw (raw=True in the library)"
    if info.raw and not raw:
        pipeline = served.pipeline_of.get(info.name) if served else None
        instead = f"or name its pipeline {pipeline!r}" if pipeline else "or name the pipeline that serves it"
        raise MisuseError(
            f"model {info.name!r} is a raw network (it takes {S.IMAGES!r}, letterboxed): pass {flag}, "
            f"so that the client letterboxes and decodes, {instead}"
        )
    if raw and not info.raw:
        nets = f" ({', '.join(served.networks)})" if served and served.networks else ""
        raise MisuseError(
            f"model {info.name!r} is a pipeline, not a raw network: drop --raw (raw=False), "
            f"or name a raw network{nets}"
        )
    if lidar is not None:
        check_lidar_use(info.name, info.spec, lidar)


def check_lidar_use(name: str, spec: ModelSpec, lidar: bool) -> None:
    """Refuse a fusion model for inputs without LiDAR, or a camera model for inputs with it."""
    if spec.fusion and not lidar:
        raise MisuseError(
            f"model {name!r} fuses LiDAR: its inputs need points and a projection (KITTI-style "
            "sequence folders in `percept video`, through --fusion-model); name a camera pipeline for "
            "videos and images"
        )
    if lidar and not spec.fusion:
        raise MisuseError(
            f"model {name!r} is camera-only: it takes no LiDAR points (KITTI-style sequences go to a "
            "fusion pipeline, --fusion-model)"
        )
