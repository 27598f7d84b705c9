"""The `incentive` command: run, validate, plugins, envs, schema.

Terminal output lives here and nowhere else: the progress bar is a small
plugin the CLI registers for the run. Errors the user can fix print as one
paragraph and exit with code 2 (`--debug` adds the full traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from incentive import hookimpl
from incentive.errors import IncentiveError, PluginError
from incentive.recipe import Recipe, load_recipe

__all__ = ["main"]

EXIT_BAD_INPUT = 2


class ProgressBar:
    """Shows steps, steps/s and the designer's objective while a run trains."""

    def __init__(
        self, console: Console, objective: str, total_steps: int, description: str = "training"
    ) -> None:
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
        self.task = self.progress.add_task(description, total=total_steps, speed=0.0, objective="")
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


class RunAnnouncer:
    """Prints the run directory, and how to continue it, when the run starts."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.run_dir: Path | None = None

    @hookimpl
    def incentive_setup(self, run) -> None:
        """Say where the run writes, first thing."""
        self.run_dir = run.run_dir
        self.console.print(
            f"run directory: [bold]{escape(str(run.run_dir))}[/bold] "
            f"(Ctrl-C stops it; `incentive run --resume {escape(str(run.run_dir))}` continues it)",
            highlight=False,
            soft_wrap=True,
        )


def _budget(recipe: Recipe) -> tuple[int, int, int]:
    """(iterations, steps per iteration, steps trained): total_steps rounded up to whole iterations."""
    from incentive.runner import num_iterations

    per_iteration = recipe.learner.rollout_steps * recipe.env.num_envs
    iterations = num_iterations(recipe)
    return iterations, per_iteration, iterations * per_iteration


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _summary(console: Console, run_dir: Path, metrics: dict[str, Any]) -> None:
    table = Table(title="summary (last iteration)", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if key.startswith(("designer/", "incentive/")) or key in ("train/global_step", "perf/steps_per_s"):
            value = metrics[key]
            table.add_row(key, _number(value))
    console.print(table)
    if not any(key.startswith("designer/") for key in metrics):
        console.print(
            "no episode finished in the last iteration, so there are no designer metrics yet: they need "
            "longer runs (raise train.total_steps, or learner.rollout_steps above the episode length)"
        )
    console.print(f"run directory: [bold]{run_dir}[/bold]")


def _cmd_run(args: argparse.Namespace, console: Console) -> int:
    from incentive.runner import RunFinished, load_run_recipe, resume_run, start_run

    if args.resume:
        if args.recipe or args.set:
            raise IncentiveError("--resume takes a run directory only (no recipe, no --set)")
        run_dir = Path(args.resume)
        recipe = load_run_recipe(run_dir)
    else:
        if not args.recipe:
            raise IncentiveError("incentive run: give a recipe file (or --resume RUN_DIR)")
        recipe = load_recipe(args.recipe, args.set)
    iterations, per_iteration, steps = _budget(recipe)
    description = "training"
    if steps != recipe.train.total_steps:
        description = "training (rounded up)"  # the line above says to what
        console.print(
            f"train.total_steps {recipe.train.total_steps:,} is rounded up to whole iterations: "
            f"{iterations:,} x {per_iteration:,} (learner.rollout_steps x env.num_envs) = {steps:,} steps",
            highlight=False,
        )
    announcer = RunAnnouncer(console)
    extra: list[tuple[str, Any]] = [("announce", announcer)]
    if not args.quiet:
        extra.append(("progress", ProgressBar(console, recipe.objectives[0].metric, steps, description)))
    try:
        if args.resume:
            metrics = resume_run(run_dir, extra_plugins=extra)
        else:
            run_dir, metrics = start_run(recipe, run_id=args.run_id, extra_plugins=extra)
    except RunFinished as done:
        console.print(
            f"{done.run_dir}: this run already finished (iteration {done.iteration}); nothing to do"
        )
        _summary(console, done.run_dir, done.metrics)
        return 0
    except KeyboardInterrupt:
        stopped = announcer.run_dir
        if stopped is not None and (stopped / "checkpoint.pt").exists():
            message = f"interrupted; continue from the last checkpoint with: incentive run --resume {stopped}"
        else:
            message = "interrupted before the first checkpoint; nothing to resume (start the run again)"
        Console(stderr=True, soft_wrap=True).print(message, highlight=False, markup=False)
        return 130
    _summary(console, run_dir, metrics)
    return 0


def _cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from incentive.loop import check_env_params, check_objectives, make_env
    from incentive.plugin_manager import make_plugin_manager
    from incentive.sizes import check_sizes

    recipe = load_recipe(args.recipe, args.set)
    pm = make_plugin_manager(recipe)
    if check_env_params(recipe.env, source=recipe.source).runs_user_code:
        # an env that imports and calls code the recipe names is never built by validate
        console.print(f"{recipe.source}: env {recipe.env.id!r} is checked by its params only (not built)")
    else:
        env = make_env(recipe.env.model_copy(update={"num_envs": 1}), source=recipe.source)
        check_objectives(recipe, env, pm)
        check_sizes(recipe, env)
    console.print(
        f"{args.recipe}: valid recipe {recipe.name!r} (env {recipe.env.id}, "
        f"{len(recipe.plugin_specs())} plugin(s), {recipe.train.total_steps:,} steps)"
    )
    return 0


def _cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    from incentive.plugin_manager import available_plugins, hook_families

    table = Table(show_header=True)
    for column in ("plugin", "hook families", "from", "import path"):
        table.add_column(column)
    for name, info in available_plugins().items():
        try:
            families = ", ".join(hook_families(info.load()))
        except Exception as exc:
            families = f"[red]fails to import: {type(exc).__name__}: {exc}[/red]"
        table.add_row(name, families, info.source, info.value)
    console.print(table)
    return 0


def _cmd_envs(args: argparse.Namespace, console: Console) -> int:
    from incentive.envs.registry import available_envs, load_env_class

    table = Table(show_header=True)
    for column in ("env", "agents", "summary", "import path"):
        table.add_column(column)
    for name, value in available_envs().items():
        try:
            cls = load_env_class(name)
            env = cls(num_envs=1, params=cls.Params())
            agents = ", ".join(env.possible_agents)
            summary = (cls.__doc__ or "").strip().splitlines()[0]
        except Exception as exc:
            agents, summary = "?", f"[red]fails to load: {type(exc).__name__}: {exc}[/red]"
        table.add_row(name, agents, summary, value)
    console.print(table)
    return 0


def _cmd_schema(args: argparse.Namespace, console: Console) -> int:
    print(json.dumps(Recipe.model_json_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `incentive`."""
    parser = argparse.ArgumentParser(
        prog="incentive", description="Incentive design for multi-agent reinforcement learning."
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
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
    sub.add_parser("plugins", help="list installed plugins").set_defaults(func=_cmd_plugins)
    sub.add_parser("envs", help="list installed environments").set_defaults(func=_cmd_envs)
    sub.add_parser("schema", help="print the recipe JSON schema").set_defaults(func=_cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `incentive` console script."""
    args = build_parser().parse_args(argv)
    console = Console(stderr=False)
    try:
        return args.func(args, console)
    except IncentiveError as exc:
        err = Console(stderr=True, soft_wrap=True)
        if args.debug:
            err.print("".join(traceback.format_exception(exc)), highlight=False, markup=False)
        err.print(f"[bold red]error:[/bold red] {escape(str(exc))}", highlight=False)
        if isinstance(exc, PluginError) and not args.debug:
            err.print("(`incentive --debug ...` shows the full traceback)", highlight=False)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; the last checkpoint can be resumed with --resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
