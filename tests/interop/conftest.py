"""The interop corpus, built once per test session (about 5 s: a 4 s clip at 180p)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import built_once_per_run
from tests.interop.corpus import Tools, build_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tools = Tools.find()
    if isinstance(tools, str):
        if os.environ.get("CI"):
            pytest.fail(f"the interop corpus needs its tools in CI: {tools}")
        pytest.skip(tools)
    return built_once_per_run(tmp_path_factory, "interop-corpus", lambda root: build_corpus(tools, root))
