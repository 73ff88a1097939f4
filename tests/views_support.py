"""Stage records for view tests, made by the real stage kernels on the simulated solver (no flow, no store)."""

from __future__ import annotations

import polars as pl

from cotforge.schemas.arrow import to_table
from cotforge.schemas.config_generation import GenerationConfig, SimulatedConfig
from cotforge.schemas.config_questions import FamilySourceConfig, QuestionsConfig
from cotforge.schemas.config_verify import VerifyConfig
from cotforge.schemas.records import Question
from cotforge.tasks.core.join import join_records
from cotforge.tasks.generate.sample import sample_questions
from cotforge.tasks.generate.simulated import SimulatedGenerator
from cotforge.tasks.questions.stage import collect_sources
from cotforge.tasks.verify.cascade import verify_samples
from cotforge.tasks.verify.vote import vote_answers


def simulated_records(n: int = 24, difficulty: int = 3, samples: int = 4, seed: int = 5,
                      step_error_rate: float = 0.15) -> dict[str, pl.DataFrame]:
    """questions, samples, verdicts, votes and an all-kept dedup frame for `n` arithmetic questions."""
    questions = to_table(collect_sources(QuestionsConfig(sources=[FamilySourceConfig(
        family="arithmetic", n=n, difficulty=difficulty)]), seed, "rh", "bid").questions, Question)
    generation = GenerationConfig(backend="simulated", samples_per_question=samples,
                                  simulated=SimulatedConfig(step_error_rate=step_error_rate))
    generator = SimulatedGenerator(step_error_rate, generation.simulated.format_error_rate)
    sampled = sample_questions(questions, generator, generation, seed, "rh", "bid")
    verdicts = verify_samples(sampled, questions, "rh", "bid", VerifyConfig())
    votes = vote_answers(verdicts, questions, VerifyConfig(), "simulated", "rh", "bid")
    q = pl.from_arrow(questions)
    dedup = q.select("question_id", pl.col("question_id").alias("cluster_id"), pl.lit(True).alias("keep"),
                     pl.lit(None, dtype=pl.String).alias("drop_reason"))
    return {"questions": q, "samples": pl.from_arrow(sampled), "verdicts": pl.from_arrow(verdicts),
            "votes": pl.from_arrow(votes), "dedup": dedup, "generation": generation}


def simulated_joined(**kwargs) -> tuple[pl.DataFrame, GenerationConfig]:
    r = simulated_records(**kwargs)
    return join_records(r["questions"], r["samples"], r["verdicts"], r["votes"], r["dedup"]), r["generation"]
