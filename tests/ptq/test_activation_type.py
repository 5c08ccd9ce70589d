"""uint8 or int8 activations: measured on this CPU where the host is the target's architecture, the preset's
elsewhere, cached so that a second run chooses the same."""

import json
import platform

import pytest


def test_the_faster_activation_type_is_measured_here_and_cached(tmp_path, monkeypatch):
    from edgekit.ptq import activation_type as at
    from edgekit.target import load_target

    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "edgekit"))
    at.probe_latencies.cache_clear()
    host = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "x86-64"
    scheme, record = at.activation_scheme(load_target(host), "auto")
    timings = record["probe_ms"]
    assert set(timings) == {"uint8", "int8"} and all(t > 0 for t in timings.values())
    assert record["activations"] == min(timings, key=timings.get)
    assert scheme.signed_activations == (record["activations"] == "int8")
    cached = json.loads((tmp_path / "edgekit" / "activation_probe.json").read_text())
    assert list(cached.values()) == [timings]
    at.probe_latencies.cache_clear()
    assert at.activation_scheme(load_target(host), "auto")[1]["probe_ms"] == timings  # read back, not re-timed


def test_another_boards_preset_stands_and_a_given_type_is_kept(monkeypatch):
    from edgekit.errors import InputError
    from edgekit.ptq import activation_type as at
    from edgekit.target import load_target

    monkeypatch.setattr(at, "host_arch", lambda: "x86_64")
    scheme, record = at.activation_scheme(load_target("arm64"), "auto")
    assert scheme.preset == load_target("arm64").quant_preset and "not measured" in record["why"]
    assert at.activation_scheme(load_target("arm64"), "uint8")[0].preset == "ort-u8s8"
    with pytest.raises(InputError, match="TensorRT"):
        at.activation_scheme(load_target("jetson-orin-nano"), "uint8")
