"""An emulated aarch64 Python 3.11 with the real aarch64 ONNX Runtime wheel, through qemu user mode.

Debian's debootstrap fetches an arm64 bookworm with python3 (first stage only, the .debs then
unpacked by hand), pip fetches the aarch64 wheels of the host's onnxruntime and numpy versions,
and qemu-aarch64-static runs that Python with the root as its library prefix. qemu passes the
host's x86 /proc/cpuinfo through, on which onnxruntime crashes at import, so the root carries an
aarch64 one. Built once (about 35 s and 430 MB) and cached; only for correctness, never timing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

TOOLS = ("qemu-aarch64-static", "debootstrap", "dpkg-deb")
CPUINFO = """processor\t: {n}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x4
CPU part\t: 0xd0b
CPU revision\t: 1
"""


def unavailable() -> str | None:
    """Why the emulated board cannot be made here, or None."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install qemu-user-static debootstrap)"
    if os.geteuid() != 0:
        return "debootstrap needs root"
    return None


def root_dir() -> Path:
    versions = f"ort{metadata.version('onnxruntime')}-np{metadata.version('numpy')}"
    base = os.environ.get("EDGEKIT_AARCH64_ROOT") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekit"
    return Path(base) / f"aarch64-bookworm-{versions}"


def ensure_root() -> Path:
    """The cached root, built on first use; a half-built one is never reused."""
    root = root_dir()
    if (root / ".ready").is_file():
        return root
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    _run(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase", "--include=python3", "bookworm",
          str(partial)], 600)
    for deb in sorted((partial / "var" / "cache" / "apt" / "archives").glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(partial)], 120)
    (partial / "proc").mkdir(exist_ok=True)
    (partial / "proc" / "cpuinfo").write_text("\n".join(CPUINFO.format(n=n) for n in range(4)))
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--platform", "manylinux_2_28_aarch64",
          "--only-binary=:all:", "--python-version", "3.11", "--target", str(partial / "site"),
          f"onnxruntime=={metadata.version('onnxruntime')}", f"numpy=={metadata.version('numpy')}",
          "flatbuffers", "protobuf", "packaging"], 600)
    shutil.rmtree(partial / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (partial / ".ready").write_text("ok\n")
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    return root


def run_python(root: Path, args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root / "site"), "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run(["qemu-aarch64-static", "-L", str(root), str(root / "usr" / "bin" / "python3.11"), *args],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def _run(cmd: list[str], timeout: int) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} … failed: {(done.stderr or done.stdout).strip()[-400:]}")
