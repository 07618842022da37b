"""DASH names both ends use: XML namespaces, scheme ids and the license-URL placeholder.

The packager writes these into every MPD (ISO/IEC 23009-1; CENC signalling per ISO/IEC 23001-7 and
DASH-IF IOP 4.3 section 7), the edge rewrites the placeholder, and the player's MPD reader looks
them up.
"""

from __future__ import annotations

import uuid

MPD_NS = "urn:mpeg:dash:schema:mpd:2011"
CENC_NS = "urn:mpeg:cenc:2013"
DASHIF_NS = "https://dashif.org/CPS"
PROFILE_LIVE = "urn:mpeg:dash:profile:isoff-live:2011"
MP4_PROTECTION_SCHEME = "urn:mpeg:dash:mp4protection:2011"
CLEARKEY_SCHEME = "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"
# The W3C common PSSH system id (W3C "Common SystemID and PSSH Box Format"): the pssh box of our init
# segments. The MPD does not name it: browser players take a ContentProtection with this scheme for
# ClearKey and hand its pssh to the CDM as 'keyids' init data, which Chromium refuses.
W3C_COMMON_SYSTEM_ID = uuid.UUID("1077efec-c0b2-4d02-ace3-3c1e52e2fb4b")
AUDIO_CHANNEL_SCHEME = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
ROLE_SCHEME = "urn:mpeg:dash:role:2011"

LAURL_PLACEHOLDER = "abrkit:license-url"  # the packager writes it as Laurl; the edge puts its license URL there

# Live (ISO/IEC 23009-1 section 5.8.5.7 UTCTiming schemes; DASH-IF IOP low-latency profile).
UTC_HTTP_XSDATE_SCHEME = "urn:mpeg:dash:utc:http-xsdate:2014"
UTC_HTTP_ISO_SCHEME = "urn:mpeg:dash:utc:http-iso:2014"
PROFILE_DASHIF_LOW_LATENCY = "http://www.dashif.org/guidelines/low-latency-live-v5"
TIME_URL_PLACEHOLDER = "abrkit:time-url"  # a live MPD's UTCTiming value; the edge puts its own /time there
