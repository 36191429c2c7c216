"""Tests of the deployment templates in pipes/ (template.yaml, management-account.yaml).

Run from the repository root:

    .venv/bin/python -m unittest discover -s pipes/tests -t .

They need the pinned cfn-lint and event-ruler of requirements-dev.txt, and no AWS account.

Pattern matcher. The EventBridge rules are checked with a real matcher, not a hand-written
one: PyPI `event-ruler` 0.3.0, a compiled (gopy) wrapper around Quamina v1.0.0, the Go
implementation of EventBridge's event-pattern language by Tim Bray, who designed the matching
engine behind EventBridge (AWS's own open-source engine is the Java library aws/event-ruler;
Quamina implements the same language and its array-consistent matching). We rely on it only for
what our patterns use: exact string values, "exists": false/true, and (in the sanity tests)
"anything-but" with a list. `MatcherSanityTest` pins those features against the examples in
aws/event-ruler's README and the EventBridge user guide, so a matcher that disagreed with AWS's
documented semantics would fail there first. Known gaps of this version, none used by our
patterns: no "prefix", no single-value "anything-but", numbers compared as text.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path
from typing import Any, Iterator

from cfnlint.decode import decode

from pipes import delegation_policy, key_policy
from pipes.tests import iam_check
from pipes.tests.cfn import Stack
from pipes.tests.iam_check import Request, evaluate

ROOT = Path(__file__).resolve().parents[2]
PIPES = ROOT / "pipes"
MAIN = PIPES / "template.yaml"
MANAGEMENT = PIPES / "management-account.yaml"
TEMPLATES = sorted(PIPES.glob("*.yaml"))
README = PIPES / "README.md"
TOP_README = ROOT / "README.md"
MAKEFILE = ROOT / "Makefile"

# Every Rust source these tests read (the Rust layout may move: update the paths here only).
QUOTAS_RS = ROOT / "src" / "core" / "quotas.rs"
CONFIG_RS = ROOT / "src" / "config.rs"  # ENRICHER_VARS, INVESTIGATOR_VARS, ACCOUNT_EVENTS_VARS, defaults
SELECT_RS = ROOT / "src" / "core" / "select" / "policy.rs"  # Criteria::default
QUOTA_RS = ROOT / "src" / "adapters" / "cache_table" / "schema.rs"  # LEDGER_KEY, CHECKPOINT_KEY, REFRESH_QUEUE_KEY
CHANGES_RS = ROOT / "src" / "core" / "account_change.rs"  # WATCHED_CALLS
TELEMETRY_RS = ROOT / "src" / "telemetry.rs"  # Metric::name(), labels(), NAMESPACE
BIN_RS = ROOT / "src" / "bin"  # <function>.rs: install_emf("<function>")
DIRECTORY_RS = ROOT / "src" / "service" / "directory.rs"  # the "account lookup failed" warning
ORGANIZATIONS_RS = ROOT / "src" / "adapters" / "organizations.rs"  # the "access denied" contact warning
CARGO_TOML = ROOT / "Cargo.toml"  # rust-version, edition

PARTITION_KEY_PATH = "$.detail.findings[0].AwsAccountId"
# The new hub's OCSF findings name their account at cloud.account.uid.
V2_PARTITION_KEY_PATH = "$.detail.findings[0].cloud.account.uid"
PARTITION_KEY_PATHS = {"FindingsImportedV2Rule": V2_PARTITION_KEY_PATH}

# Values for the parameters without a default (any valid values do).
REQUIRED_PARAMETERS = {"ManagementAccountId": iam_check.MANAGEMENT_ACCOUNT, "OrganizationId": iam_check.ORGANIZATION_ID}
MANAGEMENT_PARAMETERS = {"EnricherRoleArns": "arn:aws:iam::111122223333:role/securityhub-enricher-us-east-1"}


def mentions(case: unittest.TestCase, text: str, needle: str, what: str) -> None:
    """assertIn for long documents, without printing the document."""
    case.assertTrue(needle in text, f"{what} does not mention {needle!r}")


def load(path: Path) -> dict:
    template, matches = decode(str(path))
    if matches or template is None:
        raise AssertionError(f"{path} does not parse: {[str(m) for m in matches]}")
    return template


def resources(template: dict, type_: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r.get("Type") == type_}


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def statements(template: dict) -> Iterator[dict]:
    """Every IAM policy statement, including both branches of Fn::If."""
    for node in walk(template["Resources"]):
        if isinstance(node, dict) and "Effect" in node and ("Action" in node or "NotAction" in node):
            yield node


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def schema_key(name: str) -> str:
    """The key of one of the cache table's own items (`pub const NAME: &str = "...";` in QUOTA_RS)."""
    found = re.search(rf'pub const {name}: &str = "([^"]+)";', QUOTA_RS.read_text())
    if found is None:
        raise AssertionError(f"{QUOTA_RS.relative_to(ROOT)} has no `pub const {name}: &str`")
    return found.group(1)


def rust_str_list(source: str, name: str) -> list[str]:
    block = re.search(rf"pub const {name}: &\[&str\] = &\[(.*?)\];", source, re.S)
    if block is None:
        raise AssertionError(f"src/config.rs has no `pub const {name}: &[&str] = &[ ... ];` block")
    names = re.findall(r'"([A-Z0-9_]+)"', block.group(1))
    if not names:
        raise AssertionError(f"src/config.rs: {name} lists no variables")
    return names


# ------------------------------------------------------------------------------------------
# Lint
# ------------------------------------------------------------------------------------------


def run_cfn_lint(*paths: Path) -> subprocess.CompletedProcess:
    cli = Path(sys.executable).with_name("cfn-lint")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "cfnlint"]
    return subprocess.run(
        [*command, *map(str, paths)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


class LintTest(unittest.TestCase):
    def test_templates_exist(self):
        self.assertEqual([p.name for p in TEMPLATES], ["management-account.yaml", "template.yaml"])

    def test_cfn_lint_reports_nothing(self):
        result = run_cfn_lint(*TEMPLATES)
        self.assertEqual(
            (result.returncode, result.stdout.strip()),
            (0, ""),
            f"cfn-lint findings:\n{result.stdout}{result.stderr}",
        )

    def test_the_lint_harness_sees_a_bad_template(self):
        bad = MAIN.read_text().replace("OnPartialBatchItemFailure: AUTOMATIC_BISECT", "OnPartialBatchItemFailure: BISECT")
        self.assertNotEqual(bad, MAIN.read_text())
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bad.yaml"
            path.write_text(bad)
            result = run_cfn_lint(path)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("E3030", result.stdout)


# ------------------------------------------------------------------------------------------
# Environment variables and their defaults
# ------------------------------------------------------------------------------------------

# Parameter -> (variable, default in the code). Sources: src/config.rs
# (EnricherConfig::from_vars, InvestigatorConfig::from_vars, investigation_config, tag_filter)
# and src/investigate/select.rs (Criteria::default). "" means the code's "unset": the variable
# is optional, or (SECURITYHUB_* of the enricher) derived from CONCURRENT_ENVIRONMENTS.
CODE_DEFAULTS: dict[str, tuple[str, str]] = {
    "ContactRoleArn": ("CONTACT_ROLE_ARN", ""),
    "ContactRoleSessionName": ("CONTACT_ROLE_SESSION_NAME", "securityhub-enricher"),
    "ContactRoleExternalId": ("CONTACT_ROLE_EXTERNAL_ID", ""),
    "TagKeys": ("TAG_KEYS", ""),
    "CacheTtlSeconds": ("CACHE_TTL_SECONDS", "86400"),
    "NegativeCacheTtlSeconds": ("NEGATIVE_CACHE_TTL_SECONDS", "3600"),
    "UnknownContactTtlSeconds": ("UNKNOWN_CONTACT_TTL_SECONDS", "900"),
    "StaleGraceSeconds": ("STALE_GRACE_SECONDS", "604800"),
    "MemoryCacheSeconds": ("MEMORY_CACHE_SECONDS", "300"),
    "MemoryCacheCapacity": ("MEMORY_CACHE_CAPACITY", "20000"),
    "OrganizationsRps": ("ORGANIZATIONS_RPS", "1"),
    "OrganizationsBurst": ("ORGANIZATIONS_BURST", "5"),
    "AccountRps": ("ACCOUNT_RPS", "5"),
    "AccountBurst": ("ACCOUNT_BURST", "7"),
    "StsRps": ("STS_RPS", "1"),
    "StsBurst": ("STS_BURST", "2"),
    "EnricherSecurityHubRps": ("SECURITYHUB_RPS", ""),
    "EnricherSecurityHubBurst": ("SECURITYHUB_BURST", ""),
    "SecurityHubQuotaSharing": ("SECURITYHUB_QUOTA_SHARING", "ledger"),
    "LookupConcurrency": ("LOOKUP_CONCURRENCY", "8"),
    "LookupBudgetSeconds": ("LOOKUP_BUDGET_SECONDS", "5"),
    "DeadlineMarginMs": ("DEADLINE_MARGIN_MS", "3000"),
    "InvestigateSeverities": ("INVESTIGATE_SEVERITIES", "HIGH,CRITICAL,MEDIUM"),
    "InvestigateAction": ("INVESTIGATE_ACTION", "investigate"),
    "InvestigationLookbackHours": ("INVESTIGATION_LOOKBACK_HOURS", "24"),
    "DetectiveGraphArn": ("DETECTIVE_GRAPH_ARN", ""),
    "DetectiveRps": ("DETECTIVE_RPS", "1"),
    "DetectiveBurst": ("DETECTIVE_BURST", "2"),
    "InvestigationMaxAttempts": ("INVESTIGATION_MAX_ATTEMPTS", "3"),
    "InvestigatorSecurityHubRps": ("SECURITYHUB_RPS", "1"),
    "InvestigatorSecurityHubBurst": ("SECURITYHUB_BURST", "3"),
}


def _arith(expression: str) -> float:
    """Evaluates a Rust literal like `24 * 3600`, `20_000` or `1.0`."""
    value = 1.0
    for factor in expression.replace("_", "").split("*"):
        value *= float(factor.strip())
    return value


def code_numeric_defaults() -> dict[str, list[float]]:
    """Literal defaults read from src/config.rs, by variable (a variable read twice has two)."""
    source = CONFIG_RS.read_text()
    found: dict[str, list[float]] = {}
    for var, expression in re.findall(r'vars\.(?:seconds|parsed)\(\s*"(\w+)",\s*([\d_.]+(?:\s*\*\s*[\d_.]+)*)\s*[,)]', source):
        found.setdefault(var, []).append(_arith(expression))
    rate = r"Rate \{ per_second: ([\d.]+), burst: (\d+) \}"
    for rps, burst, per_second, burst_value in re.findall(rf'vars\.rate\(\s*"(\w+)",\s*"(\w+)",\s*{rate}', source):
        found.setdefault(rps, []).append(float(per_second))
        found.setdefault(burst, []).append(float(burst_value))
    # A default named by a constant: `vars.rate("X_RPS", "X_BURST", NAME)` with `const NAME: Rate = Rate { .. };`.
    # Shared quotas and default shares are declared in src/core/quotas.rs.
    declared = source + QUOTAS_RS.read_text()
    constants = dict((name, (float(a), float(b))) for name, a, b in re.findall(rf"const (\w+): Rate = {rate};", declared))
    for rps, burst, constant in re.findall(r'vars\.rate\(\s*"(\w+)",\s*"(\w+)",\s*(?:quotas::)?([A-Z][A-Z0-9_]*),?\s*\)', source):
        if constant in constants:
            found.setdefault(rps, []).append(constants[constant][0])
            found.setdefault(burst, []).append(constants[constant][1])
    return found


class EnvironmentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.template = load(MAIN)
        source = CONFIG_RS.read_text()
        cls.lists = {
            "enricher": rust_str_list(source, "ENRICHER_VARS"),
            "investigator": rust_str_list(source, "INVESTIGATOR_VARS"),
            "account-events": rust_str_list(source, "ACCOUNT_EVENTS_VARS"),
            # The refresher reads the enricher's configuration (src/bin/refresher.rs).
            "refresher": rust_str_list(source, "ENRICHER_VARS"),
        }
        cls.functions = {}
        for name, function in resources(cls.template, "AWS::Serverless::Function").items():
            binary = Path(str(function["Properties"]["CodeUri"])).name
            cls.functions[binary] = (name, function["Properties"])

    def test_rust_lists_are_found(self):
        self.assertIn("CACHE_TABLE", self.lists["enricher"])
        self.assertIn("JOBS_TABLE", self.lists["investigator"])
        with self.assertRaises(AssertionError):
            rust_str_list("pub const OTHER: &[&str] = &[];", "ENRICHER_VARS")

    def test_each_function_sets_exactly_the_variables_it_reads(self):
        self.assertEqual(set(self.functions), {"enricher", "investigator", "account-events", "refresher"})
        for binary, names in self.lists.items():
            _, properties = self.functions[binary]
            variables = properties["Environment"]["Variables"]
            self.assertEqual(len(names), len(set(names)), f"{binary}: duplicate names in src/config.rs")
            missing = sorted(set(names) - set(variables))
            extra = sorted(set(variables) - set(names))
            self.assertEqual((missing, extra), ([], []), f"{binary}: missing {missing}, not read by the code {extra}")

    def test_every_variable_comes_from_a_parameter_or_a_resource(self):
        known = set(self.template["Parameters"]) | set(self.template["Resources"])
        for binary, (_, properties) in self.functions.items():
            for var, value in properties["Environment"]["Variables"].items():
                self.assertIsInstance(value, dict, f"{binary} {var}: a literal, not a Parameter or resource")
                refs = [n["Ref"] for n in walk(value) if isinstance(n, dict) and "Ref" in n]
                self.assertTrue(refs, f"{binary} {var}: no Ref")
                for ref in refs:
                    self.assertIn(ref, known, f"{binary} {var}: Ref {ref} is neither a Parameter nor a resource")

    def test_parameters_named_for_a_variable_feed_that_variable(self):
        for parameter, (var, _) in CODE_DEFAULTS.items():
            uses = [
                binary
                for binary, (_, properties) in self.functions.items()
                if properties["Environment"]["Variables"].get(var) == {"Ref": parameter}
            ]
            self.assertTrue(uses, f"{parameter} does not set {var}")

    def test_parameter_defaults_equal_the_code_defaults(self):
        parameters = self.template["Parameters"]
        for parameter, (var, default) in CODE_DEFAULTS.items():
            self.assertIn(parameter, parameters)
            actual = str(parameters[parameter].get("Default"))
            if default and default[0].isdigit():
                self.assertEqual(float(actual), float(default), f"{parameter} ({var})")
            else:
                self.assertEqual(actual, default, f"{parameter} ({var})")

    def test_the_table_matches_the_literals_in_config_rs(self):
        literals = code_numeric_defaults()
        self.assertIn("CACHE_TTL_SECONDS", literals, "the default extraction found nothing in src/config.rs")
        numeric = {p: (v, d) for p, (v, d) in CODE_DEFAULTS.items() if d and d[0].isdigit()}
        for parameter, (var, default) in numeric.items():
            self.assertIn(var, literals, f"no literal default for {var} in src/config.rs")
            self.assertIn(float(default), literals[var], f"{var}: config.rs says {literals[var]}")
        source = CONFIG_RS.read_text()
        self.assertIn('unwrap_or_else(|| "securityhub-enricher".to_owned())', source)
        self.assertRegex(source, r'vars\.rate\("SECURITYHUB_RPS", "SECURITYHUB_BURST", share\)')
        self.assertRegex(source, r'vars\.optional\("TAG_KEYS"\)')
        criteria = SELECT_RS.read_text()
        labels = re.search(r"severities: \[([^\]]*)\]", criteria)
        self.assertIsNotNone(labels, "Criteria::default severities not found in select.rs")
        self.assertEqual(
            set(re.findall(r'"(\w+)"', labels.group(1))),
            set(CODE_DEFAULTS["InvestigateSeverities"][1].split(",")),
        )
        self.assertIn('action: "investigate".to_owned()', criteria)

    def test_concurrent_environments_is_shards_times_parallelization(self):
        table = self.template["Mappings"]["Concurrency"]
        parameters = self.template["Parameters"]
        factors = [int(v) for v in parameters["ParallelizationFactor"]["AllowedValues"]]
        self.assertEqual(factors, list(range(1, 11)))
        for factor in factors:
            products = [int(v) for v in table[str(factor)]["Shards"]]
            self.assertEqual(products, [factor * s for s in range(len(products))])
            for shards in ("ShardCount", "OnDemandExpectedShards"):
                self.assertLess(int(parameters[shards]["MaxValue"]), len(products), shards)
        _, enricher = self.functions["enricher"]
        value = enricher["Environment"]["Variables"]["CONCURRENT_ENVIRONMENTS"]
        condition, provisioned, on_demand = value["Fn::If"]
        self.assertEqual(condition, "IsProvisioned")
        lookup = {"Fn::FindInMap": ["Concurrency", {"Ref": "ParallelizationFactor"}, "Shards"]}
        self.assertEqual(provisioned, {"Fn::Select": [{"Ref": "ShardCount"}, lookup]})
        self.assertEqual(on_demand, {"Fn::Select": [{"Ref": "OnDemandExpectedShards"}, lookup]})

    def test_pipe_concurrency_uses_the_same_parallelization(self):
        (pipe,) = resources(self.template, "AWS::Pipes::Pipe").values()
        kinesis = pipe["Properties"]["SourceParameters"]["KinesisStreamParameters"]
        self.assertEqual(kinesis["ParallelizationFactor"], {"Ref": "ParallelizationFactor"})
        self.assertEqual(kinesis["OnPartialBatchItemFailure"], "AUTOMATIC_BISECT")
        self.assertEqual(kinesis["StartingPosition"], "TRIM_HORIZON")
        self.assertIn("Arn", kinesis["DeadLetterConfig"])

    def test_every_parameter_is_in_the_readme_with_its_default(self):
        readme = README.read_text()
        rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]*) \|", readme, re.M))
        for path in TEMPLATES:
            for parameter, spec in load(path)["Parameters"].items():
                self.assertIn(parameter, rows, f"{path.name}: {parameter} is not in the tables of pipes/README.md")
                default = spec.get("Default")
                documented = rows[parameter].strip()
                if default is None:
                    self.assertEqual(documented, "required", parameter)
                elif str(default) == "":
                    self.assertEqual(documented, "(empty)", parameter)
                else:
                    self.assertEqual(documented, f"`{default}`", parameter)


