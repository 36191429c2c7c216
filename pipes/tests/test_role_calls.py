"""pipes/role-calls.json against pipes/template.yaml: every call listed for a function is
allowed by that function's role, in every deployment variant in which the entry applies, and
every function (and service role) of the template is listed with its role.

The list is the one `enricher-admin doctor` embeds to simulate the deployed roles
(iam:SimulatePrincipalPolicy); `make test-permissions` (iam_check) fails when a function makes a
call whose action the list lacks. So the list is checked both ways and written once.
"""

from __future__ import annotations

import copy
import itertools
import unittest

from pipes.tests.cfn import Stack
from pipes.tests.iam_check import (
    KMS_KEY,
    MANAGEMENT_ACCOUNT,
    ORGANIZATION_ID,
    DEFAULT_CONTACT_ROLE,
    DEFAULT_GRAPH,
    ConditionError,
    call_applies,
    call_requests,
    evaluate,
    function_roles,
    load_role_calls,
    load_templates,
    role_statements,
)

# The parameters the list's `when` names, each empty/set (or false/true).
CHOICES = {
    "KmsKeyArn": ["", KMS_KEY],
    "ContactRoleArn": ["", DEFAULT_CONTACT_ROLE],
    "EnableInvestigations": ["false", "true"],
    "DetectiveGraphArn": ["", DEFAULT_GRAPH],
    "EnrichedEventsBusName": ["", "enriched"],
    "AccountEventsFromManagement": ["false", "true"],
}


def variants():
    for values in itertools.product(*CHOICES.values()):
        parameters = dict(zip(CHOICES, values))
        parameters.update({"ManagementAccountId": MANAGEMENT_ACCOUNT, "OrganizationId": ORGANIZATION_ID})
        yield parameters


def denied(template: dict, role_calls: dict) -> list[str]:
    """Every listed call some variant's role does not allow, as one line each."""
    problems = []
    for parameters in variants():
        stack = Stack(template, parameters, account="111122223333", region="us-east-1")
        for function, entry in role_calls.items():
            role = entry["role"]
            if not stack.exists(role):
                continue
            statements = role_statements(stack, role)
            for call in entry["calls"]:
                if not call_applies(call, parameters):
                    continue
                for request in call_requests(call, stack):
                    try:
                        decision = evaluate(statements, request)
                    except ConditionError as error:
                        problems.append(f"{function} ({role}): {request.describe()}: {error}")
                        continue
                    if not decision.allowed:
                        problems.append(f"{function} ({role}): {request.describe()}: {decision.reason}")
    return sorted(set(problems))


class RoleCallsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.main, _ = load_templates()
        cls.role_calls = load_role_calls()

    def test_every_listed_call_is_allowed_by_its_role_in_every_variant(self):
        self.assertEqual(denied(self.main, self.role_calls), [])

    def test_every_function_and_service_role_is_listed_with_its_role(self):
        listed = {function: entry["role"] for function, entry in self.role_calls.items()}
        for function, role in function_roles(self.main).items():
            self.assertEqual(listed.get(function), role, f"{function} must be listed with its role {role}")
        roles = {name for name, r in self.main["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
        # The alarm reminder's role is the scheduler's, not a function's; it makes one call
        # (cloudwatch:SetAlarmState) that no function makes.
        self.assertEqual(roles - set(listed.values()), {"DeadLetterAlarmsReminderRole"})

    def test_every_role_that_can_use_the_key_is_checked_for_it(self):
        """Issue 22: the key is usable by each role. Every role granting kms: actions has them listed."""
        for function, entry in self.role_calls.items():
            actions = {a for call in entry["calls"] for a in call["actions"]}
            self.assertTrue(any(a.startswith("kms:") for a in actions), f"{function}: no key use listed")

    def test_a_role_missing_a_listed_action_fails_naming_it(self):
        broken = copy.deepcopy(self.main)
        statements = broken["Resources"]["EnricherRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        # Every statement that grants it (the refresher's state and the pending-writes store
        # both read with GetItem, under different leading keys).
        kept, removed = [], 0
        for statement in statements:
            actions = statement.get("Action") if isinstance(statement, dict) else None
            if actions == "dynamodb:GetItem":
                removed += 1
                continue
            if isinstance(actions, list) and "dynamodb:GetItem" in actions:
                removed += 1
                statement = dict(statement, Action=[a for a in actions if a != "dynamodb:GetItem"])
            kept.append(statement)
        self.assertGreaterEqual(removed, 1)
        broken["Resources"]["EnricherRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"] = kept
        problems = denied(broken, self.role_calls)
        self.assertTrue(problems)
        self.assertTrue(all("(EnricherRole): dynamodb:GetItem" in p for p in problems), problems)
        self.assertEqual({p.split(" ", 1)[0] for p in problems}, {"enricher", "refresher"})

    def test_when_names_only_parameters_of_the_template(self):
        parameters = set(self.main["Parameters"])
        for entry in self.role_calls.values():
            for call in entry["calls"]:
                for name, want in (call.get("when") or {}).items():
                    self.assertIn(name, parameters)
                    self.assertIn(name, CHOICES, "the variants must cover every parameter `when` names")


if __name__ == "__main__":
    unittest.main()
