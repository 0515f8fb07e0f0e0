"""Local checkpoint folders as models (``-m PATH``, ``models.ALIAS``): the kind read from the folder's own files,
folders that need repository code refused, the weights' hash in the sidecar so ``recreate`` notices a changed folder,
and never over the API."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from runners.local_models import NotAModel, looks_like_path, spec_for_folder
from runners.registry import default_registry
from tests.test_cli import ttag as cli
from tests.test_server import client_for


def ttag(*args: str) -> subprocess.CompletedProcess:
    return cli(*args, env={"TTAG_THREADS": "1"}, timeout=600)


@pytest.fixture(scope="module")
def musicgen_folder(tiny_musicgen_folders, tmp_path_factory) -> Path:
    """A copy of the shared tiny checkpoint: a test here changes its files."""
    return Path(shutil.copytree(tiny_musicgen_folders["mono"], tmp_path_factory.mktemp("local") / "my-musicgen"))


@pytest.mark.slow
def test_a_musicgen_folder_generates_records_its_weights_and_recreate_notices_a_change(musicgen_folder, tmp_path):
    made = ttag("generate", "lofi piano", "-m", str(musicgen_folder), "-d", "1", "--seed", "3", "-o", str(tmp_path))
    assert made.returncode == 0, made.stderr
    sidecar = json.loads(Path(made.stdout.strip()).with_suffix(".json").read_text())
    assert sidecar["model"] == str(musicgen_folder.resolve()) and len(sidecar["weights_sha256"]) == 64
    recreate = shlex.split(sidecar["recreate"])
    assert recreate[recreate.index("--weights-sha256") + 1] == sidecar["weights_sha256"]

    again = ttag(*recreate[1:], "-o", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert json.loads(Path(again.stdout.strip()).with_suffix(".json").read_text())["sha256"] == sidecar["sha256"]

    (musicgen_folder / "adapter.safetensors").write_bytes(b"fine-tuned since")
    changed = ttag(*recreate[1:], "-o", str(tmp_path / "changed"))
    assert changed.returncode == 2 and "changed since this take was made" in changed.stderr
    assert "Traceback" not in changed.stderr and not (tmp_path / "changed").exists()
    (musicgen_folder / "adapter.safetensors").unlink()


def test_a_config_alias_names_the_folder_and_a_server_never_gets_it(musicgen_folder):
    assert ttag("config", "set", "models.mine", str(musicgen_folder)).returncode == 0
    refused = ttag("--backend", "http://127.0.0.1:9", "generate", "x", "-m", "mine")
    assert refused.returncode == 2 and "runs on this machine only" in refused.stderr


@pytest.mark.parametrize(
    ("files", "model_id"),
    [
        ({"model_index.json": {"_class_name": "StableAudioPipeline"}}, "stable-audio-open-1.0"),
        ({"model_index.json": {"_class_name": "AudioLDM2Pipeline"}}, "audioldm2"),
        ({"model_index.json": {"_class_name": "StableDiffusionPipeline"}}, "riffusion-model-v1"),
        ({"config.json": {"model_type": "musicgen_melody"}}, "musicgen-melody"),
        ({"config.json": {"model_type": "musicgen", "audio_encoder": {"audio_channels": 2}}}, "musicgen-stereo-small"),
        ({"state_dict.bin": b"w", "compression_state_dict.bin": b"c"}, "audiocraft-musicgen-small"),
    ],
)
def test_the_kind_comes_from_the_folders_own_files(tmp_path, files, model_id):
    folder = tmp_path / "model"
    folder.mkdir()
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(json.dumps(content))
    registry = default_registry()
    spec = spec_for_folder(folder, registry)
    base = registry.get(model_id)
    assert spec.id == str(folder.resolve()) and spec.hub_repo == str(folder.resolve()) and spec.revision is None
    assert (spec.runner, spec.sample_rate, spec.channels, spec.params) == (
        base.runner,
        base.sample_rate,
        base.channels,
        base.params,
    )
    if spec.runner.startswith("runners.audiocraft"):
        assert spec.extra["name"] == str(folder.resolve()) and base.hub_repo not in spec.extra["hub_files"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"config.json": {"model_type": "musicgen", "auto_map": {"AutoModel": "x.Y"}}}, "needs code from its repo"),
        ({"config.json": {"model_type": "musicgen"}, "modeling.py": "import os"}, "modeling.py"),
        ({"model_index.json": {"_class_name": "StableAudioPipeline"}, "unet/config.json": {"auto_map": {}}}, "code"),
        ({"model_index.json": {"_class_name": "FluxPipeline"}}, "ttag runs StableAudioPipeline"),
        ({"config.json": {"model_type": "llama"}}, "ttag runs MusicGen"),
        ({"config.json": "not json at all"}, "cannot be read as JSON"),
        ({"notes.txt": "hello"}, "not a checkpoint ttag knows"),
        # a field of the wrong JSON type: said in words, never an AttributeError or TypeError
        ({"config.json": {"model_type": "musicgen", "audio_encoder": "x"}}, "audio_encoder must be a JSON object"),
        ({"config.json": {"model_type": "musicgen", "decoder": [1]}}, "decoder must be a JSON object"),
        ({"config.json": {"model_type": ["musicgen"]}}, "ttag runs MusicGen"),
        ({"model_index.json": {"_class_name": ["pipeline_x", "XPipeline"]}}, "needs code from its repo"),
        # numbers a library would divide by or allocate with
        (
            {"config.json": {"model_type": "musicgen", "audio_encoder": {"sampling_rate": 0}}},
            "audio_encoder.sampling_rate is 0, not a sample rate above 0",
        ),
        (
            {"config.json": {"model_type": "musicgen", "decoder": {"hidden_size": 10**12}}},
            "decoder.hidden_size is 1000000000000, larger than any model's",
        ),
        (
            {"model_index.json": {"_class_name": "StableAudioPipeline"}, "vae/config.json": {"sampling_rate": -1}},
            "vae/config.json: sampling_rate is -1",
        ),
        ({"config.json": {"model_type": "musicgen"}, "tokenizer.json": "garbage"}, "tokenizer.json cannot be read"),
    ],
)
def test_folders_ttag_cannot_or_will_not_run_are_refused_in_words(tmp_path, files, message):
    folder = tmp_path / "model"
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content) if isinstance(content, dict) else content)
    with pytest.raises(NotAModel, match=message):
        spec_for_folder(folder, default_registry())


def test_cli_refuses_a_folder_that_is_no_model_in_one_line(tmp_path):
    result = ttag("generate", "x", "-m", str(tmp_path / "nothing-here"))
    assert result.returncode == 2 and "no such folder" in result.stderr and "Traceback" not in result.stderr


def assert_one_line_naming(result: subprocess.CompletedProcess, folder: Path, code: int) -> str:
    """The failure is exactly one line on stderr that names the folder: no traceback, no advice to unpickle."""
    assert result.returncode == code, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert str(folder) in result.stderr and "Traceback" not in result.stderr
    assert "weights_only=False" not in result.stderr
    return result.stderr


def test_cli_refuses_a_folder_with_a_malformed_config_in_one_line(musicgen_folder, tmp_path):
    folder = Path(shutil.copytree(musicgen_folder, tmp_path / "odd-config"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "audio_encoder": "x"}))
    refused = ttag("generate", "calm piano", "-m", str(folder), "-d", "1", "-o", str(tmp_path / "out"))
    assert "audio_encoder must be a JSON object" in assert_one_line_naming(refused, folder, 2)


class RunsCode:
    """Pickled, it asks the unpickler to call ``Path.touch``: a stand-in for any code a weights pickle could run."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.sentinel,))


