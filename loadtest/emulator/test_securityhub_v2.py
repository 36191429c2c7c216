"""Tests for the new hub's operations in awsemu: BatchUpdateFindingsV2 and GetFindingsV2 over the
wire through boto3, with the service model's limits and error shapes.

Run from the repository root:
    .venv/bin/python -m unittest discover -s loadtest/emulator -v
"""

from __future__ import annotations

import json
import os
import sys
import unittest

from botocore.exceptions import ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for running this file directly
from test_awsemu import Emu, new_account  # noqa: E402

PRODUCT = "arn:aws:securityhub:us-east-1::productv2/aws/guardduty"


def ocsf(account: str, uid: str, **over) -> dict:
    f = {
        "metadata": {"uid": uid, "product": {"uid": PRODUCT, "name": "GuardDuty"}},
        "cloud": {"account": {"uid": account}},
        "finding_info": {"uid": "gd-" + uid, "title": "Recon", "modified_time": 1767225600000},
        "severity": "High", "severity_id": 4, "status": "New", "status_id": 1,
    }
    f.update(over)
    return f


class V2Tests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emu("--no-throttle")

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.acct = new_account()
        self.c = self.emu.client(self.acct)

    def seed(self, findings: list[dict]) -> None:
        status, _, body = self.emu.http("POST", "/_emulator/findingsv2?account=" + self.acct,
                                        json.dumps({"Findings": findings}).encode(), {"Content-Type": "application/json"})
        self.assertEqual(status, 200, body)

    def stored(self) -> dict[str, dict]:
        _, _, body = self.emu.http("GET", "/_emulator/findingsv2?account=" + self.acct)
        return {f["metadata"]["uid"]: f for f in body}

    def assertValidation(self, ctx, message_re: str):
        err = ctx.exception
        self.assertIsInstance(err, ClientError)
        self.assertEqual(err.response["Error"]["Code"], "ValidationException")
        self.assertEqual(err.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        self.assertRegex(err.response["Error"]["Message"], message_re)

    def test_comment_by_metadata_uid_and_not_found(self):
        self.seed([ocsf(self.acct, "m1"), ocsf(self.acct, "m2")])
        resp = self.c.batch_update_findings_v2(MetadataUids=["m1", "m2", "nope"], Comment="ours")
        self.assertEqual(resp["ProcessedFindings"], [{"MetadataUid": "m1"}, {"MetadataUid": "m2"}])
        self.assertEqual(len(resp["UnprocessedFindings"]), 1)
        self.assertEqual(resp["UnprocessedFindings"][0]["MetadataUid"], "nope")
        self.assertEqual(resp["UnprocessedFindings"][0]["ErrorCode"], "ResourceNotFoundException")
        stored = self.stored()
        self.assertEqual(stored["m1"]["comment"], "ours")
        self.assertEqual(stored["m1"]["finding_info"]["modified_time"], 1767225600000, "not touched by V2 updates")

    def test_comment_by_finding_identifier_and_severity_status_siblings(self):
        self.seed([ocsf(self.acct, "m1")])
        ident = {"CloudAccountUid": self.acct, "FindingInfoUid": "gd-m1", "MetadataProductUid": PRODUCT}
        resp = self.c.batch_update_findings_v2(FindingIdentifiers=[ident], SeverityId=5, StatusId=2)
        self.assertEqual(resp["ProcessedFindings"], [{"FindingIdentifier": ident}])
        stored = self.stored()["m1"]
        self.assertEqual((stored["severity_id"], stored["severity"]), (5, "Critical"))
        self.assertEqual((stored["status_id"], stored["status"]), (2, "In Progress"))

    def test_validation_errors(self):
        self.seed([ocsf(self.acct, "m1")])
        ident = {"CloudAccountUid": self.acct, "FindingInfoUid": "gd-m1", "MetadataProductUid": PRODUCT}
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings_v2(MetadataUids=["m1"], FindingIdentifiers=[ident], Comment="x")
        self.assertValidation(ctx, "together")
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings_v2(MetadataUids=["m%d" % i for i in range(101)], Comment="x")
        self.assertValidation(ctx, "at most 100")
        resp = self.c.batch_update_findings_v2(MetadataUids=["m%d" % i for i in range(100)], Comment="x")
        self.assertEqual(len(resp["ProcessedFindings"]) + len(resp["UnprocessedFindings"]), 100)
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings_v2(MetadataUids=["m1"], Comment="x" * 513)
        self.assertValidation(ctx, "512")
        self.c.batch_update_findings_v2(MetadataUids=["m1"], Comment="x" * 512)
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings_v2(MetadataUids=["m1"], Comment="   ")
        self.assertValidation(ctx, "Comment")
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings_v2(MetadataUids=["m1"])
        self.assertValidation(ctx, "at least one")
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings_v2(MetadataUids=["m1"], SeverityId=7)
        self.assertValidation(ctx, "SeverityId")
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings_v2(Comment="x")
        self.assertValidation(ctx, "required")

    def test_get_findings_v2_filters_and_pages(self):
        other = new_account()
        self.seed([ocsf(self.acct, "m%d" % i) for i in range(5)] + [ocsf(other, "o1")])
        resp = self.c.get_findings_v2(Filters={"CompositeFilters": [{"StringFilters": [
            {"FieldName": "cloud.account.uid", "Filter": {"Value": self.acct, "Comparison": "EQUALS"}}]}]}, MaxResults=2)
        self.assertEqual(len(resp["Findings"]), 2)
        seen = [f["metadata"]["uid"] for f in resp["Findings"]]
        while "NextToken" in resp:
            resp = self.c.get_findings_v2(Filters={"CompositeFilters": [{"StringFilters": [
                {"FieldName": "cloud.account.uid", "Filter": {"Value": self.acct, "Comparison": "EQUALS"}}]}]},
                MaxResults=2, NextToken=resp["NextToken"])
            seen += [f["metadata"]["uid"] for f in resp["Findings"]]
        self.assertEqual(sorted(seen), ["m%d" % i for i in range(5)])
        either = self.c.get_findings_v2(Filters={"CompositeOperator": "OR", "CompositeFilters": [
            {"StringFilters": [{"FieldName": "metadata.uid", "Filter": {"Value": "m1", "Comparison": "EQUALS"}}]},
            {"StringFilters": [{"FieldName": "metadata.uid", "Filter": {"Value": "o1", "Comparison": "EQUALS"}}]}]})
        self.assertEqual(sorted(f["metadata"]["uid"] for f in either["Findings"]), ["m1", "o1"])
        with self.assertRaises(ClientError) as ctx:
            self.c.get_findings_v2(MaxResults=101)
        self.assertValidation(ctx, "MaxResults")
        with self.assertRaises(ClientError) as ctx:
            self.c.get_findings_v2(Filters={"CompositeFilters": [{"StringFilters": [
                {"FieldName": "metadata.uid", "Filter": {"Value": "m1", "Comparison": "EQUALS"}}]}] * 11})
        self.assertValidation(ctx, "10 composite")

    def test_get_findings_v2_sorts_by_account_and_skips_ended_statuses(self):
        a, b = sorted([new_account(), new_account()])
        seeded = [ocsf(b, "b1"), ocsf(a, "a1"), ocsf(b, "b2"), ocsf(a, "a2")]
        seeded[2]["status"] = "Resolved"
        self.seed(seeded)
        body = {"Filters": {"CompositeOperator": "AND", "CompositeFilters": [
                    {"Operator": "AND", "StringFilters": [
                        {"FieldName": "status", "Filter": {"Value": s, "Comparison": "NOT_EQUALS"}}
                        for s in ("Resolved", "Archived", "Deleted")]},
                    {"Operator": "OR", "StringFilters": [
                        {"FieldName": "cloud.account.uid", "Filter": {"Value": acct, "Comparison": "EQUALS"}}
                        for acct in (a, b)]}]},
                "SortCriteria": [{"Field": "cloud.account.uid", "SortOrder": "asc"}], "MaxResults": 1}
        resp = self.c.get_findings_v2(**body)
        accounts = [resp["Findings"][0]["cloud"]["account"]["uid"]]
        while "NextToken" in resp:
            resp = self.c.get_findings_v2(**body, NextToken=resp["NextToken"])
            accounts += [f["cloud"]["account"]["uid"] for f in resp["Findings"]]
        self.assertEqual(accounts, [a, a, b], "account order, the resolved finding left out")
        with self.assertRaises(ClientError) as ctx:
            self.c.get_findings_v2(SortCriteria=[{"Field": "no.such.field", "SortOrder": "asc"}])
        self.assertValidation(ctx, "SortCriteria")


if __name__ == "__main__":
    unittest.main()
