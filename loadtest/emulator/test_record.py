"""Tests for the fault proxy's call log (--record, awsemu.record): request parsing in process, then both
proxies of the local stack (in front of moto and of the emulator) recording boto3 calls to one file.

Run from the repository root:
    .venv/bin/python -m unittest loadtest/emulator/test_record.py -v
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import unittest
from email.message import Message

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for running this file directly
from awsemu.identity import RequestInfo, app_name, identify  # noqa: E402
from awsemu.record import CallLog, call_record, dynamodb_targets, request_params  # noqa: E402
from test_awsemu import Emu, finding, ident  # noqa: E402
from test_faultproxy import Moto, Proxy  # noqa: E402

REGION = "us-east-1"
RUST_UA = "aws-sdk-rust/1.3.9 ua/2.1 api/dynamodb/1.116.0 os/linux lang/rust/1.89.0 m/E app/%s"
RECORD_KEYS = ["function", "service", "operation", "account", "region", "table", "tables", "leading_keys",
               "fields", "resource", "status"]


def headers(**values: str) -> Message:
    """Case-insensitive request headers, as the proxy's handler sees them (keyword _ stands for -)."""
    m = Message()
    for k, v in values.items():
        m[k.replace("_", "-")] = v
    return m


def auth(service: str, key: str = "111111111111", region: str = REGION) -> str:
    return ("AWS4-HMAC-SHA256 Credential=%s/20240101/%s/%s/aws4_request, SignedHeaders=host, Signature=0"
            % (key, region, service))


def ddb_record(operation: str, params: dict, **hdrs: str) -> dict:
    """The record of a DynamoDB call as the SDK sends it, answered with 200."""
    body = json.dumps(params).encode()
    h = headers(Authorization=auth("dynamodb"), X_Amz_Target="DynamoDB_20120810." + operation,
                Content_Type="application/x-amz-json-1.0", **hdrs)
    info = identify("POST", "/", h, body)
    return call_record(info, "111111111111", request_params(info, "/", body), 200)


def S(v: str) -> dict:
    return {"S": v}


class AppNameTests(unittest.TestCase):
    def test_from_x_amz_user_agent(self) -> None:
        self.assertEqual(app_name(headers(X_Amz_User_Agent=RUST_UA % "enricher", User_Agent="aws-sdk-rust/1.3.9")),
                         "enricher")
        self.assertEqual(app_name(headers(x_amz_user_agent=RUST_UA % "enricher-admin")), "enricher-admin")

    def test_from_user_agent(self) -> None:
        ua = "Boto3/1.44.8 md/Botocore#1.44.8 ua/2.1 os/linux lang/python#3.11.7 app/account-events Botocore/1.44.8"
        self.assertEqual(app_name(headers(User_Agent=ua)), "account-events")
        self.assertEqual(app_name(headers(User_Agent="app/refresher")), "refresher")

    def test_no_app_token(self) -> None:
        self.assertIsNone(app_name(headers()))
        self.assertIsNone(app_name(headers(User_Agent="aws-sdk-rust/1.3.9 os/linux lang/rust/1.89.0 myapp/x")))
        record = ddb_record("GetItem", {"TableName": "cache", "Key": {"AccountId": S("123456789012")}},
                            User_Agent="aws-sdk-rust/1.3.9 os/linux lang/rust/1.89.0")
        self.assertIsNone(record["function"])
        self.assertEqual(record["operation"], "GetItem")


