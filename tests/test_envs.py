"""The contract every registered env keeps: PettingZoo's API tests, and batch == single instances."""

from __future__ import annotations

import pytest
import torch
from pettingzoo.test import parallel_api_test, parallel_seed_test

from incentive.envs import ParallelView, available_envs, load_env_class

# envs whose defaults need a parameter: the params to test them with
PARAMS = {"pettingzoo": {"module": "pettingzoo.classic.rps_v2"}}
ENVS = sorted(available_envs())


def make(env_id: str, num_envs: int):
    cls = load_env_class(env_id)
    return cls(num_envs=num_envs, params=cls.Params(**PARAMS.get(env_id, {})))


def random_actions(env, ts, generator: torch.Generator) -> torch.Tensor:
    """Uniform legal actions for every seat, [E, A]."""
    columns = []
    for agent in env.possible_agents:
        n = env.action_spaces[agent].n
        weights = torch.ones(env.num_envs, n)
        if ts.action_mask is not None and agent in ts.action_mask:
            weights = ts.action_mask[agent].float()
        columns.append(torch.multinomial(weights, 1, generator=generator)[:, 0])
    return torch.stack(columns, 1)


@pytest.mark.parametrize("env_id", ENVS)
def test_pettingzoo_api(env_id):
    parallel_api_test(ParallelView(make(env_id, 1)), num_cycles=300)


@pytest.mark.parametrize("env_id", ENVS)
def test_pettingzoo_seed(env_id):
    parallel_seed_test(lambda: ParallelView(make(env_id, 1)))


@pytest.mark.parametrize("env_id", ENVS)
def test_batched_env_equals_single_instances(env_id):
    """E instances seeded s..s+E-1 step exactly like E lone instances with those seeds."""
    num_envs, seed, steps = 3, 11, 160
    batched = make(env_id, num_envs)
    singles = [make(env_id, 1) for _ in range(num_envs)]
    ts = batched.reset(seed=seed)
    single_ts = [single.reset(seed=seed + e) for e, single in enumerate(singles)]
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        for e, single in enumerate(single_ts):
            for agent in batched.possible_agents:
                assert torch.equal(ts.obs[agent][e], single.obs[agent][0]), agent
            assert torch.equal(ts.acting[e], single.acting[0])
        actions = random_actions(batched, ts, generator)
        ts = batched.step(actions)
        single_ts = [single.step(actions[e : e + 1]) for e, single in enumerate(singles)]
        for e, single in enumerate(single_ts):
            assert torch.equal(ts.reward[e], single.reward[0])
            assert bool(ts.terminated[e]) == bool(single.terminated[0])
            assert bool(ts.truncated[e]) == bool(single.truncated[0])
    assert ts.reward.shape == (num_envs, batched.num_agents)


@pytest.mark.parametrize("env_id", ENVS)
def test_state_dict_resumes_exactly(env_id):
    env, twin = make(env_id, 2), make(env_id, 2)
    generator = torch.Generator().manual_seed(1)
    ts = env.reset(seed=5)
    twin.reset(seed=99)
    for _ in range(7):
        ts = env.step(random_actions(env, ts, generator))
    twin.load_state_dict(env.state_dict())
    for _ in range(60):
        actions = random_actions(env, ts, generator)
        ts, other = env.step(actions), twin.step(actions)
        assert torch.equal(ts.reward, other.reward)
        for agent in env.possible_agents:
            assert torch.equal(ts.obs[agent], other.obs[agent])
