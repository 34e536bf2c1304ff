"""Training: the loop (loop.py), atomic checkpoints and exact resume (checkpoint.py), progress."""
