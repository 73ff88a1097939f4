"""Where to roll out, and what the rollouts say: the per-step Monte-Carlo plan and the binary search for the first
error, as pure functions of the rollout results measured so far (no backend, no Prefect).

A prefix ending at step i is "good" when some rollout from it reaches the verified answer and "bad" when all m do
not. Both plans give first-error labels: steps before the first bad prefix true, it and every later step false.

Binary search (OmegaPRM's divide and conquer, Luo et al. 2024) assumes what first-error labels assume: once a prefix
is bad, longer ones are too. A wrong final answer makes the whole sample the bad end; the search halves the range
between the longest good and the shortest bad prefix until they are neighbours, about m * log2(K) rollouts instead
of m * (K - 1). A verified sample needs one probe, of its last prefix: good means every shorter prefix is good too;
bad contradicts the verdict, so the search goes on (and the row is flagged). A prefix needs no rollout when a
text that reached the answer passes through it (`witnessed`: a verified sibling sample, or a successful rollout of
another prefix that went on through the same steps: OmegaPRM's reuse of rollouts). A probe stops early: it sends
`first` rollouts, and the rest of its m only if none of them reached the answer (a good prefix is usually settled by
its first rollouts; a bad one always costs m). Labels never go against the scores they come with: a prefix measured
bad (m rollouts, none reached the answer, no witness) before a longer one proved good is the first error, flagged
`non_monotone`, as per-step MC flags it; a witness counts in its prefix's score as a rollout that reached the answer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PrefixResult:
    """The rollouts measured from one prefix."""

    successes: int = 0
    valid: int = 0  # completions judged (the backend produced them)
    errors: int = 0  # completions the backend failed to produce
    witnessed: int = 0  # other texts that reached the answer and pass through this prefix (no rollout needed)

    @property
    def attempted(self) -> int:
        return self.valid + self.errors

    @property
    def score(self) -> float | None:
        """Share of the prefix's rollouts that reached the answer, a witness counting as one that did (None: not
        rolled out). A witnessed prefix whose own few rollouts all failed is good, so its score is not 0."""
        return (self.successes + self.witnessed) / (self.valid + self.witnessed) if self.valid else None

    def refuted(self, m: int) -> bool:
        """Measured bad: all m rollouts sent, none reached the answer, and no other text reached it through here."""
        return self.attempted >= m and self.valid > 0 and not self.successes and not self.witnessed


@dataclass
class Outcome:
    """What one sample's plan concluded: labels, soft scores where measured, and doubts."""

    status: str  # "labelled", "rollouts_failed", "pending"
    labels: list[bool]
    scores: list[float | None]
    first_error_step: int | None
    uncertain: list[str]  # reasons: "few_rollouts", "non_monotone", "verdict_disagrees"


def _first_error_labels(n_steps: int, first_error: int | None) -> list[bool]:
    return [first_error is None or i < first_error for i in range(n_steps)]


def _scores(n_steps: int, results: list[PrefixResult | None], verified: bool) -> list[float | None]:
    """Soft score per step where measured (None where no rollout was sent); the last step is the sample's verdict."""
    measured = [r.score if r is not None else None for r in results[:n_steps - 1]]
    return measured + [1.0 if verified else 0.0]


def per_step_probes(n_steps: int, verified: bool, m: int, results: list[PrefixResult | None],
                    cheap_check: bool = False) -> list[tuple[int, int]]:
    """(step, rollouts still to send) for per-step MC: m from every prefix 0..K-2 (the last step is the sample).

    With `cheap_check` (a verified sample of an easy question) one rollout from the last prefix comes first; if it
    reaches the answer the sample is done, otherwise every prefix gets its m."""
    if n_steps < 2:
        return []
    last = results[n_steps - 2]
    if cheap_check and verified:
        if last is None:
            return [(n_steps - 2, 1)]
        if last.successes:
            return []
    return [(i, m - (r.attempted if r else 0)) for i, r in enumerate(results[:n_steps - 1])
            if m - (r.attempted if r else 0) > 0]


