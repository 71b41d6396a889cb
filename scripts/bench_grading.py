"""Grading throughput of reward=math_verify: completions graded per second with 1 and 2 worker processes.

Completions are real: MATH-500 reference solutions (their own \\boxed{} answer) and GSM8K reference solutions
(with `#### n` written as `The answer is n.`), each graded once against its own answer and once against another
problem's answer (half right, half wrong). First graded in this process (CPU seconds: independent of other load),
then through the pool (wall clock: workers started and warmed before timing).

    python scripts/bench_grading.py --data-dir ../shared/data            # the full files
    python scripts/bench_grading.py                                       # the samples in tests/data
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rlpost.grading import WARM_UP, grade
from rlpost.rewards.pool import GraderPool

REPO = Path(__file__).resolve().parents[1]


def completions(data_dir: Path, limit: int) -> dict[str, list[tuple[str, str]]]:
    def read(name: str) -> list[dict]:
        path = data_dir / name
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:limit]

    math_files = ["math500_test.jsonl", "math500_sample.jsonl"]
    gsm_files = ["gsm8k_test.jsonl", "gsm8k_sample.jsonl"]
    math = read(next(f for f in math_files if (data_dir / f).is_file()))
    gsm = read(next(f for f in gsm_files if (data_dir / f).is_file()))
    math_items = [(row["solution"], row["answer"]) for row in math]
    math_items += [(row["solution"], other["answer"]) for row, other in zip(math, math[1:] + math[:1])]
    gsm_answers = [row["answer"].rsplit("####", 1)[-1].strip().replace(",", "") for row in gsm]
    gsm_texts = [row["answer"].rsplit("####", 1)[0] + f"The answer is {n}." for row, n in zip(gsm, gsm_answers)]
    gsm_items = list(zip(gsm_texts, gsm_answers)) + list(zip(gsm_texts, gsm_answers[1:] + gsm_answers[:1]))
    return {"math500": math_items, "gsm8k": gsm_items}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO / "tests" / "data"))
    parser.add_argument("--limit", type=int, default=500, help="problems per dataset")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--timeout-s", type=float, default=5.0)
    args = parser.parse_args()
    sets = completions(Path(args.data_dir), args.limit)
    grade(*WARM_UP)
    for name, items in sets.items():  # load-independent: graded per CPU-second of one process, no pool
        started = time.process_time()
        for text, reference in items:
            grade(text, reference)
        per_cpu_second = len(items) / (time.process_time() - started)
        print(
            json.dumps(
                {"data": name, "completions": len(items), "per_cpu_second_one_process": round(per_cpu_second, 1)}
            )
        )
    results = []
    for workers in [int(w) for w in args.workers.split(",")]:
        pool = GraderPool("rlpost.grading:grade", workers, args.timeout_s, WARM_UP, preload=("math_verify",))
        pool.map([WARM_UP] * workers)
        for name, items in sets.items():
            started = time.perf_counter()
            scores, counts = pool.map(items, default=(0.0, "none"))
            seconds = time.perf_counter() - started
            accuracy = sum(score for score, _ in scores) / len(scores)
            results.append(
                {
                    "data": name,
                    "workers": workers,
                    "completions": len(items),
                    "per_second": round(len(items) / seconds, 1),
                    "per_second_per_worker": round(len(items) / seconds / workers, 1),
                    "accuracy": round(accuracy, 3),
                    "timeouts": counts.timeouts,
                    "errors": counts.errors + counts.crashes,
                }
            )
            print(json.dumps(results[-1]), flush=True)
        pool.close()
    print("| data | workers | completions | graded/s | per worker | accuracy (half are wrong) | timeouts |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['data']} | {r['workers']} | {r['completions']} | {r['per_second']} | {r['per_second_per_worker']} "
            f"| {r['accuracy']} | {r['timeouts']} |"
        )


if __name__ == "__main__":
    main()