# ------------------------------------------------------------------------------------------
# IAM
# ------------------------------------------------------------------------------------------


def iam_actions() -> dict[str, dict]:
    """cfn-lint's IAM data (services, actions, and each action's resource types)."""
    import cfnlint

    path = Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json"
    return json.loads(path.read_text())


class IamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.templates = {path.name: load(path) for path in TEMPLATES}
        cls.lines = {path.name: path.read_text().splitlines() for path in TEMPLATES}
        cls.policies = iam_actions()

    def each_statement(self):
        for name, template in self.templates.items():
            for statement in statements(template):
                yield name, statement

    def test_statements_are_found(self):
        self.assertGreater(sum(1 for _ in self.each_statement()), 20)

    def test_no_action_has_a_wildcard(self):
        for name, statement in self.each_statement():
            self.assertNotIn("NotAction", statement, name)
            for action in as_list(statement["Action"]):
                self.assertIsInstance(action, str, f"{name}: {action!r}")
                self.assertNotIn("*", action, f"{name}: {action}")

    def test_every_action_exists(self):
        for name, statement in self.each_statement():
            for action in as_list(statement["Action"]):
                service, _, operation = action.partition(":")
                self.assertIn(service, self.policies, f"{name}: {action}")
                self.assertIn(operation.lower(), self.policies[service]["Actions"], f"{name}: {action}")

    def test_star_resources_only_where_the_service_has_no_resource_types(self):
        """Scoped where the service allows; "*" only for actions without resource types, and said."""
        for name, statement in self.each_statement():
            if statement["Effect"] != "Allow" or "Principal" in statement:
                continue  # trust policies have no Resource
            resources_ = as_list(statement["Resource"])
            star = "*" in resources_
            for action in as_list(statement["Action"]):
                service, _, operation = action.partition(":")
                types = self.policies[service]["Actions"][operation.lower()].get("Resources", [])
                if star:
                    self.assertEqual(types, [], f"{name}: {action} supports {types}, yet Resource is '*'")
                else:
                    self.assertTrue(types, f"{name}: {action} has no resource types; Resource must be '*'")
            if star:
                self.assertEqual(resources_, ["*"], name)
                first = statement.start_mark.line
                context = "\n".join(self.lines[name][max(0, first - 3): statement.end_mark.line])
                self.assertRegex(context, r"#.*resource-level", f"{name} line {first + 1}: no comment saying why '*'")

    def test_enricher_permissions(self):
        role = self.templates["template.yaml"]["Resources"]["EnricherRole"]
        actions = {a for s in statements({"Resources": {"r": role}}) for a in as_list(s["Action"])}
        self.assertEqual(
            actions,
            {
                "sts:AssumeRole",  # trust policy, and the contact role when set
                "logs:CreateLogStream", "logs:PutLogEvents",
                "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem",
                # the refresher runs as this role: its checkpoint and queue, and the sweep's reads
                "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "securityhub:GetFindings",
                "securityhub:BatchUpdateFindings",
                "organizations:DescribeAccount", "organizations:ListTagsForResource", "organizations:ListParents",
                "organizations:DescribeOrganizationalUnit", "organizations:ListRoots", "organizations:DescribeOrganization",
                # the refresher's walk of the OU tree as each pass begins
                "organizations:ListAccountsForParent", "organizations:ListOrganizationalUnitsForParent",
                # the walk by account paths (Account.Paths) where Organizations returns them
                "organizations:ListAccounts",
                "account:GetAlternateContact",
                "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey",  # customer managed key only
                "events:PutEvents",  # ENRICHED_EVENTS_BUS only
            },
        )

    def test_put_events_is_granted_on_the_configured_bus_only(self):
        for bus, granted in [("", []), ("findings", ["arn:aws:events:us-east-1:111122223333:event-bus/findings"])]:
            stack = Stack(self.templates["template.yaml"], {**REQUIRED_PARAMETERS, "EnrichedEventsBusName": bus})
            resources_ = [
                stack.resolve(s["Resource"]) for s in iam_check.role_statements(stack, "EnricherRole")
                if "events:PutEvents" in as_list(s["Action"])
            ]
            self.assertEqual(resources_, granted, bus)

    def test_the_enricher_reaches_only_the_ledger_queue_and_checkpoint_items_one_by_one(self):
        """Single-item operations on the cache table, by key: UpdateItem of the quota ledger and the
        refresh queue only; GetItem of the refresher's checkpoint and the queue; PutItem and
        DeleteItem of the checkpoint only (src/adapters/cache_table/{ledger,sweep_state}.rs); the
        posture counts' items (src/adapters/cache_table/posture.rs)."""
        role = self.templates["template.yaml"]["Resources"]["EnricherRole"]
        ledger, checkpoint, queue = schema_key("LEDGER_KEY"), schema_key("CHECKPOINT_KEY"), schema_key("REFRESH_QUEUE_KEY")
        last_pass, lease = schema_key("LAST_PASS_KEY"), schema_key("LEASE_KEY")
        posture, progress = schema_key("POSTURE_KEY"), schema_key("POSTURE_PROGRESS_KEY")
        expected = {
            "dynamodb:UpdateItem": [ledger, queue],
            "dynamodb:GetItem": [checkpoint, queue, last_pass, progress],
            "dynamodb:PutItem": [checkpoint, last_pass, lease, posture, progress],
            "dynamodb:DeleteItem": [checkpoint, last_pass, lease, posture, progress],
        }
        # The pending-writes store's items, by pattern: an account's (pending#<12 characters>) and
        # the index's shards (src/adapters/cache_table/pending.rs).
        pending = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [
            schema_key("PENDING_PREFIX") + "?" * 12, schema_key("PENDING_INDEX_PREFIX") + "*"]}}
        for action, keys in expected.items():
            granting = [s for s in statements({"Resources": {"r": role}}) if action in as_list(s["Action"])]
            on_cache = [s for s in granting if s["Resource"] == {"Fn::GetAtt": ["CacheTable", "Arn"]}]
            by_key = [s for s in on_cache if s["Condition"] != pending]
            self.assertEqual(len(by_key), 1, f"{action}: {granting}")
            self.assertEqual(
                by_key[0]["Condition"], {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": keys}}, action
            )
            store = [s for s in on_cache if s["Condition"] == pending]
            self.assertEqual(len(store), int(action in ("dynamodb:UpdateItem", "dynamodb:GetItem")), action)

    def test_securityhub_is_scoped_to_the_hub(self):
        hub = {"Fn::Sub": "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:hub/default"}
        # The new hub (BatchUpdateFindingsV2): the enricher only, and only when it sets Comment.
        hub_v2 = {"Fn::Sub": "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:hubv2/*"}
        seen = 0
        for _, statement in self.each_statement():
            if statement["Effect"] == "Allow" and any(a.startswith("securityhub:") for a in as_list(statement["Action"])):
                actions = set(as_list(statement["Action"]))
                if statement["Resource"] == hub_v2 and "securityhub:BatchUpdateFindings" in actions:
                    self.assertEqual(statement["Condition"], {"Null": {"securityhub:OCSFSyntaxPath/Comment": "false"}})
                elif statement["Resource"] == hub_v2:
                    self.assertEqual(actions, {"securityhub:GetFindings"})  # doctor's GetFindingsV2
                elif statement["Resource"] == "*":
                    self.assertEqual({a for a in actions if a.startswith("securityhub:")}, {"securityhub:ListFindingAggregators"})
                elif "securityhub:GetFindingAggregator" in actions:
                    self.assertEqual(statement["Resource"], {"Fn::Sub": "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:finding-aggregator/*"})
                else:
                    self.assertEqual(statement["Resource"], hub)
                seen += 1
        # EnricherRole: BatchUpdateFindings, and GetFindings for the refresher; InvestigatorRole;
        # OperatorPolicy (enricher-admin sweep, and doctor's four: the hub, the new hub, the
        # aggregator and the aggregator list); both sweeps read and comment on the new hub.
        self.assertEqual(seen, 11)
    def test_v2_updates_are_limited_to_comment(self):
        """BatchUpdateFindingsV2 takes Comment, SeverityId and StatusId; the enricher may set Comment only."""
        stack = Stack(self.templates["template.yaml"], REQUIRED_PARAMETERS)
        statements = iam_check.role_statements(stack, "EnricherRole")
        hub = "arn:aws:securityhub:us-east-1:111122223333:hubv2/unknown"
        for fields, allowed in [(["Comment"], True), ([], False), (["Comment", "SeverityId"], False), (["Comment", "StatusId"], False)]:
            context = {f"securityhub:ocsfsyntaxpath/{f.lower()}": [iam_check.UnknownValue(f)] for f in fields}
            decision = evaluate(statements, Request("securityhub:BatchUpdateFindings", [hub], context))
            self.assertEqual(decision.allowed, allowed, f"{fields}: {decision.reason}")

    def test_findings_updates_are_limited_to_note_and_user_defined_fields(self):
        """Every customer-updatable field of BatchUpdateFindings (Security Hub user guide, "Available
        fields for BatchUpdateFindings") but Note and UserDefinedFields is denied to every writer (the
        enricher's role, which the refresher shares, the investigator's, and the operator's for
        enricher-admin sweep), by the documented condition: Null securityhub:ASFFSyntaxPath/<field> = "false"."""
        updatable = {"Confidence", "Criticality", "Note", "RelatedFindings", "Severity", "Types",
                     "UserDefinedFields", "VerificationState", "Workflow"}
        written = {"Note", "UserDefinedFields"}
        stack = Stack(self.templates["template.yaml"], REQUIRED_PARAMETERS)
        hub = "arn:aws:securityhub:us-east-1:111122223333:hub/default"
        operator = iam_check.policy_statements(stack.resources()["OperatorPolicy"]["Properties"]["PolicyDocument"])
        for role in ("EnricherRole", "InvestigatorRole", "OperatorPolicy"):
            statements = operator if role == "OperatorPolicy" else iam_check.role_statements(stack, role)
            denied = {
                key.split("/", 1)[1]
                for s in statements if s["Effect"] == "Deny" and "securityhub:BatchUpdateFindings" in as_list(s["Action"])
                for key, value in s["Condition"]["Null"].items()
                if value == "false" and len(s["Condition"]) == 1 and len(s["Condition"]["Null"]) == 1
                and key.startswith("securityhub:ASFFSyntaxPath/")
            }
            self.assertEqual({f.split(".")[0] for f in denied}, updatable - written, role)
            self.assertTrue({"Workflow.Status", "Severity.Label"} <= denied, role)
            for fields, allowed in [(["Note", "UserDefinedFields"], True), (["UserDefinedFields"], True)] + [
                (["Note", f], False) for f in sorted(updatable - written)
            ]:
                context = {f"securityhub:asffsyntaxpath/{f.lower()}": [iam_check.UnknownValue(f)] for f in fields}
                decision = evaluate(statements, Request("securityhub:BatchUpdateFindings", [hub], context))
                self.assertEqual(decision.allowed, allowed, f"{role} {fields}: {decision.reason}")

    def test_every_principal_that_may_update_findings_is_denied_the_ocsf_severity_and_status(self):
        """BatchUpdateFindingsV2 is authorized as securityhub:BatchUpdateFindings, so any principal
        allowed that action could set SeverityId and StatusId of the new hub's findings unless denied.
        Every principal of both templates (roles and managed policies, in every variant) that may call
        it carries the enricher's Deny statements, so that even a broader policy attached beside ours
        (here: Allow *) cannot change them; and the ASFF fields but Note and UserDefinedFields likewise."""
        variants = [REQUIRED_PARAMETERS, ALL_ON, {**ALL_ON, "KmsKeyArn": iam_check.KMS_KEY, "ContactRoleArn": "arn:aws:iam::999999999999:role/securityhub-enricher-contacts"}]
        broader = {"Effect": "Allow", "Action": "*", "Resource": "*"}
        resources = [f"arn:aws:securityhub:us-east-1:111122223333:{r}" for r in ("hub/default", "hubv2/unknown", "hubv2/default")]
        ocsf = lambda *fields: {f"securityhub:ocsfsyntaxpath/{f.lower()}": [iam_check.UnknownValue(f)] for f in fields}  # noqa: E731
        asff = lambda *fields: {f"securityhub:asffsyntaxpath/{f.lower()}": [iam_check.UnknownValue(f)] for f in fields}  # noqa: E731
        writers: set[str] = set()
        stacks = [Stack(self.templates["template.yaml"], v) for v in variants]
        stacks.append(Stack(self.templates["management-account.yaml"], {**MANAGEMENT_PARAMETERS, "CreateOrganizationsDelegationPolicy": "true",
                                                                         "EnricherEventBusArn": "arn:aws:events:us-east-1:111122223333:event-bus/default",
                                                                         "AlarmEmail": "a@b.example"}, account=iam_check.MANAGEMENT_ACCOUNT))
        for stack in stacks:
            for name, statements_ in principals(stack).items():
                if not any(s["Effect"] == "Allow" and "securityhub:BatchUpdateFindings" in as_list(s["Action"]) for s in statements_):
                    continue
                writers.add(name)
                for resource in resources:
                    for context in (ocsf("Comment", "SeverityId"), ocsf("Comment", "StatusId"), ocsf("SeverityId"), ocsf("StatusId"),
                                    asff("Note", "Workflow.Status"), asff("Note", "Severity.Label"), asff("Note", "Types")):
                        request = Request("securityhub:BatchUpdateFindings", [resource], context)
                        for extra in ([], [broader]):
                            decision = evaluate(statements_ + extra, request)
                            self.assertFalse(decision.allowed, f"{name} {resource} {sorted(context)} {'with a broader policy' if extra else ''}")
        self.assertEqual(writers, {"EnricherRole", "InvestigatorRole", "OperatorPolicy"}, "the principals that may call BatchUpdateFindings")

    def cache_writes(self):
        """(principal, statements, cache table ARN) of every role and the operator policy, with and without a key."""
        for kms in ("", iam_check.KMS_KEY):
            stack = Stack(self.templates["template.yaml"], {**REQUIRED_PARAMETERS, "KmsKeyArn": kms})
            principals = {role: iam_check.role_statements(stack, role) for role in stack.resources("AWS::IAM::Role")}
            principals["OperatorPolicy"] = iam_check.policy_statements(stack.resources()["OperatorPolicy"]["Properties"]["PolicyDocument"])
            for name, statements in principals.items():
                yield name, statements, stack.arn("CacheTable")

    def test_no_role_can_overwrite_the_quota_ledger(self):
        """Only the ledger's own update (UpdateItem: the enricher's claims, and the background claims of
        the refresher, which runs as the enricher's role, and of enricher-admin sweep) reaches the
        ledger's item; no principal can put, delete or batch-write it, alone or beside an account entry."""
        ledger_key = schema_key("LEDGER_KEY")
        for name, statements, table in self.cache_writes():
            for action in ("BatchWriteItem", "PutItem", "DeleteItem", "UpdateItem"):
                for keys in ([ledger_key], ["111122223333", ledger_key]):
                    request = Request(f"dynamodb:{action}", [table], {"dynamodb:leadingkeys": keys})
                    expected = name in ("EnricherRole", "OperatorPolicy") and action == "UpdateItem" and keys == [ledger_key]
                    self.assertEqual(evaluate(statements, request).allowed, expected, f"{name} {action} {keys}")

    def test_the_refresh_queue_and_the_checkpoint_are_written_only_as_the_code_writes_them(self):
        """The refresh queue by UpdateItem (ADD/DELETE of its set) from those that queue accounts
        (account-events, enricher-admin invalidate) and the refresher that takes them; the
        refresher's checkpoint by PutItem and DeleteItem from the refresher (the enricher's role)
        only. Nothing else writes either item, alone or beside an account entry."""
        checkpoint, queue = schema_key("CHECKPOINT_KEY"), schema_key("REFRESH_QUEUE_KEY")
        allowed = {
            (queue, "UpdateItem"): {"EnricherRole", "AccountEventsRole", "OperatorPolicy"},
            (checkpoint, "PutItem"): {"EnricherRole"},
            (checkpoint, "DeleteItem"): {"EnricherRole"},
        }
        for name, statements, table in self.cache_writes():
            for key in (checkpoint, queue):
                for action in ("BatchWriteItem", "PutItem", "DeleteItem", "UpdateItem"):
                    for keys in ([key], ["111122223333", key]):
                        request = Request(f"dynamodb:{action}", [table], {"dynamodb:leadingkeys": keys})
                        expected = keys == [key] and name in allowed.get((key, action), set())
                        self.assertEqual(evaluate(statements, request).allowed, expected, f"{name} {action} {keys}")

    def test_management_role_reads_contacts_only_and_trusts_only_the_enricher(self):
        template = self.templates["management-account.yaml"]
        role = template["Resources"]["ContactRole"]
        (policy,) = role["Properties"]["Policies"]
        (statement,) = policy["PolicyDocument"]["Statement"]
        self.assertEqual(statement["Action"], "account:GetAlternateContact")
        self.assertEqual(
            statement["Resource"],
            [
                {"Fn::Sub": "arn:${AWS::Partition}:account::${AWS::AccountId}:account"},
                {"Fn::Sub": "arn:${AWS::Partition}:account::${AWS::AccountId}:account/o-*/*"},
            ],
        )
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        self.assertEqual(trust["Action"], "sts:AssumeRole")
        self.assertEqual(list(trust["Principal"]), ["AWS"])
        _, with_external_id, without = trust["Condition"]["Fn::If"]
        for condition in (with_external_id, without):
            self.assertEqual(condition["ArnEquals"], {"aws:PrincipalArn": {"Ref": "EnricherRoleArns"}})
        self.assertEqual(with_external_id["StringEquals"], {"sts:ExternalId": {"Ref": "ExternalId"}})
        self.assertEqual(set(without), {"ArnEquals"})

    def test_the_contact_role_trusts_the_enricher_role_of_every_region_listed(self):
        roles = [f"arn:aws:iam::111122223333:role/securityhub-enricher-{r}" for r in ("us-east-1", "eu-west-1", "ap-southeast-2")]
        for external_id in ("", "ext-123"):
            stack = Stack(self.templates["management-account.yaml"], {"EnricherRoleArns": ",".join(roles[:2]), "ExternalId": external_id},
                          account=iam_check.MANAGEMENT_ACCOUNT)
            trust = stack.resources()["ContactRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            for arn, expected in [(roles[0], True), (roles[1], True), (roles[2], False),
                                  ("arn:aws:iam::444455556666:role/securityhub-enricher-us-east-1", False)]:
                context = {"aws:principalarn": [arn]}
                if external_id:
                    context["sts:externalid"] = [external_id]
                decision = evaluate(trust, Request("sts:AssumeRole", ["*"], context, principal={"AWS": arn}))
                self.assertEqual(decision.allowed, expected, f"{arn} external id {external_id!r}")
            if external_id:
                request = Request("sts:AssumeRole", ["*"], {"aws:principalarn": [roles[0]]}, principal={"AWS": roles[0]})
                self.assertFalse(evaluate(trust, request).allowed, "the external id is required when set")

    def test_the_organizations_delegation_policy_is_a_resource(self):
        """The enricher account may call exactly the Organizations reads its roles are granted: the
        enricher role's, and the operator's walk of the OU tree (enricher-admin warm --all)."""
        template = self.templates["management-account.yaml"]
        policy = template["Resources"]["OrganizationsDelegationPolicy"]
        self.assertEqual(policy["Type"], "AWS::Organizations::ResourcePolicy")
        self.assertEqual(policy["Condition"], "CreateDelegationPolicy")
        self.assertEqual(template["Parameters"]["CreateOrganizationsDelegationPolicy"]["AllowedValues"], ["true", "false"])
        stack = Stack(template, {**MANAGEMENT_PARAMETERS, "CreateOrganizationsDelegationPolicy": "true"}, account=iam_check.MANAGEMENT_ACCOUNT)
        (statement,) = stack.resources()["OrganizationsDelegationPolicy"]["Properties"]["Content"]["Statement"]
        self.assertEqual(statement["Principal"], {"AWS": "arn:aws:iam::111122223333:root"})
        self.assertEqual(statement["Effect"], "Allow")
        self.assertNotIn("Condition", statement)
        resources = self.templates["template.yaml"]["Resources"]
        roles = {"e": resources["EnricherRole"], "o": resources["OperatorPolicy"]}
        needed = {a for s in statements({"Resources": roles}) for a in as_list(s["Action"]) if a.startswith("organizations:")}
        self.assertEqual(set(statement["Action"]), needed)
        self.assertTrue(all(a.split(":")[1].startswith(("Describe", "List")) for a in statement["Action"]), "read-only")
        off = Stack(template, {**MANAGEMENT_PARAMETERS, "CreateOrganizationsDelegationPolicy": "false"})
        self.assertNotIn("OrganizationsDelegationPolicy", off.resources())
        # Never replace what exists: off unless asked for, and kept when the stack goes or the
        # parameter is turned off again (a policy others may rely on by then).
        self.assertEqual(template["Parameters"]["CreateOrganizationsDelegationPolicy"]["Default"], "false")
        self.assertNotIn("OrganizationsDelegationPolicy", Stack(template, MANAGEMENT_PARAMETERS).resources())
        self.assertEqual(policy.get("DeletionPolicy"), "Retain")
        self.assertEqual(policy.get("UpdateReplacePolicy"), "Retain")
        on = Stack(template, {**MANAGEMENT_PARAMETERS, "CreateOrganizationsDelegationPolicy": "true"}, account=iam_check.MANAGEMENT_ACCOUNT)
        (created,) = on.resources()["OrganizationsDelegationPolicy"]["Properties"]["Content"]["Statement"]
        self.assertEqual(created, statement)
        # The check script's statement and the stack's output are that statement.
        self.assertEqual(delegation_policy.statement("111122223333"), statement)
        output = json.loads(stack.resolve(template["Outputs"]["DelegationPolicyStatement"]["Value"]))
        self.assertEqual(output, statement)
        readme = README.read_text()
        for action in statement["Action"]:
            mentions(self, readme, json.dumps(action), "pipes/README.md (the statement to merge)")
        mentions(self, readme, "describe-resource-policy", "pipes/README.md")
        mentions(self, readme, "put-resource-policy", "pipes/README.md")
        mentions(self, readme, "python3 -m pipes.delegation_policy", "pipes/README.md")


# ------------------------------------------------------------------------------------------
# Dashboard and alarms against the code's metrics
# ------------------------------------------------------------------------------------------

DASHBOARD = ROOT / "dashboards" / "enricher.json"
NAMESPACE = "SecurityHubEnricher"
# The Function dimension: src/bin/<name>.rs calls telemetry::install_emf("<name>").
FUNCTIONS = {"enricher", "investigator", "refresher"}
# Fixed values for the dashboard's two placeholders; the body must parse as JSON once they are in.
PLACEHOLDERS = {"${AWS::Region}": "eu-west-3", "${StreamName}": "test-findings-stream"}


def fill(body: str) -> Any:
    for placeholder, value in PLACEHOLDERS.items():
        body = body.replace(placeholder, value)
    return json.loads(body)


def code_metrics(source: str) -> dict[str, set[str]]:
    """Metric::name() strings of src/telemetry.rs -> their dimension names (Function + labels()).

    Names are either written out (`Metric::X => "X"` in name()) or the variant names themselves
    (`strum::IntoStaticStr` on `pub enum Metric`); labels are string literals or `label::X`
    constants of `pub mod label`."""
    names = dict(re.findall(r'Metric::(\w+)\s*=>\s*"(\w+)"', source))
    if not names and "IntoStaticStr" in source:
        enum = re.search(r"pub enum Metric \{(.*?)\n\}", source, re.S)
        if enum:
            body = re.sub(r"///[^\n]*|//[^\n]*|#\[[^\]]*\]", "", enum.group(1))
            names = {v: v for v in re.findall(r"^\s*([A-Z]\w*)\s*,?\s*$", body, re.M)}
    if not names:
        raise AssertionError("src/telemetry.rs: no `Metric::X => \"X\"` lines (Metric::name())")
    constants = dict(re.findall(r'pub const ([A-Z_]+): &str = "(\w+)";', source))
    labels = re.search(r"fn labels\(self\)[^{]*\{(.*?)\n    \}", source, re.S)
    if labels is None:
        raise AssertionError("src/telemetry.rs: Metric::labels() not found")
    dimensions = {name: {"Function"} for name in names.values()}
    for left, right in re.findall(r"^\s*((?:Metric::\w+\s*\|?\s*)+)=>\s*&\[([^\]]*)\]", labels.group(1), re.M):
        values = set(re.findall(r'"(\w+)"', right)) | {constants[c] for c in re.findall(r"label::([A-Z_]+)", right)}
        for variant in re.findall(r"Metric::(\w+)", left):
            dimensions[names[variant]] |= values
    return dimensions


def dashboard_series(body: dict) -> Iterator[tuple[str, list]]:
    """(widget title, metrics row) of every metric widget, "." shorthands resolved."""
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        previous: list = []
        for row in widget["properties"]["metrics"]:
            if row and isinstance(row[0], str):
                row = [previous[i] if item == "." and i < len(previous) else item for i, item in enumerate(row)]
                previous = row
            yield widget["properties"].get("title", "?"), row


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.template = load(MAIN)
        cls.file_text = DASHBOARD.read_text()
        cls.metrics = code_metrics(TELEMETRY_RS.read_text())

    def dashboard(self) -> dict:
        (dashboard,) = resources(self.template, "AWS::CloudWatch::Dashboard").values()
        return dashboard["Properties"]

    def test_the_template_body_is_the_file(self):
        """The inlined body and dashboards/enricher.json can never drift apart."""
        properties = self.dashboard()
        self.assertEqual(properties["DashboardName"], {"Fn::Sub": "${AWS::StackName}-enricher-${AWS::Region}"})
        inline, variables = properties["DashboardBody"]["Fn::Sub"]
        self.assertEqual(variables, {"StreamName": {"Ref": "FindingsStream"}})
        for text in (inline, self.file_text):
            self.assertEqual(set(re.findall(r"\$\{[^}]*\}", text)), set(PLACEHOLDERS))
        self.assertEqual(fill(inline), fill(self.file_text), "paste dashboards/enricher.json into pipes/template.yaml")

    def test_telemetry_metrics_are_found(self):
        self.assertEqual(self.metrics["RecordsFailed"], {"Function"})
        self.assertEqual(self.metrics["CacheHits"], {"Function", "Tier"})
        self.assertEqual(self.metrics["ApiCalls"], {"Function", "Service", "Operation"})
        source = TELEMETRY_RS.read_text()
        self.assertIn(f'pub const NAMESPACE: &str = "{NAMESPACE}";', source)
        self.assertIn('pub const FUNCTION_DIMENSION: &str = "Function";', source)
        for function in FUNCTIONS:
            self.assertIn(f'install_emf("{function}")', (BIN_RS / f"{function}.rs").read_text())
        with self.assertRaises(AssertionError):
            code_metrics("fn name(self) -> &str { match self { Metric::A => a } }")

    def test_dashboard_metrics_are_the_enrichers(self):
        """Each SecurityHubEnricher series is the code's metric, with Function = one of the functions (enricher, or
        investigator for the investigator's passes) and its full dimension set (CloudWatch matches dimension sets
        exactly: a missing label shows no data)."""
        seen = searches = 0
        for title, row in dashboard_series(fill(self.file_text)):
            if isinstance(row[0], dict):
                expression = row[0].get("expression", "")
                if "SEARCH(" not in expression or NAMESPACE not in expression:
                    continue
                searches += 1
                self.assertRegex(expression, r'Function="(enricher|refresher|investigator)"', title)
                schema = re.search(r"\{" + NAMESPACE + r",([^}]*)\}", expression)
                self.assertIsNotNone(schema, f"{title}: {expression}")
                name = re.search(r'MetricName="(\w+)"', expression)
                self.assertIsNotNone(name, f"{title}: {expression}")
                self.assertIn(name.group(1), self.metrics, title)
                self.assertEqual(set(schema.group(1).split(",")), self.metrics[name.group(1)], f"{title}: {expression}")
                continue
            fields = [item for item in row if isinstance(item, str)]
            namespace, name, pairs = fields[0], fields[1], fields[2:]
            if namespace != NAMESPACE:
                continue
            seen += 1
            self.assertEqual(len(pairs) % 2, 0, f"{title}: {row}")
            dimensions = dict(zip(pairs[::2], pairs[1::2]))
            self.assertIn(dimensions.get("Function"), FUNCTIONS, f"{title}: {row}")
            self.assertIn(name, self.metrics, f"{title}: {name} is not a Metric::name() of src/telemetry.rs")
            self.assertEqual(set(dimensions), self.metrics[name], f"{title}: {row}")
        self.assertGreater(seen, 10)
        self.assertGreater(searches, 3)

    def test_the_dashboard_shows_every_investigation_outcome(self):
        series = {(row[1], row[3]) for title, row in dashboard_series(fill(self.file_text))
                  if title.startswith("Investigations") and isinstance(row[0], str)}
        self.assertEqual(series, {
            ("InvestigationsJoined", "enricher"), ("InvestigationsJoined", "investigator"),
            ("InvestigationsPending", "investigator"), ("InvestigationsNotCovered", "investigator"),
            ("InvestigationsStarted", "investigator"), ("InvestigationsCompleted", "investigator"),
            ("InvestigationsFailed", "investigator"), ("InvestigationsRunning", "investigator"),
            ("InvestigationsRetried", "investigator"), ("InvestigationsNotDue", "investigator"),
            ("InvestigationsClaimsLost", "investigator"), ("InvestigationErrors", "investigator"),
            ("InvestigationsOverdue", "investigator")})

    def test_math_expressions_use_ids_of_their_widget(self):
        for widget in fill(self.file_text)["widgets"]:
            if widget["type"] != "metric":
                continue
            rows = widget["properties"]["metrics"]
            ids = {o["id"] for row in rows for o in row if isinstance(o, dict) and "id" in o}
            for row in rows:
                if isinstance(row[0], dict) and "expression" in row[0]:
                    code = re.sub(r"'[^']*'", "", row[0]["expression"])
                    for name in re.findall(r"\b[a-z]\w*\b", code):
                        self.assertIn(name, ids, f"{widget['properties']['title']}: {row[0]['expression']}")

    def test_alarms_on_our_namespace_use_the_codes_metrics(self):
        checked = 0
        for name, alarm in resources(self.template, "AWS::CloudWatch::Alarm").items():
            properties = alarm["Properties"]
            stats = [properties] + [m["MetricStat"]["Metric"] for m in properties.get("Metrics", []) if "MetricStat" in m]
            for stat in stats:
                if stat.get("Namespace") != NAMESPACE:
                    continue
                checked += 1
                metric = stat["MetricName"]
                self.assertIn(metric, self.metrics, f"{name}: {metric} is not a Metric::name() of src/telemetry.rs")
                dimensions = {d["Name"]: d["Value"] for d in stat.get("Dimensions", [])}
                self.assertIn(dimensions.get("Function"), FUNCTIONS, f"{name}: {dimensions}")
                self.assertEqual(set(dimensions), self.metrics[metric], name)
        self.assertGreaterEqual(checked, 3)


# ------------------------------------------------------------------------------------------
# EventBridge patterns, with a real matcher
# ------------------------------------------------------------------------------------------


def matcher():
    try:
        import event_ruler
    except ImportError as error:  # a failure, not a skip: the rule tests must run
        raise AssertionError(
            "event-ruler is not installed (requirements-dev.txt pins it for CPython 3.11): " + str(error)
        ) from error
    return lambda event, pattern: event_ruler.test_event_pattern(json.dumps(event), json.dumps(pattern))


def finding(account: str = "111122223333", **fields: str) -> dict:
    f = {
        "SchemaVersion": "2018-10-08",
        "Id": f"arn:aws:guardduty:us-east-1:{account}:detector/d/finding/f{len(fields)}",
        "ProductArn": "arn:aws:securityhub:us-east-1::product/aws/guardduty",
        "AwsAccountId": account,
        "Severity": {"Label": "HIGH"},
        "RecordState": "ACTIVE",
    }
    if fields:
        f["UserDefinedFields"] = dict(fields)
    return f


def ocsf_finding(account: str = "111122223333", region: str = "us-east-1", comment: str | None = None) -> dict:
    f = {
        "metadata": {"uid": "m-1", "product": {"uid": "arn:aws:securityhub:us-east-1::productv2/aws/guardduty"}},
        "cloud": {"account": {"uid": account}, "region": region, "provider": "AWS"},
        "finding_info": {"uid": "gd-1", "title": "t", "modified_time": 1767225600000},
        "severity": "High", "severity_id": 4,
    }
    if comment is not None:
        f["comment"] = comment
    return f


def event(detail_type: str, *findings: dict, source: str = "aws.securityhub", **detail: Any) -> dict:
    return {
        "version": "0",
        "id": "6f8d1b54-0000-0000-0000-000000000000",
        "detail-type": detail_type,
        "source": source,
        "account": "999988887777",
        "time": "2026-11-22T07:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"findings": list(findings), **detail},
    }


IMPORTED = "Security Hub Findings - Imported"
CUSTOM = "Security Hub Findings - Custom Action"

# Sample event -> the rules that must match it, exactly.
CASES: list[tuple[str, dict, set[str]]] = [
    ("new finding, no UserDefinedFields", event(IMPORTED, finding()), {"UnenrichedFindingsRule"}),
    ("someone else's fields, not ours", event(IMPORTED, finding(ticket="T-1")), {"UnenrichedFindingsRule"}),
    ("loop guard: our own complete update", event(IMPORTED, finding(findingEnriched="True", AccountName="a")), set()),
    ("partial enrichment is let through again", event(IMPORTED, finding(findingEnriched="Partial")), {"PartiallyEnrichedFindingsRule"}),
    (
        "custom action, several findings",
        event(CUSTOM, finding(findingEnriched="True"), finding("444455556666"), actionName="investigate", actionDescription="d"),
        {"CustomActionRule"},
    ),
    ("investigation requested on an enriched finding", event(IMPORTED, finding(findingEnriched="True", investigate="true")), {"InvestigationRequestedRule"}),
    ("investigation requested before enrichment: (a) alone", event(IMPORTED, finding(investigate="true")), {"UnenrichedFindingsRule"}),
    ("investigation requested on a partial finding: (a) alone", event(IMPORTED, finding(findingEnriched="Partial", investigate="true")), {"PartiallyEnrichedFindingsRule"}),
    ("investigation done", event(IMPORTED, finding(findingEnriched="True", investigate="complete")), set()),
    ("another source", {**event(IMPORTED, finding()), "source": "aws.guardduty"}, set()),
    ("another source and type", event("GuardDuty Finding", finding(), source="aws.guardduty"), set()),
    ("the new hub's OCSF finding", event("Findings Imported V2", ocsf_finding()), {"FindingsImportedV2Rule"}),
    # The loop guard for the new hub is the enricher's (the comment's marker), not the pattern's.
    ("the new hub's finding with our comment", event("Findings Imported V2", ocsf_finding(comment="[securityhub-enricher] x")), {"FindingsImportedV2Rule"}),
    ("insight results", event("Security Hub Insight Results", finding()), set()),
    # Two findings, only the second unenriched. Value matches are per element (any element
    # matching is enough: see the Partial case), but "exists": false asks whether the field is
    # absent from the whole event, and it is present in the first finding: no rule matches.
    # Security Hub sends one finding per Imported event, so this cannot happen there; custom
    # actions (several findings) are delivered by rule (b) whatever their fields.
    ("two findings, only the second unenriched", event(IMPORTED, finding(findingEnriched="True"), finding("444455556666")), set()),
    ("two findings, only the first unenriched", event(IMPORTED, finding(), finding("444455556666", findingEnriched="True")), set()),
    ("two findings, the second partial", event(IMPORTED, finding(findingEnriched="True"), finding("444455556666", findingEnriched="Partial")), {"PartiallyEnrichedFindingsRule"}),
]


def resolve(path: str, document: Any) -> Any:
    """Evaluates the simple JSONPath subset EventBridge's PartitionKeyPath uses here."""
    if not path.startswith("$."):
        raise ValueError(path)
    value = document
    for part in path[2:].split("."):
        name, *indexes = re.findall(r"[^\[\]]+", part)
        value = value[name]
        for index in indexes:
            value = value[int(index)]
    return value


def stream_rules(template: dict, region: str = "us-east-1", **parameters: str) -> dict[str, dict]:
    """The rules that feed the findings stream, as deployed with these parameters (patterns resolved)."""
    stack = Stack(template, {**REQUIRED_PARAMETERS, **parameters}, region=region)
    stream = stack.arn("FindingsStream")
    return {
        name: r["Properties"]
        for name, r in stack.resources("AWS::Events::Rule").items()
        if any(t["Arn"] == stream for t in r["Properties"]["Targets"])
    }


class PatternTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        template = load(MAIN)
        # The rules that feed the findings stream; AccountChangesRule is AccountEventsTest's.
        cls.raw_rules = {
            name: r["Properties"]
            for name, r in resources(template, "AWS::Events::Rule").items()
            if any(t["Arn"] == {"Fn::GetAtt": ["FindingsStream", "Arn"]} for t in r["Properties"]["Targets"])
        }
        cls.rules = stream_rules(template)
        cls.match = staticmethod(matcher())

    def matching(self, sample: dict) -> set[str]:
        return {name for name, rule in self.rules.items() if self.match(sample, rule["EventPattern"])}

    def test_the_four_rules(self):
        self.assertEqual(
            set(self.rules),
            {"UnenrichedFindingsRule", "PartiallyEnrichedFindingsRule", "CustomActionRule", "InvestigationRequestedRule",
             "FindingsImportedV2Rule"},
        )

    def test_samples_match_exactly_the_expected_rules(self):
        for about, sample, expected in CASES:
            with self.subTest(about):
                self.assertEqual(self.matching(sample), expected)

    def test_every_rule_is_reached_by_some_sample(self):
        reached = set().union(*(expected for _, _, expected in CASES))
        self.assertEqual(reached, set(self.rules))

    def test_single_finding_events_reach_the_stream_at_most_once(self):
        for about, sample, _ in CASES:
            if len(sample["detail"]["findings"]) == 1:
                self.assertLessEqual(len(self.matching(sample)), 1, about)

    def test_every_rule_targets_the_stream_keyed_by_account(self):
        self.assertEqual(set(self.raw_rules), set(self.rules))
        for name, rule in self.raw_rules.items():
            (target,) = rule["Targets"]
            self.assertEqual(target["Arn"], {"Fn::GetAtt": ["FindingsStream", "Arn"]}, name)
            path = PARTITION_KEY_PATHS.get(name, PARTITION_KEY_PATH)
            self.assertEqual(target["KinesisParameters"]["PartitionKeyPath"], path, name)
            self.assertEqual(target["RoleArn"], {"Fn::GetAtt": ["EventsToStreamRole", "Arn"]}, name)

    def test_the_partition_key_is_the_first_findings_account(self):
        for about, sample, expected in CASES:
            for rule in expected:
                first = sample["detail"]["findings"][0]
                account = first["cloud"]["account"]["uid"] if "cloud" in first else first["AwsAccountId"]
                self.assertEqual(resolve(PARTITION_KEY_PATHS.get(rule, PARTITION_KEY_PATH), sample), account, about)

    def test_investigator_stream_filter_passes_new_jobs_only(self):
        template = load(MAIN)
        events = template["Resources"]["InvestigatorFunction"]["Properties"]["Events"]
        (filter_,) = events["NewJobs"]["Properties"]["FilterCriteria"]["Filters"]
        pattern = json.loads(filter_["Pattern"])
        record = {"eventID": "1", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
                  "dynamodb": {"Keys": {"JobId": {"S": "j"}}, "NewImage": {"JobId": {"S": "j"}}, "StreamViewType": "NEW_IMAGE"}}
        self.assertTrue(self.match({**record, "eventName": "INSERT"}, pattern))
        self.assertFalse(self.match({**record, "eventName": "MODIFY"}, pattern))
        self.assertFalse(self.match({**record, "eventName": "REMOVE"}, pattern))


class RegionTest(unittest.TestCase):
    """Where to deploy with cross-Region aggregation, and no finding enriched twice.

    With aggregation, the home Region's bus carries the Imported events of the linked Regions'
    findings too (Security Hub user guide, "Security Hub event types in EventBridge"), and updates
    made in the home Region replicate back ("Understanding cross-Region aggregation"). So a
    finding of a linked Region is an event in its own Region and in the home Region: one stack in
    the home Region with FindingRegions = all sees it once; stacks in several Regions must each
    take only their own Region's findings (this-region)."""

    HOME, LINKED = "us-east-1", "us-west-2"

    @classmethod
    def setUpClass(cls):
        cls.template = load(MAIN)
        cls.match = staticmethod(matcher())

    def aggregated(self, finding_region: str, *extra: str) -> list[tuple[str, dict]]:
        """(bus Region, event) for every bus an Imported event of a finding from `finding_region` reaches."""
        f = finding(findingEnriched="Partial") if "partial" in extra else finding()
        f["Region"] = finding_region
        sample = {**event(IMPORTED, f), "region": finding_region}
        buses = [finding_region] if finding_region == self.HOME else [finding_region, self.HOME]
        return [(bus, sample) for bus in buses]

    def deliveries(self, stacks: dict[str, str], finding_region: str, *extra: str) -> int:
        """How many times the stacks ({Region: FindingRegions}) receive the finding."""
        count = 0
        for bus, sample in self.aggregated(finding_region, *extra):
            if bus in stacks:
                rules = stream_rules(self.template, region=bus, FindingRegions=stacks[bus])
                count += sum(1 for rule in rules.values() if self.match(sample, rule["EventPattern"]))
        return count

    def test_the_parameter_filters_rules_a_and_c_only(self):
        everywhere = stream_rules(self.template)
        local = stream_rules(self.template, FindingRegions="this-region")
        for name in ("UnenrichedFindingsRule", "PartiallyEnrichedFindingsRule", "InvestigationRequestedRule"):
            self.assertNotIn("Region", everywhere[name]["EventPattern"]["detail"]["findings"], name)
            self.assertEqual(local[name]["EventPattern"]["detail"]["findings"]["Region"], ["us-east-1"], name)
        self.assertEqual(local["CustomActionRule"]["EventPattern"], everywhere["CustomActionRule"]["EventPattern"],
                         "a custom action event exists only in the Region where the analyst acted")

    def test_one_stack_in_the_home_region_sees_every_finding_once(self):
        for region in (self.HOME, self.LINKED):
            self.assertEqual(self.deliveries({self.HOME: "all"}, region), 1, region)
            self.assertEqual(self.deliveries({self.HOME: "all"}, region, "partial"), 1, region)

    def test_stacks_in_several_regions_see_every_finding_once(self):
        stacks = {self.HOME: "this-region", self.LINKED: "this-region"}
        for region in (self.HOME, self.LINKED):
            self.assertEqual(self.deliveries(stacks, region), 1, region)

    def test_a_linked_region_finding_is_matched_twice_only_by_the_forbidden_mix(self):
        """Why the parameter's description and pipes/README.md forbid `all` beside other stacks."""
        self.assertEqual(self.deliveries({self.HOME: "all", self.LINKED: "all"}, self.LINKED), 2)
        self.assertEqual(self.deliveries({self.HOME: "all", self.LINKED: "this-region"}, self.LINKED), 2)
        self.assertEqual(self.deliveries({self.HOME: "this-region", self.LINKED: "this-region"}, self.LINKED), 1)

    def test_the_readme_says_where_to_deploy(self):
        readme = README.read_text()
        for needle in ("home Region", "`FindingRegions`", "replicate", "this-region"):
            mentions(self, readme, needle, "pipes/README.md")


def cloudtrail(source: str, name: str, account: str = "111122223333", **parameters: Any) -> dict:
    return {
        "version": "0", "id": "7a3e0c7e-0000-0000-0000-000000000000", "detail-type": "AWS API Call via CloudTrail",
        "source": "aws." + source.split(".")[0], "account": account, "time": "2026-11-22T07:00:00Z",
        "region": "us-east-1", "resources": [],
        "detail": {"eventVersion": "1.08", "eventSource": source, "eventName": name, "awsRegion": "us-east-1",
                   "requestParameters": parameters, "eventType": "AwsApiCall", "managementEvent": True},
    }


class AccountEventsTest(unittest.TestCase):
    """Both ends of the account-change forwarding: the management account's rule and the
    enricher account's, against the calls CHANGES_RS handles (WATCHED_CALLS)."""

    @classmethod
    def setUpClass(cls):
        cls.main = load(MAIN)
        cls.management = load(MANAGEMENT)
        cls.receiving = cls.main["Resources"]["AccountChangesRule"]["Properties"]
        cls.forwarding = cls.management["Resources"]["AccountChangesForwardingRule"]["Properties"]
        cls.watched = re.findall(r'\("([a-z.]+\.amazonaws\.com)", "(\w+)"\)', CHANGES_RS.read_text())
        cls.match = staticmethod(matcher())

    def test_the_watched_calls_are_found(self):
        self.assertIn(("organizations.amazonaws.com", "MoveAccount"), self.watched)

    def test_both_rules_select_exactly_the_watched_calls(self):
        for rule in (self.receiving, self.forwarding):
            detail = rule["EventPattern"]["detail"]
            self.assertEqual(set(detail["eventName"]), {name for _, name in self.watched})
            self.assertEqual(set(detail["eventSource"]), {source for source, _ in self.watched})

    def test_the_rules_differ_only_in_whose_events_they_accept(self):
        receiving = dict(self.receiving["EventPattern"])
        self.assertEqual(receiving.pop("account"), [{"Ref": "ManagementAccountId"}])
        self.assertEqual(receiving, self.forwarding["EventPattern"])

    def test_samples(self):
        pattern = json.loads(json.dumps(self.receiving["EventPattern"]))
        pattern["account"] = ["111122223333"]
        for source, name in self.watched:
            with self.subTest(name):
                self.assertTrue(self.match(cloudtrail(source, name, accountId="222233334444"), pattern))
                self.assertTrue(self.match(cloudtrail(source, name), self.forwarding["EventPattern"]))
                self.assertFalse(self.match(cloudtrail(source, name, account="999988887777"), pattern), "not the management account")
        for sample in (cloudtrail("organizations.amazonaws.com", "CreateOrganizationalUnit"),
                       cloudtrail("iam.amazonaws.com", "TagResource"),
                       event(IMPORTED, finding())):
            self.assertFalse(self.match(sample, pattern))

    def test_wiring(self):
        (target,) = self.receiving["Targets"]
        self.assertEqual(target["Arn"], {"Ref": "AccountEventsFunction.Alias"})
        permission = self.main["Resources"]["AccountEventsPermission"]["Properties"]
        self.assertEqual(permission["SourceArn"], {"Fn::GetAtt": ["AccountChangesRule", "Arn"]})
        self.assertEqual(permission["Principal"], "events.amazonaws.com")
        policy = self.main["Resources"]["ManagementEventsBusPolicy"]["Properties"]["Statement"]
        self.assertEqual(policy["Principal"], {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${ManagementAccountId}:root"}})
        (forward,) = self.forwarding["Targets"]
        self.assertEqual(forward["Arn"], {"Ref": "EnricherEventBusArn"})

    def test_account_events_may_only_delete_cache_entries_and_queue_their_accounts(self):
        role = self.main["Resources"]["AccountEventsRole"]
        actions = {a for st in statements({"Resources": {"r": role}}) for a in as_list(st["Action"])}
        self.assertEqual(actions, {
            "sts:AssumeRole", "logs:CreateLogStream", "logs:PutLogEvents", "dynamodb:BatchWriteItem",
            "dynamodb:UpdateItem",  # the refresh queue only (below)
            "sqs:SendMessage",  # the on-failure destination
            "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey",  # customer managed key only
        })
        (update,) = [st for st in statements({"Resources": {"r": role}}) if "dynamodb:UpdateItem" in as_list(st["Action"])]
        self.assertEqual(update["Resource"], {"Fn::GetAtt": ["CacheTable", "Arn"]})
        self.assertEqual(update["Condition"], {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [schema_key("REFRESH_QUEUE_KEY")]}})

    def test_failed_invocations_are_kept(self):
        """EventBridge invokes account-events asynchronously: a delivery failure goes to the rule
        target's dead-letter queue, a function error (after Lambda's retries) to the on-failure
        destination, the same queue, which the function's role may write to."""
        function = self.main["Resources"]["AccountEventsFunction"]["Properties"]
        invoke = function["EventInvokeConfig"]
        self.assertEqual(invoke["DestinationConfig"]["OnFailure"],
                         {"Type": "SQS", "Destination": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}})
        (target,) = self.receiving["Targets"]
        self.assertEqual(target["DeadLetterConfig"], {"Arn": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}})
        stack = Stack(self.main, REQUIRED_PARAMETERS)
        request = Request("sqs:SendMessage", [stack.arn("EventsDeadLetterQueue")])
        self.assertTrue(evaluate(iam_check.role_statements(stack, "AccountEventsRole"), request).allowed)


