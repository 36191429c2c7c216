"""Observed AWS calls against the IAM grants of pipes/template.yaml and pipes/management-account.yaml.

moto and the emulator enforce no IAM. While the local-stack tests run, the fault proxies of
scripts/local-aws append every request to a JSON-lines file (LOCAL_AWS_CALL_LOG), one object per
request: {"function", "service", "operation", "account", "region", "table", "tables",
"leading_keys", "fields", "resource", "status"}. This module checks each request a function made
against the Allow and Deny statements of that function's role, for every deployment variant in
which the function could make it (customer-managed key on/off, contact role set/unset,
investigations on/off, Detective graph given/discovered, external id set/unset), and fails
naming the function, the operation, the resource and the grant that is missing.

    python -m pipes.tests.iam_check target/observed-calls.jsonl --require-calls

Parts, each unit-tested in test_iam_check.py:
  * `Evaluator`: IAM policy evaluation for one request: explicit Deny wins, then any Allow, else
    implicit deny. Action and NotAction with wildcards, Resource and NotResource (ARN globbing),
    Principal (for trust, key and queue policies), and the condition operators our templates use:
    String*/Arn*/Null/Bool, with ForAllValues:/ForAnyValue: and ...IfExists.
  * `request_for`: one log record -> (IAM action, resource ARNs, condition context).
  * `check_calls`: the records against the roles, variant by variant.

Semantics worth knowing (IAM User Guide, "Condition operators" and "Single-valued vs multivalued
context keys"): a missing key fails a positive operator and satisfies a negated one (unless
...IfExists, which is then true); ForAllValues is true for a missing or empty key, ForAnyValue
false. A plain (unqualified) operator given a multivalued key is evaluated strictly: in an Allow
every value must match, in a Deny any value suffices, so the checker never passes a request AWS
might refuse.
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from pipes.tests.cfn import Stack  # type: ignore
else:
    from .cfn import Stack

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "pipes" / "template.yaml"
MANAGEMENT = ROOT / "pipes" / "management-account.yaml"
# Each function's calls as IAM actions, written once: the doctor simulates them against the
# deployed roles, test_role_calls checks them against the template, and this check fails on an
# observed call whose action the list lacks.
ROLE_CALLS = ROOT / "pipes" / "role-calls.json"

# The synthetic organization every check uses. Request ARNs and policy ARNs are built from the
# same values, so any valid values do.
MANAGEMENT_ACCOUNT = "999999999999"
ORGANIZATION_ID = "o-aa11bb22cc"
KMS_KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
DEFAULT_CONTACT_ROLE = f"arn:aws:iam::{MANAGEMENT_ACCOUNT}:role/securityhub-enricher-contacts"
DEFAULT_GRAPH = "arn:aws:detective:us-east-1:111122223333:graph:0123456789abcdef0123456789abcdef"
EXTERNAL_ID = "example-external-id"
DEFAULT_ACCOUNT = "111122223333"
DEFAULT_REGION = "us-east-1"

# SigV4 signing name -> IAM service prefix, where they differ.
SERVICE_PREFIX = {"monitoring": "cloudwatch"}

# Callers the log may name that are not functions of the template: enricher-admin (an operator
# CLI) is checked against the template's OperatorPolicy; "pipe" (the tests' stand-in for the
# EventBridge Pipe, which reads the stream and invokes the enricher) against PipeRole.
OPERATOR_FUNCTIONS = {"enricher-admin": "OperatorPolicy"}
SERVICE_ROLES = {"pipe": "PipeRole"}


# ==========================================================================================
# Policy evaluation
# ==========================================================================================


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    """IAM wildcards: * any run of characters, ? one character; nothing else is special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def action_matches(pattern: str, action: str) -> bool:
    return _glob(pattern, action, case=False)


def arn_matches(pattern: str, arn: str) -> bool:
    """ARN matching as ArnLike and the Resource element do it: colon-separated parts, each globbed."""
    if pattern == "*":
        return True
    if not pattern.startswith("arn:") or not arn.startswith("arn:"):
        return _glob(pattern, arn, case=True)
    p_parts, a_parts = pattern.split(":", 5), arn.split(":", 5)
    if len(p_parts) != 6 or len(a_parts) != 6:
        return _glob(pattern, arn, case=True)
    return all(_glob(p, a, case=True) for p, a in zip(p_parts, a_parts))


class ConditionError(Exception):
    """A condition this evaluator cannot decide (an operator or a value it does not know)."""


