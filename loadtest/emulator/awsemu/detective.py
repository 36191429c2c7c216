"""Owns the Amazon Detective service (signing name ``detective``): graphs, investigations and their indicators.

Shapes and HTTP bindings from botocore's detective/2018-10-26/service-2.json.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from awsemu.errors import ApiError, invalid_input
from awsemu.paging import decode_token, encode_token
from awsemu.routing import DEFAULT_ACCOUNT, DEFAULT_REGION, RequestContext, Service, is_account_id
from awsemu.state import StateStore, Stats


# Shapes from botocore detective/2018-10-26/service-2.json.
DT_GRAPH_ARN_RE = re.compile(r"^arn:aws[-\w]{0,10}?:detective:[-\w]{2,20}?:\d{12}?:graph:[abcdef\d]{32}?$")
# EntityArn's model pattern is only "^arn:.*"; the API accepts IAM users and
# roles (EntityType IAM_USER / IAM_ROLE), so the emulator checks for those.
DT_ENTITY_ARN_RE = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::(\d{12}):(user|role)/[\w+=,.@/-]+$")
DT_INVESTIGATION_ID_RE = re.compile(r"^[0-9]{21}$")
DT_SEVERITIES = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
DT_INDICATOR_TYPES = ("TTP_OBSERVED", "IMPOSSIBLE_TRAVEL", "FLAGGED_IP_ADDRESS", "NEW_GEOLOCATION", "NEW_ASO",
                      "NEW_USER_AGENT", "RELATED_FINDING", "RELATED_FINDING_GROUP")
DT_GRAPHS_MAX_RESULTS = 200      # MemberResultsLimit
DT_MEMBERS_MAX_RESULTS = 200     # MemberResultsLimit (ListMembers)
# MemberStatus. Only ENABLED members contribute data to the graph (MemberDetail.Status).
DT_MEMBER_STATUSES = ("INVITED", "VERIFICATION_IN_PROGRESS", "VERIFICATION_FAILED", "ENABLED", "ACCEPTED_BUT_DISABLED")
DT_INDICATORS_MAX_RESULTS = 100  # MaxResults
DT_TAGS_MAX = 50


def dt_validation(message: str, error_code: str | None = None) -> ApiError:
    # ValidationException (400): members Message, ErrorCode (INVALID_GRAPH_ARN |
    # INVALID_REQUEST_BODY | INTERNAL_ERROR), ErrorCodeReason.
    members: dict[str, Any] = {"Message": message}
    if error_code:
        members["ErrorCode"] = error_code
        members["ErrorCodeReason"] = message
    return ApiError(400, "ValidationException", message, members)


def dt_not_found(message: str) -> ApiError:
    return ApiError(404, "ResourceNotFoundException", message, {"Message": message})


def dt_iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def dt_parse_time(v: Any, name: str) -> float:
    """A restJson1 timestamp (iso8601 string; epoch seconds tolerated) -> epoch."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str) and "T" in v:
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00") if v.endswith(("Z", "z")) else v)
        except ValueError:
            dt = None
        if dt is not None:
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            return dt.timestamp()
    raise dt_validation(f"Invalid parameter '{name}': must be an ISO 8601 UTC timestamp such as 2021-08-18T16:35:56.284Z",
                        "INVALID_REQUEST_BODY")


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode()).digest()


def dt_severity_for(entity_arn: str) -> str:
    """Deterministic severity of a SUCCESSFUL investigation of an entity."""
    return DT_SEVERITIES[_digest("severity", entity_arn)[0] % len(DT_SEVERITIES)]


