"""A convolutional torso for board and grid observations (`learner.conv_channels`).

An MLP on a flattened board must learn every placement of a pattern apart:
in Connect Four each of the 69 four-cell lines, and a threat it has learnt
to block in one place means nothing to it one column over. A convolution
shares one detector across positions. With `conv_channels: [64]` and
`conv_kernel: 4`, one layer of 4 x 4 filters sees every horizontal,
vertical and diagonal line of four cells whole.

The torso reads the first H * W * C features of each row as the agent's
observation [H, W, C] (channels last, as envs give them), runs one
convolution per entry of `conv_channels` (`conv_kernel` square, stride 1,
no padding, each followed by tanh, as the MLP layers are), flattens, and
appends the row's remaining features (the agent id of a shared network)
for the MLP of `hidden_sizes` that follows. Weights are orthogonal with
gain sqrt(2), biases zero, drawn from the learner's generator like the MLP's.

It needs every agent's observation to be the same image (a 3-D Box), a
shared network (`share_parameters: true`) and an unbatched run; other
recipes are refused, naming the field (`check_conv`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from incentive.errors import RecipeError

if TYPE_CHECKING:
    from incentive.envs.base import BatchedEnv
    from incentive.recipe import Recipe

__all__ = ["ConvTorso", "check_conv", "image_shape"]


def image_shape(env: BatchedEnv, agents: list[str]) -> tuple[int, int, int] | None:
    """[H, W, C] when every agent observes the same 3-D box, else None."""
    shapes = {tuple(env.observation_spaces[a].shape) for a in agents}
    if len(shapes) != 1:
        return None
    (shape,) = shapes
    return shape if len(shape) == 3 else None  # type: ignore[return-value]


def check_conv(recipe: Recipe, probe: BatchedEnv) -> None:
    """Refuse a convolutional learner the env or the recipe cannot run, naming the field."""
    cfg = recipe.learner
    if not cfg.conv_channels:
        return
    where = f"{recipe.source}: field 'learner.conv_channels'"
    agents = list(probe.possible_agents)
    image = image_shape(probe, agents)
    if image is None:
        shapes = ", ".join(f"{a} {tuple(probe.observation_spaces[a].shape)}" for a in agents)
        raise RecipeError(
            f"{where}: a convolutional torso needs every agent to observe the same [H, W, C] image; "
            f"env {recipe.env.id!r} gives {shapes}. Remove conv_channels for this env"
        )
    if not cfg.share_parameters:
        raise RecipeError(
            f"{where}: the convolutional torso runs with one shared network (learner.share_parameters: "
            "true), not with one network per agent"
        )
    h, w, _ = image
    layers = len(cfg.conv_channels)
    if h - layers * (cfg.conv_kernel - 1) < 1 or w - layers * (cfg.conv_kernel - 1) < 1:
        raise RecipeError(
            f"{where}: {layers} unpadded {cfg.conv_kernel} x {cfg.conv_kernel} convolution(s) do not fit "
            f"the {h} x {w} observation of env {recipe.env.id!r}; lower learner.conv_kernel or drop a layer"
        )


class ConvTorso(nn.Module):
    """[G, rows, D] features -> [G, rows, conv features + (D - H*W*C)] (see the module docstring).

    Args:
        image: (H, W, C) of each agent's observation.
        channels: output channels of each convolution.
        kernel: the square kernel size.
        extra: features after the image in each row (the agent id).
        generator: initialises the weights.
    """

    def __init__(
        self,
        image: tuple[int, int, int],
        channels: list[int],
        kernel: int,
        extra: int,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        h, w, c = image
        self.image = image
        layers: list[nn.Module] = []
        for out in channels:
            conv = nn.Conv2d(c, out, kernel)
            with torch.no_grad():
                nn.init.orthogonal_(conv.weight, gain=math.sqrt(2), generator=generator)
                conv.bias.zero_()
            layers += [conv, nn.Tanh()]
            h, w, c = h - kernel + 1, w - kernel + 1, out
        self.convs = nn.Sequential(*layers)
        self.out_dim = h * w * c + extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve each row's image, flatten, append its other features."""
        h, w, c = self.image
        size = h * w * c
        rows = x.reshape(-1, x.shape[-1])
        image = rows[:, :size].reshape(-1, h, w, c).permute(0, 3, 1, 2)
        features = self.convs(image).flatten(1)
        return torch.cat([features, rows[:, size:]], 1).reshape(*x.shape[:-1], -1)
