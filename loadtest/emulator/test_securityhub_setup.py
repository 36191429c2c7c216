"""Tests for the Security Hub setup reads in awsemu that `enricher-admin doctor` makes (DescribeHub,
GetAdministratorAccount, EnableOrganizationAdminAccount / DescribeOrganizationConfiguration, the
finding aggregator), over the wire through boto3, with the service model's shapes and errors.

Run from the repository root:
    .venv/bin/python -m unittest discover -s loadtest/emulator -v
"""

from __future__ import annotations

import os
import sys
import unittest

from botocore.exceptions import ClientError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for running this file directly
from test_awsemu import Emu, new_account  # noqa: E402


class SetupTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emu("--no-throttle")

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.acct = new_account()
        self.c = self.emu.client(self.acct)

    def test_the_hub_is_described_with_its_arn(self):
        hub = self.c.describe_hub()
        self.assertEqual(hub["HubArn"], f"arn:aws:securityhub:us-east-1:{self.acct}:hub/default")
        self.assertTrue(hub["SubscribedAt"])
        with self.assertRaises(ClientError) as ctx:
            self.c.describe_hub(HubArn="arn:aws:securityhub:us-east-1:000000000000:hub/default")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "ResourceNotFoundException")
        self.assertNotIn("Administrator", self.c.get_administrator_account())

    def test_only_the_delegated_administrator_reads_the_organization_configuration(self):
        other = self.emu.client(new_account())
        self.c.enable_organization_admin_account(AdminAccountId=self.acct)
        config = self.c.describe_organization_configuration()
        self.assertEqual(config["OrganizationConfiguration"]["Status"], "ENABLED")
        with self.assertRaises(ClientError) as ctx:
            other.describe_organization_configuration()
        self.assertEqual(ctx.exception.response["Error"]["Code"], "InvalidAccessException")
        with self.assertRaises(ClientError) as ctx:
            self.c.enable_organization_admin_account(AdminAccountId="12")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "InvalidInputException")

    def test_one_finding_aggregator_listed_and_read_in_its_home_region(self):
        self.assertEqual(self.c.list_finding_aggregators()["FindingAggregators"], [])
        with self.assertRaises(ClientError) as ctx:
            self.c.create_finding_aggregator(RegionLinkingMode="SPECIFIED_REGIONS")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "InvalidInputException")
        created = self.c.create_finding_aggregator(RegionLinkingMode="ALL_REGIONS")
        arn = created["FindingAggregatorArn"]
        self.assertEqual(self.c.list_finding_aggregators()["FindingAggregators"], [{"FindingAggregatorArn": arn}])
        got = self.c.get_finding_aggregator(FindingAggregatorArn=arn)
        self.assertEqual((got["FindingAggregationRegion"], got["RegionLinkingMode"]), ("us-east-1", "ALL_REGIONS"))
        with self.assertRaises(ClientError) as ctx:
            self.c.create_finding_aggregator(RegionLinkingMode="ALL_REGIONS")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "InvalidInputException")
        with self.assertRaises(ClientError) as ctx:
            self.c.get_finding_aggregator(FindingAggregatorArn=arn + "x")
        self.assertEqual(ctx.exception.response["Error"]["Code"], "ResourceNotFoundException")


if __name__ == "__main__":
    unittest.main()
