"""Unit tests of the IAM evaluator (iam_check.py), the template resolver (cfn.py) and the
observed-calls check, on synthetic call logs.

The real log is written by the fault proxies of scripts/local-aws while `make test-rust` runs
(LOCAL_AWS_CALL_LOG); `make test-permissions` checks it. These tests show that the check fails,
naming the function, the operation and the missing grant, on a log with an ungranted call, and
passes on granted ones, and that every call the code makes (CODE_CALLS, read off src/) is
granted by pipes/template.yaml in every deployment variant.
"""

from __future__ import annotations

import copy
import io
import json
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from pipes.tests import iam_check
from pipes.tests.cfn import NO_VALUE, Stack, Unsupported
from pipes.tests.iam_check import (
    ConditionError,
    Request,
    UnknownValue,
    arn_matches,
    check_calls,
    evaluate,
    load_templates,
)

LEDGER = "quota#securityhub:BatchUpdateFindings"
CHECKPOINT = "sweep#checkpoint"  # the refresher's pass over every finding (src/adapters/cache_table/schema.rs)
QUEUE = "refresh#queue"  # accounts waiting to be refreshed
ACCOUNT = "123456789012"
MGMT = "210987654321"  # the test organization's management account, as moto would report it
CONTACT_ROLE = f"arn:aws:iam::{MGMT}:role/test-contacts"
GRAPH = f"arn:aws:detective:us-east-1:{ACCOUNT}:graph:0123456789abcdef0123456789abcdef"


def call(function, service, operation, *, table=None, tables=(), keys=(), fields=(), resource=None, account=ACCOUNT, status=200):
    return {
        "function": function, "service": service, "operation": operation, "account": account,
        "region": "us-east-1", "table": table, "tables": list(tables), "leading_keys": list(keys),
        "fields": list(fields), "resource": resource, "status": status,
    }


