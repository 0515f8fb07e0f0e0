"""``synth``: ttag's built-in procedural model. Needs no weights, no torch — only numpy — so it works offline."""

from runners.registry import ModelSpec, ParamSpec

UNDERSTANDS = (
    "tempo ('128 bpm', 'tempo 90', 'fast', 'slow'); key and mode ('in A minor', 'C# major', 'Bb', 'in Am', "
    "'D dorian'; 'happy', 'bright' = major; 'dark', 'sad' = minor); genres (lofi, hip hop, trap, techno, house, "
    "trance, drum and bass, dubstep, rock, jazz, funk, pop, synthwave, reggae, chiptune, cinematic, ambient, "
    "classical); instruments (drums, kick, snare, hats, bass, 808, piano, rhodes, organ, guitar, pad, strings, brass, "
    "bells, pluck, arp, lead; 'no drums' leaves them out); scenes (rain, thunder, wind, ocean, fire, birds, city, "
    "stream, crickets, vinyl; 'gentle', 'heavy'). A scene alone gives ambience without music. Other words are ignored."
)

MODELS = (
    ModelSpec(
        id="synth",
        runner="runners.synth.runner:SynthRunner",
        kind="music and sound",
        description=(
            "Built-in procedural synthesizer: drums, bass, chords, pads, leads and ambient scenes from a prompt."
        ),
        sample_rate=44100,
        channels=2,
        min_duration=0.5,
        max_duration=600.0,
        default_duration=10.0,
        params=(
            ParamSpec(
                "temperature",
                "float",
                1.0,
                0.0,
                2.0,
                help="How adventurous the patterns and melodies are (0 = plain and repetitive, 2 = busy).",
            ),
        ),
        licence="MIT (procedural, no weights)",
        requires=("numpy",),
        understands=UNDERSTANDS,
    ),
)
