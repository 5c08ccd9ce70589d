"""Read what trtexec wrote on the board: its timing summary, the engine's layer info and profile.

Formats: the log's "Performance summary" lines; `--exportLayerInfo` JSON (built with
`--profilingVerbosity=detailed`: {"Layers": [{"Name", "LayerType", "Inputs": [{"Name",
"Dimensions", "Format/Datatype"}], "Outputs": [...]}], "Bindings": [...]}); `--exportProfile`
JSON ([{"count": N}, {"name", "timeMs", "averageMs", "medianMs", "percentage"}, ...]).
The point is to confirm which layers really run in INT8 and to flag reformat layers, which
copy tensors between precisions or layouts and usually mean a Q/DQ pair is misplaced.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import InputError

_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*([0-9.eE+-]+)\s*ms")
_SUMMARY = re.compile(r"\]\s*(Latency|GPU Compute Time|Enqueue Time|H2D Latency|D2H Latency):\s*(.*)$")
_THROUGHPUT = re.compile(r"Throughput:\s*([0-9.eE+-]+)\s*qps")
_VERSION = re.compile(r"TensorRT version:\s*([0-9.]+)")
# layers whose work is arithmetic; a FP32 one of these in an INT8 engine is worth a look
COMPUTE = re.compile(r"conv|gemm|matmul|matrixmultiply|fullyconnected|deconv", re.IGNORECASE)


def parse_trtexec_log(text: str) -> dict:
    """Latency statistics (ms), throughput and the TensorRT version from trtexec's output."""
    stats: dict[str, dict[str, float]] = {}
    result: dict = {"tensorrt_version": None, "throughput_qps": None}
    for line in text.splitlines():
        if m := _SUMMARY.search(line):
            stats[_key(m.group(1))] = {f"p{pct}" if pct else stat: float(value)
                                       for stat, pct, value in _STAT.findall(m.group(2))}
        elif m := _THROUGHPUT.search(line):
            result["throughput_qps"] = float(m.group(1))
        elif (m := _VERSION.search(line)) and result["tensorrt_version"] is None:
            result["tensorrt_version"] = m.group(1)
    if "latency" not in stats:
        raise InputError("no 'Performance summary' in the trtexec log; run the build script to the end "
                         "(without --skipInference) and pass its trtexec.log")
    return {**result, **stats}


def _key(label: str) -> str:
    return label.lower().replace(" ", "_")


@dataclass
class EngineLayer:
    name: str
    kind: str
    input_precisions: list[str]
    output_precisions: list[str]
    average_ms: float | None = None

    @property
    def is_reformat(self) -> bool:
        return self.kind.lower() == "reformat" or self.name.startswith("Reformatting CopyNode")

    @property
    def is_compute(self) -> bool:
        return bool(COMPUTE.search(self.kind)) and not self.is_reformat

    @property
    def int8(self) -> bool:
        return "INT8" in self.input_precisions


def summarize(layers: list[EngineLayer]) -> dict:
    """INT8 and float compute layers, reformat layers and their share of the profiled time."""
    compute = [la for la in layers if la.is_compute]
    reformats = [la for la in layers if la.is_reformat]
    total_ms = sum(la.average_ms or 0.0 for la in layers)
    return {"layers": len(layers), "compute_layers": len(compute),
            "int8_compute_layers": [la.name for la in compute if la.int8],
            "float_compute_layers": [la.name for la in compute if not la.int8],
            "reformat_layers": [la.name for la in reformats],
            "reformat_share": sum(la.average_ms or 0.0 for la in reformats) / total_ms if total_ms > 0 else None}


def precision_of(fmt: str) -> str:
    """'Int8 NC/32HW32', 'Thirty-two wide channel vectorized row major Int8 format', 'Row major linear FP32' → INT8/FP32."""
    text = fmt.lower()
    for token, name in (("int8", "INT8"), ("fp16", "FP16"), ("half", "FP16"), ("bfloat16", "BF16"),
                        ("fp32", "FP32"), ("float", "FP32"), ("int32", "INT32"), ("fp8", "FP8"), ("int64", "INT64"),
                        ("bool", "BOOL"), ("uint8", "UINT8")):
        if token in text:
            return name
    return "UNKNOWN"


def parse_layer_info(path: Path) -> list[EngineLayer]:
    data = _read_json(path, "--exportLayerInfo")
    layers = data.get("Layers") if isinstance(data, dict) else None
    if not isinstance(layers, list) or (layers and not isinstance(layers[0], dict)):
        raise InputError(f"{path} has only layer names; rebuild with --profilingVerbosity=detailed "
                         "(the build script sets it)")

    def precisions(tensors) -> list[str]:
        return [precision_of(str(t.get("Format/Datatype", ""))) for t in tensors or []]

    return [EngineLayer(str(la.get("Name", "")), str(la.get("LayerType", la.get("ParameterType", ""))),
                        precisions(la.get("Inputs")), precisions(la.get("Outputs")))
            for la in layers if la.get("LayerType") not in ("signal", "wait")]


def parse_profile(path: Path) -> dict[str, float]:
    """Average ms per layer name; the first record of trtexec's profile is the run count."""
    data = _read_json(path, "--exportProfile")
    if not isinstance(data, list):
        raise InputError(f"{path} is not a trtexec profile (a JSON list); pass the file --exportProfile wrote")
    return {str(r["name"]): float(r["averageMs"]) for r in data
            if isinstance(r, dict) and "name" in r and "averageMs" in r}


def summarize_engine(layers_file: Path, profile_file: Path | None = None) -> dict:
    layers = parse_layer_info(layers_file)
    if profile_file is not None and profile_file.is_file():
        times = parse_profile(profile_file)
        for layer in layers:
            layer.average_ms = times.get(layer.name)
    return summarize(layers)


def _read_json(path: Path, flag: str):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{path} does not exist; trtexec writes it with {flag}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); pass the file trtexec wrote with {flag}") from exc


def engine_report(folder: Path) -> dict:
    """Everything build_engine.sh left in `folder`, read into one record."""
    folder = Path(folder)
    log = folder / "trtexec.log"
    if not log.is_file():
        raise InputError(f"{log} does not exist; run build_engine.sh on the board and copy its folder back")
    return {**parse_trtexec_log(log.read_text(errors="replace")),
            "layers": summarize_engine(folder / "layers.json", folder / "profile.json")}
