"""The formats both ends speak: ISO-BMFF boxes and `sidx`, `segments.json`, DASH names, CMCD,
base64url, the title-name rule and URL helpers.

A leaf: it imports nothing else of ours, and no PyAV or aiohttp, so the player and every service
can use it without pulling in the packager or a web framework (tests/test_import_rules.py).
"""
