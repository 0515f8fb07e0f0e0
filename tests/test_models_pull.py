"""What ``ttag models pull`` fetches for each kind of runner, and the repos it refuses (no network needed)."""

from __future__ import annotations

import json

import pytest

from runners.registry import default_registry
from ttag_tui.models import SAFETENSORS_PATTERNS, TORCH_PATTERNS, ModelsError, download_plan, refuse_remote_code

REGISTRY = default_registry()


def test_transformers_model_prefers_safetensors_then_bin():
    spec = REGISTRY.get("musicgen-small")
    with_safetensors = download_plan(spec, lambda repo: ["config.json", "model.safetensors", "pytorch_model.bin"])
    assert with_safetensors[0][0] == "facebook/musicgen-small"
    assert with_safetensors[0][1][: len(SAFETENSORS_PATTERNS)] == list(SAFETENSORS_PATTERNS)
    bin_only = download_plan(spec, lambda repo: ["config.json", "pytorch_model.bin"])
    assert bin_only[0][1][: len(TORCH_PATTERNS)] == list(TORCH_PATTERNS)


def test_diffusers_model_fetches_its_pipeline_folders_not_single_file_checkpoints():
    plan = download_plan(REGISTRY.get("riffusion-model-v1"), lambda repo: pytest.fail("no listing needed"))
    assert plan == [
        ("riffusion/riffusion-model-v1", ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model"])
    ]


def test_audiocraft_model_fetches_every_repo_it_loads():
    plan = dict(download_plan(REGISTRY.get("audiocraft-musicgen-small-mbd"), lambda repo: pytest.fail("no listing")))
    assert plan["facebook/musicgen-small"] == ["state_dict.bin", "compression_state_dict.bin"]
    assert "spiece.model" in plan["t5-base"] and "facebook/multiband-diffusion" in plan


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("config.json", {"auto_map": {"AutoModel": "modeling_x.X"}}, "trust_remote_code"),
        ("model_index.json", {"_class_name": ["pipeline_x", "XPipeline"]}, "custom diffusers pipeline"),
    ],
)
def test_repos_with_their_own_code_are_refused(tmp_path, name, content, fragment):
    (tmp_path / name).write_text(json.dumps(content))
    with pytest.raises(ModelsError, match=fragment):
        refuse_remote_code("org/repo", [name], lambda file: tmp_path / file)
    (tmp_path / name).write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    refuse_remote_code("org/repo", [name], lambda file: tmp_path / file)


def test_a_cache_dir_that_is_a_file_is_said_in_one_line(tmp_path):
    from tests.test_cli import ttag
    from ttag_tui.models import ModelsUsageError, cached, pull, remove

    a_file = tmp_path / "weights.txt"
    a_file.write_text("not a folder")
    for action in (cached, lambda r, d: remove(r, "musicgen-small", d), lambda r, d: pull(r, "musicgen-small", d)):
        with pytest.raises(ModelsUsageError, match=f"the model cache {a_file} is not a folder"):
            action(REGISTRY, str(a_file))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text(f"cache_dir = {str(a_file)!r}\n")  # edited by hand
    for args, env in (
        (("models", "list"), {"TTAG_CACHE_DIR": str(a_file)}),
        (("models", "rm", "musicgen-small"), {"TTAG_CACHE_DIR": str(a_file)}),
        (("models", "list"), {}),
    ):
        result = ttag(*args, env=env)
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
        assert f"{a_file} is not a folder" in result.stderr and "Traceback" not in result.stderr
