"""Run directories written by hand (recipe.yaml + metrics.jsonl), for plots and comparisons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from conftest import tiny_recipe_data


def write_run(
    run_dir: Path,
    values: list[float | None],
    *,
    seed: int = 0,
    s: float = 0.5,
    metric: str = "collective_return",
) -> Path:
    """A tiny-recipe run (sharing weight `s`, seed `seed`) whose metric took `values`, one per iteration.

    Iteration i is at env step 128 * (i + 1); a None value is an iteration in which no episode ended.
    """
    data: dict[str, Any] = tiny_recipe_data(run_dir.parent)
    data["seed"] = seed
    data["incentives"][0]["params"]["s"] = s
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(yaml.safe_dump(data))
    lines = []
    for i, value in enumerate(values):
        line: dict[str, Any] = {"train/iteration": i + 1, "train/global_step": 128 * (i + 1)}
        if value is not None:
            line[f"designer/{metric}"] = value
            line["designer/return/player_0"] = value / 2
            line["designer/return/player_1"] = value / 2
            line["incentive/return/player_0"] = value
            line["incentive/return/player_1"] = value
        lines.append(json.dumps(line) + "\n")
    (run_dir / "metrics.jsonl").write_text("".join(lines))
    return run_dir