def pickle_weights(path: Path, sentinel: Path, *, zipped: bool) -> None:
    import pickle

    import torch

    if zipped:
        torch.save({"x": RunsCode(sentinel)}, path)
    else:
        path.write_bytes(pickle.dumps({"x": RunsCode(sentinel)}))


def _pickled(folder: Path, sentinel: Path, *, zipped: bool) -> None:
    (folder / "model.safetensors").unlink()
    pickle_weights(folder / "pytorch_model.bin", sentinel, zipped=zipped)


def _cut_short(folder: Path, size: int) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:size])


def _zero_ratio(folder: Path) -> None:
    """A codec upsampling ratio of 0: past the config checks, it divides by zero once the model is loaded."""
    config = json.loads((folder / "config.json").read_text())
    config["audio_encoder"]["upsampling_ratios"][-1] = 0
    (folder / "config.json").write_text(json.dumps(config))


BREAKAGES = {
    "torch-pickle": (lambda f, s: _pickled(f, s, zipped=True), "convert the weights to safetensors"),
    "plain-pickle": (lambda f, s: _pickled(f, s, zipped=False), "ttag does not load such pickles"),
    "truncated": (lambda f, _: _cut_short(f, 5000), "a .safetensors file in it is damaged or cut short"),
    "empty": (lambda f, _: _cut_short(f, 0), "damaged or cut short"),
    "zero-ratio": (lambda f, _: _zero_ratio(f), "its files do not make a model ttag can run (ZeroDivisionError"),
}


