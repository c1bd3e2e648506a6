"""One audit entry written while the request goes on with what it read.

A read of patient data is recorded before its page or answer leaves, and the entry must be on disk by then:
PostgreSQL flushes its commit to disk, which on a real disk is milliseconds of waiting (3.7 ms per commit on the
benchmark machine), as long as the page takes to render. On PostgreSQL, outside a transaction, the entry's INSERT is
therefore sent at once and its result collected after the caller's work: the flush overlaps the rendering instead
of preceding it. Nothing else changes: the same row, committed on its own (autocommit), and the response still
waits for it.

Uses psycopg's non-blocking libpq calls on Django's own connection (psycopg is pinned in pyproject.toml). While an
entry is in flight the connection is busy, so the block must not use the database: it is refused with a clear
error. Elsewhere (SQLite, inside a transaction) `send` returns None and the caller writes the entry as before.
"""

from __future__ import annotations

from django.db import DatabaseError, connection


class InFlight:
    """An entry's INSERT sent on the connection; `collect` waits for its commit and returns the entry's id."""

    def __init__(self, raw):
        self.raw = raw

    def collect(self) -> int:
        from psycopg import generators, pq

        with self.raw.lock:
            results = self.raw.wait(generators.fetch_many(self.raw.pgconn))
        failed = [r for r in results if r.status != pq.ExecStatus.TUPLES_OK]
        if failed or not results:
            message = failed[0].error_message.decode(errors="replace") if failed else "no result"
            raise DatabaseError(f"The audit entry was not written: {message.strip()}")
        return int(results[0].get_value(0, 0))


def send(row) -> InFlight | None:
    """Send the INSERT of an unsaved model instance without waiting for it, when that can be done on this connection
    (PostgreSQL, autocommit, idle); otherwise None."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return None
    from psycopg import ClientCursor, generators, pq

    connection.ensure_connection()
    raw = connection.connection
    if raw.pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return None
    meta = type(row)._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) RETURNING {quote(meta.pk.column)}"
    )
    values = [f.get_db_prep_save(getattr(row, f.attname), connection) for f in fields]
    with raw.lock:
        query = ClientCursor(raw).mogrify(sql, values)
        raw.pgconn.send_query(query.encode(raw.info.encoding))
        raw.wait(generators.send(raw.pgconn))
    return InFlight(raw)


def refuse_queries(execute, sql, params, many, context):
    raise RuntimeError(
        "The database was used while an audit entry was being written (audit_recorded_while): "
        "read everything the block needs before it."
    )
