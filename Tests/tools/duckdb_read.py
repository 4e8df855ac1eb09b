#!/usr/bin/env python3
"""Reads a Persistor ndjson archive with DuckDB's read_json, as an analyst would, and prints the
rows as JSON: {"rows": [{"id", "source", "route", "eventTime", "dt", "hour", "payload_b64"}]}.

usage: duckdb_read.py STORE_DIR
"""
import base64
import json
import sys

import duckdb


def main():
    store = sys.argv[1]
    con = duckdb.connect()
    # Columns that no record has (eventTime, dataBase64) are absent, so select * and look them up.
    result = con.execute(
        "SELECT * FROM read_json(?, format = 'newline_delimited', hive_partitioning = true,"
        " union_by_name = true) ORDER BY id",
        [f"{store}/**/*.ndjson.gz"],
    )
    names = [column[0] for column in result.description]
    out = []
    for values in result.fetchall():
        row = dict(zip(names, values))
        if row.get("data") is not None:
            payload = row["data"].encode("utf-8")
        else:
            payload = base64.b64decode(row["dataBase64"])
        out.append({"id": row["id"], "source": row["source"], "route": row["route"],
                    "eventTime": str(row.get("eventTime")), "dt": str(row["dt"]), "hour": str(row["hour"]),
                    "payload_b64": base64.b64encode(payload).decode()})
    json.dump({"rows": out}, sys.stdout)


if __name__ == "__main__":
    main()
