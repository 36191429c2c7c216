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

ROOT = Path(__file__).resolve().parents[2]
PIPES = ROOT / "pipes"
MAIN = PIPES / "template.yaml"
MANAGEMENT = PIPES / "management-account.yaml"
TEMPLATES = sorted(PIPES.glob("*.yaml"))
CONFIG_RS = ROOT / "src" / "config.rs"
SELECT_RS = ROOT / "src" / "investigate" / "select.rs"
QUOTA_RS = ROOT / "src" / "quota.rs"
README = PIPES / "README.md"

PARTITION_KEY_PATH = "$.detail.findings[0].AwsAccountId"


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
    "AccountBurst": ("ACCOUNT_BURST", "10"),
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
    constants = dict((name, (float(a), float(b))) for name, a, b in re.findall(rf"const (\w+): Rate = {rate};", source))
    for rps, burst, constant in re.findall(r'vars\.rate\(\s*"(\w+)",\s*"(\w+)",\s*([A-Z][A-Z0-9_]*)\s*\)', source):
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
        self.assertEqual(set(self.functions), {"enricher", "investigator", "account-events"})
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
                "securityhub:BatchUpdateFindings",
                "organizations:DescribeAccount", "organizations:ListTagsForResource", "organizations:ListParents",
                "organizations:DescribeOrganizationalUnit", "organizations:ListRoots", "organizations:DescribeOrganization",
                "account:GetAlternateContact",
            },
        )

    def test_the_enricher_updates_only_the_quota_ledger_in_the_cache_table(self):
        role = self.templates["template.yaml"]["Resources"]["EnricherRole"]
        ledger_key = re.search(r'pub const LEDGER_KEY: &str = "([^"]+)";', QUOTA_RS.read_text()).group(1)
        updates = [s for s in statements({"Resources": {"r": role}}) if "dynamodb:UpdateItem" in as_list(s["Action"])]
        on_cache = [s for s in updates if s["Resource"] == {"Fn::GetAtt": ["CacheTable", "Arn"]}]
        self.assertEqual(len(on_cache), 1, updates)
        self.assertEqual(
            on_cache[0]["Condition"], {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [ledger_key]}}
        )

    def test_securityhub_is_scoped_to_the_hub(self):
        hub = {"Fn::Sub": "arn:${AWS::Partition}:securityhub:${AWS::Region}:${AWS::AccountId}:hub/default"}
        seen = 0
        for _, statement in self.each_statement():
            if "securityhub:BatchUpdateFindings" in as_list(statement["Action"]):
                self.assertEqual(statement["Resource"], hub)
                seen += 1
        self.assertEqual(seen, 2)

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
            self.assertEqual(condition["ArnEquals"], {"aws:PrincipalArn": {"Ref": "EnricherRoleArn"}})
        self.assertEqual(with_external_id["StringEquals"], {"sts:ExternalId": {"Ref": "ExternalId"}})
        self.assertEqual(set(without), {"ArnEquals"})


# ------------------------------------------------------------------------------------------
# Dashboard and alarms against the code's metrics
# ------------------------------------------------------------------------------------------

DASHBOARD = ROOT / "dashboards" / "enricher.json"
TELEMETRY_RS = ROOT / "src" / "telemetry.rs"
NAMESPACE = "SecurityHubEnricher"
# The Function dimension: src/bin/<name>.rs calls telemetry::install_emf("<name>").
FUNCTIONS = {"enricher", "investigator"}
# Fixed values for the dashboard's two placeholders; the body must parse as JSON once they are in.
PLACEHOLDERS = {"${AWS::Region}": "eu-west-3", "${StreamName}": "test-findings-stream"}


def fill(body: str) -> Any:
    for placeholder, value in PLACEHOLDERS.items():
        body = body.replace(placeholder, value)
    return json.loads(body)


