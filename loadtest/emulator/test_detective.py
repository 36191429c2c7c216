"""Tests for awsemu.py's Amazon Detective, driven through boto3's detective client.

Run from the repository root:
    .venv/bin/python -m unittest discover -s loadtest/emulator -v
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import unittest
from datetime import datetime, timedelta, timezone

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for running this file directly
from test_awsemu import Emu, SharedServersTestCase, add_header, new_account, new_session_key, register_key  # noqa: E402

REGION = "us-east-1"
DELAY_S = 0.2  # --investigation-delay-ms of the shared servers
GRAPH_RE = re.compile(r"^arn:aws:detective:([-a-z0-9]+):(\d{12}):graph:[0-9a-f]{32}$")
SEVERITIES = {"INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"}
DETAIL_KEY = {
    "TTP_OBSERVED": "TTPsObservedDetail", "IMPOSSIBLE_TRAVEL": "ImpossibleTravelDetail",
    "FLAGGED_IP_ADDRESS": "FlaggedIpAddressDetail", "NEW_GEOLOCATION": "NewGeolocationDetail",
    "NEW_ASO": "NewAsoDetail", "NEW_USER_AGENT": "NewUserAgentDetail",
    "RELATED_FINDING": "RelatedFindingDetail", "RELATED_FINDING_GROUP": "RelatedFindingGroupDetail",
}

_servers: dict[str, Emu] = {}


def setUpModule():
    _servers["plain"] = Emu("--no-throttle", "--investigation-delay-ms", str(int(DELAY_S * 1000)))
    _servers["throttled"] = Emu("--investigation-delay-ms", str(int(DELAY_S * 1000)))  # default quotas


def tearDownModule():
    for emu in _servers.values():
        emu.stop()


def dclient(emu: Emu, akid: str, region: str = REGION):
    return boto3.client("detective", endpoint_url=emu.url, region_name=region,
                        aws_access_key_id=akid, aws_secret_access_key="secret",
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1}))


def control(emu: Emu, path: str, body: dict):
    return emu.http("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})


def make_graphs(emu: Emu, account: str, count: int = 1, region: str = REGION) -> list[str]:
    status, _, body = control(emu, "/_emulator/detective/graphs", {"account_id": account, "region": region, "count": count})
    assert status == 200, body
    return body["graph_arns"]


def user(account: str, name: str) -> str:
    return "arn:aws:iam::%s:user/%s" % (account, name)


def role(account: str, name: str) -> str:
    return "arn:aws:iam::%s:role/%s" % (account, name)


NOW = datetime.now(timezone.utc).replace(microsecond=0)
SCOPE = {"ScopeStartTime": NOW - timedelta(days=2), "ScopeEndTime": NOW - timedelta(hours=1)}


class DetectiveTestCase(SharedServersTestCase):
    # plain: --no-throttle, --investigation-delay-ms 200.
    # throttled: default Detective quotas, --investigation-delay-ms 200.
    servers = _servers

    def setUp(self):
        self.acct = new_account()
        self.c = dclient(self.plain, self.acct)
        self.graph = make_graphs(self.plain, self.acct)[0]

    def start(self, entity: str, client=None, graph: str | None = None) -> str:
        resp = (client or self.c).start_investigation(GraphArn=graph or self.graph, EntityArn=entity, **SCOPE)
        self.assertRegex(resp["InvestigationId"], r"^[0-9]{21}$")
        return resp["InvestigationId"]

    def get(self, inv_id: str, client=None, graph: str | None = None) -> dict:
        return (client or self.c).get_investigation(GraphArn=graph or self.graph, InvestigationId=inv_id)

    def wait_done(self, inv_id: str, started: float, client=None, graph: str | None = None) -> dict:
        """Polls until the investigation leaves RUNNING; checks it took the delay."""
        deadline = started + DELAY_S + 3
        while True:
            got = self.get(inv_id, client, graph)
            if got["Status"] != "RUNNING":
                self.assertGreaterEqual(time.monotonic() - started, DELAY_S)
                return got
            self.assertLess(time.monotonic(), deadline, "still RUNNING long after the delay")
            time.sleep(0.02)

    def indicators(self, inv_id: str, client=None, **kw) -> list[dict]:
        return (client or self.c).list_indicators(GraphArn=self.graph, InvestigationId=inv_id, **kw)["Indicators"]

    def assertClientError(self, ctx, code: str, status: int, message_re: str | None = None):
        err = ctx.exception
        self.assertIsInstance(err, ClientError)
        self.assertEqual(err.response["Error"]["Code"], code)
        self.assertEqual(err.response["ResponseMetadata"]["HTTPStatusCode"], status)
        self.assertEqual(err.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-errortype"), code)
        if message_re:
            self.assertRegex(err.response["Error"]["Message"], message_re)


class GraphTests(DetectiveTestCase):
    def test_list_graphs_paging(self):
        acct = new_account()
        c = dclient(self.plain, acct)
        self.assertEqual(c.list_graphs()["GraphList"], [])
        created = make_graphs(self.plain, acct, 7)
        self.assertEqual(len(set(created)), 7)
        for arn in created:
            self.assertEqual(GRAPH_RE.match(arn).groups(), (REGION, acct))
        pages, seen, token = [], [], None
        while True:
            resp = c.list_graphs(MaxResults=3, **({"NextToken": token} if token else {}))
            pages.append(len(resp["GraphList"]))
            seen.extend(resp["GraphList"])
            token = resp.get("NextToken")
            if not token:
                break
        self.assertEqual(pages, [3, 3, 1])
        self.assertEqual([g["Arn"] for g in seen], created)
        times = [g["CreatedTime"] for g in seen]
        self.assertEqual(times, sorted(set(times)))  # strictly increasing
        everything = c.list_graphs()
        self.assertEqual(len(everything["GraphList"]), 7)
        self.assertNotIn("NextToken", everything)
        with self.assertRaises(ClientError) as ctx:
            c.list_graphs(MaxResults=201)
        self.assertClientError(ctx, "ValidationException", 400, "MaxResults")
        with self.assertRaises(ClientError) as ctx:
            c.list_graphs(NextToken="not-a-token")
        self.assertClientError(ctx, "ValidationException", 400, "NextToken")

    def test_create_graph_returns_the_accounts_graph(self):
        acct = new_account()
        c = dclient(self.plain, acct)
        arn = c.create_graph(Tags={"team": "sec"})["GraphArn"]
        self.assertEqual(GRAPH_RE.match(arn).groups(), (REGION, acct))
        self.assertEqual(c.create_graph()["GraphArn"], arn)
        self.assertEqual([g["Arn"] for g in c.list_graphs()["GraphList"]], [arn])
        other_region = dclient(self.plain, acct, "eu-west-1").create_graph()["GraphArn"]
        self.assertEqual(GRAPH_RE.match(other_region).groups(), ("eu-west-1", acct))
        with self.assertRaises(ClientError) as ctx:
            c.create_graph(Tags={"aws:reserved": "x"})
        self.assertClientError(ctx, "ValidationException", 400, "Tags")

    def test_control_graphs_validation(self):
        for body in ({"account_id": "123", "count": 1}, {"account_id": new_account(), "count": 0},
                     {"account_id": new_account(), "region": "nowhere"}):
            status, headers, _ = control(self.plain, "/_emulator/detective/graphs", body)
            self.assertEqual(status, 400, body)
            self.assertEqual(headers.get("x-amzn-ErrorType"), "InvalidInputException")


class MemberTests(DetectiveTestCase):
    def test_list_members_pages_and_entities_outside_the_graph_are_rejected(self):
        members = [new_account() for _ in range(5)]
        spec = members[:4] + [{"account_id": members[4], "status": "ACCEPTED_BUT_DISABLED"}]
        status, _, body = control(self.plain, "/_emulator/detective/graphs",
                                  {"account_id": self.acct, "region": REGION, "members": spec})
        self.assertEqual(status, 200, body)
        graph = body["graph_arns"][0]
        listed, token = [], None
        while True:
            page = self.c.list_members(GraphArn=graph, MaxResults=2, **({"NextToken": token} if token else {}))
            self.assertLessEqual(len(page["MemberDetails"]), 2)
            listed += [(m["AccountId"], m["Status"]) for m in page["MemberDetails"]]
            token = page.get("NextToken")
            if not token:
                break
        self.assertEqual(sorted(listed), sorted([(a, "ENABLED") for a in members[:4]] + [(members[4], "ACCEPTED_BUT_DISABLED")]))
        self.start(user(members[0], "alice"), graph=graph)
        self.start(user(self.acct, "admin-user"), graph=graph)
        for outside in (user(members[4], "disabled"), user(new_account(), "stranger")):
            with self.assertRaises(ClientError) as ctx:
                self.start(outside, graph=graph)
            self.assertClientError(ctx, "ResourceNotFoundException", 404, "not in behavior graph")

    def test_members_can_leave_a_graph(self):
        member = new_account()
        status, _, body = control(self.plain, "/_emulator/detective/graphs",
                                  {"account_id": self.acct, "region": REGION, "members": [member]})
        graph = body["graph_arns"][0]
        self.start(user(member, "alice"), graph=graph)
        status, _, body = control(self.plain, "/_emulator/detective/members", {"graph_arn": graph, "members": []})
        self.assertEqual(status, 200, body)
        self.assertEqual(self.c.list_members(GraphArn=graph)["MemberDetails"], [])
        with self.assertRaises(ClientError) as ctx:
            self.start(user(member, "alice"), graph=graph)
        self.assertClientError(ctx, "ResourceNotFoundException", 404)

    def test_member_spec_validation(self):
        for bad in ("x", ["123"], [{"account_id": self.acct, "status": "MAYBE"}]):
            status, _, _ = control(self.plain, "/_emulator/detective/graphs", {"account_id": self.acct, "members": bad})
            self.assertEqual(status, 400, bad)


class StartValidationTests(DetectiveTestCase):
    def test_entity_arn_must_be_iam_user_or_role(self):
        for bad in ("arn:aws:sts::%s:assumed-role/admin/session" % self.acct,
                    "arn:aws:iam::%s:group/admins" % self.acct,
                    "arn:aws:iam::12345678901:user/short-account",
                    "arn:aws:iam::%s:user/" % self.acct,
                    "arn:aws:ec2:us-east-1:%s:instance/i-0123" % self.acct):
            with self.assertRaises(ClientError) as ctx:
                self.c.start_investigation(GraphArn=self.graph, EntityArn=bad, **SCOPE)
            self.assertClientError(ctx, "ValidationException", 400, "EntityArn")
        self.start(user(self.acct, "path/with/alice"))  # paths are fine

    def test_scope_start_must_precede_end(self):
        for start, end in ((NOW, NOW), (NOW, NOW - timedelta(seconds=1))):
            with self.assertRaises(ClientError) as ctx:
                self.c.start_investigation(GraphArn=self.graph, EntityArn=user(self.acct, "bob"),
                                           ScopeStartTime=start, ScopeEndTime=end)
            self.assertClientError(ctx, "ValidationException", 400, "ScopeStartTime")
        # A scope that ends in the future is accepted (the API documents no limit).
        resp = self.c.start_investigation(GraphArn=self.graph, EntityArn=user(self.acct, "bob"),
                                          ScopeStartTime=NOW, ScopeEndTime=NOW + timedelta(hours=1))
        self.assertRegex(resp["InvestigationId"], r"^[0-9]{21}$")

    def test_unknown_and_malformed_graph(self):
        unknown = "arn:aws:detective:%s:%s:graph:%s" % (REGION, self.acct, "0" * 32)
        with self.assertRaises(ClientError) as ctx:
            self.c.start_investigation(GraphArn=unknown, EntityArn=user(self.acct, "bob"), **SCOPE)
        self.assertClientError(ctx, "ResourceNotFoundException", 404)
        with self.assertRaises(ClientError) as ctx:
            self.c.start_investigation(GraphArn="arn:aws:detective:us-east-1:1:graph:xyz", EntityArn=user(self.acct, "bob"), **SCOPE)
        self.assertClientError(ctx, "ValidationException", 400, "GraphArn")
        dump = self.plain.http("GET", "/_emulator/detective/investigations?account=" + self.acct)[2]
        self.assertEqual(dump, [])

    def test_get_investigation_errors(self):
        inv = self.start(user(self.acct, "carol"))
        with self.assertRaises(ClientError) as ctx:
            self.get("9" * 21)
        self.assertClientError(ctx, "ResourceNotFoundException", 404)
        with self.assertRaises(ClientError) as ctx:
            self.get("12345678901234567890x")  # 21 chars (botocore checks the length), not digits
        self.assertClientError(ctx, "ValidationException", 400, "InvestigationId")
        second_graph = make_graphs(self.plain, self.acct)[0]
        with self.assertRaises(ClientError) as ctx:
            self.get(inv, graph=second_graph)  # the investigation belongs to the first graph
        self.assertClientError(ctx, "ResourceNotFoundException", 404)
        with self.assertRaises(ClientError) as ctx:
            self.indicators(inv, IndicatorType="NOT_A_TYPE")
        self.assertClientError(ctx, "ValidationException", 400, "IndicatorType")


class LifecycleTests(DetectiveTestCase):
    def test_running_then_successful_with_indicators(self):
        entity, role_entity = user(self.acct, "dave"), role(self.acct, "ops/deployer")
        t0 = time.monotonic()
        inv = self.start(entity)
        inv_role = self.start(role_entity)
        running = self.get(inv)
        self.assertEqual((running["Status"], running["State"], running["EntityType"]), ("RUNNING", "ACTIVE", "IAM_USER"))
        self.assertEqual((running["EntityArn"], running["GraphArn"], running["InvestigationId"]), (entity, self.graph, inv))
        self.assertEqual(running["ScopeStartTime"], SCOPE["ScopeStartTime"])
        self.assertEqual(running["ScopeEndTime"], SCOPE["ScopeEndTime"])
        self.assertNotIn("Severity", running)
        self.assertEqual(self.indicators(inv), [])
        done = self.wait_done(inv, t0)
        self.assertEqual(done["Status"], "SUCCESSFUL")
        self.assertIn(done["Severity"], SEVERITIES)
        self.assertEqual(self.get(inv_role)["EntityType"], "IAM_ROLE")
        found = self.indicators(inv)
        types = [i["IndicatorType"] for i in found]
        self.assertTrue({"TTP_OBSERVED", "IMPOSSIBLE_TRAVEL", "NEW_GEOLOCATION"} <= set(types), types)
        for ind in found:
            self.assertEqual(list(ind["IndicatorDetail"]), [DETAIL_KEY[ind["IndicatorType"]]])
        ttp = next(i for i in found if i["IndicatorType"] == "TTP_OBSERVED")["IndicatorDetail"]["TTPsObservedDetail"]
        self.assertTrue(ttp["Tactic"] and ttp["APIName"] and ttp["IpAddress"])
        # Paging returns the same indicators; IndicatorType filters.
        paged, token = [], None
        while True:
            resp = self.c.list_indicators(GraphArn=self.graph, InvestigationId=inv, MaxResults=1,
                                          **({"NextToken": token} if token else {}))
            self.assertLessEqual(len(resp["Indicators"]), 1)
            paged.extend(resp["Indicators"])
            token = resp.get("NextToken")
            if not token:
                break
        self.assertEqual(paged, found)
        self.assertEqual(self.indicators(inv, IndicatorType="IMPOSSIBLE_TRAVEL"),
                         [i for i in found if i["IndicatorType"] == "IMPOSSIBLE_TRAVEL"])
        # Deterministic per entity: a second investigation agrees.
        t1 = time.monotonic()
        again = self.start(entity)
        self.assertEqual(self.wait_done(again, t1)["Severity"], done["Severity"])
        self.assertEqual(self.indicators(again), found)

    def test_severity_depends_on_entity(self):
        ids = [self.start(user(self.acct, "user-%d" % i)) for i in range(12)]
        time.sleep(DELAY_S + 0.02)  # every investigation started before this sleep
        done = [self.get(i) for i in ids]
        self.assertEqual({d["Status"] for d in done}, {"SUCCESSFUL"})
        severities = {d["Severity"] for d in done}
        self.assertGreater(len(severities), 1, severities)
        self.assertLessEqual(severities, SEVERITIES)

    def test_forced_failure_via_control_endpoint(self):
        victim, bystander = user(self.acct, "eve"), user(self.acct, "frank")
        t0 = time.monotonic()
        before = self.start(victim)  # started before the entity was marked: unaffected
        status, _, body = control(self.plain, "/_emulator/detective/fail", {"entity_arn": victim})
        self.assertEqual(status, 200, body)
        failing = self.start(victim)
        fine = self.start(bystander)
        self.assertEqual(self.get(failing)["Status"], "RUNNING")
        self.assertEqual(self.wait_done(failing, t0)["Status"], "FAILED")
        self.assertNotIn("Severity", self.get(failing))
        self.assertEqual(self.indicators(failing), [])
        self.assertEqual(self.get(before)["Status"], "SUCCESSFUL")  # started before `failing`
        self.assertEqual(self.wait_done(fine, t0)["Status"], "SUCCESSFUL")
        # "fail": false stops failing future investigations.
        control(self.plain, "/_emulator/detective/fail", {"entity_arn": victim, "fail": False})
        t1 = time.monotonic()
        self.assertEqual(self.wait_done(self.start(victim), t1)["Status"], "SUCCESSFUL")
        status, headers, _ = control(self.plain, "/_emulator/detective/fail", {"entity_arn": "not-an-arn"})
        self.assertEqual((status, headers.get("x-amzn-ErrorType")), (400, "InvalidInputException"))


class ResetAndFailureRateTests(unittest.TestCase):
    def test_reset_clears_detective_state(self):
        emu = Emu("--no-throttle", "--investigation-delay-ms", "0")
        try:
            acct = new_account()
            c = dclient(emu, acct)
            graph = c.create_graph()["GraphArn"]
            entity = user(acct, "gina")
            control(emu, "/_emulator/detective/fail", {"entity_arn": entity})
            inv = c.start_investigation(GraphArn=graph, EntityArn=entity, **SCOPE)["InvestigationId"]
            self.assertEqual(c.get_investigation(GraphArn=graph, InvestigationId=inv)["Status"], "FAILED")
            self.assertEqual(emu.http("GET", "/_emulator/stats")[2]["calls"],
                             {"CreateGraph": 1, "StartInvestigation": 1, "GetInvestigation": 1})
            self.assertEqual(emu.http("POST", "/_emulator/reset")[0], 200)
            self.assertEqual(emu.http("GET", "/_emulator/stats")[2]["calls"], {})
            self.assertEqual(emu.http("GET", "/_emulator/detective/investigations")[2], [])
            self.assertEqual(c.list_graphs()["GraphList"], [])
            with self.assertRaises(ClientError) as ctx:
                c.get_investigation(GraphArn=graph, InvestigationId=inv)
            self.assertEqual(ctx.exception.response["Error"]["Code"], "ResourceNotFoundException")
            graph = c.create_graph()["GraphArn"]
            inv = c.start_investigation(GraphArn=graph, EntityArn=entity, **SCOPE)["InvestigationId"]
            self.assertEqual(c.get_investigation(GraphArn=graph, InvestigationId=inv)["Status"], "SUCCESSFUL")
        finally:
            emu.stop()

    def test_failure_rate_is_seeded(self):
        emu = Emu("--no-throttle", "--investigation-delay-ms", "0", "--investigation-failure-rate", "0.5", "--seed", "7")
        try:
            acct = new_account()
            c = dclient(emu, acct)

            def run() -> list[str]:
                graph = c.create_graph()["GraphArn"]
                ids = [c.start_investigation(GraphArn=graph, EntityArn=user(acct, "u%d" % i), **SCOPE)["InvestigationId"]
                       for i in range(24)]
                return [c.get_investigation(GraphArn=graph, InvestigationId=i)["Status"] for i in ids]

            first = run()
            self.assertEqual(set(first), {"SUCCESSFUL", "FAILED"}, first)
            self.assertEqual(emu.http("POST", "/_emulator/reset")[0], 200)  # re-seeds
            self.assertEqual(run(), first)
        finally:
            emu.stop()


class ThrottlingTests(DetectiveTestCase):
    def test_start_investigation_burst_then_429(self):
        acct = new_account()
        c = dclient(self.throttled, acct)
        graph = make_graphs(self.throttled, acct)[0]
        outcomes, errors = [], []
        t0 = time.monotonic()
        for i in range(8):
            try:
                ids = c.start_investigation(GraphArn=graph, EntityArn=user(acct, "t%d" % i), **SCOPE)["InvestigationId"]
                outcomes.append(ids)
            except ClientError as e:
                outcomes.append(None)
                errors.append(e)
        elapsed = time.monotonic() - t0
        self.assertTrue(all(outcomes[:5]), outcomes)
        self.assertTrue(errors, "no StartInvestigation was throttled")
        self.assertLessEqual(sum(1 for o in outcomes if o), 5 + int(elapsed * 1) + 1)
        for e in errors:
            self.assertEqual(e.response["Error"]["Code"], "TooManyRequestsException")
            self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], 429)
            self.assertEqual(e.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-errortype"), "TooManyRequestsException")
        stats = self.throttled.http("GET", "/_emulator/stats")[2]["accounts"][acct]
        self.assertEqual(stats["calls"]["StartInvestigation"], 8)
        self.assertEqual(stats["throttled"], {"StartInvestigation": len(errors)})
        # Other operations, accounts and regions have their own buckets.
        c.get_investigation(GraphArn=graph, InvestigationId=outcomes[0])
        other = new_account()
        dclient(self.throttled, other).start_investigation(
            GraphArn=make_graphs(self.throttled, other)[0], EntityArn=user(other, "x"), **SCOPE)
        dclient(self.throttled, acct, "eu-west-1").start_investigation(
            GraphArn=make_graphs(self.throttled, acct, region="eu-west-1")[0], EntityArn=user(acct, "x"), **SCOPE)

    def test_no_throttle_flag(self):
        for i in range(10):
            self.start(user(self.acct, "n%d" % i))
        stats = self.plain.http("GET", "/_emulator/stats")[2]["accounts"][self.acct]
        self.assertEqual(stats["calls"]["StartInvestigation"], 10)
        self.assertEqual(stats["throttled"], {})


class IsolationTests(DetectiveTestCase):
    def test_per_account_and_region_isolation(self):
        inv = self.start(user(self.acct, "henry"))
        other = new_account()
        oc = dclient(self.plain, other)
        self.assertEqual(oc.list_graphs()["GraphList"], [])
        with self.assertRaises(ClientError) as ctx:
            oc.start_investigation(GraphArn=self.graph, EntityArn=user(other, "x"), **SCOPE)
        self.assertClientError(ctx, "ResourceNotFoundException", 404)
        with self.assertRaises(ClientError) as ctx:
            oc.get_investigation(GraphArn=self.graph, InvestigationId=inv)
        self.assertClientError(ctx, "ResourceNotFoundException", 404)
        self.assertEqual(dclient(self.plain, self.acct, "eu-west-1").list_graphs()["GraphList"], [])
        self.assertEqual([g["Arn"] for g in self.c.list_graphs()["GraphList"]], [self.graph])
        dump = self.plain.http("GET", "/_emulator/detective/investigations?account=" + self.acct)[2]
        self.assertEqual([(d["InvestigationId"], d["AccountId"]) for d in dump], [(inv, self.acct)])
        self.assertEqual(self.plain.http("GET", "/_emulator/detective/investigations?account=" + other)[2], [])

    def test_account_resolution(self):
        # A registered STS-style key acts as its account.
        akid = new_session_key()
        self.assertEqual(register_key(self.plain, akid, self.acct)[0], 200)
        sts_client = dclient(self.plain, akid)
        self.assertEqual([g["Arn"] for g in sts_client.list_graphs()["GraphList"]], [self.graph])
        inv = self.start(role(self.acct, "enricher"), client=sts_client)
        self.assertEqual(self.get(inv)["EntityArn"], role(self.acct, "enricher"))  # seen by the 12-digit key
        # The header wins over the key.
        other = new_account()
        other_graph = make_graphs(self.plain, other)[0]
        hdr = add_header(dclient(self.plain, self.acct), "x-emulator-account-id", other)
        self.assertEqual([g["Arn"] for g in hdr.list_graphs()["GraphList"]], [other_graph])
        stats = self.plain.http("GET", "/_emulator/stats")[2]["accounts"]
        self.assertEqual(stats[other]["calls"], {"ListGraphs": 1})
        self.assertEqual(stats[self.acct]["calls"], {"ListGraphs": 1, "StartInvestigation": 1, "GetInvestigation": 1})
        bad = add_header(dclient(self.plain, self.acct), "x-emulator-account-id", "not-an-account")
        with self.assertRaises(ClientError) as ctx:
            bad.list_graphs()
        self.assertClientError(ctx, "ValidationException", 400, "x-emulator-account-id")


if __name__ == "__main__":
    unittest.main()
