"""Errors the user sees as one clear paragraph (the CLI prints them, exit code 2)."""

from __future__ import annotations

__all__ = ["IncentiveError", "PluginError", "RecipeError", "RecipeWarning", "StopRun"]


class IncentiveError(Exception):
    """A problem with the user's input or plugins: shown without a traceback."""


class RecipeError(IncentiveError):
    """A recipe (file, field or override) is invalid."""


class RecipeWarning(UserWarning):
    """A recipe that runs but probably not as meant (the CLI prints it as one `warning:` line)."""


class PluginError(IncentiveError):
    """A plugin failed inside a hook, or returned something unusable.

    Args:
        plugin: the plugin's name in the run.
        hook: the hook it was running.
        message: what went wrong.

    """

    def __init__(self, plugin: str, hook: str, message: str) -> None:
        self.plugin = plugin
        self.hook = hook
        super().__init__(f"plugin {plugin!r} failed in {hook}: {message}")


class StopRun(Exception):  # noqa: N818  (a signal, not an error)
    """Raised by a plugin to end a run early and cleanly (a search pruning a trial).

    The loop finishes the run with `status` (e.g. "pruned"): run-end hooks are
    called, and what was written stays as it is.

    Args:
        status: the run's end status, passed to `incentive_run_end`.
        reason: why, for logs.

    """

    def __init__(self, status: str, reason: str = "") -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"run stopped ({status}){': ' + reason if reason else ''}")
