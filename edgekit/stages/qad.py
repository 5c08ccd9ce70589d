"""Quantization-aware distillation: fake-quant student trained against the FP32 teacher.

Weights get per-channel int8 fake quant and every activation that the
target's INT8 graph quantizes (found by quantizing once with the calibrated
ranges) gets the same rounding in torch, so the student learns under the
rounding the runtime will apply. BatchNorm stays live for the first
quantized epoch, then is folded and its statistics frozen. After pruning
(`recover`), the first half of the epochs is plain FP32 distillation with
live BatchNorm, then ranges are re-observed: recovering from removed channels
under rounding noise and without normalisation was measured to cost over a
point of accuracy on the example.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.artifact import Artifact
from edgekit.errors import InputError
from edgekit.files import write_json
from edgekit.models.export import export_onnx
from edgekit.progress import console
from edgekit.quant.bn_fold import fold_batchnorm
from edgekit.quant.prepare import (attach_output_quant, fold_batchnorm_under_qat, freeze_batchnorm,
                             freeze_observers, graph_tensor_maps, observe_ranges, prepare_qat, simulated_tensors,
                             strip_qat)
from edgekit.stages._torch import example_inputs, materialize, require_training_split, save_weights
from edgekit.distill.loop import distill, epoch_batches
from edgekit.ptq.qdq import quantize_qdq, quantized_activations
from edgekit.ptq.statistics import calibrate
from edgekit.settings import QadSettings
from edgekit.target import QuantScheme
from edgekit.stages._torch import RANGES, fp32_graph
from edgekit.measure.fidelity import torch_fidelity

RECOVERED = "pruned_fp32.onnx"


@dataclass
class QadStage:
    train: QadSettings
    method: str  # the calibration method, for the ranges re-taken after training
    scheme: QuantScheme
    recover: bool = False  # after pruning: FP32 distillation first (see the module's docstring)
    opset: int = 17
    name: str = "qad"
    accepts: tuple[str, ...] = ("onnx",)

    def settings(self) -> dict[str, Any]:
        return {**self.train.stage_settings(), "method": self.method, "recover": self.recover,
                "preset": self.scheme.preset}

    def check(self, ctx, artifact: Artifact) -> None:
        """A PyTorch student, and --feature-kd/--attention-kd layers that exist in student and teacher."""
        if artifact.format == "onnx":
            raise InputError(f"{artifact.source_spec} is ONNX: pruning and QAD need a PyTorch model; "
                             "use --prune 0 with --quant static or dynamic")
        require_training_split(ctx, "QAD")
        if ctx.student is None or not (self.train.feature_kd or self.train.attention_kd):
            return
        from edgekit.distill.loop import check_aux_losses

        check_aux_losses(self._aux_losses(), ctx.student, ctx.teacher, example_inputs(ctx.splits, artifact.input_names))

    def run(self, ctx, artifact: Artifact, out: Path) -> tuple[Artifact, dict[str, Any]]:
        if not artifact.has("weights") and artifact.source_spec.endswith(".onnx"):
            raise InputError("QAD needs a PyTorch student; for an .onnx model use --quant static or dynamic")
        names = artifact.input_names
        example = example_inputs(ctx.splits, names)
        model = materialize(artifact, example)
        recover_epochs = self.train.epochs // 2 if self.recover else 0
        history = []
        if recover_epochs:
            history += distill(model, ctx.teacher, self._batches(ctx, names), self._config(ctx, recover_epochs),
                               on_epoch=_log_epoch, aux_losses=self._aux_losses())
            export_onnx(model, example, names, out / RECOVERED, self.opset)
        quant_epochs = self.train.epochs - recover_epochs
        # BN stays live for the first quantized epoch unless recovery already trained with it.
        live_bn = 0 if recover_epochs or quant_epochs < 2 else 1
        if not live_bn:
            fold_batchnorm(model, example)
        ranges = json.loads(artifact.path("ranges").read_text())
        maps = graph_tensor_maps(artifact.path("onnx"), {n for n, _ in model.named_modules()})
        quantized = self._runtime_quantized(artifact.path("onnx"), ranges, out)
        quantizers = prepare_qat(model, ranges, maps, quantized, learnable=self.train.learn_scales,
                                 signed=self.scheme.signed_activations,
                                 symmetric=self.scheme.symmetric_activations)
        if not live_bn:
            attach_output_quant(model, maps)
        if recover_epochs:
            observe_ranges(model, ctx.splits.calib, names)
        history += self._train_quantized(ctx, model, names, example, maps, quant_epochs, live_bn, recover_epochs)
        metrics = {f"fakequant_{k}": v for k, v in torch_fidelity(model, ctx, names).items()}
        simulated = simulated_tensors(model)
        frozen = {t: q.range() for t, q in quantizers.items() if t in simulated}
        strip_qat(model)
        files = {"weights": save_weights(model, out)}
        if artifact.has("plan"):
            (out / "plan.json").write_bytes(artifact.path("plan").read_bytes())
            files["plan"] = "plan.json"
        folded = artifact.derive(out, "torch", files, bn_folded=True)
        files.update(fp32_graph(ctx, folded, out, self.opset))
        from edgekit.ptq.auto import chosen_method

        method = chosen_method(artifact, self.method)
        fresh = calibrate(out / "model.onnx", ctx.splits.calib, names, method, out)
        write_json(out / RANGES, {**fresh, **frozen})
        files["ranges"] = RANGES
        metrics.update({"quantized_layers": sum(t in quantized for t in maps.inputs.values()), "simulated_tensors": len(simulated),
                        "quantized_tensors": len(quantized), "not_simulated": sorted(quantized - simulated),
                        "recover_epochs": recover_epochs, "loss_history": history,
                        "final_loss": history[-1]["total"]})
        if recover_epochs:
            files["recovered"] = RECOVERED
        return folded.derive(out, "onnx", files), metrics

    def _train_quantized(self, ctx, model, names, example, maps, epochs: int, live_bn: int, offset: int) -> list:
        """Fine-tune under rounding at a tenth of --lr (the weights are trained already): the first
        `live_bn` epochs with live BatchNorm, then folded; observers freeze half way."""
        cfg = self._config(ctx, epochs, lr_scale=0.1)

        def on_epoch(epoch: int, record: dict[str, float]) -> None:
            _log_epoch(offset + epoch, record)
            if epoch + 1 == max(1, epochs // 2):
                freeze_observers(model)

        history = []
        validate = _calib_agreement(ctx, model, names, self.train.patience)
        if live_bn:
            history += distill(model, ctx.teacher, self._batches(ctx, names), cfg, on_epoch=on_epoch,
                               aux_losses=self._aux_losses(), validate=validate, epochs=range(live_bn))
            fold_batchnorm_under_qat(model, example)
            attach_output_quant(model, maps)
        history += distill(model, ctx.teacher, self._batches(ctx, names), cfg, on_epoch=on_epoch,
                           train_mode=freeze_batchnorm, aux_losses=self._aux_losses(),
                           validate=validate, epochs=range(live_bn, epochs))
        return history

    def _runtime_quantized(self, fp32: Path, ranges: dict, out: Path) -> set[str]:
        """The activations the target's INT8 graph quantizes: quantize once and read them off."""
        probe = out / "_probe.onnx"
        try:
            quantize_qdq(fp32, probe, ranges, self.method, self.scheme)
            return quantized_activations(probe)
        finally:
            probe.unlink(missing_ok=True)

    def _aux_losses(self) -> list:
        from edgekit.distill.loop import build_aux_losses

        return build_aux_losses(self.train.feature_kd, self.train.feature_weight, self.train.attention_kd)

    def _config(self, ctx, epochs: int, lr_scale: float = 1.0) -> QadSettings:
        return self.train.model_copy(update={"epochs": epochs, "lr": self.train.lr * lr_scale, "seed": ctx.seed})

    def _batches(self, ctx, names: list[str]):
        return epoch_batches(ctx.splits.train, names, self.train.batch_size, ctx.seed)


def _calib_agreement(ctx, model, names: list[str], patience: int):
    """Validation for early stopping (only with --patience), on the calibration split: disjoint from
    the evaluation split that the report measures."""
    from edgekit.measure.fidelity import agreement_scorer

    if ctx.teacher is None or not patience:
        return None
    return agreement_scorer(model, ctx.teacher, ctx.splits.calib, names)


def _log_epoch(epoch: int, record: dict[str, float]) -> None:
    parts = ", ".join(f"{k} {v:.4f}" for k, v in record.items())
    console.log(f"  qad epoch {epoch + 1}: {parts}")
