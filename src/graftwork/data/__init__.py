"""Data: readers (files → examples), encode (examples → token ids), batching (ids → tensors)."""
