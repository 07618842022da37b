"""Live channels: a packaged title looped forever on the wall clock (docs/LIVE-SERVER.md)."""
