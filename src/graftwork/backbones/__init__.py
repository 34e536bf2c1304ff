"""Backbones: short name or folder → checked folder → model and tokenizer (`load`), and the
architecture layout table that freezing, adapters, distillation and pruning read (`layout`)."""
