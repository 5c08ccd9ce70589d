"""Shared fixtures: real digits data on disk, a trained tiny residual CNN, an isolated model cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures"  # helper modules (tiny models, loopback sshd, ...) and sample files
sys.path[:0] = [str(FIXTURES), str(TESTS)]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FIXTURES), str(TESTS), os.environ.get("PYTHONPATH")]))
if os.environ.get("PYTEST_XDIST_WORKER"):
    # test processes side by side (pytest -n): one torch thread each, and in the commands they start, so that
    # the processes share the cores instead of each spinning threads on all of them
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1,797 real 8x8 handwritten digits, normalised, NCHW float32."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0 - 0.3)[:, None]
    return x, digits.target.astype(np.int64)


@pytest.fixture(scope="session")
def digits_npz(tmp_path_factory) -> Path:
    x, y = digits_arrays()
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    np.savez(path, x=x, y=y)
    return path


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """TinyResNet trained for a few epochs on the digits (seconds), saved as safetensors."""
    import torch
    from safetensors.torch import save_file

    from edgekit.distill.loop import TrainSettings, distill
    from tiny_models import resnet_tiny

    x, y = digits_arrays()
    model = resnet_tiny()
    cfg = TrainSettings(epochs=4, lr=3e-3, batch_size=64, seed=0)

    def batches(epoch):
        order = np.random.default_rng(epoch).permutation(len(x))
        for s in range(0, len(x), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            yield (torch.from_numpy(x[idx]),), torch.from_numpy(y[idx])

    distill(model, None, batches, cfg)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real `edgekit` entry point in a child process."""
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=os.environ.copy())


@pytest.fixture(scope="session")
def tiny_fp32_onnx(tmp_path_factory, tiny_weights) -> Path:
    """The trained tiny CNN exported and pre-processed for quantization, as calibrate sees it."""
    import torch

    from edgekit.backends.ort import preprocess
    from edgekit.models import load_model
    from edgekit.models.export import export_onnx

    root = tmp_path_factory.mktemp("fp32")
    module = load_model("tiny_models:resnet_tiny", tiny_weights).module
    export_onnx(module, (torch.zeros(1, 1, 8, 8),), ["x"], root / "raw.onnx")
    return preprocess(root / "raw.onnx", root / "fp32.onnx")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 2-layer Llama (grouped-query attention) with a BPE tokenizer trained on Python's docs, saved as a
    transformers folder (fixtures/llm_fixtures.py)."""
    from llm_fixtures import tiny_causal_lm

    folder = tmp_path_factory.mktemp("llama") / "tiny-llama"
    tiny_causal_lm(folder, "llama")
    return folder


@pytest.fixture(scope="session")
def tiny_llama_genai(tmp_path_factory, tiny_llama) -> Path:
    """`tiny_llama` exported FP32 through the ONNX Runtime GenAI builder (KV cache)."""
    from edgekit.llm.export import build_genai

    return build_genai(tiny_llama, tmp_path_factory.mktemp("genai") / "fp32", "fp32")


@pytest.fixture(scope="session")
def tiny_llama_build(tmp_path_factory, tiny_llama):
    """`edgekit compress` (the command, defaults: INT4 by GPTQ) of `tiny_llama` for the Raspberry Pi 5 on 12 of
    Python's doc topics: (OUT folder, the printed report, the text file). Shared by the compress, bench and
    bundle tests, which each judge a different part of the same run."""
    import json

    from llm_fixtures import python_docs

    root = tmp_path_factory.mktemp("llm-build")
    text = root / "docs.txt"
    text.write_text("\n\n".join(" ".join(d.split()) for d in python_docs()[:12]))
    result = run_cli("compress", "--model", tiny_llama, "--data", text, "--target", "raspberry-pi-5", "--out",
                     root / "build", "--block-size", "64", "--new-tokens", "8", "--json")
    assert result.returncode == 0, result.stderr
    return root / "build", json.loads(result.stdout), text
