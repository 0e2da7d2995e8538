"""The data layer: one module per table family, each owning its SQL and its row types.

Nothing outside ``shared/store`` writes SQL against these tables (tests/unit/test_layout.py
keeps SQL and psycopg out of ``functions/``). Every function takes the connection first and
``tenant_id`` as a keyword, so a call site always says whose rows it touches; tenant-scoped
work runs inside ``Database.tenant_tx`` (row-level security, the second wall).
"""
