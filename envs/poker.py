"""Two-player limit poker (Kuhn, Leduc): the game tree as tables, and a batched env stepping it.

Both games are small enough that the whole public betting tree fits in a few
tables, built once from the rules by `PokerGame`. The batched env's state is
a node of that tree and a deal index per instance, and it steps by table
look-up (node + action -> child; (node, deal) -> both seats' observations and
the chips won), with no loop over instances. `incentive.exploitability`
traverses the very same tables, so the observations a policy sees while it
trains are exactly the information states the exploitability is computed on.

| piece        | meaning                                                                 |
| ------------ | ----------------------------------------------------------------------- |
| card         | id 0 .. num_cards - 1; rank = card // num_suits (J, Q, K); suits only    |
|              | make cards distinct (Leduc's two suits), they never rank a hand         |
| deal         | one ordered tuple of distinct cards (player_0's, player_1's, public);   |
|              | all `num_deals` are equally likely (Kuhn 6, Leduc 120); public = -1 in  |
|              | Kuhn, which has no public card                                          |
| node         | a public betting history; `player`, `round`, `children`, `legal` per    |
|              | node; terminal nodes carry who folded and each seat's chips in the pot  |
| information  | (decision node, own private card, public card once it is revealed):     |
| state        | Kuhn 4 nodes x 3 cards = 12, Leduc 6 x 6 + 30 x 6 x 5 = 936             |

Betting, as in OpenSpiel's `kuhn_poker` and `leduc_poker`: both seats ante 1;
player_0 acts first in every round; a raise matches the stake and adds the
round's raise size; a round ends when a seat calls a raise or when both seats
check; at most `max_raises` raises per round; folding is legal only when
facing a raise. Kuhn's two actions fold into these moves: pass = check (or
fold when facing a bet), bet = raise (or call when facing a bet). Showdown:
in Leduc a private card that pairs the public card wins, else the higher
private rank wins (with one shared public card this is the same as comparing
the higher, then the lower card of the two-card hands), equal ranks split the
pot; in Kuhn the higher card wins. Rewards are each seat's net chips.

Observation (an information-state tensor, float32, like OpenSpiel's):

| slice                                  | content                                        |
| -------------------------------------- | ---------------------------------------------- |
| 2                                      | observing seat, one-hot                        |
| num_cards                              | own private card, one-hot                      |
| num_cards (Leduc only)                 | public card once revealed, one-hot, else zeros |
| rounds x slots x num_actions           | betting history: slot k of round r holds the   |
|                                        | one-hot action id of the k-th action taken in  |
|                                        | that round (zeros where none was taken)        |

Kuhn: 2 + 3 + 1 x 3 x 2 = 11 entries. Leduc: 2 + 6 + 6 + 2 x 4 x 3 = 38.
At a hand's end `final_obs` is each seat's view of the finished history (the
opponent's card stays hidden); `obs` is already the next hand's first view.
Illegal actions (folding when not facing a raise, raising past the cap) are
played as check/call, as OpenSpiel's `action_mapping` option does; the env's
action masks mark them illegal so a masked policy never picks them.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import ClassVar

import gymnasium
import torch

from incentive.envs.base import BatchedEnv, EnvParams, TimeStep

__all__ = ["KUHN", "LEDUC", "PokerEnv", "PokerGame", "PokerRules", "poker_game"]

# betting moves; a game's action ids map onto these
FOLD, CALL, RAISE = 0, 1, 2


@dataclass(frozen=True)
class PokerRules:
    """The parameters that tell Kuhn and Leduc apart.

    Attributes:
        name: the game's id.
        num_ranks: card ranks (J, Q, K).
        num_suits: copies of each rank.
        raise_sizes: chips one raise adds, one entry per betting round.
        max_raises: raises allowed per round.
        action_names: the game's action ids, in order.
    """

    name: str
    num_ranks: int
    num_suits: int
    raise_sizes: tuple[int, ...]
    max_raises: int
    action_names: tuple[str, ...]

    @property
    def num_cards(self) -> int:
        """Cards in the deck."""
        return self.num_ranks * self.num_suits

    @property
    def num_rounds(self) -> int:
        """Betting rounds; a public card is dealt before every round after the first."""
        return len(self.raise_sizes)

    def move(self, action: int, facing: bool, raises: int) -> int | None:
        """The betting move an action id makes, or None when it is illegal here."""
        if self.action_names == ("pass", "bet"):  # Kuhn's two actions
            if action == 0:
                return FOLD if facing else CALL
            return CALL if facing else RAISE
        if action == FOLD and not facing:
            return None
        if action == RAISE and raises >= self.max_raises:
            return None
        return action


KUHN = PokerRules(
    "kuhn_poker", num_ranks=3, num_suits=1, raise_sizes=(1,), max_raises=1, action_names=("pass", "bet")
)
LEDUC = PokerRules(
    "leduc_poker",
    num_ranks=3,
    num_suits=2,
    raise_sizes=(2, 4),
    max_raises=2,
    action_names=("fold", "call", "raise"),
)


@dataclass
class _Node:
    player: int  # seat to act; -1 at terminal nodes
    round: int
    history: list[list[int]]  # action ids taken, one list per round
    contrib: tuple[int, int]
    folder: int = -1  # seat that folded (terminal nodes), -1 for none
    children: dict[int, int] | None = None  # legal action id -> node id


class PokerGame:
    """The full public betting tree and chance outcomes of one poker game, as tensors.

    Node tables (N nodes, node 0 is the root, parents before children):
    `player` [N] (-1 terminal), `round` [N], `terminal` [N], `folder` [N],
    `contrib` [N, 2], `child` [N, num_actions] (illegal actions lead where
    check/call leads; terminal rows point to themselves), `legal`
    [N, num_actions], `history` [N, history_size].

    Env look-ups: `obs_table` [N, D, 2, obs_size] (each seat's observation at
    node n under deal d) and `payoff_table` [N, D] (player_0's chips, zero at
    decision nodes), for the D = `num_deals` rows of `deals` [D, 3].

    Information states (I of them, in order of node, private card, public card):
    `info_node` [I], `info_player` [I], `info_card` [I], `info_public` [I]
    (-1 while unrevealed), `info_obs` [I, obs_size] (exactly what the env
    shows that seat there), `info_mask` [I, num_actions], and `node_info`
    [N, num_deals]: the information-state row of the seat to act at node n
    under deal d (-1 at terminal nodes).

    Args:
        rules: which game.
    """

    def __init__(self, rules: PokerRules) -> None:
        self.rules = rules
        self.num_actions = len(rules.action_names)
        self.num_cards = rules.num_cards
        nodes = self._build_tree()
        self.num_nodes = len(nodes)
        self.slots = [
            max(len(n.history[r]) for n in nodes if len(n.history) > r) for r in range(rules.num_rounds)
        ]
        self.history_size = sum(self.slots) * self.num_actions
        self.public_size = self.num_cards if rules.num_rounds > 1 else 0
        self.obs_size = 2 + self.num_cards + self.public_size + self.history_size

        self.player = torch.tensor([n.player for n in nodes])
        self.round = torch.tensor([n.round for n in nodes])
        self.terminal = self.player < 0
        self.folder = torch.tensor([n.folder for n in nodes])
        self.contrib = torch.tensor([n.contrib for n in nodes], dtype=torch.float32)
        self.legal = torch.zeros(self.num_nodes, self.num_actions, dtype=torch.bool)
        self.child = torch.arange(self.num_nodes)[:, None].repeat(1, self.num_actions)
        self.history = torch.zeros(self.num_nodes, self.history_size)
        for i, node in enumerate(nodes):
            for action, child in (node.children or {}).items():
                self.legal[i, action] = True
                self.child[i, action] = child
            if node.children and not self.legal[i].all():  # only in Leduc, where CALL is always legal
                self.child[i, ~self.legal[i]] = node.children[CALL]
            offset = 0
            for r, actions in enumerate(node.history):
                for k, action in enumerate(actions):
                    self.history[i, offset + k * self.num_actions + action] = 1.0
                offset += self.slots[r] * self.num_actions

        cards = range(self.num_cards)
        if rules.num_rounds > 1:
            deals = list(itertools.permutations(cards, 3))
        else:
            deals = [(a, b, -1) for a, b in itertools.permutations(cards, 2)]
        self.deals = torch.tensor(deals)
        self.num_deals = len(deals)
        self.rank = torch.arange(self.num_cards) // rules.num_suits
        self._build_info_states()
        # what the env looks up each step: both seats' observations and player_0's chips per (node, deal)
        nodes = torch.arange(self.num_nodes).repeat_interleave(self.num_deals)
        deals = self.deals.repeat(self.num_nodes, 1)
        seats = [self.observe(nodes, seat, deals) for seat in (0, 1)]
        self.obs_table = torch.stack(seats, 1).reshape(self.num_nodes, self.num_deals, 2, self.obs_size)
        payoff = torch.where(self.terminal[nodes], self.payoff(nodes, deals), 0.0)
        self.payoff_table = payoff.reshape(self.num_nodes, self.num_deals)

    def deal_index(self, player_0: int, player_1: int, public: int = -1) -> int:
        """The index in `deals` of a deal given as cards (public -1 in Kuhn)."""
        match = (self.deals == torch.tensor([player_0, player_1, public])).all(1).nonzero()
        if len(match) != 1:
            raise ValueError(f"no deal ({player_0}, {player_1}, {public}) in {self.rules.name}")
        return int(match[0, 0])

    @staticmethod
    def _facing(node: _Node) -> bool:
        return node.contrib[node.player] < node.contrib[1 - node.player]

    def _build_tree(self) -> list[_Node]:
        """Every public betting history, parents before children."""
        rules = self.rules
        nodes: list[_Node] = []

        def visit(node: _Node, raises: int, checks: int) -> int:
            index = len(nodes)
            nodes.append(node)
            if node.player < 0:
                return index
            node.children = {}
            seat, facing = node.player, self._facing(node)
            for action in range(len(rules.action_names)):
                move = rules.move(action, facing, raises)
                if move is None:
                    continue
                history = [list(h) for h in node.history]
                history[node.round].append(action)
                contrib = list(node.contrib)
                if move == FOLD:
                    node.children[action] = visit(_Node(-1, node.round, history, node.contrib, seat), 0, 0)
                    continue
                contrib[seat] = contrib[1 - seat]  # match the stake (a check adds nothing)
                if move == RAISE:
                    contrib[seat] += rules.raise_sizes[node.round]
                    child = _Node(1 - seat, node.round, history, tuple(contrib))
                    node.children[action] = visit(child, raises + 1, checks)
                    continue
                round_over = facing or checks == 1
                if not round_over:
                    child = _Node(1 - seat, node.round, history, tuple(contrib))
                    node.children[action] = visit(child, raises, checks + 1)
                elif node.round + 1 < rules.num_rounds:
                    child = _Node(0, node.round + 1, [*history, []], tuple(contrib))
                    node.children[action] = visit(child, 0, 0)
                else:  # showdown
                    node.children[action] = visit(_Node(-1, node.round, history, tuple(contrib)), 0, 0)
            return index

        visit(_Node(0, 0, [[]], (1, 1)), 0, 0)
        return nodes

    def observe(self, node: torch.Tensor, seat: torch.Tensor | int, deal: torch.Tensor) -> torch.Tensor:
        """Information-state tensors [B, obs_size] of `seat` at `node` [B] under `deal` [B, 3]."""
        batch = node.shape[0]
        seat = torch.as_tensor(seat, device=node.device).expand(batch)
        eye = torch.eye(self.num_cards + 1, device=node.device)[:, : self.num_cards]  # row num_cards: none
        parts = [torch.eye(2, device=node.device)[seat], eye[deal.gather(1, seat[:, None])[:, 0]]]
        if self.public_size:
            revealed = self.round.to(node.device)[node] > 0
            parts.append(eye[torch.where(revealed, deal[:, 2], self.num_cards)])
        parts.append(self.history.to(node.device)[node])
        return torch.cat(parts, 1)

    def payoff(self, node: torch.Tensor, deal: torch.Tensor) -> torch.Tensor:
        """[B] chips player_0 wins at terminal `node` [B] under `deal` [B, 3] (player_1 gets the negative)."""
        contrib = self.contrib.to(node.device)[node]
        folder = self.folder.to(node.device)[node]
        rank = self.rank.to(node.device)
        own = rank[deal[:, :2]]  # [B, 2]
        strength = own.clone()
        if self.public_size:
            paired = own == rank[deal[:, 2:3].clamp(min=0)]
            strength = torch.where(paired, own + self.rules.num_ranks, own)
        showdown = torch.sign(strength[:, 0] - strength[:, 1]).to(contrib.dtype) * contrib[:, 0]
        return torch.where(folder == 0, -contrib[:, 0], torch.where(folder == 1, contrib[:, 1], showdown))

    def _build_info_states(self) -> None:
        rows: list[tuple[int, int, int]] = []
        index: dict[tuple[int, int, int], int] = {}
        for node in range(self.num_nodes):
            if self.terminal[node]:
                continue
            publics = range(self.num_cards) if self.round[node] > 0 else [-1]
            for card in range(self.num_cards):
                for public in publics:
                    if public != card:
                        index[(node, card, public)] = len(rows)
                        rows.append((node, card, public))
        table = torch.tensor(rows)
        self.num_info_states = len(rows)
        self.info_node, self.info_card, self.info_public = table[:, 0], table[:, 1], table[:, 2]
        self.info_player = self.player[self.info_node]
        self.info_mask = self.legal[self.info_node]
        fake_deal = torch.stack([self.info_card, self.info_card, self.info_public], 1)
        self.info_obs = self.observe(self.info_node, self.info_player, fake_deal)
        self.node_info = torch.full((self.num_nodes, self.num_deals), -1)
        for node in range(self.num_nodes):
            if self.terminal[node]:
                continue
            seat = int(self.player[node])
            for d, deal in enumerate(self.deals.tolist()):
                public = deal[2] if self.round[node] > 0 else -1
                self.node_info[node, d] = index[(node, deal[seat], public)]


@functools.cache
def poker_game(name: str) -> PokerGame:
    """The (shared, read-only) tables of `kuhn_poker` or `leduc_poker`."""
    rules = {KUHN.name: KUHN, LEDUC.name: LEDUC}
    if name not in rules:
        raise ValueError(f"unknown poker game {name!r}; expected one of {sorted(rules)}")
    return PokerGame(rules[name])


class PokerEnv(BatchedEnv):
    """E hands of a two-player poker game stepped by table look-up (no loop over instances).

    Subclasses set `game_name`. One hand is one episode; see the module docstring.
    """

    game_name: ClassVar[str] = ""
    #: The seats' rewards always sum to zero (population meta-solvers may use an exact Nash LP).
    zero_sum: ClassVar[bool] = True
    info_keys = ("player_0_chips", "showdowns", "folds", "raises", "pot")
    metric_names = ("player_0_chips", "showdown_rate", "fold_rate", "raises_per_hand", "mean_pot")
    state_keys = ("node", "deal")

    def __init__(self, *, num_envs: int, params: EnvParams, device: str = "cpu") -> None:
        super().__init__(num_envs=num_envs, params=params, device=device)
        game = poker_game(self.game_name)
        self.game = game
        self.possible_agents = ["player_0", "player_1"]
        obs_space = gymnasium.spaces.Box(0.0, 1.0, (game.obs_size,), dtype="float32")
        self.observation_spaces = {a: obs_space for a in self.possible_agents}
        self.action_spaces = {a: gymnasium.spaces.Discrete(game.num_actions) for a in self.possible_agents}
        dev = self.device
        self._player = game.player.to(dev)
        self._child = game.child.to(dev)
        self._legal = game.legal.to(dev)
        self._terminal = game.terminal.to(dev)
        self._folded = (game.folder >= 0).to(dev)
        self._pot = game.contrib.sum(1).to(dev)
        self._obs = game.obs_table.to(dev)
        self._payoff = game.payoff_table.to(dev)
        # an action raises when it lifts the stake (the larger contribution); a call only matches it
        stake = game.contrib.max(1).values.to(dev)
        self._raised = stake[self._child] > stake[:, None]
        self._envs = torch.arange(num_envs, device=dev)
        self._seats = torch.arange(2, device=dev)
        # node[e]: the betting history (a node of the game's tree); deal[e]: index into game.deals
        self.node = torch.zeros(num_envs, dtype=torch.long, device=dev)
        self.deal = torch.zeros(num_envs, dtype=torch.long, device=dev)

    def _draw_deal(self) -> torch.Tensor:
        """[E] a fresh deal for every instance (every stream advances, dealt or not)."""
        return self.rng.integers(self.game.num_deals)[:, 0]

    def _observe(self, node: torch.Tensor, deal: torch.Tensor) -> dict[str, torch.Tensor]:
        both = self._obs[node, deal]  # [E, 2, obs_size]
        return {agent: both[:, seat] for seat, agent in enumerate(self.possible_agents)}

    def _acting(self, node: torch.Tensor) -> torch.Tensor:
        return self._player[node][:, None] == self._seats

    def _masks(self, node: torch.Tensor, acting: torch.Tensor) -> dict[str, torch.Tensor]:
        legal = self._legal[node]
        return {agent: legal | ~acting[:, seat, None] for seat, agent in enumerate(self.possible_agents)}

    def _reset(self) -> TimeStep:
        self.node = torch.zeros_like(self.node)
        self.deal = self._draw_deal()
        ts = self._first_step(self._observe(self.node, self.deal), self._acting(self.node))
        ts.action_mask = self._masks(self.node, ts.acting)
        return ts

    def _check_actions(self, actions: torch.Tensor) -> torch.Tensor:
        expected = (self.num_envs, 2)
        if tuple(actions.shape) != expected:
            raise ValueError(f"actions must have shape {expected}, got {tuple(actions.shape)}")
        actions = actions.to(self.device, torch.long)
        low, high = int(actions.min()), int(actions.max())
        if low < 0 or high >= self.game.num_actions:
            raise ValueError(
                f"actions must be in 0..{self.game.num_actions - 1}, got values from {low} to {high}"
            )
        return actions

    def step(self, actions: torch.Tensor) -> TimeStep:
        """The acting seat of every instance plays its action; finished hands are paid and redealt.

        Args:
            actions: [E, 2] long action ids; the seat that is not acting is ignored.

        Returns:
            The `TimeStep`; rewards are non-zero only on a hand's last step, for both seats.

        """
        actions = self._check_actions(actions)
        node = self.node
        action = actions[self._envs, self._player[node]]
        child = self._child[node, action]
        done = self._terminal[child]
        won = self._payoff[child, self.deal]  # zero unless the hand is over
        info = {
            "player_0_chips": won,
            "showdowns": (done & ~self._folded[child]).float(),
            "folds": self._folded[child].float(),
            "raises": self._raised[node, action].float(),
            "pot": torch.where(done, self._pot[child], 0.0),
        }
        fresh = self._draw_deal()
        final_obs = None
        if bool(done.any()):
            final_obs = self._observe(child, self.deal)
            child = torch.where(done, 0, child)
            self.deal = torch.where(done, fresh, self.deal)
        self.node = child
        acting = self._acting(child)
        return TimeStep(
            obs=self._observe(child, self.deal),
            reward=torch.stack([won, -won], 1),
            terminated=done,
            truncated=torch.zeros_like(done),
            acting=acting,
            action_mask=self._masks(child, acting),
            info=info,
            final_obs=final_obs,
        )

    def episode_metrics(self, totals: dict[str, torch.Tensor]) -> dict[str, float]:
        """Per-hand means over the finished hands (one hand is one episode)."""
        hands = len(totals["player_0_chips"])
        if hands == 0:
            return {key: float("nan") for key in self.metric_names}
        return {
            "player_0_chips": float(totals["player_0_chips"].sum()) / hands,
            "showdown_rate": float(totals["showdowns"].sum()) / hands,
            "fold_rate": float(totals["folds"].sum()) / hands,
            "raises_per_hand": float(totals["raises"].sum()) / hands,
            "mean_pot": float(totals["pot"].sum()) / hands,
        }
