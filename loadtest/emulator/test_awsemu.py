"""Tests for the awsemu emulator (python -m awsemu), driven through boto3's securityhub client.

Run from the repository root:
    .venv/bin/python -m unittest discover -s loadtest/emulator -v
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
import unittest
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for running this file directly
from serverproc import ServerProcess  # noqa: E402

REGION = "us-east-1"

_account_seq = itertools.count(1)


def new_account() -> str:
    """A fresh 12-digit access key id (= account) per call."""
    return "%012d" % (200000000000 + os.getpid() % 1000 * 100000 + next(_account_seq))


class Emu(ServerProcess):
    """An awsemu subprocess (python -m awsemu) on a free port."""

    def __init__(self, *args: str):
        super().__init__("awsemu", "awsemu", "--host", "127.0.0.1", "--port", "0", *args)

    def client(self, account: str, region: str = REGION, config: Config | None = None):
        return boto3.client(
            "securityhub", endpoint_url=self.url, region_name=region,
            aws_access_key_id=account, aws_secret_access_key="secret",
            config=config or Config(retries={"mode": "standard", "total_max_attempts": 1}))

    def http(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), json.loads(e.read() or b"null")


_akid_seq = itertools.count(1)


def new_session_key() -> str:
    """A fresh STS-style (non-numeric) access key id, like moto's AssumeRole gives."""
    return "ASIA%04dEMUTEST%06d" % (os.getpid() % 10000, next(_akid_seq))


def add_header(client, name: str, value: str):
    """Sends an extra header with every request of a boto3 client."""
    def hook(request, **_kwargs):
        request.headers[name] = value
    client.meta.events.register("before-sign.*.*", hook)
    return client


def register_key(emu: "Emu", akid: str, account: str):
    return emu.http("POST", "/_emulator/credentials",
                    json.dumps({"access_key_id": akid, "account_id": account}).encode(),
                    {"Content-Type": "application/json"})


def product_arn(account: str) -> str:
    return "arn:aws:securityhub:%s:%s:product/%s/default" % (REGION, account, account)


def finding(account: str, fid: str, **over) -> dict:
    f = {
        "SchemaVersion": "2018-10-08",
        "Id": fid,
        "ProductArn": product_arn(account),
        "GeneratorId": "gen-default",
        "AwsAccountId": account,
        "Types": ["Software and Configuration Checks/Vulnerabilities/CVE"],
        "CreatedAt": "2024-05-01T10:00:00.000Z",
        "UpdatedAt": "2024-05-01T10:00:00.000Z",
        "Severity": {"Label": "MEDIUM"},
        "Title": "Title " + fid,
        "Description": "Description of " + fid,
        "Resources": [{"Type": "AwsEc2Instance", "Id": "i-" + fid}],
    }
    f.update(over)
    return f


def ident(account: str, fid: str) -> dict:
    return {"Id": fid, "ProductArn": product_arn(account)}


def ids_of(resp: dict) -> list[str]:
    return sorted(f["Id"] for f in resp["Findings"])


_servers: dict[str, Emu] = {}


def setUpModule():
    # Shared by all tests; every test uses its own fresh account(s).
    _servers["plain"] = Emu("--no-throttle")
    _servers["throttled"] = Emu("--udf-mode", "merge", "--rate", "GetFindings=1:2")


def tearDownModule():
    for emu in _servers.values():
        emu.stop()


class SharedServersTestCase(unittest.TestCase):
    """Tests on their module's shared servers ``servers["plain"]`` and ``servers["throttled"]``."""

    servers: dict[str, Emu] = {}

    @property
    def plain(self) -> Emu:
        return self.servers["plain"]

    @property
    def throttled(self) -> Emu:
        return self.servers["throttled"]


