"""The two laws ncc-stats extrapolates with: Amdahl's speed-up and a
Chinchilla-style scaling law.

Amdahl (G. Amdahl, "Validity of the single processor approach to achieving
large scale computing capabilities", AFIPS 1967): a run whose fraction f of
the time splits over n processors takes (1 - f) + f / n of it, a speed-up
P(n) = 1 / ((1 - f) + f / n).

Scaling law (J. Hoffmann et al., "Training Compute-Optimal Large Language
Models", 2022, approach 3): the loss of a model of N parameters trained on D
tokens is L(N, D) = E + A / N^alpha + B / D^beta, with E = 1.69, A = 406.4,
B = 410.7, alpha = 0.34, beta = 0.28; training compute C = 6 N D FLOPs
(Kaplan et al. 2020). For a budget C, L is least at
    N_opt = G (C / 6)^a,  D_opt = (C / 6)^b / G,
    a = beta / (alpha + beta), b = alpha / (alpha + beta),
    G = (alpha A / (beta B))^(1 / (alpha + beta)).
"""

from __future__ import annotations

from dataclasses import dataclass

from ncc.diagnostics import NccError


def amdahl(f: float, n: int) -> float:
    """The speed-up on n processors of a run whose fraction f is parallel."""
    if not 0.0 <= f <= 1.0:
        raise NccError(f"the parallel fraction must be in [0, 1], got {f}")
    if n < 1:
        raise NccError(f"the number of processors must be at least 1, got {n}")
    return 1.0 / ((1.0 - f) + f / n)


def processor_counts(up_to: int) -> list[int]:
    """1, 2, 4, ... up to `up_to` (itself last when not a power of two)."""
    if up_to < 1:
        raise NccError(f"--processors must be at least 1, got {up_to}")
    counts, n = [], 1
    while n < up_to:
        counts.append(n)
        n *= 2
    return counts + [up_to]


@dataclass(frozen=True)
class ScalingLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta (Chinchilla's fitted constants by default)."""

    E: float = 1.69
    A: float = 406.4
    B: float = 410.7
    alpha: float = 0.34
    beta: float = 0.28

    def __post_init__(self) -> None:
        if self.alpha <= 0 or self.beta <= 0 or self.A <= 0 or self.B <= 0:
            raise NccError(f"the scaling law's A, B, alpha and beta must be positive, got {self}")

    def loss(self, n: float, d: float) -> float:
        if n <= 0 or d <= 0:
            raise NccError(f"parameters and tokens must be positive, got N = {n}, D = {d}")
        return self.E + self.A / n ** self.alpha + self.B / d ** self.beta

    @staticmethod
    def compute(n: float, d: float) -> float:
        """Training FLOPs, C = 6 N D."""
        return 6.0 * n * d

    def optimal(self, c: float) -> tuple[float, float]:
        """(N, D) of least loss for a compute budget of C FLOPs, with C = 6 N D."""
        if c <= 0:
            raise NccError(f"the compute budget must be positive, got {c}")
        a, b = self.beta / (self.alpha + self.beta), self.alpha / (self.alpha + self.beta)
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        return g * (c / 6.0) ** a, (c / 6.0) ** b / g
