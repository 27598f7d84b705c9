"""Connect Four throughput: the batched torch env against PettingZoo's `connect_four_v3` in a Python loop.

Both play uniformly random legal moves, and both count one agent-step per
move (one acting agent of one instance moving once; PettingZoo's dead steps
at the end of a game are not counted, and neither are resets):

  batched      `ConnectFour(num_envs=E)`, reset(seed=0), stepped with a random
               legal column for the agent to move in every instance, drawn in
               torch inside the timed loop (a uniform column, drawn again among
               the legal ones where it is full: uniform over the legal columns);
               E moves per step.
  pettingzoo   one `connect_four_v3.env()` played game after game through
               `agent_iter`/`last`/`step`, each move a uniform choice from
               the observation's action mask (numpy), reset when the game ends.

Prints both rates and their ratio, and the batched env's rate per CPU second
spent inside `env.step` alone (without the sampler). Target (issue 9): >= 2M agent-steps/s at
E = 4096 and >= 100x PettingZoo. The numbers depend on the machine and on
what else runs on it: the script prints the load average, and the rates per
second of this process's CPU time beside the wall-clock ones (on a shared,
busy machine the CPU-time rates are closer to what an idle core would give).

    .venv/bin/python benchmarks/connect_four_throughput.py                 # E = 4096, ~25 s
    .venv/bin/python benchmarks/connect_four_throughput.py --num-envs 1024 --seconds 3

The plain env (the empty board at every reset) is what it measures; `--random-opening 6` times the
batched env with training's random openings instead (the PettingZoo side stays as it is).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from pettingzoo.classic import connect_four_v3

from incentive.envs.connect_four import COLUMNS, ConnectFour


def random_legal_columns(legal: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[E] uniform legal column of each row of legal [E, 7] (every row has one).

    A uniform column is kept where it is legal (then it is uniform over the legal
    ones); the few rows where it is not draw again among their legal columns
    (uniform random keys, the largest wins).
    """
    column = torch.randint(0, COLUMNS, (legal.shape[0],), generator=generator)
    redraw = (~legal.gather(1, column[:, None])[:, 0]).nonzero().flatten()
    if len(redraw):
        keys = torch.rand(len(redraw), COLUMNS, generator=generator)
        column[redraw] = keys.masked_fill_(~legal[redraw], -1.0).argmax(1)
    return column


def batched_rate(num_envs: int, seconds: float, random_opening: int = 0) -> tuple[float, float, float, int]:
    """Agent-steps/s of the batched env: wall and CPU with the sampler, CPU inside `env.step`; steps timed."""
    env = ConnectFour(num_envs=num_envs, params=ConnectFour.Params(random_opening=random_opening))
    generator = torch.Generator().manual_seed(0)
    ts = env.reset(seed=0)
    in_step = 0.0

    def step(ts):
        nonlocal in_step
        legal = ts.action_mask["player_0"] & ts.action_mask["player_1"]  # the other's row is all True
        actions = random_legal_columns(legal, generator)[:, None].expand(-1, 2)
        before = time.process_time()
        ts = env.step(actions)
        in_step += time.process_time() - before
        return ts

    for _ in range(50):  # warm-up
        ts = step(ts)
    in_step, steps, start, cpu = 0.0, 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            ts = step(ts)
        steps += 20
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    moves = steps * num_envs
    return moves / wall, moves / cpu, moves / in_step, steps


def pettingzoo_rate(seconds: float) -> tuple[float, float, int]:
    """Agent-steps per wall and per CPU second of PettingZoo's connect_four_v3 in a loop, and the moves."""
    env = connect_four_v3.env()
    rng = np.random.default_rng(0)
    moves, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        env.reset()
        for _agent in env.agent_iter():
            obs, _, terminated, truncated, _ = env.last()
            if terminated or truncated:
                env.step(None)
                continue
            env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
            moves += 1
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return moves / wall, moves / cpu, moves


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-envs", type=int, default=4096, help="E, instances of the batched env")
    parser.add_argument("--seconds", type=float, default=10.0, help="time each side for about this long")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--random-opening", type=int, default=0, choices=range(7), help="K random plies (0: the plain env)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    batched, batched_cpu, step_cpu, steps = batched_rate(args.num_envs, args.seconds, args.random_opening)
    reference, reference_cpu, moves = pettingzoo_rate(args.seconds)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load}; torch threads {args.threads}")
    print("agent-steps per second of wall-clock time and per second of this process's CPU time")
    print(
        f"  batched ConnectFour E={args.num_envs}, random_opening {args.random_opening}: "
        f"{batched:11,.0f} wall {batched_cpu:11,.0f} CPU ({steps} steps)"
    )
    print(
        f"  PettingZoo connect_four_v3 loop: {reference:11,.0f} wall {reference_cpu:11,.0f} CPU ({moves} moves)"
    )
    print(f"  ratio: {batched / reference:.1f}x wall, {batched_cpu / reference_cpu:.1f}x CPU")
    print(f"  (CPU time inside env.step alone, without the sampler: {step_cpu:,.0f} agent-steps/s)")


if __name__ == "__main__":
    main()