class EmulatorTestCase(SharedServersTestCase):
    # plain: --no-throttle, --udf-mode replace (default).
    # throttled: throttling on (default quotas), --udf-mode merge, --rate GetFindings=1:2.
    servers = _servers

    def assertClientError(self, ctx, code: str, status: int, message_re: str | None = None):
        err = ctx.exception
        self.assertIsInstance(err, ClientError)
        self.assertEqual(err.response["Error"]["Code"], code)
        self.assertEqual(err.response["ResponseMetadata"]["HTTPStatusCode"], status)
        if message_re:
            self.assertRegex(err.response["Error"]["Message"], message_re)

    def import_ok(self, client, findings: list[dict]) -> None:
        resp = client.batch_import_findings(Findings=findings)
        self.assertEqual(resp["FailedCount"], 0, resp.get("FailedFindings"))
        self.assertEqual(resp["SuccessCount"], len(findings))


class StartupTests(EmulatorTestCase):
    def test_stdout_line_matches_port_file(self):
        self.assertEqual(self.plain.stdout_line, "awsemu listening on 127.0.0.1:%d" % self.plain.port)
        self.assertNotEqual(self.plain.port, self.throttled.port)

    def test_sigterm_exits_cleanly(self):
        emu = Emu("--no-throttle")
        self.assertEqual(emu.http("GET", "/_emulator/stats")[0], 200)
        emu.proc.send_signal(signal.SIGTERM)
        self.assertEqual(emu.proc.wait(timeout=5), 0)
        self.assertEqual(emu.stop(), 0)

    def test_latency_and_reset(self):
        emu = Emu("--no-throttle", "--latency-ms", "250")
        try:
            acct = new_account()
            c = emu.client(acct)
            t0 = time.monotonic()
            self.import_ok(c, [finding(acct, "lat-1")])
            self.assertGreaterEqual(time.monotonic() - t0, 0.25)
            self.assertEqual(len(emu.http("GET", "/_emulator/findings?account=" + acct)[2]), 1)
            status, _, body = emu.http("POST", "/_emulator/reset")
            self.assertEqual(status, 200)
            self.assertEqual(emu.http("GET", "/_emulator/findings?account=" + acct)[2], [])
            stats = emu.http("GET", "/_emulator/stats")[2]
            self.assertEqual(stats["calls"], {})
            self.assertEqual(stats["accounts"], {})
        finally:
            emu.stop()


