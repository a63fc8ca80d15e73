"""The hot routes' own parser (http/fastpath.py) takes a body only if every member is one the
request schema knows; anything else goes to the FastAPI route, whose model answers it. Its
list of members must be exactly the schema's: a member the schema gains but the fast path
lacks would send every such request the slow way, and one the fast path keeps after the schema
drops it would be accepted without validation."""

from __future__ import annotations

from allowance.http.fastpath import MEMBERS
from allowance.http.schemas import DecisionRequest


def test_the_fast_path_knows_exactly_the_request_schema_members() -> None:
    assert set(DecisionRequest.model_fields) == MEMBERS
