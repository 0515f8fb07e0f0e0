"""Turn a free-text prompt into a :class:`Brief`: the few musical decisions the arranger needs.

The parser is deliberately forgiving: it looks for known phrases and ignores everything else, so any prompt gives
a sensible brief. The brief depends only on the prompt (never on the seed), so every seed is a variation of the same
piece: same tempo, key and band, different notes.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

from runners.synth.genres import DEFAULT_GENRE, GENRES

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_LETTER = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_ACCIDENTAL = {"#": 1, "♯": 1, "sharp": 1, "b": -1, "♭": -1, "flat": -1}
MODES = ("major", "minor", "dorian", "phrygian", "lydian", "mixolydian")

# Words that suggest a genre only when no genre is named outright ("epic rock" is rock, "epic" alone cinematic).
WEAK_ALIASES = frozenset(
    {
        "chill",
        "dance",
        "groove",
        "epic",
        "calm",
        "relaxing",
        "peaceful",
        "sleep",
        "song",
        "band",
        "score",
        "uplifting",
        "electronic",
        "meditative",
        "atmospheric",
        "soul",
        "funky",
        "ballad",
        "trailer",
        "romantic",
        "spa",
    }
)

INSTRUMENT_WORDS: dict[str, tuple[str, ...]] = {
    "drums": ("drums", "drum", "beat", "beats", "percussion", "drumkit", "breakbeat", "breaks", "groove"),
    "kick": ("kick", "kicks", "bass drum", "808 kick"),
    "snare": ("snare", "snares", "clap", "claps", "rimshot"),
    "hats": ("hats", "hat", "hi hat", "hi hats", "hihat", "hihats", "cymbal", "cymbals", "ride", "shaker"),
    "bass": ("bass", "bassline", "sub", "sub bass", "808", "808s", "reese", "wobble"),
    "piano": ("piano", "pianos", "grand piano", "keys", "keyboard"),
    "epiano": ("rhodes", "electric piano", "e piano", "epiano", "wurlitzer", "wurli"),
    "pad": ("pad", "pads", "synth pad", "choir", "voices", "vocal", "vocals", "atmosphere", "texture"),
    "strings": ("strings", "string", "violin", "violins", "cello", "cellos", "viola", "orchestra", "orchestral"),
    "brass": ("brass", "horns", "horn section", "trumpet", "trumpets", "trombone"),
    "bells": (
        "bells",
        "bell",
        "glockenspiel",
        "chimes",
        "music box",
        "celesta",
        "vibraphone",
        "marimba",
        "kalimba",
        "xylophone",
    ),
    "pluck": ("pluck", "plucks", "plucked", "harp", "arp", "arps", "arpeggio", "arpeggios", "arpeggiated", "sequence"),
    "guitar": (
        "guitar",
        "guitars",
        "electric guitar",
        "acoustic guitar",
        "riff",
        "riffs",
        "strumming",
        "banjo",
        "ukulele",
    ),
    "lead": (
        "lead",
        "leads",
        "synth",
        "synths",
        "synth lead",
        "melody",
        "melodies",
        "flute",
        "whistle",
        "saxophone",
        "sax",
        "theme",
        "hook",
    ),
    "organ": ("organ", "organs", "hammond", "church organ", "clavinet", "clav"),
}
DRUM_PARTS = ("kick", "snare", "hats")
TONAL = ("piano", "epiano", "pad", "strings", "brass", "bells", "pluck", "guitar", "lead", "organ")

SCENE_WORDS: dict[str, tuple[str, ...]] = {
    "rain": (
        "rain",
        "rainy",
        "raining",
        "rainfall",
        "drizzle",
        "downpour",
        "shower",
        "showers",
        "storm",
        "stormy",
        "thunderstorm",
        "raindrops",
        "rain drops",
        "monsoon",
    ),
    "thunder": ("thunder", "thunderstorm", "storm", "stormy", "lightning"),
    "wind": ("wind", "windy", "breeze", "breezy", "gust", "gusts", "gale", "blizzard", "howling", "storm", "desert"),
    "ocean": ("ocean", "sea", "seaside", "waves", "wave", "beach", "surf", "shore", "coast", "tide"),
    "fire": ("fire", "campfire", "fireplace", "crackling", "bonfire", "flames", "hearth"),
    "birds": (
        "birds",
        "bird",
        "birdsong",
        "chirping",
        "forest",
        "woods",
        "jungle birds",
        "morning",
        "songbirds",
        "garden",
        "park",
    ),
    "city": ("city", "traffic", "street", "streets", "cars", "urban", "downtown", "road", "highway", "cafe", "crowd"),
    "stream": ("stream", "river", "brook", "creek", "waterfall", "water", "fountain", "babbling", "trickling"),
    "crickets": ("crickets", "cricket", "night", "nighttime", "insects", "summer night", "cicadas"),
    "vinyl": ("vinyl", "crackle", "record", "dusty", "tape hiss", "hiss"),
}

MAJOR_WORDS = (
    "happy",
    "bright",
    "uplifting",
    "cheerful",
    "joyful",
    "sunny",
    "hopeful",
    "playful",
    "triumphant",
    "major",
    "fun",
    "optimistic",
    "summer",
)
MINOR_WORDS = (
    "dark",
    "sad",
    "melancholy",
    "melancholic",
    "moody",
    "sombre",
    "somber",
    "gloomy",
    "minor",
    "tense",
    "mysterious",
    "eerie",
    "haunting",
    "spooky",
    "scary",
    "horror",
    "lonely",
    "nostalgic",
    "emotional",
)
SLOW_WORDS = (
    "slow",
    "slowly",
    "lazy",
    "calm",
    "relaxed",
    "relaxing",
    "gentle",
    "sleepy",
    "mellow",
    "downtempo",
    "chill",
    "peaceful",
)
FAST_WORDS = (
    "fast",
    "quick",
    "energetic",
    "upbeat",
    "driving",
    "intense",
    "frantic",
    "hyper",
    "aggressive",
    "uptempo",
    "racing",
)
SOFT_WORDS = ("gentle", "soft", "light", "quiet", "distant", "faint", "calm", "subtle", "peaceful", "soothing")
LOUD_WORDS = (
    "heavy",
    "loud",
    "strong",
    "pouring",
    "raging",
    "intense",
    "torrential",
    "violent",
    "storm",
    "stormy",
    "powerful",
    "huge",
    "massive",
    "crashing",
)


@dataclass(frozen=True)
class Brief:
    """What to play. ``instruments`` empty means no music at all (scene-only ambience)."""

    bpm: float
    root: int  # pitch class of the tonic, 0 = C
    mode: str
    genre: str
    instruments: frozenset[str]
    scenes: tuple[str, ...] = ()
    intensity: float = 0.75  # scenes: 0.5 gentle .. 1 heavy
    energy: float = 0.7  # music dynamics: softer for calm prompts, harder for energetic ones
    implicit: bool = False  # no genre named: the named instruments play on their own
    muted: frozenset[str] = frozenset()  # "no hats": drum parts to leave out
    named: frozenset[str] = frozenset()  # instruments the prompt asked for (a take may add others only if none)
    notes: dict[str, str] = field(default_factory=dict, compare=False)  # what was read, for metadata

    @property
    def key_name(self) -> str:
        return f"{NOTE_NAMES[self.root]} {self.mode}"

    @property
    def musical(self) -> bool:
        return bool(self.instruments)

    def describe(self) -> dict[str, object]:
        return {
            "bpm": round(self.bpm, 2),
            "key": self.key_name,
            "genre": self.genre if self.musical else None,
            "instruments": sorted(self.instruments),
            "scenes": list(self.scenes),
        }


def _phrase_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = sorted(words, key=len, reverse=True)
    return re.compile(r"(?<![\w])(" + "|".join(re.escape(w) for w in alternatives) + r")(?![\w])")


def _normalise(text: str) -> str:
    text = text.lower().replace("’", "'").replace("\u266f", "#").replace("\u266d", "b")
    text = re.sub(r"[_/]+", " ", text)
    text = re.sub(r"\s+", " ", text)
    return f" {text.strip()} "


def _blank(text: str, span: tuple[int, int]) -> str:
    """Remove a consumed phrase so its words are not read twice ("drum and bass" is not drums + bass)."""
    a, b = span
    return text[:a] + " " * (b - a) + text[b:]


_TEMPO = re.compile(r"(\d{2,3}(?:\.\d+)?)\s*-?\s*(?:bpm|beats per minute|b\.p\.m\.?)(?![\w])")
_TEMPO_BEFORE = re.compile(r"(?:bpm|tempo)\s*(?:of|=|:)?\s*(\d{2,3}(?:\.\d+)?)(?![\w.])")
_ACC = r"(#|b(?![a-z])|-?sharp|-?flat| sharp| flat)?"
_MODE_WORD = r"(major|minor|maj|min|dorian|phrygian|lydian|mixolydian)"
# "A minor", "C# major", "Bb dorian"
_KEY_WITH_MODE = re.compile(r"(?<![\w#])([a-g])" + _ACC + r"\s*" + _MODE_WORD + r"(?![\w#])")
# "in Bb", "key of E", "in Am" (only when followed by punctuation, the end, or a linking word, never "in a dark mood")
_KEY_IN = re.compile(
    r"(?:(?<![\w])in|key of|key)\s+([a-g])" + _ACC + r"(m(?![\w])|\s*" + _MODE_WORD + r"(?![\w]))?"
    r"(?=\s*(?:[,.;:!?)]|$|key\b|with\b|and\b|at\b|for\b|please\b))"
)
# "Bb", "F#" on their own: a letter with an accidental sign
_KEY_BARE = re.compile(r"(?<![\w#])([a-g])(#|b)(?![\w#])")


def _pitch(letter: str, accidental: str | None) -> int:
    shift = _ACCIDENTAL.get((accidental or "").strip(" -"), 0)
    return (_LETTER[letter] + shift) % 12


def _mode(word: str | None) -> str | None:
    if word is None:
        return None
    if word in ("major", "maj"):
        return "major"
    if word in ("minor", "min", "m"):
        return "minor"
    return word


def _has(text: str, words: tuple[str, ...]) -> bool:
    """Whether one of ``words`` stands in ``text`` as whole words (what ``_phrase_pattern`` finds), without
    compiling a regular expression per word list: compiling them was most of a fresh process's first parse."""
    for word in words:
        at = text.find(word)
        while at >= 0:
            before, after = text[at - 1 : at], text[at + len(word) : at + len(word) + 1]
            if not _is_word_char(before) and not _is_word_char(after):
                return True
            at = text.find(word, at + 1)
    return False


