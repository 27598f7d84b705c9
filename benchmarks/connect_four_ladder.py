"""The minimax ladder of a trained Connect Four learner: its score against ever deeper search.

The learner plays `random`, `one_ply` and the full-width `minimax` bot at
depths 1..`max_depth` (`envs/connect_four_bots.py`): `games` evaluation
games per opponent, half in each seat, no training data. Score = (wins +
draws / 2) / games. "The best depth-N minimax the agent beats" (issue 9) is
the largest N whose score is above 0.5. Every game starts from the empty
board, also for a learner trained with random openings (`matches_against_bot`
builds its env from the env's `evaluation_params()`).

Two ways to use it:

- As an extra plugin of a run (`benchmarks/reproductions.py` registers it for
  its Connect Four experiment): at the end of the run the final learner,
  sampling its actions, climbs the ladder, and `ladder.json` is written in
  the run directory, e.g. {"random": 0.96, "one_ply": 0.67, "minimax_1": ...}.
- On a finished run directory, from its last checkpoint (`checkpoint.pt`,
  read as plain data), with the policy sampled or greedy:

    python benchmarks/connect_four_ladder.py RUN_DIR [--policy greedy] [--games 200] [--max-depth 4]

`--tactics` also prints, against `random` and `one_ply`, how often the
learner misses the two one-move tactics: an immediate win it does not take,
and an immediate threat of the opponent it neither blocks nor answers with a
win of its own. This is how a learner that loses 5% of its games to random
play shows where it loses them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from incentive import hookimpl
from incentive.checkpoint import load_checkpoint
from incentive.envs.connect_four_bots import immediate_wins, movers
from incentive.errors import IncentiveError
from incentive.loop import Training
from incentive.plugin_manager import make_plugin_manager
from incentive.population import SnapshotPolicy, matches_against_bot, score, score_against_bot
from incentive.runner import load_run_recipe

LADDER_FILE = "ladder.json"


def opponents(max_depth: int) -> list[tuple[str, str, int]]:
    """(ladder name, bot id, minimax depth) of every rung, easiest first."""
    return [("random", "random", 1), ("one_ply", "one_ply", 1)] + [
        (f"minimax_{d}", "minimax", d) for d in range(1, max_depth + 1)
    ]


def best_depth_beaten(ladder: dict[str, float]) -> int:
    """The largest depth N with a score above 0.5 against `minimax_N` (0: none)."""
    beaten = [
        int(name.split("_")[1])
        for name, value in ladder.items()
        if name.startswith("minimax_") and value > 0.5
    ]
    return max(beaten, default=0)


def climb(run: Any, *, games: int, max_depth: int, greedy: bool) -> dict[str, float]:
    """The learner's score against every rung (one seed for all: the run seed's)."""
    seed = run.recipe.seed * 1_000_003 + 7
    return {
        name: score_against_bot(run, bot, games=games, seed=seed, minimax_depth=depth, greedy=greedy)
        for name, bot, depth in opponents(max_depth)
    }


class TacticsCounter:
    """Wraps a policy and counts, over its moves, the one-move tactics it had and missed."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.moves = self.wins = self.wins_missed = self.threats = self.threats_missed = 0

    def act(self, obs: dict[str, torch.Tensor], action_mask: Any, seats: torch.Tensor) -> torch.Tensor:
        """The wrapped policy's actions; counts the moves of the rows where it is to move."""
        actions = self.policy.act(obs, action_mask, seats)
        for seat, rows, own, opponent, legal in movers(obs, action_mask, seats):
            wins, threats = immediate_wins(own, opponent, legal)
            column = actions[rows, seat][:, None]
            can_win = wins.any(1)
            must_block = threats.any(1) & ~can_win
            self.moves += len(rows)
            self.wins += int(can_win.sum())
            self.wins_missed += int((can_win & ~wins.gather(1, column)[:, 0]).sum())
            self.threats += int(must_block.sum())
            self.threats_missed += int((must_block & ~threats.gather(1, column)[:, 0]).sum())
        return actions


def tactics(run: Any, bot: str, *, games: int, greedy: bool) -> dict[str, float]:
    """The learner's score against `bot` and the share of one-move tactics it missed."""
    seed = run.recipe.seed * 1_000_003 + 11
    me = TacticsCounter(SnapshotPolicy(run.learner, run.agents, seed, greedy=greedy))
    result = matches_against_bot(run, bot, games=games, seed=seed, policy=me)
    return {
        "score": score(result),
        "wins_missed": me.wins_missed / max(me.wins, 1),
        "threats_missed": me.threats_missed / max(me.threats, 1),
        "win_chances": me.wins,
        "threats": me.threats,
    }


class MinimaxLadder:
    """Plays the finished learner up the ladder and writes `ladder.json`."""

    def __init__(self, *, max_depth: int = 4, games: int = 200) -> None:
        self.max_depth = max_depth
        self.games = games

    @hookimpl
    def incentive_run_end(self, run: Any, status: str) -> None:
        """After a run that completed or used up its CPU budget: the learner's score against each rung."""
        if status not in ("completed", "budget"):
            return
        ladder = climb(run, games=self.games, max_depth=self.max_depth, greedy=False)
        Path(run.run_dir, LADDER_FILE).write_text(json.dumps(ladder, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--policy", choices=["sampled", "greedy"], default="sampled")
    parser.add_argument("--games", type=int, default=200)
    parser.add_argument("--max-depth", type=int, default=4)
    parser.add_argument("--tactics", action="store_true", help="Also count missed wins and blocks.")
    args = parser.parse_args()
    if args.games < 2 or args.max_depth < 1:
        parser.error(
            f"--games must be at least 2 and --max-depth at least 1, got {args.games} and {args.max_depth}"
        )
    torch.set_num_threads(1)
    try:
        recipe = load_run_recipe(args.run_dir)
        if recipe.env.id != "connect_four":
            raise IncentiveError(f"{args.run_dir}: env {recipe.env.id!r} is not connect_four")
        state = load_checkpoint(args.run_dir / "checkpoint.pt")
    except IncentiveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    with tempfile.TemporaryDirectory() as scratch:  # the learner is built as the run built it, elsewhere
        training = Training(recipe, run_dir=Path(scratch), pm=make_plugin_manager(recipe))
        training.learner.load_state_dict(state["learner"])
        ladder = climb(
            training.context, games=args.games, max_depth=args.max_depth, greedy=args.policy == "greedy"
        )
        found = {
            bot: tactics(training.context, bot, games=args.games, greedy=args.policy == "greedy")
            for bot in (("random", "one_ply") if args.tactics else ())
        }
    print(
        f"{args.run_dir} (iteration {state['iteration']}, {state['global_step']:,} steps, {args.policy} policy)"
    )
    print("  ".join(f"{name} {value:.3f}" for name, value in ladder.items()))
    print(f"deepest minimax beaten: {best_depth_beaten(ladder)}")
    for bot, t in found.items():
        print(
            f"against {bot}: score {t['score']:.3f}, immediate wins missed {t['wins_missed']:.1%} of "
            f"{t['win_chances']}, threats neither blocked nor beaten by a win {t['threats_missed']:.1%} "
            f"of {t['threats']}"
        )


if __name__ == "__main__":
    main()
