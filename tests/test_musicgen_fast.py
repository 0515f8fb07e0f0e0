"""The fast MusicGen decode loop (runners/musicgen/fast_decode.py) against transformers' own ``generate``.

On CPU in float32 the fast loop must produce exactly generate()'s tokens for the same seed and parameters: greedy and
sampled, every sampling knob, with and without guidance, mono, stereo, melody, and continuing from context codes; and
the takes it makes together must be the takes it makes one by one. The models are tiny random-weight checkpoints from
tests/tiny_musicgen.py, loaded with ``from_pretrained`` like the runner.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from runners.contract import JobContext, RunnerError, RunnerSettings
from runners.musicgen import MODELS
from runners.request import GenerationRequest

sys.path.insert(0, str(Path(__file__).parent))
import tiny_musicgen

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from runners.musicgen.fast_decode import FastDecoder, Sampling  # noqa: E402
from runners.musicgen.runner import MusicGenRunner, decoder_choice  # noqa: E402
from runners.musicgen.streaming import decoder_apply, delay_pattern  # noqa: E402

PROMPT = "lofi hip hop with piano"
STEPS = 40
CASES = {
    "greedy": dict(do_sample=False, guidance_scale=3.0),
    "musicgen_defaults": dict(do_sample=True, temperature=1.0, top_k=250, guidance_scale=3.0),
    "top_k_and_temperature": dict(do_sample=True, temperature=0.7, top_k=20, guidance_scale=3.0),
    "top_p_only": dict(do_sample=True, temperature=1.0, top_k=0, top_p=0.8, guidance_scale=3.0),
    "every_knob": dict(do_sample=True, temperature=0.9, top_k=50, top_p=0.95, guidance_scale=2.5),
    "no_guidance": dict(do_sample=True, temperature=1.2, top_k=250, guidance_scale=1.0),
    "greedy_no_guidance": dict(do_sample=False, guidance_scale=1.0),
}


@pytest.fixture(scope="module")
def models(tiny_musicgen_folders) -> dict[str, tuple]:
    """(model, tokenized prompt, folder) for mono, stereo and melody tiny checkpoints."""
    torch.set_num_threads(1)
    loaded = {}
    for name, folder in tiny_musicgen_folders.items():
        cls = (
            transformers.MusicgenMelodyForConditionalGeneration
            if name == "melody"
            else transformers.MusicgenForConditionalGeneration
        )
        model = cls.from_pretrained(folder).eval()
        text = dict(transformers.AutoTokenizer.from_pretrained(folder)([PROMPT], return_tensors="pt"))
        loaded[name] = (model, text, folder)
    return loaded


class _Capture(transformers.StoppingCriteria):
    """Keeps the ids generate() has made so far (the last call sees them all)."""

    def __call__(self, input_ids, scores, **kwargs):
        self.ids = input_ids
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)


def reference_ids(model, text, params, seed, context=None, **inputs):
    """generate()'s tokens with the delay pattern applied, as (batch*codebooks, 1 + context + STEPS)."""
    capture = _Capture()
    if context is not None:
        inputs["decoder_input_ids"] = context
    torch.manual_seed(seed)
    model.generate(
        **text, **inputs, **params, max_new_tokens=STEPS, stopping_criteria=transformers.StoppingCriteriaList([capture])
    )
    start = model.generation_config.decoder_start_token_id
    prompt = torch.full((capture.ids.shape[0], 1), start)
    if context is not None:
        prompt = torch.cat([prompt, context], dim=-1)
    return decoder_apply(capture.ids, delay_pattern(model.decoder, prompt, start, capture.ids.shape[-1]))


def fast_ids(model, text, params, seed, context=None, static_shapes=False, **inputs):
    torch.manual_seed(seed)
    decoder = FastDecoder(model, static_shapes=static_shapes)
    return decoder.generate(text, Sampling.from_kwargs(params), STEPS, context_codes=context, **inputs)


def assert_same_tokens(fast, expected):
    assert fast.shape == expected.shape
    assert torch.equal(fast, expected), f"{int((fast != expected).sum())} tokens differ"


# -- token equality with generate() ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_mono_tokens_equal_generate(models, case):
    model, text, _ = models["mono"]
    expected = reference_ids(model, text, CASES[case], seed=5)
    assert_same_tokens(fast_ids(model, text, CASES[case], seed=5), expected)
    assert len(torch.unique(expected)) > 20  # real, varied music tokens: the comparison is not vacuous


def test_sampled_tokens_follow_the_seed(models):
    model, text, _ = models["mono"]
    params = CASES["musicgen_defaults"]
    assert not torch.equal(fast_ids(model, text, params, seed=1), fast_ids(model, text, params, seed=2))
    assert_same_tokens(fast_ids(model, text, params, seed=2), reference_ids(model, text, params, seed=2))


