"""Tests for the fault proxy (python -m awsemu.faultproxy): moto_server behind the proxy, driven through boto3.

Run from the repository root:
    .venv/bin/python -m unittest loadtest/emulator/test_faultproxy.py -v
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, HTTPClientError
from botocore.retries.standard import RetryContext, ThrottledRetryableChecker, TransientRetryableChecker
from urllib3.exceptions import ProtocolError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for running this file directly
from serverproc import ServerProcess  # noqa: E402

REGION = "us-east-1"
NO_RETRY = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=10)
DEFAULT_KEY = "AKIAFAULTPROXYTEST01"

_seq = itertools.count(1)


def moto_server_command() -> list[str]:
    candidate = os.path.join(os.path.dirname(sys.executable), "moto_server")
    if os.path.exists(candidate):
        return [candidate]
    found = shutil.which("moto_server")
    if found:
        return [found]
    return [sys.executable, "-m", "moto.server"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, method: str = "GET", body: object = None, raw: bytes | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Moto:
    def __init__(self) -> None:
        self.tmpdir = tempfile.TemporaryDirectory()
        self.log = open(os.path.join(self.tmpdir.name, "moto.log"), "w+")
        self.port = free_port()
        self.proc = subprocess.Popen(moto_server_command() + ["-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.url = "http://127.0.0.1:%d" % self.port
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(self.url + "/moto-api/data.json", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise RuntimeError("moto_server did not start: " + self.log.read())
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.tmpdir.cleanup()


class Proxy(ServerProcess):
    """A faultproxy subprocess (python -m awsemu.faultproxy) on a free port."""

    def __init__(self, upstream: str, *args: str) -> None:
        super().__init__("awsemu.faultproxy", "faultproxy", "--listen-port", "0", "--upstream", upstream, *args)

    def client(self, service: str, key: str = DEFAULT_KEY, secret: str = "secret", token: str | None = None):
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, aws_access_key_id=key,
                            aws_secret_access_key=secret, aws_session_token=token, config=NO_RETRY)

    def control(self, method: str, path: str, body: object = None):
        status, data = http(self.url + "/_faults/" + path, method, body)
        return status, json.loads(data or b"null")

    def rules(self, *rules: dict, seed: int | None = None) -> None:
        body: dict = {"rules": list(rules)}
        if seed is not None:
            body["seed"] = seed
        status, out = self.control("POST", "rules", body)
        assert status == 200, out

    def stats(self) -> dict:
        status, out = self.control("GET", "stats")
        assert status == 200, out
        return out


MOTO: Moto | None = None
PROXY: Proxy | None = None


def setUpModule() -> None:
    global MOTO, PROXY
    MOTO = Moto()
    PROXY = Proxy(MOTO.url, "--seed", "1")


def tearDownModule() -> None:
    if PROXY is not None:
        PROXY.stop()
    if MOTO is not None:
        MOTO.stop()


def error_of(cm) -> tuple[str, int]:
    e = cm.exception
    return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]


def is_throttling(exc: ClientError) -> bool:
    """botocore's standard retry mode classification of a parsed error response."""
    return ThrottledRetryableChecker().is_retryable(RetryContext(attempt_number=1, parsed_response=exc.response))


def ensure_organization(org) -> str:
    try:
        org.create_organization(FeatureSet="ALL")
    except ClientError as e:
        if e.response["Error"]["Code"] != "AlreadyInOrganizationException":
            raise
    return org.describe_organization()["Organization"]["MasterAccountId"]


def new_table(ddb) -> str:
    name = "fp-table-%d" % next(_seq)
    ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    return name


