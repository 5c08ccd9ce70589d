"""`edgekit profile`: send a bundle to a board over SSH, check it there, run its runner, bring back JSON.

One SSH session does it all: the bundle streams in on stdin (no scp, so ProxyJump and the user's
config apply), lands in a fresh `mktemp -d` under the board's work dir, is hash-checked on the
board, run, and removed by a trap whether the run ends, fails or the connection drops. Nothing is
written locally until the result is back, so a failure leaves local state as it was.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.remote.ssh import SSH, Board, BoardError, last_line
from edgekit.files import scratch_dir
from edgekit.progress import bar

LANGUAGE_MODEL_RUNS = 5

# $1 work dir, $2 python, $3 runner, $4 timed runs, $5 seconds. Exit codes 90-94 name the step that
# failed. The runner is bounded by `timeout` and watched: if sshd goes away (the client timed out or the
# link dropped) the shell is re-parented, so it stops the runner and its trap removes the folder.
REMOTE_JOB = r"""
set -u
umask 077
d=$(mktemp -d "$1/edgekit-profile.XXXXXX") || { echo "EDGEKIT_STEP cannot create a folder in $1" >&2; exit 90; }
trap 'rm -rf "$d"' EXIT
trap 'exit 129' HUP INT TERM PIPE
cat > "$d/bundle.tar.gz" || { echo "EDGEKIT_STEP upload failed" >&2; exit 91; }
tar -xzf "$d/bundle.tar.gz" -C "$d" || { echo "EDGEKIT_STEP unpacking failed" >&2; exit 92; }
rm -f "$d/bundle.tar.gz"
cd "$d"/*/ || exit 92
command -v "$2" >/dev/null 2>&1 || { echo "EDGEKIT_STEP no $2 on the board" >&2; exit 93; }
"$2" apps/python/verify_bundle.py >/dev/null || { echo "EDGEKIT_STEP hash check failed" >&2; exit 94; }
if [ "$3" = run_tensorrt.py ] && [ ! -f model.engine ]; then
  timeout "$5" ./build_engine.sh >build.log 2>&1 || { tail -3 build.log >&2; echo "EDGEKIT_STEP engine build failed" >&2; exit 95; }
fi
tegra=
if command -v tegrastats >/dev/null 2>&1; then tegrastats --interval 100 --logfile "$d/tegra.log" & tegra=$!; fi
timeout "$5" "$2" "apps/python/$3" --json --runs "$4" &
job=$!
parent=$PPID
while kill -0 "$job" 2>/dev/null; do
  now=$(cut -d' ' -f4 /proc/$$/stat 2>/dev/null || echo "$parent")
  if [ "$now" != "$parent" ]; then kill "$job"; exit 129; fi
  sleep 0.5
done
wait "$job"
status=$?
if [ -n "$tegra" ]; then kill "$tegra" 2>/dev/null; sed 's/^/EDGEKIT_TEGRA /' "$d/tegra.log" >&2; fi
exit $status
"""


def profile(bundle: Path, board: Board, ssh_config: Path | None = None, runs: int = 200,
            timeout: float = 600) -> dict:
    """Run `bundle` (a .tar.gz or an OUT/<target> folder) on `board`; the runner's JSON plus where it ran."""
    from edgekit.bundle.pack import pack, verify

    with scratch_dir("profile") as tmp:
        if Path(bundle).is_dir():
            bundle = Path(pack(bundle, Path(tmp) / f"{Path(bundle).name}.tar.gz")["bundle"])
        checked = verify(bundle)
        language_model = checked["kind"] == "causal-lm"
        runner = ("run_genai.py" if language_model else "run_tensorrt.py" if checked["runtime"] == "tensorrt"
                  else "run_onnxruntime.py")
        if language_model:
            runs = min(runs, LANGUAGE_MODEL_RUNS)  # each run is a whole generation, not one inference
        done = SSH(board, ssh_config).run(["bash", "-c", REMOTE_JOB, "edgekit-profile", board.workdir,
                                           board.python, runner, str(runs), str(int(timeout))], timeout,
                                          Path(bundle).read_bytes())
    if done.returncode != 0:
        raise BoardError(_explain_job_failure(board, done.returncode, done.stderr.decode(errors="replace")))
    try:
        result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as exc:
        raise BoardError(f"board {board.name}: the runner printed no result; run it by hand there "
                         f"({board.python} apps/python/{runner} --json)") from exc
    from edgekit.remote.tegrastats import energy_per_inference_mj, from_stderr, parse_tegrastats

    power = parse_tegrastats(from_stderr(done.stderr.decode(errors="replace")))
    where = {"board": board.name, "destination": board.destination, "bundle_sha256": checked["sha256"],
             "target": checked["target"], "tegrastats": power}
    if language_model:  # energy per decoded token: the board's power over one token's time
        return {**result, **where, "energy_per_token_mj": energy_per_inference_mj(power, 1000 / result["decode_tok_s"])}
    return {**result, **where, "energy_per_inference_mj": energy_per_inference_mj(power, result["latency_ms"]["mean"])}


def _explain_job_failure(board: Board, code: int, stderr: str) -> str:
    text = stderr.lower()
    where = f"board {board.name}"
    if "no space left on device" in text:
        return f"{where}: its disk is full ({board.workdir}); free space there or set another work dir"
    if "no module named" in text:
        module = stderr.split("No module named", 1)[1].strip().split()[0].strip("'\"")
        return f"{where}: {board.python} has no {module}; install it on the board (pip install {module})"
    if code == 93:
        return f"{where}: {board.python} is not on the board's PATH; install Python 3 there or name it in boards.toml"
    if code == 94:
        return f"{where}: the bundle arrived damaged (hash check failed on the board); retry"
    if code == 95:
        return f"{where}: build_engine.sh failed on the board ({last_line(stderr) or 'no message'}); run it there by hand to see why"
    if code == 129:
        return f"{where}: the run was interrupted on the board; retry"
    if code == 124:
        return f"{where}: the run did not finish within the time limit; raise --timeout or lower --runs"
    step = next((ln.split("EDGEKIT_STEP", 1)[1].strip() for ln in stderr.splitlines() if "EDGEKIT_STEP" in ln), None)
    detail = step or last_line(stderr) or f"exit code {code}"
    return f"{where}: the run failed: {detail}"


def profile_boards(bundle: Path, specs: list[str], inventory: dict, ssh_config: Path | None,
                   remote_python: str | None, runs: int, timeout: float, out_dir: Path) -> tuple[list, list]:
    """Profile every board in parallel; each result is saved as OUT_DIR/<target>-on-<board>.json.

    A failing board does not stop the others: its one-line error is collected instead.
    """
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    from edgekit.files import write_json
    from edgekit.remote.boards import resolve

    boards = [resolve(spec, inventory) for spec in specs]
    if remote_python:
        boards = [replace(b, python=remote_python) if b.name not in inventory else b for b in boards]

    def one(board: Board):
        try:
            result = profile(bundle, board, ssh_config, runs, timeout)
        except BoardError as exc:
            return None, str(exc)
        path = Path(out_dir) / f"{result['target']}-on-{board.name.replace(':', '-')}.json"
        write_json(path, result)
        return {**result, "saved": str(path)}, None

    with bar(f"profiling on {len(boards)} board(s)", len(boards)) as advance:
        def counted(board: Board):
            try:
                return one(board)
            finally:
                advance(1)

        with ThreadPoolExecutor(max_workers=max(1, len(boards))) as pool:
            outcomes = list(pool.map(counted, boards))
    results = [r for r, _ in outcomes if r]
    _fold_into_report(Path(bundle), results)
    return results, [e for _, e in outcomes if e]


def _fold_into_report(bundle: Path, results: list[dict]) -> None:
    """An OUT/<target> folder's report gains an on-board column per board; a .tar.gz stays as packed."""
    from edgekit.bundle.report import fold_on_board

    if bundle.is_dir() and (bundle / "report.json").is_file():
        for result in results:
            fold_on_board(bundle, result)
