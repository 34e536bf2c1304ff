"""Compression: make a trained bundle smaller and faster (structured pruning, distillation)."""
