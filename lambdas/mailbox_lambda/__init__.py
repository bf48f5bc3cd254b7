"""The mailbox Lambdas: a device's ack and redeliver requests (two topic rules) and the
sweeper (an EventBridge schedule).

`handler` (both entry points) -> `rules` (pure logic) -> `store` (DynamoDB, IoT data,
the send Lambda); `config` reads the environment.
"""

SERVICE = "mailbox"
"""The Powertools service name of these Lambdas' logs and metrics."""
