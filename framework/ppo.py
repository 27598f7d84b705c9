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

Batched trials (`incentive run --seeds`, `incentive search --batch`): one
learner can hold K independent trials, each with its own networks (K*G
weight stacks in the same `GroupedLinear`), its own random stream (given as
a list of K generators) and its own slice of the samples (trial k owns
instances [k*E, (k+1)*E) when acting, and its own [T*E] samples when
updating). Everything that reduces is per trial: minibatch permutations
(each trial's generator), advantage normalisation, loss means, the
gradient-norm clip (a global clip would couple the trials) and the loss
statistics; Adam is elementwise. So trial k computes bit for bit what a
lone learner seeded like it computes, and K = 1 is the lone learner.

The league's learners (`incentive.league.LeagueLearners`) are K trials too,
with `independent_trials`: each trial keeps its own optimiser step count, an
update can leave trials out, and they act on different numbers of rows
(`ActorCritic.own_rows`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from incentive.adam import Adam, TrialAdam
from incentive.conv_torso import ConvTorso, image_shape
from incentive.recipe import LearnerSpec

if TYPE_CHECKING:
    from incentive.envs.base import BatchedEnv

__all__ = ["PPO", "GroupedLinear", "compute_gae", "gumbel_max", "masked_mean", "ppo_loss", "unique_rows"]

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


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None, *, per_trial: bool = False) -> torch.Tensor:
    """Mean of x over the entries where mask is True (all entries if mask is None).

    With `per_trial`, the first dimension is the trial: one mean per trial, [K].
    """
    if per_trial:  # reduced in place (no copy), so each trial sums in a lone learner's memory order
        dims = tuple(range(1, x.dim()))
        if mask is None:
            return x.mean(dims)
        weights = mask.to(x.dtype)
        return (x * weights).sum(dims) / weights.sum(dims).clamp(min=1.0)
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
    per_trial: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped PPO objective (CleanRL's form), as a loss to minimise.

    policy = mean(max(-A r, -A clip(r, 1 - c, 1 + c))), r = exp(new - old)
    value  = 0.5 mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2))
             (or 0.5 mean((V - R)^2) without clipping)
    loss   = policy - ent_coef * mean(entropy) + vf_coef * value

    Means run over the masked entries: the policy and entropy terms over
    samples where the learner acted, the value term over the learner's seats.
    With `per_trial`, the inputs lead with a trial dimension K and the loss
    and every statistic are [K], one per trial.

    Returns:
        (loss, stats) with stats policy, value, entropy, approx_kl, clipfrac.

    """
    log_ratio = new_logprob - old_logprob
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)
    mean = lambda x, mask: masked_mean(x, mask, per_trial=per_trial)  # noqa: E731
    policy = mean(torch.maximum(unclipped, clipped), policy_mask)
    if clip_vloss:
        value_clipped = old_value + (new_value - old_value).clamp(-clip_coef, clip_coef)
        squared = torch.maximum((new_value - returns) ** 2, (value_clipped - returns) ** 2)
    else:
        squared = (new_value - returns) ** 2
    value = 0.5 * mean(squared, value_mask)
    mean_entropy = mean(entropy, policy_mask)
    loss = policy - ent_coef * mean_entropy + vf_coef * value
    with torch.no_grad():
        stats = {
            "policy": policy.detach(),
            "value": value.detach(),
            "entropy": mean_entropy.detach(),
            "approx_kl": mean((ratio - 1) - log_ratio, policy_mask),
            "clipfrac": mean(((ratio - 1.0).abs() > clip_coef).float(), policy_mask),
        }
    return loss, stats


Unbound = tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]
"""A `GroupedLinear`'s (weights, biases), one view per group."""


