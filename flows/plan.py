"""`cotforge validate`: a recipe's plan without sampling: questions per source (sources resolved: families generated,
seed files and Hub datasets read, reasoning-gym items made), requests, samples and a token budget."""

from __future__ import annotations

from dataclasses import dataclass, field

from cotforge.schemas.config_questions import SynthSourceConfig
from cotforge.schemas.recipe import Recipe

CHARS_PER_TOKEN = 4  # a rough estimate for prompts, stated as such: no tokenizer is loaded for a plan


@dataclass
class SourcePlan:
    source: str
    asked: int | None  # the source's `n` or share of `questions.total`; None: all it has
    questions: int | None  # resolved questions; None: decided at build time (synthesised)
    rejected: int = 0
    note: str = ""


@dataclass
class Plan:
    sources: list[SourcePlan] = field(default_factory=list)
    questions: int = 0
    requests: int = 0
    samples: int = 0
    max_samples: int = 0  # with the adaptive budget: up to its cap per question
    prompt_tokens: int = 0  # estimated (characters / 4), once per request
    max_completion_tokens: int = 0  # every sample at `max_tokens`
    prm_rollout_tokens: int = 0  # upper bound of the Monte-Carlo step labels' rollouts
    notes: list[str] = field(default_factory=list)


def _source_label(source) -> str:
    if source.kind == "family":
        return f"family:{source.family}"
    if source.kind == "reasoning_gym":
        return source.tag
    return f"{source.kind}:{source.name}"


def _resolve(source, count: int | None, seed: int, position: int):
    """(questions, rejected rows) of one source, with the seed the build's question stage gives it."""
    from cotforge.tasks.questions.stage import family_questions
    from cotforge.tasks.questions.seeds import seed_questions

    if source.kind == "family":
        return family_questions(source, seed + 1000 * position, "plan", "plan", count), []
    if source.kind == "reasoning_gym":
        from cotforge.tasks.questions.gym import gym_questions

        return gym_questions(source, count, seed, "plan", "plan")
    return seed_questions(source, count, seed + 1000 * position, "plan", "plan")


def plan_recipe(recipe: Recipe) -> Plan:
    """Resolve the recipe's sources (no model is called: synthesised sources are counted at their bound) and add up
    what the build would ask of its generator."""
    plan = Plan()
    seen: set[str] = set()
    questions_text: list[str] = []
    for position, (source, count) in enumerate(zip(recipe.questions.sources, recipe.questions.source_counts())):
        label = _source_label(source)
        if isinstance(source, SynthSourceConfig):
            bound = count if count is not None else len(source.topics) * source.candidates_per_prompt
            plan.sources.append(SourcePlan(label, count, None, note=f"synthesised at build time: at most {bound}"))
            plan.questions += bound
            questions_text += [""] * bound
            continue
        kept, rejected = _resolve(source, count, recipe.seed, position)
        fresh = [q for q in kept if q.question_id not in seen]  # an earlier source's question is a duplicate
        seen.update(q.question_id for q in fresh)
        plan.sources.append(SourcePlan(label, count, len(fresh), len(rejected) + len(kept) - len(fresh)))
        plan.questions += len(fresh)
        questions_text += [q.text for q in fresh]
        if not kept:
            plan.notes.append(f"source {label} gives no question ({len(rejected)} rows rejected): the build stops "
                              "before sampling (exit 3) until it is fixed or removed")
    generation = recipe.generation
    k = generation.samples_per_question
    plan.requests = plan.questions
    plan.samples = plan.questions * k
    plan.max_samples = plan.questions * (max(k, generation.adaptive.cap) if generation.adaptive.enabled else k)
    system = len(generation.system_prompt)
    plan.prompt_tokens = sum((system + len(text)) // CHARS_PER_TOKEN + 1 for text in questions_text)
    plan.max_completion_tokens = plan.max_samples * generation.sampling.max_tokens
    prm = recipe.views.prm
    if prm.enabled and prm.label_method == "mc_rollout":
        rollout_tokens = prm.rollout_max_tokens or generation.sampling.max_tokens
        plan.prm_rollout_tokens = (plan.questions * min(prm.max_samples_per_question, k) * prm.max_steps
                                   * prm.rollouts * rollout_tokens)
    if generation.adaptive.enabled:
        plan.notes.append(f"adaptive budget on: {k} samples per question, up to {generation.adaptive.cap}")
    if generation.guidance.enabled:
        plan.notes.append("guidance on: unsolved questions are sampled again with a hint (not counted above)")
    if recipe.verify.judge is not None:
        plan.notes.append("LLM judge on: one judge call per undecided sample (not counted above)")
    return plan
