"""The `Decoder` protocol: light to import, and implemented by both decoders with its exact methods."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
from types import SimpleNamespace

import pytest

from player.client.decoding import Decoder
from player.client.harness import pipeline_factory
from player.media.avsync import DesktopDecoder
from player.media.pipeline import DecodePipeline
from tests.conftest import REPO_ROOT


def test_the_protocol_module_loads_no_pyav() -> None:
    code = "import sys, player.client.decoding; assert 'av' not in sys.modules, 'PyAV was imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


@pytest.mark.parametrize("implementation", [DecodePipeline, DesktopDecoder])
@pytest.mark.parametrize("method", ["start", "submit", "finish"])
def test_decoders_implement_the_protocol_methods(implementation: type, method: str) -> None:
    wanted, got = getattr(Decoder, method), getattr(implementation, method)
    assert list(inspect.signature(got).parameters) == list(inspect.signature(wanted).parameters)
    assert inspect.iscoroutinefunction(got) == inspect.iscoroutinefunction(wanted)


class _NoRenditions:
    periods: tuple[object, ...] = ()

    def adaptation_sets(self) -> list[object]:
        return []


@pytest.mark.parametrize("mode", ["all", "keyframes"])
def test_pipeline_factory_builds_a_pipeline_decoding_the_mode(mode: str) -> None:
    factory = pipeline_factory(mode)
    assert factory is not None
    source = SimpleNamespace(manifest=_NoRenditions(), keys={})
    decoder = factory(source)  # type: ignore[arg-type]
    assert isinstance(decoder, DecodePipeline) and decoder.mode == mode
    asyncio.run(decoder.finish())  # nothing submitted: an empty summary, the worker shut down


def test_pipeline_factory_decodes_nothing_for_mode_none() -> None:
    assert pipeline_factory("none") is None
