"""The `incentive` command: run, validate, plot, compare, plugins, envs, new-plugin, schema.

Terminal output lives here and nowhere else: the progress bar is a small
plugin the CLI registers for the run. Errors the user can fix print as one
paragraph and exit with code 2 (`--debug` adds the full traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from incentive import hookimpl
from incentive.errors import IncentiveError, PluginError, RecipeWarning

__all__ = ["main"]

EXIT_BAD_INPUT = 2


class ProgressBar:
    """Shows steps, steps/s and the designer's objective while a run trains."""

    def __init__(
        self, console: Console, objective: str, total_steps: int, description: str = "training"
    ) -> None:
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


def _budget(recipe) -> tuple[int, int, int]:
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
    from rich.table import Table

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
    from incentive.recipe import load_recipe
    from incentive.runner import RunFinished, load_run_recipe, resume_run, start_run

    if args.seeds is not None:
        return _cmd_run_seeds(args, console)
    if args.resume:
        if args.recipe or args.set:
            raise IncentiveError("--resume takes a run directory only (no recipe, no --set)")
        run_dir = Path(args.resume)
        if (run_dir / "batch.yaml").exists():
            return _cmd_run_seeds(args, console)
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
        extra.append(
            ("progress", ProgressBar(console, recipe.metric_objectives[0].metric, steps, description))
        )
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


def _cmd_run_seeds(args: argparse.Namespace, console: Console) -> int:
    """`incentive run RECIPE --seeds 0-7` (or `--resume` of one seed of such a batch)."""
    from incentive.batched import parse_seeds, resume_seeds, start_seeds
    from incentive.recipe import load_recipe

    if args.resume:
        run_dirs, metrics = resume_seeds(Path(args.resume))
    else:
        if not args.recipe:
            raise IncentiveError("incentive run --seeds: give a recipe file")
        try:
            seeds = parse_seeds(args.seeds)
        except ValueError as exc:
            raise IncentiveError(str(exc)) from None
        recipe = load_recipe(args.recipe, args.set)
        console.print(f"training {len(seeds)} seeds as one batched run: {args.seeds}", highlight=False)
        try:
            run_dirs, metrics = start_seeds(recipe, seeds, run_id=args.run_id)
        except KeyboardInterrupt:
            message = "interrupted; resume the batch with --resume on any of its run directories"
            Console(stderr=True).print(message)
            return 130
    for run_dir, last in zip(run_dirs, metrics, strict=True):
        _summary(console, run_dir, last)
    return 0


def _cmd_validate(args: argparse.Namespace, console: Console) -> int:
    from incentive.loop import check_env_params, check_objectives, make_env
    from incentive.plugin_manager import make_plugin_manager
    from incentive.recipe import load_recipe
    from incentive.sizes import check_sizes

    recipe = load_recipe(args.recipe, args.set)
    if recipe.search is not None:
        from incentive.search import validate_search

        validate_search(recipe)  # every searched value and structure alternative, as search checks them
    if recipe.structure_choices:
        pass  # a one_of group: validate_search built every alternative
    elif check_env_params(recipe.env, source=recipe.source).runs_user_code:
        make_plugin_manager(recipe)
        # an env that imports and calls code the recipe names is never built by validate
        console.print(f"{recipe.source}: env {recipe.env.id!r} is checked by its params only (not built)")
    else:
        pm = make_plugin_manager(recipe)
        env = make_env(recipe.env.model_copy(update={"num_envs": 1}), source=recipe.source)
        check_objectives(recipe, env, pm)
        check_sizes(recipe, env)
    console.print(
        f"{args.recipe}: valid recipe {recipe.name!r} (env {recipe.env.id}, "
        f"{len(recipe.incentives) + len(recipe.plugins)} plugin(s), {recipe.train.total_steps:,} steps"
        + (", search valid)" if recipe.search is not None else ")"),
        soft_wrap=True,
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


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in params.items() if not (k.endswith(".on") and v is True))


