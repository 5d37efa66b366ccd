"""Generate the word-problem set: `python -m devtools.prompt_sets.make_word_problems` rewrites
word_problems/train.jsonl (2000 rows) and word_problems/test.jsonl (200 rows).

Why it exists: GSM8K itself is out of reach of a 135M model, so a fine-tuned student barely moves on
it. These are problems in GSM8K's shape (a short story, two or three steps, a worked solution with
`<<a*b=c>>` calculator annotations, a final `#### N` line) whose score depends on a procedure a small model
can learn, not on stored knowledge: small whole numbers (operands about 2-20, every result 1..999, divisions
exact), + - * / mixed, 20 story templates (shopping, sharing, saving, baking, travel, pages read, ...) with
varied names, items and phrasings. Rows are in the openai/gsm8k hub format (`{"question", "answer"}`), so
the `gsm8k` task reads them (trainer/data/tasks/builtin.py: gsm8k_row) and scores exact match of the final
number.

Train and test share the templates but never a (template, numbers) combination: each template's valid number
tuples are enumerated, shuffled, and the test rows take the first ones, so no test question is in train. Every
answer is computed here, step by step, and checked. Deterministic: a fixed seed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools.prompt_sets import SHIPPED
from devtools.prompt_sets.splits import disjoint_splits, split_evenly, write_splits

SEED = 20261201
NUM_TRAIN = 2000
NUM_TEST = 200
OUT_DIR = SHIPPED / "word_problems"
MAX_RESULT = 999
# Numbers a solution may use that are not in the question: "half" (2), legs (2, 4), days in a week (7).
CONSTANTS = frozenset({2, 4, 7})

# fmt: off
NAMES = [
    ("Mira", "f"), ("Tom", "m"), ("Aisha", "f"), ("Ben", "m"), ("Lena", "f"), ("Omar", "m"), ("Sofia", "f"),
    ("Jack", "m"), ("Priya", "f"), ("Leo", "m"), ("Hana", "f"), ("Sam", "m"), ("Zoe", "f"), ("Raj", "m"),
    ("Emma", "f"), ("Noah", "m"), ("Chloe", "f"), ("Diego", "m"), ("Nina", "f"), ("Felix", "m"),
    ("Grace", "f"), ("Marco", "m"), ("Yuki", "f"), ("Ali", "m"), ("Ella", "f"), ("Kofi", "m"), ("Ruby", "f"),
    ("Ivan", "m"), ("Maya", "f"), ("Owen", "m"), ("Lucy", "f"), ("Hugo", "m"),
]
PRONOUNS = {
    "f": {"he": "she", "He": "She", "his": "her", "His": "Her", "him": "her"},
    "m": {"he": "he", "He": "He", "his": "his", "His": "His", "him": "him"},
}
SHOP_ITEMS = [
    ("notebook", "notebooks"), ("pen", "pens"), ("candle", "candles"), ("mug", "mugs"), ("pencil", "pencils"),
    ("sandwich", "sandwiches"), ("towel", "towels"), ("plant", "plants"), ("comic", "comics"),
    ("bracelet", "bracelets"), ("poster", "posters"), ("sock", "socks"),
]
THINGS = ["bike", "video game", "skateboard", "guitar", "tent", "watch", "camera", "scooter", "jacket"]
SMALL_ITEMS = ["stickers", "marbles", "cards", "beads", "crayons", "stamps", "shells"]
BAKED = ["cookies", "muffins", "cupcakes", "biscuits", "rolls", "brownies"]
FLOWERS = ["tulips", "roses", "daisies", "lilies", "poppies"]
FRUITS = ["apples", "pears", "plums", "peaches", "lemons", "strawberries"]
BIRDS = ["chickens", "ducks", "geese", "turkeys"]
BEASTS = ["cows", "goats", "sheep", "pigs", "horses"]
JOBS = ["the bakery", "the library", "a cafe", "the garden centre", "the pet shop", "the bookshop"]
CLASS_ITEMS = ["markers", "worksheets", "glue sticks", "rulers", "paint brushes"]
PARTY_ITEMS = ["balloons", "party hats", "candies", "stickers", "sparklers"]
VEHICLES = ["bus", "tram", "ferry", "coach"]
HABITS = [  # (verb phrase, unit): "{name} {verb} {a} {unit} every day."
    ("drinks", "glasses of water"), ("does", "push-ups"), ("reads", "pages"), ("walks", "kilometres"),
    ("writes", "lines of a diary"), ("practises", "minutes of piano"), ("eats", "grapes"),
]
# fmt: on


def pairs(items: Sequence[str]) -> list[tuple[str, str]]:
    return [(x, y) for x in items for y in items if x != y]


@dataclass(frozen=True)
class Template:
    """A story: its numbers (name -> candidate values, all stated in the question), word slots ("a,b" ->
    tuples filling both), question phrasings, and solution steps (sentence with {eq}, "x op y"), whose
    results are r1, r2, ... in order; the last is the answer."""

    key: str
    numbers: dict[str, Sequence[int]]
    words: dict[str, Sequence]
    questions: tuple[str, ...]
    steps: tuple[tuple[str, str], ...]


def r(lo: int, hi: int, step: int = 1) -> range:
    return range(lo, hi + 1, step)


TEMPLATES = [
    Template(
        "shop_total",
        {"a": r(2, 9), "b": r(2, 15), "c": r(2, 9), "d": r(2, 15)},
        {"items,items2": pairs([p for _, p in SHOP_ITEMS])},
        (
            "{name} buys {a} {items} at ${b} each and {c} {items2} at ${d} each. How much does {he} spend in "
            "total?",
            "At the market, {name} gets {a} {items} that cost ${b} each and {c} {items2} that cost ${d} "
            "each. How many dollars does {he} pay altogether?",
            "{name} needs {a} {items} and {c} {items2}. The {items} are ${b} each and the {items2} are ${d} "
            "each. What is the total cost?",
        ),
        (
            ("The {items} cost {eq} dollars.", "a * b"),
            ("The {items2} cost {eq} dollars.", "c * d"),
            ("In total that is {eq} dollars.", "r1 + r2"),
        ),
    ),
    Template(
        "shop_change",
        {"a": r(2, 9), "b": r(2, 15), "c": (20, 50, 100)},
        {"item,items": SHOP_ITEMS},
        (
            "{name} buys {a} {items} for ${b} each and pays with a ${c} bill. How much change does {he} get?",
            "Each {item} costs ${b}. {name} buys {a} of them and hands the cashier ${c}. How much change "
            "should {he} receive?",
        ),
        (
            ("The {items} cost {eq} dollars.", "a * b"),
            ("The change is {eq} dollars.", "c - r1"),
        ),
    ),
    Template(
        "share_equally",
        {"a": r(2, 12), "b": r(2, 20), "c": r(2, 10)},
        {"items": SMALL_ITEMS, "packs": ["packs", "bags", "boxes", "jars"]},
        (
            "{name} has {a} {packs} of {items} with {b} {items} in each. {He} shares them equally among {c} "
            "friends. How many {items} does each friend get?",
            "There are {b} {items} in each of {name}'s {a} {packs}. If {he} splits all the {items} evenly "
            "between {c} friends, how many does each friend receive?",
        ),
        (
            ("{He} has {eq} {items} in total.", "a * b"),
            ("Each friend gets {eq} {items}.", "r1 / c"),
        ),
    ),
    Template(
        "save_spend",
        {"a": r(2, 20), "b": r(2, 12), "c": r(10, 150, 5)},
        {"thing": THINGS},
        (
            "{name} saves ${a} every week for {b} weeks. Then {he} spends ${c} on a {thing}. How much money "
            "does {he} have left?",
            "For {b} weeks, {name} puts ${a} into {his} piggy bank each week. After that {he} buys a {thing} "
            "for ${c}. How many dollars are left?",
        ),
        (
            ("{He} saves {eq} dollars.", "a * b"),
            ("After buying the {thing}, {he} has {eq} dollars left.", "r1 - c"),
        ),
    ),
    Template(
        "save_goal",
        {"a": r(30, 200, 10), "b": r(5, 95, 5), "c": r(2, 20)},
        {"thing": THINGS},
        (
            "{name} wants a {thing} that costs ${a}. {He} already has ${b} and saves ${c} each week. How "
            "many weeks will it take {him} to have enough money?",
            "A {thing} costs ${a}. {name} has saved ${b} so far. If {he} saves ${c} every week, in how many "
            "weeks can {he} buy the {thing}?",
        ),
        (
            ("{He} still needs {eq} dollars.", "a - b"),
            ("At {c} dollars a week that takes {eq} weeks.", "r1 / c"),
        ),
    ),
    Template(
        "bake_left",
        {"a": r(2, 9), "b": r(4, 20), "c": r(2, 20)},
        {"items": BAKED},
        (
            "{name} bakes {a} trays of {items} with {b} {items} on each tray. {He} gives {c} {items} to "
            "{his} neighbours. How many {items} does {he} have left?",
            "There are {b} {items} on each of the {a} trays that {name} baked. After {he} gives away {c}, "
            "how many {items} remain?",
        ),
        (
            ("{He} bakes {eq} {items}.", "a * b"),
            ("After giving some away, {he} has {eq} {items} left.", "r1 - c"),
        ),
    ),
    Template(
        "bake_boxes",
        {"a": r(2, 8), "b": r(4, 20), "c": r(2, 12), "d": r(2, 20)},
        {"items": BAKED},
        (
            "{name} bakes {a} batches of {items} with {b} {items} in each batch. {He} packs them in boxes of "
            "{c} and sells {d} boxes. How many boxes are left?",
            "A bakery makes {a} batches of {b} {items} each and puts them into boxes that hold {c} {items}. "
            "If {d} boxes are sold, how many boxes does the bakery still have?",
        ),
        (
            ("There are {eq} {items}.", "a * b"),
            ("They fill {eq} boxes.", "r1 / c"),
            ("After selling {d} boxes, {eq} boxes are left.", "r2 - d"),
        ),
    ),
    Template(
        "pages_left",
        {"a": r(50, 400, 10), "b": r(5, 30), "c": r(2, 14)},
        {},
        (
            "A book has {a} pages. {name} reads {b} pages every day for {c} days. How many pages are left to "
            "read?",
            "{name} is reading a {a}-page book. {He} reads {b} pages a day. After {c} days, how many pages "
            "does {he} still have to read?",
        ),
        (
            ("{He} reads {eq} pages.", "b * c"),
            ("There are {eq} pages left.", "a - r1"),
        ),
    ),
    Template(
        "pages_double",
        {"a": r(5, 40), "b": r(5, 40)},
        {},
        (
            "{name} reads {a} pages on Monday and twice as many pages on Tuesday. On Wednesday {he} reads "
            "{b} pages. How many pages does {he} read in the three days?",
            "On Monday {name} reads {a} pages of a novel. On Tuesday {he} reads double that, and on "
            "Wednesday {he} reads {b} pages. How many pages has {he} read altogether?",
        ),
        (
            ("On Tuesday {he} reads {eq} pages.", "a * 2"),
            ("On Monday and Tuesday {he} reads {eq} pages.", "a + r1"),
            ("With Wednesday that makes {eq} pages.", "r2 + b"),
        ),
    ),
    Template(
        "travel_total",
        {"a": r(20, 90, 5), "b": r(2, 6), "c": r(5, 60)},
        {"vehicle": VEHICLES},
        (
            "{name} drives at {a} kilometres per hour for {b} hours and then drives another {c} kilometres. "
            "How far does {he} drive in total?",
            "A {vehicle} travels {a} km each hour for {b} hours, then {c} km more. How many kilometres does "
            "it travel altogether?",
        ),
        (
            ("The first part of the trip is {eq} km.", "a * b"),
            ("The whole trip is {eq} km.", "r1 + c"),
        ),
    ),
    Template(
        "trip_remaining",
        {"a": r(100, 900, 10), "b": r(20, 80, 10), "c": r(2, 5), "d": r(5, 60, 5)},
        {},
        (
            "A trip is {a} kilometres long. {name} drives {b} kilometres per hour for {c} hours in the "
            "morning and {d} kilometres in the afternoon. How many kilometres are left?",
            "{name} has to travel {a} km. In the morning {he} drives for {c} hours at {b} km per hour, and "
            "in the afternoon {he} drives {d} km. How far does {he} still have to go?",
        ),
        (
            ("In the morning {he} drives {eq} km.", "b * c"),
            ("So far {he} has driven {eq} km.", "r1 + d"),
            ("{He} still has {eq} km to go.", "a - r2"),
        ),
    ),
    Template(
        "garden_half",
        {"a": r(2, 20), "b": r(2, 20), "c": r(2, 20)},
        {"flowers": FLOWERS},
        (
            "A garden has {a} rows of {flowers} with {b} {flowers} in each row. Half of the {flowers} are "
            "red. {name} picks {c} of the red ones. How many red {flowers} are left?",
            "{name} plants {a} rows of {flowers}, {b} in each row. Half of them bloom red. If {he} cuts {c} "
            "red {flowers} for a vase, how many red {flowers} are still in the garden?",
        ),
        (
            ("There are {eq} {flowers}.", "a * b"),
            ("Half of them are red: {eq}.", "r1 / 2"),
            ("After picking, {eq} red {flowers} are left.", "r2 - c"),
        ),
    ),
    Template(
        "class_groups",
        {"a": r(10, 40), "b": r(2, 8), "c": r(2, 12)},
        {"items": CLASS_ITEMS},
        (
            "A class of {a} students is split into groups of {b}. Each group gets {c} {items}. How many "
            "{items} are needed?",
            "{name}, a teacher, puts {a} students into groups of {b} and gives every group {c} {items}. How "
            "many {items} does {he} hand out?",
        ),
        (
            ("There are {eq} groups.", "a / b"),
            ("The groups need {eq} {items}.", "r1 * c"),
        ),
    ),
    Template(
        "fruit_bags",
        {"a": r(5, 60), "b": r(5, 60), "c": r(2, 12)},
        {"fruits": FRUITS},
        (
            "{name} picks {a} {fruits} on Saturday and {b} {fruits} on Sunday. {He} puts them into bags of "
            "{c}. How many bags does {he} fill?",
            "On Saturday {name} picks {a} {fruits}, and on Sunday {he} picks {b} more. If each bag holds {c} "
            "{fruits}, how many bags can {he} fill?",
        ),
        (
            ("{He} picks {eq} {fruits}.", "a + b"),
            ("{He} fills {eq} bags.", "r1 / c"),
        ),
    ),
    Template(
        "farm_legs",
        {"a": r(2, 20), "b": r(2, 20)},
        {"birds,beasts": [(x, y) for x in BIRDS for y in BEASTS]},
        (
            "A farm has {a} {birds} and {b} {beasts}. How many legs do these animals have altogether?",
            "{name} keeps {a} {birds} and {b} {beasts} on {his} farm. How many legs do they have in total?",
        ),
        (
            ("The {birds} have {eq} legs.", "a * 2"),
            ("The {beasts} have {eq} legs.", "b * 4"),
            ("Altogether there are {eq} legs.", "r1 + r2"),
        ),
    ),
    Template(
        "weekend_wage",
        {"a": r(5, 20), "b": r(2, 10), "c": r(2, 10)},
        {"job": JOBS},
        (
            "{name} earns ${a} an hour at {job}. {He} works {b} hours on Saturday and {c} hours on Sunday. "
            "How much does {he} earn over the weekend?",
            "At {job}, {name} is paid ${a} per hour. If {he} works {b} hours on Saturday and {c} hours on "
            "Sunday, how many dollars does {he} make?",
        ),
        (
            ("{He} works {eq} hours.", "b + c"),
            ("{He} earns {eq} dollars.", "r1 * a"),
        ),
    ),
    Template(
        "party_packs",
        {"a": r(3, 20), "b": r(2, 6), "c": r(2, 12)},
        {"items": PARTY_ITEMS},
        (
            "{name} is having a party with {a} guests. Each guest gets {b} {items}, and the {items} come in "
            "packs of {c}. How many packs does {he} need?",
            "There will be {a} guests at {name}'s party, and each one should get {b} {items}. If a pack "
            "holds {c} {items}, how many packs should {name} buy?",
        ),
        (
            ("{He} needs {eq} {items}.", "a * b"),
            ("That is {eq} packs.", "r1 / c"),
        ),
    ),
    Template(
        "empty_seats",
        {"a": r(5, 15), "b": r(2, 5), "c": r(2, 20), "d": r(2, 20)},
        {"vehicle": VEHICLES},
        (
            "A {vehicle} has {a} rows with {b} seats in each row. At the first stop {c} people get on, and "
            "at the second stop {d} more get on. How many seats are still empty?",
            "There are {a} rows of {b} seats on a {vehicle}. At the first stop {c} passengers board and at "
            "the second stop {d} board. How many empty seats are left?",
        ),
        (
            ("The {vehicle} has {eq} seats.", "a * b"),
            ("In total {eq} people get on.", "c + d"),
            ("There are {eq} empty seats.", "r1 - r2"),
        ),
    ),
    Template(
        "habit_weeks",
        {"a": r(2, 15), "b": r(2, 12)},
        {"verb,unit": HABITS},
        (
            "{name} {verb} {a} {unit} every day. How many {unit} is that in {b} weeks?",
            "Every day, {name} {verb} {a} {unit}. How many {unit} does that add up to over {b} weeks?",
        ),
        (
            ("In one week that is {eq} {unit}.", "a * 7"),
            ("In {b} weeks it is {eq} {unit}.", "r1 * b"),
        ),
    ),
    Template(
        "more_than",
        {"a": r(5, 50), "b": r(2, 20), "c": r(2, 20)},
        {"items": SMALL_ITEMS},
        (
            "{name} has {a} {items}. {name2} has {b} more {items} than {name}. Then {name2} gives away {c} "
            "{items}. How many {items} do they have together now?",
            "{name2} has {b} more {items} than {name}, who has {a}. After {name2} loses {c} of them, how "
            "many {items} do the two have in total?",
        ),
        (
            ("{name2} has {eq} {items}.", "a + b"),
            ("Then {name2} has {eq} {items}.", "r1 - c"),
            ("Together they have {eq} {items}.", "a + r2"),
        ),
    ),
]

OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}


def solve(template: Template, numbers: dict[str, int]) -> list[tuple[int, str, int, int]] | None:
    """The steps as (left, op, right, result), or None when a result is not a whole number in 1..999."""
    values, steps = dict(numbers), []
    for i, (_, expr) in enumerate(template.steps, 1):
        left, op, right = expr.split()
        x, y = (int(t) if t.isdigit() else values[t] for t in (left, right))
        if op == "/":
            if x % y:
                return None
            result = x // y
        else:
            result = OPS[op](x, y)
        if not 1 <= result <= MAX_RESULT:
            return None
        values[f"r{i}"] = result
        steps.append((x, op, y, result))
    return steps


def number_tuples(template: Template) -> list[tuple[int, ...]]:
    """Every combination of the template's candidate numbers whose steps all stay whole and in range."""
    keys = list(template.numbers)
    return [
        combo
        for combo in itertools.product(*(template.numbers[k] for k in keys))
        if solve(template, dict(zip(keys, combo))) is not None
    ]


