"""Building blocks of `server.packager`: sources, encoding, fMP4 boxes, MPD, quality, demo clip."""
