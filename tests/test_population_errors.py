"""Bad population input: one clear message naming the field (or the file), exit code 2."""

from __future__ import annotations

import pytest
import torch
from test_cli import RECIPES, assert_clean_error, run_cli, run_recipe_briefly


@pytest.mark.parametrize(
    ("recipe", "overrides", "fragments"),
    [
        (
            "kuhn_pfsp.yaml",
            ["opponents.plugin=pfsq"],
            ["'opponents.plugin'", "unknown plugin 'pfsq'", "pfsp"],
        ),
        (
            "connect_four_pfsp.yaml",
            ["opponents.params.bots=[random, one_plyy]"],
            ["'opponents.params.bots.1'", "unknown bot 'one_plyy'", "one_ply, minimax"],
        ),
        (
            "kuhn_pfsp.yaml",
            ["opponents.params.eval_bots=[one_ply]"],
            [
                "'opponents.params.eval_bots.0'",
                "unknown bot 'one_ply' for env 'kuhn_poker'",
                "available: random",
            ],
        ),
        (
            "kuhn_pfsp.yaml",
            ["opponents.params.snapshot_every=0"],
            ["opponents.params.snapshot_every", "greater than or equal to 1"],
        ),
        (
            "kuhn_pfsp.yaml",
            ["opponents.params.bot_share=0.2", "opponents.params.bots=[]"],
            ["'opponents.params.bot_share'", "'opponents.params.bots' lists none"],
        ),
        (
            "kuhn_pfsp.yaml",
            ["opponents.params.weighting=cubic"],
            ["opponents.params.weighting", "'hard', 'variance', 'linear' or 'linear_capped'"],
        ),
        (
            "navigation_uniform.yaml",
            ["env.params.num_agents=1", "opponents={plugin: fictitious_self_play}"],
            ["'opponents.plugin'", "'fictitious_self_play'", "at least two seats", "has 1 agent"],
        ),
        (
            "kuhn_psro.yaml",
            ["env={id: prisoners_dilemma, num_envs: 4}", "objective={metric: collective_return}"],
            ["'opponents.params.meta_solver'", "two-player zero-sum", "'prisoners_dilemma'", "'rd'"],
        ),
        (
            "kuhn_psro.yaml",
            ["opponents.params.evaluate_every=0"],
            [
                "'opponents.params.evaluate_every'",
                "'mixture_exploitability' is measured by periodic evaluations",
            ],
        ),
        (
            "connect_four_pfsp.yaml",
            ["objective.metric=exploitability"],
            ["'objective.metric'", "Kuhn and Leduc poker only, not for env 'connect_four'"],
        ),
        (
            "kuhn_league.yaml",
            ["opponents.params.main_agents=0"],
            ["'opponents.params.main_agents'", "a league needs at least one main agent", "given 0"],
        ),
        (
            "kuhn_league.yaml",
            ["opponents.params.main_agents=5"],
            ["'opponents.params.main_agents'", "at most 4 main agents", "given 5"],
        ),
        (
            # 4 instances, main_share 0.5: two for the main agents, two for the two exploiters
            "kuhn_league.yaml",
            ["opponents.params.main_agents=3"],
            [
                "'opponents.params.main_agents'",
                "3 main agents need at least one instance each",
                "gives the main agents 2",
            ],
        ),
        (
            "kuhn_league.yaml",
            ["opponents.params.main_share=0.9"],
            [
                "'opponents.params.main_share'",
                "2 exploiters need at least one instance each",
                "leaves them 0",
            ],
        ),
        (
            "kuhn_league.yaml",
            ["opponents.params.snapshot_every=5"],
            ["opponents.params", "not used by the league", "checkpoint_min_iterations"],
        ),
        (
            "connect_four_pfsp.yaml",
            ["opponents={plugin: psro, params: {payoffs: exact}}", "objective.metric=win_rate/player_0"],
            ["'opponents.params.payoffs'", "exact game model", "'connect_four'", "'sampled'"],
        ),
        (
            "kuhn_psro.yaml",
            ["opponents.params.meta_solver=alpharank"],
            ["opponents.params.meta_solver", "'uniform', 'nash', 'rd' or 'prd'"],
        ),
    ],
)
def test_bad_population_input(capsys, tmp_path, recipe, overrides, fragments):
    code, err = run_recipe_briefly(capsys, tmp_path, recipe, *overrides)
    assert_clean_error(code, err, *fragments)


def test_a_snapshot_that_cannot_be_loaded_names_the_file(capsys, tmp_path):
    args = ["run", str(RECIPES / "kuhn_pfsp.yaml"), "--quiet", "--run-id", "broken"]
    args += ["--set", f"log.dir={tmp_path}", "--set", "log.wandb.mode=disabled", "--set", "env.num_envs=4"]
    code, _, err = run_cli(capsys, *args, "--set", "train.total_steps=64")
    assert code == 0, err
    checkpoint = tmp_path / "kuhn_pfsp" / "broken" / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)  # tensors and plain containers only
    member = state["plugins"]["pfsp"]["population"]["members"][-1]
    assert member["kind"] == "snapshot"
    name = next(iter(member["policy"]["net"]))
    member["policy"]["net"][name] = torch.zeros(3, 3, 3)
    torch.save(state, checkpoint)
    saved = checkpoint.parent / "recipe.yaml"  # a longer budget, so the resume has iterations to run
    saved.write_text(saved.read_text().replace("total_steps: 64", "total_steps: 128"))
    assert "total_steps: 128" in saved.read_text()
    code, _, err = run_cli(capsys, "run", "--resume", str(checkpoint.parent), "--quiet")
    assert_clean_error(code, err, str(checkpoint), f"population member {member['name']!r} cannot be loaded")
