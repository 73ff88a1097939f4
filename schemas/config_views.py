"""Recipe section `views`: which training tables to publish and what each keeps."""

from __future__ import annotations

from typing import Literal

from schemas.config_base import StrictConfig


class SftViewConfig(StrictConfig):
    enabled: bool = True
    keep: Literal["verified", "majority"] = "verified"  # strict: verifier says true; lenient: agrees with majority


class PreferenceViewConfig(StrictConfig):
    enabled: bool = True
    max_pairs_per_question: int = 2


class PrmViewConfig(StrictConfig):
    enabled: bool = True


class ViewsConfig(StrictConfig):
    sft: SftViewConfig = SftViewConfig()
    preference: PreferenceViewConfig = PreferenceViewConfig()
    prm: PrmViewConfig = PrmViewConfig()
