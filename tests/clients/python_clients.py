"""Drives a running Riffle server with a Python client written for ksqlDB, unchanged:
`ksqldb` (HTTP/2: /ksql, /inserts-stream, /query-stream) or `ksql` 0.10.2 (/ksql, /query).
They need separate environments (`ksql` pins an old `h2` that breaks `httpx`).
Usage: python_clients.py ksqldb|ksql http://127.0.0.1:PORT — exits non-zero on the first
mismatch."""

import asyncio
import collections
import collections.abc
import sys

which, url = sys.argv[1], sys.argv[2]


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def run_ksqldb():
    """Statements, inserts, a pull query and a push query with LIMIT."""
    import ksqldb

    client = ksqldb.KSQLdbClient(url)
    created = client.ksql(
        "CREATE STREAM orders (id STRING KEY, amount INT) "
        "WITH (kafka_topic='orders', partitions=1, value_format='JSON');"
    )
    check(created[0]["commandStatus"]["message"] == "Stream created", "ksqldb: CREATE STREAM")
    acks = client.inserts_stream("ORDERS", [{"ID": "o1", "AMOUNT": 5}, {"ID": "o2", "AMOUNT": 7}])
    check([a["status"] for a in acks] == ["ok", "ok"], f"ksqldb: inserts_stream acks {acks}")
    pulled = client.query_sync("SELECT id, amount FROM orders;")
    rows = sorted(r for r in pulled if isinstance(r, list))
    check(rows == [["o1", 5], ["o2", 7]], f"ksqldb: pull query rows {rows}")
    async def push():
        rows = []
        async for item in client.query_async(
            "SELECT amount FROM orders EMIT CHANGES LIMIT 2;",
            stream_properties={"auto.offset.reset": "earliest"},
        ):
            if isinstance(item, list):
                rows.append(item)
        return rows

    rows = asyncio.run(push())
    check(rows == [[5], [7]], f"ksqldb: push query rows {rows}")


def drain(chunks):
    """The text of a `ksql` client query. Its generator ends with a StopIteration that
    Python 3.7+ turns into a RuntimeError once the response is complete; the chunks read
    before that are the whole answer."""
    text = []
    try:
        for chunk in chunks:
            text.append(chunk)
    except RuntimeError:
        pass
    return "".join(text).replace(" ", "")


def run_ksql():
    """Statements and the legacy /query endpoint."""
    # `ksql` 0.10.2 depends on `hyper`, written before Python 3.10 moved these names to
    # collections.abc; give them back so the client imports unchanged.
    for name in ("Iterable", "Mapping", "MutableMapping", "MutableSet", "Callable"):
        setattr(collections, name, getattr(collections.abc, name))
    import ksql

    api = ksql.KSQLAPI(url)
    created = api.ksql(
        "CREATE STREAM payments (id STRING KEY, total INT) "
        "WITH (kafka_topic='payments', partitions=1, value_format='JSON');"
    )
    check(created[0]["commandStatus"]["status"] == "SUCCESS", "ksql: CREATE STREAM")
    for row in ("('p1', 3)", "('p2', 4)"):
        try:
            api.ksql(f"INSERT INTO payments (id, total) VALUES {row};")
        except IndexError:
            # ksqlDB answers INSERT … VALUES with an empty list of entities, which this
            # client indexes; the row is written all the same.
            pass
    listed = api.ksql("SHOW STREAMS;")
    names = [s["name"] for s in listed[0]["streams"]]
    check("PAYMENTS" in names, f"ksql: SHOW STREAMS {names}")
    pulled = drain(api.query("SELECT id, total FROM payments;"))
    check(
        '"columns":["p1",3]' in pulled and '"columns":["p2",4]' in pulled,
        f"ksql: pull query {pulled!r}",
    )
    pushed = drain(
        api.query(
            "SELECT id, total FROM payments EMIT CHANGES LIMIT 1;",
            stream_properties={"auto.offset.reset": "earliest"},
        )
    )
    check('"columns":["p1",3]' in pushed, f"ksql: push query {pushed!r}")


{"ksqldb": run_ksqldb, "ksql": run_ksql}[which]()
print(f"{which}: every check passed")
