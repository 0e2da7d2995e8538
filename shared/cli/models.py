"""``deeplens models …`` and ``deeplens reindex``: the model lifecycle, through the running
platform's admin API (the platform owns the vector engine and does the re-embedding), signed in
as a system administrator (--email or DEEPLENS_ADMIN_EMAIL, DEEPLENS_ADMIN_PASSWORD).

    deeplens models migrate --to efficientnet-lite0:gem:320 [--tenant SLUG]
    deeplens models status [--json] [--watch SECONDS]
    deeplens models cutover | rollback | cleanup [--tenant SLUG]
    deeplens models register NAME --file PATH|--url URL --input-size N --dim D
                             [--mean a,b,c --std a,b,c --pooling inside|avg|gem]
    deeplens reindex [--tenant SLUG | --all]
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from shared.config import ClientSettings


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")


def _client(args: argparse.Namespace) -> httpx.Client:
    client_settings = ClientSettings()
    email = args.email or client_settings.admin_email
    if not email:
        raise SystemExit("sign in as a system administrator: --email or DEEPLENS_ADMIN_EMAIL")
    password = client_settings.admin_password or getpass.getpass(f"{email}: ")
    client = httpx.Client(base_url=args.url, timeout=600)
    r = client.post("/api/auth/login", json={"email": email, "password": password})
    if r.status_code != 200:
        raise SystemExit(f"sign-in failed ({r.status_code}): {r.text[:200]}")
    client.headers["Authorization"] = f"Bearer {r.json()['accessToken']}"
    return client


def _tenant_id(client: httpx.Client, slug: str | None) -> str | None:
    if slug is None:
        return None
    r = client.get(f"/api/tenants/slug/{slug}")
    if r.status_code != 200:
        raise SystemExit(f"no tenant with slug {slug!r}")
    return str(r.json()["id"])


def _call(client: httpx.Client, method: str, path: str, **kw: Any) -> Any:
    r = client.request(method, path, **kw)
    if r.status_code >= 400:
        try:
            err = r.json()["error"]
            msg = f"{err['code']}: {err['message']}"
        except (ValueError, KeyError):
            msg = r.text[:300]
        raise _Failed(msg)
    return r.json()


class _Failed(Exception):
    pass


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
    client = _client(args)
    with contextlib.closing(client):
        try:
            tenant = _tenant_id(client, getattr(args, "tenant", None))
            body = {"tenantId": tenant} if tenant else {}
            action = args.models_command
            if action == "migrate":
                s = _call(client, "POST", "/api/admin/models/migrate", json={**body, "to": args.to})
                _print(f"migrating to {args.to}: new uploads are written to both spaces,")
                _print("the backfill runs below live priority; cut over when complete")
                print_status(s)
            elif action == "status":
                while True:
                    params = {"tenantId": tenant} if tenant else {}
                    s = _call(client, "GET", "/api/admin/models", params=params)
                    if args.json:
                        _print(json.dumps(s, indent=2))
                    else:
                        print_status(s)
                    if not args.watch or s["totals"]["remaining"] == 0:
                        break
                    time.sleep(args.watch)
            elif action in ("cutover", "rollback", "cleanup"):
                out = _call(client, "POST", f"/api/admin/models/{action}", json=body)
                for r in out["tenants"]:
                    _print(json.dumps(r))
                if any(not r.get("ok", True) for r in out["tenants"]):
                    return 2
            elif action == "register":
                source = args.url_source or str(Path(args.file).resolve())
                reg = {
                    "name": args.name,
                    "source": source,
                    "inputSize": args.input_size,
                    "dimension": args.dim,
                    "mean": list(args.mean),
                    "std": list(args.std),
                    "pooling": args.pooling,
                }
                _print(json.dumps(_call(client, "POST", "/api/admin/models/custom", json=reg)))
            elif action == "list":
                _print(json.dumps(_call(client, "GET", "/api/admin/models/custom"), indent=2))
        except _Failed as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 1
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    if not args.all and not args.tenant:
        raise SystemExit("name a tenant (--tenant SLUG) or pass --all")
    client = _client(args)
    with contextlib.closing(client):
        try:
            tenant = _tenant_id(client, args.tenant)
            out = _call(
                client,
                "POST",
                "/api/admin/models/reindex",
                json={"tenantId": tenant} if tenant else {},
            )
        except _Failed as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 1
    _print(
        f"reindexing the active space of {out['tenantsQueued']} tenant(s);"
        " follow it with `deeplens models status`"
    )
    return 0


def add_models_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = sub.add_parser("models", help="change the model without downtime")
    msub = models.add_subparsers(dest="models_command", required=True)

    def connect(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=ClientSettings().url)
        p.add_argument("--email", help="a system administrator (or DEEPLENS_ADMIN_EMAIL)")

    def common(p: argparse.ArgumentParser, tenant: bool = True) -> None:
        connect(p)
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
    src.add_argument("--file", help="a path the platform can read")
    src.add_argument("--from-url", dest="url_source", help="an http(s) URL")
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
    connect(rx)
    rx.set_defaults(func=cmd_reindex)
