"""``deeplens tenant …``: operator commands run against the database directly, acting as the
platform (a system-admin principal): list, usage, set-tier, set-limit, suspend, reactivate."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from shared.auth.principal import SYSTEM_ADMIN, Principal

if TYPE_CHECKING:
    from shared.bootstrap import Container
    from shared.store.tenants import TenantRow

OPERATOR = Principal(tenant_id=None, role=SYSTEM_ADMIN)


def _container(args: argparse.Namespace) -> Container:
    from shared.bootstrap import Container
    from shared.config import Settings

    env = dict(os.environ)
    if getattr(args, "data_dir", None):
        env["DEEPLENS_DATA_DIR"] = str(args.data_dir)
    c = Container(Settings.from_env(env))
    c.open()
    return c


def _tenant(c: Container, slug: str) -> TenantRow:
    t = c.tenants.get_by_slug_internal(slug)
    if t is None:
        raise SystemExit(f"no tenant with slug {slug!r}")
    return t


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")


def cmd(args: argparse.Namespace) -> int:
    c = _container(args)
    try:
        if args.tenant_command == "list":
            rows = c.tenants.list(OPERATOR, limit=1000)
            _print(
                f"{'slug':<28} {'tier':<13} {'status':<10} {'users':>5} {'calls/day':>10}"
                f" {'storage':>14}  id"
            )
            for t in rows:
                _print(
                    f"{t.slug:<28} {t.tier:<13} {t.status:<10} {t.max_users:>5}"
                    f" {t.max_api_calls_per_day:>10} {t.max_storage_bytes:>14}  {t.id}"
                )
        elif args.tenant_command == "usage":
            a = c.analytics.tenant(OPERATOR, tenant_id=_tenant(c, args.slug).id)
            for key in (
                "tier",
                "status",
                "storageUsed",
                "storageLimit",
                "imageCount",
                "users",
                "userLimit",
                "apiCallsToday",
                "apiCallLimit",
                "searchesToday",
                "uploadsToday",
                "pipelineBacklog",
                "failedImages",
            ):
                _print(f"{key:<16} {a[key]}")
        elif args.tenant_command == "set-tier":
            t = c.tenants.update(
                OPERATOR, tenant_id=_tenant(c, args.slug).id, changes={"tier": args.tier}
            )
            _print(
                f"{t.slug}: tier {t.tier} (storage {t.max_storage_bytes}, users"
                f" {t.max_users}, calls/day {t.max_api_calls_per_day})"
            )
        elif args.tenant_command == "set-limit":
            changes = {
                k: v
                for k, v in (
                    ("max_storage_bytes", args.storage),
                    ("max_users", args.users),
                    ("max_api_calls_per_day", args.calls),
                )
                if v is not None
            }
            if not changes:
                raise SystemExit("give --storage, --users or --calls")
            t = c.tenants.update(OPERATOR, tenant_id=_tenant(c, args.slug).id, changes=changes)
            _print(
                f"{t.slug}: storage {t.max_storage_bytes}, users {t.max_users},"
                f" calls/day {t.max_api_calls_per_day}"
            )
        elif args.tenant_command in ("suspend", "reactivate"):
            status = "Suspended" if args.tenant_command == "suspend" else "Active"
            c.tenants.set_status(OPERATOR, tenant_id=_tenant(c, args.slug).id, status=status)
            _print(f"{args.slug}: {status}")
    finally:
        c.close()
    return 0


def add_tenant_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tenant = sub.add_parser("tenant", help="operate tenants (tiers, limits, suspension)")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", help="the data dir of `deeplens up` (embedded database)")
    tsub = tenant.add_subparsers(dest="tenant_command", required=True)
    tsub.add_parser("list", help="every tenant with its tier and limits", parents=[common])
    usage = tsub.add_parser("usage", help="usage against the tier's limits", parents=[common])
    usage.add_argument("slug")
    tier = tsub.add_parser("set-tier", help="change the tier (and its limits)", parents=[common])
    tier.add_argument("slug")
    tier.add_argument("tier", choices=["Free", "Professional", "Enterprise"])
    limit = tsub.add_parser(
        "set-limit", help="raise or lower one tenant's limits", parents=[common]
    )
    limit.add_argument("slug")
    limit.add_argument("--storage", type=int, help="bytes")
    limit.add_argument("--users", type=int)
    limit.add_argument("--calls", type=int, help="API calls per UTC day")
    for name in ("suspend", "reactivate"):
        p = tsub.add_parser(name, help=f"{name} a tenant", parents=[common])
        p.add_argument("slug")
    tenant.set_defaults(func=cmd)
