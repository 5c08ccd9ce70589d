"""ONNX Runtime: sessions, calibration, QDQ/dynamic quantization, ORT format conversion."""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from edgekit.data.ort_reader import SampleReader
from edgekit.data.samples import SampleSet
from edgekit.errors import MissingDependencyError, StageError
from edgekit.files import scratch_dir
from edgekit.progress import bar

CALIB_METHODS = ("minmax", "percentile", "entropy", "mse", "auto")
INTEGER_KERNELS = ("QLinearConv", "QLinearAdd", "QLinearMatMul", "QGemm", "QLinearGlobalAveragePool",
                   "QLinearMul", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool",
                   "MatMulInteger", "DynamicQuantizeMatMul", "ConvInteger", "MatMulIntegerToFloat")


def ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "dev") from exc
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    onnxruntime.set_default_logger_severity(3)
    return onnxruntime


def session(path: Path, threads: int = 1, optimized_path: Path | None = None):
    rt = ort()
    opts = rt.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_ALL
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    try:
        return rt.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types per failure
        raise StageError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:200]}") from exc


def run_model(path: Path, samples: SampleSet, input_names: list[str], threads: int = 1,
              batch_size: int = 64) -> np.ndarray:
    """Outputs of the first model output over all samples, concatenated on axis 0."""
    sess = session(path, threads)
    outs = []
    for inputs, _ in samples.batches(batch_size):
        feed = {n: inputs[n] for n in input_names}
        outs.append(sess.run(None, feed)[0])
    return np.concatenate(outs) if samples.batchable else np.stack(outs)


def preprocess(fp32: Path, out: Path) -> Path:
    """ORT's recommended pre-quantization pass: shape inference and graph clean-up."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with _quiet():
        quant_pre_process(str(fp32), str(out), skip_symbolic_shape=True)
    return out


def calibrate(fp32: Path, samples: SampleSet, input_names: list[str], method: str,
              work: Path, report: dict | None = None) -> dict[str, list[float]]:
    """Activation ranges {tensor: [low, high]} of one method; see `calibrate_methods`."""
    return calibrate_methods(fp32, samples, input_names, (method,), work, report)[method]


def calibrate_methods(fp32: Path, samples: SampleSet, input_names: list[str], methods, work: Path,
                      report: dict | None = None) -> dict[str, dict[str, list[float]]]:
    """Activation ranges {tensor: [low, high]} with streaming statistics (bounded memory).

    `report`, when given, receives the sample count and how far the ranges
    still moved over the second half of the samples (a large drift means more
    calibration data would change the result).
    """
    from edgekit.quant.calibrators import compute_range

    halfway: dict[str, tuple[float, float]] = {}
    stats = collect_statistics(fp32, samples, input_names, work, snapshot_at=len(samples) // 2, snapshot=halfway)
    if report is not None:
        drift = [abs((h.seen_max - h.seen_min) - (hi - lo)) / max(h.seen_max - h.seen_min, 1e-12)
                 for name, h in stats.items() if (lo_hi := halfway.get(name)) for lo, hi in [lo_hi]]
        report.update({"samples": len(samples), "tensors": len(stats),
                       "range_drift_second_half": float(max(drift)) if drift else 0.0})
    return {method: {name: list(compute_range(hist, method)) for name, hist in sorted(stats.items())}
            for method in methods}


def collect_statistics(fp32: Path, samples: SampleSet, input_names: list[str], work: Path,
                       snapshot_at: int = 0, snapshot: dict | None = None):
    """Run the model once per sample with every float activation exposed; fold each into a histogram."""
    import onnx

    from edgekit.quant.calibrators import StreamingHistogram

    model = onnx.load(str(fp32))
    tensors = calibration_tensors(model)
    known = {o.name for o in model.graph.output}
    infos = {vi.name: vi for vi in list(model.graph.value_info) + list(model.graph.input)}
    model.graph.output.extend(infos[t] for t in tensors if t not in known and t in infos)
    augmented = Path(work) / "augmented.onnx"
    onnx.save(model, str(augmented))
    sess = session(augmented)
    names = [o.name for o in sess.get_outputs()]
    stats = {t: StreamingHistogram() for t in tensors}
    reader = SampleReader(samples, input_names)
    count = 0
    with bar("calibration statistics", len(samples)) as advance:
        while (feed := reader.get_next()) is not None:
            for name, value in zip(names, sess.run(None, feed)):
                if name in stats:
                    stats[name].update(value)
            count += 1
            advance(len(next(iter(feed.values()))) if samples.batchable else 1)
            if snapshot is not None and count == snapshot_at:
                snapshot.update({t: (h.seen_min, h.seen_max) for t, h in stats.items()})
    augmented.unlink(missing_ok=True)
    return stats


def calibration_tensors(model) -> list[str]:
    """Float, non-constant inputs and outputs of every node: what the QDQ quantizer may quantize
    (the same rule as ORT's calibrators)."""
    from onnx import TensorProto

    infos = {vi.name: vi for vi in list(model.graph.value_info) + list(model.graph.output)
             + list(model.graph.input)}
    constants = {i.name for i in model.graph.initializer}
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16}
    chosen = []
    for node in model.graph.node:
        for name in list(node.input) + list(node.output):
            info = infos.get(name)
            if (info is not None and name not in constants and name not in chosen
                    and info.type.tensor_type.elem_type in floats):
                chosen.append(name)
    return chosen