class FaultProxyTest(unittest.TestCase):
    def setUp(self) -> None:
        status, _ = PROXY.control("POST", "reset")
        self.assertEqual(status, 200)
        PROXY.control("DELETE", "credentials")

    # -- plumbing ---------------------------------------------------------------
    def test_startup_line_and_port_file(self) -> None:
        self.assertEqual(PROXY.stdout_line, "faultproxy listening on 127.0.0.1:%d" % PROXY.port)
        status, out = PROXY.control("GET", "health")
        self.assertEqual((status, out["ok"]), (200, True))

    def test_forwarding_dynamodb_and_organizations(self) -> None:
        ddb = PROXY.client("dynamodb")
        table = new_table(ddb)
        ddb.put_item(TableName=table, Item={"k": {"S": "a"}, "v": {"N": "42"}})
        item = ddb.get_item(TableName=table, Key={"k": {"S": "a"}})["Item"]
        self.assertEqual(item, {"k": {"S": "a"}, "v": {"N": "42"}})
        # the item really is in moto: read it directly, not through the proxy
        direct = boto3.client("dynamodb", endpoint_url=MOTO.url, region_name=REGION,
                              aws_access_key_id=DEFAULT_KEY, aws_secret_access_key="x", config=NO_RETRY)
        self.assertEqual(direct.get_item(TableName=table, Key={"k": {"S": "a"}})["Item"], item)

        org = PROXY.client("organizations")
        master = ensure_organization(org)
        self.assertRegex(master, r"^\d{12}$")
        self.assertEqual(org.describe_account(AccountId=master)["Account"]["Id"], master)

        fwd = PROXY.stats()["forwarded"]
        self.assertEqual(fwd["dynamodb"]["CreateTable"], 1)
        self.assertEqual(fwd["dynamodb"]["PutItem"], 1)
        self.assertEqual(fwd["dynamodb"]["GetItem"], 1)
        self.assertGreaterEqual(fwd["organizations"]["DescribeOrganization"], 1)
        self.assertEqual(fwd["organizations"]["DescribeAccount"], 1)

    def test_moto_api_is_forwarded_untouched(self) -> None:
        PROXY.rules({"service": "*", "operation": "*", "fault": "error500"})
        status, body = http(PROXY.url + "/moto-api/data.json")
        self.assertEqual(status, 200)
        self.assertIsInstance(json.loads(body), dict)
        stats = PROXY.stats()
        self.assertEqual(stats["totals"]["moto_api"], 1)
        self.assertEqual(stats["totals"]["faulted"], 0)

    # -- throttling per protocol -----------------------------------------------
    def test_organizations_throttle_only_describe_account(self) -> None:
        org = PROXY.client("organizations")
        master = ensure_organization(org)
        PROXY.rules({"service": "organizations", "operation": "DescribeAccount", "fault": "throttle"})
        with self.assertRaises(ClientError) as cm:
            org.describe_account(AccountId=master)
        self.assertEqual(error_of(cm), ("TooManyRequestsException", 400))
        self.assertTrue(is_throttling(cm.exception))
        # other operations pass
        self.assertEqual(org.describe_organization()["Organization"]["MasterAccountId"], master)
        org.list_accounts()
        # and the operation itself passes again once the rules are gone
        PROXY.control("DELETE", "rules")
        self.assertEqual(org.describe_account(AccountId=master)["Account"]["Id"], master)

    def test_dynamodb_throttle(self) -> None:
        ddb = PROXY.client("dynamodb")
        table = new_table(ddb)
        PROXY.rules({"service": "dynamodb", "operation": "BatchGetItem", "fault": "throttle"})
        with self.assertRaises(ClientError) as cm:
            ddb.batch_get_item(RequestItems={table: {"Keys": [{"k": {"S": "x"}}]}})
        self.assertEqual(error_of(cm), ("ThrottlingException", 400))
        headers = cm.exception.response["ResponseMetadata"]["HTTPHeaders"]
        self.assertEqual(headers["content-type"], "application/x-amz-json-1.0")
        self.assertEqual(headers["x-amzn-errortype"], "ThrottlingException")
        self.assertTrue(is_throttling(cm.exception))
        ddb.put_item(TableName=table, Item={"k": {"S": "x"}})

    def test_kinesis_throttle_codes(self) -> None:
        kin = PROXY.client("kinesis")
        stream = "fp-stream-%d" % next(_seq)
        kin.create_stream(StreamName=stream, ShardCount=1)
        PROXY.rules({"service": "kinesis", "operation": "PutRecords", "fault": "throttle"},
                    {"service": "kinesis", "operation": "ListStreams", "fault": "throttle"})
        with self.assertRaises(ClientError) as cm:
            kin.put_records(StreamName=stream, Records=[{"Data": b"x", "PartitionKey": "p"}])
        self.assertEqual(error_of(cm), ("ProvisionedThroughputExceededException", 400))
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPHeaders"]["content-type"],
                         "application/x-amz-json-1.1")
        with self.assertRaises(ClientError) as cm:
            kin.list_streams()
        self.assertEqual(error_of(cm), ("LimitExceededException", 400))
        self.assertTrue(is_throttling(cm.exception))
        kin.put_record(StreamName=stream, Data=b"y", PartitionKey="p")

    def test_kinesis_partial_failure_fails_some_entries_and_stores_the_rest(self) -> None:
        kin = PROXY.client("kinesis")
        stream = "fp-stream-%d" % next(_seq)
        kin.create_stream(StreamName=stream, ShardCount=1)
        PROXY.rules({"service": "kinesis", "operation": "PutRecords", "fault": "partial_failure",
                     "entry_probability": 0.5, "seed": 7})
        records = [{"Data": b"r%d" % i, "PartitionKey": "p"} for i in range(40)]
        out = kin.put_records(StreamName=stream, Records=records)
        failed = [i for i, r in enumerate(out["Records"]) if "ErrorCode" in r]
        self.assertEqual(out["FailedRecordCount"], len(failed))
        self.assertTrue(0 < len(failed) < 40, failed)
        for i, r in enumerate(out["Records"]):
            if i in failed:
                self.assertEqual(r["ErrorCode"], "ProvisionedThroughputExceededException")
                self.assertIn(stream, r["ErrorMessage"])
            else:
                self.assertIn("SequenceNumber", r)
        PROXY.control("DELETE", "rules")
        shard = kin.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
        iterator = kin.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        stored = [r["Data"] for r in kin.get_records(ShardIterator=iterator["ShardIterator"])["Records"]]
        self.assertEqual(stored, [b"r%d" % i for i in range(40) if i not in failed], "only the successes reach moto")
        PROXY.rules({"service": "kinesis", "operation": "PutRecords", "fault": "partial_failure",
                     "entry_probability": 1})
        out = kin.put_records(StreamName=stream, Records=records[:3])
        self.assertEqual(out["FailedRecordCount"], 3)

    def test_sts_throttle_and_access_denied_are_query_xml(self) -> None:
        sts = PROXY.client("sts")
        PROXY.rules({"service": "sts", "operation": "AssumeRole", "fault": "throttle"},
                    {"service": "sts", "operation": "GetSessionToken", "fault": "access_denied"})
        with self.assertRaises(ClientError) as cm:
            sts.assume_role(RoleArn="arn:aws:iam::111111111111:role/r", RoleSessionName="sess")
        self.assertEqual(error_of(cm), ("Throttling", 400))
        self.assertEqual(cm.exception.response["Error"]["Type"], "Sender")
        self.assertEqual(cm.exception.response["Error"]["Message"], "Rate exceeded")
        self.assertTrue(cm.exception.response["ResponseMetadata"]["RequestId"])
        self.assertTrue(is_throttling(cm.exception))
        with self.assertRaises(ClientError) as cm:
            sts.get_session_token()
        self.assertEqual(error_of(cm), ("AccessDenied", 403))
        self.assertEqual(sts.get_caller_identity()["ResponseMetadata"]["HTTPStatusCode"], 200)

    def test_account_throttle_is_rest_json_429(self) -> None:
        acct = PROXY.client("account")
        acct.put_alternate_contact(AlternateContactType="SECURITY", EmailAddress="sec@example.com",
                                   Name="Sec", PhoneNumber="+1-555-0100", Title="CISO")
        PROXY.rules({"service": "account", "operation": "GetAlternateContact", "fault": "throttle"},
                    {"service": "account", "operation": "PutAlternateContact", "fault": "access_denied"})
        with self.assertRaises(ClientError) as cm:
            acct.get_alternate_contact(AlternateContactType="SECURITY")
        self.assertEqual(error_of(cm), ("TooManyRequestsException", 429))
        self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"],
                         "TooManyRequestsException")
        self.assertTrue(is_throttling(cm.exception))
        with self.assertRaises(ClientError) as cm:
            acct.put_alternate_contact(AlternateContactType="SECURITY", EmailAddress="x@example.com",
                                       Name="X", PhoneNumber="1", Title="T")
        self.assertEqual(error_of(cm), ("AccessDeniedException", 403))
        PROXY.control("DELETE", "rules")
        got = acct.get_alternate_contact(AlternateContactType="SECURITY")["AlternateContact"]
        self.assertEqual(got["EmailAddress"], "sec@example.com")

    # -- other faults -------------------------------------------------------------
    def test_error500_and_error503(self) -> None:
        ddb, sts = PROXY.client("dynamodb"), PROXY.client("sts")
        PROXY.rules({"service": "dynamodb", "operation": "ListTables", "fault": "error500"},
                    {"service": "dynamodb", "operation": "DescribeLimits", "fault": "error503"},
                    {"service": "sts", "operation": "GetCallerIdentity", "fault": "error500"})
        with self.assertRaises(ClientError) as cm:
            ddb.list_tables()
        self.assertEqual(error_of(cm), ("InternalFailure", 500))
        with self.assertRaises(ClientError) as cm:
            ddb.describe_limits()
        self.assertEqual(error_of(cm), ("ServiceUnavailable", 503))
        with self.assertRaises(ClientError) as cm:
            sts.get_caller_identity()
        self.assertEqual(error_of(cm), ("InternalFailure", 500))
        self.assertEqual(cm.exception.response["Error"]["Type"], "Receiver")

    def test_latency(self) -> None:
        ddb = PROXY.client("dynamodb")
        ddb.list_tables()  # warm the connection
        t0 = time.monotonic()
        ddb.list_tables()
        baseline = time.monotonic() - t0
        self.assertLess(baseline, 0.3)
        PROXY.control("POST", "reset")
        PROXY.rules({"service": "dynamodb", "operation": "ListTables", "fault": "latency", "latency_ms": 400})
        t0 = time.monotonic()
        out = ddb.list_tables()  # delayed, then forwarded
        elapsed = time.monotonic() - t0
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertIn("TableNames", out)
        stats = PROXY.stats()
        self.assertEqual(stats["faulted"]["dynamodb"]["ListTables"], {"latency": 1})
        self.assertEqual(stats["forwarded"]["dynamodb"]["ListTables"], 1)

    def test_reset_is_a_connection_error(self) -> None:
        org = PROXY.client("organizations")
        ensure_organization(org)
        PROXY.rules({"service": "organizations", "operation": "ListRoots", "fault": "reset"})
        with self.assertRaises((ConnectionClosedError, EndpointConnectionError, HTTPClientError, ProtocolError)) as cm:
            org.list_roots()
        self.assertNotIsInstance(cm.exception, ClientError)
        self.assertTrue(TransientRetryableChecker().is_retryable(RetryContext(1, caught_exception=cm.exception)))
        # the client's pool recovers; other operations were never affected
        org.describe_organization()
        PROXY.control("DELETE", "rules")
        self.assertEqual(len(org.list_roots()["Roots"]), 1)
        self.assertEqual(PROXY.stats()["faulted"]["organizations"]["ListRoots"], {"reset": 1})

    # -- rule semantics --------------------------------------------------------------
    def test_count_limits_the_fault(self) -> None:
        ddb = PROXY.client("dynamodb")
        PROXY.rules({"service": "dynamodb", "operation": "ListTables", "fault": "throttle", "count": 2})
        outcomes = []
        for _ in range(5):
            try:
                ddb.list_tables()
                outcomes.append("ok")
            except ClientError as e:
                outcomes.append(e.response["Error"]["Code"])
        self.assertEqual(outcomes, ["ThrottlingException", "ThrottlingException", "ok", "ok", "ok"])
        _, out = PROXY.control("GET", "rules")
        self.assertEqual(out["rules"][0]["remaining"], 0)
        self.assertEqual(out["rules"][0]["fired"], 2)

    def _pattern(self, seed: str, n: int = 40) -> list[bool]:
        proxy = Proxy(MOTO.url, "--seed", seed)
        try:
            proxy.rules({"service": "dynamodb", "operation": "ListTables", "fault": "throttle", "probability": 0.5})
            ddb = proxy.client("dynamodb")
            pattern = []
            for _ in range(n):
                try:
                    ddb.list_tables()
                    pattern.append(False)
                except ClientError as e:
                    self.assertEqual(e.response["Error"]["Code"], "ThrottlingException")
                    pattern.append(True)
            self.assertEqual(proxy.stats()["totals"]["faulted"], sum(pattern))
            return pattern
        finally:
            self.assertEqual(proxy.stop(), 0)

    def test_probability_is_reproducible_with_a_seed(self) -> None:
        first, second, other = self._pattern("7"), self._pattern("7"), self._pattern("8")
        self.assertEqual(first, second)
        self.assertTrue(5 < sum(first) < 35, first)  # really probabilistic, near 0.5
        self.assertNotEqual(first, other)

    def test_account_scoped_rules_match_only_mapped_keys(self) -> None:
        mapped_key, other_key = "ASIAMAPPEDKEY0000001", "ASIAOTHERKEY00000001"
        status, _ = PROXY.control("POST", "credentials", {"access_key_id": mapped_key, "account_id": "111111111111"})
        self.assertEqual(status, 200)
        PROXY.rules({"service": "dynamodb", "operation": "*", "account": "111111111111", "fault": "throttle"})
        with self.assertRaises(ClientError) as cm:
            PROXY.client("dynamodb", key=mapped_key).list_tables()
        self.assertEqual(error_of(cm), ("ThrottlingException", 400))
        PROXY.client("dynamodb", key=other_key).list_tables()
        PROXY.client("dynamodb", key="222222222222").list_tables()
        # a 12-digit access key id stands for its account
        with self.assertRaises(ClientError):
            PROXY.client("dynamodb", key="111111111111").list_tables()

        # credentials returned by AssumeRole through the proxy are learnt automatically
        creds = PROXY.client("sts").assume_role(RoleArn="arn:aws:iam::333333333333:role/audit",
                                                RoleSessionName="fp-test")["Credentials"]
        _, mapping = PROXY.control("GET", "credentials")
        self.assertEqual(mapping["credentials"].get(creds["AccessKeyId"]), "333333333333")
        PROXY.rules({"service": "organizations", "operation": "DescribeOrganization",
                     "account": "333333333333", "fault": "access_denied"})
        assumed = PROXY.client("organizations", key=creds["AccessKeyId"], secret=creds["SecretAccessKey"],
                               token=creds["SessionToken"])
        with self.assertRaises(ClientError) as cm:
            assumed.describe_organization()
        self.assertEqual(error_of(cm), ("AccessDeniedException", 400))
        ensure_organization(PROXY.client("organizations"))

    def test_stats_counts(self) -> None:
        ddb = PROXY.client("dynamodb")
        PROXY.rules({"service": "dynamodb", "operation": "DescribeLimits", "fault": "throttle", "count": 2})
        for _ in range(3):
            ddb.list_tables()
        for _ in range(3):
            try:
                ddb.describe_limits()
            except ClientError:
                pass
        stats = PROXY.stats()
        self.assertEqual(stats["forwarded"], {"dynamodb": {"ListTables": 3, "DescribeLimits": 1}})
        self.assertEqual(stats["faulted"], {"dynamodb": {"DescribeLimits": {"throttle": 2}}})
        self.assertEqual(stats["totals"]["requests"], 6)
        self.assertEqual(stats["totals"]["forwarded"], 4)
        self.assertEqual(stats["totals"]["faulted"], 2)
        PROXY.control("POST", "reset")
        stats = PROXY.stats()
        self.assertEqual((stats["forwarded"], stats["faulted"], stats["totals"]["requests"]), ({}, {}, 0))
        self.assertEqual(PROXY.control("GET", "rules")[1]["rules"], [])

    def test_control_api_rejects_bad_rules(self) -> None:
        for bad in ({"rules": [{"service": "sts", "operation": "*", "fault": "explode"}]},
                    {"rules": [{"service": "sts", "fault": "throttle", "probability": 2}]},
                    {"rules": [{"service": "sts", "fault": "throttle", "account": "12"}]},
                    {"rules": [{"service": "sts", "fault": "latency"}]},
                    {"rules": [{"service": "dynamodb", "operation": "BatchWriteItem", "fault": "partial_failure"}]},
                    {"rules": [{"service": "kinesis", "operation": "PutRecords", "fault": "partial_failure",
                                "entry_probability": 1.5}]},
                    {"rules": "nope"}, {}):
            status, out = PROXY.control("POST", "rules", bad)
            self.assertEqual(status, 400, bad)
            self.assertIn("error", out)
        self.assertEqual(PROXY.control("GET", "nothing-here")[0], 404)
        self.assertEqual(PROXY.control("POST", "credentials", {"access_key_id": "A", "account_id": "x"})[0], 400)

    def test_carries_hundreds_of_requests_per_second(self) -> None:
        n = 400
        clients = [PROXY.client("dynamodb") for _ in range(8)]
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: clients[i % 8].list_tables(), range(n)))
        elapsed = time.monotonic() - t0
        self.assertEqual(PROXY.stats()["forwarded"]["dynamodb"]["ListTables"], n)
        self.assertLess(elapsed, n / 100.0, "%.1f requests/s" % (n / elapsed))

    def test_sigterm_exits_cleanly(self) -> None:
        proxy = Proxy(MOTO.url)
        self.assertEqual(http(proxy.url + "/_faults/health")[0], 200)
        self.assertEqual(proxy.stop(), 0)


if __name__ == "__main__":
    unittest.main()
