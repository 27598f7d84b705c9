"""Independent random streams, one per env instance, drawn as tensors.

A batched env cannot use one shared generator: then instance e's coin
positions would depend on how many instances run beside it, and a batched env
with E instances could never agree with E single-instance PettingZoo views.
Instead each instance owns a 64-bit counter and draws through SplitMix64
(Steele, Lea & Flood, 2014): counter-based, so one vectorised hash gives every
instance its next numbers, and instance e seeded with s draws exactly what a
lone instance seeded with s draws.
"""

from __future__ import annotations

import torch

__all__ = ["InstanceRandom"]


def _signed(value: int) -> int:
    """A 64-bit unsigned constant as the int64 torch stores."""
    return value - (1 << 64) if value >= (1 << 63) else value


_GAMMA = _signed(0x9E3779B97F4A7C15)
_MUL1 = _signed(0xBF58476D1CE4E5B9)
_MUL2 = _signed(0x94D049BB133111EB)


def _shift_right(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's `>>` is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """The SplitMix64 output function on int64 tensors (wrap-around arithmetic)."""
    z = (x ^ _shift_right(x, 30)) * _MUL1
    z = (z ^ _shift_right(z, 27)) * _MUL2
    return z ^ _shift_right(z, 31)


class InstanceRandom:
    """One SplitMix64 stream per instance.

    Args:
        num_envs: E, the number of streams.
        device: where the counters live.

    """

    def __init__(self, num_envs: int, device: torch.device | str = "cpu") -> None:
        self.state = torch.zeros(num_envs, dtype=torch.int64, device=device)
        self._offsets: dict[int, torch.Tensor] = {}

    def seed(self, seeds: torch.Tensor) -> None:
        """Set instance e's stream from seeds[e] (mixed, so nearby seeds diverge)."""
        self.state = splitmix64(seeds.to(torch.int64).to(self.state.device) * _GAMMA + _GAMMA)

    def bits(
        self, n: int, *, instance_last: bool = False, streams: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[E, n] (or [n, E] if `instance_last`) int64 of 64 random bits each; advances the streams by n.

        Args:
            n: draws per stream.
            instance_last: return [n, E] instead of [E, n].
            streams: [m] distinct long stream indices, or None for all: draw from (and advance) these
                streams only, one row each in their order ([m, n]). An env that draws only for the instances
                that start a new episode passes them here, so that each instance's stream depends on
                its own episodes alone, not on when the others end theirs.
        """
        offsets = self._offsets.get(n)
        if offsets is None:
            offsets = torch.arange(1, n + 1, dtype=torch.int64, device=self.state.device) * _GAMMA
            self._offsets[n] = offsets
        state = self.state if streams is None else self.state[streams]
        if instance_last:
            draws = splitmix64(state[None, :] + offsets[:, None])
        else:
            draws = splitmix64(state[:, None] + offsets)
        step = _signed((n * _GAMMA) % (1 << 64))
        if streams is None:
            self.state = self.state + step
        else:
            self.state = self.state.index_add(0, streams, torch.full_like(state, step))
        return draws

    def draw_one(self, instance: int) -> int:
        """63 random bits from instance `instance`'s stream only (the others do not advance)."""
        value = splitmix64(self.state[instance : instance + 1] + _GAMMA)
        self.state[instance] += _GAMMA
        return int(_shift_right(value, 1))

    def uniform(self, n: int) -> torch.Tensor:
        """[E, n] float32 uniform on [0, 1), exact multiples of 2**-24."""
        return _shift_right(self.bits(n), 40).to(torch.float32) * (2.0**-24)

    def integers(
        self, high: torch.Tensor | int, n: int = 1, *, streams: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[E, n] int64 uniform on {0, ..., high - 1}; `high` may be [E] or [E, n] (or [1, n]).

        With `streams` (as in `bits`), [m, n] draws of those streams only; `high` then [m] or [m, n].
        """
        high = torch.as_tensor(high, dtype=torch.int64, device=self.state.device)
        if high.dim() == 1:
            high = high[:, None]
        return _shift_right(self.bits(n, streams=streams), 1) % high
