"""`edgekit distill` for causal language models: a student built from a config learns a teacher's next-token
distributions (online, or from a top-k cache written once and keyed by teacher, data and tokenizer), LoRA
adapters merged before saving, FSDP under torchrun following one process, resume, and one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import sshd
from conftest import run_cli
from llm_fixtures import python_docs, tiny_causal_lm

STUDENT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
           "num_key_value_heads": 1, "max_position_embeddings": 256, "bos_token_id": 1, "eos_token_id": 2}
COMMON = ["--block-size", "32", "--split", "0.6,0.2,0.2", "--lr", "3e-3"]


def _teacher(folder, family: str):
    """A tiny model whose head is scaled up: its next-token distributions are peaked and differ from token to
    token (entropy about 2 nats), something a student can be seen to learn."""
    model, tokenizer = tiny_causal_lm(folder, family)
    with torch.no_grad():
        model.lm_head.weight.mul_(25)
    model.save_pretrained(folder)
    return len(tokenizer)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill-llm")
    vocab = _teacher(root / "teacher", "llama")
    (root / "docs.txt").write_text("\n\n".join(" ".join(d.split()) for d in python_docs()[:12]))
    (root / "student.json").write_text(json.dumps({"model_type": "llama", "vocab_size": vocab, **STUDENT}))
    return root


def _distill(root, out, *extra, teacher=None, student=None):
    args = ["distill", "--teacher", teacher or root / "teacher", "--data", root / "docs.txt", "--out", out, *COMMON,
            *extra, "--json"]
    if student is not False:
        args[3:3] = ["--student", student or root / "student.json"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_a_student_from_a_config_learns_the_teacher_and_compresses(tmp_path, setting, family):
    """The issue's commands in a row: distill on both; the Qwen2 student goes on through compress, bench, pack and
    profile on the loopback board."""
    from transformers import AutoModelForCausalLM

    root = setting
    if family != "llama":
        root = tmp_path / "q"
        vocab = _teacher(root / "teacher", family)
        (root / "docs.txt").write_text((setting / "docs.txt").read_text())
        (root / "student.json").write_text(json.dumps({"model_type": family, "vocab_size": vocab, **STUDENT}))
    report = _distill(root, tmp_path / "out", "--epochs", "2")
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert history[1]["kd"] < history[0]["kd"] and history[1]["validation"] > history[0]["validation"]
    start, end = report["student_at_start"], report["student"]
    assert end["top1_agreement"] > start["top1_agreement"] + 0.1 and end["kl"] < 0.8 * start["kl"], (start, end)
    assert report["teacher_targets"] == "full logits" and report["params_ratio"] < 0.4
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "student")
    assert student.config.model_type == family and student.config.hidden_size == 32
    assert (tmp_path / "out" / "student" / "tokenizer.json").is_file()
    if family == "llama":
        return
    result = run_cli("compress", "--model", tmp_path / "out" / "student", "--data", root / "docs.txt", "--target",
                     "raspberry-pi-5", "--quant", "int8", "--out", tmp_path / "build", "--block-size", "32",
                     "--new-tokens", "4", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rounding"]["rotation"] == "Hadamard within blocks of 32"
    folder = tmp_path / "build" / "raspberry-pi-5"
    assert (folder / "genai_config.json").is_file()
    (tmp_path / "prompts.txt").write_text("The for statement is used to iterate\n")  # the third command
    benched = run_cli("bench", folder, "--prompts", tmp_path / "prompts.txt", "--json")
    assert benched.returncode == 0, benched.stderr
    assert json.loads(benched.stdout)["final"]["decode_tok_s"] > 0
    packed = run_cli("pack", folder, "--json")  # and the fourth
    assert packed.returncode == 0 and Path(json.loads(packed.stdout)["bundle"]).is_file(), packed.stderr
    if sshd.unavailable() is None:  # (the Llama bundle's board test says why where it skips)
        board = sshd.LoopbackBoard(tmp_path / "board", f"{Path(sys.executable).parent}:/usr/bin:/bin").start()
        try:
            profiled = run_cli("profile", json.loads(packed.stdout)["bundle"], "--board", board.url, "--ssh-config",
                               board.ssh_config, "--remote-python", sys.executable, "--json", timeout=300)
        finally:
            board.stop()
        assert profiled.returncode == 0, profiled.stderr
        assert json.loads(profiled.stdout)["check"]["reference_match"] is True


def test_sparse_kd_over_every_token_is_the_exact_kl_and_chunks_change_nothing():
    from edgekit.llm.kd import kd_sums

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    hidden, teacher = torch.randn(37, 16, requires_grad=True), torch.randn(37, 50)
    targets = torch.randint(0, 50, (37,))
    dense = kd_sums(head, hidden, targets, 2.0, teacher_logits=teacher, chunk=8)
    values, indices = torch.topk(teacher, 50, -1)
    sparse = kd_sums(head, hidden, targets, 2.0, values=values, indices=indices.int(), chunk=64)
    logits = head(hidden)
    kl = torch.nn.functional.kl_div(torch.log_softmax(logits / 2, -1), torch.log_softmax(teacher / 2, -1),
                                    log_target=True, reduction="sum") * 4
    whole = torch.stack([kl, torch.nn.functional.cross_entropy(logits, targets, reduction="sum")])
    assert torch.allclose(dense, whole, rtol=1e-4) and torch.allclose(sparse, whole, rtol=1e-4)
    grad_dense, = torch.autograd.grad(dense[0], hidden)
    grad_whole, = torch.autograd.grad(whole[0], hidden)
    assert torch.allclose(grad_dense, grad_whole, atol=1e-5)
    top8 = kd_sums(head, hidden, targets, 2.0, values=values[:, :8], indices=indices[:, :8].int())
    assert not torch.allclose(top8[0], whole[0], rtol=1e-2)  # fewer tokens: an approximation, not the same sum


def test_teacher_cache_is_written_once_per_key_and_trains_without_the_teacher(tmp_path, setting):
    from edgekit.llm.teacher_cache import read_manifest

    cache = tmp_path / "cache"
    first = _distill(setting, tmp_path / "c1", "--top-k", "16", "--teacher-cache", cache, "--cache-only",
                     student=False)
    folder = first["cache"]
    stamp = os.stat(os.path.join(folder, "teacher-cache.json")).st_mtime_ns
    again = _distill(setting, tmp_path / "c2", "--top-k", "16", "--teacher-cache", cache, "--cache-only",
                     student=False)
    assert again["cache"] == folder and os.stat(os.path.join(folder, "teacher-cache.json")).st_mtime_ns == stamp
    other = _cache_in_process(setting, cache, seed=1)  # other splits: other blocks, another key
    assert other != Path(folder) and _cache_in_process(setting, cache, seed=0) == Path(folder)
    manifest = read_manifest(folder)
    assert manifest["top_k"] == 16 and set(manifest["splits"]) == {"train", "calib", "eval"}
    trained = _distill(setting, tmp_path / "s", "--epochs", "2", teacher=folder)
    assert trained["teacher_targets"] == "top-16 cache" and trained["teacher"]["params"] is None
    assert trained["student"]["top1_agreement"] > trained["student_at_start"]["top1_agreement"] + 0.1
    from edgekit.api import distill
    from edgekit.errors import InputError

    with pytest.raises(InputError, match="other token blocks than the teacher cache"):
        distill(teacher=folder, student=str(setting / "student.json"), data=str(setting / "docs.txt"),
                out=tmp_path / "w", block_size=32, split="0.6,0.2,0.2", seed=2)
    assert not (tmp_path / "w").exists()


def _cache_in_process(setting, root, seed: int):
    from transformers import AutoModelForCausalLM

    from edgekit.llm.corpus import corpus_splits, load_tokenizer
    from edgekit.llm.teacher_cache import write_cache

    blocks = corpus_splits(setting / "docs.txt", load_tokenizer(setting / "teacher"), 32, (0.6, 0.2, 0.2), seed)
    teacher = AutoModelForCausalLM.from_pretrained(setting / "teacher").eval()
    return write_cache(root, teacher, setting / "teacher", setting / "teacher", {n: b.ids for n, b in blocks.items()}, 16)


def test_lora_adapters_train_and_are_merged_into_a_plain_model(tmp_path, setting):
    from safetensors.torch import load_file

    tiny_causal_lm(tmp_path / "start", "llama", seed=1)  # the teacher's shape, other weights
    report = _distill(setting, tmp_path / "out", "--epochs", "1", "--lora-rank", "4", student=tmp_path / "start")
    checkpoint = load_file(str(tmp_path / "out" / "checkpoints" / "best.safetensors"))
    assert checkpoint and all("lora_" in name for name in checkpoint)
    before = load_file(str(tmp_path / "start" / "model.safetensors"))
    after = load_file(str(tmp_path / "out" / "student" / "model.safetensors"))
    assert set(after) == set(before)  # no adapter left: merged
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])  # frozen
    assert not torch.equal(after["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"])
    assert report["student_kind"] == "lora"
    assert report["student"]["kl"] < report["student_at_start"]["kl"]


def test_fsdp_under_torchrun_follows_one_process(tmp_path, setting):
    """Two gloo processes, each decoder layer a shard unit: the same steps as one process, up to the order of
    floating-point reductions (which Adam's normalised steps carry on, so the check is relative to how far
    training moved the weights)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    one = _distill(setting, tmp_path / "one", "--epochs", "1", "--batch-size", "16")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "edgekit", "distill",
               "--teacher", setting / "teacher", "--student", setting / "student.json", "--data", setting / "docs.txt",
               "--out", tmp_path / "two", *COMMON, "--epochs", "1", "--batch-size", "16", "--fsdp", "--json"]
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "report.json").read_text())
    assert two["processes"] == 2 and two["fsdp"] and one["processes"] == 1
    config = json.loads((setting / "student.json").read_text())
    torch.manual_seed(0)  # the run's seed: the student as both runs started
    start = AutoModelForCausalLM.from_config(AutoConfig.for_model(config.pop("model_type"), **config)).state_dict()
    a = load_file(str(tmp_path / "one" / "student" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "student" / "model.safetensors"))
    moved = torch.cat([(a[k] - start[k]).flatten() for k in a]).norm()
    apart = torch.cat([(a[k] - b[k]).flatten() for k in a]).norm()
    assert moved > 1 and apart < 0.01 * moved, (float(apart), float(moved))
    h1, h2 = (json.loads((tmp_path / n / "history.json").read_text())[0] for n in ("one", "two"))
    assert abs(h1["kd"] - h2["kd"]) < 1e-3 * h1["kd"]


