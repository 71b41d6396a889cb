"""reward=math_verify and reward=gsm8k on real MATH-500 and GSM8K answers, graded by the real math-verify package.

Every expected value below was checked by hand: equivalent forms score 1, different answers score 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlpost.grading import extract_answer, grade, grade_gsm8k

DATA = Path(__file__).resolve().parents[1] / "data"
MATH500 = [json.loads(line) for line in (DATA / "math500_sample.jsonl").read_text().splitlines()]
GSM8K = [json.loads(line) for line in (DATA / "gsm8k_sample.jsonl").read_text().splitlines()]

# (completion, reference from MATH-500, expected) -- references are real MATH-500 answers
MATH_CASES = [
    (r"The point is $\boxed{(3, \pi/2)}$", r"\left( 3, \frac{\pi}{2} \right)", 1.0),
    (r"\boxed{(3, \pi)}", r"\left( 3, \frac{\pi}{2} \right)", 0.0),
    (r"\boxed{7, 5, 3}", "3, 5, 7", 1.0),
    (r"\boxed{3, 5}", "3, 5, 7", 0.0),
    (r"\boxed{1.5}", r"\frac{3}{2}", 1.0),
    (r"\boxed{(6, 31, -1)}", "(6,31,-1)", 1.0),
    (r"\boxed{(6, -31, -1)}", "(6,31,-1)", 0.0),
    (r"\boxed{1+\sqrt{19}, 1-\sqrt{19}}", r"1 \pm \sqrt{19}", 1.0),
    (r"\boxed{1+\sqrt{19}}", r"1 \pm \sqrt{19}", 0.0),
    (r"\boxed{\text{even}}", r"\text{even}", 1.0),
    (r"\boxed{\text{odd}}", r"\text{even}", 0.0),
    (r"\boxed{30}", r"30^\circ", 1.0),
    (r"\boxed{30^{\circ}}", r"30^\circ", 1.0),
    (r"\boxed{288\pi}", r"288 \pi", 1.0),
    (r"\boxed{288}", r"288 \pi", 0.0),
    (r"\boxed{9/5}", r"1\frac{4}{5}", 1.0),  # a mixed number
    (r"\boxed{1.8}", r"1\frac{4}{5}", 1.0),
    (r"\boxed{(5, \infty)}", r"(5,\infty)", 1.0),
    (r"\boxed{[5, \infty)}", r"(5,\infty)", 0.0),  # closed at 5: a different interval
    (r"The answer is 26,000.", "26000", 1.0),
    (r"\boxed{-80+15x}", "15x - 80", 1.0),
    (r"\boxed{15x+80}", "15x - 80", 0.0),
    (r"\boxed{\begin{pmatrix} 0.2 \\ -3.6 \end{pmatrix}}", r"\begin{pmatrix} 1/5 \\ -18/5 \end{pmatrix}", 1.0),
    (r"\boxed{\begin{pmatrix} 1/5 \\ 18/5 \end{pmatrix}}", r"\begin{pmatrix} 1/5 \\ -18/5 \end{pmatrix}", 0.0),
    (r"\boxed{1, -2}", "-2,1", 1.0),
    (r"\boxed{-2}", "-2,1", 0.0),
    (r"so $x = \frac{1}{2}$, final: \boxed{0.5}", r"\frac{1}{2}", 1.0),
    (r"\boxed{1.75}", r"\frac{7}{4}", 1.0),
    (r"\boxed{90}", r"90^\circ", 1.0),
    (r"\boxed{x=8}", "8", 1.0),
    (r"\boxed{4494}", "4495", 0.0),
    (r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}", 1.0),
]
# hand-made references: intervals, sets, units, choices
FORM_CASES = [
    (r"\boxed{0.5}", "1/2", 1.0),
    (r"\boxed{1/2}", r"\frac{1}{2}", 1.0),
    (r"The answer is $\dfrac{1}{2}$.", "0.5", 1.0),
    (r"\boxed{[1,2)}", "[1,2)", 1.0),
    (r"\boxed{[1,2]}", "[1,2)", 0.0),
    (r"\boxed{(1,2)}", "[1,2)", 0.0),
    (r"\boxed{(-\infty, 0) \cup (1, \infty)}", r"(-\infty,0)\cup(1,\infty)", 1.0),
    (r"\boxed{\{1,2\}}", r"\{2,1\}", 1.0),
    (r"\boxed{\{1,3\}}", r"\{2,1\}", 0.0),
    (r"\boxed{5 \text{ cm}}", "5", 1.0),
    (r"\boxed{6 \text{ cm}}", "5", 0.0),
    (r"\boxed{18\text{ dollars}}", "18", 1.0),
    (r"\boxed{\$18.00}", "18", 1.0),
    (r"\boxed{\sqrt{8}}", r"2\sqrt{2}", 1.0),
    (r"\boxed{2.83}", r"2\sqrt{2}", 0.0),
    (r"\boxed{\text{(C)}}", "C", 1.0),
    (r"\boxed{D}", "C", 0.0),
    ("no answer here", "3", 0.0),
]


@pytest.mark.parametrize(("completion", "reference", "expected"), MATH_CASES + FORM_CASES)
def test_math_verify_grades_equivalent_forms(completion, reference, expected):
    assert grade(completion, reference)[0] == expected


def test_every_math500_sample_answer_grades_against_itself_and_not_a_different_one():
    """The real reference, boxed, is correct; the next row's (different) answer is wrong: 2 x 40 real answers."""
    for row, other in zip(MATH500, MATH500[1:] + MATH500[:1]):
        assert grade(f"Reasoning... so the answer is \\boxed{{{row['answer']}}}", row["answer"])[0] == 1.0, row
        if other["answer"].strip() != row["answer"].strip():
            assert grade(f"\\boxed{{{other['answer']}}}", row["answer"])[0] == 0.0, (row["answer"], other["answer"])