_STRING_OPS = {
    "StringEquals": lambda p, v: p == v,
    "StringNotEquals": lambda p, v: p == v,
    "StringEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringNotEqualsIgnoreCase": lambda p, v: p.lower() == v.lower(),
    "StringLike": lambda p, v: _glob(p, v, case=True),
    "StringNotLike": lambda p, v: _glob(p, v, case=True),
    "ArnEquals": lambda p, v: arn_matches(p, v),
    "ArnLike": lambda p, v: arn_matches(p, v),
    "ArnNotEquals": lambda p, v: arn_matches(p, v),
    "ArnNotLike": lambda p, v: arn_matches(p, v),
    "Bool": lambda p, v: str(p).lower() == str(v).lower(),
}
_NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike"}


class UnknownValue(str):
    """A context value known to be present whose content the log does not record."""


def _condition_true(operator: str, key: str, expected: list, context: dict[str, list], effect: str) -> bool:
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    if if_exists:
        op = op[: -len("IfExists")]
    values = context.get(key.lower())
    if values is None and "syntaxpath/" in key.lower() and "." in key:
        # The log records top-level fields only: a nested path (Workflow.Status) is taken to be
        # in the request whenever its top-level field (Workflow) is.
        top = key.lower().split("/", 1)[0] + "/" + key.lower().split("/", 1)[1].split(".")[0]
        values = context.get(top)
    if op == "Null":
        (want,) = [str(e).lower() for e in expected] or ["true"]
        absent = values is None or values == []
        return absent if want == "true" else not absent
    if op not in _STRING_OPS:
        raise ConditionError(f"condition operator {operator} is not supported by the checker")
    match = _STRING_OPS[op]
    negated = op in _NEGATED
    if any(isinstance(v, UnknownValue) for v in values or []):
        raise ConditionError(f"{operator} on {key}: the call log does not record this key's value")

    def one(value: str) -> bool:
        hit = any(match(str(e), value) for e in expected)
        return not hit if negated else hit

    if qualifier == "ForAllValues":
        return all(one(v) for v in values or [])
    if qualifier == "ForAnyValue":
        return any(one(v) for v in values or [])
    if qualifier:
        raise ConditionError(f"condition qualifier {qualifier}")
    if values is None or values == []:
        return True if if_exists else negated
    if len(values) == 1:
        return one(values[0])
    # A plain operator on a multivalued key: strict both ways (see the module docstring).
    return all(one(v) for v in values) if effect == "Allow" else any(one(v) for v in values)


def conditions_hold(condition: dict | None, context: dict[str, list], effect: str) -> bool:
    for operator, pairs in (condition or {}).items():
        for key, expected in pairs.items():
            if not _condition_true(operator, key, as_list(expected), context, effect):
                return False
    return True


def principal_matches(principal: Any, who: dict[str, str] | None) -> bool:
    """Principal of a resource policy against {"AWS": arn} or {"Service": name}."""
    if principal is None:
        return True  # identity policy: the statement belongs to the caller
    if who is None:
        return False
    if principal == "*":
        return True
    for kind, values in principal.items():
        for value in as_list(values):
            if kind != next(iter(who)):
                continue
            actual = who[kind]
            if value == "*" or value == actual:
                return True
            if kind == "AWS":
                # An account (root ARN or bare id) stands for every principal of that account.
                account = value if re.fullmatch(r"\d{12}", value) else None
                m = re.fullmatch(r"arn:[^:]+:iam::(\d{12}):root", value)
                account = account or (m.group(1) if m else None)
                if account and re.match(rf"arn:[^:]+:(iam|sts)::{account}:", actual):
                    return True
    return False


@dataclass
class Request:
    action: str
    resources: list[str]
    context: dict[str, list] = field(default_factory=dict)
    principal: dict[str, str] | None = None  # for resource policies

    def describe(self) -> str:
        text = f"{self.action} on {', '.join(self.resources) or '-'}"
        keys = self.context.get("dynamodb:leadingkeys")
        if keys:
            shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            text += f" (leading keys {shown})"
        fields = sorted(str(v[0]) for k, v in self.context.items() if "syntaxpath/" in k)
        if fields:
            text += f" (fields {', '.join(fields)})"
        return text


@dataclass
class Decision:
    allowed: bool
    reason: str
    statement: dict | None = None


