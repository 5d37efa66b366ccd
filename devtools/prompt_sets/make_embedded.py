"""Generate the embedded prompt set: `python -m devtools.prompt_sets.make_embedded` rewrites
embedded_train.jsonl (600 lines) and embedded_eval.jsonl (64 lines, disjoint prompts).

The default run needs data that ships with the repo and needs no download or licence: half are arithmetic
questions with an exact answer (a metric that moves during training), half are open chat instructions built
from our own templates and word lists (no reference). Deterministic: a fixed seed, sorted inputs.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from devtools.prompt_sets import SHIPPED

SEED = 20240611
NUM_TRAIN, NUM_EVAL = 600, 64
OUT_DIR = SHIPPED

# fmt: off
ARITHMETIC_TEMPLATES = [
    "What is {a} {op} {b}? Answer with just the number.",
    "Compute {a} {op} {b}. Answer with just the number.",
    "Calculate {a} {op} {b}. Reply with only the result.",
]

TOPICS = [
    "the ocean", "mountains", "the moon", "bicycles", "libraries", "honeybees", "volcanoes", "rain",
    "trains", "coffee", "autumn leaves", "a lighthouse", "city parks", "snow", "bread", "rivers",
    "owls", "the desert", "old maps", "kites", "thunderstorms", "gardens", "clocks", "bridges",
    "sunrise", "forests", "penguins", "markets", "candles", "islands", "the wind", "music boxes",
    "sailboats", "chess", "tea", "deserts at night", "fireflies", "a quiet village", "glaciers", "stars",
]
TOPIC_TEMPLATES = [
    "Write one short sentence about {x}.",
    "Write a haiku about {x}.",
    "Describe {x} in two sentences.",
    "Give one interesting fact about {x}.",
]

WORDS = [
    "bridge", "lantern", "harvest", "compass", "anchor", "echo", "orbit", "meadow", "puzzle", "signal",
    "thread", "voyage", "whisper", "harbor", "ladder", "mirror", "pebble", "shelter", "ticket", "valley",
    "blanket", "canyon", "engine", "feather", "glacier", "helmet", "island", "journal", "kettle", "magnet",
    "needle", "pillow", "quarry", "ribbon", "saddle", "tunnel", "umbrella", "violin", "window", "zipper",
]
WORD_TEMPLATES = [
    "Give a one-line definition of the word '{x}'.",
    "Use the word '{x}' in a sentence.",
]

ADJECTIVES = [
    "bright", "heavy", "quiet", "ancient", "narrow", "generous", "fragile", "rapid", "humble", "distant",
    "smooth", "brave", "shallow", "tidy", "loud", "warm", "rough", "early", "empty", "simple",
]
ADJECTIVE_TEMPLATES = ["What is the opposite of the word '{x}'?", "Give a synonym for the word '{x}'."]

CATEGORIES = [
    "fruit", "vegetables", "musical instruments", "trees", "birds", "sports", "board games", "fish",
    "flowers", "tools", "vehicles", "insects", "spices", "fabrics", "dances", "clouds", "rocks",
    "cheeses", "breads", "boats", "hats", "shoes", "desserts", "mammals", "herbs",
]
CATEGORY_TEMPLATES = ["List three kinds of {x}.", "Name two kinds of {x} and one way they differ."]

ACTIVITIES = [
    "make a cup of tea", "plant a seed", "tie a shoelace", "wash your hands", "fold a paper airplane",
    "boil an egg", "pack a suitcase", "water a houseplant", "make a sandwich", "clean a window",
    "set a table", "brush your teeth", "wrap a present", "sharpen a pencil", "make a bed",
    "fly a kite", "start a campfire safely", "write a thank-you note", "change a light bulb", "tidy a desk",
]
ACTIVITY_TEMPLATES = ["Explain how to {x} in three short steps."]

GOALS = [
    "sleeping better", "saving money", "learning a new language", "staying focused",
    "drinking more water", "remembering names", "keeping a plant alive", "writing clearly",
    "running a first race", "reading more books", "cooking at home", "making new friends",
    "speaking in public", "keeping a tidy kitchen", "learning to draw",
]
GOAL_TEMPLATES = ["Give one practical tip for {x}."]

BLUNT_SENTENCES = [
    "Give me the report now.", "Move your car.", "Stop talking.", "Send the files today.",
    "Fix this mistake.", "Call me back.", "Close the door.", "Answer my email.", "Be on time tomorrow.",
    "Turn the music down.", "Clean up the kitchen.", "Return my book.", "Check your work again.",
    "Wait outside.", "Explain this to me.",
]
SENTENCE_TEMPLATES = ["Rewrite this sentence more politely: '{x}'"]
# fmt: on

CHAT_SOURCES = [
    (TOPICS, TOPIC_TEMPLATES),
    (WORDS, WORD_TEMPLATES),
    (ADJECTIVES, ADJECTIVE_TEMPLATES),
    (CATEGORIES, CATEGORY_TEMPLATES),
    (ACTIVITIES, ACTIVITY_TEMPLATES),
    (GOALS, GOAL_TEMPLATES),
    (BLUNT_SENTENCES, SENTENCE_TEMPLATES),
]


def arithmetic_examples(rng: random.Random, n: int) -> list[dict]:
    """n distinct questions: additions and subtractions (non-negative results) of numbers below 100, and
    products of a one-digit number with a number below 100."""
    seen: set[str] = set()
    out = []
    while len(out) < n:
        op = rng.choice("+-*")
        if op == "*":
            a, b = rng.randint(2, 9), rng.randint(2, 99)
            if rng.random() < 0.5:
                a, b = b, a
            value = a * b
        else:
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            if op == "-" and a < b:
                a, b = b, a
            value = a + b if op == "+" else a - b
        prompt = rng.choice(ARITHMETIC_TEMPLATES).format(a=a, op=op, b=b)
        key = f"{a}{op}{b}"  # the question, whatever the wording: keeps train and eval truly disjoint
        if key in seen:
            continue
        seen.add(key)
        out.append({"prompt": prompt, "reference": str(value), "task": "arithmetic"})
    return out


def chat_examples(rng: random.Random, n: int) -> list[dict]:
    pool = sorted({t.format(x=x) for words, templates in CHAT_SOURCES for x in words for t in templates})
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} distinct chat prompts, {n} needed")
    rng.shuffle(pool)
    return [{"prompt": p, "task": "chat"} for p in pool[:n]]


def main(out_dir: Path = OUT_DIR) -> None:
    rng = random.Random(SEED)
    n_arith_train, n_arith_eval = NUM_TRAIN // 2, NUM_EVAL // 2
    arith = arithmetic_examples(rng, n_arith_train + n_arith_eval)
    chat = chat_examples(rng, (NUM_TRAIN - n_arith_train) + (NUM_EVAL - n_arith_eval))
    n_chat_train = NUM_TRAIN - n_arith_train
    splits = {
        "train": arith[:n_arith_train] + chat[:n_chat_train],
        "eval": arith[n_arith_train:] + chat[n_chat_train:],
    }
    for name, rows in splits.items():
        rng.shuffle(rows)
        path = out_dir / f"embedded_{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        print(f"wrote {len(rows)} examples to {path}")


if __name__ == "__main__":
    main()