# ------------------------------------------------------------------------------------------
# Customer managed key, end to end
# ------------------------------------------------------------------------------------------

# Every resource that stores data, and the service that encrypts it with KmsKeyArn.
ENCRYPTED = {
    "FindingsStream": "kinesis",
    "CacheTable": "dynamodb",
    "JobsTable": "dynamodb",
    "DeadLetterQueue": "sqs",
    "EventsDeadLetterQueue": "sqs",
    "EnricherLogGroup": "logs",
    "InvestigatorLogGroup": "logs",
    "AccountEventsLogGroup": "logs",
    "RefresherLogGroup": "logs",
    "AlarmTopic": "sns",
}
STORING_TYPES = {"AWS::Kinesis::Stream", "AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::Logs::LogGroup", "AWS::SNS::Topic"}

# What a caller needs of the key, by service and action (the services' KMS documentation: Kinesis
# producers GenerateDataKey, consumers Decrypt; SQS senders GenerateDataKey and Decrypt, receivers
# Decrypt; DynamoDB callers, through the service, Decrypt and DescribeKey to read and also Encrypt
# and GenerateDataKey to write).
KEY_NEEDS = {
    ("kinesis", "PutRecord"): {"kms:GenerateDataKey"},
    ("kinesis", "PutRecords"): {"kms:GenerateDataKey"},
    ("kinesis", "GetRecords"): {"kms:Decrypt"},
    ("sqs", "SendMessage"): {"kms:GenerateDataKey", "kms:Decrypt"},
    ("sqs", "ReceiveMessage"): {"kms:Decrypt"},
    **{("dynamodb", a): {"kms:Decrypt", "kms:DescribeKey"} for a in ("BatchGetItem", "GetItem", "Scan", "Query", "GetRecords")},
    **{("dynamodb", a): {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"}
       for a in ("BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem")},
}

ALL_ON = {**REQUIRED_PARAMETERS, "EnableInvestigations": "true", "AccountEventsFromManagement": "true",
          "AlarmEmail": "secops@example.com"}


def key_of(resource: dict) -> Any:
    properties = resource["Properties"]
    kind = resource["Type"]
    if kind == "AWS::Kinesis::Stream":
        return properties["StreamEncryption"]["KeyId"]
    if kind == "AWS::DynamoDB::Table":
        return properties["SSESpecification"].get("KMSMasterKeyId")
    if kind in ("AWS::SQS::Queue", "AWS::SNS::Topic"):
        return properties.get("KmsMasterKeyId")
    if kind == "AWS::Logs::LogGroup":
        return properties.get("KmsKeyId")
    raise AssertionError(kind)


def principals(stack: Stack) -> dict[str, list[dict]]:
    """Every identity policy of the stack: the roles' and the operator policy's statements."""
    found = {role: iam_check.role_statements(stack, role) for role in stack.resources("AWS::IAM::Role")}
    for name, policy in stack.resources("AWS::IAM::ManagedPolicy").items():
        found[name] = iam_check.policy_statements(policy["Properties"]["PolicyDocument"])
    return found


def key_policy_from_readme() -> dict:
    text = README.read_text()
    section = re.search(r"### Customer managed key\n(.*?)(?=\n### |\n## )", text, re.S)
    if section is None:
        raise AssertionError('pipes/README.md has no "### Customer managed key" section')
    block = re.search(r"```json\n(.*?)\n```", section.group(1), re.S)
    if block is None:
        raise AssertionError("the Customer managed key section shows no ```json key policy")
    return json.loads(block.group(1))


class KmsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.template = load(MAIN)
        cls.on = Stack(cls.template, {**ALL_ON, "KmsKeyArn": iam_check.KMS_KEY})
        cls.off = Stack(cls.template, ALL_ON)

    def test_one_key_encrypts_every_store(self):
        stores = {n for n, r in self.template["Resources"].items() if r["Type"] in STORING_TYPES}
        self.assertEqual(stores, set(ENCRYPTED), "a resource that stores data is missing from ENCRYPTED")
        for name in ENCRYPTED:
            self.assertEqual(key_of(self.on.resources()[name]), iam_check.KMS_KEY, name)

    def test_without_a_key_aws_keys_that_need_no_key_policy(self):
        resources = self.off.resources()
        self.assertEqual(key_of(resources["FindingsStream"]), "alias/aws/kinesis")
        for name, service in ENCRYPTED.items():
            resource = resources[name]
            if service == "dynamodb":
                self.assertEqual(resource["Properties"]["SSESpecification"], {"SSEEnabled": True}, name)
            elif service == "sqs":
                # SQS-managed encryption: EventBridge can write to it (an AWS managed KMS key's policy
                # cannot be changed to let events.amazonaws.com use it).
                self.assertIs(resource["Properties"].get("SqsManagedSseEnabled"), True, name)
                self.assertIsNone(key_of(resource), name)
            elif service in ("logs", "sns"):
                self.assertIsNone(key_of(resource), name)
        for name, statements in principals(self.off).items():
            kms = [s for s in statements if any(a.startswith("kms:") for a in as_list(s["Action"]))]
            self.assertEqual(kms, [], name)

    def needs(self, stack: Stack) -> dict[str, set[tuple[str, str]]]:
        """Per principal, the (kms action, service) pairs its grants on encrypted stores require."""
        arns = {}
        for name, service in ENCRYPTED.items():
            if stack.exists(name):
                arns[stack.arn(name)] = service
                if service == "dynamodb":
                    arns[stack.get_att(name, "StreamArn")] = service
        required: dict[str, set[tuple[str, str]]] = {}
        for principal, statements in principals(stack).items():
            found = required.setdefault(principal, set())
            for statement in statements:
                if statement["Effect"] != "Allow":
                    continue
                for resource in as_list(statement.get("Resource")):
                    service = arns.get(resource)
                    if service is None:
                        continue
                    for action in as_list(statement["Action"]):
                        prefix, _, operation = action.partition(":")
                        for kms_action in KEY_NEEDS.get((prefix, operation), set()):
                            found.add((kms_action, service))
        return required

    def test_every_reader_and_writer_holds_the_key_grant_it_needs(self):
        required = self.needs(self.on)
        self.assertTrue(required["EventsToStreamRole"] and required["PipeRole"] and required["EnricherRole"])
        for principal, pairs in required.items():
            statements = principals(self.on)[principal]
            for kms_action, service in sorted(pairs):
                request = Request(kms_action, [iam_check.KMS_KEY], {"kms:viaservice": [f"{service}.us-east-1.amazonaws.com"]})
                decision = evaluate(statements, request)
                self.assertTrue(decision.allowed, f"{principal} needs {kms_action} via {service}: {decision.reason}")

    def test_and_no_more_than_that(self):
        required = self.needs(self.on)
        for principal, statements in principals(self.on).items():
            for statement in statements:
                actions = [a for a in as_list(statement["Action"]) if a.startswith("kms:")]
                if not actions:
                    continue
                self.assertEqual(statement["Resource"], iam_check.KMS_KEY, principal)
                services = as_list(statement["Condition"]["StringEquals"]["kms:ViaService"])
                self.assertEqual(set(statement["Condition"]), {"StringEquals"}, f"{principal}: only through a service")
                for action in actions:
                    for via in services:
                        service = via.split(".")[0]
                        self.assertIn((action, service), required.get(principal, set()), f"{principal}: {action} via {via} is more than it needs")

    def test_a_key_of_another_region_is_refused_before_anything_is_created(self):
        template = load(MAIN)
        rule = template["Rules"]["KeyInThisRegion"]
        key = "arn:aws:kms:{}:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        for stack_region, key_region, refused in [("us-east-1", "us-east-1", False), ("eu-west-1", "us-east-1", True),
                                                  ("eu-west-1", "eu-west-1", False), ("ap-southeast-2", "ap-southeast-1", True)]:
            stack = Stack(template, {**REQUIRED_PARAMETERS, "KmsKeyArn": key.format(key_region)}, region=stack_region)
            self.assertTrue(stack.resolve(rule["RuleCondition"]))
            (assertion,) = rule["Assertions"]
            self.assertEqual(not stack.resolve(assertion["Assert"]), refused, (stack_region, key_region))
        self.assertFalse(Stack(template, REQUIRED_PARAMETERS).resolve(rule["RuleCondition"]), "no key, nothing to check")

    def test_the_key_policy_is_generated_and_is_the_stacks_output_and_the_readmes(self):
        """pipes.key_policy prints it for any account and Region, the stack's output KeyPolicy is the
        same document filled in by CloudFormation, and the README shows the us-east-1 example."""
        for account, region in [("111122223333", "us-east-1"), ("444455556666", "eu-central-1")]:
            generated = key_policy.key_policy(account, region)
            stack = Stack(load(MAIN), {**REQUIRED_PARAMETERS, "KmsKeyArn": f"arn:aws:kms:{region}:{account}:key/k"}, account=account, region=region)
            output = json.loads(stack.resolve(load(MAIN)["Outputs"]["KeyPolicy"]["Value"]))
            self.assertEqual(output, generated, region)
        self.assertEqual(key_policy_from_readme(), key_policy.key_policy("111122223333", "us-east-1"))
        mentions(self, README.read_text(), "python3 -m pipes.key_policy", "pipes/README.md")
        self.assertEqual(load(MAIN)["Outputs"]["KeyPolicy"]["Condition"], "HasKmsKey")

    def test_the_readme_key_policy_lets_the_services_use_the_key(self):
        """The encrypted stores that services write on their own (not through a role): CloudWatch Logs
        (log groups), EventBridge (the events dead-letter queue) and CloudWatch (alarms to the topic).
        The key policy also has to enable IAM policies, through which the roles above get their grants."""
        account, region = "444455556666", "eu-central-1"
        policy = key_policy.key_policy(account, region)["Statement"]
        role = f"arn:aws:iam::{account}:role/securityhub-enricher-{region}"
        self.assertTrue(evaluate(policy, Request("kms:Decrypt", ["*"], principal={"AWS": role})).allowed, "IAM policies enabled")
        log_group = f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/securityhub-enricher-enricher"
        for action in ("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey", "kms:DescribeKey"):
            request = Request(action, ["*"], {"kms:encryptioncontext:aws:logs:arn": [log_group]}, principal={"Service": f"logs.{region}.amazonaws.com"})
            self.assertTrue(evaluate(policy, request).allowed, f"CloudWatch Logs {action}")
        other = Request("kms:Decrypt", ["*"], {"kms:encryptioncontext:aws:logs:arn": [f"arn:aws:logs:{region}:777788889999:log-group:x"]},
                        principal={"Service": f"logs.{region}.amazonaws.com"})
        self.assertFalse(evaluate(policy, other).allowed, "only this account's log groups")
        for service in ("events.amazonaws.com", "cloudwatch.amazonaws.com"):
            for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                request = Request(action, ["*"], principal={"Service": service})
                self.assertTrue(evaluate(policy, request).allowed, f"{service} {action}")
            self.assertFalse(evaluate(policy, Request("kms:ScheduleKeyDeletion", ["*"], principal={"Service": service})).allowed)
        for service in ("sqs.amazonaws.com", "lambda.amazonaws.com"):
            self.assertFalse(evaluate(policy, Request("kms:Decrypt", ["*"], principal={"Service": service})).allowed, service)


