"""``musicgen``: Meta's MusicGen through Hugging Face transformers (text → music, 32 kHz, mono or stereo).

Only specs live here: importing this module must stay cheap (the CLI reads it to list models), so torch and
transformers are imported by ``runners.musicgen.runner`` inside the worker process only.
"""

from __future__ import annotations

from runners.registry import ModelSpec, ParamSpec

RUNNER = "runners.musicgen.runner:MusicGenRunner"
DECODERS = ("fast", "transformers")  # the token loop: ours (fast_decode.py) or transformers' generate()
LICENCE = "CC-BY-NC 4.0"
# MusicGen's own window is 30 s; longer clips continue from the last CONTEXT seconds of what was generated.
WINDOW_S = 30.0
CONTEXT_S = 12.0

# MusicGen's sampling defaults (audiocraft's and the hub generation configs').
COMMON_PARAMS = (
    ParamSpec(
        "temperature",
        "float",
        1.0,
        0.0,
        4.0,
        help="Sampling temperature: lower is safer and more repetitive; 0 always picks the likeliest token.",
    ),
    ParamSpec("top_k", "int", 250, 0, 2048, help="Sample only from the k likeliest tokens (0 = no limit)."),
    ParamSpec(
        "top_p",
        "float",
        0.0,
        0.0,
        1.0,
        help="Nucleus sampling: keep the likeliest tokens up to this total probability (0 = off).",
    ),
    ParamSpec(
        "guidance",
        "float",
        3.0,
        1.0,
        20.0,
        help="Classifier-free guidance: how closely to follow the prompt (1 = off, 3 is MusicGen's default).",
    ),
    ParamSpec(
        "audio_prompt",
        "audio",
        None,
        help="An audio file to continue; the result starts with it and lasts 'duration' seconds in all.",
    ),
)
MELODY_PARAM = ParamSpec("melody", "audio", None, help="An audio file whose melody (chromagram) the music follows.")


def _spec(name: str, size_gb: float, description: str, *, stereo: bool = False, melody: bool = False) -> ModelSpec:
    return ModelSpec(
        id=name,
        runner=RUNNER,
        kind="music",
        description=description,
        sample_rate=32000,
        channels=2 if stereo else 1,
        min_duration=1.0,
        max_duration=300.0,
        default_duration=10.0,
        params=COMMON_PARAMS + ((MELODY_PARAM,) if melody else ()),
        hub_repo=f"facebook/{name}",
        size_bytes=int(size_gb * 1e9),
        licence=LICENCE,
        requires=("torch", "transformers"),
        extra={"max_window_s": WINDOW_S, "context_s": CONTEXT_S},
    )


# Sizes are the approximate download of the transformers weights (fp32 or fp16, as each repo ships them).
MODELS = (
    _spec("musicgen-small", 2.4, "MusicGen 300M: fast, good for sketches."),
    _spec("musicgen-medium", 8.0, "MusicGen 1.5B: better structure and timbre."),
    _spec("musicgen-large", 13.0, "MusicGen 3.3B: the best mono text-to-music model of the family; slow."),
    _spec("musicgen-melody", 6.5, "MusicGen 1.5B that can follow a melody from an audio file.", melody=True),
    _spec("musicgen-melody-large", 10.6, "MusicGen 3.3B that can follow a melody from an audio file.", melody=True),
    _spec("musicgen-stereo-small", 1.2, "Stereo MusicGen 300M.", stereo=True),
    _spec("musicgen-stereo-medium", 4.1, "Stereo MusicGen 1.5B.", stereo=True),
    _spec("musicgen-stereo-large", 6.9, "Stereo MusicGen 3.3B; slow.", stereo=True),
    _spec("musicgen-stereo-melody", 4.2, "Stereo MusicGen 1.5B that can follow a melody.", stereo=True, melody=True),
    _spec(
        "musicgen-stereo-melody-large", 10.6, "Stereo MusicGen 3.3B that can follow a melody.", stereo=True, melody=True
    ),
)
