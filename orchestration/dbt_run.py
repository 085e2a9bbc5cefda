"""dbt, warm: imported once per process and the project parsed once per process and warehouse.

dbt re-parses every file whenever `--vars` differ from its last parse (about 2 s here), and
every pipeline run passes vars of its own (its window). Our vars are read only where a
node is compiled (model SQL, test bodies, hooks), never in configs, so the project is parsed
with no vars, which dbt's partial parsing answers from its last parse, and that manifest is
handed to each command, which compiles every node with the command's vars.

Two ways in, one mechanism (`WarmDbt`):
- in the calling process (`orchestration.pipeline.run_dbt`): `billing run`, `billing db up`
  and the tests. Importing dbt (about 1.5 s) and the parse happen once per process, so
  `billing run monthly` (a catch-up daily build, the monthly build, the refresh after the
  freeze) pays them once, and a process that runs dbt again pays neither.
- `billing-dbt`, a process per command, for Dagster's dbt assets (dagster-dbt runs an
  executable) and the `spark` target. It hands the command to a long-lived worker
  (`orchestration.dbt_worker`) that keeps dbt imported and the project parsed across
  commands, and on Spark keeps the one JVM the local metastore admits:

    billing-dbt build --select ... --vars '{...}' --project-dir DIR --profiles-dir DIR

  On PostgreSQL a command without `--vars` is dbt's own, unchanged; on Spark every command
  goes to the worker (another JVM could not open the metastore while the worker's lives).

What the process holds after its first parse is kept out of the garbage collector's full
passes (`_freeze_the_first_parse`). Each command is spared six things dbt would do for
nothing: a thread keeps its connection from node to node (`_keep_connections`), a debug
event that no logger writes is never made (`_skip_unlogged_debug_events`), a Jinja source
is compiled once per process (`_compile_templates_once`), agate's date types share one set
of parsedatetime's constants (`_share_date_constants`), a context's macros go into it
in one pass (`_flatten_macros_at_once`), and an adapter's behaviour flags learn the module
that made them without reading the source of every frame (`_name_flag_sources_by_frame`).

A process that keeps running while the project's files change sees the manifest it parsed
first: start a new one (every CLI command is one).
"""

from __future__ import annotations

import gc
import hashlib
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbt.contracts.graph.manifest import Manifest

LOCATION_FLAGS = ("--project-dir", "--profiles-dir", "--target")
# Under which the parse keeps its state (partial_parse.msgpack, a directory per profile:
# parse_state_dir): dbt_project.yml's target-path, relative to the project, unless
# BILLING_DBT_PARSE_TARGET says another (the tests give each of their processes its own, so
# that none re-parses because another parsed for its server).
PARSE_TARGET_ENV = "BILLING_DBT_PARSE_TARGET"


def parse_target() -> str:
    return os.environ.get(PARSE_TARGET_ENV, "target")


# the environment a parse depends on: the profile's connection and target (profiles.yml)
PROFILE_PREFIXES = ("BILLING_DBT_", "BILLING_SPARK_")
# Where the server listens, which no model reads; but dbt parses the whole project again
# (4-9 s here) whenever any part of the connection differs from its last parse's (its state
# check hashes them). The parse sees profiles.yml's defaults instead, as `make manifest`
# does: a new embedded warehouse (a socket directory of its own) or another server parses
# as the last one did. The database and user stay: a node's relation names its database.
PARSE_UNSET = ("BILLING_DBT_HOST", "BILLING_DBT_PORT")
# What else of the profile dbt's state check sees change: the target (on Spark, the
# connection is profiles.yml's alone), and on PostgreSQL the user and the database. Each
# combination keeps its parse state apart (``parse_state_dir``), so that warehouses or
# targets in turn (the `spark` target beside `postgres`, a second database) each find their
# own last parse instead of parsing the whole project again after the other's.
PARSE_PROFILE = ("BILLING_DBT_TARGET", "BILLING_DBT_USER", "BILLING_DBT_DBNAME")


def parse_state_dir() -> str:
    """Where a parse with this environment's profile keeps its state: a directory per
    profile (PARSE_PROFILE) under ``parse_target()``, relative to the project unless that
    is absolute. A profile missed here costs a full parse, never a wrong one: dbt checks
    its state against the profile it parses with."""
    profile = "\0".join(os.environ.get(name, "") for name in PARSE_PROFILE)
    digest = hashlib.sha256(profile.encode()).hexdigest()[:16]
    return os.path.join(parse_target(), "parse", digest)


