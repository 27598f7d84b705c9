"""The population: formulas against hand numbers, real snapshots, seats swapped only between episodes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from incentive import hookimpl
from incentive.envs.poker import poker_game
from incentive.loop import Training
from incentive.plugin_manager import make_plugin_manager
from incentive.population import (
    SnapshotPolicy,
    elo_update,
    matches_against_bot,
    pfsp_weights,
    play_matches,
    score,
    score_against_bot,
    win_rates,
)
from incentive.recipe import load_recipe
from incentive.types import LEARNER, EpisodeResults

# --- formulas ---------------------------------------------------------------------

KUHN_GAME = poker_game("kuhn_poker")


def test_win_rate_counts_draws_half():
    x = win_rates(torch.tensor([3.0, 0.0]), torch.tensor([2.0, 0.0]), torch.tensor([5.0, 0.0]))
    assert x[0].item() == pytest.approx(0.4)
    assert math.isnan(x[1].item())


@pytest.mark.parametrize(
    ("weighting", "expected"),
    [
        ("hard", [0.64 / 0.90, 0.25 / 0.90, 0.01 / 0.90]),
        ("variance", [0.16 / 0.50, 0.25 / 0.50, 0.09 / 0.50]),
        ("linear", [0.8 / 1.4, 0.5 / 1.4, 0.1 / 1.4]),
        ("linear_capped", [0.5 / 1.1, 0.5 / 1.1, 0.1 / 1.1]),
    ],
)
def test_pfsp_weights_match_hand_numbers(weighting, expected):
    weights = pfsp_weights(torch.tensor([0.2, 0.5, 0.9]), weighting, p=2.0)
    assert weights.tolist() == pytest.approx(expected)


def test_pfsp_hard_exponent_and_fallbacks():
    assert pfsp_weights(torch.tensor([0.5, 0.0]), "hard", p=1.0).tolist() == pytest.approx([1 / 3, 2 / 3])
    # no games yet: NaN counts as 0.5, so all equal -> uniform
    assert pfsp_weights(torch.tensor([math.nan, math.nan]), "hard").tolist() == [0.5, 0.5]
    # every f is zero (the learner always wins) -> uniform
    assert pfsp_weights(torch.tensor([1.0, 1.0, 1.0]), "hard").tolist() == pytest.approx([1 / 3] * 3)
    # an unplayed member counts as x = 0.5: f_var = 0.25 against 0.1 * 0.9 = 0.09
    assert pfsp_weights(torch.tensor([math.nan, 0.1]), "variance").tolist() == pytest.approx(
        [0.25 / 0.34, 0.09 / 0.34]
    )
    with pytest.raises(ValueError, match="unknown PFSP weighting"):
        pfsp_weights(torch.tensor([0.5]), "cubic")


def test_elo_update_matches_hand_numbers():
    # equal ratings, 7 of 10: d = 16 * (0.7 - 0.5) = 3.2
    learner, members = elo_update(
        1000.0, torch.tensor([1000.0]), torch.tensor([7.0]), torch.tensor([10.0]), k=16
    )
    assert learner == pytest.approx(1003.2)
    assert members.tolist() == pytest.approx([996.8])
    # a member rated 200 higher: E = 1 / (1 + 10 ** 0.5) = 0.240253; 5 of 10 -> d = 16 * 0.259747
    expected = 1 / (1 + 10**0.5)
    assert expected == pytest.approx(0.2402530733)
    learner, members = elo_update(
        1000.0, torch.tensor([1000.0, 1200.0]), torch.tensor([7.0, 5.0]), torch.tensor([10.0, 10.0]), k=16
    )
    d2 = 16 * (0.5 - expected)
    assert learner == pytest.approx(1000.0 + 3.2 + d2)
    assert members.tolist() == pytest.approx([996.8, 1200.0 - d2])


# --- runs ----------------------------------------------------------------------------


def _recipe(tmp_path: Path, env: dict, opponents: dict, **learner) -> Path:
    data = {
        "name": "pop",
        "seed": 1,
        "env": env,
        "learner": {"rollout_steps": 4, "epochs": 1, "minibatches": 2, "hidden_sizes": [16], **learner},
        "opponents": opponents,
        "objective": {"metric": "collective_return"},
        "train": {"total_steps": env["num_envs"] * 4 * 6, "checkpoint_every": 100},
        "log": {"dir": str(tmp_path / "runs"), "wandb": {"mode": "disabled"}},
    }
    path = tmp_path / "pop.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class _Recorder:
    """Test plugin: keeps every rollout's learn mask."""

    def __init__(self) -> None:
        self.masks: list[torch.Tensor] = []

    @hookimpl
    def incentive_collect_metrics(self, rollout):
        self.masks.append(rollout.learn_mask.clone())