# Every SDK call the code makes, by function (src/adapters/*.rs, src/wiring.rs, src/bin/*.rs), as
# the fault proxies record them; test tables are named as in tests/ (cache, jobs).
CODE_CALLS = [
    # enricher: cache tiers, the quota ledger, Organizations and Account Management, the updater, jobs
    call("enricher", "dynamodb", "BatchGetItem", tables=["cache"], keys=["111122223333", "444455556666"]),
    call("enricher", "dynamodb", "BatchWriteItem", tables=["cache"], keys=["111122223333"]),
    call("enricher", "dynamodb", "UpdateItem", table="cache", keys=[LEDGER]),
    call("enricher", "dynamodb", "UpdateItem", table="jobs", keys=["arn:aws:iam::111122223333:role/x#1700000000"]),
    call("enricher", "organizations", "DescribeAccount", resource="111122223333"),
    call("enricher", "organizations", "ListParents", resource="111122223333"),
    call("enricher", "organizations", "ListParents", resource="ou-ab12-cd34ef56"),
    call("enricher", "organizations", "ListParents"),  # ChildId not recorded
    call("enricher", "organizations", "DescribeOrganizationalUnit", resource="ou-ab12-cd34ef56"),
    call("enricher", "organizations", "ListRoots"),
    call("enricher", "organizations", "ListTagsForResource", resource="111122223333"),
    call("enricher", "organizations", "DescribeOrganization"),
    call("enricher", "sts", "AssumeRole", resource=CONTACT_ROLE),
    call("enricher", "account", "GetAlternateContact", resource="111122223333", account=MGMT),
    call("enricher", "account", "GetAlternateContact", account=MGMT),  # the management account itself
    call("enricher", "securityhub", "BatchUpdateFindings", fields=["Note", "UserDefinedFields"]),
    call("enricher", "securityhub", "BatchUpdateFindings", fields=["UserDefinedFields"]),
    # investigator: jobs, the cache (account part of notes), Security Hub, Detective
    call("investigator", "dynamodb", "Scan", table="jobs"),
    call("investigator", "dynamodb", "UpdateItem", table="jobs", keys=["job-1"]),
    call("investigator", "dynamodb", "BatchGetItem", tables=["cache"], keys=["111122223333"]),
    call("investigator", "securityhub", "GetFindings"),
    call("investigator", "securityhub", "BatchUpdateFindings", fields=["Note", "UserDefinedFields"]),
    call("investigator", "detective", "ListGraphs"),
    call("investigator", "detective", "StartInvestigation", resource=GRAPH),
    call("investigator", "detective", "GetInvestigation", resource=GRAPH),
    call("investigator", "detective", "ListIndicators", resource=GRAPH),
    # refresher (as the enricher's role): its state, the sweep's reads, the enricher's lookups and
    # writes, and a background claim on the quota ledger
    call("refresher", "dynamodb", "GetItem", table="cache", keys=[QUEUE]),
    call("refresher", "dynamodb", "UpdateItem", table="cache", keys=[QUEUE]),  # DELETE of refreshed accounts
    call("refresher", "dynamodb", "GetItem", table="cache", keys=[CHECKPOINT]),
    call("refresher", "dynamodb", "PutItem", table="cache", keys=[CHECKPOINT]),
    call("refresher", "dynamodb", "DeleteItem", table="cache", keys=[CHECKPOINT]),
    call("refresher", "dynamodb", "BatchGetItem", tables=["cache"], keys=["111122223333"]),
    call("refresher", "dynamodb", "BatchWriteItem", tables=["cache"], keys=["111122223333"]),
    call("refresher", "dynamodb", "UpdateItem", table="cache", keys=[LEDGER]),
    call("refresher", "securityhub", "GetFindings"),
    call("refresher", "securityhub", "BatchUpdateFindings", fields=["Note", "UserDefinedFields"]),
    call("refresher", "organizations", "DescribeAccount", resource="111122223333"),
    call("refresher", "organizations", "ListParents", resource="111122223333"),
    call("refresher", "organizations", "ListTagsForResource", resource="111122223333"),
    call("refresher", "sts", "AssumeRole", resource=CONTACT_ROLE),
    call("refresher", "account", "GetAlternateContact", resource="111122223333", account=MGMT),
    call("refresher", "account", "GetAlternateContact", account=MGMT),
    # account-events: forgets changed accounts and queues them for refresh (ADD)
    call("account-events", "dynamodb", "BatchWriteItem", tables=["loadtest-cache"], keys=["111122223333"]),
    call("account-events", "dynamodb", "UpdateItem", table="cache", keys=[QUEUE]),
    # enricher-admin (operator): invalidate --all, invalidate (and queue), warm, sweep
    call("enricher-admin", "dynamodb", "Scan", table="cache"),
    call("enricher-admin", "dynamodb", "BatchWriteItem", tables=["cache"], keys=["111122223333"]),
    call("enricher-admin", "dynamodb", "UpdateItem", table="cache", keys=[QUEUE]),
    call("enricher-admin", "dynamodb", "BatchGetItem", tables=["cache"], keys=["111122223333"]),
    call("enricher-admin", "organizations", "DescribeAccount", resource="111122223333"),
    call("enricher-admin", "account", "GetAlternateContact", resource="111122223333", account=MGMT),
    call("enricher-admin", "securityhub", "GetFindings"),
    call("enricher-admin", "dynamodb", "UpdateItem", table="cache", keys=[LEDGER]),  # sweep's background claim
    call("enricher-admin", "securityhub", "BatchUpdateFindings", fields=["Note", "UserDefinedFields"]),
    # enricher-admin --stack, and redrive
    call("enricher-admin", "cloudformation", "ListStackResources", resource="securityhub-enricher"),
    call("enricher-admin", "lambda", "GetFunctionConfiguration"),
    # doctor: the pipe's state (the log names no pipe: the path carries it)
    call("enricher-admin", "pipes", "DescribePipe"),
    call("enricher-admin", "sqs", "ReceiveMessage", resource="https://sqs.us-east-1.amazonaws.com/111122223333/pipe-dead-letters"),
    call("enricher-admin", "sqs", "DeleteMessage", resource="https://sqs.us-east-1.amazonaws.com/111122223333/securityhub-enricher-DeadLetterQueue-AB12"),
    call("enricher-admin", "kinesis", "GetShardIterator", resource="findings-redrive"),
    call("enricher-admin", "kinesis", "GetRecords", resource="arn:aws:kinesis:us-east-1:111122223333:stream/securityhub-enricher-FindingsStream-X1"),
    call("enricher-admin", "kinesis", "PutRecords", resource="findings-redrive"),
    # set-up code of the tests: not checked
    call(None, "dynamodb", "CreateTable", table="cache"),
    call(None, "organizations", "CreateOrganization"),
]