class GroupedLinear(nn.Module):
    """G independent linear layers applied as one batched matmul.

    Input [G, N, d_in] (or [1, N, d_in] broadcast to every group) -> [G, N, d_out].
    With G = 1 it is exactly `nn.Linear` (and as fast: a single addmm).

    K trials of one-group (shared) networks run as K addmm calls, not one
    bmm: bmm's kernels sum in another order than addmm's for some shapes
    (one output: gemv against gemm; weight gradients at 5-9 outputs), and a
    trial must compute bit for bit what it computes alone. One bmm would not
    be faster either: at the update's sizes it runs at the addmm calls'
    GFLOP/s, it saves a few percent of a run only at the rollout's small
    ones (`benchmarks/batched_trials.py --kernels`). Per-agent groups are bmm
    alone as batched, so K*A groups stay one bmm (tested equal). The K groups
    are cut by one `unbind` per layer, so the backward gathers their
    gradients in one stack (K `weight[k]` selects would each scatter into a
    zero [K, ...] tensor, summed K times: O(K^2)).

    Args:
        groups: G.
        generator: initialises the groups in order; or a list of K
            generators (K trials), generator k initialising groups
            k*G/K .. (k+1)*G/K - 1, so each trial's weights are those of a
            lone learner seeded like it.
    """

    def __init__(
        self,
        groups: int,
        d_in: int,
        d_out: int,
        *,
        gain: float,
        generator: torch.Generator | list[torch.Generator],
    ) -> None:
        super().__init__()
        generators = generator if isinstance(generator, list) else [generator]
        self.trials = len(generators)
        per = groups // len(generators)
        weight = torch.empty(groups, d_out, d_in)
        for g in range(groups):
            nn.init.orthogonal_(weight[g], gain=gain, generator=generators[g // per])
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(groups, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """X @ W^T + b per group."""
        if self.weight.shape[0] == 1:
            return nn.functional.linear(x, self.weight[0], self.bias[0])
        if self.weight.shape[0] == self.trials:  # one shared network per trial: addmm each (see above)
            # unbind, not weight[k]: autograd then stacks the K gradients once, where K selects
            # would each scatter into a zero [K, ...] tensor and sum them (O(K^2) memory traffic)
            return torch.stack(
                [
                    nn.functional.linear(rows, weight, bias)
                    for rows, weight, bias in zip(x.unbind(0), *self.unbound(), strict=True)
                ]
            )
        return torch.bmm(x, self.weight.transpose(1, 2)) + self.bias[:, None, :]

    def unbound(self) -> Unbound:
        """(weights, biases) of every group as views, cut in one autograd node each."""
        return self.weight.unbind(0), self.bias.unbind(0)


def _mlp(
    groups: int, sizes: list[int], out_gain: float, generator: torch.Generator | list[torch.Generator]
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d_in, d_out in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [GroupedLinear(groups, d_in, d_out, gain=math.sqrt(2), generator=generator), nn.Tanh()]
    layers.append(GroupedLinear(groups, sizes[-2], sizes[-1], gain=out_gain, generator=generator))
    return nn.Sequential(*layers)


def unbound_layers(mlp: nn.Sequential) -> list[Unbound | None]:
    """Per layer of `mlp`, `GroupedLinear.unbound()` (None for activations): cut once, used by every group."""
    return [layer.unbound() if isinstance(layer, GroupedLinear) else None for layer in mlp]


def group_forward(
    mlp: nn.Sequential,
    x: torch.Tensor,
    group: int,
    layers: list[Unbound | None] | None = None,
) -> torch.Tensor:
    """One group's MLP on [1, N, d_in]: the ops a one-group network runs, with group `group`'s weights.

    `layers` (from `unbound_layers`) lets K calls share one unbind per layer, so the backward
    gathers the K groups' gradients in one stack instead of K scatters into zero tensors.
    """
    layers = layers or unbound_layers(mlp)
    for layer, cut in zip(mlp, layers, strict=True):
        if cut is not None:
            weights, biases = cut
            x = nn.functional.linear(x, weights[group], biases[group])
        else:
            x = layer(x)
    return x


def _groups_forward(mlp: nn.Sequential, x: torch.Tensor, first: int, count: int) -> torch.Tensor:
    """Groups first .. first + count - 1 of `mlp` on x [count, N, d_in]: a lone per-agent network's bmm."""
    for layer in mlp:
        if isinstance(layer, GroupedLinear):
            weight = layer.weight[first : first + count]
            bias = layer.bias[first : first + count]
            x = torch.bmm(x, weight.transpose(1, 2)) + bias[:, None, :]
        else:
            x = layer(x)
    return x


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs, shared across agents (G = 1) or per agent (G = A).

    With K trials the networks hold K*G groups; inputs [K*N, A, D] are K
    blocks of N rows, block k for trial k.
    """

    def __init__(
        self,
        *,
        groups: int,
        obs_dim: int,
        num_actions: int,
        hidden: list[int],
        generator: torch.Generator | list[torch.Generator],
        image: tuple[int, int, int] | None = None,
        conv_channels: list[int] | None = None,
        conv_kernel: int = 3,
    ) -> None:
        super().__init__()
        self.trials = len(generator) if isinstance(generator, list) else 1
        self.groups = groups  # per trial
        total = groups * self.trials
        self.actor = self._network(
            total, obs_dim, hidden, num_actions, 0.01, generator, image, conv_channels, conv_kernel
        )
        self.critic = self._network(
            total, obs_dim, hidden, 1, 1.0, generator, image, conv_channels, conv_kernel
        )

    @staticmethod
    def _network(
        groups: int,
        obs_dim: int,
        hidden: list[int],
        out: int,
        out_gain: float,
        generator: torch.Generator | list[torch.Generator],
        image: tuple[int, int, int] | None,
        conv_channels: list[int] | None,
        conv_kernel: int,
    ) -> nn.Sequential:
        """The MLP, behind a convolutional torso when `conv_channels` is given (one group only)."""
        if not conv_channels:
            return _mlp(groups, [obs_dim, *hidden, out], out_gain, generator)
        if groups != 1 or isinstance(generator, list) or image is None:
            raise ValueError("a convolutional torso needs one shared network, one trial and an image shape")
        torso = ConvTorso(image, conv_channels, conv_kernel, obs_dim - math.prod(image), generator)
        return nn.Sequential(torso, *_mlp(1, [torso.out_dim, *hidden, out], out_gain, generator))

    def _grouped(self, features: torch.Tensor) -> torch.Tensor:
        # [K*N, A, D] -> [K*G, rows, D]: per trial one group of N*A rows, or A groups of N rows.
        n, a, d = features.shape
        k = self.trials
        if self.groups == 1:
            return features.reshape(k, n // k * a, d)
        if k == 1:
            return features.transpose(0, 1)
        # [N, K*A, D] seen as [K*A, N, D]: each group strided as a lone learner's
        return features.view(k, n // k, a, d).transpose(0, 1).reshape(n // k, k * a, d).transpose(0, 1)

    def _per_trial(self, out: torch.Tensor, n: int, a: int) -> torch.Tensor:
        # [K*G, rows, o] -> [K, N, A, o]; each trial keeps a lone learner's memory layout (per-agent
        # groups: agent-major), so reductions over it sum in the same order
        k = self.trials
        if self.groups == 1:
            return out.view(k, n // k, a, -1)
        return out.view(k, a, n // k, -1).transpose(1, 2)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """[K*N, A, D] -> [K*N, A, num_actions]."""
        n, a, _ = features.shape
        return self._per_trial(self.actor(self._grouped(features)), n, a).reshape(n, a, -1)

    def value(self, features: torch.Tensor) -> torch.Tensor:
        """[K*N, A, D] -> [K*N, A]."""
        n, a, _ = features.shape
        return self._per_trial(self.critic(self._grouped(features)), n, a).reshape(n, a)

    def trial_logits(self, features: torch.Tensor) -> torch.Tensor:
        """[K, N, A, D] -> [K, N, A, num_actions]."""
        k, n, a, d = features.shape
        return self._per_trial(self.actor(self._grouped(features.reshape(k * n, a, d))), k * n, a)

    def trial_value(self, features: torch.Tensor) -> torch.Tensor:
        """[K, N, A, D] -> [K, N, A]."""
        k, n, a, d = features.shape
        return self._per_trial(self.critic(self._grouped(features.reshape(k * n, a, d))), k * n, a).squeeze(
            -1
        )

    def own_rows(
        self, features: list[torch.Tensor], trials: list[int] | None = None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per trial, (logits [N_k, A, n], values [N_k, A]) of its own rows `features[i]` [N_k, A, D].

        `features[i]` belongs to trial `trials[i]` (default: trial i). The trials may have
        different row counts (the league's learners, each on its own instances). Each trial runs
        the ops that a lone network runs on its rows: no padding to a common count, and each
        trial's rows should be a tensor of their own (not a slice at an offset of a shared one),
        since a matmul's sums can change with the number of rows and with where they sit in memory.
        """
        if self.trials == 1:
            return [self.logits(features[0])], [self.value(features[0])]
        actor, critic = unbound_layers(self.actor), unbound_layers(self.critic)
        logits, values = [], []
        for trial, rows in zip(trials or range(len(features)), features, strict=True):
            n, a, d = rows.shape
            if self.groups == 1:
                x = rows.reshape(1, n * a, d)
                logits.append(group_forward(self.actor, x, trial, actor).view(n, a, -1))
                values.append(group_forward(self.critic, x, trial, critic).view(n, a))
                continue
            x = rows.transpose(0, 1)  # [A, N, D]: a lone learner's per-agent groups
            first = trial * self.groups
            out = _groups_forward(self.actor, x, first, self.groups)
            logits.append(out.transpose(0, 1).reshape(n, a, -1))
            values.append(_groups_forward(self.critic, x, first, self.groups).transpose(0, 1).reshape(n, a))
        return logits, values


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
    # int64 arithmetic wraps (mod 2^64), so the keys are exact in any summation order: one
    # matrix-vector product, not an [M, D] int64 product and a sum
    keys = rows.contiguous().view(torch.int32).to(torch.int64) @ weights
    distinct_keys, inverse = torch.unique(keys, return_inverse=True)
    first = torch.zeros(len(distinct_keys), dtype=torch.int64).scatter_(0, inverse, torch.arange(m))
    distinct = rows[first]
    if not torch.equal(distinct[inverse], rows):
        return None
    return distinct, inverse


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows idx [K, M] of each trial's x [K, N, ...] -> [K, M, ...] (one index_select: fast on CPU)."""
    k, n = x.shape[:2]
    flat = (idx + torch.arange(0, k * n, n)[:, None]).flatten()
    return x.reshape(k * n, *x.shape[2:]).index_select(0, flat).view(*idx.shape, *x.shape[2:])


def _masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return logits if mask is None else logits.masked_fill(~mask, MASKED_LOGIT)


def trial_uniform(shape: tuple[int, ...], generator: torch.Generator | list[torch.Generator]) -> torch.Tensor:
    """Uniform [0, 1) noise of `shape`; with K generators, rows block k (of shape[0] / K) from generator k."""
    if not isinstance(generator, list):
        return torch.rand(shape, generator=generator)
    block = (shape[0] // len(generator), *shape[1:])
    return torch.cat([torch.rand(block, generator=g) for g in generator])


def sample_actions(
    logits: torch.Tensor, generator: torch.Generator | list[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gumbel-max sampling from an explicit generator (deterministic, resumable).

    Args:
        logits: [N, ..., n].
        generator: the stream; or K streams, one per trial (block k of the N rows).

    Returns:
        (actions, log-probabilities), each logits.shape[:-1].

    """
    return gumbel_max(logits, trial_uniform(tuple(logits.shape), generator))


def gumbel_max(logits: torch.Tensor, uniform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(actions, log-probabilities) of Gumbel-max sampling with uniform noise (clamped in place)."""
    uniform = uniform.clamp_(min=1e-20)
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
    """Flattened training data: N samples (T*E), each with A seats.

    For `PPO.update_trials` every field leads with the trial dimension K
    ([K, N, ...]; a [A, n] padding mask stays as it is).
    """

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
        image: [H, W, C] of every agent's observation, for `learner.conv_channels`.
        generator: the learner's random stream (init, sampling, minibatches);
            or a list of K streams: K independent trials in one learner
            (see the module docstring), acting on K*E instances.
        independent_trials: each trial keeps its own optimiser step count
            (`incentive.adam.TrialAdam`), so `update_trials` can leave trials
            out and one trial's optimiser can start afresh (the league's learners).

    """

    def __init__(
        self,
        *,
        config: LearnerSpec,
        obs_dims: list[int],
        action_dims: list[int],
        generator: torch.Generator | list[torch.Generator],
        image: tuple[int, int, int] | None = None,
        independent_trials: bool = False,
    ) -> None:
        self.config = config
        self.generator = generator
        self.generators = generator if isinstance(generator, list) else [generator]
        self.trials = len(self.generators)
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
            image=image,
            conv_channels=list(config.conv_channels),
            conv_kernel=config.conv_kernel,
        )
        if independent_trials:
            self.optimizer: Adam = TrialAdam(
                self.net.parameters(), trials=self.trials, lr=config.lr, eps=1e-5
            )
        else:
            self.optimizer = Adam(self.net.parameters(), lr=config.lr, eps=1e-5)
        padded = torch.tensor(action_dims)[:, None] > torch.arange(self.num_actions)
        self.padding_mask = None if padded.all() else padded  # [A, n]

    @classmethod
    def for_env(
        cls,
        config: LearnerSpec,
        env: BatchedEnv,
        agents: list[str],
        generator: torch.Generator | list[torch.Generator],
        *,
        independent_trials: bool = False,
    ) -> PPO:
        """A learner sized for `env`'s agents: each one's flattened observation and action count."""
        return cls(
            config=config,
            obs_dims=[math.prod(env.observation_spaces[a].shape) for a in agents],
            action_dims=[int(env.action_spaces[a].n) for a in agents],
            generator=generator,
            image=image_shape(env, agents) if config.conv_channels else None,
            independent_trials=independent_trials,
        )

    # --- acting ----------------------------------------------------------

    def features(self, obs: dict[str, torch.Tensor], agents: list[str]) -> torch.Tensor:
        """Agent observations -> [E, A, D]: flattened, zero-padded, agent id appended if shared."""
        flat = [obs[a].reshape(obs[a].shape[0], -1).to(torch.float32) for a in agents]
        e = flat[0].shape[0]
        if all(f.shape[1] == self.feature_dim for f in flat):
            return torch.stack(flat, 1)
        padded = any(f.shape[1] != max(self.obs_dims) for f in flat)
        # zero-filled only when some observation is padded: every other entry is written below
        out = (torch.zeros if padded else torch.empty)(e, self.num_agents, self.feature_dim)
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
        if self.trials != 1:
            raise ValueError(f"this learner holds {self.trials} trials: use update_trials")
        trial = {key: getattr(batch, key) for key in vars(batch)}
        for key, value in trial.items():
            if value is not None and not (key == "action_mask" and value.dim() == 2):
                trial[key] = value.unsqueeze(0)
        return self.update_trials(Batch(**trial))[0]

    def update_trials(self, batch: Batch, active: list[bool] | None = None) -> list[dict[str, float]]:
        """`update` for K trials at once: batch fields are [K, N, ...]; one statistics dict per trial.

        `active` (with `independent_trials`) leaves trials out: a trial that is not active draws
        no minibatch order, its weights and optimiser state stay as they are, and its statistics
        are an empty dict, as if it had not been updated at all. Its rows still run through the
        networks (their gradients are computed and dropped): the others' results do not depend on them.
        """
        cfg = self.config
        if active is not None and not isinstance(self.optimizer, TrialAdam):
            raise ValueError("leaving trials out of an update needs a learner with independent_trials")
        on = [True] * self.trials if active is None else list(active)
        n = batch.actions.shape[1]
        size = max(1, n // cfg.minibatches)
        distinct = self._distinct_features(batch.features) if cfg.dedup_observations else None
        totals: dict[str, torch.Tensor] = {}
        count = 0
        for _ in range(cfg.epochs):
            order = torch.stack(
                [
                    torch.randperm(n, generator=g) if go else torch.arange(n)
                    for g, go in zip(self.generators, on, strict=True)
                ]
            )
            for start in range(0, n - size + 1, size):
                idx = order[:, start : start + size]
                stats = self._minibatch_step(batch, idx, distinct, active)
                for key, value in stats.items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
        return [
            {key: float(value[k]) / count for key, value in totals.items()} if on[k] else {}
            for k in range(self.trials)
        ]

    def trial_net_state(self, trial: int) -> dict[str, torch.Tensor]:
        """Trial `trial`'s weights as a one-trial network's `state_dict` (copies, not views)."""
        out = {}
        for key, value in self.net.state_dict().items():
            per = value.shape[0] // self.trials
            out[key] = value[trial * per : (trial + 1) * per].clone()
        return out

    @torch.no_grad()
    def load_trial_net(self, trial: int, net_state: dict[str, torch.Tensor]) -> None:
        """Write a one-trial network's `state_dict` into trial `trial`'s weights."""
        own = self.net.state_dict()
        if set(net_state) != set(own):
            raise ValueError(f"network state has keys {sorted(net_state)}, the network {sorted(own)}")
        for key, value in own.items():
            per = value.shape[0] // self.trials
            value[trial * per : (trial + 1) * per].copy_(net_state[key])

    def _distinct_features(
        self, features: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor] | None] | None:
        """Per trial, (distinct rows [U, D], row index [N, A]) when a shared network sees many repeats.

        None when no trial has them (or the networks are per agent).
        """
        if self.net.groups != 1:
            return None
        _, n, a, d = features.shape
        out: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for trial in features:
            found = unique_rows(trial.reshape(n * a, d))
            out.append(
                None if found is None or found[0].shape[0] > n * a // 2 else (found[0], found[1].view(n, a))
            )
        return None if all(found is None for found in out) else out

    def _forward(
        self,
        features: torch.Tensor,
        idx: torch.Tensor,
        distinct: list[tuple[torch.Tensor, torch.Tensor] | None] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits [K, M, A, n], values [K, M, A]) of the minibatch rows idx [K, M] of each trial."""
        k, m = idx.shape
        a = features.shape[2]
        if distinct is None:  # every trial's rows through its networks in one batched call
            chosen = _take(features, idx)
            return self.net.trial_logits(chosen), self.net.trial_value(chosen)
        # some trial has few distinct observations: each trial runs the lone learner's ops
        actor, critic = unbound_layers(self.net.actor), unbound_layers(self.net.critic)
        logits, values = [], []
        for trial in range(k):
            if distinct[trial] is None:
                rows = features[trial, idx[trial]].reshape(1, m * a, -1)
                logits.append(group_forward(self.net.actor, rows, trial, actor).view(m, a, -1))
                values.append(group_forward(self.net.critic, rows, trial, critic).view(m, a))
            else:
                # each distinct observation goes through the networks once; rows gather the results
                rows, where = torch.unique(distinct[trial][1][idx[trial]], return_inverse=True)
                unique = distinct[trial][0][rows].unsqueeze(0)
                logits.append(group_forward(self.net.actor, unique, trial, actor)[0][where])
                values.append(group_forward(self.net.critic, unique, trial, critic)[0, :, 0][where])
        return torch.stack(logits), torch.stack(values)

    def _minibatch_step(
        self,
        batch: Batch,
        idx: torch.Tensor,
        distinct: list[tuple[torch.Tensor, torch.Tensor] | None] | None,
        active: list[bool] | None = None,
    ) -> dict[str, torch.Tensor]:
        cfg = self.config
        take = lambda x: _take(x, idx)  # noqa: E731  [K, N, ...] -> [K, M, ...]
        mask = batch.action_mask
        if mask is not None:  # [K, N, A, n] per sample, or one [A, n] padding mask for all
            mask = mask.expand(*idx.shape, -1, -1) if mask.dim() == 2 else take(mask)
        logits, new_value = self._forward(batch.features, idx, distinct)
        new_logprob, entropy = _logprob_entropy(_masked_logits(logits, mask), take(batch.actions))
        policy_mask = take(batch.policy_mask)
        advantages = take(batch.advantages)
        if cfg.norm_adv:  # per trial
            mean = masked_mean(advantages, policy_mask, per_trial=True)[:, None, None]
            var = masked_mean((advantages - mean) ** 2, policy_mask, per_trial=True)
            count = policy_mask.flatten(1).sum(1)
            std = (var * count / (count - 1).clamp(min=1)).sqrt()[:, None, None]
            advantages = (advantages - mean) / (std + 1e-8)
        loss, stats = ppo_loss(
            new_logprob=new_logprob,
            old_logprob=take(batch.logprobs),
            advantages=advantages,
            new_value=new_value,
            old_value=take(batch.values),
            returns=take(batch.returns),
            entropy=entropy,
            policy_mask=policy_mask,
            value_mask=take(batch.value_mask),
            clip_coef=cfg.clip_coef,
            clip_vloss=cfg.clip_vloss,
            vf_coef=cfg.vf_coef,
            ent_coef=cfg.ent_coef,
            per_trial=True,
        )
        self.optimizer.zero_grad()
        loss.sum().backward()  # each trial's weights get exactly its own loss's gradient
        stats["grad_norm"] = self._clip_grad_norm(cfg.max_grad_norm)
        if active is None:
            self.optimizer.step()
        else:
            self.optimizer.step(active=active)
        return stats

    def _clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """`nn.utils.clip_grad_norm_` per trial: each trial scaled by its own norm; returns [K]."""
        grads = [p.grad.view(self.trials, -1) for p in self.net.parameters() if p.grad is not None]
        norms = torch.stack([torch.linalg.vector_norm(g, 2.0, dim=1) for g in grads], dim=1)  # [K, P]
        total = torch.linalg.vector_norm(norms, 2.0, dim=1)
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef[:, None])
        return total

    # --- snapshots and checkpoints ---------------------------------------

    def snapshot(self, seed: int) -> FrozenPolicy:
        """A frozen copy of the current policy, to fill opponent seats."""
        return FrozenPolicy(self, seed)

    def state_dict(self) -> dict:
        """Networks, optimizer and random stream."""
        streams = [g.get_state() for g in self.generators]
        return {
            "net": self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": streams[0] if self.trials == 1 else streams,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict`."""
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        streams = state["generator"] if self.trials > 1 else [state["generator"]]
        for generator, stream in zip(self.generators, streams, strict=True):
            generator.set_state(stream)


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
