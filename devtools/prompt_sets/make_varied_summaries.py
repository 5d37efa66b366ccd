"""Generate the varied-summary set: `python -m devtools.prompt_sets.make_varied_summaries` rewrites
varied_summaries/train.jsonl (1200 rows), validation.jsonl (120) and test.jsonl (300).

Why it exists: dialogue_summaries' reference is one fixed template of the dialogue, so a tuned teacher
reaches ROUGE-L 1.000 and the task cannot tell a student that learnt the facts from one that learnt the
template. Here each of 5 scenarios (restaurant booking, furniture delivery, meeting planning, surprise
party, car repair) has 5 facts (who, what, when, where, a number, a decision). A dialogue states them in a
shuffled order, some unasked, numbers and times sometimes spelt out, with small talk and one fact first
given wrong and then corrected. Each item has 3 references drawn independently of the dialogue: a lead
sentence and one sentence per fact, each from 3 phrasings, the facts in a random order. So no function of
the dialogue gives the reference: ROUGE-L is taken as the best over the 3 (`varied_summaries` task,
trainer/data/tasks/builtin.py), and `facts` scores the share of the canonical values (or an accepted variant:
"4" or "four", "7 pm" or "7pm") the response states.

Rows are DialogSum-shaped (`{"id", "dialogue", "summary", "topic"}`, `summary` the first reference) plus
`references`, `facts` (slot -> canonical value) and `fact_variants` (slot -> other accepted spellings).
Train, validation and test share the scenarios but never a fact combination. Deterministic: a fixed seed.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from devtools.prompt_sets import SHIPPED
from devtools.prompt_sets.splits import split_evenly, write_splits

SEED = 20261215
SPLITS = {"train": 1200, "validation": 120, "test": 300}
REFERENCES = 3
OUT_DIR = SHIPPED / "varied_summaries"

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SMALL_TALK = (
    ("Lovely weather today, isn't it?", "Yes, finally some sun."),
    ("How was your weekend?", "Quiet, thanks. I mostly read."),
    ("Sorry, it's noisy here, they're fixing the road.", "No worries, I can hear you fine."),
    ("Did you watch the match last night?", "No, I missed it, unfortunately."),
    ("Sorry, my phone is almost dead.", "Then let's be quick."),
    ("By the way, I love your new haircut.", "Oh, thank you!"),
)
CLOSINGS = (("Thanks a lot.", "You're welcome. Bye!"), ("Great, that's everything.", "Perfect. Speak soon!"))
SELF_CORRECTIONS = ("Sorry, I mean {value}, not {wrong}.", "Wait, no, not {wrong}: {value}.")
CHALLENGES = ("Hm, {wrong}? I thought it was {value}.", "Are you sure? I have {value} in my notes.")
CONFIRMATIONS = ("Oh, you're right, {value}.", "Yes, sorry, {value} is correct.")
UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
UNITS += ["twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_CLOCK = re.compile(r"(\d{1,2})(:\d\d)? (am|pm)")


@dataclass(frozen=True)
class Fact:
    """One slot: its values, who states it ("1"/"2"; the other asks), the asking and telling lines, and
    the reference sentences ({v}: the value). `correctable`: a wrong value then the right one reads well."""

    values: tuple[str, ...]
    teller: str
    asks: tuple[str, ...]
    tells: tuple[str, ...]
    sentences: tuple[str, ...]
    correctable: bool = True


@dataclass(frozen=True)
class Scenario:
    """Opening lines of #Person1#, the lead sentences of a reference (no facts), and the facts by slot."""

    topic: str
    openers: tuple[str, ...]
    leads: tuple[str, ...]
    facts: dict[str, Fact] = field(default_factory=dict)


