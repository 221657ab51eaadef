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


@pytest.mark.parametrize("hw", [(0, 640), (360, -1)])
def test_input_size_must_be_positive(hw):
    with pytest.raises(SpecError, match="positive"):
        ModelSpec("x", input_hw=hw)


def test_any_positive_size_is_a_valid_contract():
    # the multiple-of-32 rule is the registered networks' (exporters.networks), not the contract's
    spec = ModelSpec("byom", input_hw=(360, 640), tasks=("segmentation",))
    assert spec.network_outputs[0].dims == ("batch", 360, 640)


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
