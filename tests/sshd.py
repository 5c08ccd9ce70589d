"""A real OpenSSH server on 127.0.0.1 standing in for a board: its own host and user keys, key-only auth.

Started by the tests, stopped by its pid. The client side gets its own ssh config (identity,
known_hosts with the server's real key, strict host-key checking) passed with `ssh -F`.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def unavailable() -> str | None:
    if not Path(SSHD).is_file() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "OpenSSH server/client not installed (apt-get install openssh-server openssh-client)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


class LoopbackBoard:
    def __init__(self, root: Path, path_env: str):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        self.port = _free_port()
        self.user = getpass.getuser()
        self.host_pub = _keygen(root / "host_key")
        (root / "authorized_keys").write_text(_keygen(root / "client_key") + "\n")
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nPidFile {root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            f"PermitRootLogin prohibit-password\nSetEnv PATH={path_env}\n")
        self.write_client_config(self.host_pub)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def write_client_config(self, host_pub: str) -> None:
        """known_hosts holds `host_pub` for this server: the real key, or another to fake a changed one."""
        key_type, key = host_pub.split()[:2]
        (self.root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {key_type} {key}\n")
        (self.root / "ssh_config").write_text(
            f"Host 127.0.0.1\n  IdentityFile {self.root / 'client_key'}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.root / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n  LogLevel ERROR\n")

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    def start(self) -> "LoopbackBoard":
        import os

        if os.geteuid() == 0:  # root's sshd wants its privilege-separation folder (the service makes it at boot)
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "sshd.log", "wb"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
