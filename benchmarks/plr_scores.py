"""Which levels does PLR favour, and does the learner solve them? (level scores against success)

Loads a finished PLR run (its `recipe.yaml` and `checkpoint.pt`) and, for
every training level, plays `--episodes` sampled episodes from the level's
start with the saved learner, recording the values V(s_t) and rewards as the
training loop does (a truncated episode bootstraps gamma * V(final obs), as
the learner's targets do). Per level it prints the success rate and the
scores each PLR strategy would give those episodes:

- value_l1: mean |A_t| (GAE advantages, the run's gamma and lambda);
- positive_value_loss: mean max(A_t, 0);
- max_mc: mean (R_max - V(s_t)), R_max the highest episode return among
  the probe episodes (or the plugin's own R_max where the run kept one);

and, from the checkpoint's plugin state, the level's stored score and its
replay probability P(i) (score rank and staleness as the sampler computes
them). Summary lines: the success rate weighted by P (what the sampler
replays) against the plain mean, and each score's mean in three success
bins (never solved, sometimes, always). Means run over the steps of every
episode and over the learning seats:

    python benchmarks/plr_scores.py <run dir> --episodes 32
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from incentive.checkpoint import load_checkpoint
from incentive.loop import make_env
from incentive.plugins.prioritized_level_replay import replay_distribution
from incentive.ppo import PPO, compute_gae, sample_actions
from incentive.recipe import load_recipe


def probe(recipe, learner, agents, levels: torch.Tensor, episodes: int, seed: int) -> dict[str, torch.Tensor]:
    """Per level ([K] each): success rate, value_l1, positive_value_loss, max_mc, mean V(s_0), R_max."""
    k = len(levels)
    repeated = levels.repeat(episodes)  # instance i plays level i % K
    env = make_env(recipe.env.model_copy(update={"num_envs": len(repeated)}))
    env.set_task({"level": repeated})
    ts = env.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    gamma, lam = recipe.learner.gamma, recipe.learner.gae_lambda
    steps = env.params.max_steps
    values, targets, alive, rewards = [], [], [], []
    playing = torch.ones(len(repeated), dtype=torch.bool)
    with torch.no_grad():
        for _ in range(steps):
            features = learner.features(ts.obs, agents)
            logits = learner.net.logits(features)
            actions = sample_actions(logits, generator)[0]
            value = learner.value(features)
            nxt = env.step(actions)
            target = nxt.reward.clone()
            if nxt.final_obs is not None and bool(nxt.truncated.any()):
                final_value = learner.value(learner.features(nxt.final_obs, agents))
                target = target + gamma * final_value * nxt.truncated[:, None]
            values.append(value)
            targets.append(target)
            rewards.append(nxt.reward * playing[:, None])
            alive.append(playing.clone())
            playing &= ~nxt.done
            ts = nxt
        # every episode ended within max_steps: the value after the last step is never used
        next_value = learner.value(learner.features(ts.obs, agents))
    values, targets = torch.stack(values), torch.stack(targets)
    alive = torch.stack(alive)  # [T, E] steps of the first episode
    done = torch.cat([~alive[1:], torch.ones_like(alive[:1])]) & alive
    advantages, _ = compute_gae(
        targets, values, done[..., None].float(), next_value, gamma=gamma, gae_lambda=lam
    )
    returns = torch.stack(rewards).sum(0).mean(-1)  # [E] episode return, mean over seats
    success = returns > 0
    r_max = returns.reshape(episodes, k).max(0).values  # [K]
    weight = alive[..., None].expand_as(values).double()

    def per_level(x: torch.Tensor) -> torch.Tensor:
        sums = (x.double() * weight).sum((0, 2)).reshape(episodes, k).sum(0)
        return sums / weight.sum((0, 2)).reshape(episodes, k).sum(0)

    level_of_instance = torch.arange(len(repeated)) % k
    return {
        "success": success.double().reshape(episodes, k).mean(0),
        "value_l1": per_level(advantages.abs()),
        "positive_value_loss": per_level(advantages.clamp(min=0)),
        "max_mc": per_level(r_max[level_of_instance][None, :, None] - values),
        "v0": values[0].mean(-1).double().reshape(episodes, k).mean(0),
        "r_max": r_max.double(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", help="a finished PLR run directory (recipe.yaml, checkpoint.pt)")
    parser.add_argument("--episodes", type=int, default=32, help="sampled episodes per training level")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the probe episodes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = Path(args.run)
    recipe = load_recipe(run / "recipe.yaml", [])
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    env = make_env(recipe.env.model_copy(update={"num_envs": 1}))
    agents = list(env.possible_agents)
    learner = PPO.for_env(recipe.learner, env, agents, torch.Generator().manual_seed(recipe.seed))
    learner.load_state_dict(checkpoint["learner"])
    levels = env.train_levels
    found = probe(recipe, learner, agents, levels, args.episodes, args.seed)
    state = checkpoint["plugins"].get("prioritized_level_replay")
    params = recipe.curriculum.params if recipe.curriculum else {}
    if state is not None:
        p = replay_distribution(
            state["scores"],
            state["draws"] - state["last_draw"],
            state["seen"],
            temperature=params.get("temperature", 0.1),
            staleness_coef=params.get("staleness_coef", 0.1),
            transform=params.get("score_transform", "rank"),
        )
        stored = state["scores"]
    else:
        p = torch.full((len(levels),), 1.0 / len(levels), dtype=torch.float64)
        stored = torch.full((len(levels),), float("nan"), dtype=torch.float64)
    walls = env.level_difficulty(levels)
    print(
        f"run {run} (strategy {params.get('strategy', 'none')}), {args.episodes} sampled episodes per level"
    )
    print("level | walls | success | value_l1 | pos_value_loss | max_mc | V(s_0) | stored score | P(replay)")
    for i in torch.argsort(-p, stable=True).tolist():
        print(
            f"{int(levels[i]):5d} | {int(walls[i]):5d} | {found['success'][i]:7.3f} | {found['value_l1'][i]:8.4f} | "
            f"{found['positive_value_loss'][i]:14.4f} | {found['max_mc'][i]:6.3f} | {found['v0'][i]:6.3f} | "
            f"{stored[i]:12.4f} | {p[i]:9.4f}"
        )
    s = found["success"]
    print(
        f"\nmean success over levels {float(s.mean()):.3f}; weighted by P(replay) {float((p * s).sum()):.3f}"
    )
    bins = {"never (0)": s == 0, "sometimes": (s > 0) & (s < 1), "always (1)": s == 1}
    header = " | ".join(f"{name}: {int(mask.sum())} levels" for name, mask in bins.items())
    print(f"mean score by success bin ({header})")
    for key in ("value_l1", "positive_value_loss", "max_mc", "v0"):
        means = " | ".join(
            f"{float(found[key][mask].mean()) if mask.any() else float('nan'):.4f}" for mask in bins.values()
        )
        print(f"  {key:20s} {means}")
    if state is not None:
        means = " | ".join(
            f"{float(stored[mask].mean()) if mask.any() else float('nan'):.4f}" for mask in bins.values()
        )
        print(f"  {'stored score':20s} {means}")
        means = " | ".join(f"{float(p[mask].sum()):.4f}" for mask in bins.values())
        print(f"  {'P(replay), summed':20s} {means}")


if __name__ == "__main__":
    main()
