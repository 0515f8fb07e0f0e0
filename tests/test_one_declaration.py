"""One declaration per parameter: a ParamSpec added to the registry, and nothing else, gives it a CLI option, a TUI
field, an entry in the API's schema and a control on the web page — and the request carries it to the runner."""

from __future__ import annotations

import contextlib
import io

import pytest
from fastapi.testclient import TestClient

from runners.registry import ParamSpec
from runners.request import validate_request
from tests.fake_runners import fake_registry, spec
from tests.tui_fakes import make_app, running, wait_for
from ttag_tui.cli import _request_fields, build_parser
from ttag_tui.config import Config
from ttag_tui.server.app import create_app

WARMTH = ParamSpec("warmth", "float", 0.5, 0.0, 1.0, help="How warm the tone is. 0 is cold, 1 is glowing.")


def registry_with_warmth():
    registry = fake_registry()
    registry.add(spec("warm", "ToneRunner", params=(WARMTH,)))
    return registry


def subprocess_free_help(parser) -> str:
    """``ttag generate --help`` as argparse prints it."""
    with pytest.raises(SystemExit), contextlib.redirect_stdout(io.StringIO()) as out:
        parser.parse_args(["generate", "--help"])
    return out.getvalue()


def test_the_cli_offers_it_and_the_request_carries_it():
    registry = registry_with_warmth()
    args = build_parser(registry).parse_args(["generate", "x", "-m", "warm", "--warmth", "0.7"])
    request = validate_request(_request_fields(args, Config(), "wav"), registry)
    assert request.warmth == 0.7 and request.to_dict()["warmth"] == 0.7
    assert (
        "How warm the tone is" in build_parser(registry)._subparsers._group_actions[0].choices["generate"].format_help()
    )
    with pytest.raises(SystemExit):
        build_parser(fake_registry()).parse_args(["generate", "x", "--warmth", "0.7"])  # not declared: no option


async def test_the_tui_shows_a_field_for_it(tmp_path):
    app = make_app(tmp_path, registry=registry_with_warmth(), default_model="warm")
    async with running(app) as pilot:
        await wait_for(pilot, lambda: app.screen.query("#set-warmth"), "the warmth field")
        app.screen.query_one("#set-warmth").value = "2"
        await wait_for(
            pilot,
            lambda: any("warmth must be between 0 and 1" in e for e in app.screen.settings_pane.errors()),
            "the declared range enforced as typed",
        )


def test_the_api_schema_has_it_and_validates_it():
    registry = registry_with_warmth()
    with TestClient(create_app(Config(rate_limit="1000/minute"), registry=registry), base_url="http://localhost") as c:
        body = c.get("/openapi.json").json()["components"]["schemas"]["GenerateBody"]["properties"]
        assert body["warmth"]["anyOf"][0] == {"type": "number"} and "How warm" in body["warmth"]["description"]
        assert (
            c.post("/api/jobs", json={"prompt": "x", "model": "warm", "warmth": 0.7, "duration": 0.2}).status_code
            == 202
        )
        refused = c.post("/api/jobs", json={"prompt": "x", "model": "tone", "warmth": 0.7})
        assert refused.status_code == 422 and "tone does not take this parameter" in refused.text
        assert "warmth" in {p["name"] for m in c.get("/api/models").json() if m["id"] == "warm" for p in m["params"]}


def test_the_common_fields_are_described_once_and_the_defaults_they_state_hold():
    """The API schema and the CLI's help describe the common fields in CORE_FIELD_HELP's words, and what those
    words promise for a field left out is what a request gets."""
    from runners.request import CORE_FIELD_HELP

    registry = fake_registry()
    with TestClient(create_app(Config(default_model="tone"), registry=registry), base_url="http://localhost") as client:
        body = client.get("/openapi.json").json()["components"]["schemas"]["GenerateBody"]["properties"]
        assert {name: body[name]["description"] for name in CORE_FIELD_HELP} == CORE_FIELD_HELP
    arguments = {
        a.dest: a.help for a in build_parser(registry)._subparsers._group_actions[0].choices["generate"]._actions
    }
    assert all(arguments[name] == CORE_FIELD_HELP[name] for name in ("duration", "seed", "takes"))
    first, second = (validate_request({"prompt": "x", "model": "tone"}, registry) for _ in range(2))
    assert first.takes == 1 and first.format == "wav" and first.seed != second.seed  # "default: 1", "wav", "random"
    assert first.duration == registry.get("tone").default_duration  # "default: the model's"