def _study_table(
    rows: list[dict[str, Any]], names: list[str], signs: list[int], *, title: str, last: int = 0
):
    """The study as a table: trial, params, objective(s), verified score(s), state, best so far."""
    from rich.table import Table

    table = Table(title=title, show_header=True)
    table.add_column("trial", justify="right")
    table.add_column("params")
    for name in names:
        table.add_column(name, justify="right")
    if any(row.get(f"verified {names[0]}") is not None for row in rows):
        for name in names:
            table.add_column(f"verified {name}", justify="right")
    verified_shown = len(table.columns) > 2 + len(names)
    table.add_column("state")
    table.add_column("best so far", justify="right")
    best = None
    shown = []
    for row in rows:
        value = row.get(names[0])
        if value is not None and row["state"].startswith("complete") and row.get("feasible", True):
            best = value if best is None else (max if signs[0] > 0 else min)(best, value)
        shown.append((row, best))
    for row, best_so_far in shown[-last:] if last else shown:
        cells = [str(row["trial"]), escape(_params_text(row["params"]))]
        cells += [_short(row.get(n)) if row.get(n) is not None else "" for n in names]
        if verified_shown:
            cells += [
                _short(row.get(f"verified {n}")) if row.get(f"verified {n}") is not None else ""
                for n in names
            ]
        state = row["state"] + ("" if row.get("feasible", True) else " (infeasible)")
        if row.get("error"):
            state += f": {escape(str(row['error']).splitlines()[0][:80])}"
        cells += [state, "" if len(names) > 1 or best_so_far is None else _short(best_so_far)]
        table.add_row(*cells)
    return table


class StudyView:
    """The live view of a study: a progress bar and the table of trials (plain lines when not a terminal)."""

    def __init__(self, console: Console, recipe, settings) -> None:
        from rich.console import Group
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.recipe = recipe
        self.settings = settings
        self.names = [o.name for o in recipe.objectives]
        self.signs = [1 if o.direction == "maximize" else -1 for o in recipe.objectives]
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} trials"),
            TimeElapsedColumn(),
            console=console,
        )
        self.task = self.progress.add_task(f"study {settings.study_name}", total=settings.trials)
        self.reported: set[int] = set()
        self.live = None
        if console.is_terminal:
            self.group = Group(self.progress)
            self.live = Live(self.group, console=console, refresh_per_second=2, transient=False)
            self.live.start()
        console.print(f"study [bold]{settings.study_name}[/bold]: {settings.study_dir}")

    def update(self, study, budget, events: list[str]) -> None:
        """Redraw from the storage (called by run_study about once a second)."""
        from rich.console import Group

        from incentive.study_report import design_rows

        rows = design_rows(study, self.recipe, budget)
        finished = [r for r in rows if not r["state"].startswith(("running", "waiting"))]
        self.progress.update(self.task, completed=min(len(finished), budget.total))
        for line in events:
            self.console.print(f"[yellow]{escape(line)}[/yellow]")
        if self.live is not None:
            table = _study_table(rows, self.names, self.signs, title="trials (latest 15)", last=15)
            self.live.update(Group(self.progress, table))
            return
        for row in finished:
            if row["trial"] not in self.reported:
                self.reported.add(row["trial"])
                values = ", ".join(f"{n} {_short(row[n])}" for n in self.names if row.get(n) is not None)
                self.console.print(
                    f"trial {row['trial']} {row['state']}: {values} ({escape(_params_text(row['params']))})"
                    + (f" error: {escape(str(row['error']))}" if row.get("error") else ""),
                    highlight=False,
                )

    def stop(self) -> None:
        """End the live display."""
        if self.live is not None:
            self.live.stop()


def _cmd_search(args: argparse.Namespace, console: Console) -> int:
    from incentive.recipe import load_recipe
    from incentive.search import SearchSettings, run_study
    from incentive.study_report import write_outputs

    if args.batch is not None and args.batch < 1:
        raise IncentiveError(f"--batch {args.batch}: the batch size must be at least 1")
    recipe = load_recipe(args.recipe, args.set)
    if recipe.search is None:
        raise IncentiveError(f"{args.recipe}: field 'search': `incentive search` needs a `search:` section")
    settings = SearchSettings.of(
        recipe,
        trials=args.trials,
        workers=args.workers,
        storage=args.storage,
        study=args.study,
        timeout=args.timeout,
        verify=args.verify,
        batch=args.batch,
    )
    view = StudyView(console, recipe, settings)
    try:
        result = run_study(recipe, settings, monitor=view.update)
    finally:
        view.stop()
    if result.interrupted:
        Console(stderr=True, soft_wrap=True).print(
            "interrupted: finished trials are kept and interrupted ones will be re-run; "
            "run the same command again to resume the study"
        )
        return 130
    rows, best, notes = write_outputs(result)
    names = view.names
    console.print(_study_table(rows, names, view.signs, title=f"study {settings.study_name}"))
    for note in notes:
        console.print(f"[dim]{escape(note)}[/dim]")
    for t in best:
        verified = result.verified.get(t.number)
        score = ", ".join(f"{n} {_short(v)}" for n, v in zip(names, t.values, strict=True))
        checked = (
            " | verified on fresh seeds: "
            + ", ".join(f"{n} {_short(v)}" for n, v in zip(names, verified["values"], strict=True))
            if verified
            else ""
        )
        label = "best design" if len(names) == 1 else "Pareto design"
        console.print(
            f"{label}: trial {t.number} ({escape(_params_text(t.params))}) search: {score}{checked}"
        )
    if not best:
        console.print("no trial completed: no best design")
    out = settings.study_dir
    console.print(f"study directory: [bold]{out}[/bold] (best.yaml or pareto/, trials.csv, plots)")
    return 0


