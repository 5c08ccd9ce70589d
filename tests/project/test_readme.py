"""README's two commands are the ones CI runs, and the set-up cannot pull a CUDA torch."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks if "venv" in b or "pytest" in b]


def test_ci_runs_readme_setup_and_test_commands_verbatim():
    setup, tests = _readme_commands()[:2]
    ci_lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert setup in ci_lines and tests in ci_lines
    assert ci_lines.index(setup) < ci_lines.index(tests)


def test_setup_pins_the_cpu_torch_build():
    setup = _readme_commands()[0]
    assert '"torch==2.13.0"' in setup and "edgekit demo" in setup
