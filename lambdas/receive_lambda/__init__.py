"""The receive Lambda: Twilio's incoming-message webhook (API Gateway REST + VTL) -> the
device's inbound topic.

`handler` (entry point) -> `event`, `form`, `signature`, `decision`, `inbound_policy`
(pure logic) -> `adapters` (the cached tokens, the once-only publish) and `contacts` (the
reply window and opt-outs, for the send Lambda); `config` reads the environment.
"""

SERVICE = "receive"
"""The Powertools service name of this Lambda's logs."""
