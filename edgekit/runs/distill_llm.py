"""`edgekit distill` for causal language models: a student (a config built fresh, or a folder with weights,
optionally with LoRA adapters) trained on the teacher's next-token distributions over packed text blocks.

The teacher runs alongside (exact KL), or once into a top-k cache on disk (`--top-k K`; `--cache-only` writes it
where the teacher fits, `--teacher CACHE/<key>` trains from it without the teacher). Each epoch is checkpointed
(the student's weights as safetensors, or the adapters only; optimizer and random state as tensors) and
`--resume` continues a stopped run; the best epoch by top-1 agreement with the teacher on the calibration blocks
is published as OUT/student/ (a transformers folder with the teacher's tokenizer) and scored on held-out blocks.
Under torchrun the processes share every batch (DDP), or also shard the student (`--fsdp`).
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from edgekit.data.splits import parse_fractions
from edgekit.distill import distributed
from edgekit.distill.checkpoints import RUN, check_same_settings, read_history, run_settings
from edgekit.distill.loop import alpha_at
from edgekit.errors import DataError, InputError
from edgekit.files import write_json
from edgekit.llm import kd, kd_loop
from edgekit.llm import teacher_cache as tc
from edgekit.llm.student import StudentPlan
from edgekit.measure.metrics import count_params
from edgekit.outdir import claimed_output, input_paths
from edgekit.progress import bar, console
from edgekit.settings import DistillConfig

HISTORY, REPORT, STUDENT_FOLDER, START = "history.json", "report.json", "student", "start.json"
VALIDATION_BLOCKS = 64  # calibration blocks scored after every epoch
EVAL_BLOCKS = 32
# What a language model trains with where the user gave no value (the command's defaults suit small vision models).
LM_DEFAULTS = {"temperature": 2.0, "batch_size": 8}
LR = {"fresh": 1e-3, "whole": 1e-4, "lora": 1e-3}


@dataclass
class Teacher:
    """Where the teacher's targets come from: a model folder (run now or into a cache), or a cache alone."""

    folder: Path | None
    cache: Path | None

    @property
    def tokenizer_dir(self) -> Path:
        return self.folder if self.folder is not None else self.cache / "tokenizer"


def is_lm_distill(cfg: DistillConfig) -> bool:
    from edgekit.models.causal_lm import is_causal_lm

    return tc.is_teacher_cache(cfg.teacher) or is_causal_lm(cfg.teacher)


def run_llm_distill(cfg: DistillConfig, runtime: distributed.Runtime) -> dict[str, Any]:
    from edgekit.llm.corpus import load_tokenizer

    import transformers

    transformers.utils.logging.disable_progress_bar()
    lm = cfg.lm
    if lm.cache_only and lm.top_k == 0:
        raise InputError("--cache-only writes the teacher's top-k: give --top-k K (64 keeps nearly all of a "
                         "language model's probability mass)")
    teacher = _teacher_source(cfg.teacher)
    vocab = _teacher_vocab(teacher)
    plan = None if lm.cache_only else StudentPlan.of(cfg, vocab)
    splits = _splits(cfg, load_tokenizer(teacher.tokenizer_dir))
    module = _load_causal_lm(teacher.folder) if teacher.folder is not None else None
    targets, cache = None, teacher.cache
    if cache is not None or lm.top_k > 0:
        cache = cache or _fill_cache(cfg, module, teacher, splits, runtime)
        manifest = tc.check_matches(cache, splits)
        targets = {name: tc.read_split(cache, name) for name in splits}
        console.log(f"  teacher cache {cache} (top-{manifest['top_k']})")
    claim = claimed_output(cfg.out, cfg.force, cfg.resume, input_paths(cfg.flat()), "distill") if runtime.main \
        else nullcontext()
    with claim:
        if lm.cache_only:
            report = {"format": "causal-lm", "cache": str(cache), "top_k": lm.top_k,
                      "blocks": {n: len(v) for n, v in splits.items()}, "processes": runtime.world}
            if runtime.main:
                write_json(cfg.out / REPORT, report)
            return report
        if runtime.main:
            (cfg.out / "checkpoints").mkdir(parents=True, exist_ok=True)
            if not (cfg.resume and (cfg.out / HISTORY).is_file()):
                write_json(cfg.out / RUN, run_settings(cfg))
        distributed.barrier()
        return _train(cfg, runtime, plan, module, targets, splits, teacher, cache)


