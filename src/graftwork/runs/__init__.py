"""Whole runs: fine-tuning, multi-task, continued pretraining, compression chains, compare."""
