"""The send Lambda: a device's outbound message (through the IoT topic rule) -> Twilio.

`handler` (entry point) -> `outbound` (pure rules) -> `sender` (Twilio, DynamoDB, SQS);
`config` reads the environment.
"""

SERVICE = "send"
"""The Powertools service name of this Lambda's logs."""
