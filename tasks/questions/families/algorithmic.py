"""Algorithmic tasks: sort a list, count the items with a property, and the shortest route in a weighted graph.

Difficulty lengthens the list (3 + 2d numbers), and grows the graph (4 + d places). The worked solutions follow the
algorithm a person would: selection sort (one pick per step), counting in groups of three, Dijkstra (one settled
place per step). The param `task` ("sort", "count", "path") fixes one kind; by default each question draws one.
"""

from __future__ import annotations

import heapq
import random
import string

from cotforge.tasks.questions.families.base import (
    ABSTAIN_STEPS,
    FamilyItem,
    Solution,
    abstain_solution,
    family_items,
    is_unanswerable,
    params_value,
    register_family,
)

TASKS = ("sort", "count", "path")
GROUP = 3  # numbers counted per step


def _dijkstra(nodes: list[str], edges: list[list], source: str, target: str, rng: random.Random | None,
              error_at: int | None) -> tuple[list[str], int]:
    """Settle places in order of distance; at step `error_at` the settled distance is overstated by 1..3."""
    graph: dict[str, list[tuple[str, int]]] = {v: [] for v in nodes}
    for a, b, w in edges:
        graph[a].append((b, w))
        graph[b].append((a, w))
    dist = {source: 0}
    done: set[str] = set()
    heap = [(0, source)]
    steps: list[str] = []
    while heap:
        d, v = heapq.heappop(heap)
        if v in done or d > dist.get(v, 1 << 60):
            continue
        if len(steps) == error_at and rng is not None:
            d += rng.randint(1, 3)
            dist[v] = d
        done.add(v)
        steps.append(f"Settle {v} at distance {d}.")
        if v == target:
            return steps, d
        for u, w in graph[v]:
            if u not in done and d + w < dist.get(u, 1 << 60):
                dist[u] = d + w
                heapq.heappush(heap, (d + w, u))
    raise ValueError(f"{target} is not reachable from {source}")


