"""Validated settings: one pydantic model per stage, composed into CompressConfig and DistillConfig.

Each field declares its command-line option here and nowhere else: `cli/_options.py` builds the
typer parameters from these fields (flag, help, type, choices), recipes and the Python API pass the
same flat option names, and the config routes each to the stage section that owns it.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from edgekit.errors import InputError


def option(default: Any = ..., help: str = "", *, flag: str | None = None, negative: str | None = None,
           cli: bool = True, **constraints: Any) -> Any:
    """A settings field and its command-line option: `flag` names it when the field name does not
    (--prune for PruneSettings.ratio), `negative` gives a bool its off switch, `cli=False` keeps a
    field that the run fills in (from the target or another option) off the command line."""
    extra = {"flag": flag, "negative": negative, "cli": cli}
    return Field(default, description=help, json_schema_extra=extra, **constraints)


def cli_options(model: type[BaseModel], skip=()) -> dict[str, str]:
    """{option name (underscored): field name} of a model's fields that are command-line options."""
    found = {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra or {}
        if extra.get("cli", True) and name not in skip:
            found[(extra.get("flag") or name).replace("-", "_")] = name
    return found


class Section(BaseModel):
    """One stage's settings; `options()` maps flat option names to this section's fields."""

    model_config = ConfigDict(extra="forbid")
    CLI_EXCLUDE: ClassVar[tuple[str, ...]] = ()  # fields a command does not offer

    @classmethod
    def options(cls) -> dict[str, str]:
        """{option name (underscored): field name} for the fields on the command line."""
        return cli_options(cls, skip=cls.CLI_EXCLUDE)

    def stage_settings(self) -> dict[str, Any]:
        """What a stage records in its key (resume reuses it only while these stay equal)."""
        return self.model_dump(mode="json")


class QuantMode(str, Enum):
    """--quant, decided once: which stages run follows from these properties."""

    QAD = "qad"
    STATIC = "static"
    DYNAMIC = "dynamic"
    INT4 = "int4"  # weight-only, blocks of 32: causal language models
    INT8 = "int8"  # 8-bit weight blocks, activations quantized as they come: causal language models
    NONE = "none"

    @property
    def calibrates(self) -> bool:
        return self in (QuantMode.QAD, QuantMode.STATIC)

    @property
    def trains(self) -> bool:
        return self is QuantMode.QAD


CalibMethod = Literal["minmax", "percentile", "entropy", "mse", "auto"]
CALIB_METHODS: tuple[str, ...] = CalibMethod.__args__


class BenchSettings(Section):
    """How a model is timed: a target's `bench:` block, and `edgekit bench --runs`."""

    warmup: int = option(10, "Untimed runs first.", ge=0, cli=False)
    runs: int = option(100, "Timed runs.", ge=1)
    threads: int = option(1, "ONNX Runtime intra-op threads.", ge=1, cli=False)


class PruneSettings(Section):
    """What to prune and how; the prune stage carries these, scans and searches make their own."""

    ratio: float = option(0.0, "Fraction of channels to remove, in [0, 1).", flag="prune")
    protect: list[str] | None = option(None, "Layer never pruned (repeatable; default: stem conv and classifier).")
    importance: Literal["l1", "l2", "bn-scale", "taylor"] = option("l1", "Channel importance.")
    global_ranking: bool = option(False, "Rank channels across layers, or prune each layer by the same ratio.",
                                  flag="global-prune", negative="uniform-prune")
    min_channels: int = option(8, "No layer keeps fewer channels than this.", ge=1)
    max_layer_ratio: float = option(0.9, "No layer loses more than this fraction.", gt=0, lt=1)
    layer_ratios: str | dict[str, float] | None = option(
        None, "Per-layer ratios JSON (from `edgekit prune scan`).")
    steps: int = option(1, "Prune in N steps, recalibrating BN and distilling between.", flag="prune-steps", ge=1)
    finetune_epochs: int = option(1, "KD epochs after each prune step / budget candidate.", ge=0)
    round_to: int = option(8, "Keep channel counts multiples of this (the target's).", ge=1, cli=False)
    budget: float | None = option(None, "Search the fastest pruning within this many points (the run's "
                                  "--max-accuracy-drop).", ge=0, cli=False)

    def plan_record(self) -> dict[str, Any]:
        """The settings a pruning plan (plan.json) records."""
        return {"ratio": self.ratio, "importance": self.importance, "round_to": self.round_to,
                "protect": self.protect, "global": self.global_ranking, "min_channels": self.min_channels,
                "max_layer_ratio": self.max_layer_ratio, "layer_ratios": self.layer_ratios, "steps": self.steps,
                "finetune_epochs": self.finetune_epochs, "max_accuracy_drop": self.budget}

    @field_validator("ratio")
    @classmethod
    def _ratio(cls, v: float) -> float:
        if not 0.0 <= v < 1.0:
            raise ValueError(f"--prune {v} is outside [0, 1); give a fraction of channels such as 0.5")
        return v


class CalibSettings(Section):
    """Static INT8 calibration: the range method and whose statistics."""

    method: CalibMethod = option("minmax", "Range method; auto: each one measured on the calibration split, the "
                                 "most faithful kept. (default: auto for --quant static, minmax for QAD)",
                                 flag="calib")
    calibrator: Literal["edgekit", "nncf"] = option(
        "edgekit", "Whose statistics: edgekit's, or NNCF's with bias correction (edgekit's Q/DQ placement).")
    bias_correction: Literal["auto", "on", "off"] = option(
        "auto", "Move each INT8 layer's bias by its weights' rounding shift; auto: where, learned on half the "
        "calibration split, it measures closer to the FP32 graph on the other half.")
    activations: Literal["auto", "uint8", "int8"] = option(
        "auto", "INT8 activation type for ONNX Runtime targets; auto: the faster on this CPU, measured where "
        "this host is the target's architecture, else the target's preset.")
    equalize: Literal["auto", "on", "off"] = option(
        "auto", "Even out each activation's channels by moving per-channel scales into the adjacent weights "
        "(cross-layer equalization, SmoothQuant); auto: where plain INT8 misses the fidelity floor and it measures "
        "closer. Static INT8 of a graph only (QAD trains the model itself).")
    rounding: Literal["auto", "nearest", "learned"] = option(
        "auto", "INT8 weight rounding: nearest, or learned layer by layer on the calibration split (AdaRound); "
        "auto: learned where nearest misses the fidelity floor and, learned on half the split, it measures "
        "closer on the other half.")


class LlmSettings(Section):
    """Causal language models: how text is cut and how weight blocks are rounded."""

    block_size: int = option(128, "Tokens per text block (language models): calibration and evaluation "
                             "units.", ge=8)
    weight_rounding: Literal["gptq", "rtn"] = option(
        "gptq", "How INT4/INT8 weight blocks are rounded (language models): gptq compensates each weight's "
        "error with the input statistics of the calibration text; rtn rounds to nearest.")
    new_tokens: int = option(128, "Tokens generated when timing decode (language models; the first comes from "
                             "the prefill, so at least 2).", ge=2)
    recover_minutes: float = option(10.0, "Distillation from the unpruned model after --prune (language models): "
                                    "wall-clock minutes.", gt=0)
    recover_lr: float = option(1e-4, "Learning rate of that distillation (language models).", gt=0)
    prune_axis: Literal["width", "depth", "hidden"] = option(
        "width", "What --prune removes (language models): width, MLP neurons then whole KV groups; depth, whole "
        "decoder layers, the least missed on the calibration text; hidden, channels of the residual stream.")
    head_bits: Literal[8, 4] = option(8, "Bits of the output head's weight blocks (language models; a tied "
                                      "embedding reads the same integers): 4 decodes faster, 8 stays closer.")


class FidelitySettings(Section):
    """What static INT8 must keep of the FP32 graph's outputs (measure/compare.py), or the user's own measure."""

    min_sqnr: float = option(12.0, "Floor on every output group's SQNR against the FP32 graph (dB; 12 dB is a "
                             "25% RMS error); below it, the most sensitive nodes fall back to FP32.", ge=0)
    min_decision_f1: float = option(0.9, "Floor on probability outputs: F1 of the values above 0.5 against the "
                                    "FP32 graph's.", ge=0, le=1)
    min_agreement: float = option(0.99, "Floor on outputs whose rows are class probabilities (a classifier, a "
                                  "per-step text recognizer): share of rows whose top class is the FP32 graph's.",
                                  ge=0, le=1)
    metric: str | None = option(None, "Your measure instead of those floors: package.module:function taking "
                                "(fp32_outputs, int8_outputs), dicts of arrays by output name; higher is better.")
    min_metric: float | None = option(None, "Floor for --metric. (default: 0.99 x the FP32 graph's own score)")


class TrainSettings(Section):
    """The distillation loop's knobs, shared by `distill` and QAD so both validate them alike."""

    epochs: int = option(10, "Epochs.", ge=1)
    lr: float = option(1e-3, "Learning rate (cosine-annealed).", gt=0)
    temperature: float = option(4.0, "KD temperature T (loss scaled by T²).", gt=0)
    alpha: float = option(0.5, "Weight of the task loss when labels exist (1 - alpha goes to KD).", ge=0, le=1)
    alpha_end: float | None = option(None, "Ramp the task-loss weight linearly to this by the last epoch.",
                                     ge=0, le=1)
    patience: int = option(0, "Stop after N epochs without better validation agreement (0: never).", ge=0)
    batch_size: int = option(64, "Training batch size (global: split over torchrun processes).", ge=1)
    accumulate: int = option(1, "Sum the gradients of this many batches per optimizer step.", ge=1)
    precision: Literal["fp32", "bf16"] = option("fp32", "fp32, or bf16 autocast for the forward passes.")
    feature_kd: list[str] | None = option(
        None, "Feature distillation pair STUDENT_LAYER[:TEACHER_LAYER] (repeatable); a learned projection "
        "bridges widths.")
    feature_weight: float = option(1.0, "Weight of the feature-KD loss.", ge=0)
    attention_kd: float = option(0.0, "Attention-map transfer weight between transformer pairs (0: off).", ge=0)
    seed: int = option(0, "Seed (the run's --seed).", cli=False)


class QadSettings(TrainSettings):
    """Quantization-aware distillation: the loop's knobs with QAD's defaults, plus learned ranges."""

    CLI_EXCLUDE: ClassVar[tuple[str, ...]] = ("accumulate", "precision")
    epochs: int = option(6, "QAD epochs.", ge=1)
    lr: float = option(3e-3, "QAD learning rate.", gt=0)
    learn_scales: bool = option(False, "QAD: train activation ranges (LSQ) instead of observing them.",
                                negative="observed-scales")


class Composed(BaseModel):
    """A command's settings: its own fields plus stage sections, filled from flat option names."""

    model_config = ConfigDict(extra="forbid")
    SECTIONS: ClassVar[dict[str, type[Section]]] = {}  # {section field: its Section class}
    force: bool = option(False, cli=False)
    resume: bool = option(False, cli=False)

    @classmethod
    def sections(cls) -> dict[str, type[Section]]:
        return dict(cls.SECTIONS)

    @classmethod
    def own_options(cls) -> dict[str, str]:
        return cli_options(cls, skip=set(cls.sections()))

    @classmethod
    def cli_fields(cls) -> list[tuple[str, Any]]:
        """(option name, FieldInfo) for every command-line option, in declaration order."""
        fields = [(opt, cls.model_fields[name]) for opt, name in cls.own_options().items()]
        for section in cls.sections().values():
            fields += [(opt, section.model_fields[name]) for opt, name in section.options().items()]
        return fields

    @model_validator(mode="before")
    @classmethod
    def _route(cls, data: Any) -> Any:
        """Flat options (`prune=0.5`, `calib="mse"`) into their sections; unknown names stay to be refused."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for section, model in cls.sections().items():
            given = dict(data.pop(section, None) or {})
            for opt, name in model.options().items():
                if opt in data:
                    given[name] = data.pop(opt)
            data[section] = given
        return data

    def flat(self) -> dict[str, Any]:
        """Every option by its command-line name, as recipes write them (the manifest records these)."""
        dumped = self.model_dump(mode="json")
        flat = {opt: dumped[name] for opt, name in self.own_options().items()}
        for section, model in self.sections().items():
            flat.update({opt: dumped[section][name] for opt, name in model.options().items()})
        return flat

    @classmethod
    def flag_of(cls, loc: tuple) -> str:
        """The option a validation error's location names (`("pruning", "ratio")` → --prune)."""
        if not loc:
            return "option"
        names = {v: k for k, v in cls.own_options().items()}
        if loc[0] in cls.sections() and len(loc) > 1:
            names = {v: k for k, v in cls.sections()[loc[0]].options().items()}
            loc = loc[1:]
        return "--" + str(names.get(loc[0], loc[0])).replace("_", "-")


TRAINING_SPLIT, POST_TRAINING_SPLIT = "0.7,0.1,0.2", "0,0.6,0.4"


class CompressConfig(Composed):
    SECTIONS: ClassVar[dict[str, type[Section]]] = {"pruning": PruneSettings, "calibration": CalibSettings,
                                                    "qad": QadSettings, "fidelity": FidelitySettings,
                                                    "llm": LlmSettings}
    model: str = option(help="transformers folder, package.module:factory, example:NAME, or .onnx")
    data: str = option(help=".npz, folder of .npz, image folder with preprocess.yaml, or example:mnist")
    out: Path = option(help="Output folder; OUT/<target>/ holds the artifact.")
    target: str = option("arm64", "Target name (see `edgekit targets`) or a board .yaml file.")
    weights: str | None = option(None, "Student weights (.safetensors, or .pt state dict).")
    teacher: str | None = option(None, "Teacher spec; default: the unpruned FP32 student.")
    teacher_weights: str | None = option(None, "Teacher weights file.")
    eval_data: str | None = option(None, "Separate evaluation data (else a split of --data).")
    quant: QuantMode | None = option(None, "INT8 by quantization-aware distillation, static or dynamic "
                                     "calibration, int4 or int8 weight blocks (causal language models), or none "
                                     "(FP32). "
                                     "(default: qad for a PyTorch model, static for an .onnx one, which cannot be "
                                     "trained, int4 for a causal language model)")
    max_accuracy_drop: float | None = option(None, "Search the fastest pruning within this many points, fall "
                                             "back to FP32 layers to meet it, refuse to publish beyond it.", ge=0)
    split: str | None = option(None, "train,calib,eval fractions of --data. (default: 0.7,0.1,0.2 when "
                               "pruning or QAD trains, else 0,0.6,0.4: nothing trains, so calibration and the "
                               "fidelity check get the samples)")
    seed: int = option(0, "Seed for splits and training.")
    pruning: PruneSettings = PruneSettings()
    calibration: CalibSettings = CalibSettings()
    qad: QadSettings = QadSettings()
    fidelity: FidelitySettings = FidelitySettings()
    llm: LlmSettings = LlmSettings()
    _quant_by_default: bool = PrivateAttr(False)
    _split_by_default: bool = PrivateAttr(False)

    @property
    def quant_by_default(self) -> bool:
        """--quant was not given: the mode followed from the model's kind."""
        return self._quant_by_default

    @property
    def split_by_default(self) -> bool:
        return self._split_by_default

    @model_validator(mode="after")
    def _cross_rules(self) -> "CompressConfig":
        from edgekit.data.splits import parse_fractions

        from edgekit.models.causal_lm import is_causal_lm

        language_model = is_causal_lm(self.model)
        if self.quant is None:
            self.quant = (QuantMode.INT4 if language_model else QuantMode.STATIC if self.model.endswith(".onnx")
                          else QuantMode.QAD)
            self._quant_by_default = True
        if language_model:
            if self.quant is QuantMode.DYNAMIC:
                self.quant = QuantMode.INT8  # what dynamic quantization is for a language model's MatMuls
            if self.quant not in (QuantMode.INT4, QuantMode.INT8, QuantMode.NONE):
                raise InputError(f"--quant {self.quant.value}: a causal language model takes --quant int4 or int8 "
                                 "(weight blocks of 32; int8 also quantizes activations as they come) or none")
            if self.split is None:  # without pruning nothing trains: calibration text and held-out text
                self.split = "0.6,0.2,0.2" if self.pruning.ratio > 0 else "0,0.5,0.5"
                self._split_by_default = True
            return self
        if self.quant in (QuantMode.INT4, QuantMode.INT8):
            raise InputError(f"--quant {self.quant.value} is for causal language models; for this model use qad, "
                             "static, dynamic or none")
        searches = self.max_accuracy_drop is not None and not self.model.endswith(".onnx")  # a pruning search
        trains = self.quant.trains or self.pruning.ratio > 0 or bool(self.pruning.layer_ratios) or searches
        if self.split is None:
            self.split = TRAINING_SPLIT if trains else POST_TRAINING_SPLIT
            self._split_by_default = True
        if self.quant is QuantMode.STATIC and "method" not in self.calibration.model_fields_set:
            self.calibration.method = "auto"  # nothing trains to repair a poor range method: measure them all
        if parse_fractions(self.split)[0] == 0 and trains:
            raise ValueError(f"--split {self.split} leaves no training samples, but QAD and pruning train; "
                             "give a train fraction above 0, or use --quant static with --prune 0")
        if (self.qad.feature_kd or self.qad.attention_kd) and not self.quant.trains:
            raise ValueError("--feature-kd and --attention-kd train during QAD; add --quant qad or drop them")
        self.pruning.budget = self.max_accuracy_drop
        self.qad.seed = self.seed
        return self


class LmDistillSettings(Section):
    """`distill` of causal language models: text blocks, the teacher's cached top-k, LoRA adapters, sharding."""

    block_size: int = option(128, "Tokens per text block (language models).", ge=8)
    top_k: int = option(0, "Offline KD (language models): the teacher runs once and its top-K next-token logits are "
                        "cached on disk and trained on (0: the teacher runs alongside, exact KL).", ge=0)
    teacher_cache: Path | None = option(None, "Folder of teacher caches, one per teacher/data/tokenizer key "
                                        "(default ~/.cache/edgekit/teacher-cache).")
    cache_only: bool = option(False, "Write the teacher cache and stop (where the teacher fits); train elsewhere "
                              "with --teacher CACHE/<key>.")
    lora_rank: int = option(0, "Train LoRA adapters of this rank instead of the whole student (language models; "
                            "a student with weights), merged into it before saving.", ge=0)
    lora_alpha: float | None = option(None, "LoRA scale numerator. (default 2 x rank)", gt=0)
    fsdp: bool = option(False, "Under torchrun: shard the student's parameters, gradients and optimizer state over "
                        "the processes (FSDP) instead of copying them to each (DDP).")


class DistillConfig(Composed):
    SECTIONS: ClassVar[dict[str, type[Section]]] = {"train": TrainSettings, "lm": LmDistillSettings}
    teacher: str = option(help="Teacher: transformers folder, .gguf, teacher cache, package.module:factory or "
                          "example:NAME.")
    student: str | None = option(None, "Student: transformers folder, config .json (built fresh) or "
                                 "package.module:factory. (required unless --cache-only)")
    data: str = option(help="Training data (.npz, folder, image folder, example:mnist; .txt/.jsonl text for a "
                       "language model).")
    out: Path = option(help="Output folder.")
    teacher_weights: str | None = option(None, "Teacher weights file.")
    student_weights: str | None = option(None, "Start the student from these weights.")
    curriculum: float | None = option(None, "Start on this fraction of samples the teacher is surest of; all "
                                      "by the last epoch.", gt=0, le=1)
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto (a GPU when there is one), cpu or cuda.")
    split: str = option("0.7,0.1,0.2", "train,calib,eval fractions.")
    seed: int = option(0, "Seed.")
    train: TrainSettings = TrainSettings()
    lm: LmDistillSettings = LmDistillSettings()

    @model_validator(mode="after")
    def _cross_rules(self) -> "DistillConfig":
        from edgekit.data.splits import parse_fractions

        if parse_fractions(self.split)[0] == 0:
            raise ValueError(f"--split {self.split} leaves no training samples; give a train fraction above 0")
        if self.student is None and not self.lm.cache_only:
            raise ValueError("--student is missing: give the model to train (only --cache-only runs without one)")
        self.train.seed = self.seed
        return self


class ScanConfig(Composed):
    """`edgekit prune scan`: each channel group pruned alone at each ratio, measured; a per-layer proposal."""

    model: str = option(help="transformers folder, package.module:factory or example:NAME")
    data: str = option(help="Data with labels for accuracy (else agreement is used).")
    out: Path = option(help="Folder for scan.json, scan.png and layer-ratios.json.")
    weights: str | None = option(None, "Weights file for a factory model.")
    target: str = option("arm64", "Target (its round_to is used).")
    ratios: str = option("0.25,0.5,0.75", "Ratios to try per group.")
    max_drop: float = option(0.5, "Accuracy-drop budget (points) for the proposal.", ge=0)
    eval_samples: int = option(500, "Evaluation samples per measurement.", ge=1)
    protect: list[str] | None = option(None, "Layer never pruned (repeatable).")
    seed: int = option(0, "Seed for the evaluation split.")


class Reach(Composed):
    """How boards are found and reached: `profile` and `boards check` share these."""

    inventory: Path | None = option(None, "boards.toml (default ./boards.toml, then ~/.config/edgekit/).")
    ssh_config: Path | None = option(None, "ssh client config to use (ssh -F).")


class BoardsCheckConfig(Reach):
    board: list[str] | None = option(None, "Board name or ssh:// address (default: every board in the inventory).")


class ProfileConfig(Reach):
    """`edgekit profile`: where to run a bundle and how long to time it."""

    board: list[str] = option(help="ssh://user@host[:port] or a name from boards.toml; repeatable.")
    remote_python: str | None = option(None, "Python with onnxruntime on ssh:// boards (default python3).")
    runs: int = option(200, "Timed runs on the board.", ge=1)
    timeout: float = option(600, "Seconds the whole job may take per board.", gt=0)
    out: Path | None = option(None, "Folder for the result JSON files (default: beside the bundle).")


class BenchConfig(Composed):
    """`edgekit bench FOLDER`: measure a compressed artifact again, on other data."""

    data: str | None = option(None, "Evaluation data (.npz, folder, or example:mnist; text for a language "
                              "model). Required but for a language model.")
    baseline: str | None = option(None, "FP32 ONNX (or FP32 GenAI folder) to compare with (default: the one "
                                  "compress kept).")
    runs: int | None = option(None, "Timed runs (default: the target's setting).", ge=1)
    prompts: str | None = option(None, "Text file, one prompt a line (language models): timing prompts and "
                                 "greedy continuations against the FP model.")


class InspectConfig(Composed):
    """`edgekit inspect MODEL`: what a model holds and what can be pruned."""

    weights: str | None = option(None, "Weights file for a factory model.")
    data: str | None = option(None, "Data to take the input shape from.")
    input_shape: str | list[int] | None = option(None, "Input shape, e.g. 1,3,224,224.")

    @field_validator("input_shape", mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            shape = [int(v) for v in value.split(",")]
        except ValueError:
            shape = []
        if not shape or min(shape) < 1:
            raise ValueError(f"--input-shape {value} must be positive integers separated by commas, e.g. 1,3,224,224")
        return shape


class DemoConfig(Composed):
    """`edgekit demo`: the whole job on the built-in MNIST example."""

    out: Path = option(Path("edgekit-demo"), "Output folder.")
    target: str | None = option(None, "Target to compile for (default: this machine's).")


def make_config(**options) -> CompressConfig:
    return validated(CompressConfig, options)


_BOUNDS = {"greater_than_equal": ("at least", "ge"), "greater_than": ("above", "gt"),
           "less_than_equal": ("at most", "le"), "less_than": ("below", "lt")}


def validated(model: type[Composed], options: dict, command: str = ""):
    """Build a config, turning validation errors into one-line InputErrors named after the option."""
    try:
        return model(**options)
    except ValidationError as exc:
        errors = exc.errors()
        command = command or {CompressConfig: "compress", DistillConfig: "distill", ScanConfig: "prune scan",
                              ProfileConfig: "profile", BoardsCheckConfig: "boards check", BenchConfig: "bench",
                              InspectConfig: "inspect", DemoConfig: "demo"}.get(model, "")
        missing = [model.flag_of(tuple(e["loc"])) for e in errors if e["type"] == "missing"]
        if missing:
            raise InputError(f"missing {', '.join(missing)}; see `edgekit {command} --help` for examples") from exc
        err = errors[0]
        name = model.flag_of(tuple(err["loc"]))
        msg = err["msg"].removeprefix("Value error, ")
        bound = _BOUNDS.get(err["type"])
        if bound is not None:
            word, key = bound
            raise InputError(f"{name} {err.get('input')} must be {word} {err['ctx'][key]}") from exc
        if err["type"] == "extra_forbidden":
            raise InputError(f"{name} is not a setting of edgekit {command}; "
                             f"see `edgekit {command} --help` for the settings") from exc
        raise InputError(f"{name}: {msg}" if not msg.startswith("--") else msg) from exc


def load_layer_ratios(value: str | dict[str, float] | None) -> dict[str, float] | None:
    """Per-layer ratios: a dict, or the layer-ratios.json written by `edgekit prune scan`."""
    import json

    if value is None or isinstance(value, dict):
        return value
    path = Path(value)
    if not path.is_file():
        raise InputError(f"--layer-ratios {value} does not exist; run `edgekit prune scan` to make one")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"--layer-ratios {value} is not valid JSON ({exc}); regenerate it") from exc
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise InputError(f"--layer-ratios {value} must map layer names to ratios")
    return {k: float(v) for k, v in data.items()}


def load_recipe(path: Path) -> dict:
    """Settings from a YAML recipe; unknown keys are reported when the config is built."""
    from edgekit.files import read_mapping

    return read_mapping(path, InputError, "recipe")
