"""Bad input: one line naming problem and fix, exit code 2, no traceback, nothing written."""

import numpy as np
import pytest

from conftest import run_cli

TINY = "tiny_models:resnet_tiny"


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_npz, tiny_weights):
    root = tmp_path_factory.mktemp("bad")
    x = np.load(digits_npz)["x"]
    np.savez(root / "rgb.npz", x=np.repeat(x[:50], 3, axis=1))
    np.savez(root / "labels42.npz", x=x[:50], y=np.full(50, 42))
    (root / "corrupt.onnx").write_bytes(b"\x08garbage")
    (root / "corrupt.safetensors").write_bytes(b"\x00" * 40)
    (root / "corrupt.npz").write_bytes(b"PK\x03\x04broken")
    (root / "recipe.yaml").write_text("model: x\nlearning_rate: 3\n")
    (root / "existing").mkdir()
    (root / "existing" / "keep.txt").write_text("user data")
    return {"root": root, "data": str(digits_npz), "weights": str(tiny_weights)}


def _compress(files, *extra, model=TINY, weights=True, data=None, out="out"):
    args = ["compress", "--model", model, "--data", data or files["data"], "--out", str(files["root"] / out)]
    if weights:
        args += ["--weights", files["weights"]]
    return run_cli(*args, *extra)


CASES = {
    "missing model": (dict(model="./no/such/student", weights=False), "does not exist"),
    "corrupt onnx": (dict(model="{root}/corrupt.onnx", weights=False), "not a valid ONNX model"),
    "corrupt weights": (dict(extra=("--weights", "{root}/corrupt.safetensors"), weights=False), "corrupt"),
    "shape mismatch": (dict(data="{root}/rgb.npz"), "does not fit the model"),
    "unknown target": (dict(extra=("--target", "pdp-11")), "unknown target"),
    "labels out of range": (dict(data="{root}/labels42.npz"), "labels"),
    "ratio too big": (dict(extra=("--prune", "1.5")), "outside [0, 1)"),
    "ratio negative": (dict(extra=("--prune", "-0.1")), "outside [0, 1)"),
    "missing data": (dict(data="{root}/nope.npz"), "does not exist"),
    "corrupt data": (dict(data="{root}/corrupt.npz"), "corrupt"),
    "unknown quant": (dict(extra=("--quant", "int4")), "--quant"),
    "bad split": (dict(extra=("--split", "0.5,0.6")), "--split"),
    "recipe unknown key": (dict(extra=("--recipe", "{root}/recipe.yaml")), "learning-rate"),
    "existing output": (dict(out="existing"), "--force"),
    "missing layer ratios": (dict(extra=("--layer-ratios", "{root}/none.json")), "prune scan"),
    "unknown importance": (dict(extra=("--importance", "random")), "--importance"),
    "unknown feature-kd layer": (dict(extra=("--quant", "qad", "--feature-kd", "block9")), "no single layer 'block9'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_exit_2_and_writes_nothing(files, case):
    spec, expected = CASES[case]
    fill = lambda v: v.format(root=files["root"])  # noqa: E731
    extra = tuple(fill(v) for v in spec.get("extra", ()))
    out = spec.get("out", f"out-{case.replace(' ', '-')}")
    result = _compress(files, *extra, model=fill(spec.get("model", TINY)), weights=spec.get("weights", True),
                       data=fill(spec["data"]) if "data" in spec else None, out=out)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    if case == "existing output":
        assert [p.name for p in (files["root"] / "existing").iterdir()] == ["keep.txt"]
    else:
        assert not (files["root"] / out).exists()


def test_onnx_model_with_pruning_is_refused(files, tmp_path):
    import torch

    from tiny_models import resnet_tiny

    path = tmp_path / "m.onnx"
    torch.onnx.export(resnet_tiny().eval(), (torch.zeros(1, 1, 8, 8),), str(path), input_names=["x"], dynamo=False)
    result = _compress(files, "--prune", "0.5", model=str(path), weights=False, out="out-onnx-prune")
    assert result.returncode == 2 and "pruning and QAD need a PyTorch model" in result.stderr


def test_debug_shows_the_traceback(files):
    result = run_cli("--debug", "compress", "--model", "./no/such/student", "--data", files["data"],
                     "--out", str(files["root"] / "dbg"))
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_bench_on_a_folder_without_manifest(files):
    result = run_cli("bench", str(files["root"]), "--data", files["data"])
    assert result.returncode == 2 and "manifest.json" in result.stderr
