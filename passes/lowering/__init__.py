"""Lowering passes, level by level: nn/neuron -> loops -> llvm."""