def test_a_stopped_run_resumes_where_a_straight_one_ends(tmp_path, setting, monkeypatch):
    from safetensors.torch import load_file

    from edgekit.api import distill
    from edgekit.llm import kd_loop

    options = dict(teacher=str(setting / "teacher"), student=str(setting / "student.json"),
                   data=str(setting / "docs.txt"), block_size=32, split="0.6,0.2,0.2", lr=3e-3, epochs=2)
    distill(**options, out=tmp_path / "straight")
    save = kd_loop.save_epoch

    def stop_after_the_first(ckpt, epoch, *args):
        save(ckpt, epoch, *args)
        if epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(kd_loop, "save_epoch", stop_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        distill(**options, out=tmp_path / "stopped")
    monkeypatch.setattr(kd_loop, "save_epoch", save)
    resumed = distill(**options, out=tmp_path / "stopped", resume=True)
    assert resumed["epochs_run"] == 2
    straight = load_file(str(tmp_path / "straight" / "student" / "model.safetensors"))
    again = load_file(str(tmp_path / "stopped" / "student" / "model.safetensors"))
    assert all(torch.equal(straight[k], again[k]) for k in straight)


def test_the_curriculum_starts_on_the_blocks_the_teacher_is_surest_of(tmp_path, setting, monkeypatch):
    """--curriculum 0.5 from a top-k cache: the first epoch trains on the half of the blocks with the lowest
    teacher entropy, the last on all of them."""
    from edgekit.api import distill
    from edgekit.llm import kd, kd_loop
    from edgekit.llm.teacher_cache import read_split

    seen = []
    run_epoch = kd_loop.run_epoch

    def recording(model, opt, teacher, targets, blocks, order, *args):
        seen.append(sorted(order.tolist()))
        return run_epoch(model, opt, teacher, targets, blocks, order, *args)

    monkeypatch.setattr(kd_loop, "run_epoch", recording)
    distill(teacher=str(setting / "teacher"), student=str(setting / "student.json"), data=str(setting / "docs.txt"),
            out=tmp_path / "c", block_size=32, split="0.6,0.2,0.2", lr=3e-3, epochs=2, curriculum=0.5,
            top_k=16, teacher_cache=tmp_path / "cache")
    history = json.loads((tmp_path / "c" / "history.json").read_text())
    assert [round(r["curriculum_fraction"], 2) for r in history] == [0.5, 1.0]
    cache = next((tmp_path / "cache").iterdir())
    entropy = kd.mean_entropy(read_split(cache, "train").values, 2.0)
    first = np.asarray(seen[0])
    rest = np.setdiff1d(np.arange(len(entropy)), first)
    assert entropy[first].max() <= entropy[rest].min() and len(seen[1]) == len(entropy)


def test_accumulated_batches_take_the_step_of_the_whole_batch(tmp_path, setting):
    from safetensors.torch import load_file

    from edgekit.api import distill

    common = dict(teacher=str(setting / "teacher"), student=str(setting / "student.json"),
                  data=str(setting / "docs.txt"), block_size=32, split="0.6,0.2,0.2", lr=3e-3, epochs=1)
    distill(**common, out=tmp_path / "whole", batch_size=8)
    distill(**common, out=tmp_path / "parts", batch_size=4, accumulate=2)
    distill(**common, out=tmp_path / "small", batch_size=4)
    weights = {n: load_file(str(tmp_path / n / "student" / "model.safetensors")) for n in ("whole", "parts", "small")}
    gap = lambda a, b: float(torch.cat([(weights[a][k] - weights[b][k]).flatten() for k in weights[a]]).norm())  # noqa: E731
    assert gap("whole", "parts") < 0.05 * gap("whole", "small"), (gap("whole", "parts"), gap("whole", "small"))


def _student_file(tmp_path, setting, case: str):
    config = json.loads((setting / "student.json").read_text())
    if case == "vocabulary":
        config["vocab_size"] = 100
    if case == "no-model-type":
        del config["model_type"]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("case, words", [("vocabulary", "vocabulary"), ("no-student", "--student")])
def test_bad_inputs_get_one_line(tmp_path, setting, case, words):
    student = [] if case == "no-student" else ["--student", _student_file(tmp_path, setting, case)]
    result = run_cli("distill", "--teacher", setting / "teacher", "--data", setting / "docs.txt", "--out",
                     tmp_path / "o", *COMMON, *student)
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("case, extra, words", [("lora-without-weights", {"lora_rank": 4}, "--lora-rank"),
                                                ("cache-only-without-top-k", {"cache_only": True}, "--top-k"),
                                                ("no-model-type", {}, "model_type")])
def test_bad_settings_are_refused_before_any_work(tmp_path, setting, case, extra, words):
    from edgekit.api import distill
    from edgekit.errors import InputError

    with pytest.raises(InputError, match=words):
        distill(teacher=str(setting / "teacher"), student=str(_student_file(tmp_path, setting, case)),
                data=str(setting / "docs.txt"), out=tmp_path / "o", block_size=32, **extra)
    assert not (tmp_path / "o").exists()


def test_a_gguf_teacher_under_bf16_autocast_is_learned(tmp_path, setting):
    """The teacher as llama.cpp users hold it (a GGUF file, Q8_0 blocks, read back to float), the student
    trained under bf16 autocast: it still learns the teacher, and what it saves is float32."""
    from transformers import AutoModelForCausalLM

    from edgekit.llm.blockwise import linear_names, load_state, round_to_nearest
    from edgekit.llm.to_gguf import write_gguf

    state = load_state(setting / "teacher")
    gguf = write_gguf(setting / "teacher", tmp_path / "teacher.gguf",
                      {name: round_to_nearest(state[name], 8) for name in linear_names(state)})
    report = _distill(setting, tmp_path / "out", "--epochs", "2", "--precision", "bf16", teacher=gguf)
    start, end = report["student_at_start"], report["student"]
    assert end["top1_agreement"] > start["top1_agreement"] + 0.1 and end["kl"] < 0.8 * start["kl"], (start, end)
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "student")
    assert next(student.parameters()).dtype == torch.float32