@pytest.mark.slow
@pytest.mark.parametrize("breakage", BREAKAGES)
def test_a_musicgen_folder_that_cannot_be_loaded_fails_in_one_line_that_says_why(musicgen_folder, tmp_path, breakage):
    breaks, message = BREAKAGES[breakage]
    folder = Path(shutil.copytree(musicgen_folder, tmp_path / "broken"))
    sentinel = tmp_path / "the-pickle-ran"
    breaks(folder, sentinel)
    failed = ttag("generate", "calm piano", "-m", str(folder), "-d", "1", "-o", str(tmp_path / "out"))
    said = assert_one_line_naming(failed, folder, 1)
    assert "(bad_checkpoint)" in said and message in said
    assert not sentinel.exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_diffusers_folder_with_pickled_weights_is_refused_in_one_line(tmp_path):
    from tests.tiny_diffusion import build_riffusion

    folder = build_riffusion(tmp_path / "riffusion")
    sentinel = tmp_path / "the-pickle-ran"
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    pickle_weights(folder / "unet" / "diffusion_pytorch_model.bin", sentinel, zipped=True)
    failed = ttag("generate", "calm piano", "-m", str(folder), "-d", "1", "-o", str(tmp_path / "out"))
    said = assert_one_line_naming(failed, folder, 1)
    assert "(bad_checkpoint)" in said and "convert the weights to safetensors" in said and not sentinel.exists()


def test_model_names_and_paths_are_told_apart():
    assert looks_like_path("./mine") and looks_like_path("/models/x") and looks_like_path("~/m")
    assert not looks_like_path("musicgen-small") and not looks_like_path("stable-audio-open-1.0")


def test_the_api_never_takes_a_folder(musicgen_folder):
    with client_for() as client:
        response = client.post("/api/jobs", json={"prompt": "x", "model": str(musicgen_folder)})
        assert response.status_code == 422 and "unknown model" in response.text


async def test_the_tui_opens_a_local_folder_from_the_palette_and_lists_it(tmp_path):
    from runners.registry import Registry
    from tests.fake_runners import fake_registry
    from tests.tui_fakes import make_app, running, wait_for

    folder = tmp_path / "my stable audio"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableAudioPipeline"}))
    registry = Registry([*fake_registry(), default_registry().get("stable-audio-open-1.0")])
    app = make_app(tmp_path, registry=registry)
    async with running(app) as pilot:
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: app.screen.query("CommandInput"), "the palette")
        await pilot.press(*"open a local model")
        await wait_for(
            pilot,
            lambda: "local model" in str(app.screen.query_one("CommandList").get_option_at_index(0).prompt).lower(),
            "the action at the top",
        )
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.query("AskScreen Input"), "the folder question")
        app.screen.query_one("AskScreen Input").value = str(folder)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen.model_id == str(folder), "the folder chosen as the model")
        assert str(folder) in app.registry and app.registry.get(str(folder)).hub_repo == str(folder)
        assert app.screen.query("#negative"), "stable audio's negative prompt shows, as for the hub model"

        (tmp_path / "junk").mkdir()
        await app.screen.models.open_local_model()
        await wait_for(pilot, lambda: app.screen.query("AskScreen Input"), "the folder question again")
        app.screen.query_one("AskScreen Input").value = str(tmp_path / "junk")
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: any("not a checkpoint ttag knows" in str(n.message) for n in app._notifications),
            "the refusal in words",
        )
        assert app.screen.model_id == str(folder)