class DynamoDbTests(unittest.TestCase):
    def test_get_item_record(self) -> None:
        record = ddb_record("GetItem", {"TableName": "cache", "Key": {"AccountId": S("123456789012")}},
                            X_Amz_User_Agent=RUST_UA % "enricher")
        self.assertEqual(list(record), RECORD_KEYS)
        self.assertEqual(record, {
            "function": "enricher", "service": "dynamodb", "operation": "GetItem", "account": "111111111111",
            "region": REGION, "table": "cache", "tables": [], "leading_keys": ["123456789012"], "fields": [],
            "resource": None, "status": 200})

    def test_put_item(self) -> None:
        item = {"JobId": S("job-1"), "Status": S("PENDING"), "Entity": S("arn:aws:iam::1:user/u")}
        self.assertEqual(dynamodb_targets("PutItem", {"TableName": "jobs", "Item": item}), ("jobs", [], ["job-1"]))
        # an item's other attributes are not keys
        self.assertEqual(dynamodb_targets("PutItem", {"TableName": "t", "Item": {"k": S("a"), "v": S("b")}}),
                         ("t", [], []))

    def test_update_item(self) -> None:
        params = {"TableName": "cache", "Key": {"AccountId": S("__quota__")}, "UpdateExpression": "SET #c = :c",
                  "ExpressionAttributeNames": {"#c": "Claims"}, "ExpressionAttributeValues": {":c": {"N": "1"}}}
        self.assertEqual(dynamodb_targets("UpdateItem", params), ("cache", [], ["__quota__"]))

    def test_delete_item(self) -> None:
        self.assertEqual(dynamodb_targets("DeleteItem", {"TableName": "cache", "Key": {"AccountId": S("222222222222")}}),
                         ("cache", [], ["222222222222"]))
        # any table's single string key
        self.assertEqual(dynamodb_targets("DeleteItem", {"TableName": "t", "Key": {"k": S("x")}}), ("t", [], ["x"]))
        # a composite key of an unknown table names no partition key
        self.assertEqual(dynamodb_targets("DeleteItem", {"TableName": "t", "Key": {"h": S("x"), "r": S("y")}}),
                         ("t", [], []))

    def test_batch_get_item(self) -> None:
        params = {"RequestItems": {
            "cache": {"Keys": [{"AccountId": S("111111111111")}, {"AccountId": S("222222222222")},
                               {"AccountId": S("111111111111")}], "ConsistentRead": True},
            "jobs": {"Keys": [{"JobId": S("j-1")}]}}}
        record = ddb_record("BatchGetItem", params, X_Amz_User_Agent=RUST_UA % "enricher")
        self.assertEqual((record["table"], record["tables"], record["leading_keys"]),
                         (None, ["cache", "jobs"], ["111111111111", "222222222222", "j-1"]))

    def test_batch_write_item(self) -> None:
        params = {"RequestItems": {
            "cache": [{"PutRequest": {"Item": {"AccountId": S("111111111111"), "Name": S("prod")}}},
                      {"DeleteRequest": {"Key": {"AccountId": S("333333333333")}}}],
            "jobs": [{"DeleteRequest": {"Key": {"JobId": S("j-9")}}}]}}
        self.assertEqual(dynamodb_targets("BatchWriteItem", params),
                         (None, ["cache", "jobs"], ["111111111111", "333333333333", "j-9"]))

    def test_transact_write_items(self) -> None:
        params = {"TransactItems": [
            {"Put": {"TableName": "jobs", "Item": {"JobId": S("j-2"), "Status": S("PENDING")}}},
            {"Update": {"TableName": "cache", "Key": {"AccountId": S("__quota__")}, "UpdateExpression": "SET a = :a"}},
            {"ConditionCheck": {"TableName": "jobs", "Key": {"JobId": S("j-1")}, "ConditionExpression": "x"}}]}
        self.assertEqual(dynamodb_targets("TransactWriteItems", params),
                         (None, ["jobs", "cache"], ["j-2", "__quota__", "j-1"]))

    def test_query(self) -> None:
        by_name = {"TableName": "jobs", "KeyConditionExpression": "#k = :v AND begins_with(#s, :p)",
                   "ExpressionAttributeNames": {"#k": "JobId", "#s": "Sort"},
                   "ExpressionAttributeValues": {":v": S("j-7"), ":p": S("2024")}}
        self.assertEqual(dynamodb_targets("Query", by_name), ("jobs", [], ["j-7"]))
        reversed_ = {"TableName": "cache", "KeyConditionExpression": ":a = AccountId",
                     "ExpressionAttributeValues": {":a": S("444444444444")}}
        self.assertEqual(dynamodb_targets("Query", reversed_), ("cache", [], ["444444444444"]))
        single = {"TableName": "t", "KeyConditionExpression": "pk = :v", "ExpressionAttributeValues": {":v": S("p")}}
        self.assertEqual(dynamodb_targets("Query", single), ("t", [], ["p"]))
        legacy = {"TableName": "cache", "KeyConditions": {
            "AccountId": {"ComparisonOperator": "EQ", "AttributeValueList": [S("555555555555")]}}}
        self.assertEqual(dynamodb_targets("Query", legacy), ("cache", [], ["555555555555"]))

    def test_scan_and_table_operations(self) -> None:
        self.assertEqual(dynamodb_targets("Scan", {"TableName": "jobs", "FilterExpression": "#s IN (:p)"}),
                         ("jobs", [], []))
        self.assertEqual(dynamodb_targets("ListTables", {}), (None, [], []))


