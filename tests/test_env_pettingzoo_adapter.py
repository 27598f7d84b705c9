import importlib.util
import sys
import types

import gymnasium
import numpy as np
import pytest
import torch
from pettingzoo import ParallelEnv
from pydantic import ValidationError

from incentive.envs import load_env_class
from incentive.envs.pettingzoo_adapter import PettingZooAdapter

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HAS_MPE2 = importlib.util.find_spec("mpe2") is not None
needs_mpe2 = pytest.mark.skipif(not HAS_MPE2, reason="mpe2 is not installed")
# PettingZoo's classic board games import pygame (pygame-ce, which mpe2 installs, provides it)
HAS_PYGAME = importlib.util.find_spec("pygame") is not None
needs_pygame = pytest.mark.skipif(not HAS_PYGAME, reason="tictactoe_v3 needs pygame")

RPS = "pettingzoo.classic.rps_v2"
TTT = "pettingzoo.classic.tictactoe_v3"
ROCK, PAPER, SCISSORS = 0, 1, 2


def make(module, num_envs=1, **params):
    return PettingZooAdapter(num_envs=num_envs, params=PettingZooAdapter.Params(module=module, **params))


def rps_reward(a0, a1):
    """player_0's reward: paper beats rock, scissors beat paper, rock beats scissors."""
    if a0 == a1:
        return 0.0
    return 1.0 if (a0 - a1) % 3 == 1 else -1.0


# --- a tiny parallel env whose agents leave at different times ---------------------


class ShrinkingEnv(ParallelEnv):
    """Three agents; `b` terminates after 2 steps, `a` and `c` are truncated after 4.

    Every live agent earns (its action + 1) per step. Observation: the step count.
    `a` has an info action mask that allows only action 1 on even steps.
    """

    metadata = {"name": "shrinking_v0"}
    render_mode = None

    def __init__(self):
        self.possible_agents = ["a", "b", "c"]
        self.agents = []

    def observation_space(self, agent):
        return gymnasium.spaces.Box(0.0, 10.0, (1,), dtype=np.float32)

    def action_space(self, agent):
        return gymnasium.spaces.Discrete(2)

    def _infos(self):
        infos = {agent: {} for agent in self.agents}
        if "a" in self.agents:
            infos["a"]["action_mask"] = np.array([self.t % 2, 1], dtype=np.int8)
        return infos

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.t = 0
        return {a: np.array([0.0], dtype=np.float32) for a in self.agents}, self._infos()

    def step(self, actions):
        self.t += 1
        obs = {a: np.array([self.t], dtype=np.float32) for a in self.agents}
        rewards = {a: float(actions[a] + 1) for a in self.agents}
        terminations = {a: a == "b" and self.t >= 2 for a in self.agents}
        truncations = {a: a != "b" and self.t >= 4 for a in self.agents}
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        infos = {a: {} for a in obs}
        infos.update(self._infos())
        return obs, rewards, terminations, truncations, infos


class ContinuousEnv(ShrinkingEnv):
    def action_space(self, agent):
        return gymnasium.spaces.Box(-1.0, 1.0, (2,))


@pytest.fixture
def fake_module(monkeypatch):
    """Modules that provide envs as PettingZoo's do: `fake_pz_shrinking`, `fake_pz_continuous`,
    and `fake_pz_not_an_env`, whose `env()` builds something else."""
    for name, attribute, build in [
        ("fake_pz_shrinking", "parallel_env", ShrinkingEnv),
        ("fake_pz_continuous", "parallel_env", ContinuousEnv),
        ("fake_pz_not_an_env", "env", lambda: object()),
    ]:
        module = types.ModuleType(name)
        setattr(module, attribute, build)
        monkeypatch.setitem(sys.modules, name, module)


# --- params and bad input ------------------------------------------------------


def test_registered():
    assert load_env_class("pettingzoo") is PettingZooAdapter


def test_params_validate():
    with pytest.raises(ValidationError, match="module"):
        PettingZooAdapter.Params()
    with pytest.raises(ValidationError, match="api"):
        PettingZooAdapter.Params(module=RPS, api="turns")
    with pytest.raises(ValidationError, match="colour"):
        PettingZooAdapter.Params(module=RPS, colour="red")