def dt_indicators_for(entity_arn: str, account: str, region: str) -> list[dict]:
    """Deterministic indicators (ListIndicators' Indicator shape) for an entity."""
    h = _digest("indicators", entity_arn)
    ip = lambda i: "198.51.100.%d" % (1 + h[i] % 254)  # noqa: E731 - TEST-NET-2
    ip2 = lambda i: "203.0.113.%d" % (1 + h[i] % 254)  # noqa: E731 - TEST-NET-3
    cities = ("Frankfurt, Germany", "Sao Paulo, Brazil", "Singapore, Singapore", "Ashburn, United States",
              "Sydney, Australia", "Mumbai, India")
    ttps = (("Credential Access", "T1110 - Brute Force", "CreateAccessKey"),
            ("Discovery", "T1087 - Account Discovery", "ListUsers"),
            ("Persistence", "T1098 - Account Manipulation", "AttachUserPolicy"),
            ("Defense Evasion", "T1562 - Impair Defenses", "StopLogging"),
            ("Exfiltration", "T1537 - Transfer Data to Cloud Account", "PutBucketPolicy"))
    out: list[dict] = []
    for i in range(1 + h[1] % 3):  # 1-3 TTPs
        tactic, technique, api = ttps[(h[2] + i) % len(ttps)]
        out.append({"IndicatorType": "TTP_OBSERVED", "IndicatorDetail": {"TTPsObservedDetail": {
            "Tactic": tactic, "Technique": technique, "Procedure": f"{api} called from an unusual IP address",
            "IpAddress": ip(3 + i), "APIName": api, "APISuccessCount": 1 + h[6 + i] % 40, "APIFailureCount": h[9 + i] % 5}}})
    start_city, end_city = cities[h[12] % len(cities)], cities[(h[12] + 1 + h[13] % (len(cities) - 1)) % len(cities)]
    out.append({"IndicatorType": "IMPOSSIBLE_TRAVEL", "IndicatorDetail": {"ImpossibleTravelDetail": {
        "StartingIpAddress": ip(14), "EndingIpAddress": ip2(15), "StartingLocation": start_city,
        "EndingLocation": end_city, "HourlyTimeDelta": 1 + h[16] % 4}}})
    out.append({"IndicatorType": "NEW_GEOLOCATION", "IndicatorDetail": {"NewGeolocationDetail": {
        "Location": end_city, "IpAddress": ip2(15), "IsNewForEntireAccount": bool(h[17] & 1)}}})
    if h[18] & 1:
        out.append({"IndicatorType": "FLAGGED_IP_ADDRESS", "IndicatorDetail": {"FlaggedIpAddressDetail": {
            "IpAddress": ip2(19), "Reason": "AWS_THREAT_INTELLIGENCE"}}})
    if h[18] & 2:
        out.append({"IndicatorType": "NEW_ASO", "IndicatorDetail": {"NewAsoDetail": {
            "Aso": ("Example Hosting Ltd", "Sample Cloud GmbH", "Demo Telecom SA")[h[20] % 3],
            "IsNewForEntireAccount": bool(h[20] & 1)}}})
    if h[18] & 4:
        out.append({"IndicatorType": "NEW_USER_AGENT", "IndicatorDetail": {"NewUserAgentDetail": {
            "UserAgent": ("aws-cli/2.15.0 Python/3.11.6 Linux/6.1", "Boto3/1.34.0 Python/3.9.0", "curl/8.4.0")[h[21] % 3],
            "IsNewForEntireAccount": bool(h[21] & 1)}}})
    if h[18] & 8:
        out.append({"IndicatorType": "RELATED_FINDING", "IndicatorDetail": {"RelatedFindingDetail": {
            "Arn": f"arn:aws:guardduty:{region}:{account}:detector/{h[22:26].hex()}/finding/{h[26:32].hex()}",
            "Type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS", "IpAddress": ip2(19)}}})
    if h[18] & 16:
        out.append({"IndicatorType": "RELATED_FINDING_GROUP", "IndicatorDetail": {"RelatedFindingGroupDetail": {
            "Id": str(uuid.UUID(bytes=h[:16]))}}})
    return out


class DetectiveState:
    """One (account, region): behavior graphs and their investigations."""

    def __init__(self) -> None:
        # GraphArn -> {"Arn", "CreatedTime" (epoch s), "Tags", "investigations": {id: dict}}
        self.graphs: dict[str, dict] = {}
        self.last_created = 0.0


