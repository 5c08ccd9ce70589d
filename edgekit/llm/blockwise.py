"""Weight-only quantization of a causal LM's linear layers, 4 or 8 bits in blocks of 32 along the input, as ONNX
Runtime's MatMulNBits runs it: edgekit chooses the integers, and the GenAI builder only packs them into the graph.

The builder reads a checkpoint already quantized in the layout MatMulNBits uses (its "olive" loader: per
layer `qweight` [out, in * bits / 8] uint8, 4-bit values two a byte with the first in the low nibble;
`scales` [out, blocks]; `qzeros` [out, blocks * bits / 8] uint8, packed alike; per-layer bits under
`overrides`), so no second rounding happens: the integers in the graph are the ones computed here. Blocks are
symmetric (zero point 2^(bits-1)), the builder's own default, so that its round-to-nearest build is the same
format and a comparison is of the rounding and the grid alone. The output head is written at 8 bits; where the
model ties it to the input embedding, the graph reads the embedding from the same 8-bit integers. Beside 4-bit
linears the 8-bit head is in blocks of 64 (HEAD_BLOCK): MatMulNBits' 8-bit kernel spends per block; on
SmolLM2-135M an 8-bit head in blocks of 32 held INT4 decode to 0.952x the builder's (4-bit head), in blocks of
64 0.986x (benchmarks/llm_head_cost.py); per-layer bits and block sizes go under `overrides`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK = 32
LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
HEAD = "lm_head.weight"
EMBED = "model.embed_tokens.weight"
EMBEDDING_FILE = "edgekit-embedding-int8.npz"  # not .safetensors: the builder reads every one of those
HEAD_BITS = 8
HEAD_BLOCK = 64  # an 8-bit head's blocks beside 4-bit linears (where the width divides by it)


@dataclass
class BlockWeight:
    """One linear layer's weight as MatMulNBits holds it: q in 0..2^bits-1, dequantized (q - zero) * scale."""

    q: np.ndarray  # [out, in] uint8
    scales: np.ndarray  # [out, blocks] float32
    zeros: np.ndarray  # [out, blocks] uint8
    bits: int

    @property
    def block(self) -> int:
        """Weights per scale, along the input."""
        return self.q.shape[1] // self.scales.shape[1]

    def dequantized(self) -> np.ndarray:
        out, inputs = self.q.shape
        blocks = self.q.reshape(out, -1, self.block).astype(np.float32) - self.zeros[..., None]
        return (blocks * self.scales[..., None]).reshape(out, inputs)


SHRINK = tuple(1.0 - 0.025 * i for i in range(13))  # the scales tried per block: the full range down to 70%


def _zero_point(bits: int) -> int:
    """The zero point of a symmetric block: 8 for 4 bits (levels -8..7 around it), 128 for 8."""
    if bits not in (4, 8):
        raise ValueError(f"{bits}-bit weights: MatMulNBits blocks here are 4 or 8 bits")
    return 2 ** (bits - 1)


def _check_width(weight: np.ndarray, block: int = BLOCK) -> None:
    if weight.shape[1] % block:
        raise ValueError(f"input width {weight.shape[1]} is not a multiple of the block size {block}")


def _levels_of(block, scale, zero: int):
    import torch

    return torch.clamp(torch.round(block / scale[:, None]) + zero, 0, 2 * zero - 1)


def block_scales(blocks, bits: int):
    """One scale per row of `blocks` [rows, block] (a torch tensor): the block's value of largest magnitude maps
    to the end level -zero, so all 2^bits levels are used (as ONNX Runtime's and llama.cpp's symmetric blocks
    do; the scale may be negative), shrunk where a smaller range rounds the block closer (outliers clipped
    by a step, the rest resolved finer): the factor of SHRINK with the least squared error."""
    import torch

    zero = _zero_point(bits)
    extreme = blocks.gather(1, blocks.abs().argmax(dim=1, keepdim=True))[:, 0]
    extreme = torch.where(extreme == 0, torch.full_like(extreme, -float(zero)), extreme)
    best, best_error = None, None
    for factor in SHRINK:
        scale = extreme * factor / -zero
        error = (((_levels_of(blocks, scale, zero) - zero) * scale[:, None] - blocks) ** 2).sum(dim=1)
        if best is None:
            best, best_error = scale, error
        else:
            better = error < best_error
            best, best_error = torch.where(better, scale, best), torch.where(better, error, best_error)
    return best


