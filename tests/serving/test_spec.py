import pytest

from serving.errors import SpecError
from serving.spec import DEPTH, IMAGES, LIDAR_DEPTH, ModelSpec, TensorSpec


def test_network_tensors_follow_the_spec():
    spec = ModelSpec("cam-n", input_hw=(384, 640), top_k=50)
    assert [t.name for t in spec.network_inputs] == [IMAGES]
    depth = {t.name: t for t in spec.network_outputs}[DEPTH]
    assert depth.dims == ("batch", 192, 320) and depth.dtype == "float16"
    assert depth.triton_dims(batched=True) == [192, 320]


def test_fusion_spec_adds_the_lidar_input():
    spec = ModelSpec("fusion-n", fusion=True)
    assert [t.name for t in spec.network_inputs] == [IMAGES, LIDAR_DEPTH]


@pytest.mark.parametrize("hw", [(384, 630), (0, 640), (100, 640)])
def test_input_size_must_be_multiple_of_32(hw):
    with pytest.raises(SpecError, match="multiples of 32"):
        ModelSpec("x", input_hw=hw)


def test_round_trip_through_dict_keeps_hash():
    spec = ModelSpec("fusion-n", input_hw=(256, 512), fusion=True)
    again = ModelSpec.from_dict(spec.to_dict())
    assert again == spec and again.spec_hash() == spec.spec_hash()


def test_unknown_dtype_is_rejected():
    with pytest.raises(SpecError, match="dtype"):
        TensorSpec("x", "complex64", (1,))


def test_single_task_spec_has_only_its_outputs():
    spec = ModelSpec("cam-n-seg", tasks=("segmentation",))
    assert [t.name for t in spec.network_outputs] == ["seg_mask"]
    with pytest.raises(SpecError, match="tasks"):
        ModelSpec("x", tasks=("flow",))
