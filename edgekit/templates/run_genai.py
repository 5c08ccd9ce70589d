"""Run this edgekit language-model bundle on the board with ONNX Runtime GenAI: checked, then timed.

    python3 apps/python/run_genai.py [--runs 3] [--prompt-tokens 128] [--new-tokens 128] [--json]
    python3 apps/python/run_genai.py --chat "Write a haiku about small computers"

Needs only the onnxruntime-genai package (pip install onnxruntime-genai). It first generates greedily from
the prompt shipped in reference.json and compares the tokens with the ones the host generated at compress
time, then times generation: time to first token, prefill and decode tokens per second (medians over
--runs, after one untimed run), and the process's peak resident memory. --chat answers one message.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

BUNDLE = Path(__file__).resolve().parents[2]
# This file runs on the board, where edgekit is not installed: its timing loop and peak-memory reading are
# written out here in the same way as edgekit's own (measure/latency.py, llm/memory.py), not imported.


def generator_for(og, model, prompt: list[int], new_tokens: int, full_length: bool = True):
    params = og.GeneratorParams(model)
    length = len(prompt) + new_tokens
    options = {"max_length": length, "do_sample": False}
    if full_length:
        options["min_length"] = length  # the end of text held off: every run makes the same number of tokens
    params.set_search_options(**options)
    generator = og.Generator(model, params)
    generator.append_tokens(prompt)
    return generator


def greedy(og, model, prompt: list[int], new_tokens: int) -> list[int]:
    generator = generator_for(og, model, prompt, new_tokens)
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokens


def check(og, model) -> dict:
    """The shipped prompt's greedy continuation against the host's."""
    reference = json.loads((BUNDLE / "reference.json").read_text())
    got = greedy(og, model, reference["prompt_ids"], len(reference["greedy_tokens"]))
    want = reference["greedy_tokens"]
    same = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return {"reference_match": got == want, "matched_tokens": same, "tokens": len(want)}


def timing(og, model, prompt: list[int], new_tokens: int, runs: int) -> dict:
    ttft, decode = [], []
    for _ in range(runs + 1):
        start = time.perf_counter()
        generator = generator_for(og, model, prompt, new_tokens)
        generator.generate_next_token()
        first = time.perf_counter()
        steps = 0
        while not generator.is_done():
            generator.generate_next_token()
            steps += 1
        end = time.perf_counter()
        ttft.append(first - start)
        decode.append(steps / max(end - first, 1e-9))
    first_s = statistics.median(ttft[1:])
    return {"ttft_ms": 1000 * first_s, "prefill_tok_s": len(prompt) / first_s,
            "decode_tok_s": statistics.median(decode[1:]), "prompt_tokens": len(prompt), "new_tokens": new_tokens,
            "runs": runs}


def peak_rss_mib() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def chat(og, model, message: str, new_tokens: int) -> str:
    tokenizer = og.Tokenizer(model)
    template = None
    config = BUNDLE / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text()).get("chat_template")
    messages = json.dumps([{"role": "user", "content": message}])
    text = tokenizer.apply_chat_template(messages=messages, add_generation_prompt=True,
                                         template_str=template) if template else message
    prompt = list(tokenizer.encode(text))
    generator = generator_for(og, model, prompt, new_tokens, full_length=False)
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokenizer.decode(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed generations (after one untimed)")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--chat", help="answer this message instead of checking and timing")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    import onnxruntime_genai as og

    model = og.Model(str(BUNDLE))
    if args.chat:
        print(chat(og, model, args.chat, args.new_tokens))
        return
    checked = check(og, model)
    context = json.loads((BUNDLE / "genai_config.json").read_text())["model"].get("context_length", 4096)
    new_tokens = min(args.new_tokens, context // 4)
    prompt_ids = json.loads((BUNDLE / "reference.json").read_text())["prompt_ids"]
    length = min(args.prompt_tokens, context - new_tokens)
    prompt = (prompt_ids * (length // len(prompt_ids) + 1))[:length]
    result = {"machine": platform.machine(), "runtime": f"onnxruntime-genai {og.__version__}",
              "check": checked, **timing(og, model, prompt, new_tokens, max(1, args.runs)),
              "peak_rss_mib": peak_rss_mib()}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"greedy tokens match the host: {checked['reference_match']} ({checked['matched_tokens']}/"
              f"{checked['tokens']}); time to first token {result['ttft_ms']:.1f} ms, prefill "
              f"{result['prefill_tok_s']:.0f} tok/s, decode {result['decode_tok_s']:.1f} tok/s, peak memory "
              f"{result['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
