"""Judge consensus: the LLM judge's first wrong step against the rollouts' first error (Qwen, "Lessons of developing
process reward models", 2025: MC labels are noisy; keeping only the steps where MC and a judge agree cleans them)."""

from __future__ import annotations


def judge_first_error(judged: list[bool | None]) -> tuple[int | None, bool]:
    """(the first step the judge called wrong, whether it decided): undecided when a step before that one (or any
    step, when it called none wrong) got neither yes nor no."""
    for i, verdict in enumerate(judged):
        if verdict is None:
            return None, False
        if verdict is False:
            return i, True
    return None, True


def consensus(judged: list[bool | None] | None, first_error: int | None) -> tuple[bool | None, str, int | None]:
    """(agree, reason, judge's first error) for one labelled sample: agree is None when the judge did not decide."""
    if judged is None:
        return None, "judge_off", None
    judge_first, decided = judge_first_error(judged)
    if not decided:
        return None, "judge_undecided", None
    if judge_first == first_error:
        return True, "agree", judge_first
    where = lambda i: "none" if i is None else str(i)  # noqa: E731
    return False, f"judge_disagrees (judge {where(judge_first)}, rollouts {where(first_error)})", judge_first
