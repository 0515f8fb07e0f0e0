"""Genre table: the defaults a genre brings (tempo range, groove, kit, bass and chord styles, instruments).

Kept as plain data so the parser (which needs names and tempos) and the arranger (which needs grooves) share one
source of truth, and adding a genre is one entry.
"""

from __future__ import annotations

from dataclasses import dataclass

# Drum grids are 16 steps (sixteenth notes) per bar. Velocity letters: X=1.0, x=0.75, o=0.5, g=0.25 (ghost), .=rest.
VELOCITY = {"X": 1.0, "x": 0.75, "o": 0.5, "g": 0.25}


@dataclass(frozen=True)
class Genre:
    name: str
    aliases: tuple[str, ...]
    bpm: tuple[float, float, float]  # slowest, default, fastest
    mode: str  # default mode when the prompt gives none
    swing: float  # fraction of a swing unit the off-beats are delayed by (0.33 ~ triplet feel)
    swing_unit: int  # 1: sixteenths swing, 2: eighths swing
    kit: str  # drum sound family (see instruments.DRUM_KITS)
    drums: dict[str, str]  # drum voice -> 16-step grid
    bass: str  # bass line style (see patterns.bass_line)
    bass_sound: str
    comp: str  # rhythm the chord instrument plays (see patterns.COMP_RHYTHMS)
    instruments: tuple[str, ...]  # default band
    progressions: str  # progression family (see patterns.PROGRESSIONS)
    bars_per_chord: int = 1
    sevenths: bool = False
    duck: float = 0.0  # side-chain pumping depth on pads/bass (four-on-the-floor styles)
    room: float = 0.5  # reverb size 0..1
    lowpass: float | None = None  # master low-pass in Hz (lofi's dull, dusty top end)
    lead_wave: str = "saw"
    guitar: str = "clean"


FOUR = "X...X...X...X..."
BACKBEAT = "....X.......X..."
EIGHTHS = "x.o.x.o.x.o.x.o."
SIXTEENTHS = "xgogxgogxgogxgog"
OFFBEAT = "..x...x...x...x."

