"""The built-in text example: a 3-layer BERT teacher and a 2-layer student for `example:sentiment`.

Both are built from configs (no hub). The teacher and its WordPiece tokenizer (trained with the
`tokenizers` library on the task's training sentences) are made on first use and cached as a
transformers folder, so `example:text-teacher` loads like any user's `save_pretrained` folder. The
student factory returns a fresh, untrained model for `edgekit distill`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgekit.progress import console, stage
from edgekit.examples import CACHE_VERSION, SEED, SPLIT, cache_dir

TEACHER = dict(hidden_size=128, num_hidden_layers=3, num_attention_heads=4, intermediate_size=512)
STUDENT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB_SIZE, MAX_POSITIONS = 400, 64
TEACHER_EPOCHS, TEACHER_LR = 12, 1e-3


def bert_config(vocab_size: int, **sizes):
    from transformers import BertConfig

    from edgekit.data.text_example import LABEL_NAMES

    return BertConfig(vocab_size=vocab_size, max_position_embeddings=MAX_POSITIONS, num_labels=2,
                      id2label=dict(enumerate(LABEL_NAMES)), label2id={n: i for i, n in enumerate(LABEL_NAMES)},
                      architectures=["BertForSequenceClassification"], **sizes)


def text_student():
    """A fresh student for `edgekit distill --student edgekit.examples.text:text_student`
    (2 layers, hidden 64, 4 heads): it shares the teacher's tokenizer, so its vocabulary size too."""
    from transformers import BertForSequenceClassification

    from edgekit.data.text import load_tokenizer

    torch.manual_seed(0)
    vocab = load_tokenizer(ensure_teacher()).get_vocab_size()
    return BertForSequenceClassification(bert_config(vocab, **STUDENT))


def ensure_teacher() -> Path:
    """The cached teacher folder (config, weights, tokenizer); trained once, written atomically."""
    from edgekit.files import atomic_dir

    folder = cache_dir() / f"text-teacher-{CACHE_VERSION}"
    if (folder / "config.json").is_file():
        return folder
    try:
        with atomic_dir(folder) as tmp, stage("training example model text-teacher (once; cached afterwards)"):
            _train_teacher(tmp)
    except FileExistsError:
        pass  # another process (a torchrun peer) cached it first; both trained the same model
    return folder


def _train_teacher(folder: Path) -> None:
    import transformers
    from transformers import BertForSequenceClassification

    from edgekit.data import make_splits
    from edgekit.data.text_example import sentiment

    texts = sentiment()
    order = np.random.default_rng(SEED).permutation(len(texts))
    n_hold = int(round(len(texts) * (SPLIT[1] + SPLIT[2])))
    train_tokenizer([texts.texts[i] for i in order[n_hold:]], folder)  # the training sentences only
    data = texts.tokenized(folder, ["input_ids", "attention_mask"], None)
    splits = make_splits(data, SPLIT, SEED)
    torch.manual_seed(0)
    model = BertForSequenceClassification(bert_config(_vocab_size(folder), **TEACHER))
    _fit(model, splits.train)
    acc = _accuracy(model, splits.eval)
    console.log(f"text-teacher: eval accuracy {acc:.2f}% on {len(splits.eval)} held-out reviews")
    transformers.utils.logging.disable_progress_bar()
    model.eval().save_pretrained(folder)


def train_tokenizer(texts: list[str], folder: Path) -> None:
    """A lower-casing WordPiece tokenizer with BERT's [CLS] … [SEP] framing, saved as tokenizer.json."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE,
                                                                    special_tokens=SPECIAL_TOKENS))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=MAX_POSITIONS)
    fast.save_pretrained(folder)


def _vocab_size(folder: Path) -> int:
    from edgekit.data.text import load_tokenizer

    return load_tokenizer(folder).get_vocab_size()


def _fit(model, train) -> None:
    import torch.nn.functional as F

    from edgekit.data.text import trim_padding

    opt = torch.optim.AdamW(model.parameters(), lr=TEACHER_LR)
    steps = TEACHER_EPOCHS * -(-len(train) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, TEACHER_LR, total_steps=steps)
    model.train()
    for epoch in range(TEACHER_EPOCHS):
        order = np.random.default_rng(SEED + epoch).permutation(len(train))
        for inputs, labels in train.batches(64, order):
            logits = model(**{k: torch.from_numpy(v) for k, v in trim_padding(inputs).items()}).logits
            loss = F.cross_entropy(logits, torch.from_numpy(labels))
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    model.eval()


def _accuracy(model, samples) -> float:
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(v) for k, v in samples.arrays.items()}).logits
    return float((logits.argmax(-1).numpy() == samples.labels).mean() * 100)
