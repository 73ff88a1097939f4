"""The build report: counts per stage, per-verifier verdicts, and plots, under `OUT/report/`."""

from __future__ import annotations

import io

import polars as pl

from cotforge.tasks.label.summary import labelling_markdown


def stage_counts(questions: pl.DataFrame, samples: pl.DataFrame, verdicts: pl.DataFrame, votes: pl.DataFrame,
                 dedup: pl.DataFrame, views: dict[str, int]) -> dict[str, int]:
    """The funnel: generated -> sampled -> verified -> voted -> deduplicated -> published. `samples` counts every
    sample of the version's new questions, whichever run sampled it (the generation section splits this run's work
    from the reused)."""
    counts = {
        "questions generated": questions.height,
        "samples": samples.height,
        "samples with generation errors": samples.filter(pl.col("error").is_not_null()).height,
        "answers extracted": verdicts.filter(pl.col("extracted_answer").is_not_null()).height,
        "samples verified correct": verdicts.filter(pl.col("verdict") == True).height,  # noqa: E712
        "samples verified incorrect": verdicts.filter(pl.col("verdict") == False).height,  # noqa: E712
        "samples undecided": verdicts.filter(pl.col("verdict").is_null()).height,
        "questions with a majority answer": votes.filter(pl.col("majority_answer").is_not_null()).height,
        "questions solved at least once": votes.filter(pl.col("n_correct") > 0).height,
        "questions kept after dedup": dedup.filter(pl.col("keep")).height,
        "questions dropped as duplicates": dedup.filter(~pl.col("keep")).height,
    }
    if "trainable" in verdicts.columns:
        counts["samples kept out of training views"] = verdicts.filter(~pl.col("trainable")).height
    counts["code samples not run: no isolation"] = verdicts.filter(pl.col("reason") == "no_isolation").height
    counts.update({f"rows in view {name}": rows for name, rows in views.items()})
    return counts


def stage_rows(rows: dict[str, int]) -> dict[str, int]:
    """The rows each timed stage of a build works through, from {"questions", "samples", "step_labels"} counts: the
    questions stage makes questions, sampling, verification, voting and publishing go through samples, dedup compares
    questions and samples, step labelling labels the samples it picks (rows of `step_labels`)."""
    questions, samples = rows.get("questions", 0), rows.get("samples", 0)
    return {"questions": questions, "sample": samples, "verify": samples, "vote": samples,
            "verify+vote beside sampling (worker busy)": samples, "dedup": questions + samples,
            "label_steps": rows.get("step_labels", samples), "publish": samples}


def stage_rates(timings: dict[str, float], rows: dict[str, int]) -> list[dict]:
    """Per timed stage: seconds, rows and rows per second (None where a stage has no row count or took no time), so
    the slow stage shows at a glance."""
    return [{"stage": stage, "seconds": seconds, "rows": rows.get(stage),
             "rows_per_s": rows[stage] / seconds if rows.get(stage) is not None and seconds > 0 else None}
            for stage, seconds in timings.items()]


