"""PPO (Schulman et al., 2017) for many agents at once, in PyTorch.

The numerical pieces are small pure functions (`compute_gae`, `ppo_loss`)
tested against hand-computed numbers. The networks are CleanRL's: separate
actor and critic MLPs with tanh, orthogonal init (gain sqrt 2, 0.01 for the
policy head, 1 for the value head).

Parameter sharing is a choice of the recipe. With sharing, one network
serves every agent and sees a one-hot agent id appended to the observation.
Without it, every agent has its own weights. Both run as one batched matmul
(`GroupedLinear` holds G stacks of weights: G = 1 shared, G = A per agent),
so no Python loop over agents is needed.

Heterogeneous agents: observations are flattened and zero-padded to the
largest size; action logits are padded to the largest action count, and
actions an agent does not have are masked like illegal ones. Padding never
changes what a per-agent network computes (zero inputs meet weights that
receive no gradient), and a shared network sees the agent id.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from incentive.adam import Adam
from incentive.recipe import LearnerSpec

__all__ = ["PPO", "GroupedLinear", "compute_gae", "masked_mean", "ppo_loss", "unique_rows"]

MASKED_LOGIT = -1e9
"""Logit of an illegal action: exp() is exactly 0 in float32, and 0 * logit stays finite."""


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    *,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016).

    Args:
        rewards: [T, ...] reward of step t.
        values: [T, ...] value estimate of the state at step t.
        dones: [T, ...] (broadcastable to rewards) 1 where the episode ended
            with step t, so step t + 1 belongs to a new episode.
        next_value: [...] value of the state after the last step.
        gamma: discount.
        gae_lambda: GAE lambda.

    Returns:
        (advantages, returns), both [T, ...]; returns = advantages + values.

    """
    steps = rewards.shape[0]
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[0])
    not_done = 1.0 - dones.to(rewards.dtype)
    for t in reversed(range(steps)):
        following = next_value if t == steps - 1 else values[t + 1]
        delta = rewards[t] + gamma * following * not_done[t] - values[t]
        running = delta + gamma * gae_lambda * not_done[t] * running
        advantages[t] = running
    return advantages, advantages + values


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of x over the entries where mask is True (all entries if mask is None)."""
    if mask is None:
        return x.mean()
    weights = mask.to(x.dtype)
    return (x * weights).sum() / weights.sum().clamp(min=1.0)


def ppo_loss(
    *,
    new_logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    new_value: torch.Tensor,
    old_value: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    policy_mask: torch.Tensor | None,
    value_mask: torch.Tensor | None,
    clip_coef: float,
    clip_vloss: bool,
    vf_coef: float,
    ent_coef: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped PPO objective (CleanRL's form), as a loss to minimise.

    policy = mean(max(-A r, -A clip(r, 1 - c, 1 + c))), r = exp(new - old)
    value  = 0.5 mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2))
             (or 0.5 mean((V - R)^2) without clipping)
    loss   = policy - ent_coef * mean(entropy) + vf_coef * value

    Means run over the masked entries: the policy and entropy terms over
    samples where the learner acted, the value term over the learner's seats.

    Returns:
        (loss, stats) with stats policy, value, entropy, approx_kl, clipfrac.

    """
    log_ratio = new_logprob - old_logprob
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)
    policy = masked_mean(torch.maximum(unclipped, clipped), policy_mask)
    if clip_vloss:
        value_clipped = old_value + (new_value - old_value).clamp(-clip_coef, clip_coef)
        squared = torch.maximum((new_value - returns) ** 2, (value_clipped - returns) ** 2)
    else:
        squared = (new_value - returns) ** 2
    value = 0.5 * masked_mean(squared, value_mask)
    mean_entropy = masked_mean(entropy, policy_mask)
    loss = policy - ent_coef * mean_entropy + vf_coef * value
    with torch.no_grad():
        stats = {
            "policy": policy.detach(),
            "value": value.detach(),
            "entropy": mean_entropy.detach(),
            "approx_kl": masked_mean((ratio - 1) - log_ratio, policy_mask),
            "clipfrac": masked_mean(((ratio - 1.0).abs() > clip_coef).float(), policy_mask),
        }
    return loss, stats