def per_step_outcome(n_steps: int, verified: bool, m: int, results: list[PrefixResult | None]) -> Outcome:
    scores = _scores(n_steps, results, verified)
    probed = [r for r in results[:n_steps - 1] if r is not None]
    if any(r.valid == 0 for r in probed):
        return Outcome("rollouts_failed", [], scores, None, [])
    if len(probed) < n_steps - 1:  # a passed cheap check: the last prefix is good, so every shorter one is
        return Outcome("labelled", [True] * n_steps, scores, None, [])
    hard = [s > 0 for s in scores]
    first = next((i for i, ok in enumerate(hard) if not ok), None)
    uncertain = []
    if first is not None and verified:
        uncertain.append("verdict_disagrees")  # a prefix failed, yet the sample itself reached the answer
    if first is not None and any(hard[first + 1:-1]):
        uncertain.append("non_monotone")  # a longer prefix recovered after a shorter one failed
    if first is not None and first < n_steps - 1 and results[first].valid < m:
        uncertain.append("few_rollouts")
    return Outcome("labelled", _first_error_labels(n_steps, first), scores, first, sorted(set(uncertain)))


@dataclass
class _Bisection:
    good: int  # longest prefix known good (-1: the empty prefix, the question itself)
    bad: int | None  # shortest prefix known bad (None: not found)
    want: tuple[int, int] | None  # (step, rollouts) to send next
    failed: bool = False
    rechecked: bool = False  # a prefix before a weakly good one turned out bad


def _weak(r: PrefixResult) -> bool:
    """Good on one success only: a rollout from a wrong prefix can reach the answer when a later error cancels the
    first, and bisection would carry that one success to every shorter prefix."""
    return r.successes + r.witnessed < 2


def _bisect(n_steps: int, verified: bool, m: int, results: list[PrefixResult | None], first: int,
            cheap_check: bool) -> _Bisection:
    """Replay the search over the results measured so far: where it stands and what it needs next.

    Once the bounds meet, a good bound resting on a single success is checked from the left: the prefixes before it
    are bisected again (cheap: good prefixes stop early); a bad one there is the first error."""
    good, bad = -1, (None if verified else n_steps - 1)
    recheck: tuple[int, int] | None = None  # (the weak good bound, the bad bound) while checking its left
    while True:
        if bad is None:
            target = n_steps - 2 if n_steps - 2 > good else None
        else:
            target = (good + bad) // 2 if bad - good > 1 else None
        if target is None:
            if recheck is None and bad is not None and good > 0 and _weak(results[good]):
                recheck, good, bad = (good, bad), -1, good
                continue
            if recheck is not None and bad == recheck[0]:  # every prefix before the weak bound is good
                return _Bisection(recheck[0], recheck[1], None)
            return _Bisection(good, bad, None, rechecked=recheck is not None)
        r = results[target]
        # While checking left of a weak bound, the text that made it good (passing through these prefixes too) is
        # not evidence again: only rollouts of the prefix itself, or two other texts, are.
        if r is not None and (r.successes or r.witnessed >= (2 if recheck else 1)):
            good = target
            continue
        attempted = r.attempted if r else 0
        if attempted >= m:
            if r.valid == 0:
                return _Bisection(good, bad, None, failed=True)
            bad = target
            continue
        opening = 1 if cheap_check and verified and target == n_steps - 2 else first
        return _Bisection(good, bad, (target, min(m, opening) if attempted == 0 else m - attempted))


def search_probes(n_steps: int, verified: bool, m: int, results: list[PrefixResult | None], first: int,
                  cheap_check: bool = False) -> list[tuple[int, int]]:
    """(step, rollouts still to send) for the next round of the binary search: at most one prefix per sample."""
    state = _bisect(n_steps, verified, m, results, first, cheap_check)
    return [state.want] if state.want else []


def search_outcome(n_steps: int, verified: bool, m: int, results: list[PrefixResult | None], first: int,
                   cheap_check: bool = False) -> Outcome:
    state = _bisect(n_steps, verified, m, results, first, cheap_check)
    scores = _scores(n_steps, results, verified)
    if state.failed:
        return Outcome("rollouts_failed", [], scores, None, [])
    if state.want is not None:
        return Outcome("pending", [], scores, None, [])
    uncertain = ["non_monotone"] if state.rechecked else []
    bad = state.bad
    # The search trusts monotonicity: a longer good prefix makes every shorter one good. A shorter prefix measured
    # bad on an earlier round (before the witnesses that moved the search past it) says otherwise; as per-step MC
    # does, it is the first error and the row is in doubt, never a correct step with a score of 0.
    refuted = next((i for i, r in enumerate(results[:min(n_steps - 1, n_steps if bad is None else bad)])
                    if r is not None and r.refuted(m)), None)
    if refuted is not None:
        bad = refuted
        uncertain = ["non_monotone"]
    if verified and bad is not None:
        uncertain.append("verdict_disagrees")
    if bad is not None and bad < n_steps - 1 and results[bad].valid < m:
        uncertain.append("few_rollouts")
    return Outcome("labelled", _first_error_labels(n_steps, bad), scores, bad, uncertain)