class ImportAndGetTests(EmulatorTestCase):
    def setUp(self):
        self.acct = new_account()
        self.c = self.plain.client(self.acct)
        self.import_ok(self.c, [
            finding(self.acct, "alpha-1", GeneratorId="gen-a", Severity={"Label": "HIGH"}),
            finding(self.acct, "alpha-2", GeneratorId="gen-a", Title="Other title"),
            finding(self.acct, "beta-1", GeneratorId="gen-b", Resources=[{"Type": "AwsS3Bucket", "Id": "arn:aws:s3:::b"}]),
            finding(self.acct, "beta-2", GeneratorId="gen-b", Severity={"Label": "LOW"}),
            finding(self.acct, "gamma-1", GeneratorId="gen-c", RecordState="ARCHIVED"),
        ])

    def get(self, **filters):
        return ids_of(self.c.get_findings(Filters=filters))

    def test_equals(self):
        self.assertEqual(self.get(Id=[{"Value": "alpha-1", "Comparison": "EQUALS"}]), ["alpha-1"])
        self.assertEqual(self.get(SeverityLabel=[{"Value": "HIGH", "Comparison": "EQUALS"}]), ["alpha-1"])
        self.assertEqual(self.get(RecordState=[{"Value": "ARCHIVED", "Comparison": "EQUALS"}]), ["gamma-1"])
        self.assertEqual(self.get(ResourceType=[{"Value": "AwsS3Bucket", "Comparison": "EQUALS"}]), ["beta-1"])
        # Positive comparisons on one field are OR'ed.
        self.assertEqual(self.get(Id=[{"Value": "alpha-1", "Comparison": "EQUALS"},
                                      {"Value": "beta-2", "Comparison": "EQUALS"}]), ["alpha-1", "beta-2"])

    def test_prefix_and_contains(self):
        self.assertEqual(self.get(Id=[{"Value": "beta", "Comparison": "PREFIX"}]), ["beta-1", "beta-2"])
        self.assertEqual(self.get(Title=[{"Value": "Other", "Comparison": "CONTAINS"}]), ["alpha-2"])
        self.assertEqual(self.get(ProductName=[{"Value": "Default", "Comparison": "EQUALS"}]),
                         ["alpha-1", "alpha-2", "beta-1", "beta-2", "gamma-1"])

    def test_not_equals_and_negative_and(self):
        self.assertEqual(self.get(GeneratorId=[{"Value": "gen-a", "Comparison": "NOT_EQUALS"}]),
                         ["beta-1", "beta-2", "gamma-1"])
        # Negative comparisons on one field are AND'ed.
        self.assertEqual(self.get(GeneratorId=[{"Value": "gen-a", "Comparison": "NOT_EQUALS"},
                                               {"Value": "gen-b", "Comparison": "NOT_EQUALS"}]), ["gamma-1"])
        self.assertEqual(self.get(Id=[{"Value": "alpha", "Comparison": "PREFIX_NOT_EQUALS"}]),
                         ["beta-1", "beta-2", "gamma-1"])
        # Different filter names are AND'ed; PREFIX combined with NOT_EQUALS.
        self.assertEqual(self.get(Id=[{"Value": "beta", "Comparison": "PREFIX"},
                                      {"Value": "beta-2", "Comparison": "NOT_EQUALS"}],
                                  GeneratorId=[{"Value": "gen-b", "Comparison": "EQUALS"}]), ["beta-1"])

    def test_invalid_filter_combination(self):
        with self.assertRaises(ClientError) as ctx:
            self.get(Id=[{"Value": "a", "Comparison": "EQUALS"}, {"Value": "b", "Comparison": "NOT_EQUALS"}])
        self.assertClientError(ctx, "InvalidInputException", 400, "Filters.Id")

    def test_udf_map_filter(self):
        r = self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "alpha-1"), ident(self.acct, "beta-1")],
                                         UserDefinedFields={"owner": "team-red", "ticket": "SEC-1"})
        self.assertEqual(len(r["ProcessedFindings"]), 2)
        self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "beta-2")], UserDefinedFields={"owner": "team-blue"})

        def udf(key, value, cmp_):
            return self.get(UserDefinedFields=[{"Key": key, "Value": value, "Comparison": cmp_}])

        self.assertEqual(udf("owner", "team-red", "EQUALS"), ["alpha-1", "beta-1"])
        self.assertEqual(udf("owner", "team-red", "NOT_EQUALS"), ["alpha-2", "beta-2", "gamma-1"])
        self.assertEqual(udf("owner", "team", "CONTAINS"), ["alpha-1", "beta-1", "beta-2"])
        self.assertEqual(udf("owner", "blue", "NOT_CONTAINS"), ["alpha-1", "alpha-2", "beta-1", "gamma-1"])
        self.assertEqual(udf("ticket", "SEC-1", "EQUALS"), ["alpha-1", "beta-1"])

    def test_paging_with_next_token(self):
        acct = new_account()
        c = self.plain.client(acct)
        self.import_ok(c, [finding(acct, "p-%03d" % i) for i in range(100)])
        self.import_ok(c, [finding(acct, "p-%03d" % i) for i in range(100, 125)])
        seen, pages, token = [], [], None
        flt = {"Id": [{"Value": "p-", "Comparison": "PREFIX"}]}
        while True:
            kwargs = {"Filters": flt, "MaxResults": 10}
            if token:
                kwargs["NextToken"] = token
            resp = c.get_findings(**kwargs)
            pages.append(len(resp["Findings"]))
            seen.extend(f["Id"] for f in resp["Findings"])
            token = resp.get("NextToken")
            if not token:
                break
        self.assertEqual(pages, [10] * 12 + [5])
        self.assertEqual(sorted(seen), ["p-%03d" % i for i in range(125)])
        # Default MaxResults is 100.
        first = c.get_findings()
        self.assertEqual(len(first["Findings"]), 100)
        self.assertIn("NextToken", first)
        with self.assertRaises(ClientError) as ctx:
            c.get_findings(NextToken="not-a-token")
        self.assertClientError(ctx, "InvalidInputException", 400, "NextToken")
        with self.assertRaises(ClientError) as ctx:
            c.get_findings(MaxResults=101)
        self.assertClientError(ctx, "InvalidInputException", 400, "MaxResults")

    def test_import_validation(self):
        # Types and Severity are required ASFF attributes although the API
        # model does not mark them required (so boto3 sends the finding).
        bad = finding(self.acct, "bad-1")
        del bad["Types"]
        bad2 = finding(self.acct, "bad-2")
        del bad2["Severity"]
        resp = self.c.batch_import_findings(Findings=[bad, finding(self.acct, "good-1"), bad2])
        self.assertEqual((resp["FailedCount"], resp["SuccessCount"]), (2, 1))
        self.assertEqual([f["Id"] for f in resp["FailedFindings"]], ["bad-1", "bad-2"])
        self.assertEqual({f["ErrorCode"] for f in resp["FailedFindings"]}, {"InvalidInput"})
        self.assertIn("Types", resp["FailedFindings"][0]["ErrorMessage"])
        self.assertIn("Severity", resp["FailedFindings"][1]["ErrorMessage"])
        self.assertEqual(self.get(Id=[{"Value": "bad", "Comparison": "PREFIX"}]), [])
        self.assertEqual(self.get(Id=[{"Value": "good-1", "Comparison": "EQUALS"}]), ["good-1"])
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_import_findings(Findings=[finding(self.acct, "x-%d" % i) for i in range(101)])
        self.assertClientError(ctx, "InvalidInputException", 400, "Findings")