class GroupedLinear(nn.Module):
    """G independent linear layers applied as one batched matmul.

    Input [G, N, d_in] (or [1, N, d_in] broadcast to every group) -> [G, N, d_out].
    With G = 1 it is exactly `nn.Linear` (and as fast: a single addmm).
    """

    def __init__(
        self, groups: int, d_in: int, d_out: int, *, gain: float, generator: torch.Generator
    ) -> None:
        super().__init__()
        weight = torch.empty(groups, d_out, d_in)
        for g in range(groups):
            nn.init.orthogonal_(weight[g], gain=gain, generator=generator)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(groups, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """X @ W^T + b per group."""
        if self.weight.shape[0] == 1:
            return nn.functional.linear(x, self.weight[0], self.bias[0])
        return torch.bmm(x, self.weight.transpose(1, 2)) + self.bias[:, None, :]


def _mlp(groups: int, sizes: list[int], out_gain: float, generator: torch.Generator) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d_in, d_out in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [GroupedLinear(groups, d_in, d_out, gain=math.sqrt(2), generator=generator), nn.Tanh()]
    layers.append(GroupedLinear(groups, sizes[-2], sizes[-1], gain=out_gain, generator=generator))
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs, shared across agents (G = 1) or per agent (G = A)."""

    def __init__(
        self, *, groups: int, obs_dim: int, num_actions: int, hidden: list[int], generator: torch.Generator
    ) -> None:
        super().__init__()
        self.groups = groups
        self.actor = _mlp(groups, [obs_dim, *hidden, num_actions], 0.01, generator)
        self.critic = _mlp(groups, [obs_dim, *hidden, 1], 1.0, generator)

    def _grouped(self, features: torch.Tensor) -> torch.Tensor:
        # [N, A, D] -> [G, rows, D]: one group of N*A rows, or A groups of N rows.
        n, a, d = features.shape
        if self.groups == 1:
            return features.reshape(1, n * a, d)
        return features.transpose(0, 1)

    def _ungrouped(self, out: torch.Tensor, n: int, a: int) -> torch.Tensor:
        if self.groups == 1:
            return out.reshape(n, a, -1)
        return out.transpose(0, 1)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """[N, A, D] -> [N, A, num_actions]."""
        n, a, _ = features.shape
        return self._ungrouped(self.actor(self._grouped(features)), n, a)

    def value(self, features: torch.Tensor) -> torch.Tensor:
        """[N, A, D] -> [N, A]."""
        n, a, _ = features.shape
        return self._ungrouped(self.critic(self._grouped(features)), n, a).squeeze(-1)


_HASH_WEIGHTS: dict[int, torch.Tensor] = {}


def unique_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Exact deduplication of the rows of a float matrix.

    Rows are hashed (their bit patterns dotted with fixed random 64-bit
    weights) and sorted by hash; the result is then verified row for row, so
    a hash collision can never merge two different observations (it returns
    None instead).

    Returns:
        (distinct rows [U, D], inverse [M]) with rows == distinct[inverse], or None.
    """
    m, d = rows.shape
    weights = _HASH_WEIGHTS.get(d)
    if weights is None:  # fixed per width, independent of every run's random streams
        generator = torch.Generator().manual_seed(d)
        weights = torch.randint(-(2**62), 2**62, (d,), generator=generator, dtype=torch.int64) | 1
        _HASH_WEIGHTS[d] = weights
    bits = rows.contiguous().view(torch.int32).to(torch.int64)
    keys = (bits * weights).sum(1)
    distinct_keys, inverse = torch.unique(keys, return_inverse=True)
    first = torch.zeros(len(distinct_keys), dtype=torch.int64).scatter_(0, inverse, torch.arange(m))
    distinct = rows[first]
    if not torch.equal(distinct[inverse], rows):
        return None
    return distinct, inverse


def _masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return logits if mask is None else logits.masked_fill(~mask, MASKED_LOGIT)


def sample_actions(logits: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-max sampling from an explicit generator (deterministic, resumable).

    Returns:
        (actions, log-probabilities), each logits.shape[:-1].

    """
    uniform = torch.rand(logits.shape, generator=generator).clamp_(min=1e-20)
    actions = (logits - (-uniform.log()).log()).argmax(-1)
    logprob = torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return actions, logprob


def _logprob_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    log_p = torch.log_softmax(logits, -1)
    logprob = log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return logprob, entropy


@dataclass
class Batch:
    """Flattened training data: N samples (T*E), each with A seats."""

    features: torch.Tensor  # [N, A, D]
    action_mask: torch.Tensor | None  # [N, A, n]
    actions: torch.Tensor  # [N, A]
    logprobs: torch.Tensor  # [N, A]
    values: torch.Tensor  # [N, A]
    advantages: torch.Tensor  # [N, A]
    returns: torch.Tensor  # [N, A]
    policy_mask: torch.Tensor  # [N, A] learner acted
    value_mask: torch.Tensor  # [N, A] learner's seat

    @classmethod
    def from_rollout(cls, **tensors: torch.Tensor | None) -> Batch:
        """The batch of a rollout's [T, E, ...] tensors (the fields by name), flattened to [T * E, ...]."""
        return cls(**{name: None if x is None else x.flatten(0, 1) for name, x in tensors.items()})


class PPO:
    """The learner: acts for the learner's seats and updates from rollouts.

    Args:
        config: the recipe's learner section.
        obs_dims: flattened observation size of each agent.
        action_dims: number of actions of each agent.
        generator: the learner's random stream (init, sampling, minibatches).

    """

    def __init__(
        self,
        *,
        config: LearnerSpec,
        obs_dims: list[int],
        action_dims: list[int],
        generator: torch.Generator,
    ) -> None:
        self.config = config
        self.generator = generator
        self.num_agents = len(obs_dims)
        self.obs_dims = obs_dims
        self.action_dims = action_dims
        self.num_actions = max(action_dims)
        self.feature_dim = max(obs_dims) + (self.num_agents if config.share_parameters else 0)
        groups = 1 if config.share_parameters else self.num_agents
        self.net = ActorCritic(
            groups=groups,
            obs_dim=self.feature_dim,
            num_actions=self.num_actions,
            hidden=list(config.hidden_sizes),
            generator=generator,
        )
        self.optimizer = Adam(self.net.parameters(), lr=config.lr, eps=1e-5)
        padded = torch.tensor(action_dims)[:, None] > torch.arange(self.num_actions)
        self.padding_mask = None if padded.all() else padded  # [A, n]

    # --- acting ----------------------------------------------------------

    def features(self, obs: dict[str, torch.Tensor], agents: list[str]) -> torch.Tensor:
        """Agent observations -> [E, A, D]: flattened, zero-padded, agent id appended if shared."""
        flat = [obs[a].reshape(obs[a].shape[0], -1).to(torch.float32) for a in agents]
        e = flat[0].shape[0]
        if all(f.shape[1] == self.feature_dim for f in flat):
            return torch.stack(flat, 1)
        out = torch.zeros(e, self.num_agents, self.feature_dim)
        for i, f in enumerate(flat):
            out[:, i, : f.shape[1]] = f
        if self.config.share_parameters:
            out[:, :, -self.num_agents :] = torch.eye(self.num_agents)
        return out

    def action_mask(self, masks: dict[str, torch.Tensor] | None, agents: list[str]) -> torch.Tensor | None:
        """Env action masks and padding -> [E, A, n] bool.

        Without env masks this is the [A, n] padding mask (broadcasts over E),
        or None when every agent has every action.
        """
        if masks is None:
            return None if self.padding_mask is None else self.padding_mask
        e = next(iter(masks.values())).shape[0]
        out = torch.ones(e, self.num_agents, self.num_actions, dtype=torch.bool)
        for i, agent in enumerate(agents):
            if agent in masks:
                out[:, i, : masks[agent].shape[1]] = masks[agent].bool()
        if self.padding_mask is not None:
            out &= self.padding_mask
        return out

    @torch.no_grad()
    def act(
        self, features: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample actions for every seat: (actions, log-probs, values, policy entropies), each [E, A].

        The entropy (nats, of the masked policy) is what PLR's `policy_entropy` score reads.
        """
        logits = _masked_logits(self.net.logits(features), mask)
        actions, logprob = sample_actions(logits, self.generator)
        log_p = torch.log_softmax(logits, -1)
        entropy = -(log_p.exp() * log_p).sum(-1)
        return actions, logprob, self.net.value(features), entropy

    @torch.no_grad()
    def value(self, features: torch.Tensor) -> torch.Tensor:
        """State values [E, A]."""
        return self.net.value(features)

    # --- learning --------------------------------------------------------

    def set_lr_fraction(self, fraction: float) -> None:
        """Scale the learning rate (linear annealing)."""
        self.optimizer.lr = self.config.lr * fraction

    def update(self, batch: Batch) -> dict[str, float]:
        """Epochs of minibatch PPO on one rollout; returns mean loss statistics."""
        cfg = self.config
        n = batch.actions.shape[0]
        size = max(1, n // cfg.minibatches)
        distinct = self._distinct_features(batch.features) if cfg.dedup_observations else None
        totals: dict[str, torch.Tensor] = {}
        count = 0
        for _ in range(cfg.epochs):
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n - size + 1, size):
                idx = order[start : start + size]
                stats = self._minibatch_step(batch, idx, distinct)
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
        return {key: float(value) / count for key, value in totals.items()}

    def _distinct_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(distinct rows [U, D], row index [N, A]) when a shared network sees many repeats, else None."""
        if self.net.groups != 1:
            return None
        n, a, d = features.shape
        found = unique_rows(features.reshape(n * a, d))
        if found is None or found[0].shape[0] > n * a // 2:
            return None
        return found[0], found[1].view(n, a)

    def _minibatch_step(
        self, batch: Batch, idx: torch.Tensor, distinct: tuple[torch.Tensor, torch.Tensor] | None
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        mask = batch.action_mask
        if mask is not None:  # [N, A, n] per sample, or one [A, n] padding mask for all
            mask = mask.expand(len(idx), -1, -1) if mask.dim() == 2 else mask[idx]
        if distinct is None:
            features = batch.features[idx]
            logits, new_value = self.net.logits(features), self.net.value(features)
        else:
            # each distinct observation goes through the networks once; rows gather the results
            rows, where = torch.unique(distinct[1][idx], return_inverse=True)
            features = distinct[0][rows].unsqueeze(0)
            logits = self.net.actor(features)[0][where]
            new_value = self.net.critic(features)[0, :, 0][where]
        new_logprob, entropy = _logprob_entropy(_masked_logits(logits, mask), batch.actions[idx])
        policy_mask = batch.policy_mask[idx]
        advantages = batch.advantages[idx]
        if cfg.norm_adv:
            mean = masked_mean(advantages, policy_mask)
            var = masked_mean((advantages - mean) ** 2, policy_mask)
            count = policy_mask.sum()
            std = (var * count / (count - 1).clamp(min=1)).sqrt()
            advantages = (advantages - mean) / (std + 1e-8)
        loss, stats = ppo_loss(
            new_logprob=new_logprob,
            old_logprob=batch.logprobs[idx],
            advantages=advantages,
            new_value=new_value,
            old_value=batch.values[idx],
            returns=batch.returns[idx],
            entropy=entropy,
            policy_mask=policy_mask,
            value_mask=batch.value_mask[idx],
            clip_coef=cfg.clip_coef,
            clip_vloss=cfg.clip_vloss,
            vf_coef=cfg.vf_coef,
            ent_coef=cfg.ent_coef,
        )
        self.optimizer.zero_grad()
        loss.backward()
        stats["grad_norm"] = nn.utils.clip_grad_norm_(self.net.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        return stats

    # --- snapshots and checkpoints ---------------------------------------

    def snapshot(self, seed: int) -> FrozenPolicy:
        """A frozen copy of the current policy, to fill opponent seats."""
        return FrozenPolicy(self, seed)

    def state_dict(self) -> dict:
        """Networks, optimizer and random stream."""
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict`."""
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])


class FrozenPolicy:
    """A snapshot of the learner's actor that plays seats without learning.

    Args:
        learner: the learner to copy.
        seed: seed of the snapshot's own sampling stream.

    """

    def __init__(self, learner: PPO, seed: int) -> None:
        self.net = copy.deepcopy(learner.net).requires_grad_(False)
        self.learner_features = learner.features
        self.learner_mask = learner.action_mask
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def act(
        self,
        obs: dict[str, torch.Tensor],
        action_mask: dict[str, torch.Tensor] | None,
        seats: torch.Tensor,
    ) -> torch.Tensor:
        """Actions [E, A] for every seat (the caller uses the ones in `seats`)."""
        agents = list(obs)
        logits = _masked_logits(
            self.net.logits(self.learner_features(obs, agents)), self.learner_mask(action_mask, agents)
        )
        return sample_actions(logits, self.generator)[0]
