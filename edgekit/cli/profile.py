"""`edgekit profile`: latency, memory and agreement of a bundle measured on real boards over SSH."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from edgekit.api import PROFILE_OPTIONS
from edgekit.cli._options import given, with_settings
from edgekit.cli._output import emit_json

NAME = "profile"
HELP = """Run a bundle on one or more boards over SSH and bring back their measurements.

The bundle is copied to a temporary folder on each board, hash-checked there, run by its own
runner (latency p50/p90/p99, throughput, peak memory, agreement with the host's outputs on the
shipped samples), and the folder is removed. Uses your ssh client and its config; host keys are
always checked. Several --board options run in parallel.

Examples:

  edgekit profile build/raspberry-pi-5 --board ssh://pi@192.168.1.20

  edgekit profile build/arm64.tar.gz --board pi5 --board pi4     # names from boards.toml
"""


@with_settings(PROFILE_OPTIONS)
def command(
    bundle: Annotated[Path, typer.Argument(help="A bundle .tar.gz, or an OUT/<target> folder (packed on the fly).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result(s) as JSON.")] = False,
    **settings: Any,
) -> None:
    from edgekit.api import board_failure, profile

    results, errors = profile(bundle, **given(settings, PROFILE_OPTIONS))
    if as_json:
        emit_json(results[0] if len(settings["board"]) == 1 and results else results)
    else:
        for r in results:
            if "decode_tok_s" in r:  # a language model
                typer.echo(f"{r['target']} on {r['board']} ({r['machine']}): time to first token {r['ttft_ms']:.1f} ms, "
                           f"prefill {r['prefill_tok_s']:.0f} tok/s, decode {r['decode_tok_s']:.1f} tok/s, peak memory "
                           f"{r['peak_rss_mib']:.0f} MiB; greedy tokens match the host: "
                           f"{r['check']['reference_match']}. Saved {r['saved']}")
                continue
            lat, agree = r["latency_ms"], r["agreement"]
            typer.echo(f"{r['target']} on {r['board']} ({r['machine']}): p50 {lat['p50']:.3f} ms, p90 "
                       f"{lat['p90']:.3f}, p99 {lat['p99']:.3f}; agreement with host {agree['top1_agreement']}, "
                       f"max |diff| {agree['max_abs_diff']:.3g}. Saved {r['saved']}")
    if errors:
        for message in errors[:-1]:
            typer.echo(f"error: {message}", err=True)
        raise board_failure(errors[-1])