def test_gsm8k_sample_answers_with_both_graders():
    """GSM8K references: `#### n` for reward=gsm8k, any final-answer form for reward=math_verify."""
    for row, other in zip(GSM8K, GSM8K[1:] + GSM8K[:1]):
        number = row["answer"].rsplit("####", 1)[-1].strip().replace(",", "")
        assert grade_gsm8k(row["answer"], number) == (1.0, "gsm8k")  # the reference solution itself
        assert grade(f"{row['answer'].rsplit('####', 1)[0]} The answer is {number}.", number)[0] == 1.0
        assert grade(f"Work... {number}", number)[0] == 1.0  # last number
        wrong = other["answer"].rsplit("####", 1)[-1].strip().replace(",", "")
        if wrong != number:
            assert grade_gsm8k(f"#### {wrong}", number)[0] == 0.0
            assert grade(f"\\boxed{{{wrong}}}", number)[0] == 0.0


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("So we get\n#### 1,234", (1.0, "gsm8k")),
        ("#### $1234.00", (1.0, "gsm8k")),
        ("#### 1235", (0.0, "gsm8k")),
        ("The answer is 1234", (0.0, "none")),  # strict: needs the marker
    ],
)
def test_gsm8k_format(completion, expected):
    assert grade_gsm8k(completion, "1234") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"first \boxed{1} then \boxed{\frac{a}{b^{2}}} end", (r"\frac{a}{b^{2}}", "boxed")),
        (r"\fbox{7}", ("7", "boxed")),
        ("Thus the final answer is: $x^2$.\nCheck.", ("x^2", "answer_is")),
        ("The answer is 3.5.", ("3.5", "answer_is")),
        ("we have 3 apples and 1,250 pears", ("1250", "last_number")),
        ("it is -.5", ("-.5", "last_number")),
        ("nothing", (None, "none")),
        (r"unbalanced \boxed{3", ("3", "last_number")),
    ],
)
def test_extraction_order(text, expected):
    assert extract_answer(text) == expected
