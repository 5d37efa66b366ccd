"""Generate the short-answer prompt set: `python -m devtools.prompt_sets.make_short_answers` rewrites
short_answers_train.jsonl and short_answers_eval.jsonl (64 lines; questions disjoint from train).

Why it exists: the method comparison (benchmarks/compare.py) needs a task metric that moves, i.e. one the
embedded teacher (SmolLM2-135M-Instruct) passes often and the pruned student does not. Arithmetic fails that
(the teacher restates the operands; 0.20 correct). Questions with one short, unambiguous answer do: capitals,
languages, plurals, opposites, comparatives, written from our own word lists (facts and grammar, no licence
needed). The teacher answers in a sentence ("The capital of France is Paris."), so the metric is
`answer_match`: the answer stated in the response's first sentence (trainer/data/tasks/metrics.py). The
reference is that sentence (for sft / supervised_kd). Train rows use several phrasings of each question; a
question's item (the country, the word) is never in both files. Deterministic: a fixed seed.
"""

from __future__ import annotations

import json
import random

from devtools.prompt_sets import SHIPPED

SEED = 20261127
NUM_EVAL = 64
OUT_DIR = SHIPPED

# fmt: off
CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Japan": "Tokyo",
    "China": "Beijing", "Russia": "Moscow", "Egypt": "Cairo", "Greece": "Athens", "Portugal": "Lisbon",
    "Poland": "Warsaw", "Austria": "Vienna", "Ireland": "Dublin", "Norway": "Oslo", "Sweden": "Stockholm",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Canada": "Ottawa", "Australia": "Canberra",
    "Argentina": "Buenos Aires", "Peru": "Lima", "Chile": "Santiago", "Kenya": "Nairobi",
    "Thailand": "Bangkok", "India": "New Delhi", "Turkey": "Ankara", "Iran": "Tehran", "Cuba": "Havana",
    "Belgium": "Brussels", "Netherlands": "Amsterdam", "Hungary": "Budapest", "England": "London",
    "Scotland": "Edinburgh", "Vietnam": "Hanoi", "Indonesia": "Jakarta", "Philippines": "Manila",
    "Colombia": "Bogota", "South Korea": "Seoul", "Iraq": "Baghdad", "Syria": "Damascus",
    "Lebanon": "Beirut", "Ethiopia": "Addis Ababa", "Morocco": "Rabat", "Venezuela": "Caracas",
    "Czech Republic": "Prague", "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade",
    "Croatia": "Zagreb", "Iceland": "Reykjavik", "Wales": "Cardiff", "Ukraine": "Kyiv",
    "Malaysia": "Kuala Lumpur", "Nepal": "Kathmandu", "Afghanistan": "Kabul", "Saudi Arabia": "Riyadh",
    "Qatar": "Doha", "Jamaica": "Kingston", "Uruguay": "Montevideo", "Ecuador": "Quito",
}
LANGUAGES = {
    "France": "French", "Germany": "German", "Spain": "Spanish", "Italy": "Italian", "Japan": "Japanese",
    "China": "Chinese", "Russia": "Russian", "Portugal": "Portuguese", "Greece": "Greek",
    "Poland": "Polish", "Sweden": "Swedish", "the Netherlands": "Dutch", "Turkey": "Turkish",
    "Brazil": "Portuguese", "Mexico": "Spanish", "Finland": "Finnish", "Hungary": "Hungarian",
    "Norway": "Norwegian", "Denmark": "Danish", "South Korea": "Korean", "Thailand": "Thai",
    "Vietnam": "Vietnamese", "Israel": "Hebrew", "Iran": "Persian", "Ukraine": "Ukrainian",
    "Argentina": "Spanish", "Austria": "German", "Egypt": "Arabic", "Iceland": "Icelandic",
    "Czech Republic": "Czech",
}
PLURALS = {
    "cat": "cats", "dog": "dogs", "box": "boxes", "child": "children", "mouse": "mice", "city": "cities",
    "leaf": "leaves", "foot": "feet", "tooth": "teeth", "man": "men", "woman": "women", "bus": "buses",
    "baby": "babies", "knife": "knives", "person": "people", "goose": "geese", "wolf": "wolves",
    "story": "stories", "church": "churches", "potato": "potatoes", "book": "books", "car": "cars",
    "house": "houses", "tree": "trees", "apple": "apples", "glass": "glasses", "dish": "dishes",
    "party": "parties", "lady": "ladies", "wife": "wives", "half": "halves", "shelf": "shelves",
    "tomato": "tomatoes", "hero": "heroes", "ox": "oxen", "louse": "lice", "cactus": "cacti",
    "bird": "birds", "flower": "flowers", "watch": "watches", "fox": "foxes", "brush": "brushes",
    "country": "countries", "key": "keys", "toy": "toys", "day": "days", "horse": "horses",
    "chair": "chairs", "table": "tables", "bench": "benches", "wish": "wishes", "thief": "thieves",
    "loaf": "loaves", "calf": "calves", "berry": "berries", "cherry": "cherries", "puppy": "puppies",
    "boy": "boys", "girl": "girls", "star": "stars",
}
OPPOSITES = {
    "hot": "cold", "big": "small", "up": "down", "fast": "slow", "happy": "sad", "light": "dark",
    "open": "closed", "early": "late", "rich": "poor", "strong": "weak", "full": "empty", "hard": "soft",
    "wet": "dry", "tall": "short", "high": "low", "good": "bad", "day": "night", "black": "white",
    "in": "out", "on": "off", "yes": "no", "win": "lose", "start": "finish", "push": "pull",
    "buy": "sell", "top": "bottom", "front": "back", "inside": "outside", "above": "below",
    "near": "far", "heavy": "light", "thick": "thin", "wide": "narrow", "deep": "shallow",
    "clean": "dirty", "safe": "dangerous", "loud": "quiet", "sweet": "sour", "alive": "dead",
    "always": "never", "love": "hate", "north": "south", "east": "west", "first": "last",
    "true": "false", "friend": "enemy", "question": "answer", "arrive": "leave", "remember": "forget",
    "accept": "reject", "increase": "decrease", "maximum": "minimum", "before": "after",
    "entrance": "exit", "ancient": "modern", "cheap": "expensive", "polite": "rude", "brave": "cowardly",
}
COMPARATIVES = {
    "big": "bigger", "small": "smaller", "fast": "faster", "tall": "taller", "good": "better",
    "bad": "worse", "happy": "happier", "old": "older", "young": "younger", "cold": "colder",
    "hot": "hotter", "strong": "stronger", "long": "longer", "short": "shorter", "easy": "easier",
    "far": "farther", "high": "higher", "low": "lower", "warm": "warmer", "dark": "darker",
    "bright": "brighter", "heavy": "heavier", "light": "lighter", "busy": "busier", "funny": "funnier",
    "thin": "thinner", "fat": "fatter", "wide": "wider", "large": "larger", "kind": "kinder",
    "slow": "slower", "quick": "quicker", "rich": "richer", "poor": "poorer", "clean": "cleaner",
    "soft": "softer", "loud": "louder", "quiet": "quieter", "deep": "deeper", "cheap": "cheaper",
}
# fmt: on

