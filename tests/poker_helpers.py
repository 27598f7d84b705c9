"""Shared helpers for the poker env tests: hand-made deals and scripted hands."""

import torch


def set_deal(env, p0: int, p1: int, public: int = -1) -> None:
    """Every instance starts a fresh hand with these cards (card ids, see incentive.envs.poker)."""
    env.reset(seed=0)
    env.deal = torch.full((env.num_envs,), env.game.deal_index(p0, p1, public))
    env.node = torch.zeros(env.num_envs, dtype=torch.long)


def play(env, actions: list[int]):
    """Play `actions` in turn (each given to both seats; only the acting one counts); all TimeSteps."""
    steps = []
    for action in actions:
        steps.append(env.step(torch.full((env.num_envs, 2), action, dtype=torch.long)))
    return steps
