"""Hostile-input fuzzing of the MPD parser (hypothesis): mutations of real MPDs (ours, FFmpeg's,
hand-written) give a valid Manifest or an MpdError, never another exception, a hang or a memory blowup."""

from __future__ import annotations

import copy
import math
import tracemalloc
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from player.client.mpd import MAX_BASE_URL_CHOICES, Manifest, MpdError, parse_mpd
from player.client.mpd.addressing import _Resolver

DATA = Path(__file__).parent / "data"
SEEDS = {
    name: (DATA / name).read_text()
    for name in ("abrkit_demo.mpd", "ffmpeg_timeline.mpd", "ffmpeg_single_file.mpd", "dashif_ondemand.mpd",
                 "multiperiod_template.mpd")
}
MPD_URL = "http://edge.example/s/tok3n/demo/manifest.mpd"
BUDGET = 20_000  # segment URLs: keeps each example fast; the default budget is tested in test_mpd.py

# A deadline catches hangs; generous because other suites share the two cores.
FUZZ = settings(deadline=timedelta(seconds=5), database=None, suppress_health_check=[HealthCheck.too_slow])


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)

ATTRIBUTES = (
    "t", "d", "r", "n", "duration", "timescale", "startNumber", "endNumber", "presentationTimeOffset", "bandwidth",
    "width", "height", "frameRate", "media", "initialization", "indexRange", "mediaRange", "range", "sourceURL",
    "mediaPresentationDuration", "minBufferTime", "maxSegmentDuration", "start", "type", "id", "schemeIdUri",
    "value", "audioSamplingRate", "mimeType", "codecs", "contentType", "availabilityStartTime",
    "{urn:mpeg:cenc:2013}default_KID",
)
NASTY_VALUES = (
    "", " ", "0", "-0", "-1", "-2147483649", "4294967296", "18446744073709551616", "9" * 400, "1e309", "NaN",
    "PT0S", "-PT5S", "P99999999999Y", "PT1e9S", "P", "PT", "P1Y2M3DT4H5M6.7S", "$Number$", "$Time%0999999d$", "$$",
    "$", "$RepresentationID$/$Bandwidth$/$Time$", "30000/1001", "1/0", "0-0", "5-1", "0-18446744073709551616",
    "http://[::1", "//evil.example/x", "../../../../etc/passwd", "file:///etc/passwd", "javascript:alert(1)",
    "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e", "00000000-0000-0000-0000-000000000000", "dynamic",
    "2024-13-45T99:99:99Z",
)
values = st.one_of(
    st.sampled_from(NASTY_VALUES),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=0, max_value=300).map(str),
    st.text(max_size=40),
)
namespaces = st.sampled_from(
    ["urn:mpeg:DASH:schema:MPD:2011", "urn:mpeg:dash:schema:mpd:2012", "", "http://www.w3.org/1999/xhtml",
     "urn:mpeg:cenc:2013"]
)
DOCTYPES = (
    '<!DOCTYPE MPD [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE MPD [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;">]>',
    '<!DOCTYPE MPD SYSTEM "http://evil.example/mpd.dtd">',
    '<!DOCTYPE MPD [<!ENTITY % p SYSTEM "http://evil.example/p.dtd"> %p;]>',
    '<!DOCTYPE MPD [<!ELEMENT MPD ANY>]>',
    "<!DOCTYPE MPD>",
)


def check(text: str | bytes, *, budget: int = BUDGET) -> Manifest | None:
    """Parses; an MpdError is a fine outcome, any other exception fails the test. A Manifest must be sane."""
    try:
        manifest = parse_mpd(text, MPD_URL, max_segment_urls=budget)
    except MpdError as error:
        assert str(error)  # a message, never empty
        event("MpdError")
        return None
    event("Manifest")
    urls = 0
    assert manifest.periods and manifest.min_buffer_s >= 0
    for aset in manifest.adaptation_sets():
        rates = [r.bandwidth_bps for r in aset.representations]
        assert rates == sorted(rates) and rates[0] > 0
        assert all(len(kid) == 32 and int(kid, 16) >= 0 for kid in aset.default_kids())
        for rep in aset.representations:
            assert 1 <= len(rep.base_urls) <= MAX_BASE_URL_CHOICES
            previous_start = -math.inf
            for segment in rep.segments:
                assert 1 <= len(segment.urls) <= MAX_BASE_URL_CHOICES
                assert all(urlsplit(u).scheme for u in segment.urls)
                assert math.isfinite(segment.start_s) and segment.start_s >= previous_start
                assert math.isfinite(segment.duration_s) and segment.duration_s > 0
                if segment.byte_range is not None:
                    assert 0 <= segment.byte_range[0] <= segment.byte_range[1]
                previous_start = segment.start_s
                urls += len(segment.urls)
    assert urls <= budget
    return manifest