def _statement_applies(statement: dict, request: Request, resource: str) -> bool:
    if "Action" in statement:
        if not any(action_matches(a, request.action) for a in as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(action_matches(a, request.action) for a in as_list(statement["NotAction"])):
            return False
    else:
        return False
    if "Resource" in statement:
        if not any(arn_matches(r, resource) for r in as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(arn_matches(r, resource) for r in as_list(statement["NotResource"])):
            return False
    elif "Principal" not in statement and "NotPrincipal" not in statement:
        return False  # an identity statement without Resource grants nothing
    if "Principal" in statement or request.principal is not None:
        if not principal_matches(statement.get("Principal"), request.principal):
            return False
    return True


def evaluate(statements: Iterable[dict], request: Request) -> Decision:
    """One policy set: Deny wins, then Allow; each resource of the request must be allowed."""
    statements = list(statements)
    resources = request.resources or ["*"]
    for resource in resources:
        allowed_by = None
        for statement in statements:
            if not _statement_applies(statement, request, resource):
                continue
            effect = statement.get("Effect")
            if not conditions_hold(statement.get("Condition"), request.context, effect):
                continue
            if effect == "Deny":
                return Decision(False, f"explicitly denied on {resource}", statement)
            if effect == "Allow" and allowed_by is None:
                allowed_by = statement
        if allowed_by is None:
            return Decision(False, f"no Allow for {request.action} on {resource}")
    return Decision(True, "allowed", None)


def policy_statements(document: dict | None) -> list[dict]:
    return as_list((document or {}).get("Statement"))


def role_statements(stack: Stack, role: str) -> list[dict]:
    """Every statement of a role's inline policies and of the managed policies attached to it."""
    resource = stack.resources().get(role)
    if resource is None:
        return []
    properties = resource["Properties"]
    if properties.get("ManagedPolicyArns"):
        raise ConditionError(f"{role}: ManagedPolicyArns cannot be evaluated (not in the template)")
    found = []
    for policy in properties.get("Policies", []):
        found.extend(policy_statements(policy["PolicyDocument"]))
    role_ref = stack.ref(role)
    for name, other in stack.resources().items():
        if other["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            if role_ref in as_list(other["Properties"].get("Roles")):
                found.extend(policy_statements(other["Properties"]["PolicyDocument"]))
    return found


# ==========================================================================================
# Log records -> requests
# ==========================================================================================


def table_logical_id(name: str | None) -> str | None:
    """The tests name cache tables `cache` (or `...cache...`) and jobs tables `jobs`."""
    if not name:
        return None
    lowered = name.lower()
    if "jobs" in lowered:
        return "JobsTable"
    if "cache" in lowered:
        return "CacheTable"
    return None


def stream_logical_id(name: str) -> str | None:
    """The tests name findings streams `findings...` (the stack's is `<stack>-FindingsStream-...`)."""
    return "FindingsStream" if "findings" in name.lower() else None


def queue_logical_id(name: str) -> str | None:
    """The tests name dead-letter queues `...dead-letters...` (`events-...` for the events queue);
    the stack's are `<stack>-DeadLetterQueue-...` and `<stack>-EventsDeadLetterQueue-...`."""
    lowered = name.lower().replace("-", "")
    if "deadletter" not in lowered:
        return None
    return "EventsDeadLetterQueue" if "events" in lowered else "DeadLetterQueue"


# Operations that name the stack's enricher function when the log records none (the proxy sees a
# restJson1 path it does not decode): checked against that function.
LAMBDA_FUNCTION_ANY = {"GetFunctionConfiguration": "EnricherFunction"}
# Likewise for Pipes (restJson1, GET /v1/pipes/{Name}): checked against the stack's pipe.
PIPE_ANY = {"DescribePipe": "EnricherPipe"}


class UnmappedCall(Exception):
    """A record the checker cannot turn into an IAM request (it fails the check)."""


def organizations_arn(resource_id: str) -> str:
    base = f"arn:aws:organizations::{MANAGEMENT_ACCOUNT}"
    if re.fullmatch(r"\d{12}", resource_id):
        return f"{base}:account/{ORGANIZATION_ID}/{resource_id}"
    if resource_id.startswith("ou-"):
        return f"{base}:ou/{ORGANIZATION_ID}/{resource_id}"
    if resource_id.startswith("r-"):
        return f"{base}:root/{ORGANIZATION_ID}/{resource_id}"
    raise UnmappedCall(f"organizations resource id {resource_id!r} is not an account, OU or root id")


# When the proxy records no resource for an Organizations operation that has resource types, the
# request is checked against a representative resource of every type the operation may name.
ORGANIZATIONS_ANY = {
    "DescribeAccount": ["123456789012"],
    "ListTagsForResource": ["123456789012"],
    "ListParents": ["123456789012", "ou-ab12-cd34ef56"],
    "DescribeOrganizationalUnit": ["ou-ab12-cd34ef56"],
    "ListAccountsForParent": ["r-ab12", "ou-ab12-cd34ef56"],
    "ListOrganizationalUnitsForParent": ["r-ab12", "ou-ab12-cd34ef56"],
}
ORGANIZATIONS_NO_RESOURCE = {"ListRoots", "DescribeOrganization", "ListAccounts"}


def request_for(
    record: dict, stack: Stack, *, principal_account: str, management_account: str = MANAGEMENT_ACCOUNT
) -> list[Request]:
    """The IAM requests one logged call needs (one per table for Batch* DynamoDB operations)."""
    service = record["service"]
    operation = record["operation"]
    prefix = SERVICE_PREFIX.get(service, service)
    action = f"{prefix}:{operation}"
    account = record.get("account") or stack.account
    region = record.get("region") or stack.region
    resource = record.get("resource")
    context: dict[str, list] = {}

    if service == "dynamodb":
        names = list(record.get("tables") or []) or ([record["table"]] if record.get("table") else [])
        if operation in ("ListStreams", "ListTables", "DescribeLimits", "DescribeEndpoints"):
            return [Request(action, ["*"], context)]
        if not names:
            raise UnmappedCall(f"dynamodb {operation} names no table")
        requests = []
        if record.get("leading_keys"):
            context["dynamodb:leadingkeys"] = [str(k) for k in record["leading_keys"]]
        for name in names:
            logical = table_logical_id(name)
            if logical is None:
                raise UnmappedCall(f"table {name!r} is neither the cache nor the jobs table")
            if not stack.exists(logical):
                raise UnmappedCall(f"table {name!r} ({logical}) does not exist in this deployment")
            requests.append(Request(action, [stack.arn(logical)], dict(context)))
        return requests
    if service == "organizations":
        if operation in ORGANIZATIONS_NO_RESOURCE:
            return [Request(action, ["*"])]
        ids = [resource] if resource else ORGANIZATIONS_ANY.get(operation)
        if not ids:
            raise UnmappedCall(f"organizations {operation}: no resource recorded and no known resource type")
        return [Request(action, [organizations_arn(i) for i in ids])]
    if service == "account":
        if operation != "GetAlternateContact" and not operation.startswith(("Get", "List")):
            raise UnmappedCall(f"account {operation} is not a read the enricher makes")
        if resource:
            arn = f"arn:aws:account::{management_account}:account/{ORGANIZATION_ID}/{resource}"
        else:  # no AccountId: the caller's own account
            arn = f"arn:aws:account::{principal_account}:account"
        return [Request(action, [arn])]
    if service == "sts":
        if operation == "AssumeRole":
            if not resource:
                raise UnmappedCall("sts AssumeRole without RoleArn")
            return [Request(action, [resource])]
        if operation == "GetCallerIdentity":
            return []  # needs no permission
        return [Request(action, ["*"])]
    if service == "securityhub":
        if operation.startswith("BatchUpdateFindings"):
            v2 = operation == "BatchUpdateFindingsV2"
            key = "securityhub:ocsfsyntaxpath/" if v2 else "securityhub:asffsyntaxpath/"
            for name in record.get("fields") or []:
                context[(key + name).lower()] = [UnknownValue(name)]
            hub = f"arn:aws:securityhub:{region}:{account}:" + ("hubv2/unknown" if v2 else "hub/default")
            return [Request("securityhub:BatchUpdateFindings", [hub], context)]
        if operation == "GetFindingsV2":
            # GetFindings and GetFindingsV2 both use securityhub:GetFindings (API reference); the
            # new hub's resource is assumed hubv2/*, as for BatchUpdateFindingsV2.
            return [Request("securityhub:GetFindings", [f"arn:aws:securityhub:{region}:{account}:hubv2/unknown"])]
        if operation == "ListFindingAggregators":
            return [Request(action, ["*"])]
        if operation == "GetFindingAggregator":
            return [Request(action, [f"arn:aws:securityhub:{region}:{account}:finding-aggregator/unknown"])]
        return [Request(action, [f"arn:aws:securityhub:{region}:{account}:hub/default"])]
    if service == "detective":
        if operation == "ListGraphs":
            return [Request(action, ["*"])]
        if not resource:
            raise UnmappedCall(f"detective {operation} without GraphArn")
        return [Request(action, [resource])]
    if service == "kinesis":
        if operation in ("ListStreams",):
            return [Request(action, ["*"])]
        if not resource:
            raise UnmappedCall(f"kinesis {operation} names no stream")
        name = resource.rsplit("/", 1)[-1]
        logical = stream_logical_id(name)
        if logical is not None:
            return [Request(action, [stack.arn(logical)])]
        arn = resource if resource.startswith("arn:") else f"arn:aws:kinesis:{region}:{account}:stream/{resource}"
        return [Request(action, [arn])]
    if service == "sqs":
        if not resource:
            raise UnmappedCall(f"sqs {operation} names no queue")
        name = resource.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        logical = queue_logical_id(name)
        if logical is None:
            raise UnmappedCall(f"queue {name!r} is none of the stack's dead-letter queues")
        return [Request(action, [stack.arn(logical)])]
    if service == "cloudformation":
        if not resource:
            raise UnmappedCall(f"cloudformation {operation} names no stack")
        name = resource.split(":stack/", 1)[-1].split("/", 1)[0]
        arn = f"arn:aws:cloudformation:{region}:{account}:stack/{name}/00000000-0000-0000-0000-000000000000"
        return [Request(action, [arn])]
    if service == "lambda" and operation in LAMBDA_FUNCTION_ANY:
        if resource:
            return [Request(action, [resource if resource.startswith("arn:") else f"arn:aws:lambda:{region}:{account}:function:{resource}"])]
        return [Request(action, [stack.arn(LAMBDA_FUNCTION_ANY[operation])])]
    if service == "events":
        # Service Authorization Reference: ListRules has no resource type; DescribeRule is
        # authorized on the rule (default bus: rule/NAME).
        if operation == "ListRules":
            return [Request(action, ["*"])]
        if operation == "DescribeRule":
            if not resource:
                raise UnmappedCall("events DescribeRule without Name")
            return [Request(action, [f"arn:aws:events:{region}:{account}:rule/{resource}"])]
        bus = resource or "default"
        arn = bus if bus.startswith("arn:") else f"arn:aws:events:{region}:{account}:event-bus/{bus}"
        return [Request(action, [arn])]
    if service == "pipes" and operation in PIPE_ANY:
        if resource:
            return [Request(action, [resource if resource.startswith("arn:") else f"arn:aws:pipes:{region}:{account}:pipe/{resource}"])]
        return [Request(action, [stack.arn(PIPE_ANY[operation])])]
    if service == "iam" and operation == "SimulatePrincipalPolicy":
        # The doctor simulates the stack's roles: checked against the role of that logical id
        # (CloudFormation names a role <stack>-<logical id>-<suffix>).
        if not resource:
            raise UnmappedCall("iam SimulatePrincipalPolicy without PolicySourceArn")
        name = resource.rsplit("/", 1)[-1]
        for logical, definition in stack.resources().items():
            if definition["Type"] == "AWS::IAM::Role" and (name == logical or f"-{logical}-" in name):
                return [Request(action, [stack.arn(logical)])]
        raise UnmappedCall(f"role {name!r} is none of the stack's roles")
    if service == "monitoring":
        return [Request(action, ["*"])]
    raise UnmappedCall(f"service {service!r} is not mapped to IAM by the checker")


# ==========================================================================================
# The list of each function's calls (pipes/role-calls.json)
# ==========================================================================================


def load_role_calls(path: Path = ROLE_CALLS) -> dict[str, dict]:
    """Function -> {"role": logical id, "calls": [{"actions", "resources", "context"?, "when"?}]}."""
    return json.loads(path.read_text())["functions"]


def listed_actions(role_calls: dict[str, dict]) -> dict[str, set[str]]:
    """Function -> every action its entries name (lower-cased: IAM actions ignore case)."""
    return {
        function: {a.lower() for call in entry["calls"] for a in call["actions"]}
        for function, entry in role_calls.items()
    }


def call_applies(call: dict, parameters: dict[str, str]) -> bool:
    """`when`: each named parameter "set" (not empty), "empty", or equal to the value given."""
    for name, want in (call.get("when") or {}).items():
        value = str(parameters.get(name, "") or "")
        if want == "set":
            if not value:
                return False
        elif want == "empty":
            if value:
                return False
        elif value != want:
            return False
    return True


def call_requests(call: dict, stack: Stack) -> list[Request]:
    """One entry of the list as the IAM requests it stands for in `stack` (Fn::Sub resolved)."""
    context = {k.lower(): [stack.sub(v, {})] for k, v in (call.get("context") or {}).items()}
    resources = [stack.sub(r, {}) for r in call["resources"]]
    return [Request(action, [resource], dict(context)) for action in call["actions"] for resource in resources]


# ==========================================================================================
# Variants and roles
# ==========================================================================================


@dataclass(frozen=True)
class Variant:
    kms: bool
    contact_role: bool
    investigations: bool
    graph_given: bool
    external_id: bool

    def describe(self) -> str:
        return ", ".join(
            [
                "KmsKeyArn set" if self.kms else "KmsKeyArn empty",
                "ContactRoleArn set" if self.contact_role else "ContactRoleArn empty",
                "investigations on" if self.investigations else "investigations off",
                "DetectiveGraphArn set" if self.graph_given else "DetectiveGraphArn empty",
                "external id" if self.external_id else "no external id",
            ]
        )


ALL_VARIANTS = [Variant(*flags) for flags in itertools.product([False, True], repeat=5)]


def function_roles(template: dict) -> dict[str, str]:
    """Binary name (CodeUri's last directory) -> role logical id, read off the template."""
    found = {}
    for function in template["Resources"].values():
        if function.get("Type") != "AWS::Serverless::Function":
            continue
        properties = function["Properties"]
        binary = Path(str(properties["CodeUri"])).name
        role = properties.get("Role")
        if not (isinstance(role, dict) and "Fn::GetAtt" in role):
            raise UnmappedCall(f"function {binary}: Role is not !GetAtt <Role>.Arn")
        target = role["Fn::GetAtt"]
        found[binary] = target[0] if isinstance(target, list) else target.split(".")[0]
    return found


def enricher_role_arn(stack: Stack) -> str:
    return stack.arn("EnricherRole")


@dataclass
class Violation:
    function: str
    operation: str
    request: str
    variant: str
    reason: str
    count: int = 1
    variants: int = 1

    def __str__(self) -> str:
        also = f" (and {self.variants - 1} other deployment variants)" if self.variants > 1 else ""
        return (
            f"{self.function}: {self.operation} needs {self.request}, which is not granted "
            f"({self.reason}), e.g. when {self.variant}{also}"
            + (f" [{self.count} calls]" if self.count > 1 else "")
        )


class Checker:
    def __init__(self, main: dict, management: dict, management_parameters: dict | None = None):
        self.main = main
        self.management = management
        # By default the management stack trusts the enricher role of the Region each call came
        # from (EnricherRoleArns lists every Region's); tests pass a fixed list instead.
        self.management_parameters = management_parameters or {}
        self.roles = function_roles(main)
        self.listed = listed_actions(load_role_calls())
        self._stacks: dict[tuple, Stack] = {}

    def stack(
        self, variant: Variant, account: str, region: str, contact_role: str | None, graph: str | None,
        bus: str | None = None,
    ) -> Stack:
        key = (variant, account, region, contact_role, graph, bus)
        if key not in self._stacks:
            parameters = {
                "ManagementAccountId": MANAGEMENT_ACCOUNT,
                "OrganizationId": ORGANIZATION_ID,
                "KmsKeyArn": KMS_KEY if variant.kms else "",
                "ContactRoleArn": (contact_role or DEFAULT_CONTACT_ROLE) if variant.contact_role else "",
                "ContactRoleExternalId": EXTERNAL_ID if variant.external_id else "",
                "EnableInvestigations": "true" if variant.investigations else "false",
                "DetectiveGraphArn": (graph or DEFAULT_GRAPH) if variant.graph_given else "",
                "AccountEventsFromManagement": "true",
                # The enriched-events bus the call named (a call to it exists only when it is set).
                "EnrichedEventsBusName": bus or "",
            }
            parameters = {k: v for k, v in parameters.items() if k in self.main.get("Parameters", {})}
            self._stacks[key] = Stack(self.main, parameters, account=account, region=region)
        return self._stacks[key]

    def management_stack(self, variant: Variant, enricher_role: str, account: str, role_name: str | None) -> Stack:
        """management-account.yaml as deployed in `account`, its contact role named `role_name`."""
        key = ("management", variant, enricher_role, account, role_name)
        if key not in self._stacks:
            parameters = {
                "EnricherRoleArns": [enricher_role],
                "ExternalId": EXTERNAL_ID if variant.external_id else "",
                **({"RoleName": role_name} if role_name else {}),
                **self.management_parameters,
            }
            parameters = {k: v for k, v in parameters.items() if k in self.management.get("Parameters", {})}
            self._stacks[key] = Stack(self.management, parameters, account=account, region="us-east-1")
        return self._stacks[key]

    # A call happens only in some deployments: these say which.
    @staticmethod
    def applicable(record: dict, variant: Variant) -> bool:
        function, service, operation = record["function"], record["service"], record["operation"]
        if function == "investigator" and not variant.investigations:
            return False
        # The refresher does the enricher's work, as its role; enricher-admin (doctor) reads the
        # jobs table only when the deployment has one.
        if function in ("enricher", "refresher", "enricher-admin"):
            tables = list(record.get("tables") or []) + ([record["table"]] if record.get("table") else [])
            if any(table_logical_id(t) == "JobsTable" for t in tables) and not variant.investigations:
                return False
        if function in ("enricher", "refresher", "enricher-admin"):  # the enricher's account lookups
            if service == "sts" and operation == "AssumeRole" and not variant.contact_role:
                return False
            if service == "account" and not record.get("resource") and not variant.contact_role:
                return False  # without the contact role every request names its AccountId
        if service == "detective" and operation == "ListGraphs" and variant.graph_given:
            return False
        return True

    def check_record(self, record: dict, variant: Variant) -> list[tuple[str, str]]:
        """[(request description, reason)] of what is not granted; [] when the call is allowed."""
        function = record["function"]
        account = record.get("account") or DEFAULT_ACCOUNT
        region = record.get("region") or DEFAULT_REGION
        contact = record["resource"] if record["service"] == "sts" and record["operation"] == "AssumeRole" else None
        graph = record.get("resource") if record["service"] == "detective" else None
        bus = record.get("resource") if record["service"] == "events" and record["operation"] == "PutEvents" else None
        if bus and bus.startswith("arn:"):
            bus = bus.rsplit("/", 1)[-1]
        stack = self.stack(variant, account, region, contact, graph, bus)

        if function in OPERATOR_FUNCTIONS:
            policy = OPERATOR_FUNCTIONS[function]
            resource = stack.resources().get(policy)
            if resource is None:
                return [("-", f"the template has no {policy} for {function}")]
            statements = policy_statements(resource["Properties"]["PolicyDocument"])
            principal_account = account
        else:
            role = self.roles.get(function) or SERVICE_ROLES.get(function)
            if role is None:
                return [("-", f"pipes/template.yaml has no function {function!r} (CodeUri ../target/lambda/{function}/)")]
            if not stack.exists(role):
                return [("-", f"{role} does not exist in this deployment")]
            statements = role_statements(stack, role)
            principal_account = account

        failures: list[tuple[str, str]] = []
        caller = stack.arn(self.roles.get("enricher", "EnricherRole"))
        management_account = MANAGEMENT_ACCOUNT
        if record["service"] == "account" and variant.contact_role and function in ("enricher", "enricher-admin", "refresher"):
            # Made with the contact role's credentials (after AssumeRole): its policy decides, in
            # the account those credentials belong to (the management account).
            management_account = record.get("account") or MANAGEMENT_ACCOUNT
            management = self.management_stack(variant, caller, management_account, None)
            statements = role_statements(management, "ContactRole")
            principal_account = management_account
        try:
            requests = request_for(
                record, stack, principal_account=principal_account, management_account=management_account
            )
        except UnmappedCall as error:
            return [(f"{record['service']}:{record['operation']}", str(error))]
        for request in requests:
            try:
                decision = evaluate(statements, request)
            except ConditionError as error:
                failures.append((request.describe(), str(error)))
                continue
            if not decision.allowed:
                failures.append((request.describe(), decision.reason))
            elif function not in OPERATOR_FUNCTIONS and request.action.lower() not in self.listed.get(function, ()):
                # Granted, but the doctor would never check the deployed role for it.
                failures.append((
                    request.describe(),
                    f"{request.action} is not listed for {function} in pipes/role-calls.json, so the doctor "
                    "does not check that the deployed role allows it: add it there",
                ))
            if record["service"] == "sts" and record["operation"] == "AssumeRole" and decision.allowed and function in ("enricher", "refresher"):
                failures.extend(self._trust(record, variant, caller, stack))
        return failures

    def _trust(self, record: dict, variant: Variant, caller: str, stack: Stack) -> list[tuple[str, str]]:
        """The other half of a cross-account AssumeRole: the contact role's trust policy."""
        m = re.fullmatch(r"arn:[^:]+:iam::(\d{12}):role/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)", record["resource"] or "")
        if not m:
            return [(f"sts:AssumeRole on {record['resource']}", "not an IAM role ARN")]
        management = self.management_stack(variant, caller, m.group(1), m.group(2))
        role = management.resources()["ContactRole"]
        expected = management.arn("ContactRole")
        if record["resource"] != expected:
            return [(f"sts:AssumeRole on {record['resource']}", f"that is not the contact role of management-account.yaml ({expected})")]
        trust = policy_statements(role["Properties"]["AssumeRolePolicyDocument"])
        context = {"aws:principalarn": [caller]}
        if variant.external_id:
            context["sts:externalid"] = [EXTERNAL_ID]
        request = Request("sts:AssumeRole", ["*"], context, principal={"AWS": caller})
        decision = evaluate(trust, request)
        if decision.allowed:
            return []
        return [(f"trust of {expected} for {caller}", decision.reason)]


@dataclass
class Report:
    checked: int = 0
    skipped_setup: int = 0
    by_function: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.malformed

    def render(self) -> str:
        lines = []
        counts = ", ".join(f"{f} {n}" for f, n in sorted(self.by_function.items())) or "none"
        lines.append(f"observed calls checked: {self.checked} ({counts}); set-up calls not checked: {self.skipped_setup}")
        for problem in self.malformed:
            lines.append(f"MALFORMED: {problem}")
        for violation in self.violations:
            lines.append(f"MISSING GRANT: {violation}")
        lines.append("all observed calls are granted" if self.ok else f"{len(self.violations)} missing grants")
        return "\n".join(lines)


REQUIRED_FIELDS = ("function", "service", "operation")


def read_log(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, None, f"line {number}: not JSON ({error})"
            continue
        if not isinstance(record, dict) or any(k not in record for k in REQUIRED_FIELDS):
            yield number, None, f"line {number}: missing one of {REQUIRED_FIELDS}"
            continue
        yield number, record, ""


def _signature(record: dict) -> str:
    keep = {k: record.get(k) for k in ("function", "service", "operation", "account", "region", "table", "tables", "leading_keys", "fields", "resource")}
    return json.dumps(keep, sort_keys=True)


def check_calls(
    records: Iterable[dict],
    main: dict,
    management: dict,
    variants: list[Variant] | None = None,
    management_parameters: dict | None = None,
) -> Report:
    checker = Checker(main, management, management_parameters)
    report = Report()
    seen: dict[str, list[tuple[str, str, str]]] = {}
    grouped: dict[tuple, Violation] = {}
    for record in records:
        function = record.get("function")
        if function is None:
            report.skipped_setup += 1
            continue
        report.checked += 1
        report.by_function[function] = report.by_function.get(function, 0) + 1
        signature = _signature(record)
        if signature not in seen:
            found: dict[tuple[str, str], list[str]] = {}
            for variant in variants or ALL_VARIANTS:
                if not checker.applicable(record, variant):
                    continue
                for request, reason in checker.check_record(record, variant):
                    found.setdefault((request, reason), []).append(variant.describe())
            seen[signature] = [(request, reason, names) for (request, reason), names in found.items()]
        for request, reason, names in seen[signature]:
            key = (function, record["operation"], request, reason)
            if key in grouped:
                grouped[key].count += 1
            else:
                grouped[key] = Violation(
                    function, f"{record['service']}:{record['operation']}", request, names[0], reason, variants=len(names)
                )
    # One line per missing grant (the first variant that needs it), with how many calls hit it.
    report.violations = list(grouped.values())
    return report


def load_templates() -> tuple[dict, dict]:
    from cfnlint.decode import decode

    loaded = []
    for path in (MAIN, MANAGEMENT):
        template, matches = decode(str(path))
        if matches or template is None:
            raise SystemExit(f"{path} does not parse: {[str(m) for m in matches]}")
        loaded.append(template)
    return loaded[0], loaded[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path, help="the JSON-lines call log (LOCAL_AWS_CALL_LOG)")
    parser.add_argument(
        "--require-calls",
        action="store_true",
        help="fail when the log is missing or holds no call made by a function (so the check cannot pass vacuously)",
    )
    args = parser.parse_args(argv)
    if not args.log.exists():
        print(f"iam_check: {args.log} does not exist: the local-stack tests recorded no calls "
              "(is LOCAL_AWS_CALL_LOG passed to scripts/local-aws?)", file=sys.stderr)
        return 1 if args.require_calls else 0
    records, malformed = [], []
    for _, record, problem in read_log(args.log):
        if record is None:
            malformed.append(problem)
        else:
            records.append(record)
    main_template, management = load_templates()
    report = check_calls(records, main_template, management)
    report.malformed.extend(malformed)
    print(report.render())
    attributed = sum(n for f, n in report.by_function.items())
    if args.require_calls and attributed == 0:
        print(f"iam_check: {args.log} holds no call attributed to a function (SDK app name app/<function>): "
              "nothing was checked", file=sys.stderr)
        return 1
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