@pytest.mark.parametrize("case", ["greedy", "every_knob"])
def test_stereo_tokens_equal_generate(models, case):
    model, text, _ = models["stereo"]
    assert_same_tokens(fast_ids(model, text, CASES[case], seed=7), reference_ids(model, text, CASES[case], seed=7))


@pytest.mark.parametrize("case", ["greedy", "every_knob"])
def test_melody_tokens_equal_generate(models, case):
    from runners.musicgen.conditioning import ChromaSettings, melody_chroma

    model, text, _ = models["melody"]
    t = np.arange(tiny_musicgen.SAMPLE_RATE * 2) / tiny_musicgen.SAMPLE_RATE
    chroma = melody_chroma((0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), ChromaSettings())
    expected = reference_ids(model, text, CASES[case], seed=9, input_features=chroma)
    assert_same_tokens(fast_ids(model, text, CASES[case], seed=9, input_features=chroma), expected)
    # without a melody both use the model's null chroma
    assert_same_tokens(fast_ids(model, text, CASES[case], seed=9), reference_ids(model, text, CASES[case], seed=9))


@pytest.mark.parametrize("kind", ["mono", "stereo"])
@pytest.mark.parametrize("case", ["greedy", "every_knob"])
def test_continuation_tokens_equal_generate(models, kind, case):
    """The runner's continuation windows: context codes (batch*codebooks, frames) fed as decoder_input_ids."""
    model, text, _ = models[kind]
    context = torch.randint(0, tiny_musicgen.CODEBOOK_SIZE, (model.decoder.num_codebooks, 23))
    expected = reference_ids(model, text, CASES[case], seed=4, context=context)
    assert expected.shape[-1] == 1 + 23 + STEPS
    assert_same_tokens(fast_ids(model, text, CASES[case], seed=4, context=context), expected)


@pytest.mark.parametrize("kind", ["mono", "melody"])
def test_fixed_shape_steps_equal_generate(models, kind):
    """The CUDA-graph step (whole-cache attention under a mask), run eagerly on CPU, gives the same tokens."""
    model, text, _ = models[kind]
    params = CASES["every_knob"]
    expected = reference_ids(model, text, params, seed=3)
    assert_same_tokens(fast_ids(model, text, params, seed=3, static_shapes=True), expected)


def test_step_logits_are_generates_bit_for_bit(models, monkeypatch):
    """Why the sampled tokens can match at all: the same logits, not just close ones (fixed-shape steps: close)."""
    import runners.musicgen.fast_decode as fast_decode

    model, text, _ = models["mono"]
    torch.manual_seed(0)
    out = model.generate(
        **text, **CASES["greedy"], max_new_tokens=STEPS, return_dict_in_generate=True, output_logits=True
    )
    expected = torch.stack(out.logits)
    seen = []
    original = fast_decode.next_tokens
    monkeypatch.setattr(
        fast_decode, "next_tokens", lambda logits, s: seen.append(logits.clone()) or original(logits, s)
    )
    fast_ids(model, text, CASES["greedy"], seed=0)
    assert torch.equal(torch.stack(seen), expected)
    seen.clear()
    fast_ids(model, text, CASES["greedy"], seed=0, static_shapes=True)
    torch.testing.assert_close(torch.stack(seen), expected, rtol=0, atol=1e-5)


def test_checkpoints_with_an_end_token_are_refused(models):
    model, _, _ = models["mono"]
    config = model.generation_config
    config.eos_token_id = 0
    try:
        with pytest.raises(ValueError, match="TTAG_MUSICGEN_DECODER=transformers"):
            FastDecoder(model)
    finally:
        config.eos_token_id = None


def test_on_step_sees_every_token_and_can_abort(models):
    model, text, _ = models["mono"]
    seen = []
    decoder = FastDecoder(model)
    torch.manual_seed(1)
    ids = decoder.generate(text, Sampling(), STEPS, on_step=lambda ids: seen.append(ids.clone()))
    assert [s.shape[-1] for s in seen] == list(range(2, STEPS + 2))
    assert torch.equal(seen[-1], ids)

    class Stop(Exception):
        pass

    def stop_at_five(ids):
        if ids.shape[-1] == 6:
            raise Stop

    with pytest.raises(Stop):
        decoder.generate(text, Sampling(), STEPS, on_step=stop_at_five)
    torch.manual_seed(1)  # an aborted run leaves nothing behind: the same decoder makes the same take again
    assert torch.equal(decoder.generate(text, Sampling(), STEPS), ids)


def test_cuda_graph_needs_cuda(models):
    model, _, _ = models["mono"]
    with pytest.raises(ValueError, match="CUDA"):
        FastDecoder(model, cuda_graph=True)