# Q/DQ presets per runtime (activation type, symmetric activations, int32 biases). ort-u8s8: uint8
# activations and int8 per-channel symmetric weights, what ORT fuses into QLinearConv/QLinearAdd/QGemm
# on x86-64 (int8 activations are not fused there without VNNI and ran slower than FP32). ort-s8s8:
# int8 activations, ORT's documented first choice on CPU, fused on ARM. trt-s8s8: symmetric int8
# everywhere (zero point 0) with FP32 biases, TensorRT's explicit quantization; see backends.trt_rules.
PRESETS = {"ort-u8s8": ("QUInt8", False, True), "ort-s8s8": ("QInt8", False, True),
           "trt-s8s8": ("QInt8", True, False)}


def quantize_qdq(fp32: Path, out: Path, ranges: dict[str, list[float]], method: str,
                 exclude: list[str] | None = None, preset: str = "ort-u8s8") -> Path:
    """Static QDQ quantization with the given ranges (no second calibration pass)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    activation, symmetric, quantize_bias = PRESETS[preset]
    op_types, attention_matmuls = transformer_placement(fp32)
    with scratch_dir("q") as tmp:
        cache = Path(tmp) / "ranges.json"
        tensors = TensorsData(_method(method), {k: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
                                                for k, (lo, hi) in ranges.items()})
        save_tensors_data(tensors, cache)
        with _quiet():
            quantize_static(
                str(fp32), str(out), calibration_data_reader=None, calibration_cache_path=str(cache),
                quant_format=QuantFormat.QDQ, activation_type=getattr(QuantType, activation),
                weight_type=QuantType.QInt8, per_channel=True, calibrate_method=_method(method),
                nodes_to_exclude=[*(exclude or []), *attention_matmuls], op_types_to_quantize=op_types,
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                               "QuantizeBias": quantize_bias},
            )
    return out


def is_attention_graph(graph) -> bool:
    """A softmax between MatMuls: the graphs that get transformer treatment (fusion, linear-only INT8)."""
    ops = [n.op_type for n in graph.node]
    return "Softmax" in ops and ops.count("MatMul") >= 2


def transformer_placement(fp32: Path) -> tuple[list[str] | None, list[str]]:
    """For attention graphs: quantize the weight-bearing MatMul/Gemm layers only.

    Quantizing softmax, the attention-score and context MatMuls (two activations), GELU and the
    residual adds of a small encoder cost 4.5 points of accuracy on BERT-tiny and ran no faster;
    the linear layers hold nearly all the weights and MACs. Other graphs: None (every op type).
    """
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    if not is_attention_graph(graph):
        return None, []
    weights = {i.name for i in graph.initializer}
    constants = {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    activation_only = [n.name for n in graph.node if n.op_type == "MatMul"
                       and not any(i in weights or i in constants for i in n.input)]
    return ["MatMul", "Gemm"], activation_only


def quantized_activations(path: Path) -> set[str]:
    """Float tensors that a QDQ graph quantizes (weights excluded); a graph output that the
    quantizer renamed is reported under its original name."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return {n.input[0].removesuffix("_QuantizeLinear_Input") for n in graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in weights}


def activation_format(preset: str) -> dict[str, bool]:
    """How a preset stores activations, as ActivationFakeQuant takes it."""
    activation, symmetric, _ = PRESETS[preset]
    return {"signed": activation == "QInt8", "symmetric": symmetric}


def quantize_dynamic(fp32: Path, out: Path, feed: dict | None = None) -> dict:
    """Dynamic INT8 for Linear/MatMul-heavy models; transformer graphs are also tried fused first.

    ORT's offline transformer fusions do not always pay: on small encoders the session's own
    fusions on the plain graph can run faster. With a sample `feed`, both quantized graphs are
    timed here and the faster is kept; without one, the fused graph is. The fused graph holds
    contrib ops without type information for the quantizer, hence DefaultTensorType=float.
    """
    with scratch_dir("dyn") as tmp:
        fused = fuse_transformer(fp32, Path(tmp) / "fused.onnx")
        if fused is None:
            _quantize_dynamic(fp32, out)
            return {"transformer_fusion": "not a transformer graph"}
        _quantize_dynamic(fused, Path(tmp) / "fused-int8.onnx")
        if feed is None:
            shutil.copyfile(Path(tmp) / "fused-int8.onnx", out)
            return {"transformer_fusion": "kept (not timed)"}
        _quantize_dynamic(fp32, Path(tmp) / "plain-int8.onnx")
        fused_ms, plain_ms = _faster_of(Path(tmp) / "fused-int8.onnx", Path(tmp) / "plain-int8.onnx", feed)
        keep = "fused" if fused_ms <= plain_ms else "plain"
        shutil.copyfile(Path(tmp) / f"{keep}-int8.onnx", out)
    return {"transformer_fusion": "kept" if keep == "fused" else "dropped (slower here)",
            "fused_p50_ms": fused_ms, "plain_p50_ms": plain_ms}