class BatchUpdateTests(EmulatorTestCase):
    def setUp(self):
        self.acct = new_account()
        self.c = self.plain.client(self.acct)
        self.import_ok(self.c, [finding(self.acct, "u-1"), finding(self.acct, "u-2")])

    def stored(self, fid: str, emu: Emu | None = None, acct: str | None = None) -> dict:
        acct = acct or self.acct
        found = [f for f in (emu or self.plain).http("GET", "/_emulator/findings?account=" + acct)[2] if f["Id"] == fid]
        self.assertEqual(len(found), 1)
        return found[0]

    def test_processed_and_unprocessed(self):
        resp = self.c.batch_update_findings(
            FindingIdentifiers=[ident(self.acct, "u-1"), ident(self.acct, "missing"),
                                ident(self.acct, "u-2"), ident(self.acct, "u-2")],
            Note={"Text": "triaged", "UpdatedBy": "enricher"},
            Workflow={"Status": "NOTIFIED"})
        self.assertEqual(resp["ProcessedFindings"], [ident(self.acct, "u-1")])
        codes = sorted((u["FindingIdentifier"]["Id"], u["ErrorCode"]) for u in resp["UnprocessedFindings"])
        self.assertEqual(codes, [("missing", "FindingNotFound"), ("u-2", "DuplicatedFindingIdentifier"),
                                 ("u-2", "DuplicatedFindingIdentifier")])
        for u in resp["UnprocessedFindings"]:
            self.assertTrue(u["ErrorMessage"])
        f1, f2 = self.stored("u-1"), self.stored("u-2")
        self.assertEqual(f1["Note"]["Text"], "triaged")
        self.assertEqual(f1["Note"]["UpdatedBy"], "enricher")
        self.assertRegex(f1["Note"]["UpdatedAt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        self.assertEqual(f1["Workflow"], {"Status": "NOTIFIED"})
        self.assertEqual(f1["UpdatedAt"], "2024-05-01T10:00:00.000Z")  # not touched by BatchUpdateFindings
        self.assertNotIn("Note", f2)

    def test_101_identifiers_is_invalid_input(self):
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "n-%d" % i) for i in range(101)],
                                         Note={"Text": "x", "UpdatedBy": "y"})
        self.assertClientError(ctx, "InvalidInputException", 400, "FindingIdentifiers")
        resp = self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "n-%d" % i) for i in range(100)],
                                            Note={"Text": "x", "UpdatedBy": "y"})
        self.assertEqual(len(resp["UnprocessedFindings"]), 100)

    def test_note_length(self):
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "u-1")],
                                         Note={"Text": "x" * 513, "UpdatedBy": "y"})
        self.assertClientError(ctx, "InvalidInputException", 400, r"Note\.Text")
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "u-1")],
                                         Note={"Text": "ok", "UpdatedBy": "y" * 513})
        self.assertClientError(ctx, "InvalidInputException", 400, r"Note\.UpdatedBy")
        self.assertNotIn("Note", self.stored("u-1"))
        self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "u-1")], Note={"Text": "x" * 512, "UpdatedBy": "y"})
        self.assertEqual(len(self.stored("u-1")["Note"]["Text"]), 512)

    def test_udf_limits(self):
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "u-1")],
                                         UserDefinedFields={"k%d" % i: "v" for i in range(51)})
        self.assertClientError(ctx, "InvalidInputException", 400, "UserDefinedFields")
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "u-1")], UserDefinedFields={"k" * 129: "v"})
        self.assertClientError(ctx, "InvalidInputException", 400, "UserDefinedFields")
        with self.assertRaises(ClientError) as ctx:
            self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "u-1")], UserDefinedFields={"k": "v" * 1025})
        self.assertClientError(ctx, "InvalidInputException", 400, "UserDefinedFields")
        self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "u-1")],
                                     UserDefinedFields={"k%d" % i: "v" * 1024 for i in range(50)})
        self.assertEqual(len(self.stored("u-1")["UserDefinedFields"]), 50)

    def test_udf_replace_mode(self):
        self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "u-1")], UserDefinedFields={"a": "1", "b": "2"})
        self.c.batch_update_findings(FindingIdentifiers=[ident(self.acct, "u-1")], UserDefinedFields={"b": "3", "c": "4"})
        self.assertEqual(self.stored("u-1")["UserDefinedFields"], {"b": "3", "c": "4"})

    def test_udf_merge_mode(self):
        acct = new_account()
        c = self.throttled.client(acct)
        self.import_ok(c, [finding(acct, "m-1")])
        c.batch_update_findings(FindingIdentifiers=[ident(acct, "m-1")], UserDefinedFields={"a": "1", "b": "2"})
        c.batch_update_findings(FindingIdentifiers=[ident(acct, "m-1")], UserDefinedFields={"b": "3", "c": "4"})
        self.assertEqual(self.stored("m-1", self.throttled, acct)["UserDefinedFields"], {"a": "1", "b": "3", "c": "4"})

    def test_reimport_keeps_customer_fields(self):
        self.c.batch_update_findings(
            FindingIdentifiers=[ident(self.acct, "u-1")],
            Note={"Text": "keep me", "UpdatedBy": "analyst"}, UserDefinedFields={"enriched": "yes"},
            Workflow={"Status": "SUPPRESSED"}, VerificationState="FALSE_POSITIVE", Severity={"Label": "CRITICAL"})
        before = self.stored("u-1")
        resp = self.c.batch_import_findings(Findings=[finding(
            self.acct, "u-1", Title="Provider changed title", UpdatedAt="2024-06-01T00:00:00Z",
            Severity={"Label": "LOW"}, Confidence=55, UserDefinedFields={"provider": "value"},
            Note={"Text": "provider note", "UpdatedBy": "provider", "UpdatedAt": "2024-06-01T00:00:00Z"},
            Workflow={"Status": "NEW"})])
        self.assertEqual(resp["SuccessCount"], 1)
        after = self.stored("u-1")
        self.assertEqual(after["Title"], "Provider changed title")
        self.assertEqual(after["UpdatedAt"], "2024-06-01T00:00:00Z")
        self.assertEqual(after["Confidence"], 55)  # provider field, never customer-set
        self.assertEqual(after["Note"], before["Note"])
        self.assertEqual(after["UserDefinedFields"], {"enriched": "yes"})
        self.assertEqual(after["Workflow"], {"Status": "SUPPRESSED"})
        self.assertEqual(after["VerificationState"], "FALSE_POSITIVE")
        self.assertEqual(after["Severity"]["Label"], "CRITICAL")
        # Still visible through the API with the kept note.
        got = self.c.get_findings(Filters={"NoteText": [{"Value": "keep me", "Comparison": "EQUALS"}]})
        self.assertEqual(ids_of(got), ["u-1"])