def _is_word_char(char: str) -> bool:
    """``\\w`` of a one-character string (False for the empty string at either end)."""
    return char.isalnum() or char == "_"


def parse_prompt(prompt: str) -> Brief:
    """Read tempo, key, mode, genre, instruments and scenes from ``prompt``; everything unknown is ignored."""
    text = _normalise(prompt)
    notes: dict[str, str] = {}

    # Tempo first: "808" is an instrument, but "128 bpm" is not.
    bpm: float | None = None
    for pattern in (_TEMPO, _TEMPO_BEFORE):
        m = pattern.search(text)
        if m:
            bpm = min(max(float(m.group(1)), 40.0), 220.0)
            text = _blank(text, m.span())
            notes["bpm"] = m.group(0).strip()
            break

    # Key and mode.
    root: int | None = None
    mode: str | None = None
    for pattern in (_KEY_WITH_MODE, _KEY_IN, _KEY_BARE):
        m = pattern.search(text)
        if m:
            root = _pitch(m.group(1), m.group(2))
            mode = _mode(m.group(3).strip()) if pattern is not _KEY_BARE and m.group(3) else None
            notes["key"] = m.group(0).strip()
            text = _blank(text, m.span())
            break

    # Genre: strong names first, then mood-like words.
    genre: str | None = None
    strong: list[tuple[int, str, tuple[int, int]]] = []
    weak: list[tuple[int, str, tuple[int, int]]] = []
    for order, g in enumerate(GENRES.values()):
        for m in _phrase_pattern(g.aliases).finditer(text):
            (weak if m.group(1) in WEAK_ALIASES else strong).append((order, g.name, m.span()))
    for found in (strong, weak):
        if found:
            genre = min(found)[1]
            for _, _, span in found:
                if found is strong:
                    text = _blank(text, span)
            break

    # "no drums", "without bass": removed from the band later.
    excluded: set[str] = set()
    for m in re.finditer(r"(?<![\w])(?:no|without|minus|except)\s+(?:any\s+|the\s+)?([a-z\-]+(?:\s+[a-z\-]+)?)", text):
        for name, words in INSTRUMENT_WORDS.items():
            if _has(f" {m.group(1)} ", words):
                excluded.add(name)
        text = _blank(text, m.span())

    named: set[str] = set()
    for name, words in INSTRUMENT_WORDS.items():
        if _has(text, words):
            named.add(name)
    scenes = tuple(name for name, words in SCENE_WORDS.items() if _has(text, words))

    if mode is None:
        if _has(text, MINOR_WORDS):
            mode = "minor"
        elif _has(text, MAJOR_WORDS):
            mode = "major"

    music_named = genre is not None or bool(named)
    mood_named = _has(text, MAJOR_WORDS + MINOR_WORDS + FAST_WORDS) or bpm is not None or root is not None
    only_scene = bool(scenes) and not music_named and not mood_named and set(scenes) != {"vinyl"}
    if genre is None and "vinyl" in scenes and not named:
        genre = "lofi"  # "dusty vinyl" alone: a lofi beat under the crackle
    implicit = genre is None and bool(named)  # "sad piano": play what was named, not a whole pop band
    genre = genre or DEFAULT_GENRE
    g = GENRES[genre]

    instruments: set[str] = set()
    if not only_scene:
        if implicit:
            instruments = set(named)
            if named & {"drums", "kick", "snare", "hats"} and named & set(TONAL):
                instruments.add("bass")
        else:
            instruments = set(g.instruments) - {"vinyl"}
            tonal_named = named & set(TONAL)
            if tonal_named:  # "lofi with piano": the piano replaces lofi's usual keys
                instruments = {i for i in instruments if i not in TONAL} | tonal_named
            instruments |= named
        instruments -= excluded
        if not instruments and not excluded:
            instruments = set(g.instruments) - {"vinyl"}
        if "vinyl" in g.instruments and "vinyl" not in scenes and not implicit:
            scenes = (*scenes, "vinyl")

    # Tempo: explicit, else the genre's, nudged by slow/fast words.
    lo, mid, hi = g.bpm
    if bpm is None:
        if _has(text, ("very fast", "super fast", "extremely fast")):
            bpm = hi * 1.15
        elif _has(text, ("very slow", "super slow", "extremely slow")):
            bpm = lo * 0.85
        elif _has(text, FAST_WORDS):
            bpm = hi
        elif _has(text, SLOW_WORDS):
            bpm = lo
        else:
            bpm = mid

    # Key: explicit, else a stable choice from the prompt text (so it does not change with the seed).
    digest = zlib.crc32(prompt.strip().lower().encode())
    if root is None:
        root = (0, 2, 4, 5, 7, 9, 10, 3)[digest % 8]
        if mode is None and g.mode == "minor":
            root = (9, 2, 4, 0, 7, 5, 11, 6)[digest % 8]  # A, D, E minor... the usual minor keys
    if mode is None:
        mode = g.mode

    intensity = 1.0 if _has(text, LOUD_WORDS) else 0.5 if _has(text, SOFT_WORDS) else 0.75
    energy = 0.95 if _has(text, FAST_WORDS + LOUD_WORDS) else 0.5 if _has(text, SOFT_WORDS + SLOW_WORDS) else 0.75
    return Brief(
        bpm=float(bpm),
        root=root,
        mode=mode,
        genre=genre,
        instruments=frozenset(instruments),
        scenes=scenes,
        intensity=intensity,
        energy=energy,
        implicit=implicit,
        muted=frozenset(excluded),
        named=frozenset(named),
        notes=notes,
    )
