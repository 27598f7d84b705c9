"""How varied are the navigation levels, and which ones does a policy solve? (the PLR diagnosis)

Prioritized level replay pays off when the training levels range from trivial
to unsolvable-for-now, so that uniform sampling wastes episodes at both ends.
This script measures that spread for a navigation recipe: per level, its
walls (`level_difficulty`), its size, and the success rate of a policy over
`--episodes` sampled episodes on it, for the training levels and the
held-out test levels. The policy is the untrained one of the recipe (close to
uniform random) or, with `--checkpoint`, the learner saved in a run's
`checkpoint.pt`. Prints the success histogram and the success by walls and size:

    python benchmarks/plr_levels.py recipes/navigation_uniform.yaml \
        --set env.params.min_size=4 --set env.params.max_size=5
    python benchmarks/plr_levels.py <run dir>/recipe.yaml --checkpoint <run dir>/checkpoint.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from incentive.checkpoint import load_checkpoint
from incentive.envs.navigation import generate_layouts
from incentive.evaluation import Evaluator
from incentive.loop import make_env
from incentive.ppo import PPO
from incentive.recipe import load_recipe


def level_success(recipe, learner, levels: torch.Tensor, episodes: int, seed: int) -> torch.Tensor:
    """[K] success rate of the learner's sampled policy over `episodes` episodes on each level."""
    env = make_env(recipe.env.model_copy(update={"num_envs": 1}))
    agents = list(env.possible_agents)
    evaluator = Evaluator(env, agents=agents, every=1, greedy=False, num_envs=1024, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    repeated = levels.repeat(episodes)
    wins = []
    for chunk in repeated.split(1024):
        _, info = evaluator._play(learner, chunk, generator)
        wins.append(info["success"])
    return torch.cat(wins).reshape(episodes, len(levels)).mean(0)


def summary(name: str, levels: torch.Tensor, success: torch.Tensor, params) -> None:
    layouts = generate_layouts(levels, torch.zeros_like(levels), params)
    walls = layouts.num_walls
    sizes = (~layouts.walls).any(2).long().sum(1)  # n: the rows with a free cell
    print(f"\n{name}: {len(levels)} levels, mean success {float(success.mean()):.3f}")
    edges = [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0001]
    counts = [int(((success >= lo) & (success < hi)).sum()) for lo, hi in zip(edges, edges[1:], strict=False)]
    print("  success histogram  [0,.05) [.05,.25) [.25,.5) [.5,.75) [.75,.95) [.95,1]:", counts)
    for w in sorted(set(walls.tolist())):
        pick = walls == w
        print(f"  walls {w}: {int(pick.sum()):4d} levels, mean success {float(success[pick].mean()):.3f}")
    for n in sorted(set(sizes.tolist())):
        pick = sizes == n
        print(f"  size {n}: {int(pick.sum()):4d} levels, mean success {float(success[pick].mean()):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipe")
    parser.add_argument("--set", action="append", default=[], help="recipe override path=value")
    parser.add_argument(
        "--checkpoint", default=None, help="a run's checkpoint.pt (default: untrained policy)"
    )
    parser.add_argument("--episodes", type=int, default=10, help="sampled episodes per level")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = load_recipe(args.recipe, args.set)
    env = make_env(recipe.env.model_copy(update={"num_envs": 1}))
    agents = list(env.possible_agents)
    learner = PPO.for_env(recipe.learner, env, agents, torch.Generator().manual_seed(recipe.seed))
    if args.checkpoint:
        learner.load_state_dict(load_checkpoint(Path(args.checkpoint))["learner"])
    print(f"policy: {args.checkpoint or 'untrained'}; {args.episodes} sampled episodes per level")
    for name, levels in (("train", env.train_levels), ("test", env.test_levels)):
        if levels is not None:
            summary(
                name, levels, level_success(recipe, learner, levels, args.episodes, recipe.seed), env.params
            )


if __name__ == "__main__":
    main()
