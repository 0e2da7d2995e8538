"""The local runtime behind ``deeplens up``: a supervisor of one process per function (or
documented group), a local ingress from the route table, and the PostgreSQL broker delivering
CloudEvents over HTTP.

- layout.py: which functions share a process, replicas, concurrency (``DEEPLENS_SCALE``);
- supervisor.py: starts, watches, restarts and stops them; procs.py: one child and its state;
- funcserve.py: one function process (func-python's server around ``function.new()``);
- ingress.py: the public port's reverse proxy; wire.py: its HTTP/1.1; answers.py: what it
  answers itself (health, merged OpenAPI);
- prepare.py: the model's first export, before extract starts;
- server.py: ``--single-process`` mode's ASGI wrapper (func-python's lifespan and health).
"""
