"""The PostgreSQL store's SQL: its schema and migrations, the index for each
lookup in INDEXES, and the statements for subset lookups and claims.

Kept apart from the store (postgres.py), which runs them: what is here is
plain text built from the kind and the keys, and tests EXPLAIN it.
"""

from __future__ import annotations

from typing import Any

from .base import INDEXES, Document, check_key

# `(data->'due')::float8` alone fails on a JSON null (and a string), which
# would make the insert of such a document fail; the CASE keeps the
# expression total and immutable, so it can be indexed.
DUE = "(CASE WHEN jsonb_typeof(data->'due') = 'number' THEN (data->'due')::float8 END)"
LEASE = ("(CASE WHEN jsonb_typeof(data->'lease_until') = 'number' "
         "THEN (data->'lease_until')::float8 END)")

# What every read selects, in this order (the store's _doc takes them so).
COLUMNS = "seq, id, data, blob"

# Per kind, the keys compared by jsonb equality so that its btrees serve them.
EQUALITY_KEYS: dict[str, set[str]] = {kind: {k for keys in lookups for k in keys if k != "due"}
                 for kind, lookups in INDEXES.items()}


def claim_sql(kind: str) -> str:
    """The claim statement for `kind`: $1 now, $2 limit, $3 owner, $4 end of lease.

    The CTE walks the kind's due index in due order. SKIP LOCKED passes over
    rows another claimer is leasing right now, and the conditions are checked
    again on the latest version of each row, so a document claimed and
    committed meanwhile (its due moved on) is not taken twice. Documents
    written before leases moved into `due` may still carry a `lease_until`;
    it is honoured.
    """
    return f"""WITH picked AS (
        SELECT seq, {DUE} AS was_due FROM docs
        WHERE kind = '{check_key(kind)}' AND {DUE} <= $1 AND coalesce({LEASE}, 0) <= $1
        ORDER BY {DUE}
        LIMIT $2
        FOR UPDATE SKIP LOCKED)
    UPDATE docs SET data = docs.data || jsonb_build_object(
        'lease_owner', $3::text, 'due', $4::float8)
    FROM picked WHERE docs.seq = picked.seq
    RETURNING docs.seq, docs.id, docs.data, docs.blob, picked.was_due"""


# The distinct kinds, one index probe each (a loose index scan on docs_kind_seq)
# rather than a DISTINCT over every row.
KINDS_SQL = """WITH RECURSIVE k(kind) AS (
        SELECT min(kind) FROM docs
        UNION ALL
        SELECT (SELECT min(kind) FROM docs WHERE docs.kind > k.kind) FROM k
        WHERE k.kind IS NOT NULL)
    SELECT kind FROM k WHERE kind IS NOT NULL"""


# Versioned schema changes, applied in order under the advisory lock. Never
# edit a released entry: add a new version.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE docs (
            seq bigserial PRIMARY KEY,
            kind text NOT NULL,
            id text NOT NULL,
            data jsonb NOT NULL,
            UNIQUE (kind, id)
        )""",
        # Listing a whole kind in seq order (get with no subset, paging).
        "CREATE INDEX docs_kind_seq ON docs (kind, seq)",
        # Any other subset lookup: `data @> $n` on any key, nested objects and
        # arrays included. Every write of every kind pays for it; it is what
        # keeps a lookup the INDEXES do not foresee from reading the whole kind.
        "CREATE INDEX docs_data ON docs USING gin (data jsonb_path_ops)",
        """CREATE TABLE notices (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            payload jsonb NOT NULL
        )""",
    ]),
    # A document's bytes beside its JSON (base.BLOB): no escaping or base64.
    (2, ["ALTER TABLE docs ADD COLUMN blob bytea"]),
    # The GIN index of version 1 goes: every lookup the service makes has
    # its btree (INDEXES), and the GIN cost every write of every kind (each
    # claim, status change and delete): a tenth of the server's CPU per
    # message sent (bench/pipeline.py, 1.48 -> 1.32 ms). A subset lookup by
    # other keys still works, filtered within the kind, as on SQLite.
    (3, ["DROP INDEX IF EXISTS docs_data"]),
]


def column_sql(key: str) -> str:
    """How an indexed key is compared: `due` as a number (claims order by it),
    every other key as its jsonb value."""
    return DUE if key == "due" else f"(data->'{check_key(key)}')"


def key_indexes() -> dict[str, str]:
    """name → CREATE INDEX for each lookup in INDEXES.

    Partial on the kind, as in the SQLite store: a write pays only for its own
    kind's indexes, and a query that names the kind as a literal can use
    them. Made on every open when missing rather than in a migration, so
    adding a lookup to INDEXES is enough to get its index. (On a large table,
    make a new one by hand with CREATE INDEX CONCURRENTLY before upgrading:
    made here, it holds writers back while it builds.)
    """
    out = {}
    for kind, lookups in INDEXES.items():
        for keys in lookups:
            name = f"docs_{check_key(kind)}_{'_'.join(keys)}"
            if keys == ("due",):
                # Claims: due order, and only documents that can ever be due.
                out[name] = f"CREATE INDEX {name} ON docs ({DUE}) WHERE kind = '{kind}' " \
                            f"AND {DUE} IS NOT NULL"
            else:
                cols = ", ".join(column_sql(k) for k in keys)
                out[name] = f"CREATE INDEX {name} ON docs ({cols}, seq) WHERE kind = '{kind}'"
    return out


def where_sql(kind: str, subset: Document | None) -> tuple[str, list[Any]] | None:
    """WHERE clause and parameters for documents of `kind` containing `subset`;
    None when nothing can match (ids are always strings)."""
    # The kind as a literal: a generic plan can only use the kind's partial
    # indexes when it can prove `kind = '…'` without knowing the parameters.
    clauses = [f"kind = '{check_key(kind)}'"]
    params: list[Any] = []
    indexed = EQUALITY_KEYS.get(kind, ())
    rest: Document = {}
    for key, value in (subset or {}).items():
        if key == "id":
            if not isinstance(value, str):
                return None
            params.append(value)
            clauses.append(f"id = ${len(params)}")
        elif key in indexed and isinstance(value, (str, int, float)):
            # For a scalar, jsonb equality is exactly what `@>` means (a
            # string is not a number, true is not 1, 1 is 1.0), and it is
            # what the kind's btree is on. Not also put in `@>`: the planner
            # would count the same condition twice, expect almost no rows,
            # and sort a bitmap scan instead of walking the index in seq order.
            params.append(value)
            clauses.append(f"{column_sql(key)} = ${len(params)}::jsonb")
        else:
            rest[key] = value
    if rest:
        params.append(rest)
        clauses.append(f"data @> ${len(params)}::jsonb")
    return " AND ".join(clauses), params


def select_sql(kind: str, subset: Document | None = None, *, limit: int | None = None,
               before: int | None = None, newest_first: bool = False,
               ) -> tuple[str, list[Any]] | None:
    """The query `get` runs (None: nothing can match); tests EXPLAIN it."""
    where = where_sql(kind, subset)
    if where is None:
        return None
    sql, params = where
    if before is not None:
        params.append(before)
        sql += f" AND seq < ${len(params)}"
    sql = f"SELECT {COLUMNS} FROM docs WHERE {sql} ORDER BY seq"
    if newest_first:
        sql += " DESC"
    if limit is not None:
        # A literal, not a parameter: a generic plan guesses at a parameter
        # limit and may then prefer sorting every match to walking the
        # seq-ordered index.
        sql += f" LIMIT {int(limit)}"
    return sql, params