# ------------------------------------------------------------------------------------------
# Nothing fails silently: dead-letter queues and alarms
# ------------------------------------------------------------------------------------------


def both_stacks(**extra: str) -> list[Stack]:
    return [
        Stack(load(MAIN), {**ALL_ON, **extra}),
        Stack(load(MANAGEMENT), {**MANAGEMENT_PARAMETERS, "EnricherEventBusArn": "arn:aws:events:us-east-1:111122223333:event-bus/default",
                                 "AlarmEmail": "secops@example.com", **{k: v for k, v in extra.items() if k in ("AlarmTopicArn",)}},
              account=iam_check.MANAGEMENT_ACCOUNT),
    ]


def alarms_on(stack: Stack, namespace: str, metric: str) -> list[tuple[str, dict]]:
    found = []
    for name, alarm in stack.resources("AWS::CloudWatch::Alarm").items():
        properties = alarm["Properties"]
        stats = [properties] + [m["MetricStat"]["Metric"] for m in properties.get("Metrics", []) if "MetricStat" in m]
        for stat in stats:
            if stat.get("Namespace") == namespace and stat.get("MetricName") == metric:
                found.append((name, {d["Name"]: d["Value"] for d in stat.get("Dimensions", [])}))
    return found


# A CloudWatch Logs filter pattern of `?term ?"a phrase"` alternatives: matches a log event that
# contains any of them.
def filter_matches(pattern: str, line: str) -> bool:
    terms = re.findall(r'\?(?:"([^"]+)"|(\S+))', pattern)
    if not terms or re.sub(r'\?(?:"[^"]+"|\S+)', "", pattern).strip():
        raise AssertionError(f"not a ?term pattern: {pattern}")
    return any((quoted or bare) in line for quoted, bare in terms)


