"""Final-answer extraction and math-verify grading, run inside grading worker processes (rlpost/rewards/pool.py).

Kept free of torch and of the rest of rlpost so that a worker starts in milliseconds. math-verify's own timeouts
are off here (they use SIGALRM); the pool's deadline, enforced by killing the worker, is the only timeout.

Extraction order: the last \\boxed{...} (or \\fbox{...}); else the text after the last "the answer is"; else the
last number. The extracted answer and the reference are parsed by math-verify (LaTeX and plain expressions) and
compared with `math_verify.verify`, which accepts equivalent forms: 1/2 = 0.5 = \\frac{1}{2}, intervals, sets,
percentages and trailing units.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*", re.IGNORECASE)
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
GSM8K_MARKER = re.compile(r"####\s*([^\n]+)")
WARM_UP = (r"The answer is \boxed{\frac{1}{2}}", "0.5")  # first parse builds math-verify's LaTeX parser


@lru_cache(maxsize=1)
def _math_verify():
    """(parse, verify, extraction configs), imported on first use: rlpost's import stays free of sympy."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout is disabled": the pool's deadline is ours
    return parse, verify, (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} with balanced braces, or None."""
    starts = [match.end() for match in BOXED.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for position in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[position], 0)
            if depth == 0:
                return text[start:position].strip()
    return None


def extract_answer(text: str) -> tuple[str | None, str]:
    """(answer text, how it was found: "boxed" | "answer_is" | "last_number" | "none")."""
    text = text or ""
    boxed = last_boxed(text)
    if boxed:
        return boxed, "boxed"
    found = list(ANSWER_IS.finditer(text))
    if found:
        tail = text[found[-1].end() :].split("\n", 1)[0].strip()
        tail = re.sub(r"[\s.]+$", "", tail).strip("$ ").strip()
        if tail:
            return tail, "answer_is"
    numbers = NUMBER.findall(text)
    if numbers:
        return numbers[-1].replace(",", ""), "last_number"
    return None, "none"


@lru_cache(maxsize=4096)
def _parse_reference(reference: str) -> list:
    parse, _, configs = _math_verify()
    reference = reference.strip()
    parsed = parse(f"${reference}$", extraction_config=configs, parsing_timeout=None)
    return parsed or parse(f"\\boxed{{{reference}}}", extraction_config=configs, parsing_timeout=None)


def grade(completion: str, reference: str) -> tuple[float, str]:
    """(1.0 if the completion's final answer equals `reference` under math-verify else 0.0, extraction source)."""
    answer, source = extract_answer(completion)
    if answer is None:
        return 0.0, source
    parse, verify, configs = _math_verify()
    gold = _parse_reference(str(reference))
    predicted = parse(f"\\boxed{{{answer}}}", extraction_config=configs, parsing_timeout=None)
    if not gold or not predicted:
        return 0.0, source
    return float(verify(gold, predicted, timeout_seconds=None)), source


def gsm8k_answer(text: str) -> str | None:
    """The number after the last `####` (GSM8K's answer format), commas and `$` removed, or None."""
    found = GSM8K_MARKER.findall(text or "")
    if not found:
        return None
    number = NUMBER.search(found[-1].replace("$", ""))
    return number.group(0).replace(",", "") if number else None


def grade_gsm8k(completion: str, reference: str) -> tuple[float, str]:
    """GSM8K's strict format: the completion must end its work with `#### <number>`; compared numerically."""
    answer = gsm8k_answer(completion)
    if answer is None:
        return 0.0, "none"
    try:
        return float(abs(_number(answer) - _number(str(reference))) < 1e-6), "gsm8k"
    except ValueError:
        return 0.0, "gsm8k"


def _number(text: str) -> float:
    text = text.replace(",", "").replace("$", "").strip()
    if "/" in text:
        numerator, denominator = text.split("/", 1)
        return float(numerator) / float(denominator)
    return float(text)