# manifests kept by one process, the latest (a process usually runs against one warehouse)
KEPT_MANIFESTS = 4
# a node's outcome that fails the command (dbt's RunStatus and TestStatus)
FAILED = ("error", "fail", "runtime error")
# The commands whose artifact is their run_results.json. dbt writes the whole manifest
# beside it after each: 0.5 s of CPU, a sixth of a day's run on a small warehouse, for the
# manifest `make manifest` wrote plus the compiled SQL (target/compiled holds that too).
# A warm command writes its results alone.
WRITES_RESULTS = ("build", "run", "test", "seed", "snapshot")


def flag_value(args: Sequence[str], name: str) -> str | None:
    """The value of flag ``name`` in ``args``: its last, as dbt's command line takes it."""
    found = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == name]
    return found[-1] if found else None


def target_dir(args: Sequence[str]) -> Path:
    """Where dbt writes a command's artifacts: --target-path, else DBT_TARGET_PATH, else
    dbt_project.yml's target-path, under --project-dir (relative to it, or absolute)."""
    target = flag_value(args, "--target-path") or os.environ.get("DBT_TARGET_PATH") or "target"
    return Path(flag_value(args, "--project-dir") or ".") / target


@dataclass(frozen=True)
class DbtOutcome:
    """How a dbt command ended: dbt's exit code (0 success, 1 a node failed, 2 dbt could not
    run) and, when it failed, what failed, node by node."""

    exit_code: int
    detail: str = ""

    @property
    def success(self) -> bool:
        return self.exit_code == 0


