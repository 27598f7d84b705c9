"""What a study leaves behind: best designs as runnable recipes, a CSV of trials, plots, a W&B summary.

Under `<log.dir>/<recipe>/studies/<study>/`:

- `best.yaml`: the recipe with the best design applied, runnable as is by
  `incentive run` (the best verified design when designs were verified, else
  the best search score); for several objectives, `pareto/trial-<n>.yaml`,
  one per Pareto design. A comment on top gives both scores.
- `trials.csv`: one row per counted trial (state, objective(s), verified
  score(s), spread over seeds, params, env steps, error).
- `history.png`, `importances.png` (PED-ANOVA, Optuna 5's default),
  `parallel_coordinates.png`, and for several objectives `pareto.png`:
  Optuna's matplotlib plots, written headless.
- `trials/<n>-seed-<s>/` and `verify/<n>-seed-<s>/`: every run directory.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from incentive.recipe import Recipe
from incentive.study import Budget, slot

__all__ = ["design_rows", "write_outputs"]


def _value(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return "" if x is None else str(x)


def design_rows(study: optuna.Study, recipe: Recipe, budget: Budget) -> list[dict[str, Any]]:
    """One row per counted trial, in trial order: the table, the CSV and `study show` read these."""
    trials = study.get_trials(deepcopy=False)
    verified = {k.split("/", 1)[1]: v for k, v in study.user_attrs.items() if k.startswith("verified/")}
    names = [o.name for o in recipe.objectives]
    rows = []
    for t in budget.counted(trials):
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name.lower()}
        if t.number != slot(t):
            row["state"] += f" (re-run of {slot(t)})"
        for i, name in enumerate(names):
            row[name] = t.values[i] if t.values is not None else None
            if t.state == TrialState.PRUNED and t.intermediate_values:
                row[name] = None
        for i, name in enumerate(names):
            record = verified.get(str(t.number))
            row[f"verified {name}"] = record["values"][i] if record else None
        std = t.user_attrs.get("std")
        row["seed std"] = std[0] if std else None
        row["feasible"] = all(v <= 0 for v in t.user_attrs.get("constraints", {}).values())
        row["env_steps"] = t.user_attrs.get("env_steps")
        row["params"] = {k: v for k, v in t.params.items()}
        row["error"] = t.user_attrs.get("error")
        row["storage_s"] = t.user_attrs.get("storage_s")
        duration = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        row["seconds"] = duration
        rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    params = sorted({p for row in rows for p in row["params"]})
    columns = [c for c in (rows[0] if rows else {}) if c != "params"] + [f"param {p}" for p in params]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            cells = [row[c] for c in columns if not c.startswith("param ")]
            cells += [row["params"].get(p) for p in params]
            writer.writerow([_value(c) for c in cells])


def _recipe_yaml(trial: FrozenTrial, header: list[str]) -> str:
    data = json.loads(trial.user_attrs["recipe"])
    data["search"] = None
    data = {k: v for k, v in data.items() if v is not None}
    comment = "".join(f"# {line}\n" for line in header)
    return comment + yaml.safe_dump(data, sort_keys=False)


def _scores(trial: FrozenTrial, names: list[str], verified: dict | None) -> list[str]:
    lines = [
        f"search score ({len(trial.user_attrs.get('seeds', []))} seeds): "
        + ", ".join(f"{n} {v:.6g}" for n, v in zip(names, trial.values, strict=True))
    ]
    if verified:
        lines.append(
            f"verified on fresh seeds {verified['seeds']}: "
            + ", ".join(f"{n} {v:.6g}" for n, v in zip(names, verified["values"], strict=True))
        )
    return lines


def best_designs(
    study: optuna.Study, recipe: Recipe, budget: Budget, verified: dict[int, dict]
) -> list[FrozenTrial]:
    """The design(s) to recommend: the best verified (else searched) one; for several objectives the front."""
    from incentive.search import ranked_designs

    ranked = ranked_designs(study, recipe, budget)
    if len(recipe.objectives) > 1 or not ranked:
        return ranked
    sign = 1 if recipe.objectives[0].direction == "maximize" else -1
    checked = [t for t in ranked if t.number in verified]
    if checked:
        return [max(checked, key=lambda t: sign * verified[t.number]["values"][0])]
    return ranked[:1]


def _plots(study: optuna.Study, recipe: Recipe, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    names = [o.name for o in recipe.objectives]
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    notes = []
    plots: list[tuple[str, Any]] = []
    if len(names) == 1:
        plots.append(("history.png", lambda: ovm.plot_optimization_history(study, target_name=names[0])))
        plots.append(("importances.png", lambda: ovm.plot_param_importances(study)))
        plots.append(
            ("parallel_coordinates.png", lambda: ovm.plot_parallel_coordinate(study, target_name=names[0]))
        )
    else:
        plots.append(("pareto.png", lambda: ovm.plot_pareto_front(study, target_names=names)))
        for i, name in enumerate(names):
            plots.append(
                (
                    f"history_{i}.png",
                    lambda i=i, name=name: ovm.plot_optimization_history(
                        study, target=lambda t: t.values[i], target_name=name
                    ),
                )
            )
            plots.append(
                (
                    f"importances_{i}.png",
                    lambda i=i, name=name: ovm.plot_param_importances(
                        study, target=lambda t: t.values[i], target_name=name
                    ),
                )
            )
    for filename, draw in plots:
        if len(complete) < 2:
            notes.append(f"{filename}: needs 2 completed trials")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw()
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            figure.savefig(out / filename, dpi=100)
            plt.close(figure)
        except Exception as exc:  # a plot Optuna cannot draw for this study must not lose the rest
            notes.append(f"{filename}: not drawn ({type(exc).__name__}: {exc})")
            plt.close("all")
    return notes


def importances(study: optuna.Study, recipe: Recipe) -> dict[str, float]:
    """PED-ANOVA importances of the first objective ({} when Optuna cannot compute them yet)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
    except Exception:
        return {}


