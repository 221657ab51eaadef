"""The repository builder: configs parsed back with Triton's own schema, the committed repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from serving import spec as S
from serving.errors import ServingError
from serving.model_config import BatchingOptions, RepositoryOptions, parse_config
from serving.onnx_meta import read_spec
from serving.repository import NetworkArtifact, build_repository, read_repository_specs, write_configs
from serving.spec import SPEC_KEY, ModelSpec
from tests.tiny_onnx import make_tiny_onnx

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "model_repository"
CAM = ModelSpec(name="cam-n", input_hw=(128, 224))
FUSION = ModelSpec(name="fusion-n", input_hw=(128, 224), fusion=True)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("onnx")
    return [
        make_tiny_onnx(CAM, d / "cam-n" / "model.onnx"),
        make_tiny_onnx(FUSION, d / "fusion-n" / "model.onnx"),
    ]


def _configs(repo: Path) -> dict[str, mc.ModelConfig]:
    return {p.parent.name: parse_config(p.read_text()) for p in sorted(repo.glob("*/config.pbtxt"))}


def _tree(repo: Path) -> dict[str, bytes]:
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and p.suffix in (".pbtxt", ".py", "")
    }


def test_committed_repository_equals_what_the_builder_writes(tmp_path):
    # from the registry, not from the specs the committed configs carry: a registry or builder change
    # the committed repository has not caught up with must fail here
    from exporters.networks import get_config

    specs = [get_config(name).spec() for name in ("cam-n", "fusion-n")]
    write_configs([NetworkArtifact(s) for s in specs], tmp_path, RepositoryOptions())
    assert _tree(COMMITTED) == _tree(tmp_path)
    assert sorted(s.name for s in read_repository_specs(COMMITTED)) == ["cam-n", "fusion-n"]


def test_every_committed_config_parses_and_names_its_folder():
    configs = _configs(COMMITTED)
    assert set(configs) == {
        "cam_n",
        "fusion_n",
        "cam_n_frame",
        "fusion_n_frame",
        "cam_n_decode",
        "fusion_n_decode",
        S.ENSEMBLE_CAMERA,
        S.ENSEMBLE_FUSION,
    }
    for name, cfg in configs.items():
        assert cfg.name == name
        assert json.loads(cfg.parameters[SPEC_KEY].string_value)["name"] in ("cam-n", "fusion-n")


def test_build_writes_network_frame_decode_and_ensembles(onnx_files, tmp_path):
    names = build_repository(onnx_files, tmp_path)
    assert names == [
        "cam_n",
        "cam_n_frame",
        "fusion_n",
        "fusion_n_frame",
        "cam_n_decode",
        S.ENSEMBLE_CAMERA,
        "fusion_n_decode",
        S.ENSEMBLE_FUSION,
    ]
    assert (tmp_path / "cam_n" / "1" / "model.onnx").read_bytes() == onnx_files[0].read_bytes()
    assert read_spec(tmp_path / "fusion_n" / "1" / "model.onnx") == FUSION
    cfgs = _configs(tmp_path)
    net = cfgs["cam_n"]
    assert net.backend == "python" and net.max_batch_size == 8
    assert [i.name for i in net.input] == [S.IMAGES] and list(net.input[0].dims) == [3, 128, 224]
    assert [o.name for o in net.output] == [t.name for t in CAM.network_outputs]
    assert (
        net.output[0].name == S.NUM_DETS
        and list(net.output[0].dims) == [1]
        and net.output[0].HasField("reshape")
    )
    assert net.dynamic_batching.default_queue_policy.timeout_action == mc.ModelQueuePolicy.REJECT
    assert net.dynamic_batching.default_queue_policy.max_queue_size == 64
    assert net.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert net.version_policy.latest.num_versions == 1
    assert net.model_warmup[0].inputs[S.IMAGES].zero_data
    frame = cfgs["cam_n_frame"]
    assert [i.name for i in frame.input] == [S.IMAGE, S.SOURCE_HW]
    assert list(frame.input[0].dims) == [-1, -1, 3] and list(frame.input[1].dims) == [2]
    assert [o.name for o in frame.output] == [*(t.name for t in CAM.network_outputs), S.LETTERBOX]
    assert frame.dynamic_batching.default_queue_policy.max_queue_size == 64
    warm = frame.model_warmup[0].inputs
    assert list(warm[S.IMAGE].dims) == [720, 1280, 3] and warm[S.SOURCE_HW].input_data_file == "source_hw"
    assert (tmp_path / "cam_n_frame" / "warmup" / "source_hw").read_bytes() == bytes.fromhex(
        "d002000000050000"
    )
    # the python engine's frame model runs the network with OpenCV around it: the network's file
    assert (tmp_path / "cam_n_frame" / "1" / "model.onnx").read_bytes() == onnx_files[0].read_bytes()
    fusion_pre = cfgs["fusion_n_decode"]
    points = next(i for i in fusion_pre.input if i.name == S.POINTS)
    assert points.allow_ragged_batch and list(points.dims) == [-1, 4]
    image = next(i for i in fusion_pre.input if i.name == S.IMAGE)
    assert image.optional and image.allow_ragged_batch
    projection = next(i for i in fusion_pre.input if i.name == S.PROJECTION)
    assert not projection.optional and list(projection.dims) == [3, 4]


def test_ensemble_steps_chain_decode_and_frame(onnx_files, tmp_path):
    build_repository(onnx_files, tmp_path)
    ens = _configs(tmp_path)[S.ENSEMBLE_FUSION]
    assert ens.platform == "ensemble"
    steps = ens.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["fusion_n_decode", "fusion_n_frame"]
    produced = {S.IMAGE, S.IMAGE_ENCODED, S.POINTS, S.PROJECTION}
    for step in steps:
        assert set(step.input_map.values()) <= produced, step.model_name
        produced |= set(step.output_map.values())
    assert {o.name for o in ens.output} <= produced
    assert {i.name for i in ens.input if i.optional} == {S.IMAGE, S.IMAGE_ENCODED}


def test_the_ngc_engines_get_the_frame_graph(onnx_files, tmp_path):
    """onnxruntime: the frame model's file is the frame graph (no python step for a raw frame)."""
    onnx = pytest.importorskip("onnx")
    build_repository(onnx_files[:1], tmp_path, RepositoryOptions(engine="onnxruntime"))
    frame = _configs(tmp_path)["cam_n_frame"]
    assert frame.platform == "onnxruntime_onnx" and not frame.backend
    graph = onnx.load(str(tmp_path / "cam_n_frame" / "1" / "model.onnx")).graph
    assert [i.name for i in graph.input] == [S.IMAGE, S.SOURCE_HW]
    assert [o.name for o in graph.output] == [o.name for o in frame.output]
    # and the raw network keeps the network's own file
    assert (tmp_path / "cam_n" / "1" / "model.onnx").read_bytes() == onnx_files[0].read_bytes()


