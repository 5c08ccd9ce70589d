"""The built-in text task, `example:sentiment`: 6,000 generated film reviews labelled by a fixed rule.

Generated rather than downloaded (no dataset hub at run time). Each review joins one to three
clauses; a clause praises or pans an aspect, and `not`/`never`/`hardly` flips it. The label is the
sign of the clause scores, where a clause after `but` counts double and a tie goes to the last clause,
so a model has to read negation, contrast and word order, not count words.
"""

from __future__ import annotations

import numpy as np

from edgekit.data.text import TextSet

SIZE, SEED = 6000, 0
ASPECTS = ["the movie", "the film", "this show", "the plot", "the acting", "the soundtrack", "the dialogue",
           "the ending", "the cinematography", "the pacing", "the cast", "the script", "the director's vision",
           "the special effects", "the storyline", "every scene"]
VERBS = ["was", "is", "felt", "seemed", "looked", "sounded", "turned out"]
NEGATIONS = ["not", "never", "hardly"]
INTENSIFIERS = ["very", "really", "quite", "incredibly", "somewhat", "remarkably", "truly", "rather"]
POSITIVE = ["good", "great", "wonderful", "superb", "delightful", "brilliant", "charming", "moving", "enjoyable",
            "memorable", "gripping", "uplifting", "refreshing", "stunning", "heartwarming", "unforgettable"]
NEGATIVE = ["bad", "awful", "boring", "dull", "tedious", "clumsy", "forgettable", "unwatchable", "painful",
            "bland", "messy", "unpleasant", "disappointing", "lifeless", "predictable", "uninspired"]
LABEL_NAMES = ["negative", "positive"]


def sentiment(size: int = SIZE, seed: int = SEED) -> TextSet:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(size):
        text, label = _review(rng)
        texts.append(text)
        labels.append(label)
    return TextSet(source="example:sentiment", texts=texts, labels=labels)


def _review(rng: np.random.Generator) -> tuple[str, int]:
    clauses, score, last = [], 0, 0
    for i in range(int(rng.integers(1, 4))):
        joiner = "" if i == 0 else str(rng.choice(["and", "but", "while"]))
        text, polarity = _clause(rng)
        clauses.append(f"{joiner} {text}".strip())
        score += polarity * (2 if joiner == "but" else 1)
        last = polarity
    label = int(score > 0) if score != 0 else int(last > 0)
    return " ".join(clauses) + str(rng.choice([".", "!", ""])), label


def _clause(rng: np.random.Generator) -> tuple[str, int]:
    positive = bool(rng.integers(2))
    negated = rng.random() < 0.3
    words = [str(rng.choice(ASPECTS)), str(rng.choice(VERBS))]
    if negated:
        words.append(str(rng.choice(NEGATIONS)))
    if rng.random() < 0.5:
        words.append(str(rng.choice(INTENSIFIERS)))
    words.append(str(rng.choice(POSITIVE if positive else NEGATIVE)))
    return " ".join(words), (1 if positive else -1) * (-1 if negated else 1)