def number_words(n: int) -> str:
    """0-999 in words ("forty-five", "two hundred and forty"): the spelt-out variant of a number."""
    if n < 20:
        return UNITS[n]
    if n < 100:
        return TENS[n // 10] + ("-" + UNITS[n % 10] if n % 10 else "")
    rest = n % 100
    return f"{UNITS[n // 100]} hundred" + (f" and {number_words(rest)}" if rest else "")


def variants(value: str) -> list[str]:
    """Other spellings the `facts` score accepts: a number in words, a clock time without the space,
    with dots or with ":00"."""
    if value.isdigit():
        return [number_words(int(value))]
    clock = _CLOCK.fullmatch(value)
    if clock is None:
        return []
    hour, minutes, half = clock.groups()
    dotted = f"{hour}{minutes or ''} {half[0]}.{half[1]}."
    return [f"{hour}{minutes or ''}{half}", dotted, *([] if minutes else [f"{hour}:00 {half}"])]


def _fact(
    values: tuple[str, ...],
    teller: str,
    asks: tuple[str, ...],
    tells: tuple[str, ...],
    sentences: tuple[str, ...],
    correctable: bool = True,
) -> Fact:
    """A Fact from positional tuples, so the scenario table below stays compact."""
    return Fact(tuple(values), teller, tuple(asks), tuple(tells), tuple(sentences), correctable)


SCENARIOS = [
    Scenario(
        "restaurant booking",
        (
            "Hi, I'd like to book a table, please.",
            "Hello, is it possible to reserve a table?",
            "Good afternoon, I'm calling to make a reservation.",
        ),
        (
            "#Person1# books a table at a restaurant.",
            "#Person1# calls a restaurant to make a reservation.",
            "#Person2# takes a restaurant booking from #Person1#.",
        ),
        {
            "name": _fact(
                ("Smith", "Garcia", "Chen", "Patel", "Brown", "Nguyen", "Okafor", "Rossi"),
                "1",
                ("Can I have a name for the booking?", "What name should I put it under?"),
                ("It's under {v}.", "The name is {v}.", "Put it under {v}, please."),
                (
                    "The booking is under the name {v}.",
                    "The reservation is in the name of {v}.",
                    "#Person1# gives the name {v}.",
                ),
            ),
            "people": _fact(
                ("2", "3", "4", "5", "6", "9", "10", "11"),
                "1",
                ("How many people will there be?", "For how many guests?"),
                ("There will be {v} of us.", "A table for {v}, please.", "We're {v} people."),
                ("The table is for {v} people.", "{v} people will come.", "#Person1# needs a table for {v}."),
            ),
            "day": _fact(
                DAYS,
                "1",
                ("Which day would you like?", "What day were you thinking of?"),
                ("This {v}, if possible.", "On {v}, please.", "{v} would be ideal."),
                ("The reservation is for {v}.", "They will come on {v}.", "The chosen day is {v}."),
            ),
            "time": _fact(
                ("7 pm", "7:30 pm", "8 pm", "8:30 pm", "1 pm", "1:30 pm"),
                "1",
                ("And what time?", "What time suits you?"),
                ("Around {v}.", "At {v}, please.", "Could we say {v}?"),
                ("The table is booked for {v}.", "They will arrive at {v}.", "The booking time is {v}."),
            ),
            "seating": _fact(
                ("on the terrace", "by the window", "in the garden", "in the private room", "near the bar"),
                "1",
                ("Do you have a seating preference?", "Where would you like to sit?"),
                ("We'd like to sit {v}, please.", "Could we have a table {v}?"),
                ("#Person1# asks to sit {v}.", "Their table will be {v}.", "They get a table {v}."),
                correctable=False,
            ),
        },
    ),
    Scenario(
        "furniture delivery",
        (
            "Hello, I'm calling about a delivery.",
            "Hi, I'd like to arrange a delivery, please.",
            "Good morning, I have a question about my order.",
        ),
        (
            "#Person1# arranges a delivery with #Person2#.",
            "#Person1# calls a shop about a delivery.",
            "#Person2# schedules a delivery for #Person1#.",
        ),
        {
            "item": _fact(
                (
                    "sofa",
                    "wardrobe",
                    "dining table",
                    "bookcase",
                    "washing machine",
                    "fridge",
                    "bed frame",
                    "desk",
                ),
                "1",
                ("Which order is it about?", "What did you order?"),
                ("It's the {v} I bought last week.", "I ordered a {v}.", "It's for a {v}."),
                ("#Person1# ordered a {v}.", "The order is a {v}.", "The {v} is being delivered."),
            ),
            "day": _fact(
                DAYS,
                "2",
                ("When can you deliver it?", "When will it arrive?"),
                ("We can deliver it on {v}.", "The van can come on {v}."),
                ("It will be delivered on {v}.", "Delivery is on {v}.", "The van comes on {v}."),
            ),
            "time": _fact(
                ("8 am", "9 am", "10 am", "11 am", "1 pm", "2 pm", "3 pm", "4 pm"),
                "2",
                ("At what time?", "Roughly what time?"),
                ("The driver will arrive around {v}.", "Expect them at about {v}."),
                (
                    "The driver arrives around {v}.",
                    "The expected time is {v}.",
                    "Delivery is expected at {v}.",
                ),
            ),
            "fee": _fact(
                ("15", "20", "25", "30", "35", "40", "45", "50"),
                "2",
                ("Is there a delivery charge?", "How much is delivery?"),
                (
                    "Delivery costs {v} dollars.",
                    "There's a fee of {v} dollars.",
                    "It's {v} dollars for delivery.",
                ),
                (
                    "Delivery costs {v} dollars.",
                    "#Person1# pays a fee of {v} dollars.",
                    "The fee is {v} dollars.",
                ),
            ),
            "service": _fact(
                ("assemble it", "take the old one away", "carry it upstairs", "leave it in the garage"),
                "1",
                ("Anything else we should do?", "Do you need any extra service?"),
                ("Yes, please {v}.", "Could you {v}?", "I'd like you to {v}."),
                ("#Person1# asks them to {v}.", "The team will also {v}.", "They agree to {v}."),
                correctable=False,
            ),
        },
    ),
    Scenario(
        "meeting planning",
        (
            "Hi, we need to talk about the budget soon.",
            "Hey, do you have time to meet this week?",
            "Hello, shall we set up a meeting about the project?",
        ),
        (
            "#Person1# and #Person2# plan a meeting.",
            "#Person1# sets up a meeting with #Person2#.",
            "Two colleagues arrange a meeting.",
        ),
        {
            "guest": _fact(
                ("Maria", "Tom", "Aisha", "Kenji", "Lucas", "Priya", "Olga", "Sam"),
                "2",
                ("Who else should come?", "Should we invite anyone else?"),
                ("Let's invite {v}.", "{v} should be there.", "We need {v} too."),
                ("{v} is invited as well.", "They also invite {v}.", "{v} will join them."),
            ),
            "day": _fact(
                DAYS[:5],
                "1",
                ("Which day works for you?", "When are you free?"),
                ("How about {v}?", "I'm free on {v}.", "Let's meet on {v}."),
                ("The meeting is on {v}.", "They meet on {v}.", "They pick {v}."),
            ),
            "time": _fact(
                ("9 am", "10 am", "11 am", "2 pm", "3 pm", "4 pm"),
                "2",
                ("What time is good for you?", "Morning or afternoon?"),
                ("{v} works for me.", "Let's say {v}.", "I can do {v}."),
                ("It starts at {v}.", "The meeting is at {v}.", "They agree on {v}."),
            ),
            "room": _fact(
                (
                    "the library",
                    "the board room",
                    "the small office",
                    "the cafeteria",
                    "the lab",
                    "the garden room",
                ),
                "1",
                ("Where should we meet?", "Which room?"),
                ("Let's use {v}.", "We can meet in {v}.", "How about {v}?"),
                ("They will meet in {v}.", "The meeting is in {v}.", "They book {v}."),
            ),
            "minutes": _fact(
                ("15", "20", "30", "45", "60", "90"),
                "2",
                ("How long do we need?", "How much time should I block?"),
                ("About {v} minutes.", "{v} minutes should be enough.", "Block {v} minutes."),
                ("It will last {v} minutes.", "They plan {v} minutes.", "The meeting takes {v} minutes."),
            ),
        },
    ),
    Scenario(
        "surprise party",
        (
            "Guess what, we're throwing a surprise party!",
            "Can you keep a secret? We're planning a surprise party.",
            "I have news: there's going to be a surprise party.",
        ),
        (
            "#Person1# tells #Person2# about a surprise party.",
            "#Person1# invites #Person2# to a surprise party.",
            "The two friends talk about a surprise party.",
        ),
        {
            "friend": _fact(
                ("Anna", "Ben", "Chloe", "David", "Elena", "Farid", "Grace", "Hugo"),
                "1",
                ("Oh nice! Who is it for?", "For whom?"),
                ("It's for {v}.", "For {v}, of course.", "It's {v}'s birthday."),
                ("The party is for {v}.", "It is a surprise for {v}.", "{v} is the guest of honour."),
            ),
            "day": _fact(
                DAYS,
                "1",
                ("When is it?", "Which day?"),
                ("It's on {v}.", "We're doing it on {v}."),
                ("It is on {v}.", "The party takes place on {v}.", "Everyone gathers on {v}."),
            ),
            "place": _fact(
                ("the park", "the beach", "the community hall", "the rooftop cafe", "the sports club"),
                "1",
                ("Where?", "Where is it happening?"),
                ("We're having it at {v}.", "It's at {v}."),
                ("The party is at {v}.", "It will be held at {v}.", "Everyone meets at {v}."),
            ),
            "guests": _fact(
                ("10", "12", "15", "20", "25", "30"),
                "1",
                ("How many people are coming?", "Is it a big party?"),
                ("About {v} people are coming.", "We invited {v} guests."),
                ("About {v} guests are invited.", "{v} people are coming.", "The guest list has {v} people."),
            ),
            "bring": _fact(
                ("a cake", "some drinks", "a salad", "some snacks", "the music", "balloons"),
                "2",
                ("Could you bring something?", "Can you help with anything?"),
                ("Sure, I'll bring {v}.", "I can bring {v}.", "Let me bring {v}."),
                (
                    "#Person2# will bring {v}.",
                    "#Person2# offers to bring {v}.",
                    "#Person2# takes care of {v}.",
                ),
            ),
        },
    ),
    Scenario(
        "car repair",
        (
            "Hello, my car needs some work.",
            "Hi, I've brought my car in.",
            "Good morning, could you have a look at my car?",
        ),
        (
            "#Person1# brings a car to #Person2#'s garage.",
            "#Person1# books a car repair.",
            "#Person2# takes in #Person1#'s car for a repair.",
        ),
        {
            "problem": _fact(
                (
                    "the brakes",
                    "the battery",
                    "the air conditioning",
                    "the headlights",
                    "the gearbox",
                    "the exhaust",
                ),
                "1",
                ("What seems to be the problem?", "What's wrong with the car?"),
                ("It's {v}, I think.", "There's a problem with {v}.", "I need someone to look at {v}."),
                ("#Person1# needs {v} fixed.", "The problem is {v}.", "The garage will repair {v}."),
            ),
            "cost": _fact(
                ("80", "95", "120", "150", "180", "200", "240", "300"),
                "2",
                ("How much will it cost?", "What's the price?"),
                ("It will be about {v} dollars.", "Roughly {v} dollars.", "The quote is {v} dollars."),
                (
                    "The repair costs {v} dollars.",
                    "The quote is {v} dollars.",
                    "#Person1# will pay {v} dollars.",
                ),
            ),
            "day": _fact(
                DAYS[:6],
                "2",
                ("When will it be ready?", "When can I pick it up?"),
                ("It'll be ready on {v}.", "Come back on {v}."),
                ("The car will be ready on {v}.", "#Person1# collects the car on {v}.", "Pick-up is on {v}."),
            ),
            "customer": _fact(
                ("Mr Jones", "Ms Lee", "Mr Ahmed", "Ms Novak", "Mr Silva", "Ms Park"),
                "1",
                ("Can I take your name?", "Whose car is it?"),
                ("It's {v}.", "My name is {v}.", "Under {v}, please."),
                ("The car belongs to {v}.", "The customer is {v}.", "The job is under {v}."),
            ),
            "extra": _fact(
                (
                    "a courtesy car",
                    "a lift to the station",
                    "a call when it is done",
                    "a text when it is done",
                ),
                "1",
                ("Do you need anything while you wait?", "Anything else I can do?"),
                ("I'd like {v}, please.", "Could I get {v}?", "{v} would help."),
                ("#Person1# asks for {v}.", "#Person2# arranges {v}.", "#Person1# will get {v}."),
                correctable=False,
            ),
        },
    ),
]


class Item(NamedTuple):
    row: dict
    scenario: Scenario
    wrong: tuple[str, str]  # (slot, value): said in the dialogue, then corrected; in no reference
    shapes: list[tuple]  # each reference's choices: (lead, ((slot, phrasing), ...) in order)


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def spoken(value: str, rng: random.Random) -> str:
    """How the dialogue says a value: usually as it is, sometimes in an accepted variant ("four")."""
    others = variants(value)
    return rng.choice(others) if others and rng.random() < 0.3 else value


def exchange(fact: Fact, value: str, wrong: str | None, rng: random.Random) -> list[tuple[str, str]]:
    """The turns that state one fact: an optional question, the answer, and for the corrected fact the
    wrong value first, then the right one (corrected by the teller, or challenged by the asker)."""
    asker = "2" if fact.teller == "1" else "1"
    turns = [(asker, rng.choice(fact.asks))] if rng.random() < 0.75 else []
    said = spoken(value, rng)
    if wrong is None:
        return [*turns, (fact.teller, rng.choice(fact.tells).format(v=said))]
    told = rng.choice(fact.tells).format(v=wrong)
    if rng.random() < 0.5:
        fix = rng.choice(SELF_CORRECTIONS).format(value=said, wrong=wrong)
        return [*turns, (fact.teller, f"{told} {fix}")]
    challenge = (asker, rng.choice(CHALLENGES).format(value=said, wrong=wrong))
    return [
        *turns,
        (fact.teller, told),
        challenge,
        (fact.teller, rng.choice(CONFIRMATIONS).format(value=said)),
    ]


def dialogue(scenario: Scenario, facts: dict[str, str], wrong: tuple[str, str], rng: random.Random) -> str:
    """#Person1#'s opening, the facts' exchanges in a random order with small talk between them and an
    optional closing; consecutive lines of one speaker become one turn."""
    blocks = [
        exchange(fact, facts[slot], wrong[1] if slot == wrong[0] else None, rng)
        for slot, fact in scenario.facts.items()
    ]
    rng.shuffle(blocks)
    for pair in rng.sample(SMALL_TALK, 2 if rng.random() < 0.3 else 1):
        first = rng.choice("12")
        blocks.insert(
            rng.randrange(len(blocks) + 1), [(first, pair[0]), ("2" if first == "1" else "1", pair[1])]
        )
    if rng.random() < 0.5:
        closing = rng.choice(CLOSINGS)
        blocks.append([("1", closing[0]), ("2", closing[1])])
    turns: list[tuple[str, str]] = [("1", rng.choice(scenario.openers))]
    for who, text in itertools.chain.from_iterable(blocks):
        if turns[-1][0] == who:
            turns[-1] = (who, f"{turns[-1][1]} {cap(text)}")
        else:
            turns.append((who, cap(text)))
    return "\n".join(f"#Person{who}#: {text}" for who, text in turns)


def reference(scenario: Scenario, facts: dict[str, str], rng: random.Random) -> tuple[str, tuple]:
    """(text, shape): a lead sentence, then one sentence a fact in a random order, each phrasing drawn
    independently of the dialogue."""
    lead = rng.randrange(len(scenario.leads))
    slots = list(scenario.facts)
    rng.shuffle(slots)
    chosen = tuple((slot, rng.randrange(len(scenario.facts[slot].sentences))) for slot in slots)
    sentences = [scenario.leads[lead]]
    sentences += [cap(scenario.facts[slot].sentences[i].format(v=facts[slot])) for slot, i in chosen]
    return " ".join(sentences), (lead, chosen)


def references(
    scenario: Scenario, facts: dict[str, str], rng: random.Random
) -> tuple[list[str], list[tuple]]:
    """REFERENCES distinct references (texts, shapes)."""
    texts: list[str] = []
    shapes: list[tuple] = []
    while len(texts) < REFERENCES:
        text, shape = reference(scenario, facts, rng)
        if text not in texts:
            texts.append(text)
            shapes.append(shape)
    return texts, shapes


def combinations(scenario: Scenario) -> list[dict[str, str]]:
    """Every combination of the scenario's fact values, as {slot: value}."""
    slots = list(scenario.facts)
    return [
        dict(zip(slots, values)) for values in itertools.product(*(f.values for f in scenario.facts.values()))
    ]


def make_item(scenario: Scenario, facts: dict[str, str], rng: random.Random) -> Item:
    """One row: its dialogue (with one correctable fact said wrong first), references, facts, variants."""
    slot = rng.choice([s for s, f in scenario.facts.items() if f.correctable])
    wrong = (slot, rng.choice([v for v in scenario.facts[slot].values if v != facts[slot]]))
    texts, shapes = references(scenario, facts, rng)
    row = {
        "id": "",
        "dialogue": dialogue(scenario, facts, wrong, rng),
        "summary": texts[0],
        "references": texts,
        "facts": facts,
        "fact_variants": {s: variants(v) for s, v in facts.items() if variants(v)},
        "topic": scenario.topic,
    }
    return Item(row, scenario, wrong, shapes)


def build(seed: int = SEED) -> dict[str, list[Item]]:
    """{split: items}. A scenario's shuffled fact combinations go to test first, then validation, then
    train, so no two splits share one."""
    rng = random.Random(seed)
    out: dict[str, list[Item]] = {split: [] for split in SPLITS}
    quotas = {split: split_evenly(n, len(SCENARIOS)) for split, n in SPLITS.items()}
    for index, scenario in enumerate(SCENARIOS):
        combos = combinations(scenario)
        rng.shuffle(combos)
        start = 0
        for split in ("test", "validation", "train"):
            for facts in combos[start : start + quotas[split][index]]:
                out[split].append(make_item(scenario, facts, rng))
            start += quotas[split][index]
    for split, items in out.items():
        rng.shuffle(items)
        for i, item in enumerate(items):
            item.row["id"] = f"{split}_{i}"
    return out


def write(out_dir: Path = OUT_DIR) -> dict[str, int]:
    """Write train.jsonl, validation.jsonl and test.jsonl into out_dir; {split: rows}."""
    return write_splits(out_dir, {split: [item.row for item in items] for split, items in build().items()})


if __name__ == "__main__":
    for split, n in write().items():
        print(f"{OUT_DIR / split}.jsonl: {n} rows")
