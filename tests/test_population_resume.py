"""Population runs are deterministic, and --resume after a real SIGKILL continues bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kill_and_resume import kill_and_resume

CASES = {
    # evictions every iteration (cap 2, first not kept): slots freed and reused while games straddle
    # iterations; the random bot's and every snapshot's sampling streams; win rates against a bot
    "connect_four_pfsp": (
        {"id": "connect_four", "num_envs": 16},
        {
            "plugin": "pfsp",
            "params": {
                "snapshot_every": 1,
                "max_snapshots": 2,
                "keep_first": False,
                "bots": ["random"],
                "self_play_share": 0.2,
                "evaluate_every": 5,
                "eval_bots": ["random"],
                "eval_episodes": 16,
            },
        },
    ),
    # the same with random openings: every game's opening plies come from the env's per-instance
    # streams, which the checkpoint must carry; the evaluation games start from the empty board
    "connect_four_pfsp_openings": (
        {"id": "connect_four", "num_envs": 16, "params": {"random_opening": 6}},
        {
            "plugin": "pfsp",
            "params": {
                "snapshot_every": 1,
                "max_snapshots": 2,
                "keep_first": False,
                "bots": ["random"],
                "self_play_share": 0.2,
                "evaluate_every": 5,
                "eval_bots": ["random"],
                "eval_episodes": 16,
            },
        },
    ),
    # the league: two exploiters that train and reset, their snapshots, pairwise payoffs
    "kuhn_league": (
        {"id": "kuhn_poker", "num_envs": 32},
        {
            "plugin": "league",
            "params": {
                "checkpoint_min_iterations": 2,
                "checkpoint_max_iterations": 4,
                "league_reset_prob": 0.5,
                "max_snapshots": 6,
                "evaluate_every": 3,
            },
        },
    ),
    # two main agents (the second a learner of its own, never reset), its live copy, its snapshots;
    # with two main exploiters and a league exploiter, four learners batched in one PPO
    "kuhn_league_two_mains": (
        {"id": "kuhn_poker", "num_envs": 32},
        {
            "plugin": "league",
            "params": {
                "main_agents": 2,
                "main_exploiters": 2,
                "checkpoint_min_iterations": 2,
                "checkpoint_max_iterations": 4,
                "league_reset_prob": 0.5,
                "max_snapshots": 6,
                "evaluate_every": 3,
            },
        },
    ),
    # the meta-game, sigma from projected replicator dynamics, exact exploitability
    "kuhn_psro": (
        {"id": "kuhn_poker", "num_envs": 64},
        {
            "plugin": "psro",
            "params": {"meta_solver": "prd", "snapshot_every": 3, "meta_episodes": 64, "evaluate_every": 2},
        },
    ),
}


def _write(tmp_path: Path, case: str) -> Path:
    env, opponents = CASES[case]
    data = {
        "name": case,
        "seed": 5,
        "env": env,
        "learner": {"rollout_steps": 8, "epochs": 1, "minibatches": 2, "hidden_sizes": [32]},
        "opponents": opponents,
        "objective": {"metric": "collective_return"},
        "train": {"total_steps": env["num_envs"] * 8 * 40, "checkpoint_every": 3, "threads": 1},
        "log": {"dir": str(tmp_path / "runs"), "wandb": {"mode": "disabled"}},
    }
    path = tmp_path / f"{case}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_population_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, case):
    path = _write(tmp_path, case)
    whole, resumed = kill_and_resume(path, tmp_path / "runs" / case, iterations=40)
    assert b"population/elo/learner" in whole
    if case == "kuhn_league_two_mains":
        assert b"population/league/main_1/entropy" in whole and b'"population/elo/main_1@4"' in whole
    assert resumed == whole
