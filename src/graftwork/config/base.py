"""What every recipe section shares: unknown keys are errors; names are folder names."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

# run and multitask task names: each becomes a folder name
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
