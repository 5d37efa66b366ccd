"""Generate the dialogue-summary set: `python -m devtools.prompt_sets.make_dialogue_summaries` rewrites
dialogue_summaries/train.jsonl (1500 rows) and dialogue_summaries/test.jsonl (150 rows).

Why it exists: DialogSum's summaries paraphrase freely, so ROUGE-L barely separates a fine-tuned 135M student
from an untrained one. Here the summary is a procedure: each of 16 everyday scenarios (booking a table,
returning an item, asking directions, rescheduling a meeting, ordering food, borrowing something, a doctor's
appointment, buying tickets, ...) has slots (items, days, times, places, numbers, reasons, choices) that
appear in the dialogue and are restated in one fixed summary shape per scenario, so ROUGE-L against the
reference rewards extracting them. Each turn has two or three phrasings, a closing turn is sometimes added
(3-6 turns in all), and each dialogue carries a distractor detail the summary leaves out. Rows are in the
knkarthick/dialogsum hub format (`{"id", "dialogue", "summary", "topic"}`), read by the `dialogsum` task
(trainer/data/tasks/builtin.py: dialogsum_row) and scored with ROUGE.

Train and test share the scenarios but never a slot combination: each scenario's combinations are enumerated,
shuffled, and the test rows take the first ones, so no test dialogue or summary is in train. Deterministic: a
fixed seed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from devtools.prompt_sets import SHIPPED
from devtools.prompt_sets.splits import disjoint_splits, split_evenly, write_splits

SEED = 20261202
NUM_TRAIN = 1500
NUM_TEST = 150
OUT_DIR = SHIPPED / "dialogue_summaries"

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WEEKDAYS = DAYS[:5]
CLOSERS_1 = ["Thank you very much.", "Great, thanks for your help.", "Perfect, thank you."]
CLOSERS_2 = ["You're welcome. Have a nice day!", "My pleasure. Goodbye!", "No problem. See you!"]


@dataclass(frozen=True)
class Scenario:
    """Slots ("a,b" -> tuples filling both; all restated in the summary), turns (speaker "1"/"2", phrasings),
    distractor clauses (exactly one turn has "{distractor}" in every phrasing), optional closing turn."""

    topic: str
    slots: dict[str, Sequence]
    turns: tuple[tuple[str, tuple[str, ...]], ...]
    distractors: tuple[str, ...]
    summary: str
    closing: tuple[str, tuple[str, ...]] | None = None
    distinct: tuple[str, ...] = ()  # slots that must differ from each other


SCENARIOS = [
    Scenario(
        "restaurant booking",
        {
            "people": [str(n) for n in range(2, 9)],
            "day": DAYS,
            "time": ["6 pm", "6:30 pm", "7 pm", "7:30 pm", "8 pm", "8:30 pm"],
            "name": ["Smith", "Garcia", "Chen", "Patel", "Brown", "Kowalski", "Nguyen", "Okafor", "Rossi"],
        },
        (
            (
                "1",
                (
                    "Good evening, I'd like to book a table for {people} on {day}.",
                    "Hi, could I reserve a table for {people} people this {day}?",
                    "Hello, do you have a table for {people} on {day}?",
                ),
            ),
            (
                "2",
                (
                    "Certainly. What time would you like?",
                    "Let me check. What time were you thinking of?",
                    "Yes, we have space. At what time?",
                ),
            ),
            (
                "1",
                (
                    "At {time}, please. The name is {name}.",
                    "Around {time} would be great. It's under {name}.",
                    "Could we say {time}? My name is {name}.",
                ),
            ),
            (
                "2",
                (
                    "That's fine, you're booked. Just so you know, {distractor}.",
                    "Done. By the way, {distractor}.",
                    "All set. Please note that {distractor}.",
                ),
            ),
        ),
        (
            "the terrace is closed for repairs",
            "we have live piano music that night",
            "parking is free after six",
            "our chef has a new dessert menu",
            "the entrance is round the back",
        ),
        "#Person1# books a table for {people} on {day} at {time} under the name {name}.",
        ("1", CLOSERS_1),
    ),
    Scenario(
        "product return",
        {
            "item": [
                "lamp",
                "kettle",
                "toaster",
                "jacket",
                "backpack",
                "blender",
                "phone case",
                "desk chair",
                "hair dryer",
                "coffee maker",
            ],
            "reason": [
                "it arrived damaged",
                "it stopped working",
                "it is the wrong colour",
                "it was a duplicate gift",
                "it is too noisy",
                "a part is missing",
            ],
            "choice": ["a refund", "a replacement", "store credit"],
        },
        (
            (
                "1",
                (
                    "Hi, I'd like to return this {item} because {reason}.",
                    "Hello, I bought this {item} here, but I want to return it because {reason}.",
                    "Excuse me, can I return this {item}? I'm bringing it back because {reason}.",
                ),
            ),
            (
                "2",
                (
                    "I'm sorry to hear that. Do you have the receipt?",
                    "Sorry about that. Have you got your receipt with you?",
                ),
            ),
            (
                "1",
                (
                    "Yes, here it is. By the way, {distractor}.",
                    "Here you go. I should mention that {distractor}.",
                ),
            ),
            (
                "2",
                (
                    "Thank you. Would you like a refund, a replacement or store credit?",
                    "Thanks. We can offer a refund, a replacement or store credit. Which would you prefer?",
                ),
            ),
            ("1", ("I'd like {choice}, please.", "I'll take {choice}, thanks.", "I'd prefer {choice}.")),
        ),
        (
            "I bought it in the summer sale",
            "my sister has the same one",
            "I paid by card",
            "the box is a bit torn",
            "I came by bus today",
        ),
        "#Person1# returns the {item} because {reason} and chooses {choice}.",
        ("2", ("Of course. Sorry again for the trouble.", "No problem, here you are.")),
    ),
    Scenario(
        "asking directions",
        {
            "place": [
                "the post office",
                "the train station",
                "the city library",
                "the museum",
                "the town hall",
                "the swimming pool",
                "the pharmacy",
                "the bus station",
            ],
            "street": ["Elm Street", "King Road", "Mill Lane", "Park Avenue", "Bridge Street", "Church Road"],
            "turn": ["left", "right"],
            "minutes": ["5", "10", "15", "20"],
        },
        (
            (
                "1",
                (
                    "Excuse me, how do I get to {place}?",
                    "Sorry to bother you, could you tell me the way to {place}?",
                    "Hi, I'm looking for {place}. Is it far?",
                ),
            ),
            (
                "2",
                (
                    "It's on {street}. Go straight ahead and turn {turn} at the traffic lights.",
                    "You need {street}. Walk straight on, then turn {turn} at the traffic lights.",
                    "It's on {street}: go straight and turn {turn} at the traffic lights.",
                ),
            ),
            ("1", ("How long will it take on foot?", "Is it a long walk?", "How far is it to walk?")),
            (
                "2",
                (
                    "About {minutes} minutes. Oh, and {distractor}.",
                    "Only {minutes} minutes or so. By the way, {distractor}.",
                    "Roughly {minutes} minutes. Just so you know, {distractor}.",
                ),
            ),
        ),
        (
            "there's a nice bakery on the corner",
            "it might rain later",
            "there's a street market today",
            "the pavement is narrow there",
        ),
        "#Person2# tells #Person1# that {place} is on {street}: go straight, turn {turn} at the traffic "
        "lights and walk about {minutes} minutes.",
        ("1", CLOSERS_1),
    ),
    Scenario(
        "rescheduling a meeting",
        {
            "old_day": WEEKDAYS,
            "new_day": WEEKDAYS,
            "time": ["9 am", "10 am", "11 am", "2 pm", "3 pm", "4 pm"],
            "reason": [
                "a dentist appointment",
                "a client visit",
                "a training course",
                "a job interview",
                "a family event",
                "a flight to catch",
            ],
        },
        (
            (
                "1",
                (
                    "Hi, could we move our meeting on {old_day}? I have {reason} that day.",
                    "Hello, I'm afraid I can't make our {old_day} meeting. I have {reason}.",
                    "Sorry, I need to reschedule our meeting on {old_day} because I have {reason}.",
                ),
            ),
            (
                "2",
                (
                    "No problem. When would suit you?",
                    "That's fine. What day works for you instead?",
                    "Sure. When are you free?",
                ),
            ),
            (
                "1",
                (
                    "How about {new_day} at {time}?",
                    "Would {new_day} at {time} work?",
                    "Could we do {new_day} at {time}?",
                ),
            ),
            (
                "2",
                (
                    "That works for me. Also, {distractor}.",
                    "Yes, that's fine. By the way, {distractor}.",
                    "Sounds good. Just so you know, {distractor}.",
                ),
            ),
        ),
        (
            "the big meeting room is being painted",
            "the coffee machine is broken again",
            "Sarah is on holiday next week",
            "the lift is out of order",
        ),
        "#Person1# moves the meeting from {old_day} to {new_day} at {time} because #Person1# has {reason}.",
        ("1", ("Great, see you then.", "Thanks, I'll update the calendar.")),
        distinct=("old_day", "new_day"),
    ),
    Scenario(
        "ordering food",
        {
            "dish": [
                "a pepperoni pizza",
                "a chicken curry",
                "a veggie burger",
                "a bowl of ramen",
                "a Caesar salad",
                "a lasagne",
                "a beef burrito",
                "fish and chips",
            ],
            "drink": ["a cola", "a lemonade", "an iced tea", "a bottle of water", "an orange juice"],
            "address": ["12 Oak Street", "5 River Road", "31 Hill Lane", "8 Station Road", "47 Green Avenue"],
            "minutes": ["20", "25", "30", "40", "45"],
        },
        (
            (
                "1",
                (
                    "Hi, I'd like to order {dish} and {drink} for delivery, please.",
                    "Hello, can I get {dish} with {drink} delivered?",
                    "Good evening. I'd like {dish} and {drink}, please, for delivery.",
                ),
            ),
            ("2", ("Sure. What's the address?", "Of course. Where should we deliver it?")),
            (
                "1",
                (
                    "It's {address}. Oh, and {distractor}.",
                    "{address}. By the way, {distractor}.",
                    "Please bring it to {address}. Also, {distractor}.",
                ),
            ),
            (
                "2",
                (
                    "Got it. It will be there in about {minutes} minutes.",
                    "Thanks. Your food should arrive in {minutes} minutes.",
                    "Okay, delivery takes around {minutes} minutes.",
                ),
            ),
        ),
        (
            "the doorbell doesn't work, so please knock",
            "there's a friendly dog in the garden",
            "I live on the second floor",
            "I'll pay by card",
        ),
        "#Person1# orders {dish} and {drink} to {address}, and #Person2# says it will arrive in {minutes} "
        "minutes.",
        ("1", CLOSERS_1),
    ),
    Scenario(
        "borrowing something",
        {
            "item,purpose": [
                ("ladder", "to clean the gutters"),
                ("ladder", "to paint the ceiling"),
                ("drill", "to put up some shelves"),
                ("drill", "to hang a mirror"),
                ("tent", "for a camping trip"),
                ("tent", "for a music festival"),
                ("bicycle", "to get to work"),
                ("bicycle", "for a ride by the lake"),
                ("camera", "for a wedding"),
                ("camera", "for a school project"),
                ("projector", "for a film night"),
                ("projector", "for a presentation"),
                ("lawn mower", "to cut the grass"),
                ("suitcase", "for a business trip"),
                ("suitcase", "for a holiday"),
                ("sewing machine", "to make a costume"),
            ],
            "day": DAYS,
        },
        (
            (
                "1",
                (
                    "Hi, could I borrow your {item} {purpose}?",
                    "Would you mind lending me your {item}? I need it {purpose}.",
                    "Do you still have that {item}? I'd like to borrow it {purpose}.",
                ),
            ),
            (
                "2",
                (
                    "Sure. When will you give it back?",
                    "Of course. When do you think you'll return it?",
                    "No problem. How long do you need it?",
                ),
            ),
            (
                "1",
                ("I'll bring it back on {day}.", "I can return it on {day}.", "Until {day}, if that's okay."),
            ),
            (
                "2",
                (
                    "That's fine. Just so you know, {distractor}.",
                    "Okay. By the way, {distractor}.",
                    "Great. Oh, and {distractor}.",
                ),
            ),
        ),
        (
            "I bought it second-hand last year",
            "my brother borrowed it last month too",
            "it's in the garage behind the bikes",
            "the instructions are in the box",
        ),
        "#Person1# borrows #Person2#'s {item} {purpose} and will return it on {day}.",
        ("1", ("Thanks a lot!", "Thank you, I'll take good care of it.")),
    ),
    Scenario(
        "doctor's appointment",
        {
            "symptom": [
                "a sore throat",
                "a bad cough",
                "a headache",
                "back pain",
                "a skin rash",
                "an earache",
                "a sprained ankle",
            ],
            "doctor": ["Dr. Lee", "Dr. Novak", "Dr. Ahmed", "Dr. Brown", "Dr. Silva"],
            "day": WEEKDAYS,
            "time": ["8:30 am", "9:15 am", "10 am", "11:45 am", "2 pm", "3:30 pm", "4:15 pm"],
        },
        (
            (
                "1",
                (
                    "Hello, I'd like to make an appointment. I've had {symptom} for a few days.",
                    "Hi, I need to see a doctor about {symptom}.",
                    "Good morning, can I book an appointment? I have {symptom}.",
                ),
            ),
            (
                "2",
                (
                    "{doctor} is free on {day} at {time}. Would that suit you?",
                    "We have an opening with {doctor} on {day} at {time}. Is that okay?",
                    "The earliest slot is {day} at {time} with {doctor}. Does that work?",
                ),
            ),
            ("1", ("Yes, that's fine.", "Yes, I'll take it.", "That works, thank you.")),
            (
                "2",
                (
                    "Great. Please remember that {distractor}.",
                    "Okay, you're booked. Also, {distractor}.",
                    "Done. Just so you know, {distractor}.",
                ),
            ),
        ),
        (
            "our car park is being resurfaced",
            "the waiting room has moved to the first floor",
            "we now send reminders by text",
            "the pharmacy next door closes early",
        ),
        "#Person1# books an appointment with {doctor} on {day} at {time} about {symptom}.",
        ("1", CLOSERS_1),
    ),
    Scenario(
        "buying tickets",
        {
            "count": [str(n) for n in range(2, 7)],
            "show": [
                "the jazz concert",
                "the magic show",
                "the comedy night",
                "the ballet",
                "the puppet show",
                "the rock concert",
            ],
            "time": ["5 pm", "6:30 pm", "7 pm", "8 pm", "9:30 pm"],
            "section": ["the front row", "the balcony", "the middle section", "the back row"],
        },
        (
            (
                "1",
                (
                    "Hi, I'd like {count} tickets for {show}, please.",
                    "Hello, can I buy {count} tickets for {show}?",
                    "Could I get {count} tickets for {show}?",
                ),
            ),
            ("2", ("Sure. Which showing would you like?", "Of course. Which time?", "Certainly. What time?")),
            ("1", ("The one at {time}, please.", "The {time} show, please.", "I'd like the {time} one.")),
            (
                "2",
                (
                    "We have seats in {section}. Just so you know, {distractor}.",
                    "There are still seats in {section}. By the way, {distractor}.",
                    "I can give you seats in {section}. Also, {distractor}.",
                ),
            ),
        ),
        (
            "the bar opens an hour before the show",
            "photos are not allowed inside",
            "the cloakroom is free",
            "there's a short break in the middle",
        ),
        "#Person1# buys {count} tickets for {show} at {time} with seats in {section}.",
        ("1", ("Great, I'll take them.", "That's fine, I'll take them.")),
    ),
    Scenario(
        "hotel booking",
        {
            "room": ["single", "double", "twin", "family"],
            "nights": [str(n) for n in range(2, 8)],
            "day": DAYS,
            "breakfast": ["with breakfast", "without breakfast"],
        },
        (
            (
                "1",
                (
                    "Hello, I'd like to book a {room} room for {nights} nights.",
                    "Hi, do you have a {room} room available for {nights} nights?",
                    "Good afternoon, I need a {room} room for {nights} nights, please.",
                ),
            ),
            (
                "2",
                (
                    "Certainly. From which day?",
                    "Of course. When would you like to arrive?",
                    "Let me check. What's your arrival day?",
                ),
            ),
            ("1", ("From {day}.", "I'll arrive on {day}.", "Starting on {day}.")),
            (
                "2",
                (
                    "That's available. By the way, {distractor}. Would you like breakfast included?",
                    "We have a room. Just so you know, {distractor}. Do you want breakfast?",
                ),
            ),
            ("1", ("I'll take it {breakfast}, please.", "Please book it {breakfast}.")),
        ),
        (
            "the pool is closed this month",
            "our gym is open all night",
            "the lift is being repaired",
            "check-out is at noon",
        ),
        "#Person1# books a {room} room for {nights} nights from {day}, {breakfast}.",
        ("2", ("Done. We look forward to seeing you.", "All booked. Thank you!")),
    ),
    Scenario(
        "lost property",
        {
            "colour": ["black", "red", "blue", "green", "grey", "brown"],
            "item": ["umbrella", "scarf", "wallet", "backpack", "jacket", "water bottle", "phone"],
            "place": ["on the bus", "in the cafe", "at the cinema", "in the park", "at the gym"],
            "time": ["noon", "3 pm", "5 pm", "6 pm"],
        },
        (
            (
                "1",
                (
                    "Hi, I think I left my {colour} {item} {place} yesterday.",
                    "Hello, I lost a {colour} {item} {place}. Has anyone handed one in?",
                    "Excuse me, has anyone found a {colour} {item}? I left it {place}.",
                ),
            ),
            (
                "2",
                (
                    "Let me look. Yes, we have one here.",
                    "One moment. Is this yours?",
                    "I'll check... yes, someone brought one in this morning.",
                ),
            ),
            ("1", ("That's it! Can I take it now?", "Yes, that's mine. Can I collect it?")),
            (
                "2",
                (
                    "You can pick it up after {time}. Also, {distractor}.",
                    "It will be ready after {time}. By the way, {distractor}.",
                    "Come back after {time}, please. Just so you know, {distractor}.",
                ),
            ),
        ),
        (
            "the office moves to the ground floor next month",
            "it's been very busy today",
            "we get dozens of lost items every week",
            "our phone line is down",
        ),
        "#Person1# lost a {colour} {item} {place}, and #Person2# says it can be collected after {time}.",
        ("1", CLOSERS_1),
    ),
    Scenario(
        "repair shop",
        {
            "device": [
                "laptop",
                "phone",
                "tablet",
                "printer",
                "television",
                "microwave",
                "coffee machine",
                "speaker",
            ],
            "problem": [
                "it won't turn on",
                "it keeps switching off",
                "it makes a strange noise",
                "the button is stuck",
            ],
            "price": ["40", "55", "60", "75", "80", "90", "120"],
            "day": DAYS[:6],
        },
        (
            (
                "1",
                (
                    "Hi, can you repair my {device}? The problem is that {problem}.",
                    "Hello, my {device} needs fixing because {problem}.",
                    "Good morning. I brought my {device} in because {problem}.",
                ),
            ),
            (
                "2",
                (
                    "Let me have a look. The repair will cost {price} dollars.",
                    "I think we can fix it. It'll be {price} dollars.",
                    "That's a common fault. It costs {price} dollars to repair.",
                ),
            ),
            ("1", ("That's fine. When will it be ready?", "Okay. How soon can I have it back?")),
            (
                "2",
                (
                    "It'll be ready by {day}. By the way, {distractor}.",
                    "You can pick it up by {day}. Also, {distractor}.",
                    "We'll have it done by {day}. Just so you know, {distractor}.",
                ),
            ),
        ),
        (
            "we also sell phone cases",
            "our shop is moving next year",
            "we're closed on public holidays",
            "the parking meter outside is broken",
        ),
        "#Person1#'s {device} needs repair because {problem}; #Person2# charges {price} dollars and it will "
        "be ready by {day}.",
        ("1", CLOSERS_1),
    ),
    Scenario(
        "gym membership",
        {
            "plan": ["monthly", "yearly", "student", "weekend"],
            "price": ["25", "30", "35", "40", "45", "50"],
            "day": DAYS,
            "class": ["yoga", "spinning", "boxing", "pilates"],
        },
        (
            (
                "1",
                (
                    "Hi, I'd like to join the gym. How much is the {plan} membership?",
                    "Hello, I'm interested in the {plan} membership. What does it cost?",
                    "Good morning, what's the price of the {plan} membership?",
                ),
            ),
            (
                "2",
                (
                    "It's {price} dollars a month, and {distractor}.",
                    "That one is {price} dollars a month. Also, {distractor}.",
                    "It costs {price} dollars a month. By the way, {distractor}.",
                ),
            ),
            (
                "1",
                (
                    "Great, I'll sign up. Can I start on {day}?",
                    "Okay, I'll take it. I'd like to start on {day}.",
                    "Sounds good. Could I begin on {day}?",
                ),
            ),
            (
                "2",
                (
                    "Of course. Which class would you like to try first?",
                    "Sure. Are you interested in any classes?",
                ),
            ),
            ("1", ("I'd like to try {class}.", "I'd love to try {class}.", "Maybe {class}, please.")),
        ),
        (
            "the pool is being cleaned this week",
            "we have a new juice bar",
            "the car park is free for members",
            "the lockers need a coin",
        ),
        "#Person1# signs up for the {plan} membership at {price} dollars a month, starting on {day}, and "
        "wants to try {class}.",
        ("2", ("Welcome to the club!", "Great, see you soon!")),
    ),
    Scenario(
        "party invitation",
        {
            "event": ["birthday party", "barbecue", "housewarming party", "picnic", "games night"],
            "day": DAYS,
            "place": ["the park", "the beach", "the community hall", "the rooftop cafe", "the sports club"],
            "bring": ["some drinks", "a salad", "a cake", "some snacks", "a board game", "some music"],
        },
        (
            (
                "1",
                (
                    "Are you free on {day}? I'm having a {event} at {place}.",
                    "Hi! I'm throwing a {event} on {day} at {place}. Can you come?",
                    "Would you like to come to my {event}? It's on {day} at {place}.",
                ),
            ),
            (
                "2",
                (
                    "I'd love to! Should I bring anything?",
                    "Sounds great. Can I bring something?",
                    "Sure, count me in. What can I bring?",
                ),
            ),
            (
                "1",
                (
                    "Could you bring {bring}? Oh, and {distractor}.",
                    "How about {bring}? By the way, {distractor}.",
                    "It would be great if you brought {bring}. Also, {distractor}.",
                ),
            ),
        ),
        (
            "my cousin from Canada will be there",
            "it might get windy in the evening",
            "I've invited about twenty people",
            "there will be a quiz",
        ),
        "#Person1# invites #Person2# to a {event} on {day} at {place}, and #Person2# will bring {bring}.",
        ("2", ("No problem, I'll bring {bring}.", "Okay, see you there!", "Great, I'll be there.")),
    ),
    Scenario(
        "flat viewing",
        {
            "rooms": ["one", "two", "three"],
            "street": ["Oak Street", "Mill Road", "Queen Street", "Park Lane", "Castle Road"],
            "rent": ["650", "700", "800", "850", "950", "1200"],
            "day": DAYS,
        },
        (
            (
                "1",
                (
                    "Hello, I'm calling about the {rooms}-bedroom flat on {street}. Is it still available?",
                    "Hi, I saw your advert for the {rooms}-bedroom flat on {street}. Is it still free?",
                    "Good morning. Is the {rooms}-bedroom flat on {street} still for rent?",
                ),
            ),
            (
                "2",
                (
                    "Yes, it is. The rent is {rent} dollars a month.",
                    "It's still free. It costs {rent} dollars a month.",
                    "Yes. It's {rent} dollars a month.",
                ),
            ),
            (
                "1",
                (
                    "Could I come and view it on {day}?",
                    "Can I see it on {day}?",
                    "Would {day} be okay for a viewing?",
                ),
            ),
            (
                "2",
                (
                    "Yes, that's fine. Just so you know, {distractor}.",
                    "Sure, that works. By the way, {distractor}.",
                    "That's fine. Also, {distractor}.",
                ),
            ),
        ),
        (
            "the previous tenant was a musician",
            "the building has a new lift",
            "there's a bakery downstairs",
            "the windows were replaced last year",
        ),
        "#Person1# arranges to view the {rooms}-bedroom flat on {street} on {day}; the rent is {rent} "
        "dollars a month.",
        ("1", CLOSERS_1),
    ),
    Scenario(
        "train ticket",
        {
            "ticket": ["single", "return"],
            "city": ["Leeds", "Bristol", "York", "Oxford", "Cambridge", "Brighton", "Bath", "Chester"],
            "time": ["8:15", "9:40", "11:05", "13:20", "15:45", "17:30"],
            "platform": [str(n) for n in range(1, 10)],
        },
        (
            (
                "1",
                (
                    "Hi, a {ticket} ticket to {city}, please.",
                    "Hello, can I have a {ticket} ticket to {city}?",
                    "I'd like a {ticket} ticket to {city}, please.",
                ),
            ),
            (
                "2",
                (
                    "Sure. Which train?",
                    "Which departure would you like?",
                    "Of course. What time are you travelling?",
                ),
            ),
            ("1", ("The {time} train, please.", "The one at {time}.", "I'd like to catch the {time}.")),
            (
                "2",
                (
                    "Here you go. It leaves from platform {platform}, and {distractor}.",
                    "That's your ticket. It departs from platform {platform}. By the way, {distractor}.",
                    "Here it is: platform {platform}. Just so you know, {distractor}.",
                ),
            ),
        ),
        (
            "the cafe on the train is closed today",
            "there are works on the line next weekend",
            "the waiting room is on the left",
            "trains to the airport are delayed",
        ),
        "#Person1# buys a {ticket} ticket to {city} for the {time} train, which leaves from platform "
        "{platform}.",
        ("1", CLOSERS_1),
    ),
    Scenario(
        "library loan",
        {
            "count": [str(n) for n in range(2, 7)],
            "genre": ["history", "cooking", "travel", "science", "poetry", "gardening"],
            "day": DAYS,
            "fee": ["20 cents", "50 cents", "1 dollar"],
        },
        (
            (
                "1",
                (
                    "Hi, I'd like to borrow these {count} {genre} books.",
                    "Hello, can I check out these {count} {genre} books?",
                    "Good afternoon, I want to take out {count} {genre} books.",
                ),
            ),
            ("2", ("Of course. Can I see your library card?", "Sure. Your card, please?")),
            ("1", ("Here it is. When are they due?", "Here you go. When do I need to return them?")),
            (
                "2",
                (
                    "They're due back next {day}, and the late fee is {fee} a day. Also, {distractor}.",
                    "Please return them by next {day}. Late books cost {fee} a day. Also, {distractor}.",
                    "Bring them back by next {day}; it's {fee} a day if they're late. Oh, and {distractor}.",
                ),
            ),
        ),
        (
            "we have a book sale on the ground floor",
            "the reading room is closed for cleaning",
            "the library now opens at eight",
            "you can renew books online",
        ),
        "#Person1# borrows {count} {genre} books, which are due next {day}, with a late fee of {fee} a day.",
        ("1", CLOSERS_1),
    ),
]


class Dialogue(NamedTuple):
    row: dict
    slots: dict[str, str]  # every value is in the dialogue and in the summary
    distractor: str  # in the dialogue, not in the summary


def slot_combinations(scenario: Scenario) -> list[dict[str, str]]:
    """Every combination of the scenario's slot values, as {slot: value}."""
    combos = []
    for choice in itertools.product(*scenario.slots.values()):
        slots: dict[str, str] = {}
        for keys, value in zip(scenario.slots, choice):
            slots.update(zip(keys.split(","), value if isinstance(value, tuple) else (value,)))
        if len({slots[k] for k in scenario.distinct}) == len(scenario.distinct):
            combos.append(slots)
    return combos


