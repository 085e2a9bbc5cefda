"""`billing-dbt`: dbt, except that a command whose vars change from run to run does not
re-parse the project. The pipeline (`billing run`) and Dagster's dbt assets run it.

dbt re-parses every file whenever `--vars` differ from its last parse (about 2 s here), and
every pipeline run passes vars of its own (its window). Our vars are read only where a
node is compiled (model SQL, test bodies, hooks), never in configs, so this parses with no
vars, which dbt's partial parsing answers from its last parse, and hands that manifest to
the command, which compiles every node with the command's vars. A command without
`--vars` is dbt's own, unchanged.

    billing-dbt build --select ... --vars '{...}' --project-dir DIR --profiles-dir DIR
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from dbt.cli.main import cli as dbt_cli
from dbt.cli.main import dbtRunner
from dbt.contracts.graph.manifest import Manifest

LOCATION_FLAGS = ("--project-dir", "--profiles-dir", "--target")
PARSE_TARGET_PATH = "target"  # dbt_project.yml's target-path, relative to the project


def location_args(args: Sequence[str]) -> list[str]:
    """The command's flags that say which project and profile it runs on."""
    found: list[str] = []
    for i, arg in enumerate(args[:-1]):
        if arg in LOCATION_FLAGS:
            found += [arg, args[i + 1]]
    return found


def main(args: Sequence[str]) -> int:
    """dbt's exit codes: 0 success, 1 a node failed, 2 dbt could not run."""
    # The parse keeps its state in the project's own target directory, even when the command
    # writes its artifacts elsewhere (Dagster gives each run a new DBT_TARGET_PATH): a new
    # directory holds no state of the current profile, and dbt would re-parse every time.
    parse = ["parse", "--quiet", "--no-write-json", "--target-path", PARSE_TARGET_PATH]
    parsed = dbtRunner().invoke([*parse, *location_args(args)])
    if not parsed.success:
        if parsed.exception is not None:
            print(f"dbt parse failed: {parsed.exception}", file=sys.stderr)
        return 2
    assert isinstance(parsed.result, Manifest)
    result = dbtRunner(manifest=parsed.result).invoke(list(args))
    if result.success:
        return 0
    return 2 if result.exception is not None else 1


def cli() -> None:
    args = sys.argv[1:]
    if "--vars" in args:
        sys.exit(main(args))
    dbt_cli()