def rearmed_alarms(stack: Stack) -> dict[str, dict]:
    """Alarm name -> the schedule that puts it back to INSUFFICIENT_DATA (so that it notifies again)."""
    found = {}
    for name, schedule in stack.resources("AWS::Scheduler::Schedule").items():
        target = schedule["Properties"]["Target"]
        if target["Arn"] != "arn:aws:scheduler:::aws-sdk:cloudwatch:setAlarmState":
            continue
        body = json.loads(target["Input"])
        self_alarm = next(a for a in stack.resources("AWS::CloudWatch::Alarm") if stack.ref(a) == body["AlarmName"])
        found[self_alarm] = {"schedule": name, **schedule["Properties"], "body": body}
    return found


def metric_math(expression: str, values: dict[str, float | None]) -> float | None:
    """Evaluates the few metric-math functions our alarms use (IF, FILL, AND, comparisons,
    + and -) on one datapoint per metric; None is a missing datapoint."""
    class Missing(Exception):
        pass

    def fill(value, default):
        return default if value is None else value

    def if_(condition, yes, no):
        return yes if condition else no

    python = expression.replace("FILL(", "fill(").replace("IF(", "if_(").replace(" AND ", " and ").replace(" OR ", " or ")
    if re.search(r"[A-Z]{2,}\(", python):
        raise AssertionError(f"metric math function not modelled: {expression}")
    scope = {"fill": fill, "if_": if_, **values}
    try:
        return float(eval(python, {"__builtins__": {}}, scope))  # noqa: S307 (our own template's expressions)
    except TypeError:
        return None  # a missing datapoint used without FILL