def render(scenario: Scenario, slots: dict[str, str], rng: random.Random) -> tuple[str, str, str]:
    """(dialogue, summary, distractor)."""
    distractor = rng.choice(scenario.distractors)
    turns = list(scenario.turns)
    if scenario.closing and rng.random() < 0.5:
        turns.append(scenario.closing)
    lines = [
        f"#Person{who}#: " + rng.choice(phrasings).format(distractor=distractor, **slots)
        for who, phrasings in turns
    ]
    return "\n".join(lines), scenario.summary.format(**slots), distractor


def check_scenario(scenario: Scenario) -> None:
    """Speakers alternate, 3-6 turns; one turn carries the distractor in every phrasing; every slot is in the
    summary and in every phrasing of some turn."""
    turns = [*scenario.turns, *([scenario.closing] if scenario.closing else [])]
    assert len(scenario.turns) >= 3 and len(turns) <= 6, scenario.topic
    assert all(a[0] != b[0] for a, b in itertools.pairwise(turns)), scenario.topic
    with_distractor = [p for _, p in scenario.turns if any("{distractor}" in s for s in p)]
    assert len(with_distractor) == 1 and all("{distractor}" in s for s in with_distractor[0]), scenario.topic
    for key in (k for keys in scenario.slots for k in keys.split(",")):
        assert "{" + key + "}" in scenario.summary, (scenario.topic, key)
        assert any(all("{" + key + "}" in s for s in p) for _, p in scenario.turns), (scenario.topic, key)