def test_onnxruntime_engine_config(onnx_files, tmp_path):
    build_repository(onnx_files[:1], tmp_path, RepositoryOptions(engine="onnxruntime", intra_op_threads=4))
    net = _configs(tmp_path)["cam_n"]
    assert net.platform == "onnxruntime_onnx" and not net.backend
    assert net.parameters["intra_op_thread_count"].string_value == "4"
    assert net.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert not (tmp_path / "cam_n" / "1" / "model.py").exists()


def test_tensorrt_engine_maps_compute_capabilities_to_plan_files(onnx_files, tmp_path):
    folder = onnx_files[0].parent
    for cc in ("86", "90"):
        (folder / f"model_sm{cc}.plan").write_bytes(b"engine " + cc.encode())
        (folder / f"frame_sm{cc}.plan").write_bytes(b"frame engine " + cc.encode())
    try:
        build_repository(onnx_files[:1], tmp_path / "repo", RepositoryOptions(engine="tensorrt_plan"))
    finally:
        for plan in folder.glob("*.plan"):
            plan.unlink()
    net = _configs(tmp_path / "repo")["cam_n"]
    assert net.platform == "tensorrt_plan"
    assert dict(net.cc_model_filenames) == {"8.6": "model_sm86.plan", "9.0": "model_sm90.plan"}
    assert (tmp_path / "repo" / "cam_n" / "1" / "model_sm90.plan").read_bytes() == b"engine 90"
    frame = _configs(tmp_path / "repo")["cam_n_frame"]
    assert dict(frame.cc_model_filenames) == {"8.6": "frame_sm86.plan", "9.0": "frame_sm90.plan"}
    assert (tmp_path / "repo" / "cam_n_frame" / "1" / "frame_sm90.plan").read_bytes() == b"frame engine 90"