def without_statement(template: dict, role: str, action: str) -> dict:
    """A copy of the template whose role no longer grants `action` (to show the check catches it)."""
    changed = copy.deepcopy(template)
    for policy in changed["Resources"][role]["Properties"]["Policies"]:
        statements = policy["PolicyDocument"]["Statement"]
        for statement in list(statements):
            if isinstance(statement, dict) and action in iam_check.as_list(statement.get("Action")):
                actions = [a for a in iam_check.as_list(statement["Action"]) if a != action]
                if actions:
                    statement["Action"] = actions
                else:
                    statements.remove(statement)
    return changed


class EvaluatorTest(unittest.TestCase):
    def test_actions_match_case_insensitively_with_wildcards(self):
        allow = [{"Effect": "Allow", "Action": "dynamodb:Batch*", "Resource": "*"}]
        self.assertTrue(evaluate(allow, Request("dynamodb:BatchGetItem", ["x"])).allowed)
        self.assertTrue(evaluate(allow, Request("DynamoDB:batchwriteitem", ["x"])).allowed)
        self.assertFalse(evaluate(allow, Request("dynamodb:UpdateItem", ["x"])).allowed)
        not_action = [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]
        self.assertTrue(evaluate(not_action, Request("sqs:SendMessage", ["x"])).allowed)
        self.assertFalse(evaluate(not_action, Request("iam:CreateUser", ["x"])).allowed)

    def test_resources_and_not_resources(self):
        self.assertTrue(arn_matches("arn:aws:dynamodb:*:*:table/cache", "arn:aws:dynamodb:us-east-1:1:table/cache"))
        self.assertFalse(arn_matches("arn:aws:dynamodb:*:*:table/cache", "arn:aws:dynamodb:us-east-1:1:table/cache2"))
        self.assertTrue(arn_matches("arn:aws:organizations::9:account/o-x/*", "arn:aws:organizations::9:account/o-x/111"))
        self.assertFalse(arn_matches("arn:aws:organizations::9:ou/o-x/ou-*", "arn:aws:organizations::9:account/o-x/111"))
        self.assertFalse(arn_matches("arn:aws:s3:::Bucket", "arn:aws:s3:::bucket"), "resources are case-sensitive")
        self.assertTrue(arn_matches("arn:aws:account::9:account/o-*/*", "arn:aws:account::9:account/o-x/1"))
        self.assertFalse(arn_matches("arn:aws:account::9:account/o-*/*", "arn:aws:account::9:account"))
        not_resource = [{"Effect": "Allow", "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::secret/*"}]
        self.assertTrue(evaluate(not_resource, Request("s3:GetObject", ["arn:aws:s3:::public/a"])).allowed)
        self.assertFalse(evaluate(not_resource, Request("s3:GetObject", ["arn:aws:s3:::secret/a"])).allowed)

    def test_deny_wins_and_no_allow_is_a_deny(self):
        statements = [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Deny", "Action": "sqs:DeleteQueue", "Resource": "*"},
        ]
        self.assertTrue(evaluate(statements, Request("sqs:SendMessage", ["q"])).allowed)
        decision = evaluate(statements, Request("sqs:DeleteQueue", ["q"]))
        self.assertFalse(decision.allowed)
        self.assertIn("explicitly denied", decision.reason)
        self.assertIn("no Allow", evaluate([], Request("sqs:SendMessage", ["q"])).reason)

    def test_every_resource_of_a_request_must_be_allowed(self):
        allow = [{"Effect": "Allow", "Action": "x:Y", "Resource": "arn:aws:x:::a"}]
        self.assertFalse(evaluate(allow, Request("x:Y", ["arn:aws:x:::a", "arn:aws:x:::b"])).allowed)

    def leading_keys(self, operator, patterns, keys, effect="Allow"):
        statement = {"Effect": effect, "Action": "dynamodb:*", "Resource": "*",
                     "Condition": {operator: {"dynamodb:LeadingKeys": patterns}}}
        context = {"dynamodb:leadingkeys": keys} if keys is not None else {}
        return evaluate([statement], Request("dynamodb:UpdateItem", ["t"], context)).allowed

    def test_for_all_values(self):
        self.assertTrue(self.leading_keys("ForAllValues:StringEquals", [LEDGER], [LEDGER]))
        self.assertFalse(self.leading_keys("ForAllValues:StringEquals", [LEDGER], ["111122223333"]))
        self.assertFalse(self.leading_keys("ForAllValues:StringEquals", [LEDGER], [LEDGER, "111122223333"]))
        self.assertTrue(self.leading_keys("ForAllValues:StringEquals", [LEDGER], None), "no key: ForAllValues holds")
        self.assertTrue(self.leading_keys("ForAllValues:StringLike", ["????????????"], ["111122223333", "444455556666"]))
        self.assertFalse(self.leading_keys("ForAllValues:StringLike", ["????????????"], ["111122223333", LEDGER]))
        self.assertFalse(self.leading_keys("ForAllValues:StringLike", ["????????????"], ["1111222233334"]))

    def test_for_any_value(self):
        self.assertTrue(self.leading_keys("ForAnyValue:StringEquals", [LEDGER], ["1", LEDGER]))
        self.assertFalse(self.leading_keys("ForAnyValue:StringEquals", [LEDGER], ["1"]))
        self.assertFalse(self.leading_keys("ForAnyValue:StringEquals", [LEDGER], None), "no key: ForAnyValue fails")

    def test_plain_operators(self):
        self.assertTrue(self.leading_keys("StringEquals", [LEDGER], [LEDGER]))
        self.assertFalse(self.leading_keys("StringEquals", [LEDGER], None), "a missing key fails a positive operator")
        self.assertTrue(self.leading_keys("StringNotEquals", [LEDGER], None), "and satisfies a negated one")
        self.assertTrue(self.leading_keys("StringEqualsIfExists", [LEDGER], None))
        self.assertFalse(self.leading_keys("StringEquals", [LEDGER], [LEDGER, "1"], "Allow"), "strict in an Allow")
        self.assertFalse(self.leading_keys("StringNotEquals", ["1"], ["1", "2"], "Allow"))
        # In a Deny, any value suffices: a Deny that AWS might apply is applied.
        deny = [{"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"dynamodb:LeadingKeys": LEDGER}}}]
        self.assertFalse(evaluate(deny, Request("dynamodb:PutItem", ["t"], {"dynamodb:leadingkeys": ["1", LEDGER]})).allowed)

    def test_null(self):
        deny_workflow = {"Effect": "Deny", "Action": "securityhub:BatchUpdateFindings", "Resource": "*",
                         "Condition": {"Null": {"securityhub:ASFFSyntaxPath/Workflow.Status": "false"}}}
        allow = {"Effect": "Allow", "Action": "securityhub:BatchUpdateFindings", "Resource": "*"}
        note = {"securityhub:asffsyntaxpath/note": [UnknownValue("Note")]}
        workflow = {**note, "securityhub:asffsyntaxpath/workflow": [UnknownValue("Workflow")]}
        self.assertTrue(evaluate([allow, deny_workflow], Request("securityhub:BatchUpdateFindings", ["h"], note)).allowed)
        self.assertFalse(evaluate([allow, deny_workflow], Request("securityhub:BatchUpdateFindings", ["h"], workflow)).allowed,
                         "Workflow in the request makes Workflow.Status present")
        only_if_absent = {**allow, "Condition": {"Null": {"securityhub:ASFFSyntaxPath/Severity": "true"}}}
        self.assertTrue(evaluate([only_if_absent], Request("securityhub:BatchUpdateFindings", ["h"], note)).allowed)

    def test_arn_and_string_conditions(self):
        statement = {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                     "Condition": {"ArnEquals": {"aws:PrincipalArn": ["arn:aws:iam::111122223333:role/a-us-east-1",
                                                                      "arn:aws:iam::111122223333:role/a-eu-west-1"]}}}
        for role, expected in [("a-us-east-1", True), ("a-eu-west-1", True), ("a-eu-west-2", False)]:
            arn = f"arn:aws:iam::111122223333:role/{role}"
            request = Request("sts:AssumeRole", ["*"], {"aws:principalarn": [arn]}, principal={"AWS": arn})
            self.assertEqual(evaluate([statement], request).allowed, expected, role)
        other_account = "arn:aws:iam::999999999999:role/a-us-east-1"
        request = Request("sts:AssumeRole", ["*"], {"aws:principalarn": [other_account]}, principal={"AWS": other_account})
        self.assertFalse(evaluate([statement], request).allowed, "the principal is the enricher's account only")
        kms = {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "k",
               "Condition": {"StringEquals": {"kms:ViaService": ["kinesis.us-east-1.amazonaws.com", "sqs.us-east-1.amazonaws.com"]}}}
        self.assertTrue(evaluate([kms], Request("kms:Decrypt", ["k"], {"kms:viaservice": ["sqs.us-east-1.amazonaws.com"]})).allowed)
        self.assertFalse(evaluate([kms], Request("kms:Decrypt", ["k"], {"kms:viaservice": ["dynamodb.us-east-1.amazonaws.com"]})).allowed)
        self.assertFalse(evaluate([kms], Request("kms:Decrypt", ["k"])).allowed, "direct use, not via a service")

    def test_service_principals(self):
        statement = {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage", "Resource": "q"}
        self.assertTrue(evaluate([statement], Request("sqs:SendMessage", ["q"], principal={"Service": "events.amazonaws.com"})).allowed)
        self.assertFalse(evaluate([statement], Request("sqs:SendMessage", ["q"], principal={"Service": "sns.amazonaws.com"})).allowed)

    def test_what_it_cannot_decide_is_an_error_not_a_pass(self):
        numeric = {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"x:y": "3"}}}
        with self.assertRaises(ConditionError):
            evaluate([numeric], Request("a:b", ["r"], {"x:y": ["1"]}))
        value = {"Effect": "Allow", "Action": "*", "Resource": "*",
                 "Condition": {"StringEquals": {"securityhub:ASFFSyntaxPath/Workflow.Status": "NEW"}}}
        with self.assertRaises(ConditionError):
            evaluate([value], Request("securityhub:BatchUpdateFindings", ["h"], {"securityhub:asffsyntaxpath/workflow.status": [UnknownValue("Workflow")]}))


class ResolverTest(unittest.TestCase):
    TEMPLATE = {
        "Parameters": {
            "Key": {"Type": "String", "Default": ""},
            "Roles": {"Type": "CommaDelimitedList"},
            "Factor": {"Type": "Number", "Default": 2},
        },
        "Conditions": {
            "HasKey": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Key"}, ""]}]},
            "Both": {"Fn::And": [{"Condition": "HasKey"}, {"Fn::Equals": [{"Ref": "Factor"}, "2"]}]},
        },
        "Mappings": {"M": {"2": {"Values": ["zero", "two"]}}},
        "Resources": {
            "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
            "Queue": {"Type": "AWS::SQS::Queue", "Condition": "HasKey", "Properties": {}},
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": {"Fn::Sub": "r-${AWS::Region}"},
                    "Tags": [
                        {"Fn::If": ["HasKey", {"Key": "k", "Value": {"Ref": "Key"}}, {"Ref": "AWS::NoValue"}]},
                        {"Key": "table", "Value": {"Fn::GetAtt": ["Table", "Arn"]}},
                        {"Key": "sub", "Value": {"Fn::Sub": ["${Table.Arn}/x/${V}", {"V": {"Fn::Select": [1, {"Fn::FindInMap": ["M", {"Ref": "Factor"}, "Values"]}]}}]}},
                        {"Key": "first", "Value": {"Fn::Select": [4, {"Fn::Split": [":", {"Fn::Select": [0, {"Ref": "Roles"}]}]}]}},
                    ],
                },
            },
        },
    }

    def test_branches_and_values(self):
        stack = Stack(self.TEMPLATE, {"Roles": "arn:aws:iam::123456789012:role/a,arn:aws:iam::123456789012:role/b"}, region="eu-west-3")
        self.assertFalse(stack.exists("Queue"))
        tags = stack.resources()["Role"]["Properties"]["Tags"]
        self.assertEqual([t["Key"] for t in tags], ["table", "sub", "first"], "AWS::NoValue drops the element")
        self.assertEqual(tags[0]["Value"], "arn:aws:dynamodb:eu-west-3:111122223333:table/Table")
        self.assertEqual(tags[1]["Value"], "arn:aws:dynamodb:eu-west-3:111122223333:table/Table/x/two")
        self.assertEqual(tags[2]["Value"], "123456789012")
        self.assertEqual(stack.arn("Role"), "arn:aws:iam::111122223333:role/r-eu-west-3")
        with_key = Stack(self.TEMPLATE, {"Key": "k1", "Roles": ["arn:aws:iam::123456789012:role/a"]})
        self.assertTrue(with_key.exists("Queue"))
        self.assertTrue(with_key.condition("Both"))
        self.assertEqual(with_key.resources()["Role"]["Properties"]["Tags"][0], {"Key": "k", "Value": "k1"})
        self.assertIs(Stack(self.TEMPLATE, {"Roles": ["x"]}).resolve({"Ref": "AWS::NoValue"}), NO_VALUE)

    def test_unknown_constructs_are_errors(self):
        stack = Stack(self.TEMPLATE, {"Roles": ["x"]})
        with self.assertRaises(Unsupported):
            stack.resolve({"Fn::Base64": "x"})
        with self.assertRaises(KeyError):
            Stack(self.TEMPLATE, {})  # Roles has no default
        with self.assertRaises(KeyError):
            Stack(self.TEMPLATE, {"Roles": ["x"], "Nope": "1"})


class ObservedCallsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.main, cls.management = load_templates()

    def violations(self, records, main=None, **kwargs):
        report = check_calls(records, main or self.main, self.management, **kwargs)
        return report, [str(v) for v in report.violations]

    def test_every_call_the_code_makes_is_granted_in_every_variant(self):
        report, problems = self.violations(CODE_CALLS)
        self.assertEqual(problems, [])
        self.assertEqual(report.skipped_setup, 2)
        self.assertEqual(set(report.by_function), {"enricher", "investigator", "refresher", "account-events", "enricher-admin"})

    def test_the_investigators_getfindings_gap_is_caught(self):
        """The gap this check was built for: the investigator reads findings before writing back."""
        broken = without_statement(self.main, "InvestigatorRole", "securityhub:GetFindings")
        _, problems = self.violations([call("investigator", "securityhub", "GetFindings")], main=broken)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("investigator: securityhub:GetFindings needs securityhub:GetFindings on "
                      f"arn:aws:securityhub:us-east-1:{ACCOUNT}:hub/default", problems[0])
        self.assertIn("no Allow", problems[0])

    def test_a_granted_call_passes_and_an_ungranted_one_fails(self):
        granted = call("enricher", "organizations", "DescribeAccount", resource="111122223333")
        self.assertEqual(self.violations([granted])[1], [])
        ungranted = call("investigator", "organizations", "ListAccounts")
        _, problems = self.violations([ungranted, ungranted])
        self.assertEqual(len(problems), 1)
        self.assertIn("investigator: organizations:ListAccounts needs organizations:ListAccounts on *", problems[0])
        self.assertIn("[2 calls]", problems[0])

    def test_findings_fields_other_than_note_and_user_defined_fields_are_denied(self):
        for function in ("enricher", "investigator", "refresher", "enricher-admin"):
            for field in ("Workflow", "Severity", "Confidence", "Criticality", "Types", "VerificationState", "RelatedFindings"):
                with self.subTest(function=function, field=field):
                    _, problems = self.violations([call(function, "securityhub", "BatchUpdateFindings", fields=["Note", field])])
                    self.assertEqual(len(problems), 1, problems)
                    self.assertIn(f"{function}: securityhub:BatchUpdateFindings", problems[0])
                    self.assertIn(field, problems[0])
                    self.assertIn("explicitly denied", problems[0])

    def test_the_quota_ledger_is_written_only_through_its_update(self):
        # The enricher's environments, the refresher's and enricher-admin sweep's background claims.
        ok = [call(f, "dynamodb", "UpdateItem", table="cache", keys=[LEDGER]) for f in ("enricher", "refresher", "enricher-admin")]
        self.assertEqual(self.violations(ok)[1], [])
        for function in ("enricher", "refresher", "account-events", "enricher-admin"):
            with self.subTest(function):
                _, problems = self.violations([call(function, "dynamodb", "BatchWriteItem", tables=["cache"], keys=["111122223333", LEDGER])])
                self.assertEqual(len(problems), 1, problems)
                self.assertIn(f"leading keys 111122223333, {LEDGER}", problems[0])
            for operation in ("PutItem", "DeleteItem"):
                with self.subTest(function, operation=operation):
                    _, problems = self.violations([call(function, "dynamodb", operation, table="cache", keys=[LEDGER])])
                    self.assertEqual(len(problems), 1, problems)
        for function in ("investigator", "account-events"):
            with self.subTest(function):
                _, problems = self.violations([call(function, "dynamodb", "UpdateItem", table="cache", keys=[LEDGER])])
                self.assertEqual(len(problems), 1, problems)
        _, problems = self.violations([call("enricher", "dynamodb", "UpdateItem", table="cache", keys=["111122223333"])])
        self.assertEqual(len(problems), 1, "an account entry cannot be updated in place")

    def test_jobs_table_calls_exist_only_with_investigations(self):
        jobs = call("enricher", "dynamodb", "UpdateItem", table="jobs", keys=["j"])
        variants_off = [v for v in iam_check.ALL_VARIANTS if not v.investigations]
        self.assertEqual(self.violations([jobs], variants=variants_off)[0].violations, [])
        report, _ = self.violations([call("enricher", "dynamodb", "Scan", table="jobs")])
        (violation,) = report.violations
        self.assertIn("investigations on", violation.variant)

    def test_contact_calls_are_checked_against_the_contact_role(self):
        # The contact role may read contacts only: another Account Management call is denied to it...
        put = call("enricher", "account", "GetContactInformation", resource="111122223333", account=MGMT)
        report, problems = self.violations([put])
        variants = {v.variant for v in report.violations}
        self.assertTrue(problems)
        self.assertTrue(any("ContactRoleArn set" in v for v in variants))
        self.assertTrue(any("ContactRoleArn empty" in v for v in variants))
        # ...and the management account's own contact (no AccountId) is granted only to the contact role.
        own = call("enricher", "account", "GetAlternateContact", account=MGMT)
        self.assertEqual(self.violations([own])[1], [])

    def test_assume_role_needs_the_trust_of_the_contact_role(self):
        assume = call("enricher", "sts", "AssumeRole", resource=CONTACT_ROLE)
        self.assertEqual(self.violations([assume])[1], [])
        other_region = {"EnricherRoleArns": [f"arn:aws:iam::{ACCOUNT}:role/securityhub-enricher-eu-west-1"]}
        _, problems = self.violations([assume], management_parameters=other_region)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn(f"trust of {CONTACT_ROLE} for arn:aws:iam::{ACCOUNT}:role/securityhub-enricher-us-east-1", problems[0])
        both = {"EnricherRoleArns": [f"arn:aws:iam::{ACCOUNT}:role/securityhub-enricher-eu-west-1",
                                     f"arn:aws:iam::{ACCOUNT}:role/securityhub-enricher-us-east-1"]}
        self.assertEqual(self.violations([assume], management_parameters=both)[1], [])

    def test_calls_that_cannot_be_mapped_fail(self):
        cases = [
            (call("enricher", "dynamodb", "BatchGetItem", tables=["accounts"]), "neither the cache nor the jobs table"),
            (call("exporter", "organizations", "ListAccounts"), "has no function 'exporter'"),
            (call("enricher", "lambda", "Invoke"), "not mapped to IAM"),
            (call("enricher", "organizations", "DescribeAccount", resource="o-1234567890"), "not an account, OU or root id"),
        ]
        for record, expected in cases:
            with self.subTest(expected):
                _, problems = self.violations([record])
                self.assertTrue(problems)
                self.assertIn(expected, problems[0])

    def test_a_granted_call_missing_from_the_role_calls_list_fails(self):
        """The doctor checks deployed roles for the actions of pipes/role-calls.json only: a call
        the role allows but the list lacks would go unchecked there, so it fails here."""
        record = call("refresher", "dynamodb", "GetItem", table="cache", keys=[CHECKPOINT])
        self.assertEqual(self.violations([record])[1], [])
        role_calls = iam_check.load_role_calls()
        for entry in role_calls["refresher"]["calls"]:
            entry["actions"] = [a for a in entry["actions"] if a != "dynamodb:GetItem"]
        original = iam_check.load_role_calls
        iam_check.load_role_calls = lambda path=iam_check.ROLE_CALLS: role_calls
        try:
            _, problems = self.violations([record])
        finally:
            iam_check.load_role_calls = original
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("refresher: dynamodb:GetItem", problems[0])
        self.assertIn("not listed for refresher in pipes/role-calls.json", problems[0])

    def test_the_local_pipe_is_checked_against_the_pipe_role(self):
        stream = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/FindingsStream"
        self.assertEqual(self.violations([call("pipe", "kinesis", "GetRecords", resource=stream)])[1], [])
        _, problems = self.violations([call("pipe", "kinesis", "PutRecords", resource=stream)])
        self.assertEqual(len(problems), 1)
        _, problems = self.violations([call("enricher", "kinesis", "GetRecords", resource=stream)])
        self.assertEqual(len(problems), 1, "the enricher function itself may not read the stream")

    def test_redrive_and_stack_reads_reach_this_stacks_queue_stream_and_function_only(self):
        pipe_queue = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/pipe-dead-letters"
        events_queue = f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/events-dead-letters"
        denied = [
            call("enricher-admin", "sqs", "ReceiveMessage", resource=events_queue),
            call("enricher-admin", "sqs", "SendMessage", resource=pipe_queue),
            call("enricher", "sqs", "ReceiveMessage", resource=pipe_queue),
            call("enricher-admin", "kinesis", "DeleteStream", resource="findings"),
            call("enricher-admin", "cloudformation", "ListStackResources", resource="another-stack"),
            call("enricher-admin", "lambda", "GetFunctionConfiguration", resource="someone-elses-function"),
            call("enricher-admin", "pipes", "DescribePipe", resource="someone-elses-pipe"),
            call("enricher", "pipes", "DescribePipe"),
        ]
        for record in denied:
            with self.subTest(record):
                self.assertEqual(len(self.violations([record])[1]), 1)

    def test_operator_calls_are_checked_against_the_operator_policy(self):
        ok = [call("enricher-admin", "dynamodb", "Scan", table="cache"),
              call("enricher-admin", "securityhub", "BatchUpdateFindings", fields=["Note"])]
        self.assertEqual(self.violations(ok)[1], [])
        # The refresher's checkpoint is the enricher role's (the refresher's) alone.
        for operation in ("GetItem", "PutItem", "DeleteItem"):
            with self.subTest(operation):
                _, problems = self.violations([call("enricher-admin", "dynamodb", operation, table="cache", keys=[CHECKPOINT])])
                self.assertEqual(len(problems), 1, problems)
                self.assertIn(f"enricher-admin: dynamodb:{operation}", problems[0])
                self.assertEqual(self.violations([call("refresher", "dynamodb", operation, table="cache", keys=[CHECKPOINT])])[1], [])


    def test_the_doctor_may_simulate_the_stacks_roles_only(self):
        """doctor: iam:SimulatePrincipalPolicy is authorized on the role simulated."""
        role = f"arn:aws:iam::{ACCOUNT}:role/securityhub-enricher-EnricherRole-ABC123"
        self.assertEqual(self.violations([call("enricher-admin", "iam", "SimulatePrincipalPolicy", resource=role)])[1], [])
        investigator = f"arn:aws:iam::{ACCOUNT}:role/securityhub-enricher-InvestigatorRole-ABC123"
        _, problems = self.violations([call("enricher-admin", "iam", "SimulatePrincipalPolicy", resource=investigator)],
                                      variants=[iam_check.Variant(False, False, True, False, False)])
        self.assertEqual(problems, [], "with investigations on, the investigator's role too")
        _, problems = self.violations([call("enricher-admin", "iam", "SimulatePrincipalPolicy",
                                            resource=f"arn:aws:iam::{ACCOUNT}:role/someone-else")])
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("none of the stack's roles", problems[0])
        self.assertEqual(self.violations([call("enricher-admin", "cloudformation", "DescribeStacks",
                                               resource="securityhub-enricher")])[1], [])

