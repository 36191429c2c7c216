"""Does the organization already have a delegation policy, and what must be merged into it?

Run from the repository root with the management account's credentials, before deploying
pipes/management-account.yaml (pipes/README.md, "Deploy", step 2):

    python3 -m pipes.delegation_policy --enricher-account 111122223333 [--profile management] [--write merged.json]

It runs the read-only `aws organizations describe-resource-policy` (AWS CLI v2) and says one of:

- NONE (exit 0): the organization has no delegation policy; deploy with
  CreateOrganizationsDelegationPolicy=true (the stack creates it, and keeps it when deleted).
- PRESENT (exit 0): the policy already lets the enricher's account make every call it needs;
  deploy with CreateOrganizationsDelegationPolicy=false, nothing to merge.
- MERGE (exit 3): a policy exists without (all of) our statement; it prints the statement to merge
  and, with --write, the merged policy and the put-resource-policy command that installs it. Deploy
  with CreateOrganizationsDelegationPolicy=false: creating ours would replace the existing policy.

Plain Python 3 standard library, so it runs wherever the AWS CLI does. `--policy-file` reads a
saved describe-resource-policy output instead of calling the CLI (the tests use it).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

SID = "SecurityHubEnricherReadAccounts"

# The read-only Organizations calls of the enricher's role and enricher-admin (src/adapters/
# organizations.rs); pipes/tests checks this list against the template's delegation policy and the
# roles' grants.
ACTIONS = [
    "organizations:DescribeAccount",
    "organizations:DescribeOrganization",
    "organizations:DescribeOrganizationalUnit",
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListOrganizationalUnitsForParent",
    "organizations:ListParents",
    "organizations:ListRoots",
    "organizations:ListTagsForResource",
]

NONE, PRESENT, MERGE = "NONE", "PRESENT", "MERGE"


def statement(account: str, partition: str = "aws") -> dict:
    """Our statement, as management-account.yaml's OrganizationsDelegationPolicy writes it."""
    return {
        "Sid": SID,
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account}:root"},
        "Action": list(ACTIONS),
        "Resource": "*",
    }


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _names_account(principal: Any, account: str) -> bool:
    if principal == "*":
        return True
    if not isinstance(principal, dict):
        return False
    for p in _as_list(principal.get("AWS", [])):
        if p in (account, "*") or re.fullmatch(rf"arn:aws[a-z-]*:iam::{account}:root", str(p)):
            return True
    return False


def _grants(action: str, actions: list[str]) -> bool:
    for pattern in actions:
        regex = "^" + re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".") + "$"
        if re.match(regex, action.lower()):
            return True
    return False


def missing_actions(policy: dict, account: str) -> list[str]:
    """Our actions that no unconditional Allow statement of `policy` grants to `account` on "*"
    (a Deny naming one counts as missing too: the merge cannot fix it, the reader must)."""
    allowed, denied = set(), set()
    for s in _as_list(policy.get("Statement", [])):
        if not _names_account(s.get("Principal"), account) or "NotAction" in s or "NotPrincipal" in s:
            continue
        actions = [str(a) for a in _as_list(s.get("Action", []))]
        covered = {a for a in ACTIONS if _grants(a, actions)}
        if s.get("Effect") == "Deny":
            denied |= covered
        elif s.get("Effect") == "Allow" and "*" in _as_list(s.get("Resource", [])) and not s.get("Condition"):
            allowed |= covered
    return [a for a in ACTIONS if a not in allowed or a in denied]


def merged(policy: dict, account: str, partition: str = "aws") -> dict:
    """The existing policy with our statement added (an older statement of ours, same Sid, replaced)."""
    result = dict(policy)
    kept = [s for s in _as_list(policy.get("Statement", [])) if not (isinstance(s, dict) and s.get("Sid") == SID)]
    result["Statement"] = kept + [statement(account, partition)]
    result.setdefault("Version", "2012-10-17")
    return result


def classify(described: dict | None, account: str) -> tuple[str, list[str]]:
    """(NONE | PRESENT | MERGE, the missing actions) from describe-resource-policy's output (None: not found)."""
    if described is None:
        return NONE, list(ACTIONS)
    content = json.loads(described["ResourcePolicy"]["Content"])
    missing = missing_actions(content, account)
    return (MERGE, missing) if missing else (PRESENT, [])


def describe(profile: str | None, region: str) -> dict | None:
    """describe-resource-policy through the AWS CLI; None when the organization has no policy."""
    command = ["aws", "organizations", "describe-resource-policy", "--region", region, "--output", "json"]
    if profile:
        command += ["--profile", profile]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode == 0:
        return json.loads(done.stdout)
    if "ResourcePolicyNotFoundException" in done.stderr:
        return None
    raise SystemExit(f"aws organizations describe-resource-policy failed (run it with the management account's credentials):\n{done.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enricher-account", required=True, help="the Security Hub delegated administrator account (12 digits)")
    parser.add_argument("--partition", default="aws")
    parser.add_argument("--profile", help="AWS CLI profile of the management account")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--write", metavar="FILE", help="with MERGE: write the merged policy here")
    parser.add_argument("--policy-file", metavar="FILE", help="a saved describe-resource-policy output instead of calling the CLI ('none' = not found)")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"\d{12}", args.enricher_account):
        parser.error("--enricher-account must be a 12-digit account id")

    if args.policy_file:
        described = None if args.policy_file == "none" else json.loads(Path(args.policy_file).read_text())
    else:
        described = describe(args.profile, args.region)
    verdict, missing = classify(described, args.enricher_account)
    ours = statement(args.enricher_account, args.partition)
    profile = f" --profile {args.profile}" if args.profile else ""
    if verdict == NONE:
        print("NONE: the organization has no delegation policy.")
        print("Deploy pipes/management-account.yaml with CreateOrganizationsDelegationPolicy=true (it creates the policy and keeps it when the stack is deleted).")
        return 0
    if verdict == PRESENT:
        print(f"PRESENT: the organization's delegation policy already lets {args.enricher_account} make every call the enricher needs.")
        print("Deploy pipes/management-account.yaml with CreateOrganizationsDelegationPolicy=false (the default): nothing to merge.")
        return 0
    print("MERGE: the organization has a delegation policy that does not grant the enricher's account: " + ", ".join(missing))
    print("Deploy pipes/management-account.yaml with CreateOrganizationsDelegationPolicy=false (the default): creating ours would REPLACE the existing policy.")
    print("Merge this statement into the existing policy's Statement list:")
    print(json.dumps(ours, indent=2))
    if args.write:
        content = json.loads(described["ResourcePolicy"]["Content"])
        with open(args.write, "w") as out:
            json.dump(merged(content, args.enricher_account, args.partition), out, indent=2)
            out.write("\n")
        print(f"The merged policy is in {args.write}; review it, then install it with:")
        print(f"  aws organizations put-resource-policy{profile} --region {args.region} --content file://{args.write}")
    else:
        print("(--write FILE writes the merged policy and prints the put-resource-policy command.)")
    return 3


if __name__ == "__main__":
    sys.exit(main())
