"""Designer metrics (inequality) and the metrics file every run writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

__all__ = ["MetricsFile", "equality", "gini"]


def gini(totals: torch.Tensor) -> torch.Tensor:
    """Gini coefficient over the last dimension, scaled to [0, 1] for small N.

    G = sum_i sum_j |x_i - x_j| / (2 * N * sum_i |x_i|) * N / (N - 1)

    For non-negative totals this is the Gini coefficient with the AI
    Economist's small-N scaling (one agent holding everything gives 1 for any
    N). Rewards can be negative (the prisoner's dilemma pays -1 to -3), so the
    denominator uses |x_i|: G stays in [0, 1] (triangle inequality), equal
    totals give 0 whatever their sign, and [-19.99, -20.02] is nearly equal
    rather than maximally unequal as a shift to non-negative values would make
    it. A row of zeros is perfectly equal (G = 0).

    Args:
        totals: [..., N] per-agent totals, N >= 2.

    Returns:
        [...] the Gini coefficient of each row.

    """
    x = totals.to(torch.float64)
    n = x.shape[-1]
    spread = (x.unsqueeze(-1) - x.unsqueeze(-2)).abs().sum((-1, -2))
    total = x.abs().sum(-1)
    g = spread / (2 * n * total.clamp(min=1e-12)) * n / (n - 1)
    return torch.where(total > 0, g, torch.zeros_like(g)).to(totals.dtype)


def equality(totals: torch.Tensor) -> torch.Tensor:
    """1 - Gini over the last dimension."""
    return 1.0 - gini(totals)


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


class MetricsFile:
    """An append-only JSON-lines file, flushed after every line.

    Args:
        path: the file (created if missing).

    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.touch()

    def append(self, metrics: dict[str, float]) -> None:
        """Write one line and flush it to disk."""
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()
        }
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")
            f.flush()

    def count(self) -> int:
        """Complete (newline-terminated) lines written so far."""
        complete = self.path.read_text().split("\n")[:-1]
        return sum(1 for line in complete if line.strip())

    def truncate(self, lines: int) -> None:
        """Keep the first `lines` lines (resume: drop what the checkpoint does not cover).

        Only whole lines are kept: a last line cut short (no newline, or not
        valid JSON, as a kill or an editor outside the tool can leave it) is
        dropped, never patched with a newline into an invalid record.
        """
        kept = []
        for line in self.path.read_text(errors="replace").splitlines(keepends=True)[:lines]:
            if not line.endswith("\n") or not _is_json(line):
                break
            kept.append(line)
        self.path.write_text("".join(kept))

    def read(self) -> list[dict]:
        """Every complete line as a dict."""
        complete = self.path.read_text().split("\n")[:-1]
        return [json.loads(line) for line in complete if line.strip()]
