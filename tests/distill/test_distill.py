"""`edgekit distill`: loss parts per epoch, checkpoints, and a resumed run that ends where a straight one does."""

import json

import pytest
from safetensors.torch import load_file

from conftest import run_cli
from edgekit.runs import distill as distill_run
from edgekit.api import distill


def _options(tmp_path, digits_npz, tiny_weights, name: str, **extra) -> dict:
    return dict(teacher="tiny_models:resnet_tiny", teacher_weights=str(tiny_weights),
                student="tiny_models:resnet_tiny_student", data=str(digits_npz), out=tmp_path / name,
                epochs=4, lr=3e-3, alpha=0.3, **extra)


def test_distill_logs_loss_parts_and_keeps_the_best_epoch(tmp_path, digits_npz, tiny_weights):
    report = distill(**_options(tmp_path, digits_npz, tiny_weights, "a"))
    history = json.loads((tmp_path / "a" / "history.json").read_text())
    assert len(history) == 4 and all({"kd", "task", "total", "alpha", "validation"} <= set(r) for r in history)
    assert history[-1]["kd"] < history[0]["kd"]
    assert report["params_ratio"] < 0.3 and report["student"]["accuracy"] > 80
    assert report["teacher"]["accuracy"] - report["student"]["accuracy"] < 10
    assert report["best_epoch"] == max(range(4), key=lambda e: (history[e]["validation"], -e))
    best = load_file(str(tmp_path / "a" / "checkpoints" / "best.safetensors"))
    final = load_file(str(tmp_path / "a" / "student.safetensors"))
    assert all((best["model." + k] == final[k]).all() for k in final) and len(best) == len(final)
    from edgekit.models import load_model

    load_model("tiny_models:resnet_tiny_student", tmp_path / "a" / "student.safetensors")  # as --weights takes it
    assert (tmp_path / "a" / "checkpoints" / "epoch-003.state.pt").is_file()


@pytest.mark.parametrize("extra", [{}, {"feature_kd": ["block2"], "curriculum": 0.5}],
                         ids=["response", "feature-projection-and-curriculum"])
