"""The custom resource that writes a fleet shard's bindings to the bindings table.

`handler` (entry point, crhelper answers CloudFormation) -> `bindings_table` (what to write
and delete, given a boto3 Table). It reads nothing from its environment: the table and the
bindings are the resource's properties, so a replaced table gets every binding again.
"""

SERVICE = "device_bindings"
"""The Powertools service name of this Lambda's logs."""
