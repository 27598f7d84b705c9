"""The `incentive` command: run, validate, plot, compare, plugins, envs, new-plugin, schema.

Terminal output lives here and nowhere else: the progress bar is a small
plugin the CLI registers for the run. Errors the user can fix print as one
paragraph and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from incentive import hookimpl
from incentive.errors import IncentiveError

__all__ = ["main"]

EXIT_BAD_INPUT = 2


class ProgressBar:
    """Shows steps, steps/s and the designer's objective while a run trains."""

    def __init__(self, console: Console, objective: str, total_steps: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.objective = objective
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
            TextColumn("{task.fields[speed]:>9,.0f} steps/s"),
            TextColumn("{task.fields[objective]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("training", total=total_steps, speed=0.0, objective="")
        self.latest: float | None = None

    @hookimpl
    def incentive_setup(self, run) -> None:
        """Start the bar (at the resumed step count, if resuming)."""
        self.progress.start()
        self.progress.update(self.task, completed=run.global_step)

    @hookimpl
    def incentive_iteration_end(self, run, metrics: dict[str, float]) -> None:
        """Advance the bar."""
        value = metrics.get(f"designer/{self.objective}")
        if value is not None:
            self.latest = value
        shown = "" if self.latest is None else f"{self.objective} {self.latest:.3f}"
        self.progress.update(
            self.task, completed=run.global_step, speed=metrics["perf/steps_per_s"], objective=shown
        )

    @hookimpl
    def incentive_run_end(self) -> None:
        """Stop the bar."""
        self.progress.stop()


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _summary(console: Console, run_dir: Path, metrics: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="summary (last iteration)", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if key.startswith(("designer/", "incentive/")) or key in ("train/global_step", "perf/steps_per_s"):
            value = metrics[key]
            table.add_row(key, _number(value))
    console.print(table)
    console.print(f"run directory: [bold]{run_dir}[/bold]")


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from incentive.recipe import load_recipe
    from incentive.runner import load_run_recipe, resume_run, start_run

    if args.resume:
        if args.recipe or args.set:
            raise IncentiveError("--resume takes a run directory only (no recipe, no --set)")
        run_dir = Path(args.resume)
        recipe = load_run_recipe(run_dir)
    else:
        if not args.recipe:
            raise IncentiveError("incentive run: give a recipe file (or --resume RUN_DIR)")
        recipe = load_recipe(args.recipe, args.set)
    extra = []
    if not args.quiet:
        extra.append(
            ("progress", ProgressBar(console, recipe.objectives[0].metric, recipe.train.total_steps))
        )
    if args.resume:
        metrics = resume_run(run_dir, extra_plugins=extra)
    else:
        run_dir, metrics = start_run(recipe, run_id=args.run_id, extra_plugins=extra)
    _summary(console, run_dir, metrics)
    return 0


def _cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from incentive.loop import check_objectives, make_env
    from incentive.plugin_manager import make_plugin_manager
    from incentive.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.set)
    pm = make_plugin_manager(recipe)
    env = make_env(recipe.env.model_copy(update={"num_envs": 1}), source=recipe.source)
    check_objectives(recipe, env, pm)
    console.print(
        f"{args.recipe}: valid recipe {recipe.name!r} (env {recipe.env.id}, "
        f"{len(recipe.plugin_specs())} plugin(s), {recipe.train.total_steps:,} steps)"
    )
    return 0


def _cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    from incentive.listings import list_plugins

    rows = list_plugins()
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return 0
    columns = ("plugin", "hook families", "from", "import path")
    _listing(
        console,
        columns,
        [(r.name, r.error or ", ".join(r.families), r.source, r.import_path) for r in rows],
    )
    return 0


def _cmd_envs(args: argparse.Namespace, console: Console) -> int:
    from incentive.listings import env_details, list_envs

    if args.details:
        try:
            text = env_details(args.details)
        except KeyError:
            known = ", ".join(row.id for row in list_envs())
            raise IncentiveError(f"--details: no env {args.details!r}. Installed envs: {known}") from None
        print(text, end="")
        return 0
    rows = list_envs()
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return 0
    _listing(
        console,
        ("env", "summary", "from", "import path"),
        [(r.id, r.error or r.summary, r.source, r.import_path) for r in rows],
    )
    return 0


def _listing(console: Console, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A table in a terminal (names never cut: other columns wrap); tab-separated lines in a pipe."""
    if not sys.stdout.isatty():
        for row in rows:
            print("\t".join(row))
        return
    from rich.table import Table

    table = Table(show_header=True)
    widest = max([len(columns[0]), *(len(row[0]) for row in rows)])
    table.add_column(columns[0], no_wrap=True, min_width=widest)
    for column in columns[1:]:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    console.print(table)


def _cmd_plot(args: argparse.Namespace, console: Console) -> int:
    from incentive.plots import plot_runs

    print(plot_runs(args.runs, metrics=args.metric, out=args.out))
    return 0


def _cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from incentive.compare import compare_runs

    print(compare_runs(args.runs, metrics=args.metric, improvement_arms=args.improvement, as_json=args.json))
    return 0


def _cmd_new_plugin(args: argparse.Namespace, console: Console) -> int:
    from incentive.scaffold import write_plugin_package

    root = write_plugin_package(args.name, Path(args.dir) if args.dir else None)
    print(f"wrote {root}/ (pyproject.toml, incentive_{args.name}.py, tests/test_{args.name}.py, README.md)")
    print(f"next: pip install -e {root}    # then `incentive plugins` lists {args.name}")
    print(f"      pytest {root}            # its tests, one trains a tiny recipe with the plugin")
    return 0


def _cmd_schema(args: argparse.Namespace, console: Console) -> int:
    from incentive.recipe import Recipe

    print(json.dumps(Recipe.model_json_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `incentive`."""
    parser = argparse.ArgumentParser(
        prog="incentive", description="Incentive design for multi-agent reinforcement learning."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train a recipe (or --resume a stopped run)")
    run.add_argument("recipe", nargs="?", help="recipe YAML file")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a recipe field, e.g. --set learner.lr=0.001 (repeatable)",
    )
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its checkpoint")
    run.add_argument("--run-id", help="name of the run directory (default: time-based)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)
    validate = sub.add_parser("validate", help="check a recipe without running it")
    validate.add_argument("recipe", help="recipe YAML file")
    validate.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    validate.set_defaults(func=_cmd_validate)
    plugins = sub.add_parser("plugins", help="list installed plugins")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(func=_cmd_plugins)
    envs = sub.add_parser("envs", help="list installed environments")
    envs.add_argument("--json", action="store_true", help="machine-readable output")
    envs.add_argument(
        "--details", metavar="ID", help="an env's page: agents, actions, observations, parameters"
    )
    envs.set_defaults(func=_cmd_envs)
    plot = sub.add_parser("plot", help="learning curves of runs; seeds of one recipe as mean and 95%% band")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, globs or folders of runs")
    plot.add_argument("--metric", action="append", help="metric to draw (repeatable; default: the objective)")
    plot.add_argument("--out", default="plot.png", help="picture to write (default: plot.png)")
    plot.set_defaults(func=_cmd_plot)
    compare = sub.add_parser("compare", help="final designer metrics per arm: IQM and 95%% bootstrap CIs")
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR_OR_GLOB")
    compare.add_argument(
        "--metric", action="append", help="metric to compare (repeatable; default: every designer metric)"
    )
    compare.add_argument(
        "--improvement", nargs=2, metavar=("A", "B"), help="P(A > B) between two arms (number or label)"
    )
    compare.add_argument("--json", action="store_true", help="machine-readable output")
    compare.set_defaults(func=_cmd_compare)
    new_plugin = sub.add_parser("new-plugin", help="write a ready-to-install plugin package")
    new_plugin.add_argument("name", help="plugin name (a Python identifier, e.g. my_bonus)")
    new_plugin.add_argument("--dir", help="where to write the package (default: ./incentive-<name>)")
    new_plugin.set_defaults(func=_cmd_new_plugin)
    sub.add_parser("schema", help="print the recipe JSON schema").set_defaults(func=_cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `incentive` console script."""
    args = build_parser().parse_args(argv)
    console = Console(stderr=False)
    try:
        return args.func(args, console)
    except IncentiveError as exc:
        Console(stderr=True, soft_wrap=True).print(
            f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False
        )
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; the last checkpoint can be resumed with --resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