def build(seed: int = SEED) -> dict[str, list[Dialogue]]:
    """{"train": [...], "test": [...]}. A scenario's test combinations are the first of its shuffled slot
    combinations, its train combinations the next ones, so the two never share one."""
    rng = random.Random(seed)
    out: dict[str, list] = {"train": [], "test": []}
    per_train = split_evenly(NUM_TRAIN, len(SCENARIOS))
    per_test = split_evenly(NUM_TEST, len(SCENARIOS))
    for scenario, n_train, n_test in zip(SCENARIOS, per_train, per_test):
        check_scenario(scenario)
        for split, chosen in disjoint_splits(slot_combinations(scenario), n_test, n_train, rng):
            for slots in chosen:
                dialogue, summary, distractor = render(scenario, slots, rng)
                row = {"id": "", "dialogue": dialogue, "summary": summary, "topic": scenario.topic}
                out[split].append(Dialogue(row, slots, distractor))
    for split, records in out.items():
        rng.shuffle(records)
        for i, record in enumerate(records):
            record.row["id"] = f"{split}_{i}"
    train_dialogues = {d.row["dialogue"] for d in out["train"]}
    assert len(train_dialogues) == NUM_TRAIN
    assert not train_dialogues & {d.row["dialogue"] for d in out["test"]}
    return out


def write(out_dir: Path = OUT_DIR) -> dict[str, int]:
    """Write train.jsonl and test.jsonl into out_dir; {split: rows}."""
    return write_splits(out_dir, {split: [d.row for d in records] for split, records in build().items()})


if __name__ == "__main__":
    for split, n in write().items():
        print(f"{OUT_DIR / split}.jsonl: {n} rows")
