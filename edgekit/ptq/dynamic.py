"""Dynamic INT8 (weights ahead of time, activations at run time) for Linear/MatMul-heavy models."""

from __future__ import annotations

import shutil
from pathlib import Path

from edgekit.backends.ort import quiet, session
from edgekit.files import scratch_dir
from edgekit.measure.latency import median_ms
from edgekit.ptq.qdq import is_attention_graph


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

    with quiet():
        ort_quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": 1})


def _faster_of(a: Path, b: Path, feed: dict, rounds: int = 3) -> tuple[float, float]:
    """Best-of-rounds median latency of two graphs, interleaved so machine load hits both alike."""
    sessions = [session(a), session(b)]
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for k, sess in enumerate(sessions):
            best[k] = min(best[k], median_ms(sess, feed, 10, 100))
    return best[0], best[1]


def fuse_transformer(fp32: Path, out: Path) -> Path | None:
    """ORT's transformer fusions (LayerNorm, Gelu, attention where matched) for graphs with attention;
    None for other graphs or where the optimizer cannot handle the graph."""
    import onnx

    if not is_attention_graph(onnx.load(str(fp32), load_external_data=False).graph):
        return None
    from onnxruntime.transformers import optimizer

    try:
        with quiet():
            fused = optimizer.optimize_model(str(fp32), model_type="bert", num_heads=0, hidden_size=0)
            fused.save_model_to_file(str(out))
    except Exception:  # the optimizer raises many types on graphs it does not recognise; plain quantization still works
        return None
    return out