def _training(tmp_path: Path, path: Path) -> tuple[Training, _Recorder]:
    recipe = load_recipe(path)
    pm = make_plugin_manager(recipe)
    recorder = _Recorder()
    pm.register(recorder, name="recorder")
    return Training(recipe, run_dir=tmp_path / "run", pm=pm), recorder


def test_seats_change_only_between_episodes_and_only_learner_seats_learn(tmp_path):
    # Connect Four games (7-42 moves) straddle 4-step rollouts; a snapshot every iteration with a cap of 2
    # forces evictions and slot reuse while evicted snapshots are still finishing their games.
    path = _recipe(
        tmp_path,
        {"id": "connect_four", "num_envs": 16},
        {
            "plugin": "fictitious_self_play",
            "params": {"snapshot_every": 1, "max_snapshots": 2, "keep_first": False, "bots": ["random"]},
        },
    )
    training, recorder = _training(tmp_path, path)
    steps: list[dict] = []
    real_step = training.env.step

    def step(actions):
        who = [
            ["learner" if s < 0 else id(training.policies[s]) for s in row] for row in training.seats.tolist()
        ]
        nxt = real_step(actions)
        steps.append({"who": who, "seats": training.seats.clone(), "done": nxt.done.clone(), "acting": None})
        return nxt

    training.env.step = step
    training.run()
    e = training.env.num_envs
    swaps_between = 0
    for t in range(1, len(steps)):
        for i in range(e):
            if steps[t]["who"][i] != steps[t - 1]["who"][i]:
                assert bool(steps[t - 1]["done"][i]), f"instance {i} changed policy mid-episode at step {t}"
                swaps_between += 1
    assert swaps_between > 0, "the test must see policies change (at episode boundaries)"
    evicted = training.hooks.pm.get_plugin("fictitious_self_play").population
    assert evicted.snapshots_taken >= 6 and sum(m.kind == "snapshot" for m in evicted.members) == 2

    # the learn mask holds exactly the learner's seats where it acted
    seats = torch.stack([s["seats"] for s in steps]).view(len(recorder.masks), -1, e, 2)
    masks = torch.stack(recorder.masks)
    assert not bool((masks & (seats != LEARNER)).any()), "an opponent seat produced training data"
    assert bool(masks.any())
    assert bool(((seats != LEARNER).any(-1)).all()), "every instance has an opponent (no mirror share)"


def test_snapshot_is_a_real_copy(tmp_path):
    path = _recipe(tmp_path, {"id": "kuhn_poker", "num_envs": 8}, {"plugin": "self_play"})
    training, _ = _training(tmp_path, path)
    learner = training.learner
    snap = SnapshotPolicy(learner, training.agents, seed=0)
    live = dict(learner.net.named_parameters())
    for name, tensor in snap.net.named_parameters():
        assert tensor.data_ptr() != live[name].data_ptr(), f"{name} shares storage with the learner"
    obs = {a: training.ts.obs[a] for a in training.agents}
    before = snap.probs(obs, training.ts.action_mask).clone()
    training.run()  # trains the learner
    changed = any(
        not torch.equal(p, q) for p, q in zip(learner.net.parameters(), snap.net.parameters(), strict=True)
    )
    assert changed, "the learner must have trained"
    assert torch.equal(snap.probs(obs, training.ts.action_mask), before)


def _untrained_ppo(obs_dim: int, actions: int):
    """A two-seat PPO learner with one small hidden layer, untrained."""
    from incentive.ppo import PPO
    from incentive.recipe import LearnerSpec

    return PPO(
        config=LearnerSpec(hidden_sizes=[8]),
        obs_dims=[obs_dim, obs_dim],
        action_dims=[actions, actions],
        generator=torch.Generator().manual_seed(0),
    )


