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
