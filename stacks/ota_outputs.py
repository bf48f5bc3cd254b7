"""Names the stack and the `ota` tool share. No CDK import: the tool reads these without
loading aws-cdk-lib (seconds of jsii start-up)."""

BUCKET_OUTPUT = "OtaBucketName"
"""Stack output: the bucket the `ota` tool uploads compiled app modules to."""
STREAM_ROLE_OUTPUT = "OtaStreamRoleArn"
"""Stack output: the role AWS IoT assumes to read those files for an MQTT stream."""
UPDATE_PREFIX = "updates/"
"""Key prefix of the update files; the stream role may read nothing else."""
