"""The local runtime behind ``deeplens up``: a supervisor of one process per function (or
documented group), a local ingress from the route table, and the PostgreSQL broker delivering
CloudEvents over HTTP."""