class CommandLineTest(unittest.TestCase):
    def run_cli(self, lines, *args, create=True):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "calls.jsonl"
            if create:
                path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
            out, err = io.StringIO(), io.StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                code = iam_check.main([str(path), *args])
            return code, out.getvalue() + err.getvalue()

    def test_granted_log_passes(self):
        code, output = self.run_cli(CODE_CALLS, "--require-calls")
        self.assertEqual(code, 0, output)
        self.assertIn("all observed calls are granted", output)

    def test_ungranted_call_fails_naming_function_operation_and_grant(self):
        code, output = self.run_cli([*CODE_CALLS, call("investigator", "securityhub", "UpdateFindings")], "--require-calls")
        self.assertEqual(code, 1)
        self.assertIn("MISSING GRANT: investigator: securityhub:UpdateFindings needs securityhub:UpdateFindings on "
                      f"arn:aws:securityhub:us-east-1:{ACCOUNT}:hub/default", output)

    def test_it_cannot_pass_vacuously(self):
        code, output = self.run_cli([], "--require-calls", create=False)
        self.assertEqual(code, 1)
        self.assertIn("does not exist", output)
        code, output = self.run_cli([call(None, "dynamodb", "CreateTable", table="cache")], "--require-calls")
        self.assertEqual(code, 1)
        self.assertIn("no call attributed to a function", output)
        self.assertEqual(self.run_cli([], create=False)[0], 0, "without --require-calls a missing log is allowed")

    def test_malformed_lines_fail(self):
        code, output = self.run_cli([*CODE_CALLS, "{not json", {"service": "sts"}], "--require-calls")
        self.assertEqual(code, 1)
        self.assertIn("MALFORMED: line", output)


if __name__ == "__main__":
    unittest.main()