def round_to_nearest(weight: np.ndarray, bits: int = 4, block: int = BLOCK) -> BlockWeight:
    """Each weight to its nearest level on its block's grid (block_scales), nothing compensated: the baseline."""
    import torch

    zero = _zero_point(bits)
    _check_width(weight, block)
    out, inputs = weight.shape
    blocks = torch.tensor(weight, dtype=torch.float64).reshape(-1, block)
    scales = block_scales(blocks, bits)
    q = _levels_of(blocks, scales, zero).to(torch.uint8).reshape(out, inputs).numpy()
    return BlockWeight(q, scales.reshape(out, -1).numpy().astype(np.float32),
                       np.full((out, inputs // block), zero, np.uint8), bits)


def gptq(weight: np.ndarray, hessian: np.ndarray, bits: int = 4, damp: float = 0.01) -> BlockWeight:
    """Quantization with error compensation (GPTQ): input columns are rounded in order, and each column's
    rounding error is spread over the columns not yet rounded, weighted by the inverse of H = X^T X (the
    layer's inputs on calibration text), so the layer's output, not each weight, stays close. Each block's
    scale is chosen from its columns as they stand when the block is reached, as RTN chooses it."""
    import torch

    zero = _zero_point(bits)
    _check_width(weight)
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
    for start in range(0, inputs, BLOCK):  # one quantization block at a time; the rest updated once per block
        end = start + BLOCK
        block, errors = w[:, start:end].clone(), torch.zeros((out, BLOCK), dtype=torch.float64)
        scale = block_scales(block, bits)
        scales[:, start // BLOCK] = scale
        for i in range(BLOCK):
            level = torch.clamp(torch.round(block[:, i] / scale) + zero, 0, 2 * zero - 1)
            q[:, start + i] = level.to(torch.uint8)
            errors[:, i] = (block[:, i] - (level - zero) * scale) / upper[start + i, start + i]
            block[:, i + 1:] -= errors[:, i:i + 1] * upper[start + i, start + i + 1:end][None, :]
        w[:, end:] -= errors @ upper[start:end, end:]
    return BlockWeight(q.numpy(), scales.numpy().astype(np.float32), np.full(scales.shape, zero, np.uint8), bits)


def _pack(values: np.ndarray, bits: int) -> np.ndarray:
    """4-bit values two a byte along the last axis, the first in the low nibble (odd widths padded)."""
    if bits == 8:
        return values.astype(np.uint8)
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros(values.shape[:-1] + (1,), values.dtype)], axis=-1)
    return (values[..., 0::2] | (values[..., 1::2] << 4)).astype(np.uint8)


def linear_names(state: dict[str, np.ndarray]) -> list[str]:
    """The decoder layers' linear weights (embeddings and the output head are handled apart)."""
    return sorted(n for n in state if n.endswith(".weight") and n.rsplit(".", 2)[-2] in LINEARS
                  and state[n].ndim == 2)


def head_weight(state: dict[str, np.ndarray]) -> np.ndarray:
    """The output head's [vocab, hidden] weight: its own, or the input embedding's where the two are tied."""
    return state[HEAD] if HEAD in state else state[EMBED]


def load_state(model_dir: str | Path) -> dict[str, np.ndarray]:
    """The folder's safetensors weights as numpy, floats as float32 (a bfloat16 checkpoint has no numpy dtype)."""
    from safetensors.torch import load_file

    state = {}
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        for name, tensor in load_file(str(file)).items():
            state[name] = (tensor.float() if tensor.is_floating_point() else tensor).numpy()
    return state


def write_checkpoint(model_dir: str | Path, out: str | Path, quantized: dict[str, BlockWeight],
                     floats: dict[str, np.ndarray] | None = None) -> Path:
    """A copy of `model_dir` whose named weights (the linears, and `lm_head.weight` for the head) are replaced by
    their block form, in the layout the GenAI builder passes to MatMulNBits unchanged, and `floats` (tensors
    rescaled by smoothing) by their new values. An embedding in blocks (a head untied from it) is saved as its
    dequantized values, which the builder's float lookup reads, and as its integers beside them, which
    mend_graph puts in that lookup's place."""
    from safetensors.numpy import save_file

    model_dir, out = Path(model_dir), Path(out)
    out.mkdir(parents=True)
    for file in model_dir.iterdir():
        if file.is_file() and file.suffix != ".safetensors" and file.name != "model.safetensors.index.json":
            shutil.copy2(file, out / file.name)
    state = {**load_state(model_dir), **{k: v.astype(np.float32) for k, v in (floats or {}).items()}}
    quantized = dict(quantized)
    embedding = quantized.pop(EMBED, None)
    if embedding is not None:
        state[EMBED] = embedding.dequantized()
        np.savez(out / EMBEDDING_FILE, q=embedding.q, scales=embedding.scales)
    bits = {weight.bits for name, weight in quantized.items() if name != HEAD}
    if len(bits) != 1:
        raise ValueError(f"the decoder linears must share one width, got {sorted(bits)}")
    for name, weight in quantized.items():
        state.pop(name, None)
        base = name.removesuffix(".weight")
        state[f"{base}.qweight"] = _pack(weight.q, weight.bits)
        state[f"{base}.scales"] = weight.scales
        state[f"{base}.qzeros"] = _pack(weight.zeros, weight.bits)  # the builder's loader needs them (mend_graph)
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(out / "model.safetensors"))
    config = json.loads((model_dir / "config.json").read_text())
    if embedding is not None:
        config["tie_word_embeddings"] = False
    config["quantization_config"] = {
        "quant_method": "olive", "bits": bits.pop(), "group_size": BLOCK, "sym": True,
        "overrides": {n.removesuffix(".weight"): {"bits": w.bits, "group_size": w.block}
                      for n, w in quantized.items() if n == HEAD}}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    return out


def mend_graph(genai_dir: str | Path, source: str | Path | None = None) -> dict[str, int]:
    """Three mends of what the builder writes from a pre-quantized checkpoint, so that the graph loads and runs
    the kernels of the builder's own quantization. Zero points that are all the default (symmetric blocks)
    are dropped: MatMulNBits then takes its fast symmetric path (the loader cannot be given none: it joins
    query, key and value zero points). The embedding lookup that reads a tied head's integers gets its
    scales as [vocab, blocks], the rank GatherBlockQuantized requires (the builder writes one flat vector,
    which MatMulNBits accepts and the lookup does not). An embedding that `source` (the checkpoint) holds in
    8-bit blocks of its own replaces the builder's float lookup (which supports no 8-bit table).
    Returns {"zero_points": dropped, "reshaped": n, "lookup": 1 where replaced}."""
    import onnx
    from onnx import numpy_helper

    path = Path(genai_dir) / "model.onnx"
    if not any(n.op_type in ("MatMulNBits", "GatherBlockQuantized")
               for n in onnx.load(str(path), load_external_data=False).graph.node):
        return {"zero_points": 0, "reshaped": 0, "lookup": 0}  # a float graph: nothing to mend, its data not read
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    dropped, reshaped = 0, 0
    for node in model.graph.node:
        if node.op_type == "MatMulNBits" and len(node.input) > 3 and node.input[3] in inits:
            bits = next(a.i for a in node.attribute if a.name == "bits")
            default = _pack(np.full(2, _zero_point(bits), np.uint8), bits)[0]
            if np.all(numpy_helper.to_array(inits[node.input[3]]) == default):
                node.input[3] = ""
                dropped += 1
        if node.op_type == "GatherBlockQuantized":
            rows = next(inits[i].dims[0] for i in _reshape_sources(model, node.input[0]) if len(inits.get(i, _NONE).dims) == 3)
            for name in node.input[2:]:
                tensor = inits.get(name)
                if tensor is not None and len(tensor.dims) == 1:
                    size = int(tensor.dims[0])
                    del tensor.dims[:]
                    tensor.dims.extend([rows, size // rows])
                    reshaped += 1
    table = Path(source) / EMBEDDING_FILE if source is not None else None
    lookup = _quantized_lookup(model, inits, table) if table is not None and table.is_file() else 0
    for node in model.graph.node:  # trailing empty optional inputs are dropped, not left as ""
        while node.input and node.input[-1] == "":
            node.input.pop()
    used = {name for node in model.graph.node for name in node.input}
    unused = [i for i in model.graph.initializer if i.name not in used]
    for tensor in unused:
        model.graph.initializer.remove(tensor)
    if dropped or reshaped or lookup:
        data = path.with_name("model.onnx.data")
        data.unlink(missing_ok=True)
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data.name, size_threshold=1024)
    return {"zero_points": dropped, "reshaped": reshaped, "lookup": lookup}


def _quantized_lookup(model, inits: dict, table: Path) -> int:
    """The float embedding Gather made a GatherBlockQuantized over `table`'s 8-bit integers (zero point 128,
    its default for uint8), scales in the graph's float type; returns 1, or 0 where there is no such Gather."""
    from onnx import helper, numpy_helper

    node = next((n for n in model.graph.node if n.op_type == "Gather" and n.input[0] == EMBED), None)
    if node is None or EMBED not in inits:
        return 0
    saved = np.load(table)
    dtype = helper.tensor_dtype_to_np_dtype(inits[EMBED].data_type)
    model.graph.initializer.remove(inits.pop(EMBED))
    q_name, scale_name = f"{EMBED}.int8", f"{EMBED}.scales"
    model.graph.initializer.extend([numpy_helper.from_array(saved["q"].astype(np.uint8), q_name),
                                    numpy_helper.from_array(saved["scales"].astype(dtype), scale_name)])
    lookup = helper.make_node("GatherBlockQuantized", [q_name, node.input[1], scale_name], list(node.output),
                              name=node.name.replace("/Gather", "/GatherBlockQuantized"), domain="com.microsoft",
                              bits=8, block_size=BLOCK, gather_axis=0, quantize_axis=1)
    index = list(model.graph.node).index(node)
    model.graph.node.remove(node)
    model.graph.node.insert(index, lookup)
    return 1


class _NONE:  # noqa: N801  (a stand-in with no dims for names that are not initializers)
    dims: tuple = ()


def _reshape_sources(model, value: str) -> set[str]:
    """The inputs of the node that makes `value` (the head's packed integers, reshaped for the lookup)."""
    return {i for node in model.graph.node if value in node.output for i in node.input}


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


@dataclass
class QuantizedModel:
    """What a quantized checkpoint differs in: weights in blocks, and float tensors rescaled (smoothing); `head`
    and `embedding` say how those two were made, for the record."""

    blocks: dict[str, BlockWeight]
    floats: dict[str, np.ndarray]
    head: str = ""
    embedding: str = ""


def quantize_model(model_dir: str | Path, reference, calib: np.ndarray, bits: int, method: str,
                   smooth_activations: bool = False, head_bits: int = HEAD_BITS,
                   statistics: tuple[dict, dict] | None = None) -> QuantizedModel:
    """The decoder linears in `bits`-bit blocks (GPTQ on the calibration blocks' inputs, or RTN), and the output
    head at `head_bits` (round to nearest at 8 bits; at 4 by GPTQ where the linears are: on SmolLM2-135M that
    took the KL to FP of INT4 with a 4-bit head from 0.21 to 0.11, the tied lookup reading the same
    integers included); with `smooth_activations`, activation outliers moved into the weights first
    (smooth.py), and at 8 bits the head gets its own (head_of_its_own). An embedding not tied to the head
    keeps 8-bit blocks of its own (the graph's lookup reads them; a float table would be a fifth of a small
    model's size at 32 bits). `statistics` (layer_statistics' answer
    on the same blocks) saves computing them again."""
    from edgekit.llm.smooth import FINAL_NORM, can_smooth, smooth

    state = load_state(model_dir)
    names = linear_names(state)
    floats: dict[str, np.ndarray] = {}
    smooth_activations = smooth_activations and can_smooth(getattr(reference.config, "model_type", ""))
    head_by_gptq = method == "gptq" and head_bits == 4  # at 4 bits the head's rounding is worth compensating
    head_apart = bits == 8 and head_bits == 8 and smooth_activations and FINAL_NORM in state
    if statistics is None and (method == "gptq" or smooth_activations):
        statistics = layer_statistics(reference, calib, names + ([HEAD] if head_by_gptq or head_apart else []))
    hessians, maxima = (dict(statistics[0]), statistics[1]) if statistics else ({}, {})
    if smooth_activations:
        changed, factors = smooth(state, maxima, reference.config.num_hidden_layers)
        state.update(changed)
        floats = {n: v for n, v in changed.items() if n not in names}
        for name, s in factors.items():  # the inputs are now x / s: H becomes S^-1 H S^-1
            if name in hessians:
                hessians[name] = hessians[name] / np.outer(s, s)
    quantized = {n: gptq(state[n].astype(np.float32), hessians[n], bits) if method == "gptq" and n in hessians
                 else round_to_nearest(state[n].astype(np.float32), bits) for n in names}
    if head_apart and HEAD in maxima:
        return head_of_its_own(QuantizedModel(quantized, floats), state, hessians.get(HEAD), maxima[HEAD], method)
    head = head_weight(state).astype(np.float32)
    quantized[HEAD] = (gptq(head, hessians[HEAD], 4) if head_by_gptq and HEAD in hessians
                       else round_to_nearest(head, head_bits, _head_block(bits, head_bits, head.shape[1])))
    if HEAD in state:  # an embedding of its own: 8-bit blocks, read by an 8-bit lookup (mend_graph)
        quantized[EMBED] = round_to_nearest(state[EMBED].astype(np.float32), 8)
    lookup = f"{head_bits}-bit, the head's integers (tied)" if HEAD not in state else "8-bit, its own blocks"
    rounding = f"{head_bits}-bit, {_rounding(head_by_gptq and HEAD in hessians)}, blocks of {quantized[HEAD].block}"
    return QuantizedModel(quantized, floats, rounding, lookup)


def _head_block(bits: int, head_bits: int, width: int) -> int:
    """HEAD_BLOCK for an 8-bit head beside 4-bit linears (decode speed), BLOCK otherwise (beside 8-bit linears
    the head's fidelity is what counts, and their kernel is the same)."""
    return HEAD_BLOCK if bits == 4 and head_bits == 8 and width % HEAD_BLOCK == 0 else BLOCK


def _rounding(compensated: bool) -> str:
    return "GPTQ" if compensated else "round to nearest"


def head_of_its_own(model: QuantizedModel, state: dict[str, np.ndarray], hessian: np.ndarray | None,
                    input_max: np.ndarray, method: str) -> QuantizedModel:
    """The 8-bit head with the final norm's outliers smoothed into it and rounded by `method` on its own
    inputs; a head tied to the embedding is untied for this, the embedding kept in 8-bit blocks of its own
    (rounded to nearest: a lookup has no inputs to compensate). On SmolLM2-135M this took the INT8 graph's KL to
    FP from 0.0027 to 0.0018 (benchmarks/llm.py, 32 held-out blocks), for 8 bits more per embedding weight."""
    from edgekit.llm.smooth import FINAL_NORM, smooth_head

    head = head_weight(state).astype(np.float32)
    norm, head, s = smooth_head(state, head, input_max)
    compensated = method == "gptq" and hessian is not None
    rounded = gptq(head, hessian / np.outer(s, s), 8) if compensated else round_to_nearest(head, 8)
    blocks = {**model.blocks, HEAD: rounded, EMBED: round_to_nearest(state[EMBED].astype(np.float32), 8)}
    return QuantizedModel(blocks, {**model.floats, FINAL_NORM: norm},
                          f"8-bit, its own (final norm smoothed in), {_rounding(compensated)}",
                          "8-bit, its own blocks" + (" (untied from the head)" if HEAD not in state else ""))


def layer_hessians(model, blocks: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """H = sum of x x^T over every token's input to each named linear layer, on calibration blocks."""
    return layer_statistics(model, blocks, names)[0]


def layer_statistics(model, blocks: np.ndarray, names: list[str]) -> tuple[dict, dict]:
    """({layer: H}, {layer: max |x| per channel}): H = sum of x x^T over every token's input to each named
    linear layer, on calibration blocks. Layers that read the same tensor (query, key and value; gate and up) share one product, computed once per block, in
    float32 (ample for a damped Hessian, and twice the speed of float64)."""
    import torch

    modules = dict(model.named_modules())
    sums: dict[str, torch.Tensor] = {}
    peaks: dict[str, torch.Tensor] = {}
    seen: dict[tuple, tuple] = {}  # this block's (input, product) by the input's storage; holding the input
    # keeps its memory from being reused by another tensor of the same shape within the block

    def hook(name):
        def record(_module, args):
            x = args[0].detach()
            key = (x.data_ptr(), tuple(x.shape))
            if key not in seen:
                flat = x.reshape(-1, x.shape[-1]).float()
                seen[key] = (x, flat.T @ flat, flat.abs().amax(dim=0))
            _, product, peak = seen[key]
            sums[name] = product.clone() if name not in sums else sums[name] + product
            peaks[name] = peak.clone() if name not in peaks else torch.maximum(peaks[name], peak)
        return record
    handles = [modules[name.removesuffix(".weight")].register_forward_pre_hook(hook(name)) for name in names]
    try:
        with torch.no_grad():
            for block in blocks:
                seen.clear()
                model(torch.from_numpy(np.asarray(block, np.int64))[None])
    finally:
        seen.clear()
        for handle in handles:
            handle.remove()
    return ({name: value.double().numpy() for name, value in sums.items()},
            {name: value.numpy() for name, value in peaks.items()})