FAMILIES = {  # name: (items, phrasings (the first is the eval one), reference sentence)
    "capital": (
        CAPITALS,
        ["What is the capital of {x}?", "Which city is the capital of {x}?", "Name the capital city of {x}."],
        "The capital of {x} is {y}.",
    ),
    "language": (
        LANGUAGES,
        ["What language is spoken in {x}?", "Which language do people in {x} speak?"],
        "The language spoken in {x} is {y}.",
    ),
    "plural": (
        PLURALS,
        ["What is the plural of '{x}'?", "What is the plural form of the word '{x}'?"],
        "The plural of '{x}' is '{y}'.",
    ),
    "opposite": (
        OPPOSITES,
        ["What is the opposite of '{x}'?", "What word means the opposite of '{x}'?"],
        "The opposite of '{x}' is '{y}'.",
    ),
    "comparative": (
        COMPARATIVES,
        ["What is the comparative form of '{x}'?", "What is the comparative of the adjective '{x}'?"],
        "The comparative form of '{x}' is '{y}'.",
    ),
}


def row(family: str, phrasing: str, x: str, y: str, reference: str) -> dict:
    return {
        "prompt": phrasing.format(x=x),
        "reference": reference.format(x=x, y=y),
        "task": "short_answer",
        "meta": {"answer": y, "family": family},
    }


def build(seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """(train rows, eval rows): eval items drawn across families in proportion to their size."""
    rng = random.Random(seed)
    items = [(fam, x, y) for fam, (table, _, _) in FAMILIES.items() for x, y in sorted(table.items())]
    eval_items = set(rng.sample(range(len(items)), NUM_EVAL))
    train, held_out = [], []
    for i, (fam, x, y) in enumerate(items):
        _, phrasings, reference = FAMILIES[fam]
        if i in eval_items:
            held_out.append(row(fam, phrasings[0], x, y, reference))
        else:
            train.extend(row(fam, p, x, y, reference) for p in phrasings)
    rng.shuffle(train)
    rng.shuffle(held_out)
    return train, held_out


def main() -> None:
    train, held_out = build()
    for name, rows in (("train", train), ("eval", held_out)):
        path = OUT_DIR / f"short_answers_{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(f"{path}: {len(rows)} rows")


if __name__ == "__main__":
    main()
