"""The send Lambda: a device's outbound message (through the IoT topic rule) -> Twilio.

`handler` (entry point) -> `outbound` and `outbound_policy` (pure rules) -> `sender`
(Twilio, DynamoDB, SQS) and `contacts_store` (the Contacts table); `config` reads the
environment.
"""

SERVICE = "send"
"""The Powertools service name of this Lambda's logs."""
