"""The key policy a customer managed key needs for pipes/template.yaml, with the account, Region and
partition filled in (pipes/README.md, "Customer managed key").

    python3 -m pipes.key_policy --account 111122223333 --region eu-west-1 > key-policy.json
    aws kms put-key-policy --key-id <key id> --policy-name default --policy file://key-policy.json

Put it on the key BEFORE deploying the stack: the log groups are created encrypted. The key must be
in the stack's Region (the template's Rules refuse another). The stack's roles are not named here:
they do not exist before the stack (a key policy naming a missing role is refused), and each gets
exactly the key use its stores need through IAM, which the first statement enables (checked per
role by the template tests, KmsTest). The stack's output KeyPolicy is the same document.
"""

from __future__ import annotations

import argparse
import json
import re
import sys


def key_policy(account: str, region: str, partition: str = "aws") -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EnableIamPolicies",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchLogsEncryptsTheLogGroups",
                "Effect": "Allow",
                "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                "Resource": "*",
                "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account}:log-group:*"}},
            },
            {
                "Sid": "EventBridgeWritesTheEventsDeadLetterQueue",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchAlarmsPublishToTheAlarmTopic",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": "*",
            },
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--account", required=True, help="the Security Hub delegated administrator account (the stack's)")
    parser.add_argument("--region", required=True, help="the stack's Region (the key's)")
    parser.add_argument("--partition", default="aws")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"\d{12}", args.account):
        parser.error("--account must be a 12-digit account id")
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", args.region):
        parser.error("--region must be a Region code such as eu-west-1")
    json.dump(key_policy(args.account, args.region, args.partition), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
