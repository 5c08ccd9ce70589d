"""ONNX Runtime as a runtime: sessions, running a model, graph op counts, ORT format conversion.

The post-training quantization that uses it (statistics, Q/DQ placement, dynamic INT8) lives in ptq/."""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from edgekit.data.samples import SampleSet, stack_outputs
from edgekit.errors import MissingDependencyError, StageError
from edgekit.files import scratch_dir

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
    opts.log_severity_level = 4  # a failing kernel raises with the same message; callers decide what to say
    if optimized_path is not None:
        opts.optimized_model_filepath = str(optimized_path)
    try:
        return rt.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types per failure
        raise StageError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:200]}") from exc


def run_model(path: Path, samples: SampleSet, input_names: list[str], threads: int = 1,
              batch_size: int = 64) -> np.ndarray:
    """Outputs of the first model output over all samples, concatenated on axis 0."""
    return next(iter(run_outputs(path, samples, input_names, threads, batch_size).values()))


def run_outputs(path: Path, samples: SampleSet, input_names: list[str], threads: int = 1,
                batch_size: int = 64) -> dict[str, np.ndarray | list[np.ndarray]]:
    """Every model output over all samples, by name: concatenated on axis 0, or per sample where shapes vary.

    A graph exported with a fixed batch dimension (often 1) is fed batches of that size."""
    sess = session(path, threads)
    fixed = sess.get_inputs()[0].shape[0] if sess.get_inputs() and sess.get_inputs()[0].shape else None
    if isinstance(fixed, int) and fixed > 0:
        batch_size = fixed
    names = [o.name for o in sess.get_outputs()]
    outs: dict[str, list] = {n: [] for n in names}
    for inputs, _ in samples.batches(batch_size):
        for name, value in zip(names, sess.run(None, {n: inputs[n] for n in input_names})):
            outs[name].append(value)
    join = (lambda v: np.concatenate(v)) if samples.batchable else stack_outputs
    return {name: join(values) for name, values in outs.items()}


def preprocess(fp32: Path, out: Path) -> Path:
    """ORT's recommended pre-quantization pass: shape inference and graph clean-up."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with quiet():
        quant_pre_process(str(fp32), str(out), skip_symbolic_shape=True)
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
        try:
            rt.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types per failure
            raise StageError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:200]}") from exc
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


@contextlib.contextmanager
def quiet():
    """ORT's quantizer prints advice and progress to stdout/stderr; keep our output clean."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)
