"""Recipe section `runner`: where the per-shard Prefect tasks run."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from cotforge.schemas.config_base import StrictConfig


class RunnerConfig(StrictConfig):
    # "local": Prefect's default runner in this process. "ray": prefect-ray's RayTaskRunner; the per-shard tasks
    # that hold no model (verify, each Ray task with its own verifier pool, unless an LLM judge is set; vote) are
    # submitted to Ray, one Ray task per shard. Sampling and step labelling hold the generator's model and the
    # dedup/decontam stages are one global task each: they run in the flow's process. The output folder must be
    # reachable from every Ray worker (a shared disk, or an fsspec URL such as s3://, gs://, file://; not memory://).
    kind: Literal["local", "ray"] = "local"
    address: str | None = None  # Ray cluster address ("ray://head:10001", "auto"); None starts a local Ray
    num_cpus: int | None = Field(default=None, ge=1)  # CPUs of the local Ray (when `address` is None)
