"""`python -m edgekit.llm.memory GENAI_DIR PROMPT_TOKENS NEW_TOKENS`: load, generate, print peak RSS in MiB.

Run in its own process so the figure is the artifact's alone (the parent holds the FP model and others).
"""

from __future__ import annotations

import resource
import sys


def main(genai_dir: str, prompt_tokens: int, new_tokens: int) -> float:
    import onnxruntime_genai as og

    model = og.Model(genai_dir)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=prompt_tokens + new_tokens, min_length=prompt_tokens + new_tokens,
                              do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens([(7 * i) % 100 + 3 for i in range(prompt_tokens)])
    while not generator.is_done():
        generator.generate_next_token()
    return _peak_mib()


def _peak_mib() -> float:
    """This process's own high-water mark: /proc's VmHWM starts afresh at exec, where getrusage's maximum on
    Linux carries the parent's over (a child of a large process would report the parent's peak)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, the fallback


if __name__ == "__main__":
    print(f"{main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])):.1f}")
