"""``deeplens models …`` and ``deeplens reindex``: the model lifecycle, run against the
database directly as the platform operator (the running platform's broker and extract
function do the re-embedding).

    deeplens models migrate --to efficientnet-lite0:gem:320 [--tenant SLUG]
    deeplens models status [--json]
    deeplens models cutover | rollback | cleanup [--tenant SLUG]
    deeplens models register NAME --file PATH|--url URL --input-size N --dim D
                             [--mean a,b,c --std a,b,c --pooling inside|avg|gem]
    deeplens reindex [--tenant SLUG | --all]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from shared.errors import DeepLensError
from shared.tenant_cli import OPERATOR, _container


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")


def _tenant_id(c: Any, slug: str | None) -> uuid.UUID | None:
    if slug is None:
        return None
    t = c.tenants.get_by_slug_internal(slug)
    if t is None:
        raise SystemExit(f"no tenant with slug {slug!r}")
    return uuid.UUID(str(t.id))


def _triple(text: str) -> tuple[float, float, float]:
    parts = [float(x) for x in text.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("three comma-separated numbers")
    return parts[0], parts[1], parts[2]


def print_status(s: dict[str, Any]) -> None:
    p = s["platform"]
    _print(f"platform  active {p['activeModel']}  target {p['targetModel'] or '-'}")
    if p["previousModel"]:
        _print(f"          previous {p['previousModel']} (kept for rollback until cleanup)")
    for m in s["models"]:
        _print(f"model {m['model']:<34} {m['dimension']:>5}-d  similarity: {m['similarity']}")
    _print(
        f"{'tenant':<24} {'images':>6} {'active':<36} {'other':<36} {'done':>5} {'left':>5}"
        f" {'fail':>4} {'rate/s':>7} {'eta s':>7}"
    )
    for t in s["tenants"]:
        pr = t.get("progress") or {}
        other = f"{t['otherModel']} ({t['otherRole']})" if t["otherModel"] else "-"
        eta = pr.get("etaSeconds")
        _print(
            f"{t['slug'][:24]:<24} {t['images']:>6} {t['activeModel'][:36]:<36} {other[:36]:<36}"
            f" {pr.get('done', '-'):>5} {pr.get('remaining', '-'):>5} {pr.get('failures', '-'):>4}"
            f" {pr.get('ratePerSecond', '-'):>7} {'-' if eta is None else eta:>7}"
        )
    tot = s["totals"]
    eta = "-" if tot["etaSeconds"] is None else tot["etaSeconds"]
    _print(
        f"total: {tot['done']} done, {tot['remaining']} remaining, {tot['failures']} failed,"
        f" {tot['ratePerSecond']}/s, ETA {eta} s"
    )


def cmd_models(args: argparse.Namespace) -> int:
    c = _container(args)
    try:
        m = c.migrations
        tenant = _tenant_id(c, getattr(args, "tenant", None))
        action = args.models_command
        if action == "migrate":
            s = m.migrate(OPERATOR, args.to, tenant_id=tenant)
            _print(f"migrating to {args.to}; dual-writing new uploads, backfill queued")
            print_status(s)
        elif action == "status":
            while True:
                s = m.status(OPERATOR, tenant_id=tenant)
                if args.json:
                    _print(json.dumps(s, indent=2, default=str))
                else:
                    print_status(s)
                if not args.watch or s["totals"]["remaining"] == 0:
                    break
                time.sleep(args.watch)
        elif action in ("cutover", "rollback", "cleanup"):
            results = getattr(m, action)(OPERATOR, tenant_id=tenant)
            for r in results:
                _print(json.dumps(r))
            if any(not r.get("ok", True) for r in results):
                return 2
        elif action == "register":
            from shared.custom_models import Registration

            source = args.url or str(Path(args.file).resolve())
            out = c.custom_models.register(
                OPERATOR,
                Registration(
                    name=args.name,
                    source=source,
                    input_size=args.input_size,
                    mean=args.mean,
                    std=args.std,
                    dim=args.dim,
                    pooling=args.pooling,
                ),
            )
            _print(json.dumps(out, indent=2))
        elif action == "list":
            _print(json.dumps(c.custom_models.list(OPERATOR), indent=2))
    except DeepLensError as exc:
        sys.stderr.write(f"error: {exc.code}: {exc.message}\n")
        return 1
    finally:
        c.close()
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    if not args.all and not args.tenant:
        raise SystemExit("name a tenant (--tenant SLUG) or pass --all")
    c = _container(args)
    try:
        n = c.migrations.reindex(OPERATOR, tenant_id=_tenant_id(c, args.tenant))
        _print(f"reindexing the active space of {n} tenant(s); see `deeplens models status`")
    except DeepLensError as exc:
        sys.stderr.write(f"error: {exc.code}: {exc.message}\n")
        return 1
    finally:
        c.close()
    return 0


def add_models_commands(sub: Any) -> None:
    models = sub.add_parser("models", help="change the model without downtime")
    msub = models.add_subparsers(dest="models_command", required=True)

    def common(p: argparse.ArgumentParser, tenant: bool = True) -> None:
        p.add_argument("--data-dir", type=Path)
        if tenant:
            p.add_argument("--tenant", help="one tenant (slug); default: the platform")
        p.set_defaults(func=cmd_models)

    mig = msub.add_parser("migrate", help="start a migration: target space, dual-write, backfill")
    mig.add_argument("--to", required=True, help="name[:pooling[:size]]")
    common(mig)
    st = msub.add_parser("status", help="progress: done, remaining, rate, ETA, failures")
    st.add_argument("--json", action="store_true")
    st.add_argument("--watch", type=float, default=0, help="repeat every N seconds until done")
    common(st)
    for name, text in (
        ("cutover", "switch each complete tenant to the target (atomic per tenant)"),
        ("rollback", "return to the previous space (until cleanup)"),
        ("cleanup", "drop the other space (previous, or an abandoned target)"),
    ):
        common(msub.add_parser(name, help=text))
    reg = msub.add_parser("register", help="register your own ONNX image encoder")
    reg.add_argument("name")
    src = reg.add_mutually_exclusive_group(required=True)
    src.add_argument("--file")
    src.add_argument("--url")
    reg.add_argument("--input-size", type=int, required=True)
    reg.add_argument("--dim", type=int, required=True)
    reg.add_argument("--mean", type=_triple, default=(0.485, 0.456, 0.406))
    reg.add_argument("--std", type=_triple, default=(0.229, 0.224, 0.225))
    reg.add_argument("--pooling", choices=["inside", "avg", "gem"], default="inside")
    common(reg, tenant=False)
    common(msub.add_parser("list", help="registered ONNX models"), tenant=False)

    rx = sub.add_parser("reindex", help="rebuild the active space's vectors from the originals")
    group = rx.add_mutually_exclusive_group()
    group.add_argument("--tenant", help="one tenant (slug)")
    group.add_argument("--all", action="store_true")
    rx.add_argument("--data-dir", type=Path)
    rx.set_defaults(func=cmd_reindex)
