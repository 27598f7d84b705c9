"""The league sampler: AlphaStar's matchmaking against hand-computed numbers, snapshots, resets, training."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import yaml

from incentive.errors import IncentiveError
from incentive.league import (
    LeagueLearners,
    Payoffs,
    TrainedOpponent,
    league_exploiter_probs,
    main_exploiter_probs,
    main_probs,
    remove_monotonic_suffix,
)
from incentive.loop import Training
from incentive.plugin_manager import make_plugin_manager
from incentive.recipe import load_recipe
from incentive.types import LEARNER, EpisodeResults

NAN = math.nan


def test_remove_monotonic_suffix_keeps_up_to_the_last_rise():
    assert remove_monotonic_suffix(torch.tensor([0.9, 0.8, 0.6])) == 0  # never rises: nothing forgotten
    assert remove_monotonic_suffix(torch.tensor([0.9, 0.5, 0.8, 0.6])) == 3  # rises at index 2
    assert remove_monotonic_suffix(torch.tensor([0.2, 0.3])) == 2
    assert remove_monotonic_suffix(torch.tensor([0.4])) == 0
    assert remove_monotonic_suffix(torch.tensor([])) == 0


def test_payoffs_decay_mirror_and_count_draws_half():
    p = Payoffs()
    p.add(-1, 3, 2.0, 1.0, 1.0)
    assert p.win_rate(-1, [3, 4]).tolist()[0] == pytest.approx(2.5 / 4)
    assert math.isnan(p.win_rate(-1, [3, 4]).tolist()[1])
    assert p.win_rate(3, [-1]).tolist() == pytest.approx([1.5 / 4])
    p.decay(0.5)
    p.add(-1, 3, 0.0, 0.0, 2.0)  # counts (1, 0.5, 0.5) + (0, 0, 2): (1 + 0.25) / 4
    assert p.win_rate(-1, [3]).tolist() == pytest.approx([1.25 / 4])
    q = Payoffs()
    q.load_state_dict(p.state_dict())
    assert q.counts == p.counts


def test_main_agent_distribution_matches_hand_numbers():
    # members: bot, main@0, main@10, main_exploiter_0@10, live exploiter (not historical)
    x = torch.tensor([0.8, 0.5, NAN, 0.6, NAN], dtype=torch.float64)
    historical = torch.tensor([True, True, True, True, False])
    exploiter_snaps = torch.tensor([False, False, False, True, False])
    # PFSP hard (1 - x)^2 over historical: 0.04, 0.25, 0.25 (NaN -> 0.5), 0.16; sum 0.70
    # verification: min over exploiter snapshots 0.6 >= 0.3 -> forgetting check on own snapshots [1, 2]:
    # rates 0.5, 0.5 (NaN) never rise -> nothing kept -> self-play gets the 0.15 too
    mirror, probs = main_probs(
        x,
        historical=historical,
        exploiter_snapshots=exploiter_snaps,
        own_snapshots=[1, 2],
        pfsp_share=0.5,
        verification_share=0.15,
    )
    assert mirror == pytest.approx(0.35 + 0.15)
    expected = [0.5 * 0.04 / 0.7, 0.5 * 0.25 / 0.7, 0.5 * 0.25 / 0.7, 0.5 * 0.16 / 0.7, 0.0]
    assert probs.tolist() == pytest.approx(expected)
    assert mirror + float(probs.sum()) == pytest.approx(1.0)


def test_main_agent_verifies_against_an_exploiter_it_cannot_beat():
    x = torch.tensor([0.5, 0.2], dtype=torch.float64)  # main@0, main_exploiter_0@10 (beaten 20% < 30%)
    mirror, probs = main_probs(
        x,
        historical=torch.tensor([True, True]),
        exploiter_snapshots=torch.tensor([False, True]),
        own_snapshots=[0],
        pfsp_share=0.5,
        verification_share=0.15,
    )
    # PFSP: 0.25, 0.64 over 0.89; verification: all 0.15 on the exploiter snapshot; self-play 0.35
    assert mirror == pytest.approx(0.35)
    assert probs.tolist() == pytest.approx([0.5 * 0.25 / 0.89, 0.5 * 0.64 / 0.89 + 0.15])


def test_main_agent_replays_a_forgotten_snapshot():
    x = torch.tensor([0.9, 0.4, 0.6], dtype=torch.float64)  # main@0, main@10, main@20; rises at 20
    mirror, probs = main_probs(
        x,
        historical=torch.tensor([True, True, True]),
        exploiter_snapshots=torch.tensor([False, False, False]),
        own_snapshots=[0, 1, 2],
        pfsp_share=0.5,
        verification_share=0.15,
    )
    # kept: all three (the last rise is at index 2); min 0.4 < 0.7 -> PFSP hard over them again
    weights = torch.tensor([0.01, 0.36, 0.16]) / 0.53
    assert mirror == pytest.approx(0.35)
    assert probs.tolist() == pytest.approx((weights * (0.5 + 0.15)).tolist())


def test_main_agent_without_history_plays_itself():
    mirror, probs = main_probs(
        torch.tensor([NAN], dtype=torch.float64),
        historical=torch.tensor([False]),
        exploiter_snapshots=torch.tensor([False]),
        own_snapshots=[],
        pfsp_share=0.5,
        verification_share=0.15,
    )
    assert mirror == pytest.approx(1.0) and probs.tolist() == [0.0]


def test_exploiter_distributions_match_hand_numbers():
    main_snaps = torch.tensor([True, True, False])
    x = torch.tensor([0.5, 0.9, 0.3], dtype=torch.float64)
    assert main_exploiter_probs(0.4, x, main_snapshots=main_snaps)[0] == 1.0  # wins 40% > 10%: the main
    assert main_exploiter_probs(NAN, x, main_snapshots=main_snaps)[0] == 1.0  # no games: prior 0.5
    p_main, probs = main_exploiter_probs(0.05, x, main_snapshots=main_snaps)
    # variance x (1 - x): 0.25, 0.09 over the main's snapshots only
    assert p_main == 0.0 and probs.tolist() == pytest.approx([0.25 / 0.34, 0.09 / 0.34, 0.0])
    # league exploiter: linear_capped min(0.5, 1 - x): 0.5, 0.1, 0.5 over the historical ones
    p_main, probs = league_exploiter_probs(x, historical=torch.tensor([True, True, True]))
    assert p_main == 0.0 and probs.tolist() == pytest.approx([0.5 / 1.1, 0.1 / 1.1, 0.5 / 1.1])
    assert league_exploiter_probs(x, historical=torch.tensor([False, False, False]))[0] == 1.0


# --- through the loop ------------------------------------------------------------------


def _training(tmp_path: Path, iterations: int = 6, **params) -> Training:
    data = {
        "name": "league",
        "seed": 2,
        "env": {"id": "kuhn_poker", "num_envs": 32},
        "learner": {"rollout_steps": 8, "epochs": 1, "minibatches": 2, "hidden_sizes": [16]},
        "opponents": {"plugin": "league", "params": params},
        "objective": {"metric": "collective_return"},
        "train": {"total_steps": 32 * 8 * iterations, "checkpoint_every": 100},
        "log": {"dir": str(tmp_path / "runs"), "wandb": {"mode": "disabled"}},
    }
    path = tmp_path / "league.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    return Training(recipe, run_dir=tmp_path / "run", pm=make_plugin_manager(recipe))


def test_instances_split_between_learners_and_exploiters_have_no_learner_seat(tmp_path):
    training = _training(tmp_path, main_share=0.5)
    league = training.hooks.pm.get_plugin("league")
    league.incentive_setup(run=training.context)
    assert league.trainee.tolist() == [0] * 16 + [1, 2] * 8
    names = [m.name for m in league.population.members]
    assert names == ["main@0", "main", "main_exploiter_0", "league_exploiter_0"]
    assignment = league.incentive_pick_opponents(run=training.context, iteration=1)
    seats = assignment.seats
    learner_seats = (seats == LEARNER).sum(1)
    assert bool((learner_seats[:16] >= 1).all()) and bool((learner_seats[16:] == 0).all())
    by_slot = {i: league.population.member(m).name for i, m in enumerate(league.population.slots)}
    for row in range(16, 32):
        who = sorted(by_slot[int(s)] for s in seats[row])
        trainee = "main_exploiter_0" if row % 2 == 0 else "league_exploiter_0"
        assert trainee in who
    # main exploiters play the current main (its live copy) first; league exploiters: the history (main@0)
    assert all(
        sorted(by_slot[int(s)] for s in seats[row]) == ["main", "main_exploiter_0"]
        for row in range(16, 32, 2)
    )
    assert all(
        sorted(by_slot[int(s)] for s in seats[row]) == ["league_exploiter_0", "main@0"]
        for row in range(17, 32, 2)
    )


def test_exploiters_train_snapshot_and_reset_by_the_rules(tmp_path):
    training = _training(
        tmp_path, checkpoint_min_iterations=2, checkpoint_max_iterations=3, league_reset_prob=1.0
    )
    league = training.hooks.pm.get_plugin("league")
    training.run()
    names = [m.name for m in league.population.members]
    # win rates near 0.5 never reach 0.7: every player is snapshotted at the max, iteration 3 and 6
    for player in ("main", "main_exploiter_0", "league_exploiter_0"):
        assert f"{player}@3" in names and f"{player}@6" in names
    # both exploiters were reset at iteration 6 (league_reset_prob 1): their weights are the initial ones
    for exploiter in league.exploiters.values():
        for key, value in exploiter.net.state_dict().items():
            assert torch.equal(value, exploiter.initial["net"][key])
    # ... and they had trained: their snapshot at 6 differs from the initial weights
    snap = next(m for m in league.population.members if m.name == "main_exploiter_0@6")
    initial = league.exploiters["main_exploiter_0"].initial["net"]
    assert any(not torch.equal(v, initial[k]) for k, v in snap.policy.net.state_dict().items())
    # the main's live copy is the learner as of the last pick (refreshed at each pick)
    copy = next(m for m in league.population.members if m.name == "main")
    learner = training.learner.net.state_dict()
    assert not all(torch.equal(v, learner[k]) for k, v in copy.policy.net.state_dict().items())  # last update
    league.incentive_pick_opponents(run=training.context, iteration=7)
    assert all(torch.equal(v, learner[k]) for k, v in copy.policy.net.state_dict().items())


def test_payoffs_count_every_pair_and_the_main_copy_as_the_main(tmp_path):
    training = _training(tmp_path)
    league = training.hooks.pm.get_plugin("league")
    league.incentive_setup(run=training.context)
    league.incentive_pick_opponents(run=training.context, iteration=1)
    pop = league.population
    slot = {pop.member(m).name: i for i, m in enumerate(pop.slots)}
    seats = torch.tensor(
        [
            [LEARNER, slot["main@0"]],  # main beats main@0
            [slot["main"], slot["main_exploiter_0"]],  # the main (copy) loses to its exploiter
            [slot["league_exploiter_0"], slot["main@0"]],  # a draw
            [LEARNER, LEARNER],  # a mirror game: no payoff
        ]
    )
    returns = torch.tensor([[1.0, -1.0], [-2.0, 2.0], [0.0, 0.0], [1.0, -1.0]])
    league.record_games(EpisodeResults(returns=returns, seats=seats))
    ids = {m.name: m.id for m in pop.members}
    assert league.payoffs.win_rate(LEARNER, [ids["main@0"], ids["main_exploiter_0"]]).tolist() == [1.0, 0.0]
    assert league.payoffs.win_rate(ids["league_exploiter_0"], [ids["main@0"]]).tolist() == [0.5]
    assert (LEARNER, LEARNER) not in league.payoffs.counts
    assert league.extra_metrics() == {"population/league/main_exploiter_0/win_rate_main": 1.0}


def test_pooled_win_rate_sums_the_counts_of_every_opponent():
    p = Payoffs()
    p.add(7, 1, 3.0, 0.0, 1.0)
    p.add(7, 2, 0.0, 2.0, 4.0)
    # (3 + 0.5 * 2) / (4 + 6), not the mean of 0.75 and 1/6
    assert p.pooled_win_rate(7, [1, 2, 3]) == pytest.approx(4.0 / 10.0)
    assert math.isnan(p.pooled_win_rate(7, [3]))


# --- several main agents -----------------------------------------------------------------


def test_a_second_main_agent_and_a_main_exploiter_draw_by_hand_computed_rows(tmp_path):
    training = _training(tmp_path, main_agents=2)
    league = training.hooks.pm.get_plugin("league")
    league.incentive_setup(run=training.context)
    pop = league.population
    pop.add_snapshot(5, source=league.exploiters["main_exploiter_0"], name="main_exploiter_0@5")
    pop.add_snapshot(5, source=league.mains["main_1"], name="main_1@5")
    names = [m.name for m in pop.members]
    assert names == [
        "main@0",
        "main",
        "main_1",
        "main_1_copy",
        "main_1@0",
        "main_exploiter_0",
        "league_exploiter_0",
        "main_exploiter_0@5",
        "main_1@5",
    ]
    assert [m.id for m in pop.members] == list(range(9))
    main_1, main_exploiter, p = 2, 5, league.payoffs
    p.add(main_1, 0, 4, 0, 1)  # main_1 beats main@0 0.8
    p.add(main_1, 4, 2, 0, 3)  # main_1@0: 0.4
    p.add(main_1, 7, 1, 0, 1)  # main_exploiter_0@5: 0.5
    p.add(main_1, 8, 3, 0, 2)  # main_1@5: 0.6
    p.add(main_exploiter, LEARNER, 2, 0, 3)  # the exploiter beats main agent 0 40% of the time
    p.add(main_exploiter, main_1, 2, 0, 23)  # ... main agent 1 only 8%
    p.add(main_exploiter, 4, 3, 0, 7)  # main_1@0: 0.3
    p.add(main_exploiter, 8, 1, 0, 1)  # main_1@5: 0.5
    rows, row_of = league.matchmaking()
    assert row_of.tolist() == [[0, 0], [1, 1], [2, 3], [4, 4]]  # mains, main exploiter by target, league
    expected = torch.zeros(5, 10, dtype=torch.float64)
    # main agent 0, no games: PFSP uniform over the 4 historical players (main@0, main_1@0, the two @5);
    # verification: the exploiter snapshot at the 0.5 prior >= 0.3, own snapshots [main@0] -> none kept;
    # self-play 0.35 + 0.15
    expected[0, [0, 1, 5, 8, 9]] = torch.tensor([0.5, 0.125, 0.125, 0.125, 0.125], dtype=torch.float64)
    # main agent 1: PFSP hard (1 - x)^2 over main@0, main_1@0, main_exploiter_0@5, main_1@5:
    # 0.04, 0.36, 0.25, 0.16 (sum 0.81); verification: the exploiter snapshot 0.5 >= 0.3, own
    # snapshots [main_1@0, main_1@5] at 0.4, 0.6 rise at the end: both kept, 0.4 < 0.7, so PFSP hard
    # over them (0.36, 0.16 over 0.52) takes the 0.15; self-play 0.35
    expected[1, 0] = 0.35
    expected[1, 1] = 0.5 * 0.04 / 0.81
    expected[1, 5] = 0.5 * 0.36 / 0.81 + 0.15 * 0.36 / 0.52
    expected[1, 8] = 0.5 * 0.25 / 0.81
    expected[1, 9] = 0.5 * 0.16 / 0.81 + 0.15 * 0.16 / 0.52
    # main exploiter targeting main agent 0: wins 40% > 10%, so the current main agent 0 (column 0)
    expected[2, 0] = 1.0
    # ... targeting main agent 1: wins 8% <= 10%, so PFSP variance over main_1's snapshots:
    # x (1 - x) = 0.21 (main_1@0), 0.25 (main_1@5) over 0.46
    expected[3, 5], expected[3, 9] = 0.21 / 0.46, 0.25 / 0.46
    # league exploiter, no games: linear_capped min(0.5, 1 - 0.5) over the 4 historical players
    expected[4, [1, 5, 8, 9]] = 0.25
    torch.testing.assert_close(rows, expected, rtol=0, atol=1e-12)
    assert league.distribution(1)[0] == pytest.approx(0.5)  # main agent 0's row is the population's


def test_several_main_agents_split_the_main_instances_and_play_on_their_own(tmp_path):
    training = _training(tmp_path, main_agents=2, main_share=0.5)
    league = training.hooks.pm.get_plugin("league")
    league.incentive_setup(run=training.context)
    assert league.trainee.tolist() == [0, 1] * 8 + [2, 3] * 8
    seats = league.incentive_pick_opponents(run=training.context, iteration=1).seats
    pop = league.population
    who = [sorted(pop.member(pop.slots[int(s)]).name if s >= 0 else "learner" for s in row) for row in seats]
    assert all("learner" in w for w in who[0:16:2])  # only main agent 0's instances have a learner seat
    assert all("learner" not in w for i, w in enumerate(who) if i % 2 or i >= 16)
    assert all("main_1" in w and "main_1_copy" not in w for w in who[1:16:2])
    # main exploiters play a current main agent, drawn per instance: its live copy, both appear
    targets = {next(n for n in w if n != "main_exploiter_0") for w in who[16::2]}
    assert targets == {"main", "main_1_copy"}
    # league exploiters: PFSP over the historical players, the two main agents' first snapshots
    assert {w[1] for w in who[17::2]} == {"main@0", "main_1@0"}
    assert all(w[0] == "league_exploiter_0" for w in who[17::2])
    # nobody but main agent 1 ever sits in a seat as main_1: it plays only on its own instances
    main_1 = next(i for i, m in enumerate(pop.slots) if pop.member(m).name == "main_1")
    rows = (seats == main_1).any(1).nonzero().flatten().tolist()
    assert rows and set(rows) <= set(range(1, 16, 2))


def test_each_main_agent_trains_only_on_its_own_seats_and_is_snapshotted(tmp_path, monkeypatch):
    played, trained = defaultdict(list), []  # per learner: seats it was asked; per update: seats, rollout
    act, train = TrainedOpponent.act, LeagueLearners.train

    def spy_act(self, obs, action_mask, seats):
        played[id(self)].append(seats.clone())
        return act(self, obs, action_mask, seats)

    def spy_train(self, rollout):
        trained.append((list(self.seats), list(self.records), rollout))
        return train(self, rollout)

    monkeypatch.setattr(TrainedOpponent, "act", spy_act)
    monkeypatch.setattr(LeagueLearners, "train", spy_train)
    training = _training(tmp_path, main_agents=2, checkpoint_min_iterations=2, checkpoint_max_iterations=3)
    league = training.hooks.pm.get_plugin("league")
    training.run()
    main = league.mains["main_1"]
    own = set(range(1, 16, 2))  # main agent 1's instances: every other one of the first half
    assert len(played[id(main)]) == 6 * 8 and len(trained) == 6  # one batched update per iteration
    for seats in played[id(main)]:  # the loop asks it to act only in its own instances
        assert set(seats.any(1).nonzero().flatten().tolist()) == own
    learners = league.learner_groups[0]
    assert learners.names == ["main_1", "main_exploiter_0", "league_exploiter_0"]
    assert set(learners.rows[learners.trial_of_row == main.trial].tolist()) == own
    for seats, records, rollout in trained:
        assert len(seats) == len(records) == 8  # one forward pass per step for all three learners
        for t, step_seats in enumerate(seats):
            assert records[t][0] == t and records[t][1].shape[0] == 24  # main_1's 8 + the exploiters' 16
            rows = step_seats.any(1)
            assert rows.nonzero().flatten().tolist() == sorted(own | set(range(16, 32)))
            assert not bool((step_seats & rollout.learn_mask[t]).any())  # none is the run learner's data
    names = [m.name for m in league.population.members]
    assert "main_1@3" in names and "main_1@6" in names  # snapshotted at the max, like every player
    initial = main.initial["net"]  # and never reset: it trained
    assert any(not torch.equal(v, initial[k]) for k, v in main.net.state_dict().items())
    metrics = training.last_metrics
    assert 0 < metrics["population/league/main_1/mirror_share"] <= 1
    assert 0 <= metrics["population/league/main_1/win_rate_history"] <= 1
    assert "population/league/main_1/entropy" in metrics
    assert "population/league/main_exploiter_0/win_rate_main_1" in metrics


def test_one_main_agent_gives_the_metrics_of_the_code_before_several_main_agents(tmp_path):
    """`main_agents: 1` (the default) writes the metrics.jsonl that the code of 71963d8 wrote, byte for byte.

    tests/data/league_one_main_agent.metrics.jsonl was recorded by that code from this recipe (torch
    2.13.0 on CPU, one thread); if a later change to PPO or the population changes it on purpose,
    record it again from this test's recipe.
    """
    params = {
        "bots": ["random"],
        "checkpoint_min_iterations": 2,
        "checkpoint_max_iterations": 3,
        "league_reset_prob": 0.5,
        "max_snapshots": 5,
        "evaluate_every": 3,
    }
    _training(tmp_path, iterations=12, **params).run()
    recorded = Path(__file__).parent / "data" / "league_one_main_agent.metrics.jsonl"
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == recorded.read_bytes()


# --- the other learners, batched ---------------------------------------------------------

BATCHED = {
    "main_agents": 2,
    "main_exploiters": 2,
    "league_exploiters": 1,
    "bots": ["random"],
    "checkpoint_min_iterations": 2,
    "checkpoint_max_iterations": 3,
    "league_reset_prob": 0.5,
    "max_snapshots": 6,
    "evaluate_every": 3,
}


def test_batched_learners_give_the_metrics_of_one_ppo_per_learner(tmp_path):
    """Four learners (main_1, two main exploiters, a league exploiter) as one batched learner.

    tests/data/league_batched_learners.metrics.jsonl was recorded by the code of fc438ad, where each
    was a PPO of its own, from this recipe (torch 2.13.0 on CPU, one thread). Their instances differ
    in number (8, 6, 5, 5), main exploiters are reset after every snapshot (their optimiser step counts
    then differ from main_1's), and the designer metrics tabulate every learner's policy.
    """
    training = _training(tmp_path, iterations=12, **BATCHED)
    training.run()
    learners = training.hooks.pm.get_plugin("league").learner_groups
    assert len(learners) == 1 and learners[0].trials == 4 and learners[0].counts == [8, 6, 5, 5]
    recorded = Path(__file__).parent / "data" / "league_batched_learners.metrics.jsonl"
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == recorded.read_bytes()


def _trial_state(learners: LeagueLearners, trial: int) -> dict:
    state = learners.trial_state_dict(trial)
    return {"net": state["net"], "optimizer": state["optimizer"]["state"], "stream": state["generator"]}


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            if not _same(x, y):
                return False
        elif not torch.equal(x, y):
            return False
    return True


def test_resetting_one_exploiter_leaves_the_other_learners_untouched(tmp_path):
    training = _training(
        tmp_path, iterations=3, **{**BATCHED, "checkpoint_min_iterations": 5, "checkpoint_max_iterations": 5}
    )
    training.run()  # three updates, no snapshot yet, no reset
    league = training.hooks.pm.get_plugin("league")
    learners = league.learner_groups[0]
    before = [_trial_state(learners, k) for k in range(4)]
    exploiter = league.exploiters["main_exploiter_1"]
    assert exploiter.trial == 2 and before[2]["optimizer"]  # it has trained: moments and a step count
    assert not _same(before[2]["net"], exploiter.initial["net"])
    exploiter.reset()
    after = [_trial_state(learners, k) for k in range(4)]
    for k in (0, 1, 3):
        assert _same(after[k], before[k])  # weights, moments, step counts and streams
    assert _same(after[2]["net"], exploiter.initial["net"])
    assert after[2]["optimizer"] == {} and learners.ppo.optimizer.trial_steps[2] == 0  # a fresh optimiser
    assert learners.ppo.optimizer.trial_steps[0] == 3 * 2  # main_1 goes on (3 updates of 2 minibatches)
    assert torch.equal(after[2]["stream"], before[2]["stream"])  # its sampling stream goes on


def test_a_snapshot_is_a_deep_copy_of_one_learner_only(tmp_path):
    training = _training(tmp_path, iterations=2, **BATCHED)
    training.run()
    league = training.hooks.pm.get_plugin("league")
    learners = league.learner_groups[0]
    exploiter = league.exploiters["league_exploiter_0"]
    member = league.population.add_snapshot(2, source=exploiter, name="league_exploiter_0@test")
    snap = member.policy.net.state_dict()
    live = learners.ppo.net.state_dict()
    for key, value in snap.items():
        assert value.shape[0] == 1 and live[key].shape[0] == 4  # one trial's groups out of four
        assert torch.equal(value, live[key][3:4])
        assert value.data_ptr() != live[key].data_ptr()
    frozen = {key: value.clone() for key, value in snap.items()}
    with torch.no_grad():  # the live weights move (as an update or a reset moves them) ...
        for p in learners.ppo.net.parameters():
            p.add_(1.0)
    assert _same(member.policy.net.state_dict(), frozen)  # ... the snapshot does not
    with torch.no_grad():  # and the snapshot's weights are not the learner's either
        for p in member.policy.net.parameters():
            p.zero_()
    assert all(bool((p != 0).any()) for p in learners.ppo.net.parameters())
    # it plays as the learner would: the same action probabilities on every information state
    obs = {a: torch.rand(5, *training.env.observation_spaces[a].shape) for a in training.agents}
    with torch.no_grad():
        for p in learners.ppo.net.parameters():
            p.sub_(1.0)
    member = league.population.add_snapshot(2, source=exploiter, name="league_exploiter_0@again")
    assert torch.equal(member.policy.probs(obs, None), exploiter.probs(obs, None))


def test_a_learner_that_cannot_learn_sits_the_update_out_as_a_lone_learner_would():
    """Trial 1 skips the first update (fewer than two samples), then all three go on at their own counts."""
    from incentive.ppo import PPO, Batch
    from incentive.recipe import LearnerSpec

    cfg = LearnerSpec(lr=5e-3, minibatches=2, epochs=2, hidden_sizes=[16])
    seeds = [4, 7, 1]
    lone = [
        PPO(config=cfg, obs_dims=[6, 6], action_dims=[3, 3], generator=torch.Generator().manual_seed(s))
        for s in seeds
    ]
    batched = PPO(
        config=cfg,
        obs_dims=[6, 6],
        action_dims=[3, 3],
        generator=[torch.Generator().manual_seed(s) for s in seeds],
        independent_trials=True,
    )
    g = torch.Generator().manual_seed(0)
    n = 64

    def batch(k: int) -> dict:
        obs = torch.randn(n, 2, 6, generator=g)
        return {
            "features": lone[k].features({"a": obs[:, 0], "b": obs[:, 1]}, ["a", "b"]),
            "action_mask": None,
            "actions": torch.randint(0, 3, (n, 2), generator=g),
            "logprobs": -torch.rand(n, 2, generator=g) - 1,
            "values": torch.randn(n, 2, generator=g),
            "advantages": torch.randn(n, 2, generator=g),
            "returns": torch.randn(n, 2, generator=g),
            "policy_mask": torch.rand(n, 2, generator=g) > 0.2,
            "value_mask": torch.ones(n, 2, dtype=torch.bool),
        }

    for active in ([True, False, True], [True, True, True], [False, True, True]):
        fields = [batch(k) for k in range(3)]
        stats = [lone[k].update(Batch(**fields[k])) if active[k] else {} for k in range(3)]
        stacked = {
            key: None if fields[0][key] is None else torch.stack([f[key] for f in fields])
            for key in fields[0]
        }
        assert batched.update_trials(Batch(**stacked), active=active) == stats
    assert batched.optimizer.trial_steps == [2 * 2 * 2, 2 * 2 * 2, 3 * 2 * 2]  # epochs x minibatches each
    for k in range(3):
        assert torch.equal(batched.generators[k].get_state(), lone[k].generator.get_state())
        for p, q in zip(batched.net.parameters(), lone[k].net.parameters(), strict=True):
            assert torch.equal(p[k : k + 1], q)
        lone_state = lone[k].optimizer.state_dict()
        trial_state = batched.optimizer.trial_state_dict(k)
        for i, saved in lone_state["state"].items():
            assert torch.equal(saved["step"], trial_state["state"][i]["step"])
            assert torch.equal(saved["exp_avg_sq"], trial_state["state"][i]["exp_avg_sq"])
    with pytest.raises(ValueError, match="independent_trials"):
        lone[0].update_trials(
            Batch(**{k: None if v is None else v[None] for k, v in batch(0).items()}), [True]
        )


def test_a_league_with_the_conv_torso_keeps_one_ppo_per_learner(tmp_path):
    data = {
        "name": "league_conv",
        "seed": 1,
        "env": {"id": "connect_four", "num_envs": 8},
        "learner": {
            "rollout_steps": 48,
            "epochs": 1,
            "minibatches": 2,
            "hidden_sizes": [16],
            "conv_channels": [4],
        },
        "opponents": {
            "plugin": "league",
            "params": {"main_agents": 2, "checkpoint_min_iterations": 1, "checkpoint_max_iterations": 1},
        },
        "objective": {"metric": "collective_return"},
        "train": {"total_steps": 8 * 48 * 2, "checkpoint_every": 100},
        "log": {"dir": str(tmp_path / "runs"), "wandb": {"mode": "disabled"}},
    }
    path = tmp_path / "league.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    training = Training(recipe, run_dir=tmp_path / "run", pm=make_plugin_manager(recipe))
    training.run()
    league = training.hooks.pm.get_plugin("league")
    assert [g.names for g in league.learner_groups] == [
        ["main_1"],
        ["main_exploiter_0"],
        ["league_exploiter_0"],
    ]
    assert all(g.trials == 1 for g in league.learner_groups)
    exploiter = league.exploiters["main_exploiter_0"]  # snapshotted and reset every iteration
    assert _same(exploiter.net.state_dict(), exploiter.initial["net"])
    assert not _same(league.mains["main_1"].net.state_dict(), league.mains["main_1"].initial["net"])
    assert "population/league/main_1/entropy" in training.last_metrics


def test_a_learner_seated_outside_its_own_instances_is_an_error(tmp_path):
    training = _training(tmp_path, **BATCHED)
    league = training.hooks.pm.get_plugin("league")
    league.incentive_setup(run=training.context)
    league.incentive_pick_opponents(run=training.context, iteration=1)
    exploiter = league.exploiters["main_exploiter_0"]
    seats = torch.zeros(32, 2, dtype=torch.bool)
    seats[exploiter.learners.home[exploiter.trial], 0] = True
    obs, mask = training.ts.obs, training.ts.action_mask
    actions = exploiter.act(obs, mask, seats)  # its own instances: fine, all learners acted
    assert actions.shape == (32, 2) and len(exploiter.learners.records) == 1
    seats[0, 1] = True  # instance 0 is main agent 0's
    with pytest.raises(IncentiveError, match="'main_exploiter_0' was seated outside its own instances"):
        exploiter.act(obs, mask, seats)