def test_snapshot_acts_batched_only_where_it_plays():
    # one forward pass over the rows it plays; other entries stay 0
    from incentive.envs.kuhn_poker import KuhnPoker

    env = KuhnPoker(num_envs=6, params=KuhnPoker.Params())
    ppo = _untrained_ppo(11, 2)
    snap = SnapshotPolicy(ppo, env.possible_agents, seed=0)
    ts = env.reset(seed=0)
    calls = []
    real = snap.net.logits
    snap.net.logits = lambda f: (calls.append(f.shape[0]), real(f))[1]
    seats = torch.zeros(6, 2, dtype=torch.bool)
    seats[[1, 4], 0] = True
    seats[2, 1] = True
    actions = snap.act(ts.obs, ts.action_mask, seats)
    assert calls == [3]
    assert actions[[0, 3, 5]].eq(0).all()


def test_a_greedy_snapshot_plays_the_most_likely_legal_action():
    from incentive.envs.connect_four import ConnectFour

    env = ConnectFour(num_envs=4, params=ConnectFour.Params())
    ppo = _untrained_ppo(84, 7)
    ts = env.reset(seed=0)
    seats = torch.zeros(4, 2, dtype=torch.bool)
    seats[:, 0] = True
    greedy = SnapshotPolicy(ppo, env.possible_agents, seed=0, greedy=True)
    expected = greedy.probs(ts.obs, ts.action_mask)[:, 0].argmax(-1)
    for _ in range(3):  # the same action every time, whatever the stream
        assert torch.equal(greedy.act(ts.obs, ts.action_mask, seats)[:, 0], expected)
    sampled = SnapshotPolicy(ppo, env.possible_agents, seed=0)
    draws = torch.stack([sampled.act(ts.obs, ts.action_mask, seats)[:, 0] for _ in range(20)])
    assert len(draws.unique()) > 1  # an untrained policy sampled: not always the same column


def test_record_decays_counts_and_rates_learner_against_members(tmp_path):
    path = _recipe(
        tmp_path,
        {"id": "kuhn_poker", "num_envs": 4},
        {"plugin": "pfsp", "params": {"decay": 0.5, "bots": ["random"], "snapshot_at_start": True}},
    )
    training, _ = _training(tmp_path, path)
    plugin = training.hooks.pm.get_plugin("pfsp")
    plugin.incentive_setup(run=training.context)
    pop = plugin.population
    bot, snap = pop.members  # ids 0 (random), 1 (snapshot_1)
    ids = torch.tensor([[LEARNER, 0], [1, LEARNER], [LEARNER, 1], [LEARNER, 0]])
    assignment = pop.assign(ids)
    slots = assignment.seats
    results = EpisodeResults(
        returns=torch.tensor([[1.0, -1.0], [2.0, -2.0], [0.0, 0.0], [-1.0, 1.0], [LEARNER, LEARNER]])[:4],
        seats=slots,
    )
    counts = pop.record(results)
    # learner vs bot: a win (row 0) and a loss (row 3); vs snapshot: a loss (row 1), a draw (row 2)
    assert counts[bot.id].tolist() == [1.0, 0.0, 1.0]
    assert counts[snap.id].tolist() == [0.0, 1.0, 1.0]
    assert pop.win_rate().tolist() == pytest.approx([0.5, 0.25])
    pop.record(None)  # an iteration without games: counts halve, rates stay
    assert (bot.wins, bot.losses, snap.draws) == (0.5, 0.5, 0.5)
    assert pop.win_rate().tolist() == pytest.approx([0.5, 0.25])
    # the bot's rating is fixed; the snapshot's moved against the learner's
    assert bot.elo == 1000.0 and snap.elo > 1000.0 and pop.learner_elo < 1000.0