def _teacher_source(spec: str) -> Teacher:
    path = Path(spec)
    if tc.is_teacher_cache(path):
        return Teacher(None, path)
    if path.suffix == ".gguf":
        from edgekit.files import cache_root
        from edgekit.llm.from_gguf import folder_name, gguf_to_folder

        return Teacher(gguf_to_folder(path, cache_root() / "gguf" / folder_name(str(path))), None)
    return Teacher(path, None)


def _teacher_vocab(teacher: Teacher) -> int:
    if teacher.cache is not None:
        return int(tc.read_manifest(teacher.cache)["vocab"])
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(teacher.folder, local_files_only=True).vocab_size)


def _load_causal_lm(folder: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()


def _splits(cfg: DistillConfig, tokenizer) -> dict[str, np.ndarray]:
    from edgekit.llm.corpus import corpus_splits

    blocks = corpus_splits(cfg.data, tokenizer, cfg.lm.block_size, parse_fractions(cfg.split), cfg.seed)
    for name, part in blocks.items():
        if len(part) == 0:
            raise DataError(f"{cfg.data}: the {name} split has no block of {cfg.lm.block_size} tokens; give more "
                            "text, a smaller --block-size or another --split")
    return {name: part.ids for name, part in blocks.items()}


def _fill_cache(cfg: DistillConfig, module, teacher: Teacher, splits, runtime) -> Path:
    """The first process runs the teacher into the cache; the others wait and then find it."""
    from edgekit.files import cache_root

    root = cfg.lm.teacher_cache or cache_root() / "teacher-cache"
    write = lambda advance=None: tc.write_cache(root, module, teacher.folder, teacher.tokenizer_dir,  # noqa: E731
                                                splits, cfg.lm.top_k, progress=advance)
    if runtime.main:
        with bar(f"teacher top-{cfg.lm.top_k} into the cache", sum(len(v) for v in splits.values())) as advance:
            folder = write(advance)
    distributed.barrier()
    return folder if runtime.main else write()


def _train_settings(cfg: DistillConfig, plan: StudentPlan):
    given = cfg.train.model_fields_set
    updates = {k: v for k, v in {**LM_DEFAULTS, "lr": LR[plan.kind]}.items() if k not in given}
    return cfg.train.model_copy(update=updates)


def _train(cfg, runtime, plan: StudentPlan, teacher_module, targets, splits, teacher: Teacher, cache) -> dict:
    ckpt, train = cfg.out / "checkpoints", _train_settings(cfg, plan)
    history = read_history(cfg.out / HISTORY) if cfg.resume and (cfg.out / HISTORY).is_file() else []
    if history:
        check_same_settings(cfg)
    student = plan.build()
    keep = plan.trained_names(student)
    state = kd_loop.restore(student, ckpt, len(history) - 1, keep) if history else None
    if not history and runtime.main:  # the student as it starts, scored as the trained one will be
        write_json(ckpt / START, _score(student.eval(), teacher_module, targets, splits["eval"][:EVAL_BLOCKS]))
    trainee = kd.CausalKD(student, train.temperature).to(runtime.device)
    if teacher_module is not None and targets is None:
        teacher_module.to(runtime.device)
    units = list(kd.causal_parts(student)[0].layers) if cfg.lm.fsdp else None
    model = distributed.wrap(trainee, runtime, units)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=train.lr, weight_decay=0.0)
    if state is not None:
        distributed.load_optimizer_state(trainee, opt, state["optimizer"])
        torch.set_rng_state(state["rng"])
    calib = splits["calib"][:VALIDATION_BLOCKS]
    top1 = _teacher_top1(teacher_module, targets, calib, runtime)
    validate = lambda: kd.agreement(lambda ids: model(ids.to(runtime.device)).cpu(), calib, top1)  # noqa: E731
    pool = _curriculum(cfg, train, teacher_module, targets, splits["train"], runtime)
    for epoch in range(len(history), train.epochs):
        if kd_loop.patience_spent(history, train.patience):
            break
        for group in opt.param_groups:
            group["lr"] = kd.cosine_lr(train.lr, epoch, train.epochs)
        order = kd.epoch_order(len(splits["train"]), cfg.seed, epoch, pool(epoch) if pool else None)
        model.train()
        steps = -(-len(order) // train.batch_size)
        shown = bar(f"epoch {epoch + 1}/{train.epochs}", steps) if runtime.main else nullcontext(lambda n=1: None)
        with shown as advance:
            record = kd_loop.run_epoch(model, opt, teacher_module, targets and targets["train"], splits["train"],
                                       order, train, alpha_at(train, epoch), runtime, advance)
        model.eval()
        record["validation"] = validate()
        if pool:
            record["curriculum_fraction"] = len(order) / len(splits["train"])
        kd_loop.save_epoch(ckpt, epoch, trainee, opt, keep, record, history, runtime)
        history.append(record)
        if runtime.main:
            write_json(cfg.out / HISTORY, history)
            kd_loop.drop_older(ckpt, epoch)
            console.log(f"epoch {epoch + 1}/{train.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items()))
    distributed.barrier()
    return _report(cfg, plan, train, history, teacher_module, targets, splits, teacher, cache, runtime)


def _teacher_top1(module, targets, blocks: np.ndarray, runtime) -> np.ndarray:
    if targets is not None:
        return targets["calib"].top1()[:len(blocks)]
    return np.concatenate([t.argmax(-1).numpy() for t in kd.teacher_logits(module, blocks, runtime.device)])


def _curriculum(cfg, train, module, targets, blocks: np.ndarray, runtime) -> Callable[[int], np.ndarray] | None:
    """Easiest blocks first (the teacher's mean token entropy), a growing share each epoch."""
    if cfg.curriculum is None:
        return None
    from edgekit.distill.curriculum import fraction_at

    if targets is not None:
        entropy = kd.mean_entropy(targets["train"].values, train.temperature)
    else:
        entropy = np.concatenate([kd.mean_entropy(t.numpy(), train.temperature)
                                  for t in kd.teacher_logits(module, blocks, runtime.device)])
    ranking = np.argsort(entropy, kind="stable")
    return lambda epoch: ranking[:max(1, round(fraction_at(cfg.curriculum, epoch, train.epochs) * len(ranking)))]


def _report(cfg, plan, train, history, teacher_module, targets, splits, teacher: Teacher, cache, runtime) -> dict:
    from safetensors.torch import load_file

    from edgekit.llm.lora import merged

    report = {"format": "causal-lm", "processes": runtime.world, "fsdp": bool(cfg.lm.fsdp and runtime.world > 1),
              "student_kind": plan.kind, "epochs_run": len(history),
              "best_epoch": int(np.argmax([r["validation"] for r in history])) if history else None,
              "teacher_targets": f"top-{tc.read_manifest(cache)['top_k']} cache" if cache else "full logits",
              "settings": {k: getattr(train, k) for k in ("lr", "temperature", "batch_size", "epochs", "alpha")},
              "blocks": {n: len(v) for n, v in splits.items()}, "block_size": cfg.lm.block_size,
              "cache": str(cache) if cache else None}
    if not runtime.main:
        return report
    student = plan.build()
    best = cfg.out / "checkpoints" / "best.safetensors"
    if best.is_file():
        student.load_state_dict(load_file(str(best)), strict=plan.lora_rank == 0)
    student = merged(student).eval()
    evals = splits["eval"][:EVAL_BLOCKS]
    student.to("cpu")
    report["teacher"] = {"params": count_params(teacher_module) if teacher_module is not None else None,
                         "perplexity": _teacher_perplexity(teacher_module, targets, evals)}
    report["student"] = {"params": count_params(student), **_score(student, teacher_module, targets, evals)}
    report["student_at_start"] = json.loads((cfg.out / "checkpoints" / START).read_text())
    report["params_ratio"] = (report["student"]["params"] / report["teacher"]["params"]
                              if report["teacher"]["params"] else None)
    report["student_folder"] = str(_save_student(student, cfg.out / STUDENT_FOLDER, teacher.tokenizer_dir))
    write_json(cfg.out / REPORT, report)
    return report


def _score(student, teacher_module, targets, blocks: np.ndarray) -> dict[str, float]:
    return kd.score(student, teacher_module, targets and targets["eval"], blocks)


def _teacher_perplexity(module, targets, blocks: np.ndarray) -> float:
    if targets is not None:
        return float(np.exp(-targets["eval"].target_logprob[:len(blocks)].mean()))
    return kd.perplexity(module, blocks)


def _save_student(model, folder: Path, tokenizer_dir: Path) -> Path:
    from edgekit.files import atomic_dir

    with atomic_dir(folder, replace=True) as tmp:
        model.save_pretrained(tmp)
        tc.copy_tokenizer_files(tokenizer_dir, tmp)
    return folder
