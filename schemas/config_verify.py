"""Recipe section `verify`: verifiers, self-consistency and difficulty bins."""

from __future__ import annotations

from pydantic import Field

from schemas.config_base import StrictConfig


class VerifyConfig(StrictConfig):
    timeout_s: float = Field(default=5.0, gt=0)  # hard wall-clock limit per verification
    workers: int | None = None  # verifier processes; None: one per core
    pseudo_label_min_share: float = Field(default=0.6, ge=0.0, le=1.0)  # majority share that becomes a label
