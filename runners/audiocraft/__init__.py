"""``audiocraft``: Meta's AudioCraft 1.3.0 — AudioGen, MAGNeT and MusicGen (optionally decoded by MultiBand Diffusion).

audiocraft pins an old torch, so this runner lives in its own environment that ttag builds
(``ttag runners setup audiocraft``; see ``ttag_tui.runner_envs``) and the bridge runs its worker with that
environment's python. Only specs live here: this module imports neither torch nor audiocraft.

``extra`` of each spec tells the runner what to build: ``family`` (musicgen, audiogen, magnet), ``name`` (what
``get_pretrained`` takes; ``debug`` builds audiocraft's tiny random test models), ``window_s`` (the model's own
length), ``context_s`` (how much of the end of a window prompts the next one for longer clips), ``text_encoder`` (the
T5 checkpoint the conditioner loads) and ``decoder`` (``mbd``: MultiBand Diffusion instead of EnCodec's decoder).
"""

from __future__ import annotations

from runners.registry import ModelKind, ModelSpec, ParamSpec

RUNNER = "runners.audiocraft.runner:AudioCraftRunner"
SETUP = "ttag runners setup audiocraft"
MBD_FILE = "mbd_musicgen_32khz.th"
T5_FILES = ("config.json", "spiece.model", "model.safetensors")  # the text encoder audiocraft loads by name
MBD_REPO = "facebook/multiband-diffusion"
LICENCE = "CC-BY-NC 4.0 (weights), MIT (code)"


def _sampling(temperature: float, top_k: int, top_p: float) -> tuple[ParamSpec, ...]:
    return (
        ParamSpec(
            "temperature",
            "float",
            temperature,
            0.0,
            10.0,
            help="Sampling temperature: lower is safer and more repetitive.",
        ),
        ParamSpec("top_k", "int", top_k, 0, 2048, help="Sample only from the k likeliest tokens (0 = no limit)."),
        ParamSpec(
            "top_p",
            "float",
            top_p,
            0.0,
            1.0,
            help="Nucleus sampling: keep the likeliest tokens up to this total probability (0 = use top_k).",
        ),
    )


AUDIO_PROMPT = ParamSpec(
    "audio_prompt",
    "audio",
    None,
    help="An audio file to continue; the result starts with it and lasts 'duration' seconds.",
)
MELODY = ParamSpec("melody", "audio", None, help="An audio file whose melody (chromagram) the music follows.")
LM_PARAMS = (
    *_sampling(1.0, 250, 0.0),
    ParamSpec(
        "guidance",
        "float",
        3.0,
        1.0,
        20.0,
        help="Classifier-free guidance: how closely to follow the prompt (1 = off).",
    ),
    AUDIO_PROMPT,
)


def _magnet_params(*, audio: bool) -> tuple[ParamSpec, ...]:
    # The defaults of audiocraft's MAGNeT demo: music 3.0 / 0.9 / cfg 10, sound effects 3.5 / 0.8 / cfg 20.
    return (
        *_sampling(3.5 if audio else 3.0, 0, 0.8 if audio else 0.9),
        ParamSpec(
            "guidance",
            "float",
            20.0 if audio else 10.0,
            1.0,
            30.0,
            help="Classifier-free guidance at the first decoding step (it anneals to 1).",
        ),
        ParamSpec(
            "steps", "int", 20, 1, 100, help="Decoding steps of the first codebook (the other three take 10 each)."
        ),
        AUDIO_PROMPT,
    )


def _hub_files(hub_repo: str | None, text_encoder: str, decoder: str) -> dict[str, tuple[str, ...]]:
    """What ``ttag models pull`` fetches and the runner checks: repo → files (globs allowed)."""
    if hub_repo is None:
        return {}
    files = {hub_repo: ("state_dict.bin", "compression_state_dict.bin"), text_encoder: T5_FILES}
    if decoder == "mbd":
        files[MBD_REPO] = (MBD_FILE,)
    return files


def audiocraft_spec(
    model_id: str,
    name: str,
    family: str,
    *,
    kind: ModelKind,
    description: str,
    sample_rate: int,
    window_s: float,
    size_gb: float,
    params: tuple[ParamSpec, ...],
    channels: int = 1,
    context_s: float | None = None,
    text_encoder: str = "t5-base",
    decoder: str = "encodec",
    max_duration: float = 300.0,
) -> ModelSpec:
    """One audiocraft model; tests use it too, for the debug models (``name='debug'``)."""
    hub_repo = name if "/" in name else None
    return ModelSpec(
        id=model_id,
        runner=RUNNER,
        kind=kind,
        description=description,
        sample_rate=sample_rate,
        channels=channels,
        min_duration=0.5,
        max_duration=max_duration,
        default_duration=min(10.0, window_s),
        params=params,
        hub_repo=hub_repo,
        size_bytes=int(size_gb * 1e9),
        licence=LICENCE,
        requires=("audiocraft",),
        extra={
            "hub_files": _hub_files(hub_repo, text_encoder, decoder),
            "family": family,
            "name": name,
            "window_s": window_s,
            "context_s": context_s if context_s is not None else round(window_s * 0.4, 2),
            "text_encoder": text_encoder,
            "decoder": decoder,
            "setup": SETUP,
        },
    )


