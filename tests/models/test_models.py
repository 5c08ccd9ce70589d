import pickle

import pytest
import torch

from edgekit.errors import ModelLoadError
from edgekit.models import load_model


def test_factory_with_safetensors(tiny_weights):
    model = load_model("tiny_models:resnet_tiny", tiny_weights)
    assert model.kind == "factory" and model.input_names == ["x"]
    assert model.module(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_pt_state_dict_loads_with_weights_only(tmp_path, tiny_weights):
    from safetensors.torch import load_file

    path = tmp_path / "w.pt"
    torch.save(load_file(str(tiny_weights)), path)
    model = load_model("tiny_models:resnet_tiny", path)
    assert model.module(torch.zeros(1, 1, 8, 8)).shape == (1, 10)


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pt_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"w": Payload()}, handle)
    with pytest.raises(ModelLoadError, match="holds pickled Python objects, which edgekit never loads") as caught:
        load_model("tiny_models:resnet_tiny", path)
    assert "weights_only=False" not in str(caught.value)


def test_weights_of_another_architecture_are_named(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.zeros(3)}, str(path))
    with pytest.raises(ModelLoadError, match="do not fit the model"):
        load_model("tiny_models:resnet_tiny", path)


def test_transformers_folder_loads_locally(tmp_path):
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    config = MobileNetV2Config(image_size=32, depth_multiplier=0.35, num_labels=4)
    MobileNetV2ForImageClassification(config).save_pretrained(tmp_path / "mnv2")
    model = load_model(str(tmp_path / "mnv2"))
    assert model.kind == "hf" and model.input_names == ["pixel_values"]
    assert model.module(torch.zeros(1, 3, 32, 32)).shape == (1, 4)


def test_folder_without_config_and_missing_paths():
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model("./no/such/student")
    with pytest.raises(ModelLoadError, match="cannot import"):
        load_model("no_such_module_xyz:build")


def test_invalid_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        load_model(str(bad))
