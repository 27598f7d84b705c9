"""Evaluation on held-out test levels: `designer/test/...` metrics with no training data.

An env with procedural levels lists `test_levels` (`env.params.levels.test`),
which training never meets (its `set_task` refuses them). Every
`evaluate.every` iterations the loop asks the `Evaluator` for metrics: it
builds a separate copy of the env (same class, its `evaluation_params()`:
the training params less any training-only device, its own instances,
`allow_test_levels` set), plays exactly one episode on every test level with
the learner's current policy, and reports the designer metrics of those
episodes under `designer/test/...` (`test/collective_return`,
`test/equality`, `test/return/<agent>` and the env's own metrics).

- Policy: `greedy` (the most likely action; default) or `sampled` (from
  the policy, with a generator seeded by the run seed and the iteration).
- Nothing of it trains the learner or touches the training env, the
  learner's random stream or the run's generator, so evaluating does not
  change the training run, and a resumed run evaluates exactly as an
  uninterrupted one (the test env is reset with the run seed each time).
- Test levels are played `evaluate.num_envs` at a time; an instance that
  finished its episode keeps stepping (it is already on a new episode)
  but its results no longer count.
"""

from __future__ import annotations

from typing import Any

import torch

from incentive.envs.base import BatchedEnv
from incentive.errors import RecipeError
from incentive.metrics import equality
from incentive.ppo import PPO, sample_actions

__all__ = ["Evaluator"]

MAX_EPISODE_STEPS = 100_000


class Evaluator:
    """Plays the learner on the env's held-out test levels every `every` iterations.

    Args:
        env: the training env (its class, params and `test_levels`).
        agents: the seats, in order.
        every: iterations between evaluations (0: never).
        greedy: act greedily (else sample).
        num_envs: test levels played at once.
        seed: the run seed.

    """

    def __init__(
        self, env: BatchedEnv, *, agents: list[str], every: int, greedy: bool, num_envs: int, seed: int
    ) -> None:
        self.env = env
        self.agents = agents
        self.every = every
        self.greedy = greedy
        self.num_envs = num_envs
        self.seed = seed

    @classmethod
    def for_run(cls, recipe: Any, env: BatchedEnv, agents: list[str]) -> Evaluator:
        """The run's evaluator.

        Raises:
            RecipeError: evaluation asked of an env without test levels, or a
                `test/...` objective with evaluation off.

        """
        spec = recipe.evaluate
        if spec.every > 0 and getattr(env, "test_levels", None) is None:
            raise RecipeError(
                f"{recipe.source}: field 'evaluate.every': env {recipe.env.id!r} has no held-out test "
                "levels to evaluate on (set env.params.levels.test, e.g. '10000-10099', or evaluate.every: 0)"
            )
        for index, objective in enumerate(recipe.objectives):
            if objective.metric is None:
                continue  # a searched parameter
            if objective.metric.removeprefix("designer/").startswith("test/") and spec.every == 0:
                where = "objective" if not isinstance(recipe.objective, list) else f"objective.{index}"
                raise RecipeError(
                    f"{recipe.source}: field '{where}.metric': {objective.metric!r} comes from evaluation "
                    "on the held-out test levels, which is off: set evaluate.every (e.g. 5)"
                )
        return cls(
            env,
            agents=agents,
            every=spec.every,
            greedy=spec.policy == "greedy",
            num_envs=spec.num_envs,
            seed=recipe.seed,
        )

    def metrics(self, learner: PPO, iteration: int) -> dict[str, float]:
        """`designer/test/...` metrics if an evaluation is due at this iteration, else {}."""
        if self.every == 0 or iteration % self.every != 0:
            return {}
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + iteration)
        levels = self.env.test_levels
        rewards, infos = [], []
        for chunk in levels.split(self.num_envs):
            reward, info = self._play(learner, chunk, generator)
            rewards.append(reward)
            infos.append(info)
        reward = torch.cat(rewards)
        info = {key: torch.cat([chunk[key] for chunk in infos]) for key in infos[0]}
        out = {
            "designer/test/collective_return": float(reward.sum(1).mean()),
            "designer/test/equality": float(equality(reward).mean()),
        }
        for i, agent in enumerate(self.agents):
            out[f"designer/test/return/{agent}"] = float(reward[:, i].mean())
        for name, value in self.env.episode_metrics(info).items():
            out[f"designer/test/{name}"] = float(value)
        return out

    @torch.no_grad()
    def _play(
        self, learner: PPO, levels: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One episode on each level: (returns [K, A], info totals name -> [K])."""
        k = len(levels)
        env = type(self.env)(num_envs=k, params=self.env.evaluation_params())
        env.allow_test_levels = True
        env.set_task({"level": levels})
        ts = env.reset(seed=self.seed)
        playing = torch.ones(k, dtype=torch.bool)
        reward = torch.zeros(k, len(self.agents))
        info = {key: torch.zeros(k) for key in env.info_keys}
        for _ in range(MAX_EPISODE_STEPS):
            features = learner.features(ts.obs, self.agents)
            logits = learner.net.logits(features)
            mask = learner.action_mask(ts.action_mask, self.agents)
            if mask is not None:
                logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
            actions = logits.argmax(-1) if self.greedy else sample_actions(logits, generator)[0]
            ts = env.step(actions)
            reward += ts.reward * playing[:, None]
            for key in env.info_keys:
                info[key] += ts.info[key] * playing
            playing &= ~ts.done
            if not bool(playing.any()):
                break
        return reward, info
