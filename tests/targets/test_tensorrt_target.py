"""Jetson targets: the explicit-quantization artifact, its rules check, build_engine.sh and trtexec's reports."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from edgekit.backends.trt_reports import parse_layer_info, parse_trtexec_log, summarize_engine
from edgekit.backends.trt_rules import require_explicit_quantization
from edgekit.backends.trtexec import build_script, precision_flags
from edgekit.errors import InputError, StageError
from edgekit.target import load_target

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "trt"


@pytest.fixture(scope="module")
def jetson(tmp_path_factory):
    """`compress --target jetson-orin-nano` on the MNIST example."""
    from edgekit.api import compress

    out = tmp_path_factory.mktemp("jetson") / "build"
    report = compress(model="example:mnist-student", data="example:mnist", target="jetson-orin-nano",
                      out=out, quant="static", prune=0)
    return out / "jetson-orin-nano", report


def test_jetson_artifact_passes_the_rules_and_ships_a_build_script(jetson):
    folder, report = jetson
    assert require_explicit_quantization(folder / "model.onnx")["qdq_nodes"] > 0
    script = folder / "build_engine.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "--onnx=model.onnx" in text and "--int8" in text and "--exportLayerInfo=layers.json" in text
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["target"]["runtime"] == "tensorrt"
    assert {"model.onnx", "build_engine.sh", "trt_rules.json"} <= set(manifest["files"])
    compile_stage = next(s for s in report["stages"] if s["name"] == "compile")
    assert compile_stage["metrics"]["trt_rule_violations"] == 0
    assert compile_stage["metrics"]["engine"].startswith(("built", "not built here"))
    assert report["final"]["accuracy"] > 90  # the Q/DQ graph, run on the host in ONNX Runtime


def test_rules_checker_rejects_a_hand_broken_jetson_graph(jetson, tmp_path):
    folder, _ = jetson
    model = onnx.load(str(folder / "model.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    zp = numpy_helper.to_array(inits[q.input[2]]).copy()
    zp[...] = 3  # asymmetric: TensorRT needs zero point 0
    inits[q.input[2]].CopyFrom(numpy_helper.from_array(zp, q.input[2]))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(StageError, match="zero point is not 0"):
        require_explicit_quantization(broken)


@pytest.mark.parametrize("version, flags", [((8, 5, 2), ["--int8", "--fp16"]), ((10, 3), ["--int8", "--fp16"]),
                                            ((10, 12), ["--stronglyTyped"]), ((11, 0), ["--stronglyTyped"])])
def test_trtexec_precision_flags_follow_the_tensorrt_version(version, flags):
    assert precision_flags(version) == flags


def _stub_trtexec(tmp_path: Path) -> Path:
    """Stands in for trtexec to check what the script passes it; it builds nothing."""
    stub = tmp_path / "trtexec"
    stub.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$ARGS_OUT"\necho "[I] TensorRT version: 10.3.0"\n')
    stub.chmod(0o755)
    return stub


def _run_script(folder: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(folder / "build_engine.sh"), "--verbose"], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60)


def test_build_script_passes_flags_dla_core_and_extra_arguments(tmp_path):
    folder = tmp_path / "agx"
    folder.mkdir()
    target = load_target("jetson-agx-orin")
    (folder / "build_engine.sh").write_text(build_script(target, {"x": [1, 1, 28, 28]}, dynamic=True))
    args_out = tmp_path / "args.txt"
    done = _run_script(folder, {"TRTEXEC": str(_stub_trtexec(tmp_path)), "ARGS_OUT": str(args_out),
                                "DLA_CORE": "1"})
    assert done.returncode == 0, done.stderr
    args = args_out.read_text().splitlines()
    assert "--shapes=x:1x1x28x28" in args and "--useDLACore=1" in args and "--allowGPUFallback" in args
    assert args[-1] == "--verbose" and "TensorRT version: 10.3.0" in (folder / "trtexec.log").read_text()


def test_build_script_refuses_dla_without_dla_and_missing_trtexec(tmp_path):
    folder = tmp_path / "nano"
    folder.mkdir()
    (folder / "build_engine.sh").write_text(build_script(load_target("jetson-orin-nano"), {"x": [1, 1, 8, 8]}, False))
    no_dla = _run_script(folder, {"TRTEXEC": str(_stub_trtexec(tmp_path)), "ARGS_OUT": str(tmp_path / "a"),
                                  "DLA_CORE": "0"})
    assert no_dla.returncode == 2 and "no DLA core" in no_dla.stderr
    missing = _run_script(folder, {"TRTEXEC": str(tmp_path / "nowhere" / "trtexec")})
    assert missing.returncode == 2 and "trtexec not found" in missing.stderr


@pytest.mark.parametrize("log, version, p50, p99, qps", [("trtexec-10.3.log", "10.3.0", 0.3262, 0.4410, 3021.44),
                                                          ("trtexec-8.5.log", "8.5.2", 0.6801, 0.8870, 1450.2)])
def test_trtexec_log_parser_reads_the_performance_summary(log, version, p50, p99, qps):
    parsed = parse_trtexec_log((SAMPLES / log).read_text())
    assert parsed["tensorrt_version"] == version and parsed["throughput_qps"] == qps
    assert parsed["latency"]["median"] == p50 and parsed["latency"]["p99"] == p99
    assert parsed["gpu_compute_time"]["median"] < parsed["latency"]["median"]


def test_trtexec_log_without_a_summary_is_refused():
    with pytest.raises(InputError, match="Performance summary"):
        parse_trtexec_log("[I] TensorRT version: 10.3.0\n[E] Error[4]: failed to parse model\n")


def test_layer_info_confirms_int8_layers_and_flags_reformats():
    summary = summarize_engine(SAMPLES / "layers.json", SAMPLES / "profile.json")
    assert summary["int8_compute_layers"] == ["/conv1/Conv + /relu1/Relu", "/conv2/Conv + /Add + /relu2/Relu"]
    assert summary["float_compute_layers"] == ["/fc/Gemm"]
    assert summary["reformat_layers"] == ["Reformatting CopyNode for Input Tensor 0 to /conv1/Conv + /relu1/Relu"]
    assert summary["reformat_share"] == pytest.approx(0.012 / 0.300)


def test_layer_info_without_detail_is_refused(tmp_path):
    names_only = tmp_path / "layers.json"
    names_only.write_text(json.dumps({"Layers": ["conv1", "fc"], "Bindings": ["x", "y"]}))
    with pytest.raises(InputError, match="profilingVerbosity=detailed"):
        parse_layer_info(names_only)


@pytest.mark.gpu
def test_engine_builds_with_tensorrt_on_a_matching_gpu(jetson, tmp_path):
    """Run with `python -m pytest -m gpu` where TensorRT and a GPU of the target's compute capability are."""
    from edgekit.backends import trt

    target = load_target("jetson-orin-nano")
    blocker = trt.local_build_blocker(target)
    if blocker is not None:
        pytest.skip(f"no engine build here: {blocker}")
    folder, _ = jetson
    shutil.copy(folder / "model.onnx", tmp_path / "model.onnx")
    built = trt.build_engine(tmp_path / "model.onnx", tmp_path / "model.engine", target.tensorrt,
                             tmp_path / "layers.json")
    assert built["engine_bytes"] > 0
    assert summarize_engine(tmp_path / "layers.json")["int8_compute_layers"]


