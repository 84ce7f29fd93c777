"""Spoken commands for a home assistant with SLURP-style labels (``scenario_action``).

Sentences come from templates per intent with fillers; places and countries are the
real names of the time-zone database (Debian's tzdata: ``zone1970.tab``, ``iso3166.tab``).
Every (template, fillers) combination is one distinct sentence, so train and test share
intents and templates but never a sentence."""

import itertools
import random
import re
from pathlib import Path
from typing import Dict, List, Tuple

ZONEINFO = Path("/usr/share/zoneinfo")

TEMPLATES = {
    "alarm_set": ["wake me up at {time} {day}", "set an alarm for {time} {day}"],
    "alarm_remove": ["cancel my alarm for {time} {day}", "remove the alarm at {time}"],
    "alarm_query": ["which alarms do i have {day}", "is there an alarm set for {time} {day}"],
    "weather_query": ["what is the weather like in {city} {day}",
                      "will it rain in {city} {day}"],
    "datetime_query": ["what time is it in {city}", "what is the time in {city} now"],
    "play_music": ["play some {genre} music", "put on {genre} music in the {room}"],
    "play_radio": ["play a {genre} radio station", "turn on the {genre} radio in the {room}"],
    "iot_hue_lightoff": ["turn off the lights in the {room} at {time}", "switch the {room} lights off"],
    "iot_hue_lightchange": ["make the {room} lights {colour}",
                            "change the {room} light to {colour}"],
    "iot_cleaning": ["start the vacuum cleaner in the {room}", "clean the {room} {day}"],
    "calendar_set": ["remind me to {chore} {day}", "add a meeting with {person} {day} at {time}"],
    "calendar_query": ["what is on my calendar {day}", "do i meet {person} {day}"],
    "email_sendemail": ["send an email to {person} about the {topic}",
                        "write to {person} about the {topic}"],
    "email_query": ["do i have new emails from {person} {day}", "check my inbox for {person} {day}"],
    "news_query": ["what is the latest news about the {topic}", "any news from {city} {day}"],
    "lists_createoradd": ["add {food} to my shopping list", "put {food} on the list for {day}"],
    "transport_query": ["when is the next train to {city}", "how do i get to {city} {day}"],
    "cooking_recipe": ["how do i cook {food} {day}", "give me a recipe with {food}"],
    "qa_factoid": ["what is the capital of {country}", "how many people live in {country}"],
    "audio_volume_up": ["turn the {genre} music up in the {room}", "make the music in the {room} louder"],
}
FILLERS = {
    "time": ["six am", "seven am", "half past seven", "eight thirty", "nine pm", "noon",
             "ten fifteen", "quarter to eleven", "five pm", "midnight"],
    "day": ["today", "tomorrow", "on monday", "on tuesday", "on wednesday", "on thursday",
            "on friday", "on saturday", "on sunday", "this weekend", "tonight"],
    "genre": ["jazz", "rock", "classical", "pop", "folk", "blues", "reggae", "country",
              "techno", "soul"],
    "room": ["kitchen", "bedroom", "living room", "bathroom", "hallway", "office", "garage"],
    "colour": ["red", "blue", "green", "warm white", "purple", "orange", "yellow"],
    "chore": ["call the bank", "water the plants", "buy milk", "pay the rent",
              "feed the cat", "book a dentist appointment", "pick up the parcel"],
    "person": ["anna", "peter", "maria", "john", "sarah", "david", "laura", "michael",
               "emma", "thomas"],
    "topic": ["budget", "holiday", "project", "party", "report", "meeting", "contract",
              "elections", "football"],
    "food": ["rice", "pasta", "chicken", "potatoes", "carrots", "apples", "bread", "eggs",
             "tomatoes", "lentils", "salmon", "mushrooms"],
}


def _plain(name: str):
    name = name.replace("_", " ").strip().lower()
    return name if re.fullmatch(r"[a-z ]+", name) else None


def zone_places(zoneinfo: Path = ZONEINFO) -> Tuple[List[str], List[str]]:
    """City names (from zone1970.tab) and country names (iso3166.tab) in plain words."""
    zones, countries = zoneinfo / "zone1970.tab", zoneinfo / "iso3166.tab"
    for path in (zones, countries):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: install Debian's tzdata package")
    cities = set()
    for line in zones.read_text().splitlines():
        if line and not line.startswith("#"):
            city = _plain(line.split("\t")[2].split("/")[-1])
            if city:
                cities.add(city)
    names = set()
    for line in countries.read_text().splitlines():
        if line and not line.startswith("#"):
            name = _plain(line.split("\t")[1])
            if name and len(name.split()) <= 2:
                names.add(name)
    return sorted(cities), sorted(names)


def all_commands(zoneinfo: Path = ZONEINFO) -> List[Tuple[str, str]]:
    """Every distinct (intent, sentence) the templates make, sorted."""
    cities, countries = zone_places(zoneinfo)
    fillers = dict(FILLERS, city=cities, country=countries)
    out = set()
    for intent, templates in TEMPLATES.items():
        for template in templates:
            slots = re.findall(r"{(\w+)}", template)
            for values in itertools.product(*(fillers[slot] for slot in slots)):
                out.add((intent, template.format(**dict(zip(slots, values)))))
    return sorted(out)


def balanced_sample(commands, count: int, seed: int) -> List[Tuple[str, str]]:
    """``count`` commands spread evenly over intents (seeded)."""
    by_intent: Dict[str, list] = {}
    for intent, sentence in commands:
        by_intent.setdefault(intent, []).append((intent, sentence))
    rng = random.Random(seed)
    for items in by_intent.values():
        rng.shuffle(items)
    out, queues = [], [by_intent[intent] for intent in sorted(by_intent)]
    while len(out) < count and any(queues):
        for queue in queues:
            if queue and len(out) < count:
                out.append(queue.pop())
    return out
