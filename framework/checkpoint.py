"""Checkpoint files: written atomically, and read without running code.

A checkpoint holds plain data only: tensors, numbers, strings, bytes, None,
and lists, tuples and dicts of them (policies, optimizer, env and loop state,
random streams, plugin state). It is read with `torch.load(weights_only=True)`,
which refuses anything else, so a crafted `checkpoint.pt` (a shared run
directory, one downloaded with a paper) cannot run code on `--resume`; a
pickled object in it is refused with an error naming the file. Saving checks
the same rule first, so a plugin whose state would not load again is named
when the checkpoint is written, not on the resume.
"""

from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from incentive.errors import IncentiveError

__all__ = ["load_checkpoint", "plain_data_problem", "save_checkpoint"]

_SCALARS = (bool, int, float, complex, str, bytes, type(None), torch.Size, torch.dtype, torch.device)


def plain_data_problem(value: Any, where: str = "state") -> str | None:
    """Where `value` holds something a weights-only load refuses, or None if it is plain data.

    Args:
        value: the state to check.
        where: its name, for the message (`state['env']['rng']`).

    """
    if isinstance(value, (torch.Tensor, *_SCALARS)):
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            problem = plain_data_problem(item, f"{where}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(value, dict | OrderedDict):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool | type(None)):
                return f"{where} has a key of type {type(key).__name__}"
            problem = plain_data_problem(item, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    return (
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}; checkpoints hold "
        "tensors, numbers, strings, bytes, None, and lists, tuples and dicts of them"
    )


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` to a temporary file, fsync it, then rename it over `path`.

    Raises:
        ValueError: `state` holds something other than plain data (named).

    """
    problem = plain_data_problem(state)
    if problem:
        raise ValueError(problem)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`, refusing anything but plain data.

    Raises:
        IncentiveError: the file is missing, unreadable, or holds Python objects.

    """
    if not path.exists():
        raise IncentiveError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        first = " ".join(str(exc).split())[:300]
        raise IncentiveError(
            f"{path}: refused to load this checkpoint: it holds Python objects, not only tensors, "
            "numbers, strings, lists and dicts (incentive never writes such a file; loading it could "
            f"run code it carries). Details: {first}"
        ) from None
    except Exception as exc:
        raise IncentiveError(f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or "iteration" not in state:
        raise IncentiveError(f"{path}: not a checkpoint written by incentive (no iteration in it)")
    return state