def test_tensorrt_engine_profile_must_cover_the_batcher_and_match_the_spec(onnx_files, tmp_path):
    folder = onnx_files[0].parent
    plan = folder / "model_sm86.plan"
    plan.write_bytes(b"engine")
    frame_plan = folder / "frame_sm86.plan"
    frame_plan.write_bytes(b"frame engine")
    sidecar = folder / "model_sm86.plan.json"
    try:
        sidecar.write_text(
            json.dumps({"spec_hash": CAM.spec_hash(), "profile": {"min": 1, "opt": 2, "max": 4}})
        )
        with pytest.raises(
            ServingError, match=r"profile batch 1..4 does not cover the dynamic batcher's 1..8"
        ):
            build_repository(onnx_files[:1], tmp_path / "a", RepositoryOptions(engine="tensorrt_plan"))
        small = RepositoryOptions(engine="tensorrt_plan", batching=BatchingOptions(max_batch_size=4))
        build_repository(onnx_files[:1], tmp_path / "b", small)
        assert (tmp_path / "b" / "cam_n" / "1" / "model_sm86.plan.json").exists()
        sidecar.write_text(json.dumps({"spec_hash": "0123456789abcdef", "profile": {"min": 1, "max": 8}}))
        with pytest.raises(ServingError, match="built for another spec"):
            build_repository(onnx_files[:1], tmp_path / "c", RepositoryOptions(engine="tensorrt_plan"))
    finally:
        plan.unlink()
        frame_plan.unlink()
        sidecar.unlink()


def test_tensorrt_engine_without_plans_is_an_error(onnx_files, tmp_path):
    with pytest.raises(ServingError, match="model_sm<cc>.plan"):
        build_repository(onnx_files[:1], tmp_path, RepositoryOptions(engine="tensorrt_plan"))
    plan = onnx_files[0].parent / "model_sm90.plan"
    plan.write_bytes(b"engine")
    try:  # without frame engines the frame model runs the frame graph on the onnxruntime backend
        build_repository(onnx_files[:1], tmp_path / "repo", RepositoryOptions(engine="tensorrt_plan"))
    finally:
        plan.unlink()
    configs = _configs(tmp_path / "repo")
    assert configs["cam_n"].platform == "tensorrt_plan"
    assert configs["cam_n_frame"].platform == "onnxruntime_onnx"
    graph = (
        pytest.importorskip("onnx").load(str(tmp_path / "repo" / "cam_n_frame" / "1" / "model.onnx")).graph
    )
    assert [i.name for i in graph.input] == [S.IMAGE, S.SOURCE_HW]


def test_batching_options_reach_the_config(onnx_files, tmp_path):
    batching = BatchingOptions(max_batch_size=4, max_queue_delay_us=500, preferred_batch_sizes=(4,))
    build_repository(onnx_files[:1], tmp_path, RepositoryOptions(batching=batching, network_instances=2))
    net = _configs(tmp_path)["cam_n"]
    assert net.max_batch_size == 4 and list(net.dynamic_batching.preferred_batch_size) == [4]
    assert net.dynamic_batching.max_queue_delay_microseconds == 500 and net.instance_group[0].count == 2
    off = tmp_path / "off"
    build_repository(onnx_files[:1], off, RepositoryOptions(batching=BatchingOptions(dynamic=False)))
    configs = _configs(off)
    assert not configs["cam_n"].HasField("dynamic_batching") and configs["cam_n"].max_batch_size == 8
    assert configs["cam_n_decode"].HasField("dynamic_batching")  # the decode step keeps its own