class IsolationTests(EmulatorTestCase):
    def test_per_account_and_region_isolation(self):
        a, b = new_account(), new_account()
        ca, cb = self.plain.client(a), self.plain.client(b)
        shared_arn = product_arn(a)
        self.import_ok(ca, [finding(a, "shared", Title="from A")])
        self.import_ok(cb, [finding(a, "shared", Title="from B", ProductArn=shared_arn)])
        self.assertEqual([f["Title"] for f in ca.get_findings()["Findings"]], ["from A"])
        self.assertEqual([f["Title"] for f in cb.get_findings()["Findings"]], ["from B"])
        self.import_ok(ca, [finding(a, "only-a")])
        r = cb.batch_update_findings(FindingIdentifiers=[ident(a, "only-a")], Note={"Text": "x", "UpdatedBy": "y"})
        self.assertEqual([u["ErrorCode"] for u in r["UnprocessedFindings"]], ["FindingNotFound"])
        self.assertEqual(ids_of(ca.get_findings()), ["only-a", "shared"])
        # Same account, other region: separate state.
        self.assertEqual(self.plain.client(a, region="eu-west-1").get_findings()["Findings"], [])
        dump_a = self.plain.http("GET", "/_emulator/findings?account=" + a)[2]
        self.assertEqual(sorted(f["Id"] for f in dump_a), ["only-a", "shared"])
        self.assertEqual(len(self.plain.http("GET", "/_emulator/findings?account=" + b)[2]), 1)

    def test_non_numeric_access_key_uses_default_account(self):
        c = self.plain.client("AKIAEXAMPLEKEY")
        self.import_ok(c, [finding("123456789012", "default-acct")])
        ids = [f["Id"] for f in self.plain.http("GET", "/_emulator/findings?account=123456789012")[2]]
        self.assertIn("default-acct", ids)


