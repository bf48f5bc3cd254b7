"""The custom resource that points a Twilio number's messaging webhook at the stack.

`handler` (entry point, crhelper answers CloudFormation) -> `number_webhook` (what to set
and restore, given a Twilio client); `config` reads the environment; the Twilio client
comes from `lambda_shared`.
"""

SERVICE = "twilio_number"
"""The Powertools service name of this Lambda's logs."""
