"""The README's example routing rules (section "Enriched-finding events") against its documented
event: each pattern, through the real EventBridge matcher (event-ruler), routes the events it
says and no others. src/core/enriched_event.rs checks that the documented detail has exactly the
fields the code publishes."""

from __future__ import annotations

import copy
import json
import re
import unittest
from pathlib import Path

import yaml

from pipes.tests.test_templates import matcher

README = Path(__file__).resolve().parents[2] / "README.md"


class _Loader(yaml.SafeLoader):
    pass


# The examples use CloudFormation short forms (!Ref, !GetAtt); their values do not matter here.
_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def section() -> str:
    text = README.read_text()
    start = text.index("## Enriched-finding events")
    return text[start:text.index("\n## ", start + 3)]


def documented_event() -> dict:
    (detail,) = re.findall(r"```json\n(.*?)```", section(), re.S)
    return {
        "version": "0", "id": "1", "source": "securityhub-enricher", "detail-type": "Finding Enriched",
        "account": "111122223333", "time": "2026-11-22T07:00:00Z", "region": "us-east-1", "resources": [],
        "detail": json.loads(detail),
    }


def documented_rules() -> dict[str, dict]:
    (block,) = re.findall(r"```yaml\n(.*?)```", section(), re.S)
    return {name: r["Properties"]["EventPattern"] for name, r in yaml.load(block, Loader=_Loader).items()}


class RoutingRulesTest(unittest.TestCase):
    def setUp(self):
        self.match = matcher()
        self.rules = documented_rules()
        self.event = documented_event()

    def routed(self, **routing: str) -> set[str]:
        event = copy.deepcopy(self.event)
        event["detail"]["routing"] = routing
        return {name for name, pattern in self.rules.items() if self.match(event, pattern)}

    def test_the_two_rules_route_by_owner_and_by_environment_and_criticality(self):
        self.assertEqual(set(self.rules), {"PaymentsFindingsRule", "CriticalProductionRule"})
        self.assertEqual(self.routed(**self.event["detail"]["routing"]), {"PaymentsFindingsRule", "CriticalProductionRule"})
        self.assertEqual(self.routed(owner="payments", environment="dev"), {"PaymentsFindingsRule"})
        self.assertEqual(self.routed(owner="data", environment="prod", criticality="high"), {"CriticalProductionRule"})
        self.assertEqual(self.routed(owner="data"), set())
        self.assertEqual(self.routed(), set(), "an unrouted finding reaches neither")

    def test_other_sources_are_not_routed(self):
        event = copy.deepcopy(self.event)
        event["source"] = "aws.securityhub"
        self.assertFalse(any(self.match(event, p) for p in self.rules.values()))


if __name__ == "__main__":
    unittest.main()
