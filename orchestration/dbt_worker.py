"""A long-lived dbt worker: `billing-dbt` hands its command to a warm process and streams its
output back, so that a process per command (Dagster's dbt assets) does not pay for
importing dbt and parsing the project each time.

The worker is one process per project state (its files' sizes and times), Python and parse
target: a socket in ``$XDG_RUNTIME_DIR`` (else the temporary directory), in a directory of
this user's alone. The first `billing-dbt` that finds none starts it; it runs one command at
a time, each in the caller's environment and directory, with `orchestration.dbt_run`'s
`WarmDbt` (dbt imported once, the project parsed once per warehouse); it ends after
``BILLING_DBT_WORKER_IDLE`` seconds without a command (default 300). Editing the project
starts a new worker at the next command; the old one ends when idle.

On the `spark` target the worker is also the one process that opens a Spark session: a
local session's JVM holds the metastore for as long as its process lives, and the metastore
admits one JVM. So there is a worker per project state and Spark session settings (the
BILLING_SPARK_* variables profiles.yml reads), and it runs dbt's commands on Spark, all of
them, and the copy of the sources and the queries (`python -m warehouse.spark`, entry
``spark``) in one JVM, started once and kept warm: a JVM's start and warm-up cost each
command half a minute or more on two cores. A worker whose JVM died (killed, out of
memory) ends after the command that found it so, which fails; the next starts another.
When the project is edited (or this code upgraded) the next command's worker is a new one,
and the worker before it still holds the metastore: a file beside the sockets names the
worker holding each metastore, and a new Spark worker first asks that one to end, after
the command it is running, its JVM with it (`_take_the_metastore`); `end_spark_worker` asks
the same of it for a caller done with that Spark warehouse (the Spark benchmark).

``BILLING_DBT_WORKER=false`` runs each command in its own process, as before (on Spark a
JVM each).

A command whose `billing-dbt` is killed runs to its end in the worker: dbt's builds can be
run again, and a half-run command would leave no less to redo.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from pathlib import Path
from typing import Any, BinaryIO

from orchestration.dbt_run import PARSE_TARGET_ENV

WORKER_ENV = "BILLING_DBT_WORKER"
IDLE_ENV = "BILLING_DBT_WORKER_IDLE"
DEFAULT_IDLE_SECONDS = 300.0
START_SECONDS = 60.0
# what in a project directory is not the project: dbt's outputs
NOT_PROJECT = {"target", "logs", "dbt_packages", "__pycache__"}
# what a request runs: a dbt command, or `warehouse.spark`'s copy or queries; or it asks
# the worker to end (the Spark worker of a new project state takes its metastore)
DBT, SPARK, END = "dbt", "spark", "end"
# how long an ended worker's JVM has to exit once its Spark session is stopped
JVM_EXIT_SECONDS = 60.0
# frames from the worker: output bytes (standard output or error), or the command's exit
# code (the last frame)
OUTPUT, ERROR, EXIT = b"o", b"e", b"x"
HEADER = struct.Struct("!cI")


def wanted() -> bool:
    """Whether this command goes to a worker: on, unless turned off."""
    return os.environ.get(WORKER_ENV, "true").lower() not in ("false", "0", "no")


def on_spark() -> bool:
    """Whether this command runs on the `spark` target."""
    return os.environ.get("BILLING_DBT_TARGET", "postgres") == "spark"


def _directory() -> Path | None:
    """The sockets' directory, this user's alone; None when it cannot be (another owns it)."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    found = base / f"billing-dbt-{os.getuid()}"
    found.mkdir(mode=0o700, exist_ok=True)
    status = found.stat()
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        return None
    return found


def _project_dir(args: Sequence[str]) -> Path:
    for i, arg in enumerate(args[:-1]):
        if arg == "--project-dir":
            return Path(args[i + 1]).resolve()
    return Path(os.environ.get("DBT_PROJECT_DIR") or os.getcwd()).resolve()


def fingerprint(project: Path) -> str:
    """What the worker's parse depends on: the project's files (each one's path, size and
    time), this Python environment, the parse target and the worker's own code; on the
    `spark` target also the Spark session's settings, fixed to the worker's JVM."""
    digest = hashlib.sha256()
    own = Path(__file__).resolve().parent
    session: list[str] = []
    code = sorted(own.glob("*.py"))
    if on_spark():
        from warehouse import spark

        session = [os.environ.get(name, "") for name in spark.SESSION_VARIABLES.values()]
        code.append(Path(spark.__file__))
    for part in (sys.prefix, str(project), os.environ.get(PARSE_TARGET_ENV, ""), *session):
        digest.update(part.encode() + b"\0")
    for root, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in NOT_PROJECT and not d.startswith("."))
        for name in sorted(files):
            path = Path(root, name)
            status = path.stat()
            digest.update(f"{path}\0{status.st_size}\0{status.st_mtime_ns}\0".encode())
    for path in code:
        digest.update(f"{path}\0{path.stat().st_mtime_ns}\0".encode())
    return digest.hexdigest()[:20]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """The worker's lock: held to start it, and by the worker to end (no caller is left
    connecting to a worker on its way out)."""
    with open(path.with_suffix(".lock"), "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def _connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        return None
    return conn


def _start(path: Path) -> socket.socket:
    """Start the worker of ``path`` and connect to it (the caller holds its lock)."""
    log = open(path.with_suffix(".log"), "ab")  # noqa: SIM115 (the worker's, kept open)
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestration.dbt_worker", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # outlives this command
    )
    log.close()
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        conn = _connect(path)
        if conn is not None:
            return conn
        if process.poll() is not None:
            break
        time.sleep(0.02)
    process.kill()
    raise OSError(f"the dbt worker did not start (its log: {path.with_suffix('.log')})")