def _musicgen(
    suffix: str, size_gb: float, description: str, *, stereo: bool = False, melody: bool = False, mbd: bool = False
) -> ModelSpec:
    return audiocraft_spec(
        f"audiocraft-musicgen-{suffix}" + ("-mbd" if mbd else ""),
        f"facebook/musicgen-{suffix}",
        "musicgen",
        kind="music",
        description=description + (" Decoded with MultiBand Diffusion (cleaner, slower)." if mbd else ""),
        sample_rate=32000,
        channels=2 if stereo else 1,
        window_s=30.0,
        context_s=12.0,  # audiocraft's own extend_stride of 18 s
        size_gb=size_gb + (1.6 if mbd else 0.0),
        params=LM_PARAMS + ((MELODY,) if melody else ()),
        decoder="mbd" if mbd else "encodec",
    )


def _magnet(name: str, size_gb: float, description: str, *, audio: bool, window_s: float) -> ModelSpec:
    return audiocraft_spec(
        name,
        f"facebook/{name}",
        "magnet",
        kind="sound effects" if audio else "music",
        description=description,
        sample_rate=16000 if audio else 32000,
        window_s=window_s,
        size_gb=size_gb,
        params=_magnet_params(audio=audio),
        text_encoder="t5-large" if audio else "t5-base",
    )


# Sizes: audiocraft's state_dict.bin + compression_state_dict.bin, approximately (T5 comes on top).
MODELS = (
    audiocraft_spec(
        "audiogen-medium",
        "facebook/audiogen-medium",
        "audiogen",
        kind="sound effects",
        description="AudioGen 1.5B: sound effects and ambiences from text, 16 kHz.",
        sample_rate=16000,
        window_s=10.0,
        context_s=5.0,
        size_gb=3.7,
        params=LM_PARAMS,
        text_encoder="t5-large",
    ),
    _magnet(
        "magnet-small-10secs",
        1.0,
        "MAGNeT 300M, non-autoregressive music in 10 s windows: fast.",
        audio=False,
        window_s=10.0,
    ),
    _magnet("magnet-medium-10secs", 3.3, "MAGNeT 1.5B music in 10 s windows.", audio=False, window_s=10.0),
    _magnet("magnet-small-30secs", 1.0, "MAGNeT 300M music in 30 s windows.", audio=False, window_s=30.0),
    _magnet("magnet-medium-30secs", 3.3, "MAGNeT 1.5B music in 30 s windows.", audio=False, window_s=30.0),
    _magnet("audio-magnet-small", 1.0, "Audio-MAGNeT 300M: fast sound effects, 16 kHz.", audio=True, window_s=10.0),
    _magnet("audio-magnet-medium", 3.3, "Audio-MAGNeT 1.5B sound effects, 16 kHz.", audio=True, window_s=10.0),
    _musicgen("small", 1.1, "MusicGen 300M through audiocraft."),
    _musicgen("medium", 3.9, "MusicGen 1.5B through audiocraft."),
    _musicgen("large", 6.8, "MusicGen 3.3B through audiocraft; slow."),
    _musicgen("melody", 4.0, "MusicGen 1.5B that can follow a melody, through audiocraft.", melody=True),
    _musicgen("melody-large", 7.0, "MusicGen 3.3B that can follow a melody, through audiocraft.", melody=True),
    _musicgen("stereo-small", 1.2, "Stereo MusicGen 300M through audiocraft.", stereo=True),
    _musicgen("stereo-medium", 4.0, "Stereo MusicGen 1.5B through audiocraft.", stereo=True),
    _musicgen("stereo-large", 6.9, "Stereo MusicGen 3.3B through audiocraft; slow.", stereo=True),
    _musicgen("stereo-melody", 4.1, "Stereo MusicGen 1.5B that can follow a melody.", stereo=True, melody=True),
    _musicgen("stereo-melody-large", 7.1, "Stereo MusicGen 3.3B that can follow a melody.", stereo=True, melody=True),
    _musicgen("small", 1.1, "MusicGen 300M through audiocraft.", mbd=True),
    _musicgen("medium", 3.9, "MusicGen 1.5B through audiocraft.", mbd=True),
    _musicgen("large", 6.8, "MusicGen 3.3B through audiocraft.", mbd=True),
    _musicgen("melody", 4.0, "MusicGen 1.5B that can follow a melody.", melody=True, mbd=True),
    _musicgen("stereo-small", 1.2, "Stereo MusicGen 300M.", stereo=True, mbd=True),
    _musicgen("stereo-medium", 4.0, "Stereo MusicGen 1.5B.", stereo=True, mbd=True),
)
