"""``voicemesh keys create|list|revoke`` and ``voicemesh usage``."""

from __future__ import annotations

import argparse
import json
import sys
import time

from voicemesh.errors import VoiceMeshError
from voicemesh.metering import keys, quotas, report
from voicemesh.metering.ledger import LEDGER_ENV, LedgerStore, default_url, open_store
from voicemesh.metering.prices import PRICES_ENV, PriceTable
from voicemesh.metering.records import COST, PERIODS, UNITS, KeyRecord, Quota

_LEDGER_HELP = (f"ledger URL, e.g. sqlite:///path/ledger.db or postgresql://user:password@host:5432/db "
                f"[env {LEDGER_ENV}; default ledger.db in "
                "$VOICEMESH_STATE_DIR or ~/.voicemesh, where `voicemesh up` keeps it]")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``keys`` and ``usage`` to the ``voicemesh`` command line."""
    _add_keys(commands)
    _add_usage(commands)


def _ledger_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ledger", default=None, help=_LEDGER_HELP)


def _add_keys(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "keys", help="create, list and revoke API keys",
        description="Manage the API keys of a VoiceMesh ledger. Clients send a key as "
        "'authorization: Bearer <key>' metadata; the ledger stores only a salted hash of it.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create", help="create a key and print it (once)",
        description="Create an API key and print it on stdout; it cannot be shown again. Quotas look like "
        f"UNIT=LIMIT[/PERIOD] with UNIT one of {', '.join((*UNITS, COST))} and PERIOD one of "
        f"{', '.join(PERIODS)} (default total); a cost quota needs the servers' --prices table.")
    create.add_argument("name", help="what the key is for (a person, an app)")
    create.add_argument("--expires", help="expiry: a duration from now (30d, 12h, 45m) or a UTC date/time (2026-12-31)")
    create.add_argument("--quota", action="append", default=[], metavar="UNIT=LIMIT[/PERIOD]",
                        help="a quota, e.g. audio_seconds_in=3600/day or cost=5/month (repeatable)")
    create.add_argument("--key-file", help="also write the key to this file (mode 0600)")
    create.add_argument("--json", action="store_true", help="print the key and its record as JSON")
    _ledger_arg(create)
    create.set_defaults(handler=_keys_create)

    listing = actions.add_parser("list", help="list keys with their state and quota use",
                                 description="List the keys of the ledger (never the keys themselves: id, name, "
                                 "state, dates and quotas with what is used of them in the current period).")
    listing.add_argument("--format", choices=("table", "json"), default="table", help="output format (default table)")
    listing.add_argument("--prices", help=f"price table for cost quotas [env {PRICES_ENV}]")
    _ledger_arg(listing)
    listing.set_defaults(handler=_keys_list)

    revoke = actions.add_parser("revoke", help="revoke a key at once",
                                description="Revoke a key by id (or by name when one active key has it); its "
                                "RPCs get PERMISSION_DENIED from then on. Its usage stays in the ledger.")
    revoke.add_argument("key", metavar="ID_OR_NAME", help="key id (as in 'keys list') or name")
    _ledger_arg(revoke)
    revoke.set_defaults(handler=_keys_revoke)


def _add_usage(commands: argparse._SubParsersAction) -> None:
    usage = commands.add_parser(
        "usage", help="report usage and cost from the ledger",
        description="Sum the usage records of the ledger (audio seconds, tokens, characters) per group, with "
        "their cost from the price table when one is given. Cost is computed now; it is never stored.")
    usage.add_argument("--key", help="only this key (id, or name: every key with that name)")
    usage.add_argument("--since", help="only records since a duration ago (7d, 12h) or a UTC date/time (2026-11-01)")
    usage.add_argument("--by", choices=report.GROUPS, default="model", help="group rows by (default model)")
    usage.add_argument("--format", choices=("table", "csv", "json"), default="table",
                       help="output format (default table)")
    usage.add_argument("--prices", help=f"price table (JSON or TOML) for the cost column [env {PRICES_ENV}]")
    _ledger_arg(usage)
    usage.set_defaults(handler=_usage)


def _run(args: argparse.Namespace, work) -> int:
    """Open the ledger, run ``work(store)``, print errors for a person."""
    try:
        store = open_store(args.ledger or default_url())
    except (VoiceMeshError, ValueError, OSError) as exc:
        print(f"voicemesh {args.command}: cannot open the ledger: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    try:
        return work(store)
    except (VoiceMeshError, ValueError, OSError) as exc:
        print(f"voicemesh {args.command}: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    finally:
        store.close()


def _keys_create(args: argparse.Namespace) -> int:
    def work(store: LedgerStore) -> int:
        limits = [Quota.parse(text) for text in args.quota]
        expires = keys.parse_time(args.expires) if args.expires else None
        record, text = keys.create_key(store, args.name, expires=expires, quotas=limits)
        if args.key_file:
            keys.write_key_file(args.key_file, text)
        if args.json:
            print(json.dumps({"key": text, **_key_json(record)}, indent=2))
        else:
            print(text)
            print(f"created key {record.id} ({record.name}); it is shown only now", file=sys.stderr)
        return 0

    return _run(args, work)


def _key_json(record: KeyRecord, uses: list[quotas.QuotaUse] | None = None) -> dict:
    entry = {"id": record.id, "name": record.name, "state": record.state(), "created": keys.iso(record.created),
             "expires": keys.iso(record.expires) if record.expires else None,
             "revoked": keys.iso(record.revoked) if record.revoked else None,
             "quotas": [q.to_dict() for q in record.quotas]}
    if uses is not None:
        entry["quotas"] = [{**u.quota.to_dict(), "used": u.used, "resets": keys.iso(u.resets) if u.resets else None}
                           for u in uses]
    return entry


def _keys_list(args: argparse.Namespace) -> int:
    def work(store: LedgerStore) -> int:
        prices = PriceTable.from_setting(args.prices)
        entries = []
        for record in store.list_keys():
            entries.append(_key_json(record, quotas.status(store, record, prices)))
        if args.format == "json":
            print(json.dumps(entries, indent=2))
            return 0
        print(f"{'ID':<12}  {'NAME':<20}  {'STATE':<7}  {'CREATED':<20}  {'EXPIRES':<20}  QUOTAS (used/limit)")
        for e in entries:
            limits = ", ".join(f"{q['unit']} {'?' if q['used'] is None else format(q['used'], 'g')}/{q['limit']:g} "
                               f"per {q['period']}" for q in e["quotas"])
            print(f"{e['id']:<12}  {e['name']:<20}  {e['state']:<7}  {e['created']:<20}  "
                  f"{e['expires'] or '-':<20}  {limits or '-'}")
        return 0

    return _run(args, work)


def _keys_revoke(args: argparse.Namespace) -> int:
    def work(store: LedgerStore) -> int:
        record = keys.find_key(store, args.key)
        if not store.revoke_key(record.id, time.time()):
            print(f"key {record.id} ({record.name}) was already revoked", file=sys.stderr)
            return 1
        print(f"revoked key {record.id} ({record.name})")
        return 0

    return _run(args, work)


def _usage(args: argparse.Namespace) -> int:
    def work(store: LedgerStore) -> int:
        prices = PriceTable.from_setting(args.prices)
        since = keys.parse_time(args.since, future=False) if args.since else None
        records = store.usage(since=since)
        if args.key:
            ids = {k.id for k in store.list_keys() if args.key in (k.id, k.name)}
            if not ids:
                print(f"voicemesh usage: no key with id or name {args.key!r}", file=sys.stderr)
                return 2
            records = [r for r in records if r.key_id in ids]
        rows, total = report.summarize(records, args.by, prices)
        print(report.render(rows, total, args.format, prices.currency if prices else ""))
        return 0

    return _run(args, work)
