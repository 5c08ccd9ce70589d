"""Targets are data: one YAML file per board, validated by one model."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgekit.errors import TargetError
from edgekit.files import data_dir, read_mapping
from edgekit.settings import BenchSettings

Preset = Literal["ort-u8s8", "ort-s8s8", "trt-s8s8"]


class QuantScheme(BaseModel):
    """How a target's INT8 graph stores numbers, decided once from its preset; calibration, QAD's fake
    quantization and export all read this object, none of them the preset's name.

    ort-u8s8: uint8 activations and int8 per-channel symmetric weights, what ORT fuses into
    QLinearConv/QLinearAdd/QGemm on x86-64 (int8 activations are not fused there without VNNI and
    ran slower than FP32). ort-s8s8: int8 activations, ORT's documented first choice on CPU, fused on
    ARM. trt-s8s8: symmetric int8 everywhere (zero point 0) with FP32 biases, TensorRT's explicit
    quantization, whose graph rules (backends.trt_rules) the exported graph must pass.
    """

    model_config = ConfigDict(frozen=True)
    preset: Preset
    activation_type: Literal["QUInt8", "QInt8"]
    symmetric_activations: bool
    int32_bias: bool
    explicit_quantization: bool

    @property
    def signed_activations(self) -> bool:
        return self.activation_type == "QInt8"


SCHEMES = {s.preset: s for s in (
    QuantScheme(preset="ort-u8s8", activation_type="QUInt8", symmetric_activations=False, int32_bias=True,
                explicit_quantization=False),
    QuantScheme(preset="ort-s8s8", activation_type="QInt8", symmetric_activations=False, int32_bias=True,
                explicit_quantization=False),
    QuantScheme(preset="trt-s8s8", activation_type="QInt8", symmetric_activations=True, int32_bias=False,
                explicit_quantization=True),
)}


class TensorRTSettings(BaseModel):
    """The board's TensorRT stack: its version picks trtexec's flags, its GPU decides engine reuse."""

    model_config = ConfigDict(extra="forbid")
    jetpack: str
    version: str = Field(pattern=r"^\d+\.\d+(\.\d+)*$")
    compute_capability: str = Field(pattern=r"^\d+\.\d+$")
    dla_cores: int = Field(0, ge=0)
    workspace_mb: int = Field(1024, ge=16)

    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split("."))


class Target(BaseModel):
    """What a board is; rules about what its runtime accepts live in backends/."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    arch: Literal["aarch64", "x86_64"]
    cpu: str = ""
    runtime: Literal["onnxruntime", "tensorrt"]
    device: Literal["cpu", "gpu"] = "cpu"
    tensorrt: TensorRTSettings | None = None
    precisions: list[Literal["int8", "fp32"]] = ["int8", "fp32"]
    quant_preset: Preset = "ort-u8s8"
    round_to: int = Field(8, ge=1)
    opset: int = Field(17, ge=13, le=21)
    ort_format: bool = True
    bench: BenchSettings = BenchSettings()

    @property
    def scheme(self) -> QuantScheme:
        return SCHEMES[self.quant_preset]

    @property
    def ort_platform(self) -> Literal["arm", "amd64"]:
        """The platform ORT's Fixed-style optimizations are saved for."""
        return "arm" if self.arch == "aarch64" else "amd64"

    @model_validator(mode="after")
    def _runtime_matches(self) -> "Target":
        if self.runtime == "tensorrt":
            if self.tensorrt is None:
                raise ValueError("runtime tensorrt needs a 'tensorrt' block (jetpack, version, compute_capability)")
            if self.quant_preset != "trt-s8s8" or self.ort_format:
                raise ValueError("runtime tensorrt needs quant_preset: trt-s8s8 and ort_format: false")
        elif self.tensorrt is not None:
            raise ValueError("a 'tensorrt' block needs runtime: tensorrt")
        return self


def host_arch() -> str:
    """This machine's architecture in a target's terms (`arch:`)."""
    import platform

    machine = platform.machine().lower()
    return "aarch64" if machine in ("aarch64", "arm64") else "x86_64" if machine in ("x86_64", "amd64") else machine


def host_target() -> str:
    """The built-in target matching this machine, so host timings measure the host's INT8 form."""
    return "arm64" if host_arch() == "aarch64" else "x86-64"


def builtin_targets() -> dict[str, Path]:
    folder = data_dir("targets")
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def load_target(spec: str | Path) -> Target:
    """Load a built-in target by name, or a user's own YAML file by path."""
    spec = str(spec)
    known = builtin_targets()
    if spec in known:
        path = known[spec]
    elif spec.endswith((".yaml", ".yml")):
        path = Path(spec)
        if not path.is_file():
            raise TargetError(f"target file {spec} does not exist; check the path")
    else:
        raise TargetError(
            f"unknown target '{spec}'; choose one of {', '.join(known)} "
            "(see `edgekit targets`) or pass a board file ./my-board.yaml"
        )
    return _parse(path)


def _parse(path: Path) -> Target:
    raw = read_mapping(path, TargetError, "target file")
    try:
        return Target(**raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if not where:  # a rule across keys
            raise TargetError(f"target file {path}: {first['msg'].removeprefix('Value error, ')}") from exc
        raise TargetError(f"target file {path}: '{where}' {first['msg'].lower()}; fix that key") from exc
