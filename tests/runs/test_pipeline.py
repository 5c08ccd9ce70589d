"""End to end on a real residual CNN and real digits: every stage runs, nothing is faked."""

import json

import onnx
import pytest

from edgekit.api import compress
from edgekit.backends.ort import integer_kernels, optimized_op_counts
from edgekit.errors import OutputExistsError
from edgekit.files import sha256_file

TINY = "tiny_models:resnet_tiny"


def _run(out, digits_npz, tiny_weights, **extra):
    options = dict(model=TINY, weights=str(tiny_weights), data=str(digits_npz), target="x86-64", out=out,
                   prune=0.5, quant="static", epochs=2, batch_size=64)
    options.update(extra)
    return compress(**options)


@pytest.fixture(scope="module")
def static_run(tmp_path_factory, digits_npz, tiny_weights):
    out = tmp_path_factory.mktemp("static") / "build"
    return out, _run(out, digits_npz, tiny_weights)


def test_report_has_required_fields(static_run):
    out, report = static_run
    for key in ("fp32", "final"):
        entry = report[key]
        assert entry["size_bytes"] > 0 and set(entry["latency_ms"]) >= {"p50", "p90", "p99"}
        assert entry["accuracy"] is not None and 0 <= entry["agreement"] <= 1
        assert isinstance(entry["stages"], list)
    assert report["final"]["stages"] == ["source", "prune", "calibrate", "export", "compile", "bench"]
    on_disk = json.loads((out / "x86-64" / "report.json").read_text())
    assert on_disk["final"]["size_bytes"] == report["final"]["size_bytes"]
    assert (out / "x86-64" / "report.png").stat().st_size > 1000
    assert "| final |" in (out / "x86-64" / "report.md").read_text()


def test_output_files_and_manifest_hashes(static_run):
    out, _ = static_run
    folder = out / "x86-64"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {"model.onnx", "model.ort", "required_operators.config", "reference.npz"} <= set(manifest["files"])
    assert not {"report.json", "report.md", "report.png"} & set(manifest["files"])  # timings vary by run
    for name, entry in manifest["files"].items():
        assert sha256_file(folder / name) == entry["sha256"], name
    assert manifest["inputs"][0]["name"] == "x" and manifest["inputs"][0]["dtype"] == "float32"
    assert manifest["settings"]["prune"] == 0.5 and "onnxruntime" in manifest["versions"]
    assert set(manifest["inputs_hash"]["data"]) == {"train", "calib", "eval"}
    assert "ai.onnx" in (folder / "required_operators.config").read_text()


def test_int8_graph_fuses_into_integer_kernels(static_run):
    """Every conv runs as QLinearConv and both residual adds as QLinearAdd in ORT's optimized graph."""
    out, _ = static_run
    fp32 = onnx.load(str(out / "work" / "01-source" / "fp32.onnx"))
    convs = sum(n.op_type == "Conv" for n in fp32.graph.node)
    adds = sum(n.op_type == "Add" for n in fp32.graph.node)
    counts = optimized_op_counts(out / "x86-64" / "model.onnx")
    assert counts["QLinearConv"] == convs and counts["QLinearAdd"] == adds
    assert counts["Conv"] == 0 and integer_kernels(counts) >= convs + adds


def test_pruned_int8_is_smaller(static_run):
    _, report = static_run
    assert report["final"]["size_bytes"] < report["fp32"]["size_bytes"] / 6
    assert report["final"]["macs"] < report["fp32"]["macs"] * 0.5


def test_qad_recovers_what_pruning_and_rounding_lost(tmp_path, digits_npz, tiny_weights):
    report = _run(tmp_path / "qad", digits_npz, tiny_weights, quant="qad", epochs=6)
    qad = next(s for s in report["stages"] if s["name"] == "qad")["metrics"]
    prune = next(s for s in report["stages"] if s["name"] == "prune")["metrics"]
    assert report["final"]["agreement"] > 0.9 > prune["agreement"]
    assert abs(qad["fakequant_agreement"] - report["final"]["agreement"]) < 0.03
    assert set(qad["loss_history"][-1]) >= {"kd", "task", "total"}


def test_existing_output_is_refused_without_force(static_run, digits_npz, tiny_weights):
    out, _ = static_run
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(OutputExistsError, match="--force"):
        _run(out, digits_npz, tiny_weights)
    assert sorted(p.name for p in out.iterdir()) == before


def test_resume_reuses_finished_stages(static_run, digits_npz, tiny_weights):
    out, _ = static_run
    work = out / "work"
    stamps = {p.name: (p / "artifact.json").stat().st_mtime_ns for p in work.iterdir()}
    _run(out, digits_npz, tiny_weights, resume=True)
    assert {p.name: (p / "artifact.json").stat().st_mtime_ns for p in work.iterdir()} == stamps


def test_changed_setting_reruns_from_that_stage(tmp_path, static_run, digits_npz, tiny_weights):
    out, _ = static_run
    work = out / "work"
    source_stamp = (work / "01-source" / "artifact.json").stat().st_mtime_ns
    calib_stamp = (work / "03-calibrate" / "artifact.json").stat().st_mtime_ns
    _run(out, digits_npz, tiny_weights, resume=True, calib="percentile")
    assert (work / "01-source" / "artifact.json").stat().st_mtime_ns == source_stamp
    assert (work / "03-calibrate" / "artifact.json").stat().st_mtime_ns != calib_stamp


