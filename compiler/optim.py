"""ncc.optim: optimizers whose update step is a native kernel (see ncc.runtime.optim)."""

from ncc.runtime.optim import SGD, Adam, AdamW, Optimizer, pruning_schedule

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "pruning_schedule"]
