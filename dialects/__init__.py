"""ncc's dialects: `neuron` (one op per neuron) and `nn` (tensor level)."""
