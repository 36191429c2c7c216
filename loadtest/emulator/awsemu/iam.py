"""Owns IAM's SimulatePrincipalPolicy, which moto (5.2.5) does not implement: the awsQuery request, the
evaluation of the role's identity policies, and the XML response (IAM API reference).

The role named by ``PolicySourceArn`` is read from moto's IAM (the emulator's ``--iam-policies-from
URL``), as the caller's account: its inline policies (ListRolePolicies, GetRolePolicy) and the
default version of each attached managed policy (ListAttachedRolePolicies, GetPolicy,
GetPolicyVersion); the role must be the one ``PolicySourceArn`` names (GetRole's ARN), else
NoSuchEntity. ``PolicyInputList`` documents are
evaluated beside them, as IAM does.

Evaluation, per action and resource (IAM User Guide, "Policy evaluation logic", identity policies
of one account): a matching Deny gives ``explicitDeny``, else a matching Allow ``allowed``, else
``implicitDeny``. A statement matches through Action/NotAction (case-insensitive, ``*`` and ``?``
wildcards), Resource/NotResource (ARN wildcards) and its Condition against ``ContextEntries``;
the operators are String*, Arn*, Bool and Null, with ``ForAllValues:``/``ForAnyValue:`` and
``...IfExists``. A condition key the request does not give makes a positive operator false and a
negated one true, and is listed in ``MissingContextValues``. One EvaluationResult per action and
resource (``*`` when ``ResourceArns`` is empty).

Not modelled: permissions boundaries, SCPs, resource policies (``ResourcePolicy``), session
policies, users and groups as policy sources (InvalidInput), Numeric/Date/IpAddress operators
(InvalidInput naming the operator), and the statements' positions in ``MatchedStatements``.
"""

from __future__ import annotations

import fnmatch
import json
import re
import uuid
from typing import Any, Callable, Iterable
from xml.etree import ElementTree as ET

NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/(?:[\w+=,.@/-]*/)?([\w+=,.@-]{1,64})$")
DECISIONS = ("allowed", "explicitDeny", "implicitDeny")

# (account, role name) -> (the role's ARN, [(policy id, document)] of its identity policies), or None
# when the account has no such role.
PolicySource = Callable[[str, str], "tuple[str, list[tuple[str, dict]]] | None"]