class AccountResolutionTests(EmulatorTestCase):
    """header > 12-digit access key > /_emulator/credentials mapping > default."""

    def finding_ids(self, account: str) -> list[str]:
        return sorted(f["Id"] for f in self.plain.http("GET", "/_emulator/findings?account=" + account)[2])

    def test_registered_session_key_maps_to_account(self):
        acct, akid = new_account(), new_session_key()
        status, _, body = register_key(self.plain, akid, acct)
        self.assertEqual(status, 200, body)
        self.assertEqual(self.plain.http("GET", "/_emulator/credentials")[2].get(akid), acct)
        c = self.plain.client(akid)
        self.import_ok(c, [finding(acct, "mapped-1")])
        self.assertEqual(self.finding_ids(acct), ["mapped-1"])
        self.assertNotIn("mapped-1", self.finding_ids("123456789012"))
        self.assertEqual(ids_of(c.get_findings()), ["mapped-1"])
        stats = self.plain.http("GET", "/_emulator/stats")[2]["accounts"][acct]
        self.assertEqual(stats["calls"], {"BatchImportFindings": 1, "GetFindings": 1})
        # Re-registering the key moves it (a key belongs to one account).
        other = new_account()
        register_key(self.plain, akid, other)
        self.assertEqual(c.get_findings()["Findings"], [])

    def test_unregistered_session_key_uses_default_account(self):
        akid = new_session_key()
        register_key(self.plain, new_session_key(), new_account())  # some other key
        self.import_ok(self.plain.client(akid), [finding("123456789012", "unmapped-" + akid)])
        self.assertIn("unmapped-" + akid, self.finding_ids("123456789012"))

    def test_numeric_key_wins_over_mapping(self):
        key_acct, mapped = new_account(), new_account()
        register_key(self.plain, key_acct, mapped)
        self.import_ok(self.plain.client(key_acct), [finding(key_acct, "numeric-1")])
        self.assertEqual(self.finding_ids(key_acct), ["numeric-1"])
        self.assertEqual(self.finding_ids(mapped), [])

    def test_header_wins_over_key_and_mapping(self):
        key_acct, header_acct, mapped = new_account(), new_account(), new_account()
        self.import_ok(add_header(self.plain.client(key_acct), "x-emulator-account-id", header_acct),
                       [finding(header_acct, "hdr-1")])
        akid = new_session_key()
        register_key(self.plain, akid, mapped)
        self.import_ok(add_header(self.plain.client(akid), "X-Emulator-Account-Id", header_acct),
                       [finding(header_acct, "hdr-2")])
        self.assertEqual(self.finding_ids(header_acct), ["hdr-1", "hdr-2"])
        self.assertEqual(self.finding_ids(key_acct), [])
        self.assertEqual(self.finding_ids(mapped), [])
        self.assertEqual(self.plain.http("GET", "/_emulator/stats")[2]["accounts"][header_acct]["calls"],
                         {"BatchImportFindings": 2})

    def test_bad_header_is_invalid_input(self):
        c = add_header(self.plain.client(new_account()), "x-emulator-account-id", "12345")
        with self.assertRaises(ClientError) as ctx:
            c.get_findings()
        self.assertClientError(ctx, "InvalidInputException", 400, "x-emulator-account-id")

    def test_bad_registrations_are_rejected(self):
        akid = new_session_key()
        for body in ({"access_key_id": akid, "account_id": "12345"}, {"access_key_id": akid},
                     {"access_key_id": "", "account_id": new_account()}, {"account_id": new_account()}):
            status, headers, resp = self.plain.http("POST", "/_emulator/credentials", json.dumps(body).encode())
            self.assertEqual(status, 400, body)
            self.assertEqual(headers.get("x-amzn-ErrorType"), "InvalidInputException")
        status, _, _ = self.plain.http("POST", "/_emulator/credentials", b"{not json")
        self.assertEqual(status, 400)
        self.assertNotIn(akid, self.plain.http("GET", "/_emulator/credentials")[2])

    def test_reset_keeps_mappings_and_delete_clears_them(self):
        emu = Emu("--no-throttle")
        try:
            acct, akid = new_account(), new_session_key()
            self.assertEqual(register_key(emu, akid, acct)[0], 200)
            self.assertEqual(emu.http("POST", "/_emulator/reset")[0], 200)
            self.import_ok(emu.client(akid), [finding(acct, "kept")])
            self.assertEqual(len(emu.http("GET", "/_emulator/findings?account=" + acct)[2]), 1)
            self.assertEqual(emu.http("DELETE", "/_emulator/credentials")[0], 200)
            self.assertEqual(emu.http("GET", "/_emulator/credentials")[2], {})
            self.import_ok(emu.client(akid), [finding(acct, "after-delete")])
            self.assertEqual(len(emu.http("GET", "/_emulator/findings?account=123456789012")[2]), 1)
        finally:
            emu.stop()


