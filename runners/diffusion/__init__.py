"""``diffusion``: diffusers pipelines — Riffusion (spectrogram images), Stable Audio Open and AudioLDM 2.

Only specs live here: importing this package must stay cheap (the CLI reads it to list models), so torch, diffusers
and transformers are imported by the runner modules (``riffusion``, ``stable_audio``, ``audioldm2``) inside the
worker process only.
"""

from __future__ import annotations

from runners.registry import ModelKind, ModelSpec, ParamSpec

REQUIRES = ("torch", "transformers", "diffusers")
# What a diffusers checkpoint is made of, for `ttag models pull`: the pipeline index, each component's config and
# safetensors weights, tokenizer files. Never the single-file .ckpt / traced / original-format copies some repos add.
HUB_FILES = ("model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model")


def _negative(default: str = "") -> ParamSpec:
    return ParamSpec("negative_prompt", "str", default, help="What the audio should not sound like.")


# -- Riffusion -------------------------------------------------------------------------------------------------------
RIFFUSION_PARAMS = (
    ParamSpec(
        "guidance",
        "float",
        7.0,
        1.0,
        20.0,
        help="Classifier-free guidance: how closely to follow the prompt (7 is Riffusion's default).",
    ),
    ParamSpec("steps", "int", 50, 1, 500, help="Denoising steps per 5-second clip: more is slower and cleaner."),
    _negative(),
    ParamSpec(
        "audio_prompt",
        "audio",
        None,
        help="Start from this audio (its spectrogram, looped to fill the clips) instead of noise: img2img.",
    ),
    ParamSpec(
        "strength",
        "float",
        0.75,
        0.05,
        1.0,
        help="With an audio prompt: how much of it to repaint (0.05 keeps it, 1 ignores it).",
    ),
    ParamSpec(
        "end_prompt",
        "str",
        None,
        help="A second prompt to riff towards: the take moves from the prompt to this one, clip by clip.",
    ),
    ParamSpec(
        "alpha",
        "float",
        0.0,
        0.0,
        1.0,
        help="Where the take starts between the prompt (0) and the end prompt and next seed (1).",
    ),
)

RIFFUSION = ModelSpec(
    id="riffusion-model-v1",
    runner="runners.diffusion.riffusion:RiffusionRunner",
    kind="music",
    description="Riffusion: Stable Diffusion painting spectrograms, 5-second clips riffed into pieces of any length.",
    sample_rate=44100,
    channels=1,
    min_duration=1.0,
    max_duration=600.0,
    default_duration=10.24,
    params=RIFFUSION_PARAMS,
    hub_repo="riffusion/riffusion-model-v1",
    size_bytes=int(4.3e9),  # unet + vae + text encoder in fp32 safetensors
    licence="CreativeML OpenRAIL-M",
    requires=REQUIRES,
    extra={
        "clip_columns": 512,  # image width: 512 columns of 10 ms = 5.12 s per clip, as Riffusion was trained
        "crossfade_s": 0.2,  # overlap of consecutive clips in a piece
        "griffin_lim_iters": 48,  # fast Griffin-Lim; why 48: runners/diffusion/spectrogram.py and BENCHMARKS.md
        "hub_files": HUB_FILES,
    },
)

# -- Stable Audio Open -----------------------------------------------------------------------------------------------
STABLE_AUDIO = ModelSpec(
    id="stable-audio-open-1.0",
    runner="runners.diffusion.stable_audio:StableAudioRunner",
    kind="music and sound",
    description="Stable Audio Open 1.0: stereo 44.1 kHz music and sound effects up to 47 s, with negative prompts.",
    sample_rate=44100,
    channels=2,
    min_duration=1.0,
    max_duration=47.0,
    default_duration=10.0,
    params=(
        ParamSpec("guidance", "float", 7.0, 1.0, 20.0, help="Classifier-free guidance (7 is the pipeline's default)."),
        ParamSpec("steps", "int", 100, 1, 1000, help="Denoising steps (100 by default; 200 is the model card's)."),
        _negative(),
    ),
    hub_repo="stabilityai/stable-audio-open-1.0",
    size_bytes=int(5.3e9),  # the diffusers components; the repo's single-file model.safetensors is not needed
    licence="Stability AI Community License",
    requires=(*REQUIRES, "torchsde"),
    extra={"hub_files": HUB_FILES},
)


# -- AudioLDM 2 ------------------------------------------------------------------------------------------------------
def _audioldm2(name: str, size_gb: float, description: str, kind: ModelKind) -> ModelSpec:
    return ModelSpec(
        id=name,
        runner="runners.diffusion.audioldm2:AudioLDM2Runner",
        kind=kind,
        description=description,
        sample_rate=16000,
        channels=1,
        min_duration=1.0,
        max_duration=30.0,
        default_duration=10.0,
        params=(
            ParamSpec(
                "guidance", "float", 3.5, 1.0, 20.0, help="Classifier-free guidance (3.5 is AudioLDM 2's default)."
            ),
            ParamSpec("steps", "int", 200, 1, 1000, help="Denoising steps (200 is AudioLDM 2's default)."),
            _negative("Low quality."),
        ),
        hub_repo=f"cvssp/{name}",
        size_bytes=int(size_gb * 1e9),
        licence="CC-BY-NC-SA 4.0",
        requires=REQUIRES,
        extra={"hub_files": HUB_FILES},
    )


AUDIOLDM2 = (
    _audioldm2("audioldm2", 4.4, "AudioLDM 2: 16 kHz sound effects and music from text.", "music and sound"),
    _audioldm2("audioldm2-music", 4.4, "AudioLDM 2 trained on music: 16 kHz music from text.", "music"),
    _audioldm2(
        "audioldm2-large", 6.4, "AudioLDM 2 with the large UNet: better sound effects, slower.", "music and sound"
    ),
)

MODELS = (RIFFUSION, STABLE_AUDIO, *AUDIOLDM2)