def test_play_matches_alternates_seats_and_scores_bots():
    from incentive.envs.connect_four import ConnectFour
    from incentive.population import make_bot_policy

    env = ConnectFour(num_envs=200, params=ConnectFour.Params())
    kw = {"env_id": "connect_four", "agents": env.possible_agents, "action_dims": [7, 7]}
    one_ply = make_bot_policy("one_ply", seed=1, **kw)
    rand = make_bot_policy("random", seed=2, **kw)
    result = play_matches(env, one_ply, rand, seed=0)
    assert result.shape == (200, 2)
    assert torch.equal(result[:, 0], -result[:, 1])  # zero-sum, one episode per instance
    assert score(result) > 0.8  # one-ply lookahead beats random play
    assert score(torch.tensor([[1.0, -1.0], [0.0, 0.0], [-1.0, 1.0], [0.0, 0.0]])) == pytest.approx(0.5)


# --- samplers through the loop ---------------------------------------------------------


def test_psro_meta_game_between_bots_puts_all_weight_on_the_dominant_one(tmp_path):
    # one_ply beats random (it takes wins and blocks losses): the Nash of the 2 x 2 meta-game is pure one_ply
    path = _recipe(
        tmp_path,
        {"id": "connect_four", "num_envs": 8},
        {
            "plugin": "psro",
            "params": {
                "meta_solver": "nash",
                "bots": ["random", "one_ply"],
                "snapshot_every": None,
                "meta_episodes": 64,
            },
        },
    )
    training, _ = _training(tmp_path, path)
    metrics = training.run()
    psro = training.hooks.pm.get_plugin("psro")
    m = psro.matrix
    assert torch.equal(m, -m.T)  # zero-sum: every game's returns cancel
    assert m[1, 0] > 0.5
    assert psro.sigma.tolist() == pytest.approx([0.0, 1.0], abs=1e-9)
    assert metrics["population/nash/one_ply"] == pytest.approx(1.0)
    assert metrics["population/nash/meta_exploitability"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["population/prob/random"] == pytest.approx(0.0, abs=1e-9)


def test_psro_grows_the_meta_game_and_solves_it_again(tmp_path):
    from incentive.meta_solvers import solve

    path = _recipe(
        tmp_path,
        {"id": "kuhn_poker", "num_envs": 16},
        {"plugin": "psro", "params": {"meta_solver": "prd", "snapshot_every": 2, "meta_episodes": 64}},
    )
    training, _ = _training(tmp_path, path)
    metrics = training.run()  # 6 iterations: snapshots at 0, 2, 4, 6
    psro = training.hooks.pm.get_plugin("psro")
    assert len(psro.ids) == 4 and psro.matrix.shape == (4, 4)
    assert torch.equal(psro.matrix, -psro.matrix.T)
    x, _ = solve(
        "projected_replicator_dynamics",
        psro.matrix.numpy(),
        psro.matrix.T.numpy(),
        gamma=1e-3,
        steps=5_000,
        dt=0.05,
        average_last=1000,
    )
    assert psro.sigma.tolist() == pytest.approx((x / x.sum()).tolist())
    assert sum(v for k, v in metrics.items() if k.startswith("population/nash/snapshot")) == pytest.approx(
        1.0
    )


@pytest.mark.parametrize("payoffs", ["auto", "sampled"])
def test_psro_poker_meta_game_is_exact_unless_sampled(tmp_path, payoffs):
    from incentive.exploitability import payoff_matrix

    path = _recipe(
        tmp_path,
        {"id": "kuhn_poker", "num_envs": 16},
        {"plugin": "psro", "params": {"snapshot_every": 2, "meta_episodes": 64, "payoffs": payoffs}},
    )
    training, _ = _training(tmp_path, path)
    training.run()  # snapshots at 0, 2, 4, 6
    psro = training.hooks.pm.get_plugin("psro")
    members = [m for i in psro.ids for m in psro.population.members if m.id == i]
    tables = torch.stack([psro.table(KUHN_GAME, m) for m in members])
    exact = payoff_matrix(KUHN_GAME, tables, tables)
    assert torch.equal(psro.matrix, -psro.matrix.T)
    if payoffs == "auto":  # Kuhn has an exact game model
        assert torch.allclose(psro.matrix, exact, atol=1e-12)
    else:  # 64 games per pair: close to the exact values, not equal
        assert not torch.allclose(psro.matrix, exact, atol=1e-6)
        assert float((psro.matrix - exact).abs().max()) < 1.0


def test_exploitability_designer_metrics_match_a_direct_computation(tmp_path):
    from incentive.exploitability import exploitability, mixture_exploitability, tabulate_seats

    path = _recipe(
        tmp_path,
        {"id": "kuhn_poker", "num_envs": 16},
        {"plugin": "fictitious_self_play", "params": {"snapshot_every": 2, "evaluate_every": 3}},
    )
    training, _ = _training(tmp_path, path)
    metrics = training.run()
    game = training.env.game
    learner = SnapshotPolicy(training.learner, training.agents, 0)
    assert metrics["designer/exploitability"] == pytest.approx(
        exploitability(game, tabulate_seats(game, learner.probs)), abs=1e-12
    )
    pop = training.hooks.pm.get_plugin("fictitious_self_play").population
    # snapshots 0, 2, 4 were in play at iteration 6 (the one taken after it was not)
    assert [m.created for m in pop.members] == [0, 2, 4, 6]
    tables = torch.stack([tabulate_seats(game, m.policy.probs) for m in pop.members[:3]])
    expected = mixture_exploitability(game, tables, torch.ones(len(tables)))
    assert metrics["designer/mixture_exploitability"] == pytest.approx(expected, abs=1e-12)
    lines = (training.run_dir / "metrics.jsonl").read_text().splitlines()
    reported = ["designer/exploitability" in line for line in lines]
    assert reported == [False, False, True, False, False, True]
    assert all("population/elo/learner" in line for line in lines)


def test_connect_four_win_rates_against_bots_as_designer_metrics(tmp_path):
    path = _recipe(
        tmp_path,
        {"id": "connect_four", "num_envs": 8},
        {
            "plugin": "self_play",
            "params": {"evaluate_every": 6, "eval_bots": ["random", "one_ply"], "eval_episodes": 32},
        },
    )
    data = yaml.safe_load(path.read_text())
    data["objective"] = {"metric": "win_rate/one_ply"}
    path.write_text(yaml.safe_dump(data))
    training, recorder = _training(tmp_path, path)
    metrics = training.run()
    assert 0.0 <= metrics["designer/win_rate/one_ply"] < metrics["designer/win_rate/random"] <= 1.0
    # self-play: both seats are the learner's and both learn
    masks = torch.stack(recorder.masks)  # [iterations, T, E, 2]
    assert masks.flatten(0, 2).any(0).tolist() == [True, True]
    assert metrics["population/mirror_share"] == 1.0


@pytest.mark.parametrize("policy", ["sampled", "greedy"])
def test_eval_policy_plays_the_evaluation_games_sampled_or_greedy(tmp_path, policy):
    params = {"eval_bots": ["random"], "eval_episodes": 16, "eval_policy": policy}
    path = _recipe(tmp_path, {"id": "connect_four", "num_envs": 8}, {"plugin": "self_play", "params": params})
    training, _ = _training(tmp_path, path)
    plugin = training.hooks.pm.get_plugin("self_play")
    plugin.incentive_setup(run=training.context)
    run = training.context
    seed = run.recipe.seed * 1_000_003 + run.iteration
    greedy = score_against_bot(run, "random", games=16, seed=seed, greedy=True)
    sampled = score_against_bot(run, "random", games=16, seed=seed, greedy=False)
    assert greedy != sampled  # the untrained learner: the two ways of playing differ on these games
    got = plugin.designer_values(run)["designer/win_rate/random"]
    assert got == (greedy if policy == "greedy" else sampled)


class _FirstBoards:
    """Wraps a policy and keeps the pieces on each board the first time it is asked to act."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.pieces: torch.Tensor | None = None

    def act(self, obs, action_mask, seats):
        if self.pieces is None:
            self.pieces = obs["player_0"].long().sum((1, 2, 3))
        return self.policy.act(obs, action_mask, seats)


def test_evaluation_games_start_from_the_empty_board_when_training_has_openings(tmp_path):
    env = {"id": "connect_four", "num_envs": 64, "params": {"random_opening": 6}}
    path = _recipe(tmp_path, env, {"plugin": "self_play", "params": {"eval_bots": ["random"]}})
    training, _ = _training(tmp_path, path)
    run = training.context
    training_boards = training.env.reset(seed=0).obs["player_0"].sum((1, 2, 3))
    assert int((training_boards > 0).sum()) > 32  # the training games have openings
    me = _FirstBoards(SnapshotPolicy(run.learner, run.agents, 0))
    result = matches_against_bot(run, "random", games=64, seed=3, policy=me)
    assert result.shape == (64, 2) and me.pieces.tolist() == [0] * 64


def test_pfsp_samples_opponents_by_its_weights(tmp_path):
    path = _recipe(
        tmp_path,
        {"id": "kuhn_poker", "num_envs": 4000},
        {"plugin": "pfsp", "params": {"bots": ["random"], "weighting": "linear", "self_play_share": 0.25}},
    )
    training, _ = _training(tmp_path, path)
    plugin = training.hooks.pm.get_plugin("pfsp")
    plugin.incentive_setup(run=training.context)
    bot, snap = plugin.population.members
    bot.wins, bot.losses = 9.0, 1.0  # x = 0.9 -> f = 0.1
    snap.wins, snap.losses = 3.0, 7.0  # x = 0.3 -> f = 0.7
    assignment = plugin.incentive_pick_opponents(run=training.context, iteration=1)
    seats = assignment.seats
    mirror = (seats == LEARNER).all(1).double().mean()
    assert float(mirror) == pytest.approx(0.25, abs=0.03)
    opponents = seats[seats != LEARNER]
    slot_of_snap = plugin.population.slots.index(snap.id)
    assert float((opponents == slot_of_snap).double().mean()) == pytest.approx(0.7 / 0.8, abs=0.03)
    assert bool(((seats != LEARNER).sum(1) <= 1).all())


def test_pfsp_bot_share_spreads_over_the_bots_by_hand_numbers(tmp_path):
    path = _recipe(
        tmp_path,
        {"id": "connect_four", "num_envs": 8},
        {
            "plugin": "pfsp",
            "params": {"bots": ["random", "one_ply"], "weighting": "linear", "bot_share": 0.2},
        },
    )
    training, _ = _training(tmp_path, path)
    plugin = training.hooks.pm.get_plugin("pfsp")
    plugin.incentive_setup(run=training.context)
    random_bot, one_ply, snap = plugin.population.members
    random_bot.wins, random_bot.losses = 9.0, 1.0  # x = 0.9 -> f = 0.1
    one_ply.wins, one_ply.losses = 5.0, 5.0  # x = 0.5 -> f = 0.5
    snap.wins, snap.losses = 6.0, 4.0  # x = 0.6 -> f = 0.4; PFSP alone: [0.1, 0.5, 0.4]
    _, probs = plugin.distribution(iteration=1)
    # 0.8 * PFSP + 0.2 spread over the two bots
    assert probs.tolist() == pytest.approx([0.08 + 0.1, 0.4 + 0.1, 0.32], abs=1e-12)
    plugin.params.bot_share = 0.0
    assert plugin.distribution(iteration=1)[1].tolist() == pytest.approx([0.1, 0.5, 0.4], abs=1e-12)


def test_a_curriculum_over_opponents_fixes_the_opponent_per_instance(tmp_path):
    # stage 0: everyone plays the random bot (id 0); stage 1 (after 2 iterations): one_ply (id 1)
    path = _recipe(
        tmp_path,
        {"id": "connect_four", "num_envs": 8},
        {"plugin": "pfsp", "params": {"bots": ["random", "one_ply"], "snapshot_every": 1}},
    )
    data = yaml.safe_load(path.read_text())
    data["curriculum"] = {
        "plugin": "schedule",
        "params": {
            "stages": [{"set": {"opponent": 0}, "advance": {"steps": 2 * 8 * 4}}, {"set": {"opponent": 1}}]
        },
    }
    path.write_text(yaml.safe_dump(data))
    training, _ = _training(tmp_path, path)
    used = []  # per iteration: the bots in the opponent seats, and whether each instance has one learner seat
    real_assign = training._assign

    def assign(plugin, assignment):
        real_assign(plugin, assignment)
        seats = assignment.seats
        bots = {assignment.policies[i].bot.name for i in seats[seats >= 0].unique().tolist()}
        used.append((bots, bool(((seats == LEARNER).sum(1) == 1).all())))

    training._assign = assign
    training.run()  # 6 iterations; the schedule moves to stage 1 after 64 env steps (2 iterations)
    assert [bots for bots, _ in used] == [{"random"}] * 2 + [{"one_ply"}] * 4
    assert all(one for _, one in used)  # one learner seat and one opponent seat in every instance

    bad = yaml.safe_load(path.read_text())
    bad["curriculum"]["params"]["stages"][0]["set"] = {"opponent": 7}
    path.write_text(yaml.safe_dump(bad))
    training, _ = _training(tmp_path, path)
    with pytest.raises(Exception, match=r"task 'opponent': member id\(s\) \[7\] are not in the population"):
        training.run()


def test_mixture_exploitability_weighs_members_as_the_sampler_does(tmp_path):
    from incentive.exploitability import mixture_exploitability, tabulate_seats, uniform_policy

    path = _recipe(
        tmp_path,
        {"id": "kuhn_poker", "num_envs": 16},
        {"plugin": "pfsp", "params": {"bots": ["random"], "snapshot_every": 100, "evaluate_every": 6}},
    )
    training, _ = _training(tmp_path, path)
    sampler = training.hooks.pm.get_plugin("pfsp")
    seen = []

    class Watch:  # the win rates when the metrics are collected (games are counted at iteration end)
        @hookimpl
        def incentive_collect_metrics(self):
            seen.append(pfsp_weights(sampler.population.win_rate(), "hard"))

    training.hooks.pm.register(Watch(), name="watch")
    metrics = training.run()
    bot, snap = sampler.population.members
    weights = seen[-1]
    assert torch.equal(weights, sampler.last_probs[1])
    assert weights.sum() == pytest.approx(1.0) and not torch.equal(weights, torch.full((2,), 0.5))
    game = training.env.game
    tables = torch.stack([uniform_policy(game), tabulate_seats(game, snap.policy.probs)])
    assert metrics["designer/mixture_exploitability"] == pytest.approx(
        mixture_exploitability(game, tables, weights), abs=1e-12
    )


@pytest.mark.parametrize(
    ("cap", "keep_first", "left"),
    [(3, True, [0, 3, 4]), (3, False, [2, 3, 4]), (1, True, [4])],
)
def test_eviction_drops_the_oldest_unprotected_snapshot(tmp_path, cap, keep_first, left):
    path = _recipe(
        tmp_path,
        {"id": "kuhn_poker", "num_envs": 4},
        {
            "plugin": "fictitious_self_play",
            "params": {"max_snapshots": cap, "keep_first": keep_first, "snapshot_at_start": False},
        },
    )
    training, _ = _training(tmp_path, path)
    plugin = training.hooks.pm.get_plugin("fictitious_self_play")
    plugin.incentive_setup(run=training.context)
    pop = plugin.population
    for iteration in range(5):
        pop.add_snapshot(iteration)
    assert [m.id for m in pop.members] == left
    assert sorted(m.id for m in pop.retired) == sorted(set(range(5)) - set(left))


def test_matrix_game_constant_bots_fill_their_seats(tmp_path):
    from incentive.population import env_bot_ids, make_bot_policy

    assert env_bot_ids("prisoners_dilemma") == ["random", "always_cooperate", "always_defect"]
    kw = {"env_id": "stag_hunt", "agents": ["a", "b"], "action_dims": [2, 2], "seed": 0}
    seats = torch.tensor([[True, False], [False, True]])
    assert make_bot_policy("always_defect", **kw).act({}, None, seats).tolist() == [[1, 1], [1, 1]]
    assert make_bot_policy("always_cooperate", **kw).act({}, None, seats).tolist() == [[0, 0], [0, 0]]
    # a learner against the defector only: no step is ever mutual cooperation
    path = _recipe(
        tmp_path,
        {"id": "prisoners_dilemma", "num_envs": 8, "params": {"episode_length": 4}},
        {"plugin": "fictitious_self_play", "params": {"snapshot_every": None, "bots": ["always_defect"]}},
    )
    training, _ = _training(tmp_path, path)
    metrics = training.run()
    assert metrics["designer/mutual_cooperation"] == 0.0
    assert metrics["population/prob/always_defect"] == 1.0
    assert 0.0 < metrics["designer/cooperation"] <= 0.5  # the learner's seat only
