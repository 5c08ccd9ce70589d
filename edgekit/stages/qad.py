"""Quantization-aware distillation: fake-quant student trained against the FP32 teacher.

BatchNorm is folded first (statistics frozen), weights get per-channel int8
fake quant and conv/linear inputs get the calibrated uint8 ranges, so the
student learns under the exact rounding the runtime will apply. After
pruning (`recover`), the first half of the epochs is plain FP32 distillation
with live BatchNorm, then ranges are re-observed: recovering from removed
channels under rounding noise and without normalisation was measured to cost
over a point of accuracy on the example.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifact import Artifact
from ..backends import ort as ort_backend
from ..errors import InputError
from ..fsutil import write_json
from ..onnx_export import export_onnx
from ..progress import console
from ..quant.bn_fold import fold_batchnorm
from ..quant.prepare import (activation_quantizers, conv_input_tensor_map, freeze_batchnorm, freeze_observers,
                             observe_ranges, prepare_qat, strip_qat)
from ..torch_artifact import example_inputs, materialize, save_weights
from ..training import TrainConfig, distill, epoch_batches
from .calibrate import RANGES, fp32_graph
from .fidelity import torch_fidelity

RECOVERED = "pruned_fp32.onnx"


@dataclass
class QadStage:
    epochs: int = 3
    lr: float = 3e-3
    temperature: float = 4.0
    alpha: float = 0.5
    batch_size: int = 64
    method: str = "minmax"
    recover: bool = False
    alpha_end: float | None = None
    patience: int = 0
    opset: int = 17
    name: str = "qad"
    accepts: tuple[str, ...] = ("onnx",)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.lr <= 0 or self.temperature <= 0 or not 0 <= self.alpha <= 1:
            raise InputError("QAD needs --epochs >= 1, --lr > 0, --temperature > 0 and --alpha in [0, 1]")

    def settings(self) -> dict[str, Any]:
        keys = ("epochs", "lr", "temperature", "alpha", "batch_size", "method", "recover", "alpha_end", "patience")
        return {k: getattr(self, k) for k in keys}

    def run(self, ctx, artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]:
        if not artifact.has("weights") and artifact.source_spec.endswith(".onnx"):
            raise InputError("QAD needs a PyTorch student; for an .onnx model use --quant static or dynamic")
        names = artifact.input_names
        example = example_inputs(ctx.splits, names)
        model = materialize(artifact, example)
        recover_epochs = self.epochs // 2 if self.recover else 0
        history = []
        if recover_epochs:
            history += distill(model, ctx.teacher, self._batches(ctx, names), self._config(ctx, recover_epochs),
                               on_epoch=_log_epoch)
            export_onnx(model, example, names, out / RECOVERED, self.opset)
        fold_batchnorm(model, example)
        ranges = json.loads(artifact.path("ranges").read_text())
        tensor_of = conv_input_tensor_map(artifact.path("onnx"), {n for n, _ in model.named_modules()})
        covered = prepare_qat(model, ranges, tensor_of)
        if recover_epochs:
            observe_ranges(model, ctx.splits.calib, names)
        quant_epochs = self.epochs - recover_epochs

        def on_epoch(epoch: int, record: dict[str, float]) -> None:
            _log_epoch(recover_epochs + epoch, record)
            if epoch + 1 == max(1, quant_epochs // 2):
                freeze_observers(model)

        # The weights are trained already: fine-tune under rounding at a tenth of --lr.
        quant_cfg = self._config(ctx, quant_epochs, lr_scale=0.1)
        history += distill(model, ctx.teacher, self._batches(ctx, names), quant_cfg, on_epoch=on_epoch,
                           train_mode=freeze_batchnorm, validate=_calib_agreement(ctx, model, names, self.patience))
        metrics = {f"fakequant_{k}": v for k, v in torch_fidelity(model, ctx, names).items()}
        quantizers = activation_quantizers(model)
        frozen = {tensor_of[n]: quantizers[n].range() for n in covered}
        strip_qat(model)
        files = {"weights": save_weights(model, out)}
        if artifact.has("plan"):
            (out / "plan.json").write_bytes(artifact.path("plan").read_bytes())
            files["plan"] = "plan.json"
        folded = artifact.derive(out, "torch", files, bn_folded=True)
        files.update(fp32_graph(ctx, folded, out, self.opset))
        fresh = ort_backend.calibrate(out / "model.onnx", ctx.splits.calib, names, self.method, out)
        write_json(out / RANGES, {**fresh, **frozen})
        files["ranges"] = RANGES
        metrics.update({"quantized_layers": len(covered), "recover_epochs": recover_epochs,
                        "loss_history": history, "final_loss": history[-1]["total"]})
        if recover_epochs:
            files["recovered"] = RECOVERED
        return folded.derive(out, "onnx", files), metrics

    def _config(self, ctx, epochs: int, lr_scale: float = 1.0) -> TrainConfig:
        return TrainConfig(epochs=epochs, lr=self.lr * lr_scale, temperature=self.temperature, alpha=self.alpha,
                           batch_size=self.batch_size, seed=ctx.seed, alpha_end=self.alpha_end,
                           patience=self.patience)

    def _batches(self, ctx, names: list[str]):
        return epoch_batches(ctx.splits.train, names, self.batch_size, ctx.seed)


def _calib_agreement(ctx, model, names: list[str], patience: int):
    """Validation for early stopping (only with --patience): top-1 agreement with the teacher on the
    calibration split, disjoint from the evaluation split that the report measures."""
    from ..metrics import top1_agreement
    from .fidelity import torch_outputs

    if ctx.teacher is None or not patience:
        return None
    reference = torch_outputs(ctx.teacher, ctx.splits.calib, names)
    return lambda: top1_agreement(torch_outputs(model, ctx.splits.calib, names), reference)


def _log_epoch(epoch: int, record: dict[str, float]) -> None:
    parts = ", ".join(f"{k} {v:.4f}" for k, v in record.items())
    console.log(f"  qad epoch {epoch + 1}: {parts}")