@pytest.mark.parametrize("module", ["os:system", "pettingzoo.classic.rps_v2:env", "a/b", "a..b", "", ".rps"])
def test_params_take_a_module_path_only(module):
    # `module:callable` would let a recipe call any function (`os:system` ran a shell command)
    with pytest.raises(ValidationError, match="module"):
        PettingZooAdapter.Params(module=module)


@pytest.mark.parametrize(
    ("module", "kwargs", "message"),
    [
        ("no_such_package.envs_v1", {}, "does not import: ModuleNotFoundError"),
        ("json", {}, "is not a PettingZoo env module"),
        ("os", {}, "is not a PettingZoo env module"),
        ("fake_pz_not_an_env", {}, "its env() built a builtins.object, not a pettingzoo"),
        (RPS, {"num_actionz": 3}, "building the env with kwargs"),
        ("fake_pz_continuous", {}, "agent 'a' has action space Box"),
    ],
)
def test_bad_input_is_a_one_line_value_error(fake_module, module, kwargs, message):
    with pytest.raises(ValueError, match=f"^module '{module}'") as info:
        make(module, kwargs=kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@needs_mpe2
def test_continuous_mpe_is_refused_with_the_agent_and_space():
    with pytest.raises(ValueError, match="agent 'agent_0' has action space Box") as info:
        make("mpe2.simple_spread_v3", kwargs={"continuous_actions": True})
    assert "continuous_actions" in str(info.value)


# --- parallel: rock paper scissors ------------------------------------------------


def test_rps_parallel_rewards_observations_and_truncation():
    num_envs, steps, cycles = 4, 60, 15
    env = make(RPS, num_envs=num_envs)
    assert env.is_parallel
    assert env.possible_agents == ["player_0", "player_1"]
    assert env.observation_spaces["player_0"].shape == (4,)
    assert env.action_spaces["player_1"].n == 3
    ts = env.reset(seed=0)
    assert ts.acting.all() and ts.action_mask is None
    assert ts.obs["player_0"].tolist() == [[0.0, 0.0, 0.0, 1.0]] * num_envs  # "no move yet"

    # hand-checked: rock vs scissors, scissors vs rock, paper vs rock, a draw
    ts = env.step(torch.tensor([[ROCK, SCISSORS], [SCISSORS, ROCK], [PAPER, ROCK], [PAPER, PAPER]]))
    assert ts.reward.tolist() == [[1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [0.0, 0.0]]
    # each player observes the opponent's last move
    assert ts.obs["player_0"][0].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert ts.obs["player_1"][0].tolist() == [1.0, 0.0, 0.0, 0.0]

    gen = torch.Generator().manual_seed(0)
    for t in range(1, steps):
        actions = torch.randint(0, 3, (num_envs, 2), generator=gen)
        ts = env.step(actions)
        expected = [[rps_reward(a, b), rps_reward(b, a)] for a, b in actions.tolist()]
        assert ts.reward.tolist() == expected
        assert ts.acting.all()
        ending = (t + 1) % cycles == 0
        assert ts.truncated.tolist() == [ending] * num_envs
        assert not ts.terminated.any()
        assert (ts.final_obs is not None) == ending
        if ending:  # reset: fresh "no move yet" obs; final_obs has the last moves
            assert ts.obs["player_0"].tolist() == [[0.0, 0.0, 0.0, 1.0]] * num_envs
            last = torch.nn.functional.one_hot(actions[:, 1], 4).float()
            assert torch.equal(ts.final_obs["player_0"], last)
        else:
            assert torch.equal(ts.obs["player_0"], torch.nn.functional.one_hot(actions[:, 1], 4).float())


def test_rps_as_aec_pays_each_round_once_when_the_second_player_moves():
    env = make(RPS, num_envs=2, api="aec")
    assert not env.is_parallel
    ts = env.reset(seed=0)
    assert ts.acting.tolist() == [[True, False]] * 2
    ts = env.step(torch.tensor([[ROCK, 0], [PAPER, 0]]))  # player_0 moves
    assert ts.reward.tolist() == [[0.0, 0.0]] * 2
    assert ts.acting.tolist() == [[False, True]] * 2
    ts = env.step(torch.tensor([[0, SCISSORS], [0, SCISSORS]]))  # player_1 moves
    assert ts.reward.tolist() == [[1.0, -1.0], [-1.0, 1.0]]
    # many rounds: per-round rewards equal the parallel env's, none lost or doubled
    gen = torch.Generator().manual_seed(1)
    total = torch.zeros(2, 2)
    expected = torch.zeros(2, 2)
    for _ in range(40):
        moves = torch.randint(0, 3, (2, 2), generator=gen)
        total += env.step(torch.stack([moves[:, 0], moves[:, 0]], 1)).reward
        total += env.step(torch.stack([moves[:, 1], moves[:, 1]], 1)).reward
        expected += torch.tensor([[rps_reward(a, b), rps_reward(b, a)] for a, b in moves.tolist()])
    assert torch.equal(total, expected)


# --- AEC: tic-tac-toe -------------------------------------------------------------


def play(env, moves):
    """Play squares in turn (the same move in every instance); return the time steps."""
    steps = []
    for square in moves:
        steps.append(env.step(torch.full((env.num_envs, 2), square)))
    return steps


@needs_pygame
def test_tictactoe_acting_and_masks():
    env = make(TTT, num_envs=3)
    assert env.possible_agents == ["player_1", "player_2"]
    assert env.observation_spaces["player_1"].shape == (18,)  # the mask is not in the obs
    ts = env.reset(seed=0)
    assert ts.acting.tolist() == [[True, False]] * 3
    assert ts.action_mask["player_1"].all()
    ts = env.step(torch.tensor([[4, 0], [0, 0], [8, 0]]))
    assert ts.acting.tolist() == [[False, True]] * 3
    assert (ts.acting.sum(1) == 1).all()
    legal = ts.action_mask["player_2"]
    assert legal.sum(1).tolist() == [8, 8, 8]
    assert not legal[0, 4] and not legal[1, 0] and not legal[2, 8]
    assert ts.action_mask["player_1"].all()  # not acting next: all True, never all False
    ts = env.step(torch.tensor([[0, 0], [0, 4], [0, 0]]))
    assert ts.action_mask["player_1"].sum(1).tolist() == [7, 7, 7]
    assert not ts.action_mask["player_1"][0, 4] and not ts.action_mask["player_1"][0, 0]


@needs_pygame
def test_tictactoe_win_pays_winner_and_loser_exactly_once():
    env = make(TTT, num_envs=2)
    env.reset(seed=0)
    # player_1 takes 0, 1, 2 (a line); player_2 takes 3, 4
    steps = play(env, [0, 3, 1, 4, 2])
    for ts in steps[:-1]:
        assert not ts.reward.any() and not ts.done.any()
    last = steps[-1]
    assert last.reward.tolist() == [[1.0, -1.0]] * 2  # the loser's -1 comes as the winner moves
    assert last.terminated.all() and not last.truncated.any()
    # final_obs: player_1's own marks on 0, 1, 2 (channel 0 of the 3x3x2 board)
    board = last.final_obs["player_1"][0].view(3, 3, 2)
    assert board[..., 0].flatten().nonzero().flatten().tolist() == [0, 1, 2]
    # automatic reset: empty board, player_1 to move, every square legal
    assert not last.obs["player_1"].any() and not last.obs["player_2"].any()
    assert last.acting.tolist() == [[True, False]] * 2
    assert last.action_mask["player_1"].all()
    # the next game pays nothing until it ends
    total = sum(ts.reward for ts in steps) + sum(ts.reward for ts in play(env, [4, 0]))
    assert total.tolist() == [[1.0, -1.0]] * 2


@needs_pygame
def test_tictactoe_player_2_wins_and_draws():
    env = make(TTT, num_envs=1)
    env.reset(seed=0)
    steps = play(env, [0, 3, 1, 4, 8, 5])  # player_2 completes 3, 4, 5
    assert sum(ts.reward for ts in steps).tolist() == [[-1.0, 1.0]]
    assert steps[-1].reward.tolist() == [[-1.0, 1.0]] and steps[-1].done.all()
    steps = play(env, [0, 1, 2, 4, 3, 5, 7, 6, 8])  # a draw: board full, no line
    assert steps[-1].terminated.all()
    assert not any(ts.reward.any() for ts in steps)


@needs_pygame
def test_tictactoe_random_masked_play(caplog):
    num_envs = 4
    env = make(TTT, num_envs=num_envs)
    ts = env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    returns = torch.zeros(num_envs, 2)
    games = 0
    for _ in range(300):
        mover = ts.acting.float().argmax(1)
        masks = torch.stack([ts.action_mask[a] for a in env.possible_agents], 1)
        legal = masks[torch.arange(num_envs), mover].float()
        move = torch.multinomial(legal, 1, generator=gen)[:, 0]
        assert (ts.acting.sum(1) == 1).all()
        ts = env.step(torch.stack([move, move], 1))
        returns += ts.reward
        for e in ts.done.nonzero().flatten().tolist():
            assert returns[e].tolist() in ([1.0, -1.0], [-1.0, 1.0], [0.0, 0.0])
            returns[e] = 0
            games += 1
    assert games > 30
    assert "Illegal move" not in caplog.text  # the masks were right


@needs_pygame
def test_tictactoe_illegal_move_ends_the_game_with_a_penalty(caplog):
    env = make(TTT, num_envs=1)
    env.reset(seed=0)
    env.step(torch.tensor([[4, 0]]))
    ts = env.step(torch.tensor([[0, 4]]))  # player_2 plays the taken square
    assert "Illegal move" in caplog.text
    assert ts.reward.tolist() == [[0.0, -1.0]]
    assert ts.done.all()


# --- agents leaving early, info masks, parallel vs AEC --------------------------------


def test_agents_that_leave_get_nothing_until_reset(fake_module):
    env = make("fake_pz_shrinking", num_envs=2)
    ts = env.reset(seed=0)
    assert ts.action_mask is not None
    assert ts.action_mask["a"].tolist() == [[False, True]] * 2  # step 0: even
    assert ts.action_mask["b"].all()
    ones = torch.ones(2, 3, dtype=torch.long)
    ts = env.step(ones)
    assert ts.action_mask["a"].tolist() == [[True, True]] * 2
    ts = env.step(ones)  # b terminates on this step: it is paid and sees its last obs
    assert ts.reward.tolist() == [[2.0, 2.0, 2.0]] * 2
    assert ts.obs["b"].tolist() == [[2.0]] * 2
    assert ts.acting.tolist() == [[True, False, True]] * 2
    assert not ts.done.any()
    ts = env.step(ones)  # b is gone: zero reward, zero obs, not acting
    assert ts.reward.tolist() == [[2.0, 0.0, 2.0]] * 2
    assert ts.obs["b"].tolist() == [[0.0]] * 2 and ts.obs["a"].tolist() == [[3.0]] * 2
    ts = env.step(ones)  # a and c truncated: the instance resets
    assert ts.truncated.all() and not ts.terminated.any()
    assert ts.final_obs["a"].tolist() == [[4.0]] * 2
    assert ts.obs["a"].tolist() == [[0.0]] * 2 and ts.acting.all()


def test_parallel_env_driven_as_aec_pays_the_same(fake_module):
    parallel = make("fake_pz_shrinking", num_envs=1)
    aec = make("fake_pz_shrinking", num_envs=1, api="aec")
    parallel.reset(seed=0)
    aec.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):  # three episodes
        for _ in range(4):
            actions = torch.randint(0, 2, (1, 3), generator=gen)
            want = parallel.step(actions).reward
            got = torch.zeros(1, 3)
            movers = []
            while True:  # one AEC step per live agent
                ts = aec.step(actions)
                got += ts.reward
                movers.append(ts.acting.nonzero()[:, 1].tolist())
                if ts.done.any() or (ts.acting[0].nonzero()[0, 0] == 0 and len(movers) > 1):
                    break
            assert torch.equal(got, want)


# --- seeding, checkpoints, MPE ------------------------------------------------------


@needs_mpe2
def test_simple_spread_shapes_and_truncation():
    env = make("mpe2.simple_spread_v3", num_envs=2, kwargs={"continuous_actions": False})
    assert env.possible_agents == ["agent_0", "agent_1", "agent_2"]
    assert all(s.shape == (18,) and s.dtype == np.float32 for s in env.observation_spaces.values())
    assert all(s.n == 5 for s in env.action_spaces.values())
    ts = env.reset(seed=0)
    assert ts.obs["agent_0"].shape == (2, 18) and ts.obs["agent_0"].dtype == torch.float32
    assert ts.reward.shape == (2, 3) and ts.acting.all()
    for t in range(25):
        ts = env.step(torch.randint(0, 5, (2, 3)))
        assert ts.done.tolist() == [t == 24] * 2
    assert ts.truncated.all() and ts.final_obs["agent_2"].shape == (2, 18)


@needs_mpe2
def test_heterogeneous_agents_keep_their_spaces():
    env = make("mpe2.simple_speaker_listener_v4", num_envs=2, kwargs={"continuous_actions": False})
    obs_sizes = {a: s.shape[0] for a, s in env.observation_spaces.items()}
    actions = {a: s.n for a, s in env.action_spaces.items()}
    assert obs_sizes == {"speaker_0": 3, "listener_0": 11}
    assert actions == {"speaker_0": 3, "listener_0": 5}
    ts = env.reset(seed=0)
    assert ts.obs["speaker_0"].shape == (2, 3) and ts.obs["listener_0"].shape == (2, 11)
    ts = env.step(torch.tensor([[2, 4], [0, 1]]))
    assert ts.reward.shape == (2, 2)


@needs_mpe2
def test_instance_e_is_seeded_with_seed_plus_e():
    batched = make("mpe2.simple_spread_v3", num_envs=3, kwargs={"continuous_actions": False})
    singles = [make("mpe2.simple_spread_v3", kwargs={"continuous_actions": False}) for _ in range(3)]
    gen = torch.Generator().manual_seed(0)
    actions = torch.randint(0, 5, (30, 3, 3), generator=gen)
    ts = batched.reset(seed=7)
    ones = [s.reset(seed=7 + e) for e, s in enumerate(singles)]
    for t in range(30):  # crosses an automatic reset at step 25
        for e, one in enumerate(ones):
            assert torch.equal(ts.obs["agent_1"][e : e + 1], one.obs["agent_1"])
        ts = batched.step(actions[t])
        ones = [s.step(actions[t, e : e + 1]) for e, s in enumerate(singles)]
        for e, one in enumerate(ones):
            assert torch.equal(ts.reward[e : e + 1], one.reward)
    assert not torch.equal(ts.obs["agent_0"][0], ts.obs["agent_0"][1])
    again = batched.reset(seed=7)
    assert torch.equal(again.obs["agent_0"], batched.reset(seed=7).obs["agent_0"])


@needs_pygame
def test_state_dict_round_trip():
    env = make(TTT, num_envs=2)
    env.reset(seed=0)
    play(env, [4, 0])
    state = env.state_dict()
    first = play(env, [1, 8, 7])
    other = make(TTT, num_envs=2)
    other.reset(seed=3)
    other.load_state_dict(state)
    second = play(other, [1, 8, 7])
    assert second[-1].reward.tolist() == [[1.0, -1.0]] * 2  # 1, 4, 7 is a line
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.reward, b.reward) and torch.equal(a.acting, b.acting)
        assert torch.equal(a.obs["player_2"], b.obs["player_2"])


@needs_mpe2
def test_state_dict_keeps_the_random_state_mid_episode():
    kwargs = {"continuous_actions": False}
    env = make("mpe2.simple_spread_v3", num_envs=2, kwargs=kwargs)
    env.reset(seed=1)
    gen = torch.Generator().manual_seed(0)
    actions = torch.randint(0, 5, (40, 2, 3), generator=gen)
    for t in range(10):
        env.step(actions[t])
    state = env.state_dict()
    first = [env.step(actions[t]) for t in range(10, 40)]  # crosses a reset (random start)
    other = make("mpe2.simple_spread_v3", num_envs=2, kwargs=kwargs)
    other.reset(seed=9)
    other.load_state_dict(state)
    for t, ts in zip(range(10, 40), first, strict=True):
        again = other.step(actions[t])
        assert torch.equal(ts.reward, again.reward)
        assert torch.equal(ts.obs["agent_0"], again.obs["agent_0"])


def test_step_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="before reset"):
        make(RPS).step(torch.zeros(1, 2, dtype=torch.long))