def alarm_breaches(alarm: dict, values: dict[str, float | None]) -> bool | None:
    """One datapoint of `alarm`'s watched value against its threshold; None = missing."""
    properties = alarm["Properties"]
    (watched,) = [m for m in properties["Metrics"] if m.get("ReturnData")]
    value = metric_math(watched["Expression"], values)
    if value is None:
        return None
    threshold = float(properties["Threshold"])
    return {"GreaterThanThreshold": value > threshold, "GreaterThanOrEqualToThreshold": value >= threshold,
            "LessThanThreshold": value < threshold}[properties["ComparisonOperator"]]


class AlarmsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.templates = {"template.yaml": load(MAIN), "management-account.yaml": load(MANAGEMENT)}

    def test_alarms_reach_someone_by_default(self):
        for stack in both_stacks():
            topic = stack.arn("AlarmTopic")
            self.assertIn("AlarmEmailSubscription", stack.resources())
            self.assertEqual(stack.resources()["AlarmEmailSubscription"]["Properties"]["Protocol"], "email")
            alarms = stack.resources("AWS::CloudWatch::Alarm")
            self.assertTrue(alarms)
            rearmed = rearmed_alarms(stack)
            for name, alarm in alarms.items():
                self.assertEqual(alarm["Properties"]["AlarmActions"], [topic], name)
                # A re-armed alarm has no OKActions: re-arming a healthy one would send an OK each time.
                self.assertEqual(alarm["Properties"].get("OKActions"), None if name in rearmed else [topic], name)
                self.assertTrue(alarm["Properties"].get("AlarmDescription"), name)
        given = "arn:aws:sns:us-east-1:111122223333:paging"
        for stack in both_stacks(AlarmTopicArn=given):
            self.assertNotIn("AlarmTopic", stack.resources())
            for name, alarm in stack.resources("AWS::CloudWatch::Alarm").items():
                self.assertEqual(alarm["Properties"]["AlarmActions"], [given], name)

    def test_deploying_without_a_destination_is_refused(self):
        for name, template in self.templates.items():
            rule = template["Rules"]["AlarmsReachSomeone" if name == "template.yaml" else "ForwardingAlarmsReachSomeone"]
            (assertion,) = rule["Assertions"]
            for topic, email, ok in [("", "", False), ("arn:aws:sns:us-east-1:1:t", "", True), ("", "a@b.example", True)]:
                parameters = {"AlarmTopicArn": topic, "AlarmEmail": email}
                parameters.update(REQUIRED_PARAMETERS if name == "template.yaml" else {**MANAGEMENT_PARAMETERS, "EnricherEventBusArn": "arn:aws:events:us-east-1:111122223333:event-bus/default"})
                stack = Stack(template, parameters)
                if "RuleCondition" in rule:
                    self.assertTrue(stack.resolve(rule["RuleCondition"]))
                self.assertEqual(stack.resolve(assertion["Assert"]), ok, f"{name} {parameters}")

    def test_every_rule_target_has_a_dead_letter_queue_and_failures_alarm(self):
        for stack in both_stacks():
            queues = {stack.arn(q) for q in stack.resources("AWS::SQS::Queue")}
            rules = stack.resources("AWS::Events::Rule")
            self.assertTrue(rules)
            for name, rule in rules.items():
                for target in rule["Properties"]["Targets"]:
                    self.assertIn(target.get("DeadLetterConfig", {}).get("Arn"), queues, f"{name} target {target['Id']}")
                alarmed = [a for a, dims in alarms_on(stack, "AWS/Events", "FailedInvocations") if dims == {"RuleName": stack.ref(name)}]
                self.assertEqual(len(alarmed), 1, f"{name}: one FailedInvocations alarm")
            # The queue policies let EventBridge write for these rules, and no other.
            for policy in stack.resources("AWS::SQS::QueuePolicy").values():
                statements_ = policy["Properties"]["PolicyDocument"]["Statement"]
                (queue_url,) = policy["Properties"]["Queues"]
                queue = next(stack.arn(q) for q in stack.resources("AWS::SQS::Queue") if stack.ref(q) == queue_url)
                senders = [n for n, r in rules.items() if any(t.get("DeadLetterConfig", {}).get("Arn") == queue for t in r["Properties"]["Targets"])]
                self.assertTrue(senders)
                for rule in senders:
                    request = Request("sqs:SendMessage", [queue], {"aws:sourcearn": [stack.arn(rule)]}, principal={"Service": "events.amazonaws.com"})
                    self.assertTrue(evaluate(statements_, request).allowed, rule)
                foreign = Request("sqs:SendMessage", [queue], {"aws:sourcearn": ["arn:aws:events:us-east-1:444455556666:rule/x"]},
                                  principal={"Service": "events.amazonaws.com"})
                self.assertFalse(evaluate(statements_, foreign).allowed)
        # Conditional rules and their alarms come and go together.
        main = self.templates["template.yaml"]["Resources"]
        for name, rule in main.items():
            if rule["Type"] == "AWS::Events::Rule":
                self.assertEqual(main[f"{name}FailedInvocationsAlarm"].get("Condition"), rule.get("Condition"), name)

    def test_every_queue_has_a_depth_alarm(self):
        for stack in both_stacks():
            alarmed = {dims.get("QueueName") for _, dims in alarms_on(stack, "AWS/SQS", "ApproximateNumberOfMessagesVisible")}
            for queue in stack.resources("AWS::SQS::Queue"):
                self.assertIn(stack.get_att(queue, "QueueName"), alarmed, queue)

    def test_every_function_pipe_and_degradation_is_alarmed(self):
        (stack, _) = both_stacks()
        functions = {dims.get("FunctionName") for _, dims in alarms_on(stack, "AWS/Lambda", "Errors")}
        for function in stack.resources("AWS::Serverless::Function"):
            self.assertIn(stack.ref(function), functions, function)
        pipes = [dims for _, dims in alarms_on(stack, "AWS/EventBridge/Pipes", "ExecutionFailed")]
        self.assertEqual(pipes, [{"PipeName": stack.ref("EnricherPipe")}])
        self.assertTrue(alarms_on(stack, "AWS/EventBridge/Pipes", "ExecutionTimeout"))
        for metric, parameter in [("FindingsEnrichedPartial", "PartialEnrichmentAlarmThreshold"), ("FindingsDeferred", "PartialEnrichmentAlarmThreshold"), ("LookupFailures", "LookupFailuresAlarmThreshold")]:
            (name, dims), = alarms_on(stack, NAMESPACE, metric)
            self.assertEqual(dims, {"Function": "enricher"})
            raw = self.templates["template.yaml"]["Resources"][name]["Properties"]
            self.assertEqual(raw["Threshold"], {"Ref": parameter}, name)

    def test_access_denied_pages_at_the_first_occurrence(self):
        (stack, _) = both_stacks()
        filters = stack.resources("AWS::Logs::MetricFilter")
        groups = {f["Properties"]["LogGroupName"] for f in filters.values()}
        self.assertEqual(groups, {stack.ref(g) for g in stack.resources("AWS::Logs::LogGroup")}, "every function's log group")
        metrics = {(t["MetricNamespace"], t["MetricName"]) for f in filters.values() for t in f["Properties"]["MetricTransformations"]}
        ((namespace, metric),) = metrics
        ((name, dims),) = alarms_on(stack, namespace, metric)
        alarm = stack.resources()[name]["Properties"]
        self.assertEqual((alarm["Threshold"], alarm["ComparisonOperator"], alarm["Statistic"], alarm["EvaluationPeriods"]),
                         (0, "GreaterThanThreshold", "Sum", 1))
        # The lines the code writes when something is denied (their messages are pinned to the code).
        mentions(self, DIRECTORY_RS.read_text(), '"account lookup failed"', str(DIRECTORY_RS))
        mentions(self, ORGANIZATIONS_RS.read_text(), "GetAlternateContact: access denied", str(ORGANIZATIONS_RS))
        denied = [
            '{"level":"WARN","fields":{"account_id":"111122223333","error":"organizations DescribeAccount failed: service error: AccessDeniedException: You don\'t have permissions to access this resource.","message":"account lookup failed"}}',
            '{"level":"WARN","fields":{"account_id":"111122223333","message":"GetAlternateContact: access denied; contact cached as unknown"}}',
            '{"level":"WARN","fields":{"error":"account GetAlternateContact failed: failed to load credentials: AccessDenied: User: arn:aws:sts::111122223333:assumed-role/x is not authorized to perform: sts:AssumeRole","message":"account lookup failed"}}',
        ]
        fine = [
            '{"level":"INFO","fields":{"message":"records 605 = processed 603 + skipped 1 + poison 1 + failed 0"}}',
            '{"level":"WARN","fields":{"error":"organizations DescribeAccount failed: TooManyRequestsException","message":"account lookup failed"}}',
        ]
        for f in filters.values():
            pattern = f["Properties"]["FilterPattern"]
            for line in denied:
                self.assertTrue(filter_matches(pattern, line), line)
            for line in fine:
                self.assertFalse(filter_matches(pattern, line), line)

    def test_silence_is_breaching_where_it_means_stopped(self):
        """The pipe polls the stream all the time, the refresher completes a run every interval and
        the investigator runs every minute: their silence is a stop, and alarms. Elsewhere no data is
        an idle system (the SQS, Events and Pipes metrics and ours are sent only with activity)."""
        (stack, management) = both_stacks()
        breaching = {n for st in (stack, management) for n, a in st.resources("AWS::CloudWatch::Alarm").items()
                     if a["Properties"]["TreatMissingData"] == "breaching"}
        self.assertEqual(breaching, {"IteratorAgeAlarm", "RefresherStalledAlarm", "InvestigatorNotRunningAlarm"})

    def test_findings_in_the_stream_but_no_enricher_run_for_15_minutes(self):
        (stack, _) = both_stacks()
        alarm = stack.resources()["EnricherNotRunningAlarm"]
        stats = {m["Id"]: m["MetricStat"] for m in alarm["Properties"]["Metrics"] if "MetricStat" in m}
        self.assertEqual(stats["incoming"]["Metric"], {"Namespace": "AWS/Kinesis", "MetricName": "IncomingRecords",
                                                       "Dimensions": [{"Name": "StreamName", "Value": stack.ref("FindingsStream")}]})
        self.assertEqual(stats["invocations"]["Metric"], {"Namespace": "AWS/Lambda", "MetricName": "Invocations",
                                                          "Dimensions": [{"Name": "FunctionName", "Value": stack.ref("EnricherFunction")}]})
        self.assertEqual({s["Period"] for s in stats.values()}, {900})
        self.assertEqual((stats["incoming"]["Stat"], stats["invocations"]["Stat"]), ("Sum", "Sum"))
        self.assertEqual(alarm["Properties"]["EvaluationPeriods"], 1)
        for incoming, invocations, fires in [(10, 0, True), (10, None, True), (1, 3, False), (None, None, False),
                                             (0, 0, False), (None, 2, False)]:
            self.assertEqual(bool(alarm_breaches(alarm, {"incoming": incoming, "invocations": invocations})), fires, (incoming, invocations))

    def test_the_refresher_not_completing_a_run_in_twice_its_interval(self):
        template = self.templates["template.yaml"]
        self.assertLessEqual(int(template["Parameters"]["RefreshIntervalMinutes"]["MaxValue"]) * 2 * 60, 86400,
                             "CloudWatch looks back at most one day")
        self.assertIn("RefreshRunsCompleted", code_metrics(TELEMETRY_RS.read_text()))
        mentions(self, (ROOT / "src" / "service" / "refresh.rs").read_text(), "Metric::RefreshRunsCompleted.count(", "src/service/refresh.rs")
        for interval in ("15", "60", "720"):
            stack = Stack(template, {**ALL_ON, "RefreshIntervalMinutes": interval})
            alarm = stack.resources()["RefresherStalledAlarm"]["Properties"]
            self.assertEqual((alarm["Namespace"], alarm["MetricName"], alarm["Dimensions"]),
                             (NAMESPACE, "RefreshRunsCompleted", [{"Name": "Function", "Value": "refresher"}]))
            window = alarm["Period"] * int(alarm["EvaluationPeriods"])
            self.assertEqual(window, 2 * int(interval) * 60, "twice the interval")
            self.assertEqual(alarm["DatapointsToAlarm"], alarm["EvaluationPeriods"], "every period of the window empty")
            self.assertEqual((alarm["Statistic"], alarm["ComparisonOperator"], float(alarm["Threshold"])), ("Sum", "LessThanThreshold", 1.0))
            refresher = stack.resources()["RefresherFunction"]["Properties"]
            # Runs every minute under the lease; the interval spaces passes over every finding.
            self.assertEqual(refresher["Events"]["Schedule"]["Properties"]["Schedule"], "rate(1 minute)")
            self.assertEqual(str(refresher["Environment"]["Variables"]["REFRESH_INTERVAL_MINUTES"]), interval)

    def test_pending_investigations_growing_for_an_hour(self):
        (stack, _) = both_stacks()
        alarm = stack.resources()["InvestigationBacklogAlarm"]
        properties = alarm["Properties"]
        metrics = {m["Id"]: (m["MetricStat"]["Metric"]["MetricName"], m["MetricStat"]["Metric"]["Dimensions"][0]["Value"], m["MetricStat"]["Period"])
                   for m in properties["Metrics"] if "MetricStat" in m}
        self.assertEqual(metrics, {"queued": ("InvestigationsQueued", "enricher", 900), "completed": ("InvestigationsCompleted", "investigator", 900),
                                   "failed": ("InvestigationsFailed", "investigator", 900), "notcovered": ("InvestigationsNotCovered", "investigator", 900),
                                   "joined": ("InvestigationsJoined", "investigator", 900)})
        self.assertEqual(900 * properties["EvaluationPeriods"], 3600)
        self.assertEqual(properties["DatapointsToAlarm"], properties["EvaluationPeriods"])
        zero = dict.fromkeys(metrics, 0)
        for values, fires in [({**zero, "queued": 5, "completed": 2}, True), ({**zero, "queued": 5, "completed": 3, "joined": 2}, False),
                              ({**zero, "queued": 5, "completed": None, "failed": None, "notcovered": None, "joined": None}, True),
                              ({**zero, "queued": 0, "completed": 4}, False)]:
            self.assertEqual(alarm_breaches(alarm, values), fires, values)
        investigator = stack.resources()["InvestigatorNotRunningAlarm"]["Properties"]
        self.assertEqual(investigator["Dimensions"], [{"Name": "FunctionName", "Value": stack.ref("InvestigatorFunction")}])
        self.assertEqual(investigator["Period"] * investigator["EvaluationPeriods"], 900)
        off = Stack(self.templates["template.yaml"], {**ALL_ON, "EnableInvestigations": "false"}).resources()
        self.assertNotIn("InvestigationBacklogAlarm", off)
        self.assertNotIn("InvestigatorNotRunningAlarm", off)

    def test_dead_letter_alarms_notify_again_while_messages_wait(self):
        for stack in both_stacks():
            queues = {stack.get_att(q, "QueueName") for q in stack.resources("AWS::SQS::Queue")}
            depth = {n for n, dims in alarms_on(stack, "AWS/SQS", "ApproximateNumberOfMessagesVisible") if dims.get("QueueName") in queues}
            rearmed = rearmed_alarms(stack)
            self.assertEqual(set(rearmed), depth, "every dead-letter queue alarm, and only those")
            for name, schedule in rearmed.items():
                self.assertEqual(schedule["ScheduleExpression"], f"rate({stack.parameters['DeadLetterReminderHours']} hours)")
                self.assertEqual(schedule["body"]["StateValue"], "INSUFFICIENT_DATA", "back to ALARM, and notifying, at the next evaluation")
                role = next(r for r in stack.resources("AWS::IAM::Role") if stack.arn(r) == schedule["Target"]["RoleArn"])
                trust = stack.resources()[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
                self.assertEqual([t["Principal"] for t in trust], [{"Service": "scheduler.amazonaws.com"}])
                statements_ = iam_check.role_statements(stack, role)
                self.assertTrue(evaluate(statements_, Request("cloudwatch:SetAlarmState", [stack.arn(name)])).allowed, name)
                other = f"arn:aws:cloudwatch:us-east-1:{stack.account}:alarm:RecordAgeAlarm"
                self.assertFalse(evaluate(statements_, Request("cloudwatch:SetAlarmState", [other])).allowed, "only the dead-letter alarms")

    def test_the_readme_lists_every_alarm(self):
        readme = README.read_text()
        for name, template in self.templates.items():
            for alarm, resource in template["Resources"].items():
                if resource["Type"] == "AWS::CloudWatch::Alarm":
                    mentions(self, readme, f"`{alarm}`", "pipes/README.md")


# ------------------------------------------------------------------------------------------
# Build, package and the documented deploy steps
# ------------------------------------------------------------------------------------------


def makefile_targets(text: str) -> set[str]:
    targets = set()
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z][\w.-]*(?:\s+[A-Za-z][\w.-]*)*)\s*:(?!=)", line)
        if m and not line.startswith("\t"):
            targets.update(m.group(1).split())
    return targets