# -- choosing the decoder in the runner ------------------------------------------------------------------------------
def test_decoder_choice_from_spec_and_environment(monkeypatch):
    monkeypatch.delenv("TTAG_MUSICGEN_DECODER", raising=False)
    assert decoder_choice({}) == "fast"
    monkeypatch.setenv("TTAG_MUSICGEN_DECODER", "Transformers")
    assert decoder_choice({}) == "transformers"
    assert decoder_choice({"decoder": "fast"}) == "fast"  # a model's own setting wins
    monkeypatch.setenv("TTAG_MUSICGEN_DECODER", "turbo")
    with pytest.raises(RunnerError, match="unknown MusicGen decoder 'turbo'"):
        decoder_choice({})


@pytest.mark.slow
def test_runner_decoders_make_the_same_long_take(models, monkeypatch):
    """Three 4 s takes in 2 s windows with 0.5 s context (three generate calls a take): the same audio from either
    decoder — the fast one makes the takes together, window by window (told its batches are exact: at the tiny
    model's shapes this CPU's products are not), generate() one after the other."""
    monkeypatch.setattr(FastDecoder, "batch_is_exact", lambda self, takes, rows: True)
    _, _, folder = models["mono"]
    template = next(m for m in MODELS if m.id == "musicgen-small")
    audio = {}
    for choice in ("fast", "transformers"):
        spec = replace(
            template,
            id="tiny",
            hub_repo=str(folder),
            extra={"max_window_s": 2.0, "context_s": 0.5, "decoder": choice},
        )
        runner = MusicGenRunner(spec, RunnerSettings(threads=1))
        runner.load_model(JobContext())
        assert (runner.fast is not None) == (choice == "fast")
        request = GenerationRequest(
            prompt=PROMPT, model="tiny", duration=4.0, seed=12, takes=3, temperature=0.9, top_k=50
        )
        audio[choice] = [clip.audio for clip in runner.generate(request, JobContext())]
    assert [take.shape for take in audio["fast"]] == [(1, 4 * tiny_musicgen.SAMPLE_RATE)] * 3
    for fast, reference in zip(audio["fast"], audio["transformers"], strict=True):
        np.testing.assert_array_equal(fast, reference)
    assert not np.array_equal(audio["fast"][0], audio["fast"][1])


# -- several takes in one batch --------------------------------------------------------------------------------------
def batched_ids(model, text, params, seeds, context=None, **inputs):
    """The fast loop's takes of ``seeds`` made together, as a list of (codebooks, ...) ids, one per take."""
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    torch.manual_seed(999)  # a take made in a batch draws only from its own generator, never from the default one
    ids = FastDecoder(model).generate(
        text, Sampling.from_kwargs(params), STEPS, context_codes=context, generators=generators, **inputs
    )
    return list(ids.split(model.decoder.num_codebooks))


@pytest.mark.parametrize(
    ("kind", "case"),
    [
        ("mono", "musicgen_defaults"),
        ("mono", "every_knob"),
        ("mono", "no_guidance"),
        ("mono", "greedy"),
        ("stereo", "every_knob"),
        ("melody", "every_knob"),
    ],
)
def test_takes_made_together_equal_takes_made_one_by_one(models, kind, case):
    model, text, _ = models[kind]
    seeds = [11, 12, 13]
    together = batched_ids(model, text, CASES[case], seeds)
    for seed, take in zip(seeds, together, strict=True):
        assert_same_tokens(take, fast_ids(model, text, CASES[case], seed=seed))
    assert_same_tokens(together[1], reference_ids(model, text, CASES[case], seed=12))
    if CASES[case]["do_sample"]:
        assert not torch.equal(together[0], together[2])  # three takes, not one three times


def test_takes_made_together_continue_each_its_own_codes(models):
    """Continuation windows of a batch: every take has its own context codes."""
    model, text, _ = models["stereo"]
    rows = model.decoder.num_codebooks
    contexts = [
        torch.randint(0, tiny_musicgen.CODEBOOK_SIZE, (rows, 17), generator=torch.Generator().manual_seed(k))
        for k in range(2)
    ]
    params = CASES["every_knob"]
    together = batched_ids(model, text, params, [4, 5], context=torch.cat(contexts))
    for seed, context, take in zip([4, 5], contexts, together, strict=True):
        assert take.shape[-1] == 1 + 17 + STEPS
        assert_same_tokens(take, reference_ids(model, text, params, seed=seed, context=context))


def test_on_step_sees_every_take_of_a_batch(models):
    model, text, _ = models["mono"]
    seen = []
    generators = [torch.Generator().manual_seed(seed) for seed in (1, 2)]
    ids = FastDecoder(model).generate(
        text, Sampling(), STEPS, on_step=lambda ids: seen.append(ids.shape), generators=generators
    )
    rows = 2 * model.decoder.num_codebooks
    assert ids.shape == (rows, STEPS + 1)
    assert seen == [(rows, n) for n in range(2, STEPS + 2)]


