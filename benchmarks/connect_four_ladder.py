"""The minimax ladder of a trained Connect Four learner: its score against ever deeper search.

Registered as an extra plugin of a run (as `benchmarks/reproductions.py`
does for its Connect Four experiment), it plays the final learner, at the
end of the run, against `random`, `one_ply` and the full-width `minimax`
bot at depths 1..`max_depth` (`envs/connect_four_bots.py`): `games`
evaluation games per opponent, half in each seat, the learner's action
sampled from its policy, no training data. Score = (wins + draws / 2) /
games. Writes `ladder.json` in the run directory:

    {"random": 1.0, "one_ply": 0.83, "minimax_1": 0.9, "minimax_2": 0.4, ...}

"The best depth-N minimax the agent beats" (issue 9) is the largest N whose
score is above 0.5.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from incentive import hookimpl
from incentive.population import score_against_bot

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
        seed = run.recipe.seed * 1_000_003 + 7
        ladder = {
            name: score_against_bot(run, bot, games=self.games, seed=seed, minimax_depth=depth)
            for name, bot, depth in opponents(self.max_depth)
        }
        Path(run.run_dir, LADDER_FILE).write_text(json.dumps(ladder, indent=1))
