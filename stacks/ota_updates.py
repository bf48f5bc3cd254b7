"""Over-the-air app updates: the bucket of update files, the role AWS IoT's MQTT-based file
delivery assumes to read them, and the device policy statements for jobs and streams.

`python -m device.tool ota` uploads the compiled app to the bucket, creates an IoT stream
(files read with `stream_role`) and a job whose document names the stream; the board learns
of the job on its MQTT connection and fetches the files in small blocks over that same
connection (no second TLS session; README.md, "Update over the air").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy, Stack, aws_iam, aws_s3
from constructs import Construct

from contract import OTA_UPDATE_PREFIX
from stacks.nag import acknowledge

# Update files are read by AWS IoT while a job runs; a board offline for weeks still gets
# its job, so current files live for 90 days. Replaced versions are kept a week for audit.
FILE_EXPIRY = Duration.days(90)
REPLACED_FILE_EXPIRY = Duration.days(7)


def device_jobs_statements(arn: Callable[[str], str], thing: str) -> list[dict[str, Any]]:
    """IoT policy statements that give a device ITS OWN jobs and streams topics only.

    `arn(resource)` builds an IoT ARN (`topic/...`, `topicfilter/...`); `thing` is the
    policy variable `${iot:Connection.Thing.ThingName}`. `*` stands for one job id or
    stream id: the level under the device's own `$aws/things/{thing}/`, so no device can
    reach another's jobs or files. Requests are publish-only, responses receive-only.
    """
    jobs = f"$aws/things/{thing}/jobs"
    streams = f"$aws/things/{thing}/streams"
    responses = [
        f"{jobs}/notify-next",
        f"{jobs}/start-next/accepted",
        f"{jobs}/start-next/rejected",
        f"{jobs}/$next/get/accepted",
        f"{jobs}/$next/get/rejected",
        f"{jobs}/*/update/accepted",
        f"{jobs}/*/update/rejected",
        f"{streams}/*/data/json",
        f"{streams}/*/description/json",
        f"{streams}/*/rejected/json",
    ]
    requests = [
        f"{jobs}/start-next",
        f"{jobs}/$next/get",
        f"{jobs}/*/update",
        f"{streams}/*/get/json",
        f"{streams}/*/describe/json",
    ]
    return [
        {
            "Sid": "SubscribeOwnJobAndStreamResponses",
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": [arn(f"topicfilter/{topic}") for topic in responses],
        },
        {
            "Sid": "ReceiveOwnJobAndStreamResponses",
            "Effect": "Allow",
            "Action": "iot:Receive",
            "Resource": [arn(f"topic/{topic}") for topic in responses],
        },
        {
            "Sid": "PublishOwnJobAndStreamRequests",
            "Effect": "Allow",
            "Action": "iot:Publish",
            "Resource": [arn(f"topic/{topic}") for topic in requests],
        },
    ]


class OtaUpdates(Construct):
    """The bucket of update files and the role AWS IoT reads them with for streams."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = aws_s3.Bucket(
            self,
            "Files",
            encryption=aws_s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=aws_s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=aws_s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            lifecycle_rules=[
                aws_s3.LifecycleRule(
                    prefix=OTA_UPDATE_PREFIX,
                    expiration=FILE_EXPIRY,
                    noncurrent_version_expiration=REPLACED_FILE_EXPIRY,
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=removal_policy,
        )
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "Only the ota tool writes here (one object per compiled module per job, named "
            "by job id) and only AWS IoT's stream role reads; CloudTrail records both.",
        )
        self.stream_role = aws_iam.Role(
            self,
            "StreamRole",
            description="Assumed by AWS IoT MQTT-based file delivery to read update files",
            assumed_by=aws_iam.ServicePrincipal(
                "iot.amazonaws.com",
                # Confused deputy: only this account's IoT streams may use the role.
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
        )
        files = self.bucket.arn_for_objects(f"{OTA_UPDATE_PREFIX}*")
        self.stream_role.add_to_policy(
            aws_iam.PolicyStatement(
                actions=["s3:GetObject", "s3:GetObjectVersion"], resources=[files]
            )
        )
        acknowledge(
            self.stream_role,
            f"AwsSolutions-IAM5[Resource::<{self._bucket_logical_id()}.Arn>/{OTA_UPDATE_PREFIX}*]",
            "Each job's files get new keys under updates/ (named by job id, not known at "
            "deploy time); the role may read those objects only, never list or write.",
        )

    def _bucket_logical_id(self) -> str:
        resource = self.bucket.node.default_child
        assert isinstance(resource, aws_s3.CfnBucket)
        stack = Stack.of(self)
        return str(stack.resolve(stack.get_logical_id(resource)))
