"""pipes/delegation_policy.py: the check run before deploying management-account.yaml.

Fed saved describe-resource-policy outputs (the shape of the Organizations API reference:
ResourcePolicy.ResourcePolicySummary {Id, Arn}, ResourcePolicy.Content as a JSON string).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import unittest
from pathlib import Path

from pipes import delegation_policy as dp

ACCOUNT = "111122223333"


def described(*statements: dict) -> dict:
    return {
        "ResourcePolicy": {
            "ResourcePolicySummary": {"Id": "rp-abcd1234", "Arn": "arn:aws:organizations::999999999999:resourcepolicy/o-abcdefghij/rp-abcd1234"},
            "Content": json.dumps({"Version": "2012-10-17", "Statement": list(statements)}),
        }
    }


OTHER = {
    "Sid": "SomeoneElse",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
    "Action": ["organizations:DescribeOrganization", "organizations:ListAccounts"],
    "Resource": "*",
}


def run(policy: dict | None, *extra: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = "none"
        if policy is not None:
            path = str(Path(tmp) / "described.json")
            Path(path).write_text(json.dumps(policy))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = dp.main(["--enricher-account", ACCOUNT, "--policy-file", path, *[e.replace("TMP", tmp) for e in extra]])
        written = Path(tmp) / "merged.json"
        text = out.getvalue() + (("\nWRITTEN " + written.read_text()) if written.exists() else "")
        return code, text


class DelegationPolicyCheckTest(unittest.TestCase):
    def test_no_policy_means_the_stack_may_create_it(self):
        code, text = run(None)
        self.assertEqual(code, 0)
        self.assertIn("NONE", text)
        self.assertIn("CreateOrganizationsDelegationPolicy=true", text)

    def test_a_policy_that_grants_everything_needs_nothing(self):
        for ours in (dp.statement(ACCOUNT), {**dp.statement(ACCOUNT), "Sid": "Renamed", "Principal": {"AWS": ACCOUNT}},
                     {"Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{ACCOUNT}:root"]}, "Action": ["organizations:Describe*", "organizations:List*"], "Resource": "*"}):
            code, text = run(described(OTHER, ours))
            self.assertEqual(code, 0, text)
            self.assertIn("PRESENT", text)
            self.assertIn("CreateOrganizationsDelegationPolicy=false", text)

    def test_another_policy_is_merged_never_replaced(self):
        partial = {**dp.statement(ACCOUNT), "Action": ["organizations:DescribeAccount"]}
        conditioned = {**dp.statement(ACCOUNT), "Sid": "Narrow", "Condition": {"StringEquals": {"aws:PrincipalTag/team": "x"}}}
        denied = {"Effect": "Deny", "Principal": {"AWS": ACCOUNT}, "Action": "organizations:ListRoots", "Resource": "*"}
        for existing, missing in [((OTHER,), dp.ACTIONS), ((OTHER, partial), dp.ACTIONS[1:]), ((conditioned,), dp.ACTIONS),
                                  ((dp.statement(ACCOUNT), denied), ["organizations:ListRoots"])]:
            code, text = run(described(*existing), "--write", "TMP/merged.json")
            self.assertEqual(code, 3, text)
            self.assertIn("MERGE", text)
            self.assertIn(", ".join(missing), text)
            self.assertIn("CreateOrganizationsDelegationPolicy=false", text)
            self.assertIn("put-resource-policy", text)
            merged = json.loads(text.split("WRITTEN ", 1)[1])
            kept = [s for s in existing if s.get("Sid") != dp.SID]
            self.assertEqual(merged["Statement"], kept + [dp.statement(ACCOUNT)], "every other statement kept, ours once")

    def test_the_merge_of_a_merge_is_present(self):
        merged = dp.merged(json.loads(described(OTHER)["ResourcePolicy"]["Content"]), ACCOUNT)
        wrapped = {"ResourcePolicy": {"Content": json.dumps(merged)}}
        self.assertEqual(dp.classify(wrapped, ACCOUNT), (dp.PRESENT, []))

    def test_another_accounts_grant_does_not_count(self):
        other = {**dp.statement("444455556666")}
        self.assertEqual(dp.classify(described(other), ACCOUNT)[0], dp.MERGE)

    def test_bad_account_is_refused(self):
        with self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
            dp.main(["--enricher-account", "1234", "--policy-file", "none"])


if __name__ == "__main__":
    unittest.main()