def make_variable(text: str, name: str) -> str:
    m = re.search(rf"^{name}\s*[:?]?=\s*(.*)$", text, re.M)
    if m is None:
        raise AssertionError(f"Makefile has no {name} variable")
    return m.group(1).strip()


DOCS = [TOP_README, README, ROOT / "loadtest" / "README.md"]


class BuildTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.makefile = MAKEFILE.read_text()
        cls.targets = makefile_targets(cls.makefile)
        cls.template = load(MAIN)

    def test_package_builds_what_the_template_deploys(self):
        self.assertIn("package", self.targets)
        binaries = make_variable(self.makefile, "LAMBDA_BINS").split()
        code_uris = {str(f["Properties"]["CodeUri"]) for f in resources(self.template, "AWS::Serverless::Function").values()}
        self.assertEqual({f"../target/lambda/{b}/" for b in binaries}, code_uris)
        self.assertEqual(self.template["Globals"]["Function"]["Architectures"], [make_variable(self.makefile, "ARCH")])
        recipe = re.search(r"^package:.*\n((?:\t.*\n)+)", self.makefile, re.M).group(1)
        self.assertIn("cargo lambda build --release", recipe)
        self.assertIn("$(addprefix --bin ,$(LAMBDA_BINS))", recipe)
        # The operator's CLI, for the operator's own machine (host target, release).
        self.assertEqual(make_variable(self.makefile, "OPERATOR_BIN"), "enricher-admin")
        self.assertIn("cargo build --release --bin $(OPERATOR_BIN)", recipe)
        self.assertIn("test -x target/release/$(OPERATOR_BIN)", recipe)
        pins = (ROOT / "requirements-package.txt").read_text()
        self.assertRegex(pins, r"(?m)^cargo-lambda==\d+\.\d+\.\d+$")
        self.assertRegex(pins, r"(?m)^ziglang==\d+\.\d+\.\d+$")

    def test_the_permission_check_runs_after_the_rust_tests_and_cannot_pass_vacuously(self):
        prerequisites = re.search(r"^test:(.*)$", self.makefile, re.M).group(1).split()
        self.assertIn("test-permissions", prerequisites)
        self.assertLess(prerequisites.index("test-rust"), prerequisites.index("test-permissions"))
        log = make_variable(self.makefile, "CALL_LOG")
        self.assertEqual(log, "$(CURDIR)/target/observed-calls.jsonl")
        self.assertRegex(self.makefile, r"(?m)^test-rust: export LOCAL_AWS_CALL_LOG = \$\(CALL_LOG\)$")
        rust = re.search(r"^test-rust:.*\$\(STAMP\)\n((?:\t.*\n)+)", self.makefile, re.M).group(1)
        self.assertTrue(rust.startswith("\trm -f $(CALL_LOG)\n"), rust)
        check = re.search(r"^test-permissions:.*\n((?:\t.*\n)+)", self.makefile, re.M).group(1)
        self.assertIn("-m pipes.tests.iam_check --require-calls $(CALL_LOG)", check)

    def test_every_make_target_the_docs_name_exists(self):
        named = 0
        for doc in DOCS:
            text = doc.read_text()
            spans = re.findall(r"`make ([a-z][\w-]*)", text)
            blocks = [m for b in re.findall(r"```sh\n(.*?)```", text, re.S) for m in re.findall(r"(?m)^\s*make ([a-z][\w-]*)", b)]
            for target in spans + blocks:
                named += 1
                self.assertIn(target, self.targets, f"{doc.relative_to(ROOT)}: make {target}")
        self.assertGreater(named, 5)

    def test_every_file_the_deploy_commands_name_exists(self):
        for doc in (TOP_README, README):
            for block in re.findall(r"```sh\n(.*?)```", doc.read_text(), re.S):
                for path in re.findall(r"(?<![\w/.-])((?:pipes|scripts|dashboards)/[\w./-]+\.(?:yaml|json|sh)|scripts/[\w-]+)", block):
                    self.assertTrue((ROOT / path).exists(), f"{doc.relative_to(ROOT)}: {path}")

    def test_the_toolchain_is_stated(self):
        cargo = CARGO_TOML.read_text()
        rust = re.search(r'^rust-version = "([\d.]+)"', cargo, re.M).group(1)
        edition = re.search(r'^edition = "(\d+)"', cargo, re.M).group(1)
        for doc in (TOP_README, README):
            text = doc.read_text()
            mentions(self, text, f"Rust {rust}", doc.name)
            mentions(self, text, f"edition {edition}", doc.name)
            mentions(self, text, "Python 3.11", doc.name)
        self.assertEqual(sys.version_info[:2], (3, 11), "the tests' Python is the one the docs state")

    def test_no_link_points_outside_the_repository(self):
        for doc in DOCS:
            text = doc.read_text()
            where = doc.relative_to(ROOT)
            self.assertIsNone(re.search(r"https?://", text), f"{where}: a URL")
            for target in re.findall(r"\]\(([^)]+)\)", text):
                path = (doc.parent / target.split("#")[0]).resolve()
                self.assertTrue(path.is_relative_to(ROOT) and path.exists(), f"{where}: link {target}")
            for relative in re.findall(r"(?:\.\./)+[\w.-]*", text):
                self.assertTrue((doc.parent / relative).resolve().is_relative_to(ROOT), f"{where}: {relative} is outside the repository")