class IamError(Exception):
    """An IAM error response: HTTP status, code (NoSuchEntity, InvalidInput) and message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def invalid_input(message: str) -> IamError:
    return IamError(400, "InvalidInput", message)


def moto_policy_source(moto_url: str) -> PolicySource:
    """Reads a role's identity policies from moto's IAM, as the role's account."""
    import boto3  # moto's dependency: present wherever the local stack runs
    from botocore.exceptions import ClientError

    def read(account: str, role_name: str) -> tuple[str, list[tuple[str, dict]]] | None:
        iam = boto3.client("iam", endpoint_url=moto_url, region_name="us-east-1",
                           aws_access_key_id=account, aws_secret_access_key="emulator")
        # moto attributes an unknown access key to its default account; this header names the
        # account instead (moto's multi-account support).
        iam.meta.events.register("before-sign.iam.*", lambda request, **_: request.headers.__setitem__(
            "x-moto-account-id", account))
        try:
            arn = iam.get_role(RoleName=role_name)["Role"]["Arn"]
        except ClientError as e:
            if e.response["Error"]["Code"] == "NoSuchEntity":
                return None
            raise
        found: list[tuple[str, dict]] = []
        for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
            found.append((name, _document(iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"])))
        for attached in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
            policy = attached["PolicyArn"]
            version = iam.get_policy(PolicyArn=policy)["Policy"]["DefaultVersionId"]
            document = iam.get_policy_version(PolicyArn=policy, VersionId=version)["PolicyVersion"]["Document"]
            found.append((attached["PolicyName"], _document(document)))
        return arn, found

    return read


def _document(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    from urllib.parse import unquote
    text = str(value)
    text = unquote(text) if text.startswith("%7B") else text
    if text.startswith("{'"):
        # moto's CloudFormation stores a role's inline policy as a Python dict and GetRolePolicy
        # returns its repr: read it as the literal it is.
        import ast
        return ast.literal_eval(text)
    return json.loads(text)


def as_list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, *, case: bool) -> bool:
    # IAM's wildcards are * and ? only: escape fnmatch's [ ] classes.
    pattern = pattern.replace("[", "[[]")
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


def arn_matches(pattern: str, arn: str) -> bool:
    if pattern == "*":
        return True
    p, a = pattern.split(":", 5), arn.split(":", 5)
    if len(p) != 6 or len(a) != 6:
        return _glob(pattern, arn, case=True)
    return all(_glob(x, y, case=True) for x, y in zip(p, a))


STRING_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    # operator -> (match(policy value, request value), negated)
    "StringEquals": (lambda p, v: p == v, False),
    "StringNotEquals": (lambda p, v: p == v, True),
    "StringEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), False),
    "StringNotEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), True),
    "StringLike": (lambda p, v: _glob(p, v, case=True), False),
    "StringNotLike": (lambda p, v: _glob(p, v, case=True), True),
    "ArnEquals": (arn_matches, False),
    "ArnLike": (arn_matches, False),
    "ArnNotEquals": (arn_matches, True),
    "ArnNotLike": (arn_matches, True),
    "Bool": (lambda p, v: str(p).lower() == str(v).lower(), False),
}


def _condition(operator: str, key: str, expected: list, context: dict[str, list[str]], missing: set[str]) -> bool:
    qualifier, _, op = operator.rpartition(":")
    if_exists = op.endswith("IfExists")
    op = op[: -len("IfExists")] if if_exists else op
    values = context.get(key.lower())
    if op == "Null":
        absent = not values
        return any(str(e).lower() == str(absent).lower() for e in expected)
    if op not in STRING_OPERATORS:
        raise invalid_input(f"condition operator {operator} is not supported by this emulator")
    match, negated = STRING_OPERATORS[op]
    if not values:
        if qualifier == "ForAllValues":
            return True
        if qualifier == "ForAnyValue":
            return False
        missing.add(key)
        return True if if_exists else negated
    hits = [any(match(str(e), v) for e in expected) for v in values]
    if qualifier == "ForAllValues":
        found = all(hits)
    else:  # ForAnyValue, and a plain operator (single-valued keys)
        found = any(hits)
    return not found if negated else found


def conditions_hold(condition: dict | None, context: dict[str, list[str]], missing: set[str]) -> bool:
    # Every operator block and every key must hold (AND); values of one key are ORed.
    results = [_condition(op, key, as_list(expected), context, missing)
               for op, pairs in (condition or {}).items() for key, expected in pairs.items()]
    return all(results)


def statement_matches(statement: dict, action: str, resource: str, context: dict[str, list[str]],
                      missing: set[str]) -> bool:
    if "Action" in statement:
        if not any(_glob(a, action, case=False) for a in as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(_glob(a, action, case=False) for a in as_list(statement["NotAction"])):
            return False
    else:
        return False
    if "Resource" in statement:
        if not any(arn_matches(r, resource) for r in as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(arn_matches(r, resource) for r in as_list(statement["NotResource"])):
            return False
    else:
        return False
    return conditions_hold(statement.get("Condition"), context, missing)


def evaluate(policies: Iterable[tuple[str, dict]], action: str, resource: str,
             context: dict[str, list[str]]) -> tuple[str, list[str], list[str]]:
    """(EvalDecision, ids of the matched statements' policies, missing context keys)."""
    missing: set[str] = set()
    allows, denies = [], []
    for policy_id, document in policies:
        for statement in as_list(document.get("Statement")):
            if statement_matches(statement, action, resource, context, missing):
                (denies if statement.get("Effect") == "Deny" else allows).append(policy_id)
    if denies:
        return "explicitDeny", denies, sorted(missing)
    if allows:
        return "allowed", allows, sorted(missing)
    return "implicitDeny", [], sorted(missing)


def _members(form: dict[str, str], name: str) -> list[str]:
    out, i = [], 1
    while f"{name}.member.{i}" in form:
        out.append(form[f"{name}.member.{i}"])
        i += 1
    return out


def _context(form: dict[str, str]) -> dict[str, list[str]]:
    context: dict[str, list[str]] = {}
    i = 1
    while f"ContextEntries.member.{i}.ContextKeyName" in form:
        prefix = f"ContextEntries.member.{i}"
        context[form[f"{prefix}.ContextKeyName"].lower()] = _members(form, f"{prefix}.ContextKeyValues")
        i += 1
    return context


class IamSimulator:
    """SimulatePrincipalPolicy over awsQuery; other IAM actions are moto's (InvalidAction here)."""

    def __init__(self, policies: PolicySource):
        self.policies = policies

    def handle(self, form: dict[str, str], account: str) -> tuple[int, bytes]:
        try:
            action = form.get("Action")
            if action != "SimulatePrincipalPolicy":
                raise IamError(400, "InvalidAction", f"The action {action} is not valid for this emulator endpoint.")
            return 200, self.simulate(form, account)
        except IamError as e:
            return e.status, _error_xml(e)

    def simulate(self, form: dict[str, str], account: str) -> bytes:
        source = form.get("PolicySourceArn")
        if not source or not 20 <= len(source) <= 2048:
            raise invalid_input("PolicySourceArn is required, 20 to 2048 characters")
        actions = _members(form, "ActionNames")
        if not actions:
            raise invalid_input("ActionNames is required")
        m = ROLE_ARN.match(source)
        if m is None:
            raise invalid_input(f"PolicySourceArn {source} is not a role ARN (the emulator simulates roles only)")
        role_name = m.group(2)
        # The caller's account's role of that name, if it is the one named: the same path and
        # name, in the caller's account or the account moto writes (moto's IAM ARNs carry its
        # default account whatever the access key, while a caller names its own).
        found = self.policies(account, role_name)
        if found is None or not _same_role(found[0], source, account):
            raise IamError(404, "NoSuchEntity", f"The role with name {role_name} cannot be found.")
        policies = list(found[1])
        for i, text in enumerate(_members(form, "PolicyInputList"), 1):
            try:
                policies.append((f"PolicyInputList.{i}", json.loads(text)))
            except ValueError:
                raise invalid_input(f"PolicyInputList.member.{i} is not a JSON policy document") from None
        resources = _members(form, "ResourceArns") or ["*"]
        context = _context(form)
        results = [(a, r, *evaluate(policies, a, r, context)) for a in actions for r in resources]
        max_items = int(form.get("MaxItems", "100"))
        if not 1 <= max_items <= 1000:
            raise invalid_input("MaxItems must be between 1 and 1000")
        start = int(form.get("Marker", "0") or 0)
        page = results[start:start + max_items]
        truncated = start + max_items < len(results)
        return _result_xml(page, truncated, str(start + max_items) if truncated else None)


def _result_xml(results: list[tuple], truncated: bool, marker: str | None) -> bytes:
    root = ET.Element("SimulatePrincipalPolicyResponse", xmlns=NAMESPACE)
    result = ET.SubElement(root, "SimulatePrincipalPolicyResult")
    ET.SubElement(result, "IsTruncated").text = "true" if truncated else "false"
    if marker:
        ET.SubElement(result, "Marker").text = marker
    evaluations = ET.SubElement(result, "EvaluationResults")
    for action, resource, decision, matched, missing in results:
        member = ET.SubElement(evaluations, "member")
        ET.SubElement(member, "EvalActionName").text = action
        ET.SubElement(member, "EvalResourceName").text = resource
        ET.SubElement(member, "EvalDecision").text = decision
        statements = ET.SubElement(member, "MatchedStatements")
        for policy_id in matched:
            s = ET.SubElement(statements, "member")
            ET.SubElement(s, "SourcePolicyId").text = policy_id
            ET.SubElement(s, "SourcePolicyType").text = "IAM Policy"
        keys = ET.SubElement(member, "MissingContextValues")
        for key in missing:
            ET.SubElement(keys, "member").text = key
    meta = ET.SubElement(root, "ResponseMetadata")
    ET.SubElement(meta, "RequestId").text = str(uuid.uuid4())
    return ET.tostring(root, encoding="utf-8")


def _same_role(found: str, named: str, caller_account: str) -> bool:
    """GetRole's ARN against PolicySourceArn: path and name equal, account the caller's or moto's."""
    found_account, found_path = found.split(":", 5)[4], found.split(":role/", 1)[-1]
    named_account, named_path = named.split(":", 5)[4], named.split(":role/", 1)[-1]
    return found_path == named_path and named_account in (found_account, caller_account)


def _error_xml(error: IamError) -> bytes:
    root = ET.Element("ErrorResponse", xmlns=NAMESPACE)
    e = ET.SubElement(root, "Error")
    ET.SubElement(e, "Type").text = "Sender" if error.status < 500 else "Receiver"
    ET.SubElement(e, "Code").text = error.code
    ET.SubElement(e, "Message").text = error.message
    ET.SubElement(root, "RequestId").text = str(uuid.uuid4())
    return ET.tostring(root, encoding="utf-8")
