"""Prepare the extraction model before the extract processes start (``deeplens up`` runs this
while the embedded PostgreSQL initialises): on a first start the ONNX model is exported once
under the data dir, so every extract replica then only loads it."""

from __future__ import annotations

import logging
import os


def main() -> None:
    from shared.config import Settings
    from shared.features.embedder import build_embedder

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s [prepare] %(message)s"
    )
    settings = Settings.from_env(os.environ)
    if settings.features.extract_url:
        return
    build_embedder(settings).close()


if __name__ == "__main__":
    main()