class MatcherSanityTest(unittest.TestCase):
    """The matcher against AWS's documented examples (aws/event-ruler README, EventBridge guide)."""

    @classmethod
    def setUpClass(cls):
        cls.match = staticmethod(matcher())

    EC2 = {"detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
           "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"],
           "detail": {"c-count": 5, "state": "running", "instance-id": "i-000000aaaaaa00000"}}

    def test_exact_values_and_lists_of_values(self):
        self.assertTrue(self.match(self.EC2, {"detail": {"state": ["initializing", "running"]}}))
        self.assertFalse(self.match(self.EC2, {"detail": {"state": ["initializing"]}}))
        self.assertFalse(self.match(self.EC2, {"detail": {"missing": ["running"]}}))

    def test_event_arrays_match_when_the_intersection_is_not_empty(self):
        self.assertTrue(self.match(self.EC2, {"resources": ["x", "arn:aws:ec2:us-east-1:123456789012:instance/i-000000aaaaaa00000"]}))
        self.assertFalse(self.match(self.EC2, {"resources": ["x"]}))

    def test_exists(self):
        self.assertTrue(self.match(self.EC2, {"detail": {"c-count": [{"exists": True}]}}))
        self.assertFalse(self.match(self.EC2, {"detail": {"c-count": [{"exists": False}]}}))
        self.assertTrue(self.match(self.EC2, {"detail": {"d-count": [{"exists": False}]}}))
        self.assertFalse(self.match(self.EC2, {"detail": {"d-count": [{"exists": True}]}}))

    def test_anything_but(self):
        pattern = {"detail": {"state": [{"anything-but": ["stopped", "overloaded"]}]}}
        self.assertTrue(self.match(self.EC2, pattern))
        self.assertFalse(self.match({**self.EC2, "detail": {"state": "stopped"}}, pattern))

    def test_array_consistent_matching(self):
        """aws/event-ruler README: fields from different elements of one array never combine."""
        employees = {"employees": [{"firstName": "John", "lastName": "Doe"},
                                   {"firstName": "Anna", "lastName": "Smith"},
                                   {"firstName": "Peter", "lastName": "Jones"}]}
        self.assertTrue(self.match(employees, {"employees": {"firstName": ["Anna"]}}))
        self.assertTrue(self.match(employees, {"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}}))
        self.assertFalse(self.match(employees, {"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}))

    def test_strings_are_not_booleans(self):
        self.assertTrue(self.match({"a": "true"}, {"a": ["true"]}))
        self.assertFalse(self.match({"a": True}, {"a": ["true"]}))

    def test_a_pattern_mixing_exists_false_with_a_value_is_rejected(self):
        """Why rule (a) is two rules."""
        with self.assertRaises(RuntimeError):
            self.match(self.EC2, {"detail": {"state": [{"exists": False}, "running"]}})


if __name__ == "__main__":
    unittest.main()