GENRES: dict[str, Genre] = {
    g.name: g
    for g in (
        Genre(
            "lofi", ("lofi", "lo fi", "lo-fi", "chillhop", "chill hop", "chill"),
            (70, 82, 92), "minor", 0.28, 1, "lofi",
            {"kick": "X.........X.x...", "snare": BACKBEAT, "hat": "o.g.o.g.o.g.o.go"},
            "root", "sub", "lofi", ("drums", "bass", "epiano", "vinyl"), "lofi", sevenths=True, room=0.45,
            lowpass=5500.0,
        ),
        Genre(
            "hiphop", ("hip hop", "hip-hop", "hiphop", "boom bap", "rap", "trip hop"),
            (80, 90, 100), "minor", 0.18, 1, "acoustic",
            {"kick": "X......X..X.....", "snare": BACKBEAT, "hat": EIGHTHS},
            "follow", "sub", "half", ("drums", "bass", "piano"), "minor_loop", room=0.35,
        ),
        Genre(
            "trap", ("trap", "drill"),
            (130, 140, 150), "minor", 0.0, 1, "808",
            {"kick": "X.....X...X.....", "snare": "........X.......", "hat": "x.x.x.x.x.x.x.x."},
            "follow808", "808", "sustain", ("drums", "bass", "bells", "pad"), "minor", room=0.4,
        ),
        Genre(
            "techno", ("techno", "minimal", "industrial", "electronic"),
            (122, 128, 136), "minor", 0.0, 1, "909",
            {"kick": FOUR, "clap": "....x.......x...", "hat": "..o...o...o...o.", "openhat": "..x...x...x...x."},
            "offbeat", "synth", "stab", ("drums", "bass", "pluck", "pad"), "drone", bars_per_chord=2, duck=0.5,
            room=0.55,
        ),
        Genre(
            "house", ("house", "deep house", "edm", "dance", "disco", "garage"),
            (118, 124, 128), "minor", 0.08, 1, "909",
            {"kick": FOUR, "clap": BACKBEAT, "hat": "g.g.g.g.g.g.g.g.", "openhat": OFFBEAT},
            "offbeat", "synth", "stab", ("drums", "bass", "piano", "pad"), "minor_loop", sevenths=True, duck=0.45,
            room=0.45,
        ),
        Genre(
            "trance", ("trance", "psytrance", "uplifting"),
            (132, 138, 142), "minor", 0.0, 1, "909",
            {"kick": FOUR, "clap": BACKBEAT, "hat": SIXTEENTHS, "openhat": OFFBEAT},
            "rolling", "synth", "sustain", ("drums", "bass", "pad", "pluck", "lead"), "minor", duck=0.55, room=0.7,
        ),
        Genre(
            "dnb", ("drum and bass", "drum n bass", "drum & bass", "drum 'n' bass", "drumnbass", "dnb", "jungle",
                    "liquid"),
            (165, 174, 178), "minor", 0.0, 1, "acoustic",
            {"kick": "X.........X.....", "snare": "....X..g.g..X..g", "hat": EIGHTHS},
            "long", "reese", "sustain", ("drums", "bass", "pad", "bells"), "minor", bars_per_chord=2, room=0.55,
        ),
        Genre(
            "dubstep", ("dubstep", "brostep", "riddim"),
            (138, 140, 145), "minor", 0.0, 1, "808",
            {"kick": "X.........x.....", "snare": "........X.......", "hat": "x.x.x.x.x.x.x.x."},
            "wobble", "wobble", "sustain", ("drums", "bass", "pad", "lead"), "minor", bars_per_chord=2, room=0.45,
        ),
        Genre(
            "rock", ("rock", "punk", "metal", "grunge", "indie", "band"),
            (100, 120, 150), "major", 0.0, 1, "acoustic",
            {"kick": "X.......X.X.....", "snare": BACKBEAT, "hat": "x.x.x.x.x.x.x.x."},
            "eighths", "electric", "power", ("drums", "bass", "guitar"), "rock", room=0.35, guitar="distorted",
        ),
        Genre(
            "jazz", ("jazz", "swing", "bebop", "bossa", "lounge", "smooth jazz"),
            (90, 120, 160), "major", 0.33, 2, "jazz",
            {"ride": "X...x.x.X...x.x.", "kick": "g...g...g...g...", "hat": "....x.......x..."},
            "walking", "upright", "charleston", ("drums", "bass", "piano"), "jazz", sevenths=True, room=0.4,
        ),
        Genre(
            "cinematic", ("cinematic", "orchestral", "orchestra", "epic", "film score", "soundtrack", "trailer",
                          "score"),
            (70, 90, 110), "minor", 0.0, 1, "epic",
            {"kick": "X.......X.......", "tom": "....x.x.....x.xx", "snare": "............x..."},
            "long", "sub", "sustain", ("drums", "bass", "strings", "brass", "pad"), "cinematic", room=0.85,
        ),
        Genre(
            "chiptune", ("chiptune", "chip tune", "8 bit", "8-bit", "8bit", "video game", "retro game", "arcade",
                         "nes", "gameboy"),
            (130, 150, 170), "major", 0.0, 1, "chip",
            {"kick": "X.......X.x.....", "snare": BACKBEAT, "hat": "x.x.x.x.x.x.x.x."},
            "octave", "triangle", "arp", ("drums", "bass", "lead", "pluck"), "major", room=0.15, lead_wave="square",
        ),
        Genre(
            "funk", ("funk", "funky", "groove", "soul", "r&b", "rnb"),
            (95, 105, 115), "dorian", 0.1, 1, "acoustic",
            {"kick": "X.....x...X..x..", "snare": "....X..g.g..X..g", "hat": SIXTEENTHS},
            "funk", "electric", "funk", ("drums", "bass", "guitar", "organ"), "funk", sevenths=True, room=0.3,
        ),
        Genre(
            "pop", ("pop", "ballad", "song"),
            (95, 110, 124), "major", 0.0, 1, "acoustic",
            {"kick": "X.......X.X.....", "snare": BACKBEAT, "hat": "x.x.x.x.x.x.x.x."},
            "follow", "synth", "half", ("drums", "bass", "piano", "pad", "lead"), "major", room=0.45,
        ),
        Genre(
            "synthwave", ("synthwave", "retrowave", "outrun", "80s", "vaporwave"),
            (85, 100, 118), "minor", 0.0, 1, "808",
            {"kick": FOUR, "snare": BACKBEAT, "hat": SIXTEENTHS},
            "octave", "synth", "pulse", ("drums", "bass", "pad", "lead", "pluck"), "minor", room=0.65,
        ),
        Genre(
            "reggae", ("reggae", "dub", "ska", "dancehall"),
            (70, 80, 90), "major", 0.12, 1, "acoustic",
            {"kick": "........X.......", "snare": "........x.......", "hat": "..x...x...x...x."},
            "follow", "sub", "skank", ("drums", "bass", "organ", "guitar"), "major", room=0.5,
        ),
        Genre(
            "ambient", ("ambient", "drone", "meditation", "meditative", "sleep", "calm", "relaxing", "peaceful",
                        "atmospheric", "new age", "spa"),
            (60, 70, 80), "major", 0.0, 1, "none", {}, "drone", "sub", "sustain", ("pad", "bells", "strings"),
            "ambient", bars_per_chord=2, room=0.95,
        ),
        Genre(
            "classical", ("classical", "piano sonata", "chamber", "baroque", "romantic"),
            (66, 80, 100), "major", 0.0, 1, "none", {}, "long", "cello", "broken", ("piano", "strings"), "major",
            room=0.7,
        ),
    )
}

# When the prompt names no genre but names a tonal instrument this is the band around it (no drums unless asked).
DEFAULT_GENRE = "pop"
