"""XML safety for hostile MPDs: size, tag and attribute budgets, UTF-8 only, and defusedxml with
no DTD, no entities and no external references (so no XXE and no entity expansion).
"""

from __future__ import annotations

import re
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden

from player.client.mpd.limits import MAX_MPD_ATTRIBUTES, MAX_MPD_BYTES, MAX_MPD_TAGS, MpdError

_DECLARED_ENCODING = re.compile(rb"\A\s*<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z0-9._-]{1,40})[\"']")


def _utf8(text: str | bytes) -> bytes:
    if isinstance(text, str):
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MpdError(f"the MPD text holds a character that is not valid in UTF-8 at index {exc.start}") from None
    elif isinstance(text, (bytes, bytearray, memoryview)):
        data = bytes(text)
    else:
        raise MpdError(f"the MPD must be str or bytes, got {type(text).__name__}")
    if len(data) > MAX_MPD_BYTES:
        raise MpdError(f"the MPD is {len(data)} bytes, more than the {MAX_MPD_BYTES} allowed")
    if (tags := data.count(b"<")) > MAX_MPD_TAGS:
        raise MpdError(f"the MPD has {tags} tags, more than the {MAX_MPD_TAGS} allowed")
    if (attributes := data.count(b"=")) > MAX_MPD_ATTRIBUTES:
        raise MpdError(f"the MPD has {attributes} attributes, more than the {MAX_MPD_ATTRIBUTES} allowed")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MpdError(f"the MPD is not valid UTF-8 (byte {exc.start})") from None
    declared = _DECLARED_ENCODING.match(data)
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise MpdError(f"the MPD declares encoding {declared.group(1).decode()!r}; only UTF-8 is supported")
    return data


def _parse_xml(data: bytes) -> Element:
    try:
        return safe_et.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DTDForbidden:
        raise MpdError("the MPD has a DTD (<!DOCTYPE>), refused: no entities, no external references") from None
    except EntitiesForbidden as exc:
        raise MpdError(f"the MPD declares the entity {exc.name!r}, which is refused (entity expansion)") from None
    except ExternalReferenceForbidden:
        raise MpdError("the MPD refers to an external resource, which is refused (XXE)") from None
    except DefusedXmlException as exc:
        raise MpdError(f"the MPD uses a forbidden XML construct: {exc}") from None
    except ParseError as exc:
        raise MpdError(f"the MPD is not well-formed XML: {exc}") from None
