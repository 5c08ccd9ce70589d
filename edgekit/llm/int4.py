"""Weight-only INT4 of a causal LM's linear layers, blocks of 32 along the input, as ONNX Runtime's MatMulNBits
runs it: edgekit chooses the integers, and the GenAI builder only packs them into the graph.

The builder reads a checkpoint already quantized in the layout MatMulNBits uses (its "olive" loader: per
layer `qweight` [out, in/2] uint8 with two 4-bit values a byte, low nibble first; `scales` [out, blocks];
`qzeros` [out, blocks/2] uint8, packed alike), so no second rounding happens: the integers in the graph are
the ones computed here. Symmetric blocks (zero point 8), the builder's own default, so that its
round-to-nearest build is the same format and the comparison is of the rounding alone.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK = 32
BITS = 4
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class Int4Weight:
    """One linear layer's weight as MatMulNBits holds it: q in 0..15, dequantized (q - zero) * scale per block."""

    q: np.ndarray  # [out, in] uint8
    scales: np.ndarray  # [out, blocks] float32
    zeros: np.ndarray  # [out, blocks] uint8

    def dequantized(self) -> np.ndarray:
        out, inputs = self.q.shape
        blocks = self.q.reshape(out, -1, BLOCK).astype(np.float32) - self.zeros[..., None]
        return (blocks * self.scales[..., None]).reshape(out, inputs)


def round_to_nearest(weight: np.ndarray) -> Int4Weight:
    """Symmetric RTN per block: scale = max|w| / 7 (so -7..7 around the zero point 8), the baseline."""
    out, inputs = weight.shape
    if inputs % BLOCK:
        raise ValueError(f"input width {inputs} is not a multiple of the block size {BLOCK}")
    blocks = weight.astype(np.float32).reshape(out, -1, BLOCK)
    scales = np.abs(blocks).max(axis=-1) / 7.0
    scales = np.where(scales == 0, 1.0, scales).astype(np.float32)
    q = np.clip(np.round(blocks / scales[..., None]) + 8, 0, 15).astype(np.uint8)
    return Int4Weight(q.reshape(out, inputs), scales, np.full(scales.shape, 8, np.uint8))


def _pack(values: np.ndarray) -> np.ndarray:
    """Two 4-bit values a byte along the last axis, the first in the low nibble (odd widths padded)."""
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros(values.shape[:-1] + (1,), values.dtype)], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def linear_names(state: dict[str, np.ndarray]) -> list[str]:
    """The decoder layers' linear weights (embeddings and the output head stay as they are)."""
    return sorted(n for n in state if n.endswith(".weight") and n.rsplit(".", 2)[-2] in LINEARS
                  and state[n].ndim == 2)


def write_int4_checkpoint(model_dir: str | Path, out: str | Path, quantized: dict[str, Int4Weight]) -> Path:
    """A copy of `model_dir` whose named linear weights are replaced by their INT4 form, in the layout the GenAI
    builder passes to MatMulNBits unchanged."""
    from safetensors.numpy import load_file, save_file

    model_dir, out = Path(model_dir), Path(out)
    out.mkdir(parents=True)
    for file in model_dir.iterdir():
        if file.is_file() and file.suffix != ".safetensors" and file.name != "model.safetensors.index.json":
            shutil.copy2(file, out / file.name)
    state = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        state.update(load_file(str(file)))
    for name, weight in quantized.items():
        del state[name]
        base = name.removesuffix(".weight")
        state[f"{base}.qweight"] = _pack(weight.q)
        state[f"{base}.scales"] = weight.scales
        state[f"{base}.qzeros"] = _pack(weight.zeros)
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(out / "model.safetensors"))
    config = json.loads((model_dir / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "olive", "bits": BITS, "group_size": BLOCK, "sym": True}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return out


HEAD_AT_8_BITS = {"algo_config": "rtn", "matmul_mixed_precision": "last_matmul:int8"}  # builder options


def graph_weights(genai_dir: str | Path) -> dict[str, tuple[int, np.ndarray]]:
    """{MatMulNBits node: (bits, dequantized [N, K] weight)} of an exported graph: what the board multiplies by."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(Path(genai_dir) / "model.onnx"))
    inits = {i.name: i for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        attrs = {a.name: a.i for a in node.attribute}
        bits, n, k, block = attrs["bits"], attrs["N"], attrs["K"], attrs["block_size"]
        blocks = -(-k // block)
        packed = numpy_helper.to_array(inits[node.input[1]]).reshape(n, blocks, -1)
        values = _unpack(packed, bits).reshape(n, blocks, block).astype(np.float32)
        scales = numpy_helper.to_array(inits[node.input[2]]).reshape(n, blocks, 1).astype(np.float32)
        if len(node.input) > 3 and node.input[3] in inits:
            zeros = _unpack(numpy_helper.to_array(inits[node.input[3]]).reshape(n, -1), bits)[:, :blocks, None]
        else:
            zeros = np.full((n, blocks, 1), 2 ** (bits - 1), np.float32)
        found[node.name] = (bits, ((values - zeros) * scales).reshape(n, blocks * block)[:, :k])
    return found


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        return packed.astype(np.float32)
    return np.stack([packed & 15, packed >> 4], axis=-1).reshape(*packed.shape[:-1], -1).astype(np.float32)

def gptq(weight: np.ndarray, hessian: np.ndarray, damp: float = 0.01) -> Int4Weight:
    """INT4 with error compensation (GPTQ): input columns are rounded in order, and each column's rounding
    error is spread over the columns not yet rounded, weighted by the inverse of H = X^T X (the layer's
    inputs on calibration text), so the layer's output, not each weight, stays close. Each block's scale is
    taken from its columns as they stand when the block is reached, on the same symmetric grid as RTN."""
    import torch

    w = torch.tensor(weight, dtype=torch.float64)
    out, inputs = w.shape
    h = torch.tensor(hessian, dtype=torch.float64)
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(inputs, dtype=torch.float64)
    upper = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    q = torch.zeros((out, inputs), dtype=torch.uint8)
    scales = torch.zeros((out, inputs // BLOCK), dtype=torch.float64)
    for column in range(inputs):
        if column % BLOCK == 0:
            block = w[:, column:column + BLOCK]
            scale = block.abs().max(dim=1).values / 7
            scales[:, column // BLOCK] = torch.where(scale == 0, torch.ones_like(scale), scale)
        scale = scales[:, column // BLOCK]
        level = torch.clamp(torch.round(w[:, column] / scale) + 8, 0, 15)
        q[:, column] = level.to(torch.uint8)
        error = (w[:, column] - (level - 8) * scale) / upper[column, column]
        w[:, column + 1:] -= error[:, None] * upper[column, column + 1:][None, :]
    return Int4Weight(q.numpy(), scales.numpy().astype(np.float32), np.full(scales.shape, 8, np.uint8))


def layer_hessians(model, blocks: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """H = sum of x x^T over every token's input to each named linear layer, on calibration blocks."""
    import torch

    modules = dict(model.named_modules())
    sums = {name: None for name in names}

    def hook(name):
        def record(_module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            sums[name] = x.T @ x if sums[name] is None else sums[name] + x.T @ x
        return record
    handles = [modules[name.removesuffix(".weight")].register_forward_pre_hook(hook(name)) for name in names]
    try:
        with torch.no_grad():
            for block in blocks:
                model(torch.from_numpy(np.asarray(block, np.int64))[None])
    finally:
        for handle in handles:
            handle.remove()
    return {name: value.numpy() for name, value in sums.items() if value is not None}