class OtherServiceTests(unittest.TestCase):
    def rest_record(self, service: str, method: str, path: str, params: dict, app: str = "enricher") -> dict:
        body = json.dumps(params).encode()
        info = identify(method, path, headers(Authorization=auth(service), X_Amz_User_Agent=RUST_UA % app), body)
        return call_record(info, "111111111111", request_params(info, path, body), 200)

    def test_securityhub_batch_update_findings_fields(self) -> None:
        record = self.rest_record("securityhub", "PATCH", "/findings/batchupdate", {
            "FindingIdentifiers": [{"Id": "f-1", "ProductArn": "arn:p"}],
            "UserDefinedFields": {"enricher:account": "prod"}, "Note": {"Text": "t", "UpdatedBy": "enricher"}})
        self.assertEqual((record["service"], record["operation"], record["fields"]),
                         ("securityhub", "BatchUpdateFindings", ["Note", "UserDefinedFields"]))
        v2 = RequestInfo("securityhub", "BatchUpdateFindingsV2", None, "restjson")
        self.assertEqual(call_record(v2, None, {"MetadataUids": ["u"], "Comment": "c", "SeverityId": 3}, 200)["fields"],
                         ["Comment", "SeverityId"])
        other = self.rest_record("securityhub", "POST", "/findings", {"Filters": {}, "MaxResults": 10})
        self.assertEqual((other["operation"], other["fields"]), ("GetFindings", []))
        self.assertEqual(self.rest_record("securityhub", "POST", "/findings/import", {"Findings": []})["operation"],
                         "BatchImportFindings")

    def test_pipes_describe_pipe_is_named_from_its_path(self) -> None:
        record = self.rest_record("pipes", "GET", "/v1/pipes/stack-EnricherPipe-X1", {}, app="enricher-admin")
        self.assertEqual((record["service"], record["operation"], record["function"]),
                         ("pipes", "DescribePipe", "enricher-admin"))
        self.assertNotEqual(self.rest_record("pipes", "GET", "/v1/pipes", {})["operation"], "DescribePipe")  # ListPipes

    def test_detective_operations_and_graph(self) -> None:
        graph = "arn:aws:detective:us-east-1:111111111111:graph:" + "a" * 32
        for path, op in (("/graphs/list", "ListGraphs"), ("/graph", "CreateGraph"),
                         ("/investigations/startInvestigation", "StartInvestigation"),
                         ("/investigations/getInvestigation", "GetInvestigation"),
                         ("/investigations/listIndicators", "ListIndicators")):
            record = self.rest_record("detective", "POST", path, {"GraphArn": graph}, app="investigator")
            self.assertEqual((record["function"], record["service"], record["operation"], record["resource"]),
                             ("investigator", "detective", op, graph))

    def test_account_organizations_kinesis_sts_resources(self) -> None:
        account = self.rest_record("account", "POST", "/getAlternateContact",
                                   {"AccountId": "222222222222", "AlternateContactType": "SECURITY"})
        self.assertEqual((account["operation"], account["resource"]), ("GetAlternateContact", "222222222222"))

        def json_record(service: str, target: str, params: dict) -> dict:
            body = json.dumps(params).encode()
            info = identify("POST", "/", headers(Authorization=auth(service), X_Amz_Target=target,
                                                 Content_Type="application/x-amz-json-1.1"), body)
            return call_record(info, None, request_params(info, "/", body), 200)

        org = json_record("organizations", "AWSOrganizationsV20161128.ListTagsForResource", {"ResourceId": "ou-1"})
        self.assertEqual((org["operation"], org["resource"]), ("ListTagsForResource", "ou-1"))
        org = json_record("organizations", "AWSOrganizationsV20161128.DescribeAccount", {"AccountId": "333333333333"})
        self.assertEqual(org["resource"], "333333333333")
        stream = "arn:aws:kinesis:us-east-1:111111111111:stream/findings"
        kin = json_record("kinesis", "Kinesis_20131202.PutRecords", {"StreamARN": stream, "Records": []})
        self.assertEqual((kin["operation"], kin["resource"]), ("PutRecords", stream))
        events = json_record("events", "AWSEvents.PutEvents", {"Entries": [{"EventBusName": "bus", "Detail": "{}"}]})
        self.assertEqual((events["service"], events["operation"], events["resource"]), ("events", "PutEvents", "bus"))

        role = "arn:aws:iam::444444444444:role/enricher-read"
        body = ("Action=AssumeRole&Version=2011-06-15&RoleArn=%s&RoleSessionName=s" % role.replace(":", "%3A")).encode()
        info = identify("POST", "/", headers(Authorization=auth("sts", region="eu-west-1"),
                                             Content_Type="application/x-www-form-urlencoded",
                                             User_Agent="x app/refresher"), body)
        sts = call_record(info, "111111111111", request_params(info, "/", body), 403)
        self.assertEqual(sts, {
            "function": "refresher", "service": "sts", "operation": "AssumeRole", "account": "111111111111",
            "region": "eu-west-1", "table": None, "tables": [], "leading_keys": [], "fields": [], "resource": role,
            "status": 403})


