"""The only module that opens connections to boards: the system OpenSSH client, never a library.

Using `ssh` itself means the user's ~/.ssh/config, agents, ProxyJump and known_hosts all apply.
Host keys are always checked (BatchMode: no prompt, an unknown or changed key is an error), every
remote command is built with shlex.quote, and every call has a bounded time. ssh's own failures
(exit 255) are read from its stderr into one-line errors that name the board and the fix.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import EdgekitError, InputError

SSH_FAILED = 255


class BoardError(EdgekitError):
    """A board could not be reached or could not run the job; the message names board and fix."""


@dataclass(frozen=True)
class Board:
    name: str
    host: str
    user: str | None = None
    port: int | None = None
    target: str | None = None
    workdir: str = "/tmp"
    python: str = "python3"

    def __post_init__(self) -> None:
        check_address(self.host, "host", self.name)
        if self.user is not None:
            check_address(self.user, "user", self.name)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


def check_address(value: str, part: str, board: str) -> None:
    """A host or user that ssh could read as an option (`-oProxyCommand=...`) or split is refused."""
    if not value or value.startswith("-") or any(c.isspace() or not c.isprintable() for c in value) \
            or (part == "user" and "@" in value):
        raise InputError(f"board {board}: the {part} {value!r} is not a plain name (it starts with '-', or holds "
                         f"spaces or control characters); give the board's real {part}")


@dataclass
class SSH:
    board: Board
    config: Path | None = None
    connect_timeout: int = 10

    def args(self) -> list[str]:
        cmd = ["ssh"]
        if self.config is not None:
            cmd += ["-F", str(self.config)]
        if self.board.port:
            cmd += ["-p", str(self.board.port)]
        # BatchMode: never prompt (a password or an unknown host key fails instead of hanging);
        # keepalives turn a dropped connection into an error within ~15 s.
        cmd += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-T", "--", self.board.destination]
        return cmd

    def run(self, argv: list[str], timeout: float, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        """Run `argv` on the board (each word quoted); ssh failures become BoardError."""
        command = " ".join(shlex.quote(a) for a in argv)
        try:
            done = subprocess.run([*self.args(), command], input=stdin, capture_output=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise BoardError(f"board {self.board.name}: no answer within {timeout:.0f} s; check that it is "
                             "powered and not overloaded, or raise --timeout") from exc
        if done.returncode == SSH_FAILED:
            raise BoardError(explain_ssh_failure(self.board, done.stderr.decode(errors="replace")))
        return done


def explain_ssh_failure(board: Board, stderr: str) -> str:
    """ssh's exit 255 and its stderr → what went wrong and how to fix it, in one line."""
    text = stderr.lower()
    where = f"board {board.name} ({board.destination}{':' + str(board.port) if board.port else ''})"
    if "remote host identification has changed" in text or ("host key for" in text and "has changed" in text):
        return (f"{where}: its host key has changed since it was recorded in known_hosts; if the board was "
                f"re-flashed, remove the old key with `ssh-keygen -R {shlex.quote(board.host)}`, otherwise do not connect")
    if "host key verification failed" in text:
        return (f"{where}: its host key is not in known_hosts; connect once with `ssh` to check and record "
                "it (edgekit never accepts unknown keys)")
    if "permission denied" in text:
        return f"{where}: authentication failed; install your public key on the board (ssh-copy-id) or load it into ssh-agent"
    if "could not resolve hostname" in text:
        return f"{where}: the host name does not resolve; check the name or use the board's IP address"
    if any(s in text for s in ("connection refused", "no route to host", "connection timed out",
                               "network is unreachable", "operation timed out")):
        return f"{where}: unreachable ({last_line(stderr)}); check that it is powered, on the network and running sshd"
    if any(s in text for s in ("connection closed", "closed by remote host", "broken pipe", "connection reset",
                               "timeout, server")):
        return f"{where}: the connection dropped during the run ({last_line(stderr)}); check the link and retry"
    return f"{where}: ssh failed: {last_line(stderr) or 'no message'}; try `{_ssh_by_hand(board)}` by hand"


def _ssh_by_hand(board: Board) -> str:
    port = ["-p", str(board.port)] if board.port else []
    return " ".join(shlex.quote(a) for a in ["ssh", *port, "--", board.destination])


def last_line(text: str, skip: tuple[str, ...] = ("@", "EDGEKIT_")) -> str:
    """The last message line of a stderr, without ssh's banner lines or edgekit's own markers."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith(skip)]
    return lines[-1][:160] if lines else ""
