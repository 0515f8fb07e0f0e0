"""Tiny random-weight MusicGen checkpoints, built in code and saved in the hub's layout, for offline tests and benches.

The runner loads them with the same ``from_pretrained`` call it uses for ``facebook/musicgen-*``: a folder path, or a
repo id resolved from a fake Hugging Face cache (``models--org--name/snapshots/<rev>`` + ``refs/main``). Weights are
random, so the audio is noise — what matters is that every code path (delay pattern, EnCodec decode, melody chroma,
continuation) runs for real. Sizes follow /work/shared/notes/tiny-checkpoints.md: ~250 k parameters, 50 frames/s.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SAMPLE_RATE = 32000
FRAME_RATE = 50  # 32000 / (8*5*4*4)
CODEBOOK_SIZE = 128
FAKE_REVISION = "0123456789abcdef0123456789abcdef01234567"

# A Unigram vocabulary small enough to write out, big enough that prompts tokenize into more than <unk>.
_WORDS = (
    "lofi",
    "hip",
    "hop",
    "piano",
    "drums",
    "bass",
    "ambient",
    "rock",
    "jazz",
    "calm",
    "fast",
    "slow",
    "with",
    "and",
    "a",
    "beat",
    "synth",
    "guitar",
    "techno",
    "bpm",
    "melody",
    "song",
    "happy",
    "sad",
    "dark",
)


def _tokenizer():  # -> T5Tokenizer
    from transformers import T5Tokenizer

    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(f"▁{w}", -3.0) for w in _WORDS]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789,.-"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


# Architecture sizes: "tiny" for tests; "small", "medium" and "large" have facebook/musicgen-*'s decoder shapes (24
# layers 1024 wide, 48x1536, 48x2048) with a T5-base text encoder and EnCodec 32 kHz, with random weights, for
# benchmarks that need realistic compute.
SIZES = {
    "tiny": dict(
        t5=dict(d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4),
        codec=dict(
            codebook_size=CODEBOOK_SIZE, codebook_dim=16, hidden_size=16, num_filters=4, target_bandwidths=[1.4]
        ),
        decoder=dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4),
    ),
    "small": dict(
        t5=dict(d_model=768, d_ff=3072, d_kv=64, num_layers=12, num_heads=12),
        codec=dict(codebook_size=2048, codebook_dim=128, hidden_size=128, num_filters=64, target_bandwidths=[2.2]),
        decoder=dict(hidden_size=1024, ffn_dim=4096, num_hidden_layers=24, num_attention_heads=16),
    ),
}
SIZES["medium"] = {
    **SIZES["small"],
    "decoder": dict(hidden_size=1536, ffn_dim=6144, num_hidden_layers=48, num_attention_heads=24),
}
SIZES["large"] = {
    **SIZES["small"],
    "decoder": dict(hidden_size=2048, ffn_dim=8192, num_hidden_layers=48, num_attention_heads=32),
}


def _sub_configs(channels: int, size: str = "tiny") -> tuple:
    from transformers import EncodecConfig, T5Config

    shape = SIZES[size]
    codebook_size = shape["codec"]["codebook_size"]
    text = T5Config(vocab_size=70, **shape["t5"], decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    codec = EncodecConfig(
        sampling_rate=SAMPLE_RATE,
        audio_channels=1,
        upsampling_ratios=[8, 5, 4, 4],
        **shape["codec"],
        num_lstm_layers=2,
        normalize=False,
        chunk_length_s=None,
        overlap=None,
        use_causal_conv=False,
        use_conv_shortcut=False,
    )  # as facebook/encodec_32khz
    num_codebooks = 4 * channels  # stereo interleaves left/right codebooks
    decoder = dict(
        vocab_size=codebook_size,
        **shape["decoder"],
        num_codebooks=num_codebooks,
        audio_channels=channels,
        max_position_embeddings=2048,
        pad_token_id=codebook_size,
        bos_token_id=codebook_size,
        dropout=0.0,
    )
    return text, codec, decoder


def _make_meaningful(model) -> None:
    """Random weights at init scale make degenerate audio; undo the three ways that would let tests pass vacuously.

    EnCodec's codebooks start as zero buffers (real ones are learnt by k-means), so every code would decode to the
    same audio: random codebooks make the audio depend on the generated tokens, so comparisons mean something."""
    import torch

    for layer in model.audio_encoder.quantizer.layers:
        codebook = layer.codebook
        codebook.embed.copy_(torch.randn_like(codebook.embed))
        codebook.embed_avg.copy_(codebook.embed)
        codebook.cluster_size.fill_(1.0)
        codebook.inited.fill_(1.0)
    # Random conv biases alone would add a fixed pattern on top of the tokens' sound; drop them, and give the output
    # a musical level (peaks around 0.5) so that seam and continuity checks compare audible signal.
    for name, parameter in model.audio_encoder.decoder.named_parameters():
        if name.endswith("bias"):
            parameter.data.zero_()
    last = model.audio_encoder.decoder.layers[-1].conv.parametrizations.weight.original0
    last.data.mul_(12.0)
    # Init-scale heads give near-uniform token distributions that hardly depend on the conditioning; sharper ones make
    # the prompt, the melody and the audio prompt change what is sampled.
    for head in model.decoder.lm_heads:
        head.weight.data.mul_(10.0)


def _set_special_tokens(model) -> None:
    token = model.config.audio_encoder.codebook_size  # pad, bos and decoder start are all one past the codebook
    for config in (model.generation_config, model.config):
        config.pad_token_id = token
        config.decoder_start_token_id = token
        config.bos_token_id = token
    model.generation_config.do_sample = True
    model.generation_config.guidance_scale = 3.0
    model.generation_config.max_length = 1500


def musicgen_model(*, channels: int = 1, seed: int = 0, size: str = "tiny", device: str = "cpu"):
    """A random-weight ``MusicgenForConditionalGeneration`` in memory (see SIZES), its weights made on ``device``."""
    import torch
    from transformers import MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration

    torch.manual_seed(seed)
    text, codec, decoder = _sub_configs(channels, size)
    config = MusicgenConfig(text_encoder=text, audio_encoder=codec, decoder=MusicgenDecoderConfig(**decoder))
    with torch.device(device):
        model = MusicgenForConditionalGeneration(config).eval()
    _make_meaningful(model)
    _set_special_tokens(model)
    return model


def build_musicgen(folder: Path, *, channels: int = 1, seed: int = 0, size: str = "tiny") -> Path:
    """Save a random-weight ``MusicgenForConditionalGeneration`` (mono or stereo; see SIZES) + its processor."""
    from transformers import EncodecFeatureExtractor, MusicgenProcessor

    model = musicgen_model(channels=channels, seed=seed, size=size)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor = MusicgenProcessor(
        feature_extractor=EncodecFeatureExtractor(feature_size=channels, sampling_rate=SAMPLE_RATE),
        tokenizer=_tokenizer(),
    )
    processor.save_pretrained(folder)
    return folder


def build_musicgen_melody(folder: Path, *, seed: int = 0) -> Path:
    """Save a tiny ``MusicgenMelodyForConditionalGeneration`` + tokenizer + the melody feature extractor's config.

    The melody feature extractor needs torchaudio (not installable next to this torch), so its
    ``preprocessor_config.json`` is written by hand with the values of facebook/musicgen-melody; ttag computes the
    chroma itself from those values.
    """
    import torch
    from transformers import MusicgenMelodyConfig, MusicgenMelodyDecoderConfig, MusicgenMelodyForConditionalGeneration

    torch.manual_seed(seed)
    text, codec, decoder = _sub_configs(1)
    config = MusicgenMelodyConfig(
        text_encoder=text,
        audio_encoder=codec,
        decoder=MusicgenMelodyDecoderConfig(**decoder),
        num_chroma=12,
        chroma_length=235,
    )
    model = MusicgenMelodyForConditionalGeneration(config).eval()
    _make_meaningful(model)
    _set_special_tokens(model)
    with torch.no_grad():  # at init scale the chroma barely moves the logits: make the melody audibly matter
        model.audio_enc_to_dec_proj.weight.mul_(50.0)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "feature_extractor_type": "MusicgenMelodyFeatureExtractor",
                "processor_class": "MusicgenMelodyProcessor",
                "feature_size": 12,
                "sampling_rate": SAMPLE_RATE,
                "hop_length": 4096,
                "chunk_length": 30,
                "n_fft": 16384,
                "num_chroma": 12,
                "padding_value": 0.0,
                "padding_side": "right",
                "return_attention_mask": False,
                "stem_indices": [3, 2],
            },
            indent=2,
        )
    )
    return folder


def install_in_hub_cache(folder: Path, cache_dir: Path, repo_id: str, revision: str = FAKE_REVISION) -> Path:
    """Copy a saved checkpoint into ``cache_dir`` exactly as huggingface_hub lays out a download of ``repo_id``."""
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    shutil.copytree(folder, snapshot, dirs_exist_ok=True)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    (repo_dir / "blobs").mkdir(exist_ok=True)
    return snapshot