@st.composite
def mutated_trees(draw: st.DrawFn) -> str:
    """A seed MPD with 1 to 4 structural mutations, serialized again."""
    root = ET.fromstring(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])  # trusted seeds: the stdlib parser is fine
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        elements = list(root.iter())
        element = draw(st.sampled_from(elements))
        action = draw(st.sampled_from(["set", "set", "set", "drop-attr", "delete", "duplicate", "text", "namespace"]))
        if action == "set":
            names = sorted(set(element.attrib) | set(ATTRIBUTES))
            element.set(draw(st.sampled_from(names)), draw(values))
        elif action == "drop-attr" and element.attrib:
            del element.attrib[draw(st.sampled_from(sorted(element.attrib)))]
        elif action in ("delete", "duplicate") and element is not root:
            parent = next(p for p in elements if element in list(p))
            if action == "delete":
                parent.remove(element)
            else:
                parent.insert(list(parent).index(element), copy.deepcopy(element))
        elif action == "text":
            element.text = draw(values)
        elif action == "namespace":
            local = element.tag.rsplit("}", 1)[-1]
            namespace = draw(namespaces)
            element.tag = f"{{{namespace}}}{local}" if namespace else local
    return ET.tostring(root, encoding="unicode")


@fuzz(250)
@given(mutated_trees())
def test_structural_mutations_give_a_manifest_or_mpd_error(text: str) -> None:
    check(text)


@fuzz(100)
@given(st.sampled_from(sorted(SEEDS)), st.floats(min_value=0.0, max_value=1.0))
def test_truncation_at_any_point_gives_mpd_error(seed: str, where: float) -> None:
    data = SEEDS[seed].rstrip().encode()
    cut = int(where * (len(data) - 1))
    assert check(data[:cut]) is None  # every seed ends with its root's end tag: a cut one is incomplete


@fuzz(80)
@given(st.sampled_from(sorted(SEEDS)), st.lists(st.tuples(st.floats(0.0, 1.0), st.binary(min_size=1, max_size=8)),
                                                 min_size=1, max_size=4))
def test_byte_splices_give_a_manifest_or_mpd_error(seed: str, splices: list[tuple[float, bytes]]) -> None:
    data = bytearray(SEEDS[seed].encode())
    for where, junk in splices:
        at = int(where * (len(data) - 1))
        data[at : at + len(junk)] = junk
    check(bytes(data))


@fuzz(40)
@given(st.sampled_from(sorted(SEEDS)), st.sampled_from(DOCTYPES), st.booleans())
def test_any_injected_dtd_or_entity_is_refused(seed: str, doctype: str, use_entity: bool) -> None:
    text = SEEDS[seed]
    at = text.index("<MPD")
    text = text[:at] + doctype + text[at:]
    if use_entity:
        text = text.replace("<Period", "<Period title='&x;&c;'", 1)
    with pytest.raises(MpdError, match="DTD"):
        parse_mpd(text, MPD_URL)


NUMERIC = ("t", "d", "r", "duration", "timescale", "startNumber", "endNumber", "presentationTimeOffset", "width",
           "height", "bandwidth", "audioSamplingRate")


@fuzz(60)
@given(
    st.lists(
        st.tuples(st.sampled_from(NUMERIC), st.one_of(st.integers(-(2**64), 2**64), st.integers(-3, 100_000))),
        min_size=1,
        max_size=6,
    ),
    st.data(),
)
def test_huge_numbers_keep_memory_bounded_by_the_budget(changes: list[tuple[str, int]], data: st.DataObject) -> None:
    root = ET.fromstring(SEEDS[data.draw(st.sampled_from(sorted(SEEDS)))])
    elements = list(root.iter())
    for name, number in changes:
        candidates = [e for e in elements if name in e.attrib] or elements
        data.draw(st.sampled_from(candidates)).set(name, str(number))
    text = ET.tostring(root, encoding="unicode")
    tracemalloc.start()
    try:
        check(text, budget=2_000)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 8 * 1024 * 1024  # a few MB for the tree and 2,000 segment URLs, whatever the numbers say


BASES = ("http://h/a/b/m.mpd?q=1#f", "http://h", "http://h/", "https://h/a/../b/./m.mpd", "file:///x/y/m.mpd",
         "http://h/s/t0k/x/", "abrkit:license", "http://h/a/b/..")
DIRECTORIES = ("", "a/", "../", "./", "/", "//other/", "http://c/d/", "x:y/", "?q/", "#f/", " ", "%2e/")


@settings(max_examples=300, database=None, deadline=None)
@given(
    st.sampled_from(BASES),
    st.lists(st.sampled_from(DIRECTORIES), max_size=3).map("".join),
    st.text(alphabet="ab1.:?#/% \t", max_size=8),
)
def test_fast_url_resolution_equals_urljoin(base: str, directory: str, last: str) -> None:
    reference = directory + last
    assert _Resolver((base,), "test")(reference) == (urljoin(base, reference),)