def _cmd_study_show(args: argparse.Namespace, console: Console) -> int:
    import optuna

    from incentive.recipe import validate_recipe
    from incentive.study import JOURNAL, Budget, make_storage, storage_label
    from incentive.study_report import design_rows

    where = args.location
    if "://" in where:
        storage = make_storage(where, Path("."))
        shown = storage_label(where)
    else:
        journal = Path(where) / JOURNAL if Path(where).is_dir() else Path(where)
        if not journal.exists():
            raise IncentiveError(f"{where}: no study there (expected a study directory with {JOURNAL})")
        storage = make_storage(str(journal), journal.parent)
        shown = str(journal.parent)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    name = args.study or (names[0] if len(names) == 1 else None)
    if name not in names:
        raise IncentiveError(
            f"{shown}: {'no study named ' + repr(name) if name else 'give --study'}; "
            f"studies there: {', '.join(names) or 'none'}"
        )
    study = optuna.load_study(study_name=name, storage=storage)
    data = json.loads(study.user_attrs.get("recipe", "{}"))
    recipe = validate_recipe(data, source=f"study {name}")
    budget = Budget(int(study.user_attrs.get("budget", 10**9)))
    rows = design_rows(study, recipe, budget)
    names_ = [o.name for o in recipe.objectives]
    signs = [1 if o.direction == "maximize" else -1 for o in recipe.objectives]
    console.print(_study_table(rows, names_, signs, title=f"study {name} ({shown})"))
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
    run.add_argument(
        "--seeds",
        metavar="SEEDS",
        help="train these seeds (0-7, 0,3,5) as one batched run, one run directory <run id>-seed<S> each",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=_cmd_run)
    validate = sub.add_parser("validate", help="check a recipe without running it")
    validate.add_argument("recipe", help="recipe YAML file")
    validate.add_argument("--set", action="append", default=[], metavar="PATH=VALUE")
    validate.set_defaults(func=_cmd_validate)
    search = sub.add_parser("search", help="search over a recipe's `search:` section (an Optuna study)")
    search.add_argument("recipe", help="recipe YAML file with a `search:` section")
    search.add_argument(
        "--trials", type=int, help="trials in the whole study, all workers (default: search.trials)"
    )
    search.add_argument(
        "--workers", type=int, help="worker processes on this machine (default: search.workers)"
    )
    search.add_argument(
        "--storage", help="postgresql://user:password@host:port/db (default: a local journal file)"
    )
    search.add_argument("--study", help="study name (default: search.study_name or the recipe name)")
    search.add_argument(
        "--batch",
        type=int,
        metavar="K",
        help="train K trials (and their repeats) at once as one batched run per worker (default: 1)",
    )
    search.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    search.add_argument("--verify", type=int, help="re-run the top K designs on fresh seeds (default: 3)")
    search.add_argument(
        "--set", action="append", default=[], metavar="PATH=VALUE", help="override a recipe field"
    )
    search.set_defaults(func=_cmd_search)
    study = sub.add_parser("study", help="inspect studies")
    study_sub = study.add_subparsers(dest="study_command", required=True)
    show = study_sub.add_parser("show", help="print the table of an existing study")
    show.add_argument("location", metavar="DIR_OR_URL", help="a study directory, or a PostgreSQL URL")
    show.add_argument("--study", help="study name (needed when the storage holds several)")
    show.set_defaults(func=_cmd_study_show)
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
    show_warning = warnings.showwarning

    def show(message, category, *rest) -> None:  # a recipe warning is one plain line, not a source line
        if issubclass(category, RecipeWarning):
            err = Console(stderr=True, soft_wrap=True)
            err.print(f"[bold yellow]warning:[/bold yellow] {escape(str(message))}", highlight=False)
        else:
            show_warning(message, category, *rest)

    warnings.showwarning = show
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
    finally:
        warnings.showwarning = show_warning


if __name__ == "__main__":
    sys.exit(main())