def _read_exactly(conn: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _socket(args: Sequence[str], project: Path | None) -> Path | None:
    directory = _directory()
    if directory is None:
        return None
    return directory / f"{fingerprint((project or _project_dir(args)).resolve())}.sock"


def refuse_beside_spark_worker() -> None:
    """On Spark with the worker turned off: exit with a clear message when a Spark worker
    holds the local metastore of these settings (another JVM would fail deep in Hive's
    start)."""
    directory = _directory() if on_spark() else None
    found = _holding_worker(metastore_holder(directory)) if directory is not None else None
    if found is None:
        return
    path, conn = found
    conn.close()
    print(
        f"billing-dbt: a Spark worker ({path}) holds the local Spark metastore, which admits "
        f"one JVM: run with {WORKER_ENV} on, or once it has ended ({IDLE_ENV} seconds "
        "without a command)",
        file=sys.stderr,
    )
    sys.exit(2)


def run(args: Sequence[str], entry: str = DBT, project: Path | None = None) -> int | None:
    """Run ``args`` (a dbt command, or `warehouse.spark`'s for ``entry`` SPARK) in the
    worker of ``project`` (the command's --project-dir unless given), its output streamed to
    this process's standard output and error; its exit code, or None when no worker can be
    had (run it here then)."""
    path = _socket(args, project)
    if path is None:
        return None
    try:
        with _locked(path):
            conn = _connect(path)
            if conn is None:
                if on_spark():
                    _take_the_metastore(path)
                conn = _start(path)
    except OSError as exc:
        print(f"billing-dbt: {exc}; running here", file=sys.stderr)
        return None
    request = {"args": list(args), "entry": entry, "env": dict(os.environ), "cwd": os.getcwd()}
    with conn:
        code = _ask(conn, request, {OUTPUT: sys.stdout.buffer, ERROR: sys.stderr.buffer})
    if code is not None:
        return code
    print("billing-dbt: the dbt worker ended in the middle of the command", file=sys.stderr)
    return 2


def _ask(
    conn: socket.socket, request: dict[str, Any], streams: dict[bytes, BinaryIO] | None
) -> int | None:
    """Send ``request`` to a worker and read its answer: its output frames written to
    ``streams`` (dropped when None), then its exit code; None if the worker ended first."""
    conn.sendall(json.dumps(request).encode() + b"\n")
    while (header := _read_exactly(conn, HEADER.size)) is not None:
        kind, size = HEADER.unpack(header)
        if kind == EXIT:
            return size
        data = _read_exactly(conn, size) or b""
        if streams is not None:
            streams[kind].write(data)
            streams[kind].flush()
    return None


def _holding_worker(holder: Path) -> tuple[Path, socket.socket] | None:
    """The socket the holder file names and a connection to the worker serving it, if one
    does."""
    path = Path(holder.read_text()) if holder.exists() else None
    conn = _connect(path) if path is not None else None
    return (path, conn) if path is not None and conn is not None else None


def metastore_holder(directory: Path) -> Path:
    """The file naming the socket of the Spark worker whose JVM holds the local metastore of
    this command's Spark settings."""
    from warehouse import spark

    metastore = os.environ.get(spark.METASTORE_VARIABLE, "")
    return directory / f"spark-{hashlib.sha256(metastore.encode()).hexdigest()[:20]}.holder"


def _take_the_metastore(path: Path) -> None:
    """Before the Spark worker of ``path`` starts: the worker holding the same local
    metastore under another project state (a socket of another fingerprint) is asked to end,
    and answers once its JVM has exited, after the command it may be running; ``path`` is
    the holder from then on."""
    holder = metastore_holder(path.parent)
    with _locked(holder):
        found = _holding_worker(holder)
        if found is not None:
            before, conn = found
            with conn:
                if before != path:
                    print(
                        f"billing-dbt: the Spark worker of the project's previous state "
                        f"({before}) holds the local metastore: it ends after the command it "
                        "may be running, and a new one starts",
                        file=sys.stderr,
                        flush=True,
                    )
                    _ask(conn, {"entry": END}, None)
        holder.write_text(str(path))


def end_spark_worker() -> bool:
    """Ask the Spark worker holding the local metastore of this environment's Spark settings
    (the BILLING_SPARK_* variables) to end, its JVM with it, after the command it may be
    running; whether one was running. For a caller done with that Spark warehouse, whose
    JVM (a few GB) would otherwise wait out its idle time."""
    directory = _directory()
    if directory is None:
        return False
    holder = metastore_holder(directory)
    with _locked(holder):
        found = _holding_worker(holder)
        if found is None:
            return False
        with found[1] as conn:
            _ask(conn, {"entry": END}, None)
    return True


class _Caller:
    """The connection to the command's caller; a caller gone, the rest of the command's
    output is dropped."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.open = True

    def send(self, kind: bytes, data: bytes = b"", code: int = 0) -> None:
        if not self.open:
            return
        try:
            self.conn.sendall(HEADER.pack(kind, code if kind == EXIT else len(data)) + data)
        except OSError:
            self.open = False


class _Frames:
    """A text stream whose writes go to the caller as frames of one kind (OUTPUT, ERROR)."""

    def __init__(self, caller: _Caller, kind: bytes) -> None:
        self.caller = caller
        self.kind = kind

    def write(self, text: str) -> int:
        self.caller.send(self.kind, text.encode())
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _execute(entry: str, args: list[str]) -> int:
    """Run a request here, in this worker's environment of the moment; its exit code."""
    from warehouse.settings import get_settings

    get_settings.cache_clear()  # the caller's, read from its environment
    if entry == SPARK:
        from warehouse.spark import command

        try:
            command(args, keep_session=True)
        except SystemExit as exc:  # argparse refused the arguments
            return exc.code if isinstance(exc.code, int) else 2
        return 0
    from orchestration.dbt_run import WARM

    outcome = WARM.invoke(args)
    if outcome.detail:
        print(outcome.detail, file=sys.stderr)
    return outcome.exit_code


def _serve_one(conn: socket.socket) -> bool:
    """Answer one request; whether it asked this worker to end (its JVM ended first)."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            return False
        line += chunk
    request = json.loads(line)
    caller = _Caller(conn)
    if request.get("entry") == END:
        _end_spark()
        caller.send(EXIT, code=0)
        return True
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(request["env"])
    code = 2
    try:
        with redirect_stdout(_Frames(caller, OUTPUT)), redirect_stderr(_Frames(caller, ERROR)):
            try:
                os.chdir(request["cwd"])  # a directory gone is this command's error only
                code = _execute(request.get("entry", DBT), request["args"])
            except Exception:
                traceback.print_exc()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
    caller.send(EXIT, code=code)
    return False


def _end_spark() -> None:
    """Stop this worker's Spark session, if it started one, and wait for its JVM to exit
    (the JVM ends when its standard input closes: pyspark's gateway reads it for that)."""
    if "pyspark" not in sys.modules:
        return
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    if context is None:
        return
    process = getattr(context._gateway, "proc", None)
    with suppress(Exception):
        context.stop()
    if process is None:
        return
    if process.stdin is not None:
        with suppress(OSError):
            process.stdin.close()
    try:
        process.wait(JVM_EXIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def serve(path: Path, idle: float) -> None:
    """Answer commands on ``path`` one at a time until ``idle`` seconds pass without one."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path.unlink(missing_ok=True)  # a worker that died left it; its starter holds the lock
    server.bind(str(path))
    server.listen(64)
    print(f"dbt worker {os.getpid()} serving {path}", flush=True)
    while True:
        if not select.select([server], [], [], idle)[0]:
            with _locked(path):
                if not select.select([server], [], [], 0)[0]:
                    path.unlink(missing_ok=True)
                    server.close()
                    print(f"dbt worker {os.getpid()} idle for {idle:g} s: ended", flush=True)
                    return
        conn, _ = server.accept()
        with conn:
            asked_to_end = _serve_one(conn)
        if asked_to_end or not _spark_alive():  # the next command starts a worker anew
            with _locked(path):
                path.unlink(missing_ok=True)
                server.close()
            why = "handed its Spark metastore over" if asked_to_end else "lost its Spark JVM"
            print(f"dbt worker {os.getpid()} {why}: ended", flush=True)
            return


def _spark_alive() -> bool:
    """Whether the Spark JVM this worker started, if it started one, still answers."""
    if "pyspark" not in sys.modules:
        return True
    from pyspark import SparkContext

    context = SparkContext._active_spark_context
    if context is None:
        return True
    try:
        context._jvm.java.lang.System.nanoTime()  # type: ignore[union-attr]
    except Exception:
        return False
    return True


if __name__ == "__main__":
    # SIGTERM ends a worker (on Spark its JVM with it), whoever started it: a process passes
    # the signals it ignores on to those it starts, and a Dagster run leaves SIGTERM with
    # SIGINT's handler, which is "ignore" in a process a shell started in the background
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    serve(Path(sys.argv[1]), float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_SECONDS)))
