"""The HTTP client: bootstrap, fetch, the MPD parser and the headless driver of the session."""
