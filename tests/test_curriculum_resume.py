"""--resume after a real SIGKILL continues a curriculum run bit for bit (scores, staleness, stage, tasks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kill_and_resume import kill_and_resume

NAV_PLR = {
    "env": {
        "id": "navigation",
        "num_envs": 8,
        "params": {
            "min_size": 5,
            "max_size": 6,
            "max_steps": 10,
            "levels": {"train": "0-29", "test": "900-905"},
        },
    },
    "incentives": [],
    "curriculum": {"plugin": "prioritized_level_replay", "params": {"min_seen_fraction": 0.0}},
    "evaluate": {"every": 4},
}
NAV_PLR_MAX_MC = {
    **NAV_PLR,
    "curriculum": {
        "plugin": "prioritized_level_replay",
        "params": {"min_seen_fraction": 0.0, "strategy": "max_mc"},
    },
}
IPD_SCHEDULE = {
    "curriculum": {
        "plugin": "schedule",
        "params": {
            "stages": [
                {"set": {"incentives.0.params.s": 1.0}, "advance": {"steps": 8 * 16 * 10}},
                {"set": {"incentives.0.params.s": 0.0}, "interpolation": "cosine", "over_steps": 8 * 16 * 20},
            ]
        },
    },
}


# (learning progress's state is covered by the stop-and-resume contract test of every plugin)
@pytest.mark.parametrize(
    "changes", [NAV_PLR, NAV_PLR_MAX_MC, IPD_SCHEDULE], ids=["plr", "plr_max_mc", "schedule"]
)
def test_resume_after_sigkill_matches_an_uninterrupted_run(write_recipe, tmp_path: Path, changes):
    # 40 iterations, a checkpoint every 3: the kill lands between checkpoints
    path = write_recipe(
        train__total_steps=8 * 16 * 40, train__checkpoint_every=3, train__threads=1, **changes
    )
    whole, resumed = kill_and_resume(path, tmp_path / "runs" / "tiny", iterations=40)
    assert b"curriculum/" in whole
    assert resumed == whole