class AlgorithmicFamily:
    name = "algorithmic"

    def generate(self, n: int, difficulty: int, seed: int, **params) -> list[FamilyItem]:
        """Difficulty d: lists of 3 + 2d numbers below 10(d + 2); graphs with 4 + d places and about 1.5 roads each."""
        task = params.get("task")
        if task is not None and task not in TASKS:
            raise ValueError(f"algorithmic task must be one of {TASKS}, got {task!r}")
        length = params_value(params, "length", 3 + 2 * difficulty)

        def make(rng: random.Random) -> FamilyItem:
            kind = task or rng.choice(TASKS)
            if kind == "sort":
                p = {"task": kind, "numbers": [rng.randint(1, 10 * (difficulty + 2)) for _ in range(length)]}
            elif kind == "count":
                p = {"task": kind, "numbers": [rng.randint(1, 10 * (difficulty + 2)) for _ in range(length)],
                     "divisor": rng.randint(2, 3 + difficulty // 3)}
            else:
                nodes = list(string.ascii_uppercase[:4 + difficulty])
                edges = []
                for i in range(1, len(nodes)):  # a random spanning tree keeps every place reachable
                    edges.append([nodes[rng.randrange(i)], nodes[i], rng.randint(1, 9)])
                pairs = {frozenset(e[:2]) for e in edges}
                for _ in range(len(nodes) // 2 + 1):
                    a, b = rng.sample(nodes, 2)
                    if frozenset((a, b)) not in pairs:
                        pairs.add(frozenset((a, b)))
                        edges.append([a, b, rng.randint(1, 9)])
                p = {"task": kind, "nodes": nodes, "edges": edges, "source": nodes[0], "target": nodes[-1]}
            solution = self.solve(p, rng, None)
            sorted_task = kind == "sort"
            return FamilyItem(text=self._render(p), gold_answer=solution.answer, params=p,
                              reference_steps=solution.steps, answer_type="text" if sorted_task else "number",
                              verifier="exact" if sorted_task else "math")

        key = f"{self.name}:{task}:{difficulty}:{seed}"
        return family_items(n, key, make, params, self._perturb)

    def num_steps(self, params: dict) -> int:
        if is_unanswerable(params):
            return ABSTAIN_STEPS
        return len(self.solve(params, random.Random(0), None).steps)

    def solve(self, params: dict, rng: random.Random, error_at: int | None) -> Solution:
        """Worked solution; a wrong step picks the wrong number, miscounts a group, or misstates a distance."""
        if is_unanswerable(params):
            return abstain_solution(params, rng, error_at)
        kind = params["task"]
        if kind == "sort":
            remaining = list(params["numbers"])
            picked: list[int] = []
            steps = []
            while remaining:
                ordered = sorted(remaining)
                choice = ordered[1] if len(steps) == error_at and len(ordered) > 1 and ordered[1] != ordered[0] \
                    else ordered[0]
                if len(steps) == error_at and choice == ordered[0]:
                    choice = ordered[0] + rng.choice([-1, 1])  # all equal: miscopy the number instead
                    remaining.remove(ordered[0])
                else:
                    remaining.remove(choice)
                picked.append(choice)
                steps.append(f"The smallest remaining number is {choice}; sorted so far: "
                             f"{', '.join(map(str, picked))}.")
            return Solution(tuple(steps), ", ".join(map(str, picked)), error_at)
        if kind == "count":
            numbers, divisor, total = params["numbers"], params["divisor"], 0
            steps = []
            for start in range(0, len(numbers), GROUP):
                group = numbers[start:start + GROUP]
                found = sum(1 for x in group if x % divisor == 0)
                if len(steps) == error_at:
                    found += rng.choice([-1, 1]) if found else 1
                total += found
                steps.append(f"Among {', '.join(map(str, group))}: {found} divisible by {divisor}; running total "
                             f"{total}.")
            return Solution(tuple(steps), str(total), error_at)
        steps, distance = _dijkstra(params["nodes"], params["edges"], params["source"], params["target"], rng,
                                    error_at)
        return Solution(tuple(steps), str(distance), error_at)

    def _render(self, p: dict) -> str:
        if p["task"] == "sort":
            return (f"Sort these numbers from smallest to largest: {', '.join(map(str, p['numbers']))}. "
                    "Answer with the sorted numbers separated by commas.")
        if p["task"] == "count":
            return (f"How many of the numbers {', '.join(map(str, p['numbers']))} are divisible by "
                    f"{p['divisor']}?")
        roads = "; ".join(f"{a}-{b}: {w}" for a, b, w in p["edges"])
        return (f"Roads connect the places {', '.join(p['nodes'])}, each with its length: {roads}. "
                f"Roads can be used in both directions. What is the length of the shortest route from "
                f"{p['source']} to {p['target']}?")

    def _perturb(self, item: FamilyItem, rng: random.Random) -> tuple[str, str] | None:
        p = item.params
        if p["task"] in ("sort", "count"):
            shown = ", ".join(map(str, p["numbers"]))
            hidden = f"{shown} and one more number Dana wrote down"
            return item.text.replace(shown, hidden, 1), "Dana's number"
        # An unknown road length leaves the answer open only when that road, were it very short, would beat the
        # best route without it; brute force over the roads finds one.
        for index in rng.sample(range(len(p["edges"])), len(p["edges"])):
            a, b, _ = p["edges"][index]
            others = p["edges"][:index] + p["edges"][index + 1:]
            short = others + [[a, b, 0]]
            try:
                without = _dijkstra(p["nodes"], others, p["source"], p["target"], None, None)[1]
            except ValueError:
                without = None
            with_short = _dijkstra(p["nodes"], short, p["source"], p["target"], None, None)[1]
            if without is None or with_short < without:
                roads = "; ".join(f"{x}-{y}: {'unknown' if i == index else w}"
                                  for i, (x, y, w) in enumerate(p["edges"]))
                text = (f"Roads connect the places {', '.join(p['nodes'])}, each with its length: {roads}. "
                        f"Roads can be used in both directions. What is the length of the shortest route from "
                        f"{p['source']} to {p['target']}?")
                return text, f"the length of the road {a}-{b}"
        return None


register_family(AlgorithmicFamily())