class CallLogTests(unittest.TestCase):
    def test_concurrent_writers_produce_whole_lines(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "sub", "calls.jsonl")
            logs = [CallLog(path), CallLog(path)]  # two proxies sharing one file
            threads_per_log, per_thread = 4, 200
            big = ["k" * 100] * 100  # lines of ~10 KB, beyond any stdio buffer

            def writer(log: CallLog, n: int) -> None:
                for i in range(per_thread):
                    log.write({"function": "w%d" % n, "i": i, "leading_keys": big})

            threads = [threading.Thread(target=writer, args=(log, li * threads_per_log + t))
                       for li, log in enumerate(logs) for t in range(threads_per_log)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for log in logs:
                log.close()
            with open(path) as fh:
                lines = fh.read().split("\n")
            self.assertEqual(lines[-1], "")
            records = [json.loads(line) for line in lines[:-1]]
            self.assertEqual(len(records), 2 * threads_per_log * per_thread)
            self.assertTrue(all(r["leading_keys"] == big for r in records))
            for n in range(2 * threads_per_log):
                self.assertEqual([r["i"] for r in records if r["function"] == "w%d" % n], list(range(per_thread)))


# -- both proxies of the local stack, one call log ----------------------------------------
STACK: dict = {}


def setUpModule() -> None:
    STACK["tmp"] = tempfile.TemporaryDirectory()
    STACK["log"] = os.path.join(STACK["tmp"].name, "calls.jsonl")
    STACK["moto"] = Moto()
    STACK["emu"] = Emu("--no-throttle")
    STACK["moto_proxy"] = Proxy(STACK["moto"].url, "--record", STACK["log"])
    STACK["emu_proxy"] = Proxy(STACK["emu"].url, "--record", STACK["log"], "--credentials-from", STACK["moto_proxy"].url)


def tearDownModule() -> None:
    for name in ("moto_proxy", "emu_proxy", "emu", "moto"):
        if name in STACK:
            STACK[name].stop()
    STACK["tmp"].cleanup()


def client(service: str, proxy: str, app: str | None = None, key: str = "111111111111", secret: str = "secret",
           token: str | None = None):
    config = Config(retries={"total_max_attempts": 1}, user_agent_appid=app)
    return boto3.client(service, endpoint_url=STACK[proxy].url, region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret, aws_session_token=token, config=config)


def records() -> list[dict]:
    with open(STACK["log"]) as fh:
        return [json.loads(line) for line in fh]


class RecordingProxiesTest(unittest.TestCase):
    def test_dynamodb_calls_with_and_without_app_name_and_a_fault(self) -> None:
        setup = client("dynamodb", "moto_proxy")
        setup.create_table(TableName="rec-cache", KeySchema=[{"AttributeName": "AccountId", "KeyType": "HASH"}],
                           AttributeDefinitions=[{"AttributeName": "AccountId", "AttributeType": "S"}],
                           BillingMode="PAY_PER_REQUEST")
        ddb = client("dynamodb", "moto_proxy", app="enricher")
        ddb.put_item(TableName="rec-cache", Item={"AccountId": S("222222222222"), "Name": S("prod")})
        ddb.get_item(TableName="rec-cache", Key={"AccountId": S("222222222222")})
        ddb.batch_get_item(RequestItems={"rec-cache": {"Keys": [{"AccountId": S("222222222222")}]}})
        STACK["moto_proxy"].rules({"service": "dynamodb", "operation": "DeleteItem", "fault": "throttle"})
        try:
            with self.assertRaises(ClientError):
                ddb.delete_item(TableName="rec-cache", Key={"AccountId": S("222222222222")})
        finally:
            STACK["moto_proxy"].control("DELETE", "rules")
        mine = [r for r in records() if r["table"] == "rec-cache" or r["tables"] == ["rec-cache"]]
        self.assertEqual([(r["function"], r["operation"], r["status"]) for r in mine], [
            (None, "CreateTable", 200), ("enricher", "PutItem", 200), ("enricher", "GetItem", 200),
            ("enricher", "BatchGetItem", 200), ("enricher", "DeleteItem", 400)])
        self.assertTrue(all(r["leading_keys"] == ["222222222222"] for r in mine[1:]), mine)
        self.assertTrue(all((r["service"], r["account"], r["region"]) == ("dynamodb", "111111111111", REGION)
                            for r in mine), mine)

    def test_emulator_calls_with_assumed_role_credentials(self) -> None:
        role = "arn:aws:iam::666666666666:role/enricher-admin"
        creds = client("sts", "moto_proxy", app="enricher").assume_role(
            RoleArn=role, RoleSessionName="rec")["Credentials"]
        hub = client("securityhub", "emu_proxy", app="enricher", key=creds["AccessKeyId"],
                     secret=creds["SecretAccessKey"], token=creds["SessionToken"])
        STACK["emu"].http("POST", "/_emulator/credentials", json.dumps(
            {"access_key_id": creds["AccessKeyId"], "account_id": "666666666666"}).encode())
        setup = client("securityhub", "emu_proxy", key="666666666666")
        setup.batch_import_findings(Findings=[finding("666666666666", "rec-1")])
        out = hub.batch_update_findings(FindingIdentifiers=[ident("666666666666", "rec-1")],
                                        Note={"Text": "t", "UpdatedBy": "enricher"}, UserDefinedFields={"a": "b"})
        self.assertEqual(len(out["ProcessedFindings"]), 1)
        all_records = records()
        assume = [r for r in all_records if r["operation"] == "AssumeRole" and r["resource"] == role]
        self.assertEqual([(r["function"], r["service"], r["status"]) for r in assume], [("enricher", "sts", 200)])
        hub_records = [r for r in all_records if r["service"] == "securityhub" and r["account"] == "666666666666"]
        self.assertEqual([(r["function"], r["operation"], r["fields"], r["status"]) for r in hub_records], [
            (None, "BatchImportFindings", [], 200),
            ("enricher", "BatchUpdateFindings", ["Note", "UserDefinedFields"], 200)])

    def test_reset_fault_has_no_status_and_control_calls_are_not_recorded(self) -> None:
        STACK["moto_proxy"].rules({"service": "kinesis", "operation": "ListStreams", "fault": "reset"})
        try:
            with self.assertRaises(Exception):
                client("kinesis", "moto_proxy", app="refresher").list_streams()
        finally:
            STACK["moto_proxy"].control("DELETE", "rules")
        listed = [r for r in records() if r["operation"] == "ListStreams"]
        self.assertEqual([(r["function"], r["status"]) for r in listed], [("refresher", None)])
        self.assertFalse([r for r in records() if r["service"] == "unknown"], "control API calls were recorded")


if __name__ == "__main__":
    unittest.main()