def _quantize_dynamic(src: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic as ort_quantize_dynamic

    with _quiet():
        ort_quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": 1})


def _faster_of(a: Path, b: Path, feed: dict, rounds: int = 3) -> tuple[float, float]:
    """Best-of-rounds median latency of two graphs, interleaved so machine load hits both alike."""
    from edgekit.measure.latency import time_runs

    sessions = [session(a), session(b)]
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for k, sess in enumerate(sessions):
            best[k] = min(best[k], float(np.median(time_runs(sess, feed, 10, 100))))
    return best[0], best[1]


def fuse_transformer(fp32: Path, out: Path) -> Path | None:
    """ORT's transformer fusions (LayerNorm, Gelu, attention where matched) for graphs with attention;
    None for other graphs or where the optimizer cannot handle the graph."""
    import onnx

    if not is_attention_graph(onnx.load(str(fp32), load_external_data=False).graph):
        return None
    from onnxruntime.transformers import optimizer

    try:
        with _quiet():
            fused = optimizer.optimize_model(str(fp32), model_type="bert", num_heads=0, hidden_size=0)
            fused.save_model_to_file(str(out))
    except Exception:  # the optimizer raises many types on graphs it does not recognise; plain quantization still works
        return None
    return out


def optimized_op_counts(path: Path) -> Counter:
    """Op types in the graph ORT actually runs (after its fusions), for placement checks."""
    import onnx

    with scratch_dir("opt") as tmp:
        opt = Path(tmp) / "optimized.onnx"
        rt = ort()
        opts = rt.SessionOptions()
        opts.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(opt)
        rt.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return Counter(n.op_type for n in onnx.load(str(opt)).graph.node)


def integer_kernels(counts: Counter) -> int:
    return sum(counts[k] for k in INTEGER_KERNELS)


def convert_to_ort(model: Path, out_dir: Path, platform: str = "amd64") -> tuple[Path, Path]:
    """ORT format (Fixed optimization style: the Runtime style ran 6x slower for QDQ on CPU)
    plus the required-operators config for reduced-size ORT builds.

    Fixed-style optimizations are saved into the file, so they must be the
    board's: `platform="arm"` allows int8 QDQ fusion (ORT does it on ARM, not on
    x86 without VNNI) and leaves out the x86-only NCHWc layout.

    ORT's serializer orders some tables by a hash seeded from memory addresses.
    With address-space randomization off, those addresses still move with the
    size of everything the child process holds: its environment, its argument
    strings and the folder path it resolves. So the child runs with a fixed
    environment, in a scratch folder of fixed-length path, on a fixed file name:
    the same model then gives the same bytes from any folder and shell.
    """
    with scratch_dir("ort", _fixed_scratch_base()) as tmp:
        (Path(tmp) / "model.onnx").write_bytes(model.read_bytes())
        cmd = [sys.executable, "-I", "-m", "onnxruntime.tools.convert_onnx_models_to_ort", ".",
               "--optimization_style", "Fixed", "--target_platform", platform]
        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_no_aslr, timeout=1800,
                              cwd=tmp, env=FIXED_CHILD_ENV)
        ort_files = list(Path(tmp).glob("*.ort"))
        configs = list(Path(tmp).glob("*.config"))
        if proc.returncode != 0 or not ort_files or not configs:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise StageError(f"ORT format conversion of {model.name} failed: {tail[0][:200]}")
        out_dir.mkdir(parents=True, exist_ok=True)
        ort_dst = out_dir / (model.stem + ".ort")
        cfg_dst = out_dir / "required_operators.config"
        ort_dst.write_bytes(ort_files[0].read_bytes())
        cfg_dst.write_text(_strip_paths(configs[0].read_text()))
    return ort_dst, cfg_dst


FIXED_CHILD_ENV = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "OMP_NUM_THREADS": "1"}


def _fixed_scratch_base() -> str | None:
    """/tmp where it exists (same path length whatever TMPDIR says), else the system temp folder."""
    import os

    return "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else None


def _no_aslr() -> None:
    """Runs in the child before exec: personality(ADDR_NO_RANDOMIZE) on Linux, else nothing."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.personality(0x0040000)
    except (OSError, AttributeError):
        pass


def _strip_paths(config: str) -> str:
    """The config's header names the temp folder it was made in; drop it for reproducible bytes."""
    return "\n".join(line for line in config.splitlines() if not line.startswith("#")) + "\n"


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    # Only labels the cache file ORT reads back; the ranges themselves are edgekit's.
    return {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy, "mse": CalibrationMethod.MinMax,
            "auto": CalibrationMethod.MinMax}[name]


@contextlib.contextmanager
def _quiet():
    """ORT's quantizer prints advice and progress to stdout/stderr; keep our output clean."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)
