"""Recipe section `dedup`: exact and MinHash near-duplicate removal."""

from __future__ import annotations

from pydantic import Field

from schemas.config_base import StrictConfig


class MinHashConfig(StrictConfig):
    threshold: float = Field(default=0.8, gt=0.0, lt=1.0)  # estimated Jaccard similarity that makes a duplicate
    num_perm: int = Field(default=128, ge=16)
    shingle_size: int = Field(default=5, ge=1)  # characters per shingle


class DedupConfig(StrictConfig):
    questions: MinHashConfig = MinHashConfig()
