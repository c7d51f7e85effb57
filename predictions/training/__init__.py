"""Training: the Trainer callback and the monitor behind it, the samples it tracks, generation, the
preflight, distributed rounds and the signal guard. The only layer that imports torch/transformers."""