def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, digits_npz, tiny_weights, monkeypatch, extra):
    """Also with a learned feature projection (16 → 32 channels), which is checkpointed with the optimizer."""
    distill(**_options(tmp_path, digits_npz, tiny_weights, "straight", **extra))
    save = distill_run._save_checkpoint

    def stop_after_second_epoch(ckpt, epoch, module, state):
        save(ckpt, epoch, module, state)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(distill_run, "_save_checkpoint", stop_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        distill(**_options(tmp_path, digits_npz, tiny_weights, "stopped", **extra))
    monkeypatch.setattr(distill_run, "_save_checkpoint", save)
    resumed = distill(**_options(tmp_path, digits_npz, tiny_weights, "stopped", resume=True, **extra))
    straight = load_file(str(tmp_path / "straight" / "student.safetensors"))
    again = load_file(str(tmp_path / "stopped" / "student.safetensors"))
    assert all(bool((straight[k] == again[k]).all()) for k in straight)
    assert resumed["epochs_run"] == 4
    assert json.loads((tmp_path / "stopped" / "history.json").read_text()) == \
        json.loads((tmp_path / "straight" / "history.json").read_text())


def test_distill_command_refuses_an_existing_output_and_bad_options(tmp_path, digits_npz, tiny_weights):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    common = ["distill", "--teacher", "tiny_models:resnet_tiny", "--teacher-weights", tiny_weights,
              "--student", "tiny_models:resnet_tiny_student", "--data", digits_npz]
    exists = run_cli(*common, "--out", tmp_path / "out")
    assert exists.returncode == 2 and "--force" in exists.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    bad = run_cli(*common, "--out", tmp_path / "new", "--alpha", "1.5")
    assert bad.returncode == 2 and "--alpha" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow  # 25 s of training; README's figure is also printed by benchmarks/distill.py
def test_mnist_example_student_within_one_point_of_its_teacher_at_a_quarter_of_the_parameters(tmp_path):
    result = run_cli("distill", "--teacher", "example:mnist-teacher", "--student",
                     "edgekit.examples.models:mnist_student", "--data", "example:mnist", "--out", tmp_path / "d",
                     "--epochs", "8", "--lr", "3e-3", "--alpha", "0.3", "--json", timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["params_ratio"] <= 0.25
    assert report["teacher"]["accuracy"] - report["student"]["accuracy"] <= 1.0


def test_compress_distils_from_the_given_teacher(tmp_path, digits_npz, tiny_weights):
    """`compress --teacher`: QAD learns from that model. With alpha 0, a teacher whose answers are shifted by
    one class drags the student's accuracy down where the right one keeps it; a teacher for other inputs is
    refused up front."""
    from edgekit.api import compress

    common = dict(weights=str(tiny_weights), target="x86-64", quant="qad", epochs=4, alpha=0.0, lr=1e-2)
    trained = compress("tiny_models:resnet_tiny", str(digits_npz), out=tmp_path / "t", **common,
                       teacher="tiny_models:resnet_tiny", teacher_weights=str(tiny_weights))
    shifted = compress("tiny_models:resnet_tiny", str(digits_npz), out=tmp_path / "s", **common,
                       teacher="tiny_models:resnet_tiny_shifted", teacher_weights=str(tiny_weights))
    assert trained["final"]["accuracy"] > 90 and shifted["final"]["accuracy"] < 50
    from transformers import BertConfig

    text_model = tmp_path / "bert.json"  # a text model: it reads token ids, not images
    text_model.write_text(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, architectures=["BertForSequenceClassification"],
                                     num_labels=10).to_json_string())
    other = run_cli("compress", "--model", "tiny_models:resnet_tiny", "--weights", tiny_weights, "--data",
                    digits_npz, "--teacher", text_model, "--out", tmp_path / "o")
    assert other.returncode == 2 and "teacher" in other.stderr and "Traceback" not in other.stderr
    assert not (tmp_path / "o").exists()


def test_curriculum_starts_on_the_teachers_surest_samples_and_ends_on_all():
    import numpy as np

    from edgekit.distill.curriculum import curriculum_batches, fraction_at
    from edgekit.data import SampleSet

    samples = SampleSet(source="t", arrays={"x": np.arange(100, dtype=np.float32)[:, None]},
                        labels=np.zeros(100, np.int64))
    ranking = np.arange(100)[::-1]  # sample 99 is the easiest
    batches = curriculum_batches(samples, ["x"], 16, 0, ranking, 0.4, 4)
    seen = [sorted(int(v) for inputs, _ in batches(e) for v in inputs[0][:, 0]) for e in range(4)]
    assert seen[0] == list(range(60, 100)) and seen[3] == list(range(100))
    assert [len(s) for s in seen] == [40, 60, 80, 100] and fraction_at(0.4, 3, 4) == 1.0


def test_curriculum_fraction_is_logged_and_bf16_trains(tmp_path, digits_npz, tiny_weights):
    bf16 = distill(**_options(tmp_path, digits_npz, tiny_weights, "bf16", precision="bf16", curriculum=0.5))
    history = json.loads((tmp_path / "bf16" / "history.json").read_text())
    assert [r["curriculum_fraction"] for r in history] == pytest.approx([0.5, 2 / 3, 5 / 6, 1.0])
    assert history[-1]["kd"] < history[0]["kd"] and bf16["student"]["accuracy"] > 70
    fp32 = distill(**_options(tmp_path, digits_npz, tiny_weights, "fp32", curriculum=0.5))
    assert fp32["student"]["accuracy"] > 70
    fp32_history = json.loads((tmp_path / "fp32" / "history.json").read_text())
    assert history[0]["kd"] != fp32_history[0]["kd"]  # bf16 really ran: rounding moved the losses
    assert history[0]["kd"] == pytest.approx(fp32_history[0]["kd"], rel=0.05)
