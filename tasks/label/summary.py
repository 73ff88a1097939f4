"""What step labelling cost and how sure it is, for the build report and the dataset card: rollouts per row, per
labelled sample and per first error found, the saving against per-step MC at the same m, the rule that decided
where rollouts were spent, flagged rows and the judge's agreement."""

from __future__ import annotations

import polars as pl

from cotforge.schemas.config_views import PrmViewConfig


def labelling_summary(step_labels: pl.DataFrame | None, config: PrmViewConfig) -> dict | None:
    """Figures of the `step_labels` stage (None when it did not run)."""
    if step_labels is None or step_labels.is_empty():
        return None
    labelled = step_labels.filter(pl.col("status") == "labelled")
    rollouts = int(step_labels["rollouts"].sum())
    baseline = int(labelled["mc_equivalent_rollouts"].sum())
    first_errors = labelled["first_error_step"].drop_nulls().len()
    judged = labelled.filter(pl.col("consensus").is_not_null())
    rules = (step_labels.filter(pl.col("rollout_rule") != "").group_by("rollout_rule")
             .agg(samples=pl.len(), rollouts=pl.col("rollouts").sum()).sort("rollout_rule").to_dicts())
    reasons = labelled.select(pl.col("uncertain_reasons").explode().drop_nulls().value_counts(sort=True))
    return {
        "method": config.label_method, "rollouts_per_prefix": config.rollouts,
        "samples picked": step_labels.height, "samples labelled": labelled.height,
        "skipped": dict(sorted(step_labels.filter(pl.col("status") != "labelled")["skip_reason"]
                               .value_counts().rows())),
        "rollouts": rollouts, "rollouts reused (shared prefixes)": int(step_labels["rollouts_reused"].sum()),
        "rollouts per labelled sample": rollouts / labelled.height if labelled.height else None,
        "first errors found": first_errors,
        "rollouts per first error found": rollouts / first_errors if first_errors else None,
        "per-step MC at the same m": baseline,
        "saving against per-step MC": 1 - rollouts / baseline if baseline else None,
        "rules": rules,
        "uncertain rows": labelled.filter(pl.col("label_status") == "uncertain").height,
        "uncertain reasons": {r["uncertain_reasons"]["uncertain_reasons"]: r["uncertain_reasons"]["count"]
                              for r in reasons.to_dicts()},
        "judge mode": config.judge.mode if config.judge.enabled else "off",
        "judged rows (judge decided)": judged.height,
        "judge agreement on the first error": judged["consensus"].mean() if judged.height else None,
        "left out of the view by consensus": (labelled.height - labelled.filter(pl.col("consensus").fill_null(False))
                                              .height) if config.judge.enabled and config.judge.mode == "consensus"
        else 0,
    }


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def labelling_markdown(summary: dict | None) -> list[str]:
    """The report's "Step labels" section."""
    if not summary:
        return []
    lines = ["## Step labels", "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in summary.items() if k not in ("rules", "skipped", "uncertain reasons")]
    lines += [f"| skipped: {k} | {v} |" for k, v in summary["skipped"].items()]
    lines += [f"| uncertain: {k} | {v} |" for k, v in summary["uncertain reasons"].items()]
    lines += ["", "| rollout rule | samples | rollouts |", "|---|---|---|"]
    lines += [f"| {r['rollout_rule']} | {r['samples']} | {r['rollouts']} |" for r in summary["rules"]]
    return lines + [""]


def labelling_rules(summary: dict | None, config: PrmViewConfig) -> list[str]:
    """The card's lines on how the prm view's labels were made, where rollouts were spent and what that cost."""
    if not summary:
        return []
    method = ("binary search for the first step whose prefix no rollout continues to the verified answer"
              if config.label_method == "binary_search" else "Monte-Carlo rollouts from every step prefix"
              if config.label_method == "mc_rollout" else "the simulated solver's known first errors")
    lines = [f"Step labels (`prm`): {method}, m = {config.rollouts} rollouts per probed prefix; first-error "
             f"semantics (steps before the first wrong one true, it and later ones "
             f"{'left out' if config.after_first_error == 'omit' else 'false'}). {summary['rollouts']} rollouts for "
             f"{summary['samples labelled']} labelled samples ({_fmt(summary['rollouts per labelled sample'])} each, "
             f"{_fmt(summary['rollouts per first error found'])} per first error found); per-step MC at the same m "
             f"would have spent {summary['per-step MC at the same m']} (saving "
             f"{_fmt(summary['saving against per-step MC'])})."]
    if config.cheap_check_pass_rate is not None:
        by_rule = {r["rollout_rule"]: r for r in summary["rules"]}
        cheap = by_rule.get("cheap_check", {"samples": 0, "rollouts": 0})
        fallback = by_rule.get("cheap_check_then_full", {"samples": 0, "rollouts": 0})
        lines.append(f"Rollouts only where they inform: verified samples of questions with a pass rate of at least "
                     f"{config.cheap_check_pass_rate} got a cheap check (one rollout from the prefix before the "
                     f"answer) instead of full labelling; samples with a wrong answer were always labelled in full. "
                     f"{cheap['samples']} samples passed the check ({cheap['rollouts']} rollouts), "
                     f"{fallback['samples']} failed it and were labelled in full ({fallback['rollouts']} rollouts).")
    lines.append(f"{summary['uncertain rows']} labelled rows are flagged `uncertain` (reasons: "
                 f"{', '.join(f'{k} {v}' for k, v in summary['uncertain reasons'].items()) or 'none'}); "
                 + ("they are left out of the view." if config.uncertain == "drop" else "they are kept, flagged."))
    if config.judge.enabled:
        lines.append(f"An LLM judge checked every step; it agrees with the rollouts on the first error for "
                     f"{_fmt(summary['judge agreement on the first error'])} of the "
                     f"{summary['judged rows (judge decided)']} rows it decided"
                     + (f"; in consensus mode the {summary['left out of the view by consensus']} other labelled "
                        "rows are left out of the view (kept with their reason in the step_labels stage)."
                        if config.judge.mode == "consensus" else "."))
    return lines
