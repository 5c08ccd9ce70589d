"""`edgekit distill`: loss parts per epoch, checkpoints, and a resumed run that ends where a straight one does."""

import json

import pytest
from safetensors.torch import load_file

from conftest import run_cli
from edgekit import distill_run
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
    assert all((best[k] == final[k]).all() for k in best)
    assert (tmp_path / "a" / "checkpoints" / "epoch-003.state.pt").is_file()


def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, digits_npz, tiny_weights, monkeypatch):
    distill(**_options(tmp_path, digits_npz, tiny_weights, "straight"))
    save = distill_run._save_checkpoint

    def stop_after_second_epoch(ckpt, epoch, module, state):
        save(ckpt, epoch, module, state)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(distill_run, "_save_checkpoint", stop_after_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        distill(**_options(tmp_path, digits_npz, tiny_weights, "stopped"))
    monkeypatch.setattr(distill_run, "_save_checkpoint", save)
    resumed = distill(**_options(tmp_path, digits_npz, tiny_weights, "stopped", resume=True))
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


def test_mnist_example_student_within_one_point_of_its_teacher_at_a_quarter_of_the_parameters(tmp_path):
    result = run_cli("distill", "--teacher", "example:mnist-teacher", "--student",
                     "edgekit.models.example:mnist_student", "--data", "example:mnist", "--out", tmp_path / "d",
                     "--epochs", "8", "--lr", "3e-3", "--alpha", "0.3", "--json", timeout=900)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["params_ratio"] <= 0.25
    assert report["teacher"]["accuracy"] - report["student"]["accuracy"] <= 1.0