def render(template: Template, numbers: dict[str, int], rng: random.Random) -> dict:
    (name, gender), (name2, _) = rng.sample(NAMES, 2)
    fields: dict = {"name": name, "name2": name2, **PRONOUNS[gender], **numbers}
    for keys, options in template.words.items():
        choice = rng.choice(options)
        fields.update(zip(keys.split(","), choice if isinstance(choice, tuple) else (choice,)))
    steps = solve(template, numbers)
    assert steps is not None
    lines = []
    for (sentence, _), (x, op, y, result) in zip(template.steps, steps):
        eq = f"{x} {op} {y} = <<{x}{op}{y}={result}>>{result}"
        lines.append(sentence.format(eq=eq, **fields))
    question = rng.choice(template.questions).format(**fields)
    return {"question": question, "answer": "\n".join(lines) + f"\n#### {steps[-1][3]}"}


def check_template(template: Template) -> None:
    """Every number is stated in every phrasing (so distinct numbers give distinct questions); every
    operand is a number, an earlier result or one of CONSTANTS."""
    for question in template.questions:
        for key in template.numbers:
            assert "{" + key + "}" in question, (template.key, key, question)
    known = set(template.numbers)
    for i, (sentence, expr) in enumerate(template.steps, 1):
        assert "{eq}" in sentence, (template.key, sentence)
        left, op, right = expr.split()
        assert op in "+-*/", (template.key, expr)
        for t in (left, right):
            assert t in known or (t.isdigit() and int(t) in CONSTANTS), (template.key, t)
        known.add(f"r{i}")


