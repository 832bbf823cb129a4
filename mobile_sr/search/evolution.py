"""Evolutionary search under a latency budget (OFA's ``EvolutionFinder``: population, mutation, crossover).

Every candidate is checked against the latency model before it joins the population, so the
search only ever holds subnets within the budget. All randomness comes from one
``random.Random(seed)``: the same inputs and seed give the same subnet.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..models.ofa import DEPTHS, EXPANDS, KERNELS, STAGES, Arch, smallest


class BudgetError(ValueError):
    """No subnet fits the latency budget."""


def check_budget(scale: int, budget_ms: float, smallest_ms: float, how: str = "is predicted at") -> None:
    """Refuse a budget below the smallest subnet (``how`` says where its figure comes from): no search can meet it."""
    if smallest_ms > budget_ms:
        raise BudgetError(f"no x{scale} subnet fits {budget_ms:g} ms: the smallest {how} {smallest_ms:.2f} ms "
                          "on this runtime and device")


@dataclass
class EvolutionConfig:
    population: int = 100
    generations: int = 30
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    max_tries: int = 2000  # per candidate, before giving up on the budget


def evolve(scale: int, budget_ms: float, latency: Callable[[Arch], float],
           accuracy: Callable[[list[Arch]], np.ndarray], seed: int = 0,
           cfg: EvolutionConfig | None = None) -> tuple[Arch, float, float, list[float]]:
    """Best arch within ``budget_ms``: (arch, predicted accuracy, predicted latency, best accuracy per generation)."""
    cfg = cfg or EvolutionConfig()
    rng = random.Random(seed)
    check_budget(scale, budget_ms, latency(smallest(scale)))

    def fits(arch: Arch) -> bool:
        return latency(arch) <= budget_ms

    def constrained(make: Callable[[], Arch]) -> Arch:
        for _ in range(cfg.max_tries):
            arch = make()
            if fits(arch):
                return arch
        return smallest(scale)  # always fits (checked above); keeps the search going in very tight budgets

    def random_arch() -> Arch:
        n = STAGES * DEPTHS[-1]
        return Arch(scale, tuple(rng.choice(DEPTHS) for _ in range(STAGES)), tuple(rng.choice(KERNELS) for _ in range(n)),
                    tuple(rng.choice(EXPANDS) for _ in range(n))).canonical()

    def mutate(a: Arch) -> Arch:
        pick = lambda value, choices: rng.choice(choices) if rng.random() < cfg.mutate_prob else value  # noqa: E731
        return Arch(scale, tuple(pick(d, DEPTHS) for d in a.depth), tuple(pick(k, KERNELS) for k in a.kernel),
                    tuple(pick(e, EXPANDS) for e in a.expand)).canonical()

    def crossover(a: Arch, b: Arch) -> Arch:
        mix = lambda x, y: tuple(rng.choice((u, v)) for u, v in zip(x, y, strict=True))  # noqa: E731
        return Arch(scale, mix(a.depth, b.depth), mix(a.kernel, b.kernel), mix(a.expand, b.expand)).canonical()

    def breed(parents: list[Arch], n_mutate: int, n_cross: int) -> list[Arch]:
        children = [constrained(lambda: mutate(rng.choice(parents))) for _ in range(n_mutate)]
        return children + [constrained(lambda: crossover(rng.choice(parents), rng.choice(parents)))
                           for _ in range(n_cross)]

    population = [constrained(random_arch) for _ in range(cfg.population)]
    n_parents = max(2, int(cfg.population * cfg.parent_ratio))
    n_mutate = int(cfg.population * cfg.mutation_ratio)
    history: list[float] = []
    best: tuple[float, Arch] | None = None
    for _ in range(cfg.generations):
        scores = accuracy(population)
        # Stable order: accuracy first, then the arch's text, so ties never depend on set or dict order.
        ranked = sorted(zip(scores.tolist(), population, strict=True), key=lambda t: (-t[0], str(t[1].to_dict())))
        if best is None or ranked[0][0] > best[0]:
            best = ranked[0]
        history.append(round(best[0], 4))
        parents = [a for _, a in ranked[:n_parents]]
        population = parents + breed(parents, n_mutate, cfg.population - n_parents - n_mutate)
    assert best is not None
    return best[1], best[0], latency(best[1]), history
