"""The status-callback Lambda: Twilio's delivery reports of sent messages, logged.

`handler` (entry point, Powertools' `APIGatewayProxyEvent`) -> `status` (pure logic);
`config` reads the environment; the secret comes through `lambda_shared`.
"""

SERVICE = "status"
"""The Powertools service name of this Lambda's logs."""
