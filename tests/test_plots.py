"""Every run draws curves.png at its end and after --resume; sizes follow the panels (not pixels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_compare import png_size

from incentive import hookimpl
from incentive.plots import figure_size, run_curves
from incentive.recipe import load_recipe
from incentive.runner import resume_run, start_run


class StopAt:
    """Interrupts the run at the end of one iteration, as Ctrl-C would."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    @hookimpl
    def incentive_iteration_end(self, iteration):
        if iteration == self.iteration:
            raise KeyboardInterrupt


def test_a_run_writes_curves_at_its_end_and_again_on_resume(write_recipe):
    recipe = load_recipe(write_recipe())
    with pytest.raises(KeyboardInterrupt):
        start_run(recipe, run_id="stopped", extra_plugins=[("stop", StopAt(2))])
    run_dir = Path(recipe.log.dir) / "tiny" / "stopped"
    curves = run_dir / "curves.png"
    # the IPD's designer metrics: collective_return, equality, 3 env metrics; 2 agents: 7 panels, 3 x 3
    assert png_size(curves) == figure_size(7) == (1200, 900)
    curves.unlink()
    resume_run(run_dir)
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3
    assert png_size(curves) == (1200, 900)


def test_a_run_without_finished_episodes_draws_one_explaining_panel(write_recipe):
    recipe = load_recipe(write_recipe(env__params={"episode_length": 1000}))
    run_dir, _ = start_run(recipe, run_id="short")
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert not any(key.startswith("designer/") for key in last)
    assert png_size(run_dir / "curves.png") == figure_size(1) == (400, 300)


def test_panels_per_agent_follow_the_env(tmp_path: Path):
    from synthetic_runs import write_run

    run_dir = write_run(tmp_path / "r", [1.0, 2.0, None, 3.0])
    # collective_return, then one panel per agent (extrinsic beside shaped return)
    assert png_size(run_curves(run_dir)) == figure_size(3) == (1200, 300)
    assert png_size(run_curves(run_dir, tmp_path / "elsewhere" / "c.png")) == (1200, 300)