@pytest.mark.parametrize("quant", [pytest.param("qad", marks=pytest.mark.slow), "static"])  # qad: 25 s
def test_same_inputs_and_seed_give_identical_bytes(tmp_path, digits_npz, tiny_weights, quant):
    a = _run(tmp_path / "a", digits_npz, tiny_weights, quant=quant)
    b = _run(tmp_path / "b", digits_npz, tiny_weights, quant=quant)
    for name in ("model.onnx", "model.ort", "required_operators.config"):
        assert sha256_file(tmp_path / "a" / "x86-64" / name) == sha256_file(tmp_path / "b" / "x86-64" / name)
    assert a["final"]["accuracy"] == b["final"]["accuracy"]


def test_dynamic_and_onnx_input_paths(tmp_path, digits_npz, tiny_weights, static_run):
    out, _ = static_run
    report = _run(tmp_path / "dyn", digits_npz, tiny_weights, quant="dynamic", prune=0.0)
    assert report["final"]["agreement"] > 0.9
    onnx_report = compress(model=str(out / "work" / "01-source" / "fp32.onnx"), data=str(digits_npz),
                           target="arm64", out=tmp_path / "onnx", quant="static")
    assert onnx_report["final"]["stages"] == ["source", "calibrate", "export", "compile", "bench"]
    assert onnx_report["final"]["agreement"] > 0.9
    assert onnx_report["final"]["size_bytes"] < onnx_report["fp32"]["size_bytes"] / 3


def test_python_api_takes_a_module_and_batches(tmp_path, digits_npz, tiny_weights):
    import numpy as np
    import torch

    from edgekit.models import load_model

    module = load_model(TINY, tiny_weights).module.model
    arrays = np.load(digits_npz)
    batches = [(torch.from_numpy(arrays["x"][i:i + 100]), torch.from_numpy(arrays["y"][i:i + 100]))
               for i in range(0, 1000, 100)]
    report = compress(module, batches, target="arm64", out=tmp_path / "api", quant="static")  # post-training split: 0,0.6,0.4
    assert report["final"]["eval_samples"] == 400 and report["final"]["agreement"] > 0.9
    assert (tmp_path / "api" / "arm64" / "model.ort").is_file()


@pytest.mark.slow  # 16 s; the schedule's parts are tested alone in tests/distill
def test_qad_alpha_schedule_and_early_stopping(tmp_path, digits_npz, tiny_weights):
    report = _run(tmp_path / "es", digits_npz, tiny_weights, quant="qad", prune=0.0, epochs=4, alpha=0.8,
                  alpha_end=0.2, patience=1)
    history = next(s for s in report["stages"] if s["name"] == "qad")["metrics"]["loss_history"]
    assert history[0]["alpha"] == 0.8 and all("validation" in h for h in history)
    assert len(history) == 4 or history[-1]["validation"] <= max(h["validation"] for h in history[:-1])


def test_qad_with_learned_scales_and_feature_kd_exports_what_it_trained(tmp_path, digits_npz, tiny_weights):
    report = _run(tmp_path / "lsq", digits_npz, tiny_weights, quant="qad", prune=0.0, epochs=3,
                  learn_scales=True, feature_kd=["block2"], feature_weight=0.5)
    stages = {s["name"]: s["metrics"] for s in report["stages"]}
    qad, export = stages["qad"], stages["export"]
    assert all("feature" in h for h in qad["loss_history"])
    assert qad["simulated_tensors"] == qad["quantized_tensors"] and not qad["not_simulated"]
    # The graph ORT runs rounds as training did: same top-1 on the evaluation split.
    assert abs(export["agreement"] - qad["fakequant_agreement"]) <= 0.01


def test_auto_calibration_choice_reaches_qad(tmp_path, digits_npz, tiny_weights):
    report = _run(tmp_path / "auto", digits_npz, tiny_weights, quant="qad", prune=0.0, epochs=2, calib="auto")
    stages = {s["name"]: s for s in report["stages"]}
    chosen = stages["calibrate"]["metrics"]["chosen_method"]
    assert chosen in stages["calibrate"]["metrics"]["method_scores"]
    assert stages["export"]["metrics"]["agreement"] >= 0.95


def test_an_onnx_model_with_a_fixed_batch_of_one_is_quantized(tmp_path, digits_npz, tiny_weights):
    """Graphs exported by other tools often fix the batch at 1; evaluation then feeds one sample at a time."""
    import torch

    from edgekit.models import load_model

    path = tmp_path / "batch1.onnx"
    module = load_model(TINY, tiny_weights).module.model.eval()
    torch.onnx.export(module, (torch.zeros(1, 1, 8, 8),), str(path), input_names=["x"], dynamo=False)
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    report = compress(model=str(path), data=str(digits_npz), target="x86-64", out=tmp_path / "o", quant="static")
    assert report["final"]["eval_samples"] == report["fp32"]["eval_samples"] > 300
    assert report["final"]["agreement"] > 0.9


def test_a_model_that_is_not_faster_on_its_own_host_says_so():
    import platform
    from types import SimpleNamespace

    from edgekit.progress import console
    from edgekit.runs.compress import note_no_speedup

    host = SimpleNamespace(arch=platform.machine())
    other = SimpleNamespace(arch="aarch64" if platform.machine() != "aarch64" else "x86_64")
    final = lambda fp32, last: SimpleNamespace(history=[SimpleNamespace(  # noqa: E731
        name="bench", metrics={"fp32_p50_ms": fp32, "final_p50_ms": last})])
    said = []
    for target, artifact in ((host, final(2.0, 2.5)), (host, final(2.0, 1.0)), (other, final(2.0, 2.5))):
        with console.capture() as captured:
            note_no_speedup(target, artifact)
        said.append(captured.get())
    assert "0.80x the FP32 model's speed" in said[0] and "--quant none" in said[0]
    assert said[1] == "" and said[2] == ""  # faster; or timed on a host that is not the target