def code_metrics(source: str) -> dict[str, set[str]]:
    """Metric::name() strings of src/telemetry.rs -> their dimension names (Function + labels())."""
    names = dict(re.findall(r'Metric::(\w+)\s*=>\s*"(\w+)"', source))
    if not names:
        raise AssertionError("src/telemetry.rs: no `Metric::X => \"X\"` lines (Metric::name())")
    labels = re.search(r"fn labels\(self\)[^{]*\{(.*?)\n    \}", source, re.S)
    if labels is None:
        raise AssertionError("src/telemetry.rs: Metric::labels() not found")
    dimensions = {name: {"Function"} for name in names.values()}
    for left, right in re.findall(r"^\s*((?:Metric::\w+\s*\|?\s*)+)=>\s*&\[([^\]]*)\]", labels.group(1), re.M):
        for variant in re.findall(r"Metric::(\w+)", left):
            dimensions[names[variant]] |= set(re.findall(r'"(\w+)"', right))
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
            self.assertIn(f'install_emf("{function}")', (ROOT / "src" / "bin" / f"{function}.rs").read_text())
        with self.assertRaises(AssertionError):
            code_metrics("fn name(self) -> &str { match self { Metric::A => a } }")

    def test_dashboard_metrics_are_the_enrichers(self):
        """Each SecurityHubEnricher series is the code's metric, with Function = enricher and its full dimension set
        (CloudWatch matches dimension sets exactly: a missing label shows no data)."""
        seen = searches = 0
        for title, row in dashboard_series(fill(self.file_text)):
            if isinstance(row[0], dict):
                expression = row[0].get("expression", "")
                if "SEARCH(" not in expression or NAMESPACE not in expression:
                    continue
                searches += 1
                self.assertIn('Function="enricher"', expression, title)
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
            self.assertEqual(dimensions.get("Function"), "enricher", f"{title}: {row}")
            self.assertIn(name, self.metrics, f"{title}: {name} is not a Metric::name() of src/telemetry.rs")
            self.assertEqual(set(dimensions), self.metrics[name], f"{title}: {row}")
        self.assertGreater(seen, 10)
        self.assertGreater(searches, 3)

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
    ("Security Hub V2 (OCSF) is out of scope", event("Findings Imported V2", finding()), set()),
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


class PatternTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        template = load(MAIN)
        # The rules that feed the findings stream; AccountChangesRule is AccountEventsTest's.
        cls.rules = {
            name: r["Properties"]
            for name, r in resources(template, "AWS::Events::Rule").items()
            if any(t["Arn"] == {"Fn::GetAtt": ["FindingsStream", "Arn"]} for t in r["Properties"]["Targets"])
        }
        cls.match = staticmethod(matcher())

    def matching(self, sample: dict) -> set[str]:
        return {name for name, rule in self.rules.items() if self.match(sample, rule["EventPattern"])}

    def test_the_four_rules(self):
        self.assertEqual(
            set(self.rules),
            {"UnenrichedFindingsRule", "PartiallyEnrichedFindingsRule", "CustomActionRule", "InvestigationRequestedRule"},
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
        for name, rule in self.rules.items():
            (target,) = rule["Targets"]
            self.assertEqual(target["Arn"], {"Fn::GetAtt": ["FindingsStream", "Arn"]}, name)
            self.assertEqual(target["KinesisParameters"]["PartitionKeyPath"], PARTITION_KEY_PATH, name)
            self.assertEqual(target["RoleArn"], {"Fn::GetAtt": ["EventsToStreamRole", "Arn"]}, name)

    def test_the_partition_key_is_the_first_findings_account(self):
        for about, sample, expected in CASES:
            if expected:
                self.assertEqual(resolve(PARTITION_KEY_PATH, sample), sample["detail"]["findings"][0]["AwsAccountId"], about)

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


CHANGES_RS = ROOT / "src" / "metadata" / "changes.rs"


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
    enricher account's, against the calls src/metadata/changes.rs handles."""

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

    def test_account_events_may_only_delete_cache_entries(self):
        role = self.main["Resources"]["AccountEventsRole"]
        actions = {a for st in statements({"Resources": {"r": role}}) for a in as_list(st["Action"])}
        self.assertEqual(actions, {"sts:AssumeRole", "logs:CreateLogStream", "logs:PutLogEvents", "dynamodb:BatchWriteItem"})


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
