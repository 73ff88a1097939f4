"""Generation accounting: what each run of the sampling stage did (tokens, time, parts reused), saved beside each
samples shard, and the build report's generation section computed from it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import polars as pl

from cotforge.tasks.core.context import BuildFailed
from cotforge.tasks.core.shards import ShardRef, ShardStore


@dataclass
class SamplingStats:
    """What one run of the stage did: the raw material of the build report's generation accounting."""

    requests: int = 0
    completions: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    generate_s: float = 0.0  # time inside the backend's generate calls
    stage_s: float = 0.0  # wall time of the stage, generation included
    parts_generated: int = 0
    parts_reused: int = 0  # parts found on disk from an earlier, interrupted run
    rounds: int = 0
    guided_samples: int = 0
    errors: int = 0  # completions that came back with a generation error in this run
    retried_requests: int = 0  # requests that had failed in an earlier run and were asked again in this one
    gpus: int = 0
    per_round: dict = field(default_factory=dict)

    def add(self, other: "SamplingStats") -> None:
        for name in ("requests", "completions", "prompt_tokens", "completion_tokens", "generate_s", "stage_s",
                     "parts_generated", "parts_reused", "guided_samples", "errors", "retried_requests"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rounds = max(self.rounds, other.rounds)
        self.gpus = max(self.gpus, other.gpus)


# The counts of the build (report, card) that tell this run's sampling work from the work it reused.
REUSE_COUNTS = ("samples generated this run", "samples reused from earlier runs", "shards reused from earlier runs",
                "completion tokens generated this run", "completion tokens reused from earlier runs")


def stats_path(key: str) -> str:
    return f"_work/samples/{key}.stats.json"


def window_path(build_id: str) -> str:
    """Where a build saves its streaming backend's window over time (the last sampling run's)."""
    return f"_work/samples/window-{build_id}.json"


def window_summary(log: list, rows: int = 20) -> list[dict]:
    """The window over time in at most `rows` rows: per time slice, the smallest and largest window and the mean
    number of requests in flight. `log` holds (seconds, window, in flight) entries in time order."""
    if not log:
        return []
    end = log[-1][0] or 1.0
    slices: dict[int, list] = {}
    for t, window, in_flight in log:
        slices.setdefault(min(rows - 1, int(rows * t / end)), []).append((window, in_flight))
    return [{"from_s": round(i * end / rows, 2), "window_min": min(w for w, _ in v), "window_max": max(w for w, _ in v),
             "in_flight_mean": round(sum(f for _, f in v) / len(v), 1)} for i, v in sorted(slices.items())]


def generation_accounting(store: ShardStore, refs: list[ShardRef], samples, verdicts, stage_wall_s: float,
                          window: list | None = None, run_id: str | None = None) -> dict:
    """The build report's generation section: tokens, throughput, wall time, accepted samples per token and per
    GPU-hour, and the streaming backend's window over time (`window`: its log, when it keeps one). Totals come from
    the sample rows (complete even after a resume); "this run" figures and throughput only from the stats of the
    shards run `run_id` sampled (None: every shard's stats); shards an earlier run wrote are reused work."""
    run = SamplingStats()
    reused_shards = 0
    for ref in refs:
        # beside the shard's file (a shard with errors is referenced under a key that names them: see sample_shard)
        path = ref.path[: -len(".parquet")] + ".stats.json"
        saved = None
        if store.fs.exists(path):
            with store.fs.open(path, "r") as f:
                saved = json.load(f)
        if saved is None or (run_id is not None and saved.get("run_id") != run_id):
            reused_shards += 1
            continue
        run.add(SamplingStats(**{k: v for k, v in saved.items() if k in SamplingStats.__dataclass_fields__}))
    prompt_tokens = int(samples["prompt_tokens"].sum()) if samples.height else 0
    completion_tokens = int(samples["completion_tokens"].sum()) if samples.height else 0
    accepted = verdicts.filter(pl.col("verdict") == True).height if verdicts is not None else 0  # noqa: E712
    guided = samples.filter(pl.col("guidance").is_not_null()).height if samples.height else 0
    gpu_hours = run.gpus * stage_wall_s / 3600 if run.gpus else None
    return {
        "samples": samples.height, "guided samples (off-policy)": guided,
        "prompt tokens": prompt_tokens, "completion tokens": completion_tokens,
        "samples generated this run": run.completions,
        "samples reused from earlier runs": max(0, samples.height - run.completions),
        "shards reused from earlier runs": reused_shards,
        "completion tokens generated this run": run.completion_tokens,
        "completion tokens reused from earlier runs": max(0, completion_tokens - run.completion_tokens),
        "completion tokens/s (backend)": round(run.completion_tokens / run.generate_s, 2) if run.generate_s else None,
        "completion tokens/s (stage)": round(run.completion_tokens / run.stage_s, 2) if run.stage_s else None,
        "sampling stage wall time (s)": round(stage_wall_s, 2),
        "parts resumed from an earlier run": run.parts_reused,
        "accepted samples": accepted,
        "accepted samples per 1k completion tokens": round(1000 * accepted / completion_tokens, 4)
        if completion_tokens else None,
        "gpus": run.gpus,
        "accepted samples per GPU-hour": round(accepted / gpu_hours, 1) if gpu_hours else None,
        "errors": error_summary(samples) | {"this run": run.errors, "requests retried this run": run.retried_requests},
        "sampling window": window_summary(window or []),
    }


def error_kind(error: str) -> str:
    """The kind of a recorded generation error: its exception name or HTTP status, the text before the first colon."""
    return error.split(":", 1)[0].strip()[:80] or "unknown"


def error_summary(samples: pl.DataFrame) -> dict:
    """How many samples carry a generation error, their share, and per kind a count and one example."""
    errors = samples.filter(pl.col("error").is_not_null())["error"].to_list() if samples.height else []
    kinds: dict[str, dict] = {}
    for error in errors:
        entry = kinds.setdefault(error_kind(error), {"count": 0, "example": error[:300]})
        entry["count"] += 1
    ranked = sorted(kinds.items(), key=lambda item: (-item[1]["count"], item[0]))
    return {"total": len(errors), "rate": round(len(errors) / samples.height, 4) if samples.height else 0.0,
            "kinds": [{"kind": kind, **entry} for kind, entry in ranked]}


def check_samples(store: ShardStore, questions: list[ShardRef], samples: list[ShardRef], max_error_rate: float,
                  backend: str, log_path: str | None = None) -> None:
    """`check_generation` over the stage's shards (only the columns it needs are read)."""
    frame = pl.concat([pl.from_arrow(store.read(ref, ["sample_id", "error"])) for ref in samples]) \
        if samples else pl.DataFrame({"sample_id": [], "error": []}, schema={"sample_id": pl.Utf8, "error": pl.Utf8})
    check_generation(frame, sum(r.rows for r in questions), max_error_rate, backend, log_path)


def check_generation(samples: pl.DataFrame, questions: int, max_error_rate: float, backend: str,
                     log_path: str | None = None) -> None:
    """Stop the build (`BuildFailed`) when sampling produced nothing usable: no samples for the questions asked, or a
    share of generation errors above the recipe's `generation.max_error_rate`."""
    where = f" (engine log: {log_path})" if log_path else ""
    if questions and not samples.height:
        raise BuildFailed(f"the {backend} backend produced no samples for {questions} questions{where}")
    summary = error_summary(samples)
    if summary["total"] and summary["rate"] > max_error_rate:
        first = "; ".join(f"{k['count']} x {k['example']}" for k in summary["kinds"][:3])
        raise BuildFailed(
            f"{summary['total']} of {samples.height} samples ({summary['rate']:.0%}) failed on the {backend} backend, "
            f"above generation.max_error_rate={max_error_rate:g}: {first}{where}. Nothing was published; the shards "
            "are kept, and a rerun asks the failed requests again.")