def test_takes_go_four_at_a_time_where_exact_and_a_batch_out_of_memory_goes_one_by_one(models, monkeypatch):
    """Five takes: a batch of four, then the fifth alone — where batches are exact; where they are not, one by one.
    Four takes' caches need four times one take's: where they do not fit, the same takes come one by one."""
    _, _, folder = models["mono"]
    spec = replace(next(m for m in MODELS if m.id == "musicgen-small"), id="tiny", hub_repo=str(folder))
    runner = MusicGenRunner(spec, RunnerSettings(threads=1))
    runner.load_model(JobContext())
    request = GenerationRequest(prompt=PROMPT, model="tiny", duration=1.0, seed=3, takes=5)
    batches = []
    original = FastDecoder.generate

    def counted(self, *args, generators=None, **kwargs):
        batches.append(len(generators or [None]))
        return original(self, *args, generators=generators, **kwargs)

    monkeypatch.setattr(FastDecoder, "generate", counted)
    monkeypatch.setattr(FastDecoder, "batch_is_exact", lambda self, takes, rows: False)
    runner.generate(request, JobContext())
    assert batches == [1, 1, 1, 1, 1]
    batches.clear()
    exact = []
    monkeypatch.setattr(FastDecoder, "batch_is_exact", lambda self, takes, rows: exact.append((takes, rows)) or True)
    together = [clip.audio for clip in runner.generate(request, JobContext())]
    assert batches == [4, 1]
    assert exact == [(4, 2)]  # guidance 3: two rows a take

    def no_room_for_a_batch(self, *args, generators=None, **kwargs):
        batches.append(len(generators or [None]))
        if generators:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, *args, **kwargs)

    batches.clear()
    monkeypatch.setattr(FastDecoder, "generate", no_room_for_a_batch)
    alone = [clip.audio for clip in runner.generate(request, JobContext())]
    assert batches == [4, 1, 1, 1, 1, 1]
    assert len(alone) == len(together) == 5
    for batched, single in zip(together, alone, strict=True):
        np.testing.assert_array_equal(batched, single)
    assert not np.array_equal(together[3], together[4])


@pytest.mark.parametrize("kind", ["mono", "melody"])
def test_the_fixed_shape_step_makes_a_batch_of_takes(models, kind):
    """The CUDA-graph step (whole-cache attention under a mask), run eagerly on CPU, with two takes in its batch."""
    model, text, _ = models[kind]
    params = CASES["every_knob"]
    generators = [torch.Generator().manual_seed(seed) for seed in (3, 4)]
    together = FastDecoder(model, static_shapes=True).generate(
        text, Sampling.from_kwargs(params), STEPS, generators=generators
    )
    for seed, take in zip((3, 4), together.split(model.decoder.num_codebooks), strict=True):
        assert_same_tokens(take, reference_ids(model, text, params, seed=seed))


def test_the_batch_probe_tells_whether_a_batch_keeps_each_takes_bits(models, monkeypatch):
    """``batch_is_exact`` says what a real batch does on this machine: its answer is whether two takes' logits made
    together are those made alone, bit for bit; and a product that changes with the number of rows makes it say no."""
    import runners.musicgen.fast_decode as fast_decode

    model, text, _ = models["mono"]
    params = CASES["musicgen_defaults"]
    seen = []
    original = fast_decode.next_tokens
    monkeypatch.setattr(
        fast_decode, "next_tokens", lambda logits, s, g=None: seen.append(logits.clone()) or original(logits, s, g)
    )
    batched_ids(model, text, params, [1, 2])
    together = torch.stack(seen).view(STEPS, 2, *seen[0].shape)  # a step: take 1's rows, then take 2's
    seen.clear()
    for seed in (1, 2):
        fast_ids(model, text, params, seed=seed)
    alone = torch.stack(seen).view(2, STEPS, *seen[0].shape)
    assert together.shape[1:] == (2, 2 * model.decoder.num_codebooks, tiny_musicgen.CODEBOOK_SIZE)
    torch.testing.assert_close(together[:, 1], alone[1], rtol=0, atol=1e-4)  # the same take, at least closely
    bitwise = all(torch.equal(together[:, k], alone[k]) for k in range(2))
    assert FastDecoder(model).batch_is_exact(2, 2) == bitwise

    class Drifting(torch.nn.Linear):
        """A product whose rows move with the batch's size, as a kernel chosen by row count can."""

        def forward(self, x):
            return super().forward(x) + 1e-3 * x.shape[0]

    head = model.decoder.lm_heads[0]
    drifting = Drifting(head.in_features, head.out_features, bias=False)
    drifting.weight = head.weight
    monkeypatch.setitem(model.decoder.lm_heads._modules, "0", drifting)
    assert not FastDecoder(model).batch_is_exact(2, 2)
