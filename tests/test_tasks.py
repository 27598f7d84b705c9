"""Per-instance tasks: plugin parameters as [E] tensors, adopted at each instance's next reset."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from incentive import hookimpl
from incentive.plugins.inequity_aversion import InequityAversion
from incentive.plugins.payments import Payments
from incentive.plugins.reward_sharing import RewardSharing
from incentive.plugins.social_value_orientation import SocialValueOrientation
from incentive.recipe import load_recipe
from incentive.runner import start_run
from incentive.tasks import TaskState, accepts_task_param, episode_returns, instance_param, step_values

E, A = 6, 3


def _plugin(cls, tasks=None, **params):
    plugin = cls(cls.Params(**params))
    info = tuple(f"cleared_{i}" for i in range(A))
    run = SimpleNamespace(
        agents=[str(i) for i in range(A)],
        num_envs=E,
        tasks=tasks,
        env=SimpleNamespace(info_keys=info, action_spaces={str(i): SimpleNamespace(n=4) for i in range(A)}),
    )
    if tasks is not None:
        tasks.plugins["incentives.0"] = plugin
        tasks._prefix[id(plugin)] = "incentives.0"
    plugin.incentive_setup(run)
    return plugin


def _steps(seed: int = 0, n: int = 5):
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in range(n):
        reward = torch.randn(E, A, generator=g)
        out.append(
            SimpleNamespace(
                reward=reward,
                done=torch.tensor([t == 2, False, False, t == 3, False, False]),
                actions=torch.randint(0, 4, (E, A), generator=g),
                acting=torch.ones(E, A, dtype=torch.bool),
                info={f"cleared_{i}": torch.randint(0, 2, (E,), generator=g).float() for i in range(A)},
            )
        )
    return out


PAY = {"contracts": [{"name": "c", "payee": {"info": "cleared"}, "payer": "others", "amount": 0.7}]}
CASES = [
    (RewardSharing, "s", {}, 1.0, 0.0),
    (RewardSharing, "team_spirit", {"team_spirit": 0.2}, 0.9, 0.2),
    (InequityAversion, "alpha", {"beta": 0.3}, 5.0, 0.1),
    (InequityAversion, "beta", {}, 0.05, 0.7),
    (SocialValueOrientation, "w", {}, 0.3, 0.1),
    (SocialValueOrientation, "angle_degrees", {}, 45.0, 0.0),
    (Payments, "contracts.0.amount", PAY, 0.7, 2.5),
]


@pytest.mark.parametrize(("cls", "field", "params", "high", "low"), CASES)
def test_half_the_instances_at_each_value_give_exactly_the_two_unbatched_results(
    cls, field, params, high, low
):
    def with_value(value):
        data = {**params}
        if field.startswith("contracts"):
            data = {"contracts": [{**PAY["contracts"][0], "amount": value}]}
        else:
            data[field] = value
        return data

    tasks = TaskState(num_envs=E)
    mixed = _plugin(cls, tasks, **with_value(low))
    split = torch.tensor([high] * 3 + [low] * 3, dtype=torch.float64)
    tasks.set({f"incentives.0.params.{field}": split}, at_boundary=True)
    alone_high = _plugin(cls, **with_value(high))
    alone_low = _plugin(cls, **with_value(low))
    for step in _steps():
        got = mixed.incentive_shape_reward(step)
        want_high = alone_high.incentive_shape_reward(step)
        want_low = alone_low.incentive_shape_reward(step)
        assert set(got) == set(want_high)
        for term, value in got.items():
            assert torch.equal(value[:3], want_high[term][:3]), term
            assert torch.equal(value[3:], want_low[term][3:]), term
        # the two values really differ in some term (else the test could not fail)
        assert any(not torch.equal(want_high[term], want_low[term]) for term in got)


def test_a_task_applies_at_each_instance_next_reset_never_mid_episode():
    tasks = TaskState(num_envs=4)
    plugin = _plugin(RewardSharing, tasks, s=0.25)
    tasks.set({"incentives.0.params.s": torch.tensor([1.0, 1.0, 1.0, 1.0])})
    assert instance_param(tasks, plugin, "s", num_envs=4).tolist() == [0.25] * 4  # nobody has reset yet
    tasks.advance(torch.tensor([False, True, False, False]))
    assert instance_param(tasks, plugin, "s", num_envs=4).tolist() == [0.25, 1.0, 0.25, 0.25]
    tasks.set({"incentives.0.params.s": torch.tensor([0.0, 0.5, 0.5, 0.5])})
    tasks.advance(torch.tensor([True, False, False, True]))
    assert instance_param(tasks, plugin, "s", num_envs=4).tolist() == [0.0, 1.0, 0.25, 0.5]
    state = tasks.state_dict()
    other = TaskState(num_envs=4)
    other.load_state_dict(state)
    assert torch.equal(other.current["incentives.0.params.s"], tasks.current["incentives.0.params.s"])
    assert torch.equal(other.pending["incentives.0.params.s"], tasks.pending["incentives.0.params.s"])


def test_without_tasks_a_plugin_reads_its_params_value():
    plugin = _plugin(RewardSharing, s=0.4)
    assert instance_param(None, plugin, "s", num_envs=3).tolist() == [0.4] * 3


def test_opponent_choice_is_held_per_instance_until_reset():
    tasks = TaskState(num_envs=3)
    tasks.set({"opponent": torch.tensor([2, 0, 1])})
    assert tasks.value("opponent").tolist() == [-1, -1, -1]
    tasks.advance(torch.tensor([True, False, True]))
    assert tasks.value("opponent").tolist() == [2, -1, 1]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("incentives.0.params.q", "has no parameter 'q'"),
        ("incentives.3.params.s", "no plugin at 'incentives.3'"),
        ("incentives.0.params.aggregate", "is not a number"),
        ("incentives.0.s", "'incentives.<index>.params.<name>'"),
        ("episode_length", "cannot change 'episode_length' per instance"),
    ],
)
def test_bad_task_keys_are_errors_naming_the_key(key, message):
    tasks = TaskState(num_envs=2, env=SimpleNamespace(task_keys=("level",)))
    _plugin(RewardSharing, tasks)
    with pytest.raises(ValueError, match=message) as info:
        tasks.set({key: torch.zeros(2)})
    assert repr(key) in str(info.value)


def test_a_parameter_the_plugin_does_not_declare_cannot_vary_per_instance():
    tasks = TaskState(num_envs=2)
    _plugin(InequityAversion, tasks)
    with pytest.raises(ValueError, match="cannot change 'gamma' per instance; it accepts alpha, beta"):
        tasks.set({"incentives.0.params.gamma": torch.zeros(2)})


@pytest.mark.parametrize(
    ("field", "accepted"),
    [
        ("contracts.0.amount", True),
        ("contracts.12.amount", True),
        ("contracts.0.name", False),
        ("contracts.amount", False),  # `*` is one part of the path, never none
        ("contracts.0.payee.amount", False),  # ... and never two
        ("amount", False),
    ],
)
def test_task_params_patterns_match_part_by_part(field, accepted):
    assert accepts_task_param(Payments, field) is accepted
    assert accepts_task_param(RewardSharing, "s") and not accepts_task_param(RewardSharing, "aggregate")


def test_wrong_shapes_and_non_finite_values_are_errors():
    tasks = TaskState(num_envs=2)
    _plugin(RewardSharing, tasks)
    with pytest.raises(ValueError, match="leading dimension E = 2"):
        tasks.set({"incentives.0.params.s": torch.zeros(3)})
    with pytest.raises(ValueError, match="finite"):
        tasks.set({"incentives.0.params.s": torch.tensor([0.0, float("nan")])})


def test_env_keys_go_to_the_env():
    seen = {}
    env = SimpleNamespace(task_keys=("level",), set_task=seen.update)
    tasks = TaskState(num_envs=2, env=env)
    tasks.set({"level": torch.tensor([4, 5])})
    assert seen["level"].tolist() == [4, 5]
    assert tasks.pending == {}


def test_step_values_switch_after_each_instance_first_episode_end():
    done = torch.tensor([[0, 0, 1], [1, 0, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.bool)
    values = step_values(torch.tensor([7, 8, 9]), torch.tensor([1, 2, 3]), done)
    assert values.tolist() == [[7, 8, 9], [7, 8, 3], [1, 8, 3], [1, 8, 3]]


def test_episode_returns_by_hand():
    reward = torch.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 1.0], [7.0, 4.0]])
    done = torch.tensor([[0, 0], [1, 0], [0, 0], [1, 1]], dtype=torch.bool)
    returns, carried = episode_returns(reward, done, torch.tensor([10.0, 0.5]))
    # instance 0: 10 + 1 + 3 = 14 ends at t=1, then 5 + 7 = 12 at t=3; instance 1: 0.5+2+0+1+4
    assert returns.tolist() == [[0.0, 0.0], [14.0, 0.0], [0.0, 0.0], [12.0, 7.5]]
    assert carried.tolist() == [0.0, 0.0]
    returns, carried = episode_returns(reward[:3], done[:3], torch.tensor([10.0, 0.5]))
    assert returns[1].tolist() == [14.0, 0.0]
    assert carried.tolist() == [5.0, 3.5]


class HalfSharing:
    """A curriculum holding half the instances at s = 1 and half at s = 0; records the rollouts."""

    def __init__(self) -> None:
        self.rollouts = []

    @hookimpl
    def incentive_next_task(self, run):
        half = run.num_envs // 2
        return {"incentives.0.params.s": torch.tensor([1.0] * half + [0.0] * half)}

    @hookimpl
    def incentive_update_curriculum(self, rollout):
        self.rollouts.append(rollout)


def test_through_the_loop_each_instance_is_shaped_with_its_own_s(write_recipe):
    recipe = load_recipe(write_recipe(incentives=[{"plugin": "reward_sharing", "params": {"s": 0.5}}]))
    probe = HalfSharing()
    start_run(recipe, run_id="half", extra_plugins=[("half", probe)])
    for rollout in probe.rollouts:
        r = rollout.reward
        # s = 1 (instances 0-3): u_i = r_i + r_j; s = 0 (instances 4-7): u_i = r_i, from the first step on
        assert torch.equal(rollout.incentive[:, :4], r[:, :4] + r[:, :4].flip(-1))
        assert torch.equal(rollout.incentive[:, 4:], r[:, 4:])