class DetectiveService(Service):
    """Amazon Detective (signing name ``detective``), API version 2018-10-26.

    Investigations are RUNNING for ``investigation_delay_ms`` after
    StartInvestigation, then SUCCESSFUL (severity and indicators derived from
    the entity ARN) or FAILED: for entities registered with
    ``POST /_emulator/detective/fail``, or at random with probability
    ``failure_rate`` (``random.Random(seed)``, re-seeded on reset).
    """

    name = "detective"
    # HTTP bindings from botocore detective/2018-10-26/service-2.json.
    bindings = (
        ("POST", "/graphs/list", "ListGraphs"),
        ("POST", "/graph", "CreateGraph"),
        ("POST", "/investigations/startInvestigation", "StartInvestigation"),
        ("POST", "/investigations/getInvestigation", "GetInvestigation"),
        ("POST", "/investigations/listIndicators", "ListIndicators"),
        ("POST", "/graph/members/list", "ListMembers"),
    )
    # The Detective quotas page (AWS General Reference, "Amazon Detective
    # endpoints and quotas") publishes no API request-rate quotas, so these
    # are assumed: StartInvestigation 1 rps burst 5, the others 10 rps burst 20.
    default_limits = {
        "StartInvestigation": (1.0, 5),
        "GetInvestigation": (10.0, 20),
        "ListIndicators": (10.0, 20),
        "ListGraphs": (10.0, 20),
        "CreateGraph": (10.0, 20),
        "ListMembers": (10.0, 20),
    }
    sample_names: list[str] = []

    def __init__(self, store: StateStore, stats: Stats, investigation_delay_ms: float = 2000.0,
                 failure_rate: float = 0.0, seed: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        if not (0.0 <= failure_rate <= 1.0):
            raise ValueError("failure_rate must be between 0 and 1")
        self.store = store
        self.stats = stats
        self.delay_s = max(0.0, investigation_delay_ms) / 1000.0
        self.failure_rate = failure_rate
        self.seed = seed
        self._clock = clock
        self._lock = threading.Lock()  # guards the fields below
        self._rng = random.Random(seed)
        self._failing: set[str] = set()
        self._id_seq = itertools.count(1)


    def control_routes(self):
        return {
            ("POST", "/_emulator/detective/graphs"): self.control_create_graphs,
            ("POST", "/_emulator/detective/fail"): self.control_fail,
            ("POST", "/_emulator/detective/members"): self.control_members,
            ("GET", "/_emulator/detective/investigations"): self.control_dump_investigations,
        }

    def reset(self) -> None:
        with self._lock:
            self._rng = random.Random(self.seed)
            self._failing.clear()

    def validation_error(self, message: str) -> ApiError:
        return dt_validation(message, "INVALID_REQUEST_BODY")

    def internal_error(self) -> ApiError:
        return ApiError(500, "InternalServerException", "Internal server error", {"Message": "Internal server error"})

    def throttled_error(self) -> ApiError:
        # TooManyRequestsException: httpStatusCode 429 in the Detective model
        # (declared on the investigation and organization operations).
        return ApiError(429, "TooManyRequestsException", "Too Many Requests", {"Message": "Too Many Requests"})

    # ---------------------------------------------------------------- helpers
    def _state(self, account: str, region: str) -> DetectiveState:
        return self.store.get(self.name, account, region, DetectiveState)

    def _new_graph(self, st: DetectiveState, account: str, region: str, tags: dict | None = None) -> dict:
        # CreatedTime strictly increases within a state, so "oldest" is well defined.
        created = max(time.time(), st.last_created + 0.001)
        st.last_created = created
        arn = f"arn:aws:detective:{region}:{account}:graph:{uuid.uuid4().hex}"
        # members: AccountId -> MemberStatus. The administrator (the graph's own account) is
        # not a member; it always contributes to its graph.
        g = {"Arn": arn, "CreatedTime": created, "Tags": dict(tags or {}), "investigations": {}, "members": {},
             "admin": account}
        st.graphs[arn] = g
        return g

    def _graph(self, ctx: RequestContext, body: dict) -> dict:
        """The GraphArn of the body, validated, looked up in the caller's state (lock held)."""
        arn = body.get("GraphArn")
        if not isinstance(arn, str) or not arn:
            raise dt_validation("GraphArn is required", "INVALID_REQUEST_BODY")
        if not DT_GRAPH_ARN_RE.match(arn):
            raise dt_validation(f"Invalid GraphArn '{arn}'", "INVALID_GRAPH_ARN")
        g = self._state(ctx.account, ctx.region).graphs.get(arn)
        if g is None:
            raise dt_not_found(f"The request refers to a nonexistent resource: graph {arn}")
        return g

    def _investigation(self, ctx: RequestContext, body: dict) -> dict:
        g = self._graph(ctx, body)
        inv_id = body.get("InvestigationId")
        if not isinstance(inv_id, str) or not DT_INVESTIGATION_ID_RE.match(inv_id):
            raise dt_validation("Invalid parameter 'InvestigationId': must be 21 digits", "INVALID_REQUEST_BODY")
        inv = g["investigations"].get(inv_id)
        if inv is None:
            raise dt_not_found(f"The request refers to a nonexistent resource: investigation {inv_id}")
        return inv

    def _status(self, inv: dict) -> str:
        if self._clock() - inv["started"] < self.delay_s:
            return "RUNNING"
        return inv["outcome"]

    @staticmethod
    def _max_results(body: dict, limit: int) -> int:
        v = body.get("MaxResults", limit)
        if isinstance(v, bool) or not isinstance(v, int) or not (1 <= v <= limit):
            raise dt_validation(f"Invalid parameter 'MaxResults': must be between 1 and {limit}", "INVALID_REQUEST_BODY")
        return v

    @staticmethod
    def _offset(body: dict, fingerprint: str, max_len: int) -> int:
        token = body.get("NextToken")
        if token is None:
            return 0
        if not isinstance(token, str) or not (1 <= len(token) <= max_len):
            raise dt_validation(f"Invalid parameter 'NextToken': length must be between 1 and {max_len}", "INVALID_REQUEST_BODY")
        offset, fp = decode_token(token, lambda m: dt_validation(m, "INVALID_REQUEST_BODY"))
        if fp != fingerprint:
            raise dt_validation("Invalid parameter 'NextToken': the token does not belong to this request", "INVALID_REQUEST_BODY")
        return offset

    # ---------------------------------------------------------------- graphs
    def list_graphs(self, ctx: RequestContext, body: dict) -> dict:
        max_results = self._max_results(body, DT_GRAPHS_MAX_RESULTS)
        offset = self._offset(body, "graphs", 1024)
        with self.store.lock:
            graphs = list(self._state(ctx.account, ctx.region).graphs.values())
            page = [{"Arn": g["Arn"], "CreatedTime": dt_iso(g["CreatedTime"])} for g in graphs[offset:offset + max_results]]
        resp: dict[str, Any] = {"GraphList": page}
        if offset + max_results < len(graphs):
            resp["NextToken"] = encode_token(offset + max_results, "graphs")
        return resp

    def create_graph(self, ctx: RequestContext, body: dict) -> dict:
        tags = body.get("Tags")
        if tags is not None:
            if not isinstance(tags, dict) or not (1 <= len(tags) <= DT_TAGS_MAX):
                raise dt_validation(f"Invalid parameter 'Tags': must be a map of 1 to {DT_TAGS_MAX} tags", "INVALID_REQUEST_BODY")
            for k, v in tags.items():
                if not (1 <= len(k) <= 128) or k.startswith("aws:") or not isinstance(v, str) or len(v) > 256:
                    raise dt_validation(f"Invalid parameter 'Tags': bad tag {k!r}", "INVALID_REQUEST_BODY")
        with self.store.lock:
            st = self._state(ctx.account, ctx.region)
            # "If the same account calls CreateGraph with the same administrator
            # account, it always returns the same behavior graph ARN."
            if st.graphs:
                return {"GraphArn": next(iter(st.graphs))}
            return {"GraphArn": self._new_graph(st, ctx.account, ctx.region, tags)["Arn"]}

    def list_members(self, ctx: RequestContext, body: dict) -> dict:
        max_results = self._max_results(body, DT_MEMBERS_MAX_RESULTS)
        with self.store.lock:
            g = self._graph(ctx, body)
            offset = self._offset(body, "members:" + g["Arn"], 1024)
            members = sorted(g["members"].items())
            page = [{"AccountId": acct, "AdministratorId": g["admin"], "GraphArn": g["Arn"], "Status": status,
                     "InvitationType": "ORGANIZATION"} for acct, status in members[offset:offset + max_results]]
        resp: dict[str, Any] = {"MemberDetails": page}
        if offset + max_results < len(members):
            resp["NextToken"] = encode_token(offset + max_results, "members:" + g["Arn"])
        return resp

    @staticmethod
    def _covers(g: dict, account: str) -> bool:
        return account == g["admin"] or g["members"].get(account) == "ENABLED"

    # ---------------------------------------------------------- investigations
    def start_investigation(self, ctx: RequestContext, body: dict) -> dict:
        entity = body.get("EntityArn")
        if not isinstance(entity, str) or not entity:
            raise dt_validation("EntityArn is required", "INVALID_REQUEST_BODY")
        m = DT_ENTITY_ARN_RE.match(entity)
        if not m:
            raise dt_validation(f"Invalid EntityArn '{entity}': must be an IAM user or IAM role ARN "
                                "(arn:aws:iam::<account>:user/<name> or arn:aws:iam::<account>:role/<name>)",
                                "INVALID_REQUEST_BODY")
        for name in ("ScopeStartTime", "ScopeEndTime"):
            if body.get(name) is None:
                raise dt_validation(f"{name} is required", "INVALID_REQUEST_BODY")
        start = dt_parse_time(body["ScopeStartTime"], "ScopeStartTime")
        end = dt_parse_time(body["ScopeEndTime"], "ScopeEndTime")
        if start >= end:
            raise dt_validation("ScopeStartTime must be earlier than ScopeEndTime", "INVALID_REQUEST_BODY")
        with self.store.lock:
            g = self._graph(ctx, body)
            if not self._covers(g, m.group(1)):
                # The graph holds no data for an account that is not an enabled member, so
                # the entity is unknown to it. Which error the service returns is not
                # documented; ResourceNotFoundException is one StartInvestigation declares.
                raise dt_not_found(f"The request refers to a nonexistent resource: entity {entity} "
                                   f"is not in behavior graph {g['Arn']}")
            with self._lock:
                failing = entity in self._failing
                draw = self._rng.random() if self.failure_rate > 0 else 1.0
                seq = next(self._id_seq)
            outcome = "FAILED" if failing or draw < self.failure_rate else "SUCCESSFUL"
            # InvestigationId: 21 digits (model pattern ^[0-9]+$, length 21).
            inv_id = "%013d%08d" % (int(time.time() * 1000) % 10**13, seq % 10**8)
            g["investigations"][inv_id] = {
                "InvestigationId": inv_id, "GraphArn": g["Arn"], "EntityArn": entity,
                "EntityType": "IAM_USER" if m.group(2) == "user" else "IAM_ROLE",
                "CreatedTime": time.time(), "ScopeStartTime": start, "ScopeEndTime": end,
                "State": "ACTIVE", "started": self._clock(), "outcome": outcome,
                "account": ctx.account, "region": ctx.region,
            }
        return {"InvestigationId": inv_id}

    def _describe(self, inv: dict) -> dict:
        status = self._status(inv)
        out = {
            "GraphArn": inv["GraphArn"], "InvestigationId": inv["InvestigationId"], "EntityArn": inv["EntityArn"],
            "EntityType": inv["EntityType"], "CreatedTime": dt_iso(inv["CreatedTime"]),
            "ScopeStartTime": dt_iso(inv["ScopeStartTime"]), "ScopeEndTime": dt_iso(inv["ScopeEndTime"]),
            "Status": status, "State": inv["State"],
        }
        if status == "SUCCESSFUL":
            out["Severity"] = dt_severity_for(inv["EntityArn"])
        return out

    def get_investigation(self, ctx: RequestContext, body: dict) -> dict:
        with self.store.lock:
            return self._describe(self._investigation(ctx, body))

    def list_indicators(self, ctx: RequestContext, body: dict) -> dict:
        itype = body.get("IndicatorType")
        if itype is not None and itype not in DT_INDICATOR_TYPES:
            raise dt_validation(f"Invalid parameter 'IndicatorType': must be one of {', '.join(DT_INDICATOR_TYPES)}",
                                "INVALID_REQUEST_BODY")
        max_results = self._max_results(body, DT_INDICATORS_MAX_RESULTS)
        with self.store.lock:
            inv = self._investigation(ctx, body)
            status = self._status(inv)
        fingerprint = hashlib.sha256(f"{inv['GraphArn']}|{inv['InvestigationId']}|{itype}".encode()).hexdigest()[:16]
        offset = self._offset(body, fingerprint, 2048)
        # Indicators exist once the investigation is SUCCESSFUL; none while
        # RUNNING or after FAILED.
        indicators = dt_indicators_for(inv["EntityArn"], inv["account"], inv["region"]) if status == "SUCCESSFUL" else []
        if itype is not None:
            indicators = [i for i in indicators if i["IndicatorType"] == itype]
        resp: dict[str, Any] = {"GraphArn": inv["GraphArn"], "InvestigationId": inv["InvestigationId"],
                                "Indicators": indicators[offset:offset + max_results]}
        if offset + max_results < len(indicators):
            resp["NextToken"] = encode_token(offset + max_results, fingerprint)
        return resp

    # ---------------------------------------------------------------- control
    def control_create_graphs(self, _query: dict[str, list[str]], body: dict) -> dict:
        """POST /_emulator/detective/graphs {"account_id", "region", "count", "members"} -> {"graph_arns": [...]}.

        Unlike CreateGraph (one graph per account and region) this adds
        ``count`` new graphs, e.g. to exercise ListGraphs paging. ``members`` (account ids,
        or {"account_id", "status"}) are the graphs' member accounts; StartInvestigation
        rejects entities of any other account but the administrator's.
        """
        account = body.get("account_id", DEFAULT_ACCOUNT)
        region = body.get("region", DEFAULT_REGION)
        count = body.get("count", 1)
        members = self._member_spec(body.get("members", []))
        if not is_account_id(account):
            raise invalid_input("'account_id' must be a 12-digit account id")
        if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
            raise invalid_input("'region' must be a region name such as us-east-1")
        if isinstance(count, bool) or not isinstance(count, int) or not (1 <= count <= 1000):
            raise invalid_input("'count' must be an integer between 1 and 1000")
        with self.store.lock:
            st = self._state(account, region)
            graphs = [self._new_graph(st, account, region) for _ in range(count)]
            for g in graphs:
                g["members"].update(members)
        return {"graph_arns": [g["Arn"] for g in graphs]}

    @staticmethod
    def _member_spec(spec: Any) -> dict[str, str]:
        """``members``: account ids (ENABLED) or {"account_id", "status"} objects."""
        if not isinstance(spec, list):
            raise invalid_input("'members' must be a list")
        out: dict[str, str] = {}
        for item in spec:
            acct, status = (item, "ENABLED") if isinstance(item, str) else (
                (item.get("account_id"), item.get("status", "ENABLED")) if isinstance(item, dict) else (None, None))
            if not isinstance(acct, str) or not is_account_id(acct):
                raise invalid_input("'members' entries must be 12-digit account ids or {\"account_id\", \"status\"}")
            if status not in DT_MEMBER_STATUSES:
                raise invalid_input(f"'status' must be one of {', '.join(DT_MEMBER_STATUSES)}")
            out[acct] = status
        return out

    def control_members(self, _query: dict[str, list[str]], body: dict) -> dict:
        """POST /_emulator/detective/members {"graph_arn", "members"}: the graph's members become
        exactly these (as in control_create_graphs), e.g. an account leaving the graph."""
        arn = body.get("graph_arn")
        members = self._member_spec(body.get("members", []))
        with self.store.lock:
            for _acct, _region, st in self.store.items(self.name):
                g = st.graphs.get(arn)
                if g is not None:
                    g["members"] = members
                    return {"ok": True, "members": len(members)}
        raise invalid_input(f"no graph {arn!r}")

    def control_fail(self, _query: dict[str, list[str]], body: dict) -> dict:
        """POST /_emulator/detective/fail {"entity_arn", "fail": true|false}: future
        investigations of the entity FAIL (or no longer do, with "fail": false)."""
        entity = body.get("entity_arn")
        fail = body.get("fail", True)
        if not isinstance(entity, str) or not DT_ENTITY_ARN_RE.match(entity):
            raise invalid_input("'entity_arn' must be an IAM user or role ARN")
        if not isinstance(fail, bool):
            raise invalid_input("'fail' must be a boolean")
        with self._lock:
            (self._failing.add if fail else self._failing.discard)(entity)
            return {"ok": True, "failing": sorted(self._failing)}

    def control_dump_investigations(self, query: dict[str, list[str]], _body: dict) -> list:
        """GET /_emulator/detective/investigations[?account=...]: GetInvestigation views."""
        account = (query.get("account") or [""])[0]
        with self.store.lock:
            out = []
            for acct, region, st in self.store.items(self.name):
                if account and acct != account:
                    continue
                for g in st.graphs.values():
                    for inv in g["investigations"].values():
                        d = self._describe(inv)
                        d["AccountId"], d["Region"] = acct, region
                        out.append(d)
        return out

