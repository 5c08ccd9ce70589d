"""Corpus text packed into blocks with the model's tokenizer; splits from disjoint documents; errors in one line."""

import json

import pytest

from llm_fixtures import python_docs


def test_documents_are_packed_whole_and_split_apart(tmp_path, tiny_llama):
    from edgekit.llm.corpus import corpus_splits, load_tokenizer, pack

    docs = [" ".join(d.split()) for d in python_docs()[:60]]  # one paragraph each: .txt documents part at blank lines
    (tmp_path / "docs.txt").write_text("\n\n".join(docs))
    tokenizer = load_tokenizer(tiny_llama)
    splits = corpus_splits(tmp_path / "docs.txt", tokenizer, 64, (0.6, 0.2, 0.2), seed=0)
    assert [splits[n].documents for n in ("train", "calib", "eval")] == [36, 12, 12]
    assert all(splits[n].ids.shape[1] == 64 and len(splits[n]) > 0 for n in splits)
    stream = [t for d in docs[:3] for t in tokenizer(d, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]]
    blocks = pack(docs[:3], tokenizer, 64)
    assert blocks.ravel().tolist() == stream[:blocks.size]  # nothing dropped or reordered inside a block
    seen = {n: {tuple(b) for b in splits[n].ids} for n in splits}
    assert not (seen["train"] & seen["eval"]) and not (seen["calib"] & seen["eval"])


def test_jsonl_text_and_chat_messages(tmp_path, tiny_llama):
    from edgekit.errors import DataError
    from edgekit.llm.corpus import load_tokenizer, read_documents

    tokenizer = load_tokenizer(tiny_llama)
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in python_docs()[:3]))
    assert read_documents(tmp_path / "t.jsonl", tokenizer) == python_docs()[:3]
    chat = {"messages": [{"role": "user", "content": "What is a list?"}, {"role": "assistant", "content": "A sequence."}]}
    (tmp_path / "c.jsonl").write_text(json.dumps(chat))
    with pytest.raises(DataError, match="no chat template"):
        read_documents(tmp_path / "c.jsonl", tokenizer)
    tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    assert read_documents(tmp_path / "c.jsonl", tokenizer) == ["<user>What is a list?\n<assistant>A sequence.\n"]


def test_text_shorter_than_a_block_is_refused_in_one_line(tmp_path, tiny_llama):
    from edgekit.errors import DataError
    from edgekit.llm.corpus import corpus_splits, load_tokenizer

    (tmp_path / "short.txt").write_text("Only a few words.")
    with pytest.raises(DataError, match=r"fewer than one block of 64; give more text or a smaller --block-size"):
        corpus_splits(tmp_path / "short.txt", load_tokenizer(tiny_llama), 64, (0.6, 0.2, 0.2))
    with pytest.raises(DataError, match="has no tokenizer"):
        load_tokenizer(tmp_path)