def location_args(args: Sequence[str]) -> list[str]:
    """The command's flags that say which project and profile it runs on."""
    found: list[str] = []
    for name in LOCATION_FLAGS:
        value = flag_value(args, name)
        if value is not None:
            found += [name, value]
    return found


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` in os.environ while a command runs (profiles.yml reads it), restored after."""
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def failure_detail(result: object) -> str:
    """What failed in a dbt command, from its result: dbt's exception, or each failed node
    with its message (PostgreSQL's error, a test's failing rows)."""
    exception = getattr(result, "exception", None)
    if exception is not None:
        return str(exception)
    lines = []
    for node_result in getattr(getattr(result, "result", None), "results", None) or []:
        if str(node_result.status) in FAILED:
            node = node_result.node
            lines.append(f"{node.resource_type} {node.name}: {node_result.message}")
    return "\n".join(lines)


@dataclass
class Spent:
    """Where this process's dbt time went, in seconds: importing dbt, parsing the project,
    and the commands: of these, `executing` is dbt's own time running the selected nodes
    (`nodes` of them), the rest its start and end of each command."""

    importing: float = 0.0
    parsing: float = 0.0
    commands: float = 0.0
    executing: float = 0.0
    nodes: int = 0

    @property
    def total(self) -> float:
        return self.importing + self.parsing + self.commands


class WarmDbt:
    """dbt commands in this process, one at a time (dbt keeps global state), each handed the
    manifest parsed once for the warehouse it runs against."""

    def __init__(self) -> None:
        self._manifests: dict[tuple[tuple[tuple[str, str], ...], tuple[str, ...]], Manifest] = {}
        self._lock = threading.Lock()
        self.spent = Spent()

    def invoke(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> DbtOutcome:
        started = time.perf_counter()
        from dbt.artifacts.schemas.run import RunExecutionResult
        from dbt.cli.main import dbtRunner

        self.spent.importing += time.perf_counter() - started
        env = dict(env or {})
        with self._lock, environment(env):
            profile = sorted(
                (name, value)
                for name, value in os.environ.items()
                if name.startswith(PROFILE_PREFIXES)
            )
            key = (tuple(profile), tuple(location_args(args)))
            manifest = self._manifests.get(key)
            if manifest is None:
                started = time.perf_counter()
                parsed = self._parse(args)
                self.spent.parsing += time.perf_counter() - started
                if isinstance(parsed, DbtOutcome):
                    return parsed
                manifest = self._manifests[key] = parsed
                _freeze_the_first_parse()
                while len(self._manifests) > KEPT_MANIFESTS:  # the oldest goes
                    del self._manifests[next(iter(self._manifests))]
            started = time.perf_counter()
            _uncompiled(manifest)
            _keep_connections()
            _skip_unlogged_debug_events()
            _compile_templates_once()
            _share_date_constants()
            _flatten_macros_at_once()
            _name_flag_sources_by_frame()
            writes = bool(args) and args[0] in WRITES_RESULTS and "--no-write-json" not in args
            result = dbtRunner(manifest=manifest).invoke(
                [*args, "--no-write-json"] if writes else list(args)
            )
            if writes and isinstance(result.result, RunExecutionResult):
                path = target_dir(args) / "run_results.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                result.result.write(str(path))
            self.spent.commands += time.perf_counter() - started
            self.spent.executing += float(getattr(result.result, "elapsed_time", 0.0) or 0.0)
            self.spent.nodes += len(getattr(result.result, "results", None) or [])
        if result.success:
            return DbtOutcome(0)
        return DbtOutcome(2 if result.exception is not None else 1, failure_detail(result))

    @staticmethod
    def _parse(args: Sequence[str]) -> Manifest | DbtOutcome:
        """The project parsed for ``args``' location, or the failed parse's outcome."""
        from dbt.cli.main import dbtRunner
        from dbt.contracts.graph.manifest import Manifest

        # The parse keeps its state in the project's own target directory (a directory per
        # profile there), even when the command writes its artifacts elsewhere (Dagster
        # gives each run a new DBT_TARGET_PATH): a new directory holds no state, and dbt
        # would re-parse each time.
        parse = ["parse", "--quiet", "--no-write-json", "--target-path", parse_state_dir()]
        saved = {name: os.environ.pop(name) for name in PARSE_UNSET if name in os.environ}
        try:
            parsed = dbtRunner().invoke([*parse, *location_args(args)])
        finally:
            os.environ.update(saved)
        if not parsed.success:
            return DbtOutcome(2, f"dbt parse failed: {failure_detail(parsed)}")
        assert isinstance(parsed.result, Manifest)
        return parsed.result


def _freeze_the_first_parse() -> None:
    """What the process holds after its first parse (dbt's modules, the manifest) is moved
    out of the garbage collector's reach, once per process: it lives as long as the process,
    and each full collection during the commands traversed all of it again (about 250,000
    objects, 0.2 s a collection, one every two warm demo days' runs). Garbage is collected
    first, so none is kept. A later parse's manifest (another warehouse) stays collectable."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


_frozen = False


def _uncompiled(manifest: Manifest) -> None:
    """Put the manifest's nodes back as the parse left them. A command compiles its nodes in
    the manifest it is handed: their SQL, and for a node reading ephemeral models the CTEs
    injected into it, marked done. The next command renders the SQL again but finds the CTEs
    marked injected and adds none, so a model reading an ephemeral one (the preview's view)
    failed the second time a process built it ("relation __dbt__cte__... does not exist")."""
    from dbt.contracts.graph.nodes import CompiledNode

    for node in manifest.nodes.values():
        if isinstance(node, CompiledNode) and (node.compiled or node.extra_ctes_injected):
            node.compiled = False
            node.compiled_code = None
            node.extra_ctes = []
            node.extra_ctes_injected = False
            node._pre_injected_sql = None


def _keep_connections() -> None:
    """A dbt thread keeps its PostgreSQL connection from node to node for the whole command.

    dbt-postgres closes a node's connection when the node ends, so every node runs in a new
    backend whose catalog caches start cold: on the demo's data a query of
    information_schema takes about 10 ms there against 0.6 ms in a backend that has run one
    before, and PostgreSQL spent about twice the CPU on a warm run (CHANGELOG.md). Here a
    node's end does what dbt's close does short of closing: its open transaction rolled
    back, and its temporary tables dropped (`discard temp`; dbt leaves them to the session's
    end). dbt closes the connections when the command ends (cleanup_connections).
    """
    from dbt.adapters.postgres.connections import PostgresConnectionManager

    if PostgresConnectionManager.release is not _release_keeping_open:
        PostgresConnectionManager.release = _release_keeping_open  # type: ignore[method-assign]


def _release_keeping_open(self: Any) -> None:
    conn = self.get_if_exists()
    if conn is None or conn.state != "open":
        return
    try:
        if conn.transaction_open:
            self._rollback_handle(conn)
        conn.transaction_open = False
        with conn.handle.cursor() as cursor:
            cursor.execute("discard temp")
        conn.handle.commit()
    except Exception:
        self.close(conn)  # what dbt does after every node: the next node opens a new one


def _skip_unlogged_debug_events() -> None:
    """A debug event that no logger writes is dropped before dbt dresses it.

    dbt makes a debug event for every statement, connection and cache step: it converts
    the event's fields (the node's details among them) to a protobuf message when it
    creates it, and again with a timestamp when it fires it, before asking its loggers
    whether they want it; ours log at info (dbt_project.yml's flags), so every one was made
    for nothing. A debug event now converts its fields when something first reads them,
    and is dropped unread while no logger writes debug and no callback but dbt's own (which
    reads behaviour-change warnings only) listens; `--debug` or `--log-level(-file) debug`
    bring them all back.
    """
    from dbt_common.events.base_types import DebugLevel
    from dbt_common.events.event_manager import EventManager

    if EventManager.fire_event is not _fire_logged:
        global _dbt_fire_event
        _dbt_fire_event = EventManager.fire_event
        EventManager.fire_event = _fire_logged  # type: ignore[method-assign]
        DebugLevel.__init__ = _defer_fields  # type: ignore[method-assign]
        DebugLevel.__getattr__ = _read_fields  # type: ignore[method-assign]


_dbt_fire_event: Any = None


def _defer_fields(self: Any, *args: Any, **kwargs: Any) -> None:
    object.__setattr__(self, "_fields", (args, kwargs))


def _read_fields(self: Any, key: str) -> Any:
    """Reached when an attribute is not found: before the first read, the event's message
    (`pb_msg`) is made from its fields as dbt would have made it; then it answers."""
    from dbt_common.events.base_types import BaseEvent

    try:
        message = object.__getattribute__(self, "pb_msg")
    except AttributeError:
        args, kwargs = object.__getattribute__(self, "_fields")
        BaseEvent.__init__(self, *args, **kwargs)
        message = object.__getattribute__(self, "pb_msg")
    if key == "pb_msg":
        return message
    return getattr(message, key)


def _fire_logged(
    self: Any,
    e: Any,
    level: Any = None,
    node: Any = None,
    force_warn_or_error_handling: bool = False,
) -> None:
    from dbt.tracking import track_behavior_change_warn
    from dbt_common.events.base_types import EventLevel

    if (
        (level or e.level_tag()) == EventLevel.DEBUG
        and not force_warn_or_error_handling
        and all(logger.level != EventLevel.DEBUG for logger in self.loggers)
        and all(callback is track_behavior_change_warn for callback in self.callbacks)
    ):
        return
    _dbt_fire_event(self, e, level, node, force_warn_or_error_handling)


def _compile_templates_once() -> None:
    """A Jinja source is compiled once per process, not once per command.

    dbt compiles a node's SQL, each hook and each macro again in every command (parse,
    code generation and Python's compile: about a sixth of a warm run's CPU per node), and
    the sources are the same from command to command: a run's vars reach the SQL when the
    template is rendered, not compiled. The code Jinja generates depends on the source and
    the environment's class, extensions, syntax (its lexer) and code settings, which are the
    cache's key; dbt makes every environment alike (dbt_common.clients.jinja.get_environment).
    """
    from dbt_common.clients.jinja import MacroFuzzEnvironment

    if MacroFuzzEnvironment.compile is not _compile_once:
        MacroFuzzEnvironment.compile = _compile_once  # type: ignore[method-assign]


_COMPILED: dict[tuple[Any, ...], Any] = {}
COMPILED_KEPT = 5_000  # sources kept; a demo day's daily run compiles 224 (SQL, hooks, macros)


def _compile_once(
    self: Any,
    source: Any,
    name: str | None = None,
    filename: str | None = None,
    raw: bool = False,
    defer_init: bool = False,
) -> Any:
    from jinja2 import Environment

    compile_: Any = Environment.compile  # Jinja's own
    if raw or not isinstance(source, str):
        return compile_(self, source, name, filename, raw, defer_init)
    key = (
        type(self),  # its code generator
        tuple(self.extensions),
        self.lexer,  # Jinja's one lexer per syntax (every delimiter, prefix, whitespace rule)
        self.is_async,
        self.optimized,
        self.autoescape,
        self.finalize,
        source,
        name,
        filename,
        defer_init,
    )
    code = _COMPILED.get(key)
    if code is None:
        code = compile_(self, source, name, filename, raw, defer_init)
        if len(_COMPILED) >= COMPILED_KEPT:
            _COMPILED.clear()
        _COMPILED[key] = code
    return code


def _share_date_constants() -> None:
    """agate's date types share parsedatetime's constants, one set per locale.

    dbt puts what each statement answers in an agate table (an empty one when it fetches
    nothing: 69 of the 165 of a demo day's run), and each table's type tester makes a new
    Date and DateTime type, each of which built parsedatetime's constants for its locale (regular
    expressions, names of days and months: 0.2 ms each, two of an empty table's 0.64 ms).
    Once made, the constants are only read (they compile a regular expression and
    note a leap year on first use, the same each time), and each type keeps its own
    parser, so one set serves every type of every thread.
    """
    from agate.data_types import date, date_time

    for module in (date, date_time):
        if not isinstance(module.parsedatetime, _SharedConstants):
            module.parsedatetime = _SharedConstants(module.parsedatetime)


class _SharedConstants:
    """The parsedatetime module as agate's date types see it: `Constants` made once per
    locale and settings."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self._made: dict[tuple[Any, ...], Any] = {}

    def Constants(self, *args: Any, **kwargs: Any) -> Any:  # parsedatetime's name
        key = (args, tuple(sorted(kwargs.items())))
        made = self._made.get(key)
        if made is None:
            made = self._made.setdefault(key, self._module.Constants(*args, **kwargs))
        return made

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def _flatten_macros_at_once() -> None:
    """A context's macros go into it in one pass.

    dbt makes a context for each node it compiles, each it runs and each macro an adapter
    calls (105 in a demo day's daily run), and puts every macro of the project and the
    adapters (615) into it one name at a time, each name looked up through five namespaces
    in order (0.7 ms of a context). Here the namespaces are merged with their own
    precedence (the node's package over the root project over the other packages over the
    adapters'): the same names and generators as dbt's.
    """
    from dbt.context.manifest import ManifestContext

    if ManifestContext.to_dict is not _context_dict:
        global _dbt_context_dict
        _dbt_context_dict = ManifestContext.to_dict
        ManifestContext.to_dict = _context_dict  # type: ignore[method-assign]


_dbt_context_dict: Any = None


def _context_dict(self: Any) -> dict[str, Any]:
    """``ManifestContext.to_dict``, its MacroNamespace merged at once (a data test's
    namespace of its own macros goes in as dbt puts it)."""
    from dbt.context.macros import MacroNamespace
    from dbt.context.manifest import ManifestContext
    from dbt.include.global_project import PROJECT_NAME

    namespace = self.namespace
    if type(namespace) is not MacroNamespace:
        return _dbt_context_dict(self)
    dct: dict[str, Any] = super(ManifestContext, self).to_dict()
    # MacroNamespace.__getitem__'s search order, the last first: a later update wins
    dct.update(namespace.global_project_namespace)
    dct[PROJECT_NAME] = namespace.global_project_namespace
    dct.update(namespace.packages)
    dct.update(namespace.global_namespace)
    dct.update(namespace.local_namespace)
    return dct


def _name_flag_sources_by_frame() -> None:
    """An adapter's behaviour flags learn the module that made them from the frames' globals.

    dbt registers the adapter again for every command, and the adapter renders its
    behaviour flags (three on PostgreSQL, nine or ten renderings a command); a flag whose
    maker gave no source names the
    first module up the stack other than dbt_common's behavior_flags, which it found with
    `inspect.stack()`: every frame's source file located, read and its lines cut, then
    `inspect.getmodule`. Under a Dagster step the stack is a hundred frames deep: 0.16 s
    of a daily run's command (27 ms at the top of a CLI process). The same name comes
    from the first frame whose module (its globals' `__name__`) is another; the name is
    only printed, in a warning that a flag's default will change.
    """
    from dbt_common.behavior_flags import BehaviorFlagRendered

    if BehaviorFlagRendered.__dict__["_default_source"].__func__ is not _flag_source:
        BehaviorFlagRendered._default_source = staticmethod(_flag_source)  # type: ignore[method-assign]


def _flag_source() -> str:
    frame = sys._getframe(1)
    own = frame.f_globals.get("__name__")
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if name and name != own:
            return str(name)
        frame = frame.f_back  # type: ignore[assignment]
    return "Unknown"


WARM = WarmDbt()


def installed_versions() -> str:
    """`dbt --version`'s answer without importing dbt (and without asking PyPI for the
    latest): dagster-dbt asks it before every command."""
    from importlib.metadata import PackageNotFoundError, version

    lines = ["Core:", f"  - installed: {version('dbt-core')}", "", "Plugins:"]
    for plugin in ("postgres", "spark"):
        with suppress(PackageNotFoundError):
            lines.append(f"  - {plugin}: {version(f'dbt-{plugin}')}")
    return "\n".join(lines)


def cli() -> None:
    args = sys.argv[1:]
    if args == ["--version"]:
        print(installed_versions())
        return
    from orchestration import dbt_worker

    if "--vars" not in args and not dbt_worker.on_spark():
        from dbt.cli.main import cli as dbt_cli

        dbt_cli()
        return
    if not dbt_worker.wanted():
        dbt_worker.refuse_beside_spark_worker()
    elif (code := dbt_worker.run(args)) is not None:
        sys.exit(code)
    outcome = WARM.invoke(args)
    if outcome.detail:
        print(outcome.detail, file=sys.stderr)
    sys.exit(outcome.exit_code)