def _or_dash(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def verdict_breakdown(verdicts: pl.DataFrame) -> list[dict]:
    """Per verifier: how many true / false / null, and why.

    Every check on every row counts under its verifier's name; the cascade's final verdicts count under
    "final:<deciding verifier>". Keys: verifier_name, verdict ("true"/"false"/"null"), reason, len."""
    return merged_breakdown([verdict_counts(verdicts)])


def merged_breakdown(counts: list[pl.DataFrame]) -> list[dict]:
    """`verdict_breakdown` of verdicts counted part by part (`verdict_counts` of each part): the same figures."""
    keys = ["verifier_name", "verdict", "reason"]
    return (pl.concat(counts, how="vertical_relaxed").group_by(keys).agg(pl.col("len").sum().cast(pl.UInt32))
            .sort(keys).to_dicts())


def verdict_counts(verdicts: pl.DataFrame) -> pl.DataFrame:
    """Rows per (verifier_name, verdict, reason) of some verdicts: what `verdict_breakdown` adds up."""
    final = verdicts.select(pl.format("final:{}", pl.col("verifier_name")).alias("verifier_name"), "verdict", "reason")
    parts = [final]
    if "checks" in verdicts.columns and verdicts.height:
        checks = verdicts.select("checks").explode("checks").drop_nulls("checks").unnest("checks")
        parts.append(checks.select(pl.col("name").alias("verifier_name"), "verdict", "reason"))
    table = pl.concat(parts, how="vertical_relaxed")
    return (table.with_columns(pl.when(pl.col("verdict").is_null()).then(pl.lit("null"))
                               .otherwise(pl.col("verdict").cast(pl.Utf8).str.to_lowercase()).alias("verdict"))
            .group_by("verifier_name", "verdict", "reason").len())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on build machines
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    _pyplot().close(fig)
    return buffer.getvalue()


def pass_rate_histogram_png(votes: pl.DataFrame) -> bytes:
    """A PNG histogram of per-question pass rates."""
    rates = votes.filter(pl.col("pass_rate").is_not_null())["pass_rate"].to_list()
    fig, ax = _pyplot().subplots(figsize=(6, 3.5), dpi=100)
    ax.hist(rates, bins=[i / 10 for i in range(11)], color="#4c72b0", edgecolor="white")
    ax.set_xlabel("pass rate (correct samples / samples)")
    ax.set_ylabel("questions")
    ax.set_title(f"Per-question pass rate ({len(rates)} questions)")
    return _png(fig)


FUNNEL_STAGES = ("questions generated", "questions kept after dedup", "samples", "answers extracted",
                 "samples verified correct")


def funnel_png(counts: dict[str, int]) -> bytes:
    """A PNG bar chart of the funnel: questions, samples, verified, then the rows each view published."""
    stages = [s for s in FUNNEL_STAGES if s in counts] + sorted(k for k in counts if k.startswith("rows in view "))
    values = [counts[s] for s in stages]
    fig, ax = _pyplot().subplots(figsize=(7, 0.35 * len(stages) + 1.2), dpi=100)
    bars = ax.barh(stages[::-1], values[::-1], color="#55a868")
    ax.bar_label(bars, padding=3)
    ax.set_xlabel("count")
    ax.set_title("Build funnel")
    ax.margins(x=0.15)
    return _png(fig)


def verdicts_png(breakdown: list[dict]) -> bytes:
    """A PNG stacked bar chart: per verifier, how many true / false / null verdicts."""
    totals: dict[str, dict[str, int]] = {}
    for row in breakdown:
        totals.setdefault(row["verifier_name"], {"true": 0, "false": 0, "null": 0})[row["verdict"]] += row["len"]
    names = sorted(totals)
    fig, ax = _pyplot().subplots(figsize=(7, 0.35 * len(names) + 1.2), dpi=100)
    left = [0] * len(names)
    for verdict, color in (("true", "#55a868"), ("false", "#c44e52"), ("null", "#8c8c8c")):
        widths = [totals[n][verdict] for n in names]
        ax.barh(names, widths, left=left, color=color, label=verdict)
        left = [a + b for a, b in zip(left, widths)]
    ax.set_xlabel("samples")
    ax.set_title("Verdicts per verifier")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


REPORT_PLOTS = {"pass_rate.png": "pass rate", "funnel.png": "funnel", "verdicts.png": "verdicts per verifier"}


def mix_counts(mix: list[dict]) -> dict[str, int]:
    """The question mix (tasks.questions.question_mix) as funnel counts: questions per source, rejected rows."""
    counts = {f"questions from {m['source']}": m["questions"] for m in mix}
    counts["question rows rejected"] = sum(m["rejected"] for m in mix)
    return counts


def mix_markdown(mix: list[dict]) -> list[str]:
    """A table of the question sources: kept, share of the mix, rejected rows and why."""
    lines = ["## Question sources", "", "| source | questions | share | rejected | reasons |", "|---|---|---|---|---|"]
    lines += [f"| {m['source']}" + (f" at {m['revision']}" if m.get("revision") else "")
              + f" | {m['questions']} | {m['share']:.1%} | {m['rejected']} | "
              f"{', '.join(f'{k} ({v})' for k, v in m['reject_reasons'].items()) or '-'} |" for m in mix]
    return lines + [""]


def report_markdown(counts: dict[str, int], breakdown: list[dict], timings: dict[str, float],
                    generation: dict | None = None, mix: list[dict] | None = None,
                    views: list[dict] | None = None, labelling: dict | None = None,
                    rows: dict[str, int] | None = None) -> str:
    """The report's markdown; `rows`: the rows each timed stage went through (`stage_rows`), for rows/s."""
    lines = ["# Build report", ""]
    if views:  # the version is a snapshot: each view's rows new in this version, and those carried from the previous
        lines += ["## Rows per view", "", "| view | schema version | rows | new in this version | carried |",
                  "|---|---|---|---|---|"]
        lines += [f"| {v['name']} | {v['schema_version']} | {v['rows']} | {v['new_rows']} | {v['carried_rows']} |"
                  for v in views] + [""]
    lines += ["## Counts per stage", "", "| stage | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts.items()]
    if mix:
        lines += [""] + mix_markdown(mix)
    if generation:  # generate/accounting.py: generation_accounting: tokens, throughput, accepted per token / GPU-hour
        lines += ["", "## Generation", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {'n/a' if v is None else v} |" for k, v in generation.items()
                  if k not in ("errors", "sampling window")]
        errors = generation.get("errors") or {}
        lines += [f"| samples with generation errors | {errors.get('total', 0)} ({errors.get('rate', 0):.1%}); "
                  f"{errors.get('this run', 0)} this run, {errors.get('requests retried this run', 0)} requests "
                  "retried |"]
        if errors.get("kinds"):
            lines += ["", "### Generation errors", "", "| kind | samples | example |", "|---|---|---|"]
            lines += [f"| {k['kind']} | {k['count']} | {k['example'][:160].replace('|', '/')} |"
                      for k in errors["kinds"]]
    if generation and generation.get("sampling window"):  # a streaming backend's in-flight window (back-pressure)
        lines += ["", "### Sampling window over time", "", "| from (s) | window min | window max | in flight (mean) |",
                  "|---|---|---|---|"]
        lines += [f"| {w['from_s']} | {w['window_min']} | {w['window_max']} | {w['in_flight_mean']} |"
                  for w in generation["sampling window"]]
    if labelling:  # tasks/label/summary.py: rollouts spent, saving against per-step MC, flags, judge agreement
        lines += [""] + labelling_markdown(labelling)
    lines += ["", "## Verdicts per verifier", "", "| verifier | verdict | reason | samples |", "|---|---|---|---|"]
    lines += [f"| {b['verifier_name']} | {b['verdict']} | {b['reason']} | {b['len']} |" for b in breakdown]
    lines += ["", "## Wall time per stage", "", "| stage | seconds | rows | rows/s |", "|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['seconds']:.1f} | {_or_dash(r['rows'], 'd')} | "
              f"{_or_dash(r['rows_per_s'], ',.0f')} |" for r in stage_rates(timings, rows or {})]
    lines += [""] + [f"![{title}]({name})" for name, title in REPORT_PLOTS.items()] + [""]
    return "\n".join(lines)
