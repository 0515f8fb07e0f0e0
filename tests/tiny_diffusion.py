"""Tiny random-weight diffusers pipelines, built in code and saved in the hub's layout, for offline tests and benches.

Each builder makes the same pipeline class the real checkpoint's ``model_index.json`` names, from configs with a few
thousand parameters, and ``save_pretrained``\\ s it; the runners load the folder with the ``from_pretrained`` call
they use for the hub id. Tokenizers are built from in-code vocabularies (diffusers' own tests fetch theirs from the
hub). Weights are random, so the "music" is noise — what matters is that every code path runs for real and that the
runners' output can be compared with the diffusers pipeline called directly. Recipes: /work/shared/notes/
tiny-checkpoints.md.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

WORDS = (
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
    "rain",
    "noise",
    "dog",
    "barking",
    "hammer",
    "wood",
)


def _byte_symbols() -> list[str]:
    """GPT-2's byte → printable-character table (what byte-level BPE vocabularies are written in)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    symbols, extra = [], 0
    for b in range(256):
        if b in keep:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def _word_merges(words: tuple[str, ...], suffix: str = "", prefix: str = "") -> tuple[list[tuple[str, str]], list[str]]:
    """Merges that build each word left to right (``a b``, ``ab c``, ...) and the tokens they make."""
    merges: list[tuple[str, str]] = []
    tokens: list[str] = []
    for word in words:
        pieces = [*([prefix] if prefix else []), *word[:-1], word[-1] + suffix]
        current = pieces[0]
        for piece in pieces[1:]:
            merge = (current, piece)
            if merge not in merges:
                merges.append(merge)
                tokens.append(current + piece)
            current = current + piece
    return merges, tokens


def clip_tokenizer():  # -> CLIPTokenizer
    """A CLIP BPE tokenizer: the byte symbols, each also ending a word (``</w>``), plus merges for ``WORDS``."""
    from transformers import CLIPTokenizer

    symbols = _byte_symbols()
    merges, tokens = _word_merges(WORDS, suffix="</w>")
    vocab_list = ["<|startoftext|>", "<|endoftext|>", *symbols, *(s + "</w>" for s in symbols), *tokens]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def roberta_tokenizer():  # -> RobertaTokenizer
    """A byte-level BPE (RoBERTa) tokenizer with merges for ``WORDS`` (word-initial pieces carry ``Ġ``)."""
    from transformers import RobertaTokenizer

    symbols = _byte_symbols()
    merges, tokens = _word_merges(WORDS, prefix="Ġ")
    vocab_list = ["<s>", "<pad>", "</s>", "<unk>", *symbols, *tokens, "<mask>"]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    return RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def t5_tokenizer(max_length: int = 64):  # -> T5Tokenizer
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(f"▁{w}", -3.0) for w in WORDS]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789,.-"]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)


def _t5_encoder(vocab_size: int = 80, d_model: int = 32):  # -> T5EncoderModel
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=d_model,
            d_ff=37,
            d_kv=8,
            num_heads=2,
            num_layers=2,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )


