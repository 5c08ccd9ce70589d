"""Power and memory on a Jetson, from `tegrastats` sampled while the runner times the model.

Line formats differ by JetPack: Orin prints `RAM 2405/7620MB ... VDD_IN 4520mW/4520mW`, older
boards `RAM 2405/3964MB ... POM_5V_IN 4000/4000`. The first number of a rail is the instantaneous
reading; RAM is used/total in MB for the whole board.
"""

from __future__ import annotations

import re

PREFIX = "EDGEKIT_TEGRA "
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_POWER = re.compile(r"\b(VDD_IN|POM_5V_IN) (\d+)(?:mW)?/")


def parse_tegrastats(lines: list[str]) -> dict | None:
    """Peak board RAM and mean input power over the samples; None when there are none."""
    ram = [int(m.group(1)) for line in lines if (m := _RAM.search(line))]
    power = [int(m.group(2)) for line in lines if (m := _POWER.search(line))]
    if not ram and not power:
        return None
    return {"samples": max(len(ram), len(power)), "peak_ram_mb": max(ram) if ram else None,
            "mean_power_mw": sum(power) / len(power) if power else None}


def from_stderr(stderr: str) -> list[str]:
    return [line[len(PREFIX):] for line in stderr.splitlines() if line.startswith(PREFIX)]


def energy_per_inference_mj(power: dict | None, mean_latency_ms: float) -> float | None:
    """Board input power × time per inference: an upper bound, as it includes the idle board."""
    if not power or power.get("mean_power_mw") is None:
        return None
    return power["mean_power_mw"] * mean_latency_ms / 1000.0
