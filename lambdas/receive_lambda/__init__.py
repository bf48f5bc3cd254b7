"""The receive Lambda: Twilio's incoming-message webhook (API Gateway REST + VTL) -> the
device's inbound topic.

`handler` (entry point) -> `event`, `form`, `signature`, `decision` (pure logic) ->
`adapters` (the cached token, the once-only publish); `config` reads the environment.
"""

SERVICE = "receive"
"""The Powertools service name of this Lambda's logs."""
