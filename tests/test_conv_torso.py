"""The convolutional torso (`learner.conv_channels`): shapes, weight sharing, determinism, bad input."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from kill_and_resume import kill_and_resume
from test_cli import RECIPES, assert_clean_error, run_recipe_briefly

from incentive.conv_torso import ConvTorso
from incentive.envs.connect_four import ConnectFour
from incentive.envs.navigation import Navigation, NavigationParams
from incentive.ppo import PPO
from incentive.recipe import LearnerSpec, load_recipe
from incentive.runner import start_run


def test_torso_shapes_and_appended_features():
    torso = ConvTorso((6, 7, 2), [8, 4], 3, extra=2, generator=torch.Generator().manual_seed(0))
    assert torso.out_dim == (6 - 4) * (7 - 4) * 4 + 2  # two unpadded 3 x 3 layers: 6 x 7 -> 2 x 3
    x = torch.randn(1, 5, 6 * 7 * 2 + 2)
    y = torso(x)
    assert y.shape == (1, 5, torso.out_dim)
    assert torch.equal(y[..., -2:], x[..., -2:])  # the agent id passes through untouched


def test_one_detector_serves_every_position():
    # a 4 x 4 kernel over a board: the same line of four, shifted one column, gives the same
    # activations at the shifted output position (what an MLP would have to learn twice)
    torso = ConvTorso((6, 7, 2), [16], 4, extra=0, generator=torch.Generator().manual_seed(1))
    boards = torch.zeros(2, 6, 7, 2)
    boards[0, 5, 0:4, 0] = 1.0  # bottom row, columns 0-3
    boards[1, 5, 1:5, 0] = 1.0  # bottom row, columns 1-4
    maps = torso(boards.reshape(1, 2, -1)).reshape(2, 16, 3, 4)  # [rows, channels, 6-3, 7-3]
    assert torch.allclose(maps[0, :, 2, 0], maps[1, :, 2, 1], atol=1e-6)
    assert not torch.allclose(maps[0, :, 2, 0], maps[0, :, 2, 1], atol=1e-3)


def test_conv_learner_is_seeded_and_acts_legally():
    env = ConnectFour(num_envs=4, params=ConnectFour.Params())
    agents = env.possible_agents
    config = LearnerSpec(conv_channels=[8], conv_kernel=4, hidden_sizes=[16])
    first = PPO.for_env(config, env, agents, torch.Generator().manual_seed(3))
    second = PPO.for_env(config, env, agents, torch.Generator().manual_seed(3))
    for a, b in zip(first.net.parameters(), second.net.parameters(), strict=True):
        assert torch.equal(a, b)
    conv = first.net.actor[0].convs[0]
    assert conv.weight.shape == (8, 2, 4, 4)
    flat = conv.weight.reshape(8, -1)  # orthogonal rows, gain sqrt(2)
    assert torch.allclose(flat @ flat.T, 2.0 * torch.eye(8), atol=1e-5)
    params = sum(p.numel() for p in first.net.parameters())
    conv_out = 3 * 4 * 8 + 2  # + the agent id of the shared network
    expected = 2 * (8 * 2 * 16 + 8) + (conv_out * 16 + 16) * 2 + (16 * 7 + 7) + (16 + 1)
    assert params == expected, (params, expected, math.prod(conv.weight.shape))


def _conv_recipe(tmp_path: Path) -> Path:
    data = yaml.safe_load((RECIPES / "connect_four_pfsp.yaml").read_text())
    data["env"]["num_envs"] = 8
    data["learner"].update({"rollout_steps": 8, "hidden_sizes": [16], "conv_channels": [8], "conv_kernel": 4})
    data["opponents"]["params"].update({"evaluate_every": 2, "eval_episodes": 8, "snapshot_every": 2})
    data["train"] = {"total_steps": 8 * 8 * 2 * 4, "checkpoint_every": 2}
    data["log"] = {"dir": str(tmp_path / "runs"), "wandb": {"mode": "disabled"}}
    path = tmp_path / "conv.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_conv_run_is_bit_identical_under_the_same_seed(tmp_path):
    path = _conv_recipe(tmp_path)
    first, _ = start_run(load_recipe(path), run_id="a")
    second, _ = start_run(load_recipe(path), run_id="b")
    text = Path(first, "metrics.jsonl").read_text()
    assert text == Path(second, "metrics.jsonl").read_text()
    assert '"designer/win_rate/random"' in text


@pytest.mark.parametrize(
    ("recipe", "overrides", "fragments"),
    [
        (
            "ipd_selfish.yaml",
            ["learner.conv_channels=[8]"],
            ["'learner.conv_channels'", "same [H, W, C] image", "'prisoners_dilemma'"],
        ),
        (
            "connect_four_pfsp.yaml",
            ["learner.conv_channels=[8, 8]", "learner.conv_kernel=4"],
            ["'learner.conv_channels'", "2 unpadded 4 x 4 convolution(s) do not fit the 6 x 7"],
        ),
        (
            "connect_four_pfsp.yaml",
            ["learner.conv_channels=[8]", "learner.share_parameters=false"],
            ["'learner.conv_channels'", "one shared network"],
        ),
    ],
)
def test_bad_conv_recipes_name_the_field(capsys, tmp_path, recipe, overrides, fragments):
    code, err = run_recipe_briefly(capsys, tmp_path, recipe, *overrides)
    assert_clean_error(code, err, *fragments)


def test_a_conv_run_resumes_bit_for_bit_after_sigkill(tmp_path):
    data = yaml.safe_load(_conv_recipe(tmp_path).read_text())
    data["train"] = {"total_steps": 8 * 8 * 24, "checkpoint_every": 3, "threads": 1}
    data["name"] = "conv"
    path = tmp_path / "conv_resume.yaml"
    path.write_text(yaml.safe_dump(data))
    whole, resumed = kill_and_resume(path, tmp_path / "runs" / "conv", iterations=24)
    assert b"population/elo/learner" in whole
    assert resumed == whole


def _navigation_image_recipe(tmp_path: Path) -> Path:
    """PLR on navigation's image observation with a small conv torso: a few iterations, evaluated."""
    data = yaml.safe_load((RECIPES / "navigation_plr.yaml").read_text())
    data["env"]["num_envs"] = 8
    data["env"]["params"].update(
        {"observation": "image", "max_steps": 12, "levels": {"train": "0-9", "test": "100-107"}}
    )
    data["learner"].update(
        {"rollout_steps": 16, "hidden_sizes": [16], "conv_channels": [8], "conv_kernel": 3}
    )
    data["evaluate"] = {"every": 2, "policy": "sampled"}
    data["train"] = {"total_steps": 8 * 16 * 4, "checkpoint_every": 2}
    data["log"] = {"dir": str(tmp_path / "runs"), "wandb": {"mode": "disabled"}}
    path = tmp_path / "navigation_image.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_navigation_image_learner_convolves_the_four_planes():
    env = Navigation(num_envs=2, params=NavigationParams(observation="image"))  # 9 x 9 interior: 11 x 11
    config = LearnerSpec(conv_channels=[8], conv_kernel=3, hidden_sizes=[16])
    learner = PPO.for_env(config, env, env.possible_agents, torch.Generator().manual_seed(0))
    torso = learner.net.actor[0]
    assert torso.image == (11, 11, 4)
    assert torso.convs[0].weight.shape == (8, 4, 3, 3)
    assert torso.out_dim == 9 * 9 * 8 + 2  # + the agent id of the shared network
    # the learner's feature rows start with each image flattened channels last, as the torso reads them
    obs = env.reset(seed=0).obs
    features = learner.features(obs, env.possible_agents)
    for i, agent in enumerate(env.possible_agents):
        assert torch.equal(features[:, i, : 11 * 11 * 4].reshape(2, 11, 11, 4), obs[agent])


def test_a_navigation_image_run_is_bit_identical_under_the_same_seed(tmp_path):
    path = _navigation_image_recipe(tmp_path)
    first, _ = start_run(load_recipe(path), run_id="a")
    second, _ = start_run(load_recipe(path), run_id="b")
    text = Path(first, "metrics.jsonl").read_text()
    assert text == Path(second, "metrics.jsonl").read_text()
    assert len(text.splitlines()) == 4
    assert '"designer/test/success"' in text and '"curriculum/plr/top_share"' in text


def test_a_conv_torso_on_the_flat_navigation_observation_is_refused(capsys, tmp_path):
    code, err = run_recipe_briefly(capsys, tmp_path, "navigation_uniform.yaml", "learner.conv_channels=[8]")
    assert_clean_error(code, err, "'learner.conv_channels'", "same [H, W, C] image", "'navigation'", "(324,)")