def build(seed: int = SEED) -> dict[str, list[tuple[dict, str, tuple[int, ...]]]]:
    """{"train": [...], "test": [...]}: (row, template key, number tuple). A template's test tuples are the
    first of its shuffled valid tuples, its train tuples the next ones, so the two never share one."""
    rng = random.Random(seed)
    out: dict[str, list] = {"train": [], "test": []}
    per_train = split_evenly(NUM_TRAIN, len(TEMPLATES))
    per_test = split_evenly(NUM_TEST, len(TEMPLATES))
    for template, n_train, n_test in zip(TEMPLATES, per_train, per_test):
        check_template(template)
        keys = list(template.numbers)
        for split, chosen in disjoint_splits(number_tuples(template), n_test, n_train, rng):
            for combo in chosen:
                out[split].append((render(template, dict(zip(keys, combo)), rng), template.key, combo))
    for split in out.values():
        rng.shuffle(split)
    train_questions = {row["question"] for row, _, _ in out["train"]}
    assert len(train_questions) == NUM_TRAIN
    assert not train_questions & {row["question"] for row, _, _ in out["test"]}
    return out


def write(out_dir: Path = OUT_DIR) -> dict[str, int]:
    """Write train.jsonl and test.jsonl into out_dir; {split: rows}."""
    rows = {split: [row for row, _, _ in records] for split, records in build().items()}
    return write_splits(out_dir, rows)


if __name__ == "__main__":
    for split, n in write().items():
        print(f"{OUT_DIR / split}.jsonl: {n} rows")
