"""Level ranges: which procedural levels an env trains on and which it holds out for testing.

Recipes write `levels: {train: "0-999", test: "10000-10099"}`. A range is
"a-b" (both ends included), a single id "a", or a list of ids. Level ids are
integers in [0, MAX_LEVEL]. Train and test levels must not overlap: a
held-out level that is also trained on would make the test metrics lie.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MAX_LEVEL", "LevelRanges", "level_task", "parse_levels", "whole_numbers"]

MAX_LEVEL = 2**31 - 1
"""The largest level id a generator accepts."""

LevelSpec = str | list[int]


def parse_levels(spec: LevelSpec, *, field: str) -> torch.Tensor:
    """Level ids [N] long (sorted, distinct) from "a-b", "a" or a list.

    Raises:
        ValueError: naming `field`: malformed, empty, or outside [0, MAX_LEVEL].

    """
    if isinstance(spec, str):
        text = spec.strip()
        low, sep, high = text.partition("-")
        try:
            first, last = int(low), int(high if sep else low)
        except ValueError:
            raise ValueError(
                f"{field}: expected 'first-last' (e.g. '0-999') or a list of ids, got {spec!r}"
            ) from None
        if last < first:
            raise ValueError(f"{field}: range {spec!r} is empty (last below first)")
        if first < 0 or last > MAX_LEVEL:
            raise ValueError(
                f"{field}: level ids must lie in 0..{MAX_LEVEL} (the generator's bounds), got {spec!r}"
            )
        if last - first >= 10_000_000:
            raise ValueError(f"{field}: range {spec!r} holds more than 10,000,000 levels")
        ids = torch.arange(first, last + 1, dtype=torch.long)
    else:
        if not spec:
            raise ValueError(f"{field}: the list of levels is empty")
        ids = torch.tensor(sorted(set(spec)), dtype=torch.long)
    if int(ids.min()) < 0 or int(ids.max()) > MAX_LEVEL:
        raise ValueError(
            f"{field}: level ids must lie in 0..{MAX_LEVEL} (the generator's bounds), got {spec!r}"
        )
    return ids


class LevelRanges(BaseModel):
    """Training levels and held-out test levels (never trained on)."""

    model_config = ConfigDict(extra="forbid")
    train: LevelSpec = Field("0-999", description="Levels to train on: 'first-last', 'id' or a list.")
    test: LevelSpec | None = Field(
        None, description="Held-out levels for evaluation only (none: no test metrics)."
    )

    @model_validator(mode="after")
    def _valid_and_apart(self) -> LevelRanges:
        train = parse_levels(self.train, field="levels.train")
        if self.test is not None:
            test = parse_levels(self.test, field="levels.test")
            shared = train[torch.isin(train, test)]
            if len(shared):
                raise ValueError(
                    f"levels.train ({self.train!r}) and levels.test ({self.test!r}) overlap in "
                    f"{len(shared)} level(s), e.g. {int(shared[0])}: held-out test levels must never "
                    "be trained on"
                )
        return self

    def train_ids(self) -> torch.Tensor:
        """[N] training level ids."""
        return parse_levels(self.train, field="levels.train")

    def test_ids(self) -> torch.Tensor | None:
        """[M] test level ids, or None."""
        return None if self.test is None else parse_levels(self.test, field="levels.test")


def whole_numbers(value: torch.Tensor, key: str, *, rounded: bool = False) -> torch.Tensor:
    """A task's whole numbers [E] long; floats must be whole unless `rounded` (then rounded half to even).

    Raises:
        ValueError: naming the task key: not one value per instance, not finite, or not whole.

    """
    if value.dim() != 1:
        raise ValueError(f"task {key!r}: expected shape (E,), got {tuple(value.shape)}")
    if value.is_floating_point():
        if not bool(torch.isfinite(value).all()):  # NaN and inf have no integer (casting them is undefined)
            raise ValueError(f"task {key!r}: expected finite numbers, got {value.tolist()[:8]}")
        if rounded:
            value = value.round()
        elif not bool((value == value.round()).all()):
            raise ValueError(f"task {key!r}: expected whole numbers, got {value.tolist()[:8]}")
    return value.long()


def level_task(value: torch.Tensor, *, test_levels: torch.Tensor | None, allow_test: bool) -> torch.Tensor:
    """A `level` task checked: [E] long level ids within the generator's bounds, none held out.

    Args:
        value: the task's [E] level ids.
        test_levels: the env's held-out levels, or None.
        allow_test: the evaluator's own env may run test levels.

    Raises:
        ValueError: a level outside 0..MAX_LEVEL, or a held-out test level.

    """
    level = whole_numbers(value, "level")
    if bool(((level < 0) | (level > MAX_LEVEL)).any()):
        raise ValueError(f"task 'level': level ids must lie in 0..{MAX_LEVEL}, got {level.tolist()[:8]}")
    if test_levels is not None and not allow_test:
        held_out = torch.isin(level, test_levels.to(level.device))
        if bool(held_out.any()):
            bad = int(level[held_out][0])
            raise ValueError(f"task 'level': level {bad} is a held-out test level (env.params.levels.test)")
    return level.clone()
