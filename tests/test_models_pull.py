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