# -- Riffusion: a Stable Diffusion 1.x pipeline ----------------------------------------------------------------------
def build_riffusion(folder: Path, *, seed: int = 0) -> Path:
    """riffusion/riffusion-model-v1's layout: StableDiffusionPipeline with PNDM, VAE scale 8, no safety checker."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = clip_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=2,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(4, 4, 8, 8),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=2,
        sample_size=512,
    )  # four blocks: 8× down like SD's, so latents stay small
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
        set_alpha_to_one=False,
    )  # as SD 1.x's scheduler_config.json
    with torch.no_grad():  # random init decodes to a near-constant image; a louder decoder makes spectrograms vary
        vae.decoder.conv_out.weight.mul_(6.0)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


# -- Stable Audio Open -----------------------------------------------------------------------------------------------
def build_stable_audio(folder: Path, *, seed: int = 0) -> Path:
    """stable-audio-open-1.0's layout at 44.1 kHz stereo; 256 latents × hop 256 → at most 1.49 s."""
    import torch
    from diffusers import (
        AutoencoderOobleck,
        CosineDPMSolverMultistepScheduler,
        StableAudioDiTModel,
        StableAudioPipeline,
        StableAudioProjectionModel,
    )

    torch.manual_seed(seed)
    transformer = StableAudioDiTModel(
        sample_size=256,
        in_channels=3,
        num_layers=2,
        attention_head_dim=4,
        num_attention_heads=2,
        num_key_value_attention_heads=2,
        out_channels=3,
        cross_attention_dim=8,
        time_proj_dim=8,
        global_states_input_dim=8,
        cross_attention_input_dim=4,
    )
    scheduler = CosineDPMSolverMultistepScheduler(
        solver_order=2, prediction_type="v_prediction", sigma_data=1.0, sigma_schedule="exponential"
    )
    vae = AutoencoderOobleck(
        encoder_hidden_size=6,
        downsampling_ratios=[2, 4, 4, 8],
        decoder_channels=3,
        decoder_input_channels=3,
        audio_channels=2,
        channel_multiples=[1, 2, 2, 4],
        sampling_rate=44100,
    )
    text_encoder = _t5_encoder()
    projection_model = StableAudioProjectionModel(text_encoder_dim=32, conditioning_dim=4, min_value=0, max_value=512)
    pipe = StableAudioPipeline(
        vae=vae,
        text_encoder=text_encoder,
        projection_model=projection_model,
        tokenizer=t5_tokenizer(),
        transformer=transformer,
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


# -- AudioLDM 2 ------------------------------------------------------------------------------------------------------
def build_audioldm2(folder: Path, *, seed: int = 0, bare_gpt2: bool = False) -> Path:
    """cvssp/audioldm2's layout at 16 kHz: CLAP + T5 + GPT-2 conditioning, mel VAE, HiFi-GAN with hop 160.

    ``bare_gpt2`` saves the language model as a ``GPT2Model`` (no generation head), as some AudioLDM 2 repos do;
    diffusers' pipeline cannot generate with that under transformers 5, so the runner must cope.
    """
    import torch
    from diffusers import (
        AudioLDM2Pipeline,
        AudioLDM2ProjectionModel,
        AudioLDM2UNet2DConditionModel,
        AutoencoderKL,
        DDIMScheduler,
    )
    from transformers import (
        ClapAudioConfig,
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapTextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        SpeechT5HifiGan,
        SpeechT5HifiGanConfig,
    )

    tokenizer = roberta_tokenizer()
    torch.manual_seed(seed)
    unet = AudioLDM2UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=([None, 16, 32], [None, 16, 32]),
        attention_head_dim=4,
    )
    scheduler = DDIMScheduler(
        beta_start=0.0015,
        beta_end=0.0195,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    vae = AutoencoderKL(
        block_out_channels=[4, 8, 8],
        in_channels=1,
        out_channels=1,
        latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        norm_num_groups=2,
    )  # three blocks: 4× down, as AudioLDM 2's
    text_config = ClapTextConfig(
        bos_token_id=0,
        eos_token_id=2,
        hidden_size=16,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=2,
        num_hidden_layers=2,
        pad_token_id=1,
        vocab_size=len(tokenizer),
        projection_dim=16,
    )
    audio_config = ClapAudioConfig(
        spec_size=64,
        window_size=4,
        num_mel_bins=64,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        depths=[2, 2],
        num_attention_heads=[2, 2],
        num_hidden_layers=2,
        hidden_size=192,
        projection_dim=16,
        patch_size=2,
        patch_stride=2,
        patch_embed_input_channels=4,
    )
    text_encoder = ClapModel(
        ClapConfig(text_config=text_config.to_dict(), audio_config=audio_config.to_dict(), projection_dim=16)
    )
    text_encoder_2 = _t5_encoder(d_model=32)
    language_model = GPT2LMHeadModel(
        GPT2Config(
            n_embd=16,
            n_head=2,
            n_layer=2,
            vocab_size=len(tokenizer),
            n_ctx=99,
            n_positions=99,
            bos_token_id=0,
            eos_token_id=2,
        )
    )
    language_model.config.max_new_tokens = 8
    projection_model = AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=32, langauge_model_dim=16)
    vocoder = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=16,
            sampling_rate=16000,
            upsample_initial_channel=32,
            upsample_rates=[5, 4, 2, 2, 2],
            upsample_kernel_sizes=[10, 8, 4, 4, 4],
            resblock_kernel_sizes=[3],
            resblock_dilation_sizes=[[1, 3]],
            normalize_before=False,
        )
    )
    with torch.no_grad():  # HiFi-GAN's init (std 0.01) makes ~1e-10 audio: unit-gain convolutions make it audible
        for module in vocoder.modules():
            if isinstance(module, torch.nn.Conv1d | torch.nn.ConvTranspose1d):
                fan_in = module.weight.shape[1 if isinstance(module, torch.nn.Conv1d) else 0] * module.weight.shape[2]
                module.weight.normal_(0.0, fan_in**-0.5)
        vocoder.conv_post.weight.mul_(10.0)
    pipe = AudioLDM2Pipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        projection_model=projection_model,
        language_model=language_model,
        tokenizer=tokenizer,
        tokenizer_2=t5_tokenizer(),
        feature_extractor=ClapFeatureExtractor(),
        unet=unet,
        scheduler=scheduler,
        vocoder=vocoder,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    if bare_gpt2:
        shutil.rmtree(folder / "language_model")
        language_model.transformer.save_pretrained(folder / "language_model")
        index = model_index(folder)
        index["language_model"] = ["transformers", "GPT2Model"]
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def model_index(folder: Path) -> dict:
    return json.loads((folder / "model_index.json").read_text())
