"""GPU smoke kit, engines: the pinned TensorRT, the parser, builds with the (1,4,8) profile, the
engine's I/O, and the engines against ONNX Runtime at batches 1, 3 and 8 (an empty and a cluttered
world scene among them). Every test prints what it saw (`-s` shows it) and skips with its reason
where TensorRT or a GPU is missing."""

from __future__ import annotations

import pytest

from tests.gpu.conftest import KINDS, PROFILE, batch_inputs, precision_of, tensorrt_missing
from tests.output_compare import output_differences

pytestmark = [pytest.mark.gpu, pytest.mark.trt]


def test_tensorrt_is_the_pinned_version():
    reason = tensorrt_missing()
    if reason:
        pytest.skip(reason)
    import tensorrt

    from serving.errors import ServingError
    from serving.ngc import TRITON_IMAGE
    from serving.tensorrt_pin import same_tensorrt, target_tensorrt

    try:
        target = target_tensorrt()
    except ServingError as exc:
        pytest.skip(str(exc))
    print(f"TensorRT {tensorrt.__version__}; {TRITON_IMAGE} serves engines of TensorRT {target}")
    assert same_tensorrt(str(tensorrt.__version__), target), (
        f"TensorRT {tensorrt.__version__} builds engines that {TRITON_IMAGE} (TensorRT {target}) cannot "
        "load: build inside the image (`percept export ... --engine tensorrt --print-docker`)"
    )


@pytest.mark.parametrize("kind", KINDS)
def test_the_parser_reads_the_tensorrt_variant(gpu, cam_onnx, spec, kit_dir, kind):
    from exporters.export.tensorrt import parse_onnx
    from exporters.export.trt_compat import compat_stage
    from exporters.export.trt_variant import variant_path
    from tests.gpu.conftest import kind_onnx

    trt = gpu
    onnx = kind_onnx(kind, cam_onnx, spec, kit_dir / f"parse-{kind}")
    compat_stage(onnx, "tensorrt")  # writes model[.p].trt.onnx; fails on an error finding
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # parse_onnx raises with every parser error (node, operator, description) in its message
    network, _parser = parse_onnx(trt, builder, logger, variant_path(onnx), kind.endswith("-typed"))
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    for t in (*inputs, *outputs):
        print(f"{kind}: {t.name} {t.dtype} {tuple(t.shape)}")
    assert [t.name for t in inputs] == [t.name for t in spec.network_inputs]
    assert sorted(t.name for t in outputs) == sorted(t.name for t in spec.network_outputs)


@pytest.mark.parametrize("kind", KINDS)
def test_engine_builds_with_the_profile_and_has_the_contract_io(gpu, engines, spec, kind):
    import json
    from pathlib import Path

    import numpy as np

    from exporters.export.options import BatchProfile
    from exporters.export.tensorrt_plan import profile_shapes

    trt = gpu
    _, plan, report = engines(kind)
    print("\n".join(report.lines()))
    assert report.passed, report.lines()  # verified against ONNX Runtime with the precision's bounds
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
    assert engine is not None, f"TensorRT cannot load {plan}"
    io = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        io[name] = (
            engine.get_tensor_mode(name),
            engine.get_tensor_dtype(name),
            tuple(engine.get_tensor_shape(name)),
        )
        print(f"{kind}: {name} {io[name][0]} {io[name][1]} {io[name][2]}")
    expected = {t.name: (trt.TensorIOMode.INPUT, t) for t in spec.network_inputs}
    expected.update({t.name: (trt.TensorIOMode.OUTPUT, t) for t in spec.network_outputs})
    assert sorted(io) == sorted(expected)
    for name, (mode, dtype, shape) in io.items():
        want_mode, tensor = expected[name]
        assert mode == want_mode, name
        assert np.dtype(trt.nptype(dtype)) == np.dtype(tensor.dtype), (name, dtype, tensor.dtype)
        assert shape[0] == -1 and list(shape[1:]) == [int(d) for d in tensor.dims[1:]], (name, shape)
    for name, shapes in profile_shapes(spec, BatchProfile(*PROFILE)).items():
        assert tuple(tuple(s) for s in engine.get_tensor_profile_shape(name, 0)) == shapes, name
    sidecar = json.loads(Path(str(plan) + ".json").read_text())
    assert sidecar["precision"] == precision_of(kind) and sidecar["strongly_typed"] == kind.endswith("-typed")
    assert sidecar["profile"] == {"min": PROFILE[0], "opt": PROFILE[1], "max": PROFILE[2]}


@pytest.mark.parametrize("batch", [1, 3, 8])
@pytest.mark.parametrize("kind", KINDS)
def test_engine_matches_onnxruntime_on_empty_and_cluttered_scenes(
    gpu, engines, cam_onnx, spec, scenes, kind, batch
):
    from exporters.export.options import BatchProfile
    from exporters.export.tensorrt import trt_runner
    from exporters.export.tolerances import TOLERANCES
    from exporters.export.verify import ort_runner
    from serving.spec import DET_BOXES, NUM_DETS

    order = [scenes["empty"], scenes["cluttered"], *scenes["ordinary"]][:batch]
    inputs = batch_inputs(spec, order)
    _, plan, _ = engines(kind)
    ref = ort_runner(cam_onnx)(inputs)
    got = trt_runner(plan, spec, BatchProfile(*PROFILE))(inputs)
    print(f"{kind} batch {batch}: num_dets trt {got[NUM_DETS].tolist()} onnxruntime {ref[NUM_DETS].tolist()}")
    assert got[NUM_DETS].shape == (batch,)
    problems = output_differences(ref, got, spec, TOLERANCES[precision_of(kind)])
    assert not problems, problems
    assert int(ref[NUM_DETS][0]) == int(got[NUM_DETS][0]) == 0  # the empty scene: nothing found
    for i, n in enumerate(got[NUM_DETS]):  # rows past num_dets are zero (the contract)
        assert not got[DET_BOXES][i, int(n) :].any()
    if batch == 8:  # trained weights: there are detections to compare (never a random init)
        assert int(ref[NUM_DETS].sum()) > 0 and int(got[NUM_DETS].sum()) > 0
