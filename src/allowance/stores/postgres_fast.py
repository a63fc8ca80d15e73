"""The PostgreSQL fast path, free of I/O, shared by the sync and async stores: a feature's
decide() statement (its limits written in as constants) and its parameters, and the decision
from decide()'s row. See ``postgres.py`` and ``sql/decide.sql``.

Both stores send the statement through psycopg's libpq layer (``psycopg.pq``), prepared by
name on each connection, with its parameters and row in text: a cursor's ``execute`` costs
about 50 us of Python per call on top of libpq's (the async one about 75), as much as all the
rest of a decision's Python, and with many threads or tasks on few cores that is throughput
lost to the server's share."""

from __future__ import annotations

import hashlib
import json
import logging
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from psycopg import BaseConnection, sql
from psycopg.pq import DiagnosticField, ExecStatus, abc

from allowance import adjust, ledger, ops, owners, rules
from allowance.clock import system_clock
from allowance.errors import UnknownAccount
from allowance.policy import Policy
from allowance.request import Request
from allowance.state import from_rows
from allowance.stores.postgres_conn import error_from_result
from allowance.types import Decision

DECIDE = (
    "SELECT status, at, before, granted, plan, seats, remaining, passed, terms, others"
    " FROM {s}.decide_v13("
    "{p1}, {p2}::float8, {p3}, {p4}, {p5}, {plans}::text[], {access}::int[], {names}::text[],"
    " {kinds}::text, {lengths}::float8[], {costs}::bigint[], {caps}::bigint[], {scale}::int[],"
    " {soft}::bigint[], {load}::float8[], {most}::bigint[], {bounds}::float8[],"
    " {records}::int[], {owners}::text[], {keep}::float8, {reach}::bigint[],"
    " {levels}::float8[], {level_at}::int[], {p6}::text)"
)
log = logging.getLogger("allowance.stores.postgres")
INVALID_STATEMENT_NAME = b"26000"  # SQLSTATE: no prepared statement of that name
DUPLICATE_STATEMENT = b"42P05"  # SQLSTATE: a prepared statement of that name exists
# libpq takes None for NULL; psycopg's stub leaves it out of the type
Params = Sequence[abc.Buffer]


@dataclass(frozen=True, slots=True)
class FastSpec:
    """A feature's decide() statement: its limits written in as constants, so they are parsed
    once, when the statement is prepared; ``periods``: it takes period bounds; ``owned``:
    the user's records (``owners.needed``), each a parameter before the bounds. ``libpq``
    is its text (``$1``... placeholders), prepared as ``name`` (named after the text, so one
    per schema and feature)."""

    libpq: bytes
    name: bytes
    periods: bool
    owned: bool


_specs: weakref.WeakKeyDictionary[rules.FeatureRules, dict[str, FastSpec]] = (
    weakref.WeakKeyDictionary()
)


def fast_spec(policy: Policy, feature: str, schema: str) -> FastSpec:
    """The decide() statement of one feature in ``schema``, made once per compiled rules."""
    return rules.derived(_specs, rules.compiled(policy, feature), schema, _statement)


def _statement(compiled: rules.FeatureRules, schema: str) -> FastSpec:
    """The decide() statement (see sql/decide.sql): the compiled rules (``rules.encode``)
    written in as typed constants."""
    encoded = rules.encode(compiled)
    constants = {
        name: sql.Literal(list(value) if isinstance(value, tuple) else value)
        for name, value in (
            ("plans", encoded.plans),
            ("access", encoded.access),
            ("names", encoded.names),
            ("kinds", encoded.kinds),
            ("lengths", encoded.lengths),
            ("costs", encoded.costs),
            ("caps", encoded.caps),
            ("scale", encoded.scale),
            ("soft", encoded.soft),
            ("load", encoded.load),
            ("most", encoded.most),
            ("records", encoded.records),
            ("keep", rules.KEEP_AFTER),
            ("reach", encoded.reach),
            ("levels", encoded.levels),
            ("level_at", encoded.level_at),
        )
    }
    placeholders = {f"p{i}": sql.SQL(f"${i}") for i in range(1, 7)}
    owned = any(encoded.records)
    periods = bool(compiled.periods)
    more = iter(range(7, 9))  # the parameters after the six of every request
    owner_keys = sql.SQL(f"${next(more)}") if owned else sql.Literal([])
    bounds = sql.SQL(f"${next(more)}") if periods else sql.Literal([])
    text = (
        sql.SQL(DECIDE)
        .format(
            s=sql.Identifier(schema),
            **constants,
            **placeholders,
            bounds=bounds,
            owners=owner_keys,
        )
        .as_string()
        .encode()
    )
    name = b"allowance_decide_" + hashlib.sha256(text).hexdigest()[:24].encode()
    return FastSpec(text, name, periods, owned)


