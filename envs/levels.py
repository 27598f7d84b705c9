"""Level ranges: which procedural levels an env trains on and which it holds out for testing.

Recipes write `levels: {train: "0-999", test: "10000-10099"}`. A range is
"a-b" (both ends included), a single id "a", or a list of ids. Level ids are
integers in [0, MAX_LEVEL]. Train and test levels must not overlap: a
held-out level that is also trained on would make the test metrics lie.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["MAX_LEVEL", "LevelRanges", "parse_levels"]

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
