"""The one title-name rule, shared by the packager, the content layout, the stack file and steering."""

from __future__ import annotations

import pytest

from server.formats.names import check_title, is_valid_title


@pytest.mark.parametrize("name", ["demo", "a", "Big_Buck.Bunny-2", "9" * 128])
def test_plain_names_are_titles(name: str) -> None:
    assert is_valid_title(name)
    check_title(name)


@pytest.mark.parametrize("name", ["", ".hidden", "-x", "_x", "a/b", "..", "demo\n", "a b", "é", "9" * 129])
def test_names_that_could_escape_a_path_or_a_url_are_not(name: str) -> None:
    assert not is_valid_title(name)
    with pytest.raises(ValueError, match=r"invalid title .*starting with a letter or digit \(pass --title NAME\)"):
        check_title(name, hint="pass --title NAME")