def fast_params(
    policy: Policy, spec: FastSpec, req: Request, now: float | None, charge: bool
) -> Params:
    """The parameters of a feature's decide() statement for one request, in libpq's text
    format (``repr`` of a float reads back exactly; None is NULL)."""
    params: list[bytes | None] = [
        req.account.encode(),
        None if now is None else repr(float(now)).encode(),
        str(req.amount).encode(),
        b"t" if req.partial else b"f",
        b"t" if charge else b"f",
        # the ledger's rows (ledger.head); NULL when off or nothing is charged
        ledger.head(req.feature, req.idempotency_key, req.user).encode()
        if charge and policy.ledger_keep is not None
        else None,
    ]
    if spec.owned:  # the user's records' keys, as a text array literal
        needed = owners.needed(policy, req.feature, req.user)
        keys = (_quoted(owners.record_key(req.account, o)) for o in needed)
        params.append(("{" + ",".join(keys) + "}").encode())
    if spec.periods:
        at = system_clock() if now is None else now  # a local estimate; see sql/decide.sql
        params.append(rules.compiled(policy, req.feature).bounds_as(at, _bounds_param))
    return cast(Params, params)


def _bounds_param(bounds: tuple[float, ...]) -> bytes:
    """Period bounds as a float8 array literal (``repr`` of a float reads back exactly)."""
    return ("{" + ",".join(repr(float(b)) for b in bounds) + "}").encode()


def _quoted(text: str) -> str:
    """An element of a text array literal, quoted."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Prepared:
    """The fast path's statements prepared on each connection, by name (forgotten with it)."""

    def __init__(self) -> None:
        self._names: weakref.WeakKeyDictionary[abc.PGconn, set[bytes]] = weakref.WeakKeyDictionary()

    def has(self, pgconn: abc.PGconn, name: bytes) -> bool:
        names = self._names.get(pgconn)
        return names is not None and name in names

    def add(self, pgconn: abc.PGconn, name: bytes) -> None:
        self._names.setdefault(pgconn, set()).add(name)


def dropped(result: abc.PGresult) -> bool:
    """The prepared statement was not there (psycopg sends DEALLOCATE ALL when it resets its
    own cache): nothing ran, so it is prepared and sent again."""
    return result.error_field(DiagnosticField.SQLSTATE) == INVALID_STATEMENT_NAME


def behind_bouncer() -> bool:
    """A statement prepared again and still missing on the next call: the calls land on
    different server connections, as behind a PgBouncer in transaction pooling mode (before
    1.21, or without ``max_prepared_statements``). The store goes on with unnamed statements
    (returns False, for ``prepare``), saying so once."""
    log.warning(
        "allowance: postgresql: prepared statements vanish between calls (a PgBouncer in"
        " transaction pooling mode?): going on without them; add ?prepare=false to the URL"
    )
    return False


def check_prepared(result: abc.PGresult, conn: BaseConnection[Any]) -> None:
    """PREPARE's result; one that exists already (prepared, then forgotten here) is fine."""
    if result.error_field(DiagnosticField.SQLSTATE) != DUPLICATE_STATEMENT:
        check_result(result, ExecStatus.COMMAND_OK, conn)


def check_result(result: abc.PGresult, expected: ExecStatus, conn: BaseConnection[Any]) -> None:
    """A libpq result that is not what was expected raises psycopg's error for it (the
    connection's encoding is read only then: ``conn.info`` is built anew on every access)."""
    if result.status != expected:
        raise error_from_result(result, encoding=conn.info.encoding)


def _flag(text: bytes) -> bool:
    return text == b"t"


# how psycopg would load each column of decide()'s row from its text
LIBPQ_LOADERS: tuple[Callable[[bytes], Any], ...] = (
    bytes.decode,
    float,
    bytes.decode,
    int,
    bytes.decode,
    int,
    int,
    _flag,
    bytes.decode,
    bytes.decode,
)


def libpq_row(result: abc.PGresult) -> tuple[Any, ...]:
    """decide()'s row, from the text of a PGresult (NULL: None)."""
    value = result.get_value
    return tuple(
        None if (text := value(0, i)) is None else load(text)
        for i, load in enumerate(LIBPQ_LOADERS)
    )


def fast_decision(policy: Policy, req: Request, row: Any) -> Decision | None:
    """The decision from decide()'s row; None when it asked for the slow path. A grant is
    built from the row (its sentence and quota are the engine's, worked out when read); a
    denial is the engine's, replayed on the counters decide() saw, which must agree."""
    status, at, before, granted, plan, seats, remaining, fair, terms, others = row
    if status == "unknown":
        raise UnknownAccount(req.account)
    if status == "slow":
        return None

    def replay() -> Decision:
        counters = from_rows(json.loads(before))
        if others is not None:  # the user's records beside the account's
            stored = [counters, *(from_rows(o) for o in json.loads(others))]
            counters = rules.compiled(policy, req.feature).merged(stored)
        own = adjust.decode(terms)
        return ops.replay(policy, req, plan, seats, counters, own, at, granted, "postgresql")

    return ops.one_step_decision(granted, remaining, fair, replay)
