"""One function process of ``deeplens up``: exactly what func's Python scaffolding runs in
production (``func_python.http.serve(new)``: hypercorn around ``function.new()``, lifespan
calling start/stop, /health/* answered from alive()/ready()), with ``FUNCTION_TARGET`` and
``LISTEN_ADDRESS`` (127.0.0.1 only) set by the supervisor.

    FUNCTION_TARGET=auth LISTEN_ADDRESS=127.0.0.1:9001 python -m shared.local.funcserve
"""

from __future__ import annotations

import logging
import os


def main() -> None:
    from func_python.http import serve

    from function import new

    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s [{os.environ.get('DEEPLENS_PROCESS', 'fn')}]"
        " %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
    logging.getLogger("hypercorn.error").propagate = False  # it has its own handler
    serve(new)


if __name__ == "__main__":
    main()
