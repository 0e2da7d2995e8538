"""Prepare the extraction model before the extract processes start (``deeplens up`` runs this
while the embedded PostgreSQL initialises): on a first start the ONNX model is exported once
under the data dir, so every extract replica then only loads it."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Children of ``deeplens up`` get SIGKILL when it dies, and Ctrl-C reaches only it."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgrp()


def spawn(env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start preparing the model now (``deeplens up`` calls this before its own imports)."""
    env = dict(env)
    env["DEEPLENS_DATA_DIR"] = os.path.abspath(env.get("DEEPLENS_DATA_DIR", ".deeplens"))
    env["DEEPLENS_FEATURES__THREADS"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "shared.local.prepare"], env=env, preexec_fn=die_with_parent
    )


def main() -> None:
    from shared.config import Settings
    from shared.features.embedder import backend_for, build_embedder
    from shared.features.registry import spec_for
    from shared.logs import setup_logging

    settings = Settings.from_env(os.environ)
    setup_logging("prepare", settings.log_format, level=logging.INFO)
    if settings.features.extract_url:
        return
    f = settings.features
    spec = spec_for(f)
    if backend_for(settings, spec) == "onnx":
        # The file is all the replicas need from here: no session to build and throw away.
        from shared.features.onnx_backend import prepared

        prepared(spec, settings.data_dir / "models", f.model_cache, f.weights_dir)
        return
    build_embedder(settings).close()


if __name__ == "__main__":
    main()
