"""`incentive new-plugin NAME`: a ready plugin package to start from.

Writes `incentive-NAME/` (or `--dir`) holding:

- `pyproject.toml`: the distribution `incentive-NAME`, one module
  `incentive_NAME`, and the entry point `NAME = "incentive_NAME:ClassName"`
  in the group `incentive.plugins`, which is all `incentive` needs to find it;
- `incentive_NAME.py`: one plugin class with a `Params` model and an
  `incentive_shape_reward` hook (a working example: a bonus on steps where an
  agent's reward reaches a threshold), to edit;
- `tests/test_NAME.py`: the term checked by hand, and a tiny recipe trained
  with the plugin, checking the metrics it logs.

`pip install -e DIR` then makes `incentives: [{plugin: NAME}]` work in any
recipe, `incentive plugins` list it, and `pytest DIR` pass.
"""

from __future__ import annotations

import keyword
import re
from importlib.metadata import entry_points
from pathlib import Path

from incentive.errors import IncentiveError

__all__ = ["write_plugin_package"]

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "incentive-{dist}"
version = "0.1.0"
description = "The {name} incentive plugin for incentive."
requires-python = ">=3.11"
dependencies = ["incentive>=0.1", "torch>=2.2", "pydantic>=2.7"]

[project.optional-dependencies]
test = ["pytest>=8"]

# the one line `incentive` needs: plugin name = "module:Class" in the group incentive.plugins
[project.entry-points."incentive.plugins"]
{name} = "{module}:{cls}"

[tool.setuptools]
py-modules = ["{module}"]
"""

PLUGIN = '''\
"""{cls}: a bonus for agents whose reward reaches a threshold (edit me).

This docstring is the plugin's user documentation: say what the incentive
does, its formula, where it comes from and its parameters.

The example: agent i gets `bonus` on every step where its extrinsic reward
reaches `threshold`:

    u_i = r_i + bonus * [r_i >= threshold]

Use it in a recipe with `incentives: [{{plugin: {name}, params: {{bonus: 0.1}}}}]`.
A run logs each term this hook returns as `incentive/{name}/<term>` (here
`incentive/{name}/bonus`: the term summed over an episode, averaged over the
episodes that ended in an iteration), the shaped return of each agent as
`incentive/return/<agent>`, and the env's own `designer/...` metrics, which
no plugin changes.
"""

from __future__ import annotations

import torch
from incentive import RunContext, StepBatch, hookimpl
from pydantic import BaseModel, ConfigDict, Field


class {cls}:
    """Adds `bonus` to an agent's incentive on steps where its reward reaches `threshold`."""

    name = "{name}"

    class Params(BaseModel):
        """Recipe parameters, validated by pydantic (unknown keys are errors)."""

        model_config = ConfigDict(extra="forbid")
        bonus: float = Field(0.1, description="Added to an agent's reward on a step that qualifies.")
        threshold: float = Field(0.0, description="Extrinsic reward an agent must reach on the step.")

    def __init__(self, params: Params) -> None:
        self.params = params

    @hookimpl
    def incentive_shape_reward(self, run: RunContext, step: StepBatch) -> dict[str, torch.Tensor]:
        """Once per batched step: named [E, A] terms, added to the extrinsic reward [E, A].

        Hook arguments are opt-in: list only those you use, e.g. `(self, step)`.
        """
        reached = step.reward >= self.params.threshold
        return {{"bonus": self.params.bonus * reached.to(step.reward.dtype)}}
'''

TEST = '''\
"""{name}: the term by hand, and a tiny recipe trained with the plugin (after `pip install -e .`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from incentive.recipe import validate_recipe
from incentive.runner import start_run

from {module} import {cls}


def test_bonus_by_hand():
    """The term of a 2 x 2 batch, by hand."""
    plugin = {cls}({cls}.Params(bonus=0.5, threshold=0.0))
    step = SimpleNamespace(reward=torch.tensor([[1.0, -1.0], [0.0, -0.5]]))
    terms = plugin.incentive_shape_reward(run=None, step=step)
    assert torch.equal(terms["bonus"], torch.tensor([[0.5, 0.0], [0.5, 0.0]]))


def test_a_tiny_recipe_trains_with_the_plugin(tmp_path: Path):
    """The installed plugin is found by name, trains, and logs its term."""
    recipe = validate_recipe(
        {{
            "name": "tiny_{name}",
            "seed": 0,
            "env": {{"id": "prisoners_dilemma", "num_envs": 8, "params": {{"episode_length": 5}}}},
            "learner": {{"rollout_steps": 10, "epochs": 1, "minibatches": 1, "hidden_sizes": [8]}},
            "incentives": [{{"plugin": "{name}", "params": {{"bonus": 1.0, "threshold": -1.0}}}}],
            "objective": {{"metric": "collective_return"}},
            "train": {{"total_steps": 160}},
            "log": {{"dir": str(tmp_path), "wandb": {{"mode": "disabled"}}}},
        }},
        source="test recipe",
    )
    run_dir, _ = start_run(recipe, run_id="test")
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    bonus = last["incentive/{name}/bonus"]
    # prisoner's dilemma rewards are -1, -3, 0 or -2: the bonus (1 where r >= -1) is paid on 0 to 5 of
    # an episode's 5 steps, averaged over the seats
    assert 0.0 <= bonus <= 5.0
    # the plugin's term is the only one: shaped return - extrinsic return is each agent's bonus, and the
    # logged term is their mean over agents
    agents = ("player_0", "player_1")
    gaps = [last[f"incentive/return/{{a}}"] - last[f"designer/return/{{a}}"] for a in agents]
    assert all(0.0 <= gap <= 5.0 for gap in gaps)
    assert sum(gaps) / 2 == pytest.approx(bonus, abs=1e-5)
'''

README = """\
# incentive-{dist}

The `{name}` plugin for [incentive](https://pypi.org/project/incentive/): see `{module}.py`.

```bash
pip install -e .          # registers the plugin (entry point group incentive.plugins)
incentive plugins         # lists {name}
pytest                    # the plugin's tests
```

In a recipe: `incentives: [{{plugin: {name}, params: {{bonus: 0.1, threshold: 0.0}}}}]`.
"""


def write_plugin_package(name: str, directory: Path | None = None) -> Path:
    """Write the package for plugin `name` and return its directory.

    Raises:
        IncentiveError: a name that is not a lowercase identifier or is already
            an installed plugin, or a target directory that is not empty.

    """
    if not NAME_PATTERN.fullmatch(name) or keyword.iskeyword(name):
        raise IncentiveError(
            f"new-plugin: {name!r} is not a plugin name; use lowercase letters, digits and "
            "underscores, starting with a letter (e.g. my_bonus)"
        )
    taken = {ep.name for ep in entry_points(group="incentive.plugins")}
    if name in taken:
        raise IncentiveError(f"new-plugin: a plugin named {name!r} is already installed; choose another name")
    root = Path(directory) if directory is not None else Path(f"incentive-{name.replace('_', '-')}")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise IncentiveError(f"new-plugin: {root} exists and is not an empty directory")
    fields = {
        "name": name,
        "dist": name.replace("_", "-"),
        "module": f"incentive_{name}",
        "cls": "".join(part.capitalize() for part in name.split("_")),
    }
    (root / "tests").mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT.format(**fields))
    (root / f"{fields['module']}.py").write_text(PLUGIN.format(**fields))
    (root / "tests" / f"test_{name}.py").write_text(TEST.format(**fields))
    (root / "README.md").write_text(README.format(**fields))
    return root