class ThrottlingTests(EmulatorTestCase):
    def test_burst_of_40_updates_throttles_after_30(self):
        acct = new_account()
        # SDK retries off. NB: botocore's `max_attempts` counts *retries*
        # (max_attempts=1 => 2 attempts); `total_max_attempts=1` is one attempt.
        c = self.throttled.client(acct, config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
        outcomes, errors = [], []
        t0 = time.monotonic()
        for i in range(40):
            try:
                c.batch_update_findings(FindingIdentifiers=[ident(acct, "t-%d" % i)], Note={"Text": "x", "UpdatedBy": "y"})
                outcomes.append(True)
            except ClientError as e:
                outcomes.append(False)
                errors.append(e)
        elapsed = time.monotonic() - t0
        self.assertTrue(all(outcomes[:30]), outcomes)
        self.assertTrue(errors, "no request was throttled")
        successes = sum(outcomes)
        self.assertLessEqual(successes, 30 + int(elapsed * 10) + 1)
        for e in errors:
            self.assertEqual(e.response["Error"]["Code"], "TooManyRequestsException")
            self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], 429)
            self.assertEqual(e.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-errortype"), "TooManyRequestsException")
        stats = self.throttled.http("GET", "/_emulator/stats")[2]["accounts"][acct]
        self.assertEqual(stats["calls"]["BatchUpdateFindings"], 40)
        self.assertEqual(stats["throttled"]["BatchUpdateFindings"], len(errors))
        # Other accounts have their own buckets.
        other = new_account()
        self.throttled.client(other).batch_update_findings(FindingIdentifiers=[ident(other, "z")],
                                                           Note={"Text": "x", "UpdatedBy": "y"})

    def test_rate_override(self):
        acct = new_account()
        c = self.throttled.client(acct)
        c.get_findings()
        c.get_findings()
        with self.assertRaises(ClientError) as ctx:
            c.get_findings()
        self.assertClientError(ctx, "TooManyRequestsException", 429)

    def test_no_throttle_flag(self):
        acct = new_account()
        c = self.plain.client(acct)
        for i in range(40):
            c.batch_update_findings(FindingIdentifiers=[ident(acct, "n-%d" % i)], Note={"Text": "x", "UpdatedBy": "y"})
        stats = self.plain.http("GET", "/_emulator/stats")[2]["accounts"][acct]
        self.assertEqual(stats["throttled"], {})


class ControlAndRoutingTests(EmulatorTestCase):
    def test_stats_counts(self):
        acct = new_account()
        c = self.plain.client(acct)
        before = self.plain.http("GET", "/_emulator/stats")[2]
        self.import_ok(c, [finding(acct, "s-1"), finding(acct, "s-2")])
        c.batch_update_findings(FindingIdentifiers=[ident(acct, "s-1"), ident(acct, "s-2"), ident(acct, "s-3")],
                                Note={"Text": "x", "UpdatedBy": "y"})
        c.batch_update_findings(FindingIdentifiers=[ident(acct, "s-1")], Note={"Text": "x", "UpdatedBy": "y"})
        with self.assertRaises(ClientError):
            c.batch_update_findings(FindingIdentifiers=[ident(acct, "s-1")], Note={"Text": "x" * 600, "UpdatedBy": "y"})
        c.get_findings()
        stats = self.plain.http("GET", "/_emulator/stats")[2]
        mine = stats["accounts"][acct]
        self.assertEqual(mine["calls"], {"BatchImportFindings": 1, "BatchUpdateFindings": 3, "GetFindings": 1})
        self.assertEqual(mine["throttled"], {})
        self.assertEqual(mine["findings_per_update"], [3, 1])
        self.assertEqual(stats["calls"]["BatchUpdateFindings"] - before["calls"].get("BatchUpdateFindings", 0), 3)
        self.assertEqual(len(stats["findings_per_update"]) - len(before["findings_per_update"]), 2)

    def test_unknown_routes_are_restjson_404(self):
        status, headers, body = self.plain.http("POST", "/no/such/path", b"{}")
        self.assertEqual(status, 404)
        self.assertEqual(headers.get("x-amzn-ErrorType"), "UnknownOperationException")
        self.assertEqual(body["__type"], "UnknownOperationException")
        self.assertTrue(body["message"])
        # BatchUpdateFindings is PATCH in the service model; POST does not match.
        auth = ("AWS4-HMAC-SHA256 Credential=%s/20240101/us-east-1/securityhub/aws4_request, "
                "SignedHeaders=host, Signature=0" % new_account())
        status, _, body = self.plain.http("POST", "/findings/batchupdate", b"{}", {"Authorization": auth})
        self.assertEqual(status, 404)
        # A path of another service's scope does not match either.
        auth_other = auth.replace("/securityhub/", "/detective/")
        status, _, _ = self.plain.http("POST", "/findings", b"{}", {"Authorization": auth_other})
        self.assertEqual(status, 404)
        status, _, body = self.plain.http("POST", "/findings", b"{}", {"Authorization": auth})
        self.assertEqual((status, body), (200, {"Findings": []}))

    def test_malformed_json_is_invalid_input(self):
        status, headers, body = self.plain.http("POST", "/findings", b"{not json")
        self.assertEqual(status, 400)
        self.assertEqual(headers.get("x-amzn-ErrorType"), "InvalidInputException")
        self.assertEqual(body["__type"], "InvalidInputException")


if __name__ == "__main__":
    unittest.main()