def _wandb_summary(study, recipe, settings, rows, best, verified, imp) -> str | None:
    """The study's own W&B run: best params, Pareto front and importances as tables."""
    if recipe.log.wandb.mode == "disabled":
        return None
    try:
        import wandb

        spec = recipe.log.wandb
        run = wandb.init(
            project=spec.project,
            entity=spec.entity,
            group=settings.study_name,
            job_type="study",
            name=f"{settings.study_name}/summary",
            id=f"{settings.study_name}-summary-{len(rows)}",
            mode=spec.mode,
            dir=str(settings.study_dir),
            config=recipe.model_dump(mode="json"),
            settings=wandb.Settings(silent=True, console="off", quiet=True),
            reinit="create_new",
        )
        names = [o.name for o in recipe.objectives]
        params = sorted({p for t in best for p in t.params})
        front = wandb.Table(columns=["trial", *names, *[f"verified {n}" for n in names], *params])
        for t in best:
            v = verified.get(t.number, {}).get("values", [None] * len(names))
            front.add_data(t.number, *t.values, *v, *[str(t.params.get(p)) for p in params])
        table = wandb.Table(columns=["param", "importance"], data=[[k, v] for k, v in imp.items()])
        trials = wandb.Table(
            columns=["trial", "state", *names],
            data=[[r["trial"], r["state"], *[r[n] for n in names]] for r in rows],
        )
        run.log({"best_designs": front, "importances": table, "trials": trials})
        run.summary["trials"] = len(rows)
        run.finish()
        return None
    except Exception as exc:
        return f"W&B summary run failed ({type(exc).__name__}: {exc})"


def write_outputs(result) -> tuple[list[dict[str, Any]], list[FrozenTrial], list[str]]:
    """Write best.yaml (or the Pareto files), trials.csv, the plots and the W&B summary.

    Returns:
        (trial rows, best designs, notes on what could not be written).

    """
    study, recipe, settings, budget = result.study, result.recipe, result.settings, result.budget
    out = settings.study_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = design_rows(study, recipe, budget)
    _write_csv(out / "trials.csv", rows)
    best = best_designs(study, recipe, budget, result.verified)
    names = [o.name for o in recipe.objectives]
    header = [f"study {settings.study_name!r} of {recipe.source}"]
    if len(names) == 1:
        if best:
            t = best[0]
            lines = [
                *header,
                f"best design: trial {t.number}",
                *_scores(t, names, result.verified.get(t.number)),
            ]
            (out / "best.yaml").write_text(_recipe_yaml(t, lines))
    else:
        pareto = out / "pareto"
        pareto.mkdir(exist_ok=True)
        for old in pareto.glob("trial-*.yaml"):
            old.unlink()
        for t in best:
            lines = [
                *header,
                f"Pareto design: trial {t.number}",
                *_scores(t, names, result.verified.get(t.number)),
            ]
            (pareto / f"trial-{t.number}.yaml").write_text(_recipe_yaml(t, lines))
    notes = _plots(study, recipe, out)
    imp = importances(study, recipe)
    (out / "importances.json").write_text(json.dumps(imp, indent=2))
    note = _wandb_summary(study, recipe, settings, rows, best, result.verified, imp)
    if note:
        notes.append(note)
    return rows, best, notes


def finite(x: Any) -> bool:
    """Whether x is a finite number."""
    return isinstance(x, (int, float)) and math.isfinite(x)
