"""Default read deadlines of ``allowance serve`` (seconds), apart from the protocol that applies
them (``http/protocol.py``) so the CLI can show them without importing uvicorn."""

HEADER_TIMEOUT = 10.0  # a whole request head, from the connection or the next request's byte
BODY_TIMEOUT = 10.0  # a whole body, from the end of its head
