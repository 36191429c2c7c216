"""IAM SimulatePrincipalPolicy (awsemu.iam): the evaluation, then boto3 against the emulator reading the
role's policies from a moto server (so botocore's own model parses the XML the emulator answers)."""

from __future__ import annotations

import json
import os
import sys
import unittest

import boto3
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from awsemu.iam import IamError, evaluate  # noqa: E402
from serverproc import ServerProcess  # noqa: E402
from test_faultproxy import Moto  # noqa: E402

TABLE = "arn:aws:dynamodb:us-east-1:111122223333:table/cache"
KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ENRICHER = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Batch*"], "Resource": TABLE},
        {"Effect": "Allow", "Action": "securityhub:BatchUpdateFindings",
         "Resource": "arn:aws:securityhub:us-east-1:111122223333:hub/default"},
        {"Effect": "Deny", "Action": "securityhub:BatchUpdateFindings", "Resource": "*",
         "Condition": {"Null": {"securityhub:ASFFSyntaxPath/Severity": "false"}}},
        {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": KEY,
         "Condition": {"StringEquals": {"kms:ViaService": "kinesis.us-east-1.amazonaws.com"}}},
    ],
}


class EvaluateTest(unittest.TestCase):
    def decide(self, action, resource, context=None):
        return evaluate([("p", ENRICHER)], action, resource, context or {})

    def test_allow_deny_and_implicit_deny(self):
        self.assertEqual(self.decide("dynamodb:GetItem", TABLE)[0], "allowed")
        self.assertEqual(self.decide("DynamoDB:batchWriteItem", TABLE)[0], "allowed")  # actions: any case, wildcards
        self.assertEqual(self.decide("dynamodb:PutItem", TABLE)[0], "implicitDeny")
        self.assertEqual(self.decide("dynamodb:GetItem", TABLE + "2")[0], "implicitDeny")  # another table
        hub = "arn:aws:securityhub:us-east-1:111122223333:hub/default"
        self.assertEqual(self.decide("securityhub:BatchUpdateFindings", hub)[0], "allowed")
        denied = self.decide("securityhub:BatchUpdateFindings", hub, {"securityhub:asffsyntaxpath/severity": ["x"]})
        self.assertEqual(denied[:2], ("explicitDeny", ["p"]))

    def test_a_missing_condition_key_is_reported_and_denies(self):
        decision, matched, missing = self.decide("kms:Decrypt", KEY)
        self.assertEqual((decision, matched, missing), ("implicitDeny", [], ["kms:ViaService"]))
        via = {"kms:viaservice": ["kinesis.us-east-1.amazonaws.com"]}
        self.assertEqual(self.decide("kms:Decrypt", KEY, via)[:2], ("allowed", ["p"]))
        self.assertEqual(self.decide("kms:Decrypt", KEY, {"kms:viaservice": ["sqs.us-east-1.amazonaws.com"]})[0],
                         "implicitDeny")

    def test_not_action_not_resource_and_unsupported_operators(self):
        policy = {"Statement": [{"Effect": "Deny", "NotAction": "s3:*", "NotResource": "arn:aws:s3:::b/*"},
                                {"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        self.assertEqual(evaluate([("q", policy)], "s3:GetObject", "arn:aws:s3:::other/k", {})[0], "allowed")
        self.assertEqual(evaluate([("q", policy)], "sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q", {})[0],
                         "explicitDeny")
        numeric = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*",
                                  "Condition": {"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}}]}
        with self.assertRaises(IamError):
            evaluate([("n", numeric)], "s3:GetObject", "*", {"aws:multifactorauthage": ["1"]})


MOTO: Moto | None = None
EMULATOR: ServerProcess | None = None


def setUpModule() -> None:
    global MOTO, EMULATOR
    MOTO = Moto()
    EMULATOR = ServerProcess("awsemu", "emulator", "--port", "0", "--iam-policies-from", MOTO.url)


def tearDownModule() -> None:
    if EMULATOR is not None:
        EMULATOR.stop()
    if MOTO is not None:
        MOTO.stop()


def iam(url: str, account: str):
    client = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id=account, aws_secret_access_key="test")
    # moto puts an unknown access key's calls in its default account; the header names this one
    # (the emulator resolves the caller's account from the key and reads moto the same way).
    client.meta.events.register("before-sign.iam.*", lambda request, **_: request.headers.__setitem__(
        "x-moto-account-id", account))
    return client


class SimulatePrincipalPolicyTest(unittest.TestCase):
    ACCOUNT = "111122223333"

    @classmethod
    def setUpClass(cls):
        moto = iam(MOTO.url, cls.ACCOUNT)
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"Service": "lambda.amazonaws.com"}}]}
        cls.role = moto.create_role(RoleName="enricher", Path="/service/",
                                    AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        moto.put_role_policy(RoleName="enricher", PolicyName="inline", PolicyDocument=json.dumps(ENRICHER))
        managed = moto.create_policy(PolicyName="events", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "events:PutEvents",
                           "Resource": "arn:aws:events:us-east-1:111122223333:event-bus/enriched"}]}))
        moto.attach_role_policy(RoleName="enricher", PolicyArn=managed["Policy"]["Arn"])
        cls.client = iam(EMULATOR.url, cls.ACCOUNT)

    def test_each_action_and_resource_is_decided_from_the_roles_policies(self):
        out = self.client.simulate_principal_policy(
            PolicySourceArn=self.role,
            ActionNames=["dynamodb:GetItem", "dynamodb:PutItem", "events:PutEvents"],
            ResourceArns=[TABLE, "arn:aws:events:us-east-1:111122223333:event-bus/enriched"])
        decisions = {(r["EvalActionName"], r["EvalResourceName"]): r["EvalDecision"] for r in out["EvaluationResults"]}
        self.assertEqual(decisions[("dynamodb:GetItem", TABLE)], "allowed")
        self.assertEqual(decisions[("dynamodb:PutItem", TABLE)], "implicitDeny")
        self.assertEqual(decisions[("events:PutEvents", "arn:aws:events:us-east-1:111122223333:event-bus/enriched")],
                         "allowed")  # the attached managed policy
        self.assertEqual(decisions[("events:PutEvents", TABLE)], "implicitDeny")
        self.assertFalse(out["IsTruncated"])
        allowed = next(r for r in out["EvaluationResults"] if r["EvalActionName"] == "dynamodb:GetItem"
                       and r["EvalResourceName"] == TABLE)
        self.assertEqual(allowed["MatchedStatements"][0]["SourcePolicyId"], "inline")

    def test_context_entries_and_missing_context_values(self):
        key = dict(PolicySourceArn=self.role, ActionNames=["kms:Decrypt", "kms:GenerateDataKey"], ResourceArns=[KEY])
        missing = self.client.simulate_principal_policy(**key)["EvaluationResults"]
        self.assertEqual({r["EvalDecision"] for r in missing}, {"implicitDeny"})
        self.assertEqual(missing[0]["MissingContextValues"], ["kms:ViaService"])
        via = [{"ContextKeyName": "kms:ViaService", "ContextKeyValues": ["kinesis.us-east-1.amazonaws.com"],
                "ContextKeyType": "string"}]
        given = self.client.simulate_principal_policy(**key, ContextEntries=via)["EvaluationResults"]
        self.assertEqual({r["EvalDecision"] for r in given}, {"allowed"})
        deny = [{"ContextKeyName": "securityhub:ASFFSyntaxPath/Severity", "ContextKeyValues": ["x"],
                 "ContextKeyType": "string"}]
        out = self.client.simulate_principal_policy(
            PolicySourceArn=self.role, ActionNames=["securityhub:BatchUpdateFindings"],
            ResourceArns=["arn:aws:securityhub:us-east-1:111122223333:hub/default"], ContextEntries=deny)
        self.assertEqual(out["EvaluationResults"][0]["EvalDecision"], "explicitDeny")

    def test_pages_and_errors(self):
        out = self.client.simulate_principal_policy(PolicySourceArn=self.role, MaxItems=1,
                                                    ActionNames=["dynamodb:GetItem", "dynamodb:PutItem"])
        self.assertTrue(out["IsTruncated"])
        rest = self.client.simulate_principal_policy(PolicySourceArn=self.role, Marker=out["Marker"],
                                                     ActionNames=["dynamodb:GetItem", "dynamodb:PutItem"])
        self.assertEqual([r["EvalActionName"] for r in out["EvaluationResults"] + rest["EvaluationResults"]],
                         ["dynamodb:GetItem", "dynamodb:PutItem"])
        for arn, code, status in [("arn:aws:iam::111122223333:role/nobody", "NoSuchEntity", 404),
                                  ("arn:aws:iam::999999999999:role/service/enricher", "NoSuchEntity", 404),
                                  ("arn:aws:iam::111122223333:user/someone", "InvalidInput", 400)]:
            with self.subTest(arn), self.assertRaises(ClientError) as cm:
                self.client.simulate_principal_policy(PolicySourceArn=arn, ActionNames=["s3:GetObject"])
            self.assertEqual((cm.exception.response["Error"]["Code"],
                              cm.exception.response["ResponseMetadata"]["HTTPStatusCode"]), (code, status))


if __name__ == "__main__":
    unittest.main()
