"""A local Bot API-compatible server with a web chat page: a development and test tool.

Nothing in `bot/`, `handlers/` or `storage/` imports it; production runs never start it.
"""