@pytest.mark.parametrize(
    "make",
    [
        lambda: RepositoryOptions(engine="tflite"),
        lambda: RepositoryOptions(network_instances=0),
        lambda: RepositoryOptions(engine="python", gpu=True),
        lambda: RepositoryOptions(engine="tensorrt_plan", gpu=False),
        lambda: BatchingOptions(max_batch_size=0),
        lambda: BatchingOptions(max_batch_size=4, preferred_batch_sizes=(8,)),
    ],
)
def test_impossible_options_are_errors(make):
    with pytest.raises(ServingError):
        make()


def test_onnx_without_spec_metadata_is_a_clear_error(onnx_files, tmp_path):
    import onnx

    model = onnx.load(str(onnx_files[0]))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(ServingError, match="perception_spec"):
        build_repository([bare], tmp_path / "repo")
    with pytest.raises(ServingError, match="does not exist"):
        read_spec(tmp_path / "missing.onnx")


def test_percept_repo_build_writes_the_same_repository_as_the_library(onnx_files, tmp_path):
    import subprocess
    import sys

    percept = str(Path(sys.executable).parent / "percept")
    args = [percept, "repo", "build", "--onnx", str(onnx_files[0]), "--onnx", str(onnx_files[1])]
    proc = subprocess.run(
        [*args, "--out", str(tmp_path / "cli")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote 8 models" in proc.stdout
    build_repository(onnx_files, tmp_path / "lib")
    assert _tree(tmp_path / "cli") == _tree(tmp_path / "lib")
    bad = subprocess.run(
        [*args, "--engine", "tflite", "--out", str(tmp_path / "x")], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "error: unknown engine 'tflite'; choose one of python, onnxruntime, tensorrt_plan"
    ]
    assert not (tmp_path / "x").exists()


def _with_profile(src: Path, dst: Path, profile: dict) -> Path:
    """A copy of ``src`` whose provenance records the batch profile it was exported with."""
    import onnx

    model = onnx.load(str(src))
    entry = model.metadata_props.add()
    entry.key, entry.value = "provenance", json.dumps({"network": "cam-n", "batch_profile": profile})
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("engine", ["python", "onnxruntime", "tensorrt_plan"])
def test_max_batch_above_the_exported_profile_is_refused_for_every_engine(onnx_files, tmp_path, engine):
    onnx_path = _with_profile(
        onnx_files[0], tmp_path / "cam-n" / "model.onnx", {"min": 1, "opt": 2, "max": 4}
    )
    with pytest.raises(ServingError, match=r"^cam_n: max batch size 8 exceeds the batch profile's max 4 of "):
        build_repository([onnx_path], tmp_path / "repo", RepositoryOptions(engine=engine))
    assert not (tmp_path / "repo").exists()
    if engine != "tensorrt_plan":  # (a plan would be needed as well)
        small = RepositoryOptions(engine=engine, batching=BatchingOptions(max_batch_size=4))
        build_repository([onnx_path], tmp_path / "ok", small)
        assert _configs(tmp_path / "ok")["cam_n"].max_batch_size == 4


def test_percept_repo_build_refuses_a_max_batch_above_the_profile_in_one_line(onnx_files, tmp_path):
    import subprocess
    import sys

    onnx_path = _with_profile(
        onnx_files[0], tmp_path / "cam-n" / "model.onnx", {"min": 1, "opt": 4, "max": 8}
    )
    percept = str(Path(sys.executable).parent / "percept")
    args = [percept, "repo", "build", "--onnx", str(onnx_path), "--out", str(tmp_path / "repo")]
    proc = subprocess.run([*args, "--max-batch-size", "16"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: cam_n: max batch size 16 exceeds the batch profile's max 8 of {onnx_path}; lower "
        "--max-batch-size to 8 or export again with --max-batch 16"
    ]
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("module", ["serving.model_config", "serving.repository", "serving.ensemble"])
def test_writing_a_repository_imports_neither_opencv_nor_torch(module):
    import subprocess
    import sys

    code = f"import sys, {module}; print(sorted({{'cv2', 'torch'}} & set(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