def test_engine_report_command_reads_a_board_folder(tmp_path):
    from conftest import run_cli

    for name, sample in (("trtexec.log", "trtexec-10.3.log"), ("layers.json", "layers.json"),
                         ("profile.json", "profile.json")):
        shutil.copy(SAMPLES / sample, tmp_path / name)
    shown = run_cli("engine-report", tmp_path, "--json")
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["tensorrt_version"] == "10.3.0" and len(report["layers"]["int8_compute_layers"]) == 2
    (tmp_path / "trtexec.log").unlink()
    missing = run_cli("engine-report", tmp_path)
    assert missing.returncode == 2 and "build_engine.sh" in missing.stderr


def test_jetson_bundle_ships_the_tensorrt_apps_and_an_executable_build_script(jetson, tmp_path):
    import py_compile
    import tarfile

    from edgekit.api import pack, verify

    folder, _ = jetson
    bundle = pack(folder, tmp_path / "jetson.tar.gz")["bundle"]
    assert verify(bundle)["target"] == "jetson-orin-nano"
    with tarfile.open(bundle) as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
        tar.extractall(tmp_path / "x", filter="data")
    root = tmp_path / "x" / "jetson-orin-nano"
    assert modes["jetson-orin-nano/build_engine.sh"] == 0o755 and modes["jetson-orin-nano/model.onnx"] == 0o644
    py_compile.compile(str(root / "apps" / "python" / "run_tensorrt.py"), doraise=True)
    assert "enqueueV3" in (root / "apps" / "cpp" / "main.cpp").read_text()
    assert '"x", "float32", {1, 1, 28, 28}' in (root / "apps" / "cpp" / "model_io.h").read_text()
