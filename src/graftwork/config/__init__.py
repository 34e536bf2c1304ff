"""The recipe schema: pydantic models for every section, loading and overrides (no torch)."""
