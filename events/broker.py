"""The local broker used by ``deeplens up``: Knative Kafka Broker semantics on PostgreSQL.

Durable (deliveries live in PostgreSQL before anyone is answered; a restart resumes), one
delivery per (event, trigger), at-least-once, each delivered in CloudEvents binary mode with the
sender headers of events/auth.py; a reply event is routed back in, in the same transaction that
marks the delivery done. Failures retry with exponential backoff; after ``max_attempts`` the
event goes to the dead-letter function, which stores it.

Two transports: ``LocalBroker`` (events/delivery.py, the delivery loop) posts through the
in-process ASGI app (``--single-process``); ``HttpBroker`` (events/http_broker.py) posts over
HTTP to the function processes the supervisor started. The queue itself (claims, leases,
retries) is shared/store/deliveries.py.
"""

from events.delivery import LocalBroker
from events.http_broker import HttpBroker, Replica
from shared.store.deliveries import Delivery

__all__ = ["Delivery", "HttpBroker", "LocalBroker", "Replica"]
