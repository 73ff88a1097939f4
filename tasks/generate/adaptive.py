"""Adaptive budget and guided re-sampling: which samples are accepted, how many more a question gets, and the hint or
reference prefix an unsolved question is re-sampled with."""

from __future__ import annotations

import math

import pyarrow as pa

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_generation import GenerationConfig
from cotforge.schemas.records import Sample


def accepted_flags(samples: list[Sample], questions: pa.Table, verify_config=None, pool=None) -> list[bool | None]:
    """Per sample: True (verified correct), False (wrong) or None (undecidable: no gold, unknown verifier, error).

    The verify stage's own kernel decides (`verify.cascade.verify_samples`: extraction, the question's registered
    verifier, the cascade), so the adaptive budget counts exactly what the build will later accept."""
    from cotforge.schemas.config_verify import VerifyConfig
    from cotforge.tasks.verify.cascade import verify_samples

    if not samples:
        return []
    verdicts = verify_samples(to_table(samples, Sample), questions, "", "", verify_config or VerifyConfig(), pool=pool)
    by_id = dict(zip(verdicts.column("sample_id").to_pylist(), verdicts.column("verdict").to_pylist()))
    return [by_id.get(s.sample_id) for s in samples]


def plan_extra_samples(n: int, accepted: int, decided: int, quota: int, cap: int, min_step: int) -> int:
    """How many more samples a question gets: enough to expect `quota` accepted at its observed rate, within `cap`.

    The rate is the smoothed (accepted + 1/2) / (decided + 1), so a question with no success yet still gets a finite,
    large request (hard questions get more samples, as in GVM-RAFT's variance-minimising allocation)."""
    if accepted >= quota or n >= cap or decided == 0:
        return 0
    rate = (accepted + 0.5) / (decided + 1)
    need = math.ceil((quota - accepted) / rate)
    return max(0, min(cap - n, max(min_step, need)))


def guidance_for(row: dict, config: GenerationConfig) -> tuple[str, str, int] | None:
    """(hint, assistant prefix, prefix steps) for a question with no accepted sample; None if it has no reference."""
    steps = list(row.get("reference_steps") or [])
    if not steps:
        return None
    g = config.guidance
    k = max(1, min(len(steps) - 1, math.floor(g.prefix_fraction * len(steps)))) if len(steps) > 1 else 1
    given = steps[:k]
    if g.mode == "hint":
        return "a correct solution starts like this: " + " ; ".join(given), "", 0
    return "", "".join(f"Step {i + 1}: {s}\n" for i, s in enumerate(given)), k
