"""The tensor contract, rendered from serving/spec.py and serving/ensemble.py for the shipped networks.

The networks are those of the committed model_repository/ (the spec each network's config.pbtxt
carries, read back by the repository module); model names come from serving.model_config, tensors
from ModelSpec and the ensemble's functions: the same code the repository builder, the python
backend and the clients derive everything from.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from md import code, escape, table


def _dims(dims) -> str:
    return code("[" + ", ".join(str(d) for d in dims) + "]")


def _tensors(tensors) -> str:
    rows = [
        (
            code(t.name) + (" (optional)" if t.optional else ""),
            code(t.dtype),
            code(t.triton_dtype),
            _dims(t.dims),
            escape(t.doc),
        )
        for t in tensors
    ]
    return table(("tensor", "dtype", "Triton", "shape", "meaning"), rows)


def _spec_fields(specs) -> str:
    from serving.spec import ModelSpec

    rows = []
    for f in dataclasses.fields(ModelSpec):
        if f.default is not dataclasses.MISSING:
            default = escape(str(_plain(f.default)))
        elif f.default_factory is not dataclasses.MISSING:
            default = escape(str(_plain(f.default_factory())))
        else:
            default = "**required**"
        values = [getattr(s, f.name) for s in specs]
        rows.append((code(f.name), *(escape(str(_plain(v))) for v in values), default))
    return table(("field", *(code(s.name) for s in specs), "default"), rows)


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    return list(value) if isinstance(value, tuple) else value


def render(root: Path) -> str:
    from serving import ensemble
    from serving import spec as S
    from serving.model_config import decode_model_name, frame_model_name, network_model_name, pipeline_names
    from serving.repository import read_repository_specs

    specs = read_repository_specs(root / "model_repository")
    pipelines = pipeline_names(specs)
    out = [
        "Rendered at build time from `serving/spec.py` (`ModelSpec`, tensor names) and `serving/ensemble.py` "
        "(the frame model's and the pipeline's tensors), for the networks of the committed "
        f"`model_repository/` ({', '.join(code(s.name) for s in specs)}). Shapes include the batch axis; "
        "a name in a shape is a dynamic axis. Every `config.pbtxt` is generated from these "
        "(`percept repo build`), and a test checks the committed repository equals what the builder "
        "writes.\n",
        "## The spec of each shipped network\n",
        "A served model carries its spec as JSON in the config parameter "
        f"{code(S.SPEC_KEY)} (and in the ONNX metadata under the same key; the export's provenance under "
        f"{code(S.PROVENANCE_KEY)}). Clients read it from the server instead of assuming heads.\n",
        _spec_fields(specs),
    ]
    for spec in specs:
        net = network_model_name(spec)
        out += [
            f"\n## `{spec.name}`\n",
            f"Models: the network {code(net)}, the frame model {code(frame_model_name(spec))}, "
            "the decode step "
            f"{code(decode_model_name(spec))} and the ensemble {code(pipelines[net])} "
            f"({code(decode_model_name(spec))} -> {code(frame_model_name(spec))}).\n",
            f"### Network `{net}`: inputs\n",
            _tensors(spec.network_inputs),
            f"\n### Network `{net}`: outputs\n",
            _tensors(spec.network_outputs),
            f"\n### Frame model `{frame_model_name(spec)}`: inputs\n",
            _tensors(ensemble.frame_inputs(spec)),
            f"\n### Frame model `{frame_model_name(spec)}` and ensemble `{pipelines[net]}`: outputs\n",
            _tensors(ensemble.frame_outputs(spec)),
            f"\n### Ensemble `{pipelines[net]}`: inputs\n",
            "One of `image` or `image_encoded` per request.\n",
            _tensors(ensemble.pipeline_inputs(spec)),
        ]
    limits = ensemble.FrameLimits()
    out += [
        "\n## The letterbox tensor\n",
        f"{code(S.LETTERBOX)}: one row per frame, columns "
        + ", ".join(code(f) for f in S.LETTERBOX_FIELDS)
        + " (`valid` is 1 for a real frame).\n",
        "\n## Limits per request (`FrameLimits`)\n",
        "Written into the decode step's and frame model's configs as parameters; `percept repo build` "
        "flags of the same names (`--max-pixels`, ...) change them.\n",
        table(
            ("limit", "default"),
            [(code(f.name), code(str(getattr(limits, f.name)))) for f in dataclasses.fields(limits)],
        ),
    ]
    return "\n".join(out) + "\n"
