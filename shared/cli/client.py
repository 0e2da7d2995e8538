"""Client commands: ``deeplens ingest DIR`` and ``deeplens search FILE`` (over the HTTP API,
authenticated with an API key from --api-key or DEEPLENS_API_KEY)."""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from shared.config import ClientSettings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def _client(args: argparse.Namespace) -> httpx.Client:
    key = args.api_key or ClientSettings().api_key
    if not key:
        raise SystemExit("an API key is needed: --api-key or DEEPLENS_API_KEY")
    return httpx.Client(base_url=args.url, headers={"X-API-Key": key}, timeout=60)


def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    files = sorted(
        p
        for p in Path(args.directory).rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        print(f"no images under {args.directory}", file=sys.stderr)  # noqa: T201
        return 1
    failures: list[tuple[str, str]] = []
    ids: list[str] = []
    # An import is bulk work: interactive uploads are processed ahead of it.
    params = {"priority": "live" if getattr(args, "live", False) else "bulk"}
    with _client(args) as client, tqdm(total=len(files), unit="img", desc="upload") as bar:

        def send(path: Path) -> None:
            r = client.post(
                "/api/images/upload",
                params=params,
                files={"file": (path.name, path.read_bytes())},
            )
            if r.status_code in (200, 202):  # 200: an exact duplicate, already stored
                ids.append(r.json()["imageId"])
            else:
                failures.append((str(path), r.json().get("error", {}).get("code", r.text)))
            bar.update(1)

        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            list(pool.map(send, files))
        if args.wait and ids:
            _wait_indexed(client, set(ids), args.timeout)
    for path, code in failures:
        print(f"refused {path}: {code}", file=sys.stderr)  # noqa: T201
    print(f"uploaded {len(ids)}, refused {len(failures)}")  # noqa: T201
    return 0 if not failures else 2


def _wait_indexed(client: httpx.Client, ids: set[str], timeout: float) -> None:
    """Wait until the uploaded images have left the pipeline, polling two counts (not every
    image: a thousand GETs a second would load the platform being measured)."""
    from tqdm import tqdm

    def count(status: str) -> int:
        r = client.get("/api/images", params={"status": status, "pageSize": 1})
        return int(r.json()["total"]) if r.status_code == 200 else 0

    start = count("indexed") + count("failed")
    deadline = time.monotonic() + timeout
    with tqdm(total=len(ids), unit="img", desc="indexed") as bar:
        while time.monotonic() < deadline:
            pending = sum(count(s) for s in ("uploaded", "validated", "extracted"))
            bar.n = max(0, len(ids) - pending)
            bar.refresh()
            if pending == 0:
                break
            time.sleep(0.25)
    del start


def cmd_search(args: argparse.Namespace) -> int:
    with _client(args) as client:
        r = client.post(
            "/api/images/search",
            files={"file": (Path(args.file).name, Path(args.file).read_bytes())},
            data={"limit": str(args.limit), "threshold": str(args.threshold)},
        )
    if r.status_code != 200:
        print(f"search failed: {r.text}", file=sys.stderr)  # noqa: T201
        return 1
    results: list[dict[str, Any]] = r.json()
    if not results:
        print("no similar images above the threshold")  # noqa: T201
    for i, item in enumerate(results, 1):
        print(f"{i:>3}  {item['similarity']:.4f}  {item['filename']}  {item['imageId']}")  # noqa: T201
    return 0


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=ClientSettings().url)
        p.add_argument("--api-key", default=None)

    ingest = sub.add_parser("ingest", help="upload every image under a directory")
    ingest.add_argument("directory")
    ingest.add_argument("--concurrency", type=int, default=4)
    ingest.add_argument("--wait", action="store_true", help="wait until all are indexed")
    ingest.add_argument("--timeout", type=float, default=600)
    ingest.add_argument(
        "--live",
        action="store_true",
        help="upload at live priority (default: bulk, processed after interactive uploads)",
    )
    common(ingest)
    ingest.set_defaults(func=cmd_ingest)

    search = sub.add_parser("search", help="find images like FILE")
    search.add_argument("file")
    search.add_argument("--limit", type=int, default=10)
    search.add_argument("--threshold", type=float, default=0.7)
    common(search)
    search.set_defaults(func=cmd_search)
