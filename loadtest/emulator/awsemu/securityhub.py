"""Owns the Security Hub service (signing name ``securityhub``): BatchImportFindings, BatchUpdateFindings, GetFindings, and the new hub's BatchUpdateFindingsV2 and GetFindingsV2 (OCSF findings).

Shapes, limits and HTTP bindings from botocore's
securityhub/2018-10-26/service-2.json; ASFF validation and the GetFindings
filters (AwsSecurityFindingFilters) as the service applies them.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re
import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from awsemu.errors import ApiError, invalid_input
from awsemu.paging import decode_token, encode_token
from awsemu.routing import RequestContext, Service
from awsemu.state import StateStore, Stats


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def is_nonempty_str(v: Any) -> bool:
    # NonEmptyString in the model: pattern ".*\S.*"
    return isinstance(v, str) and v.strip() != ""


def parse_timestamp(v: Any) -> datetime | None:
    """Parse an ASFF timestamp (RFC 3339 with a time zone), else None."""
    if not isinstance(v, str) or "T" not in v:
        return None
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt


def values_at(obj: Any, path: tuple[str, ...]) -> list[Any]:
    """All values at a dotted path; lists are expanded at every level."""
    current = [obj]
    for key in path:
        nxt = []
        for item in current:
            if isinstance(item, list):
                items = item
            else:
                items = [item]
            for it in items:
                if isinstance(it, dict) and key in it and it[key] is not None:
                    nxt.append(it[key])
        current = nxt
    out = []
    for item in current:
        if isinstance(item, list):
            out.extend(item)
        else:
            out.append(item)
    return out


P = lambda s: tuple(s.split("."))  # noqa: E731

# AwsSecurityFindingFilters member -> ASFF path (StringFilter lists).
SH_STRING_FILTERS: dict[str, tuple[str, ...]] = {
    "ProductArn": P("ProductArn"),
    "AwsAccountId": P("AwsAccountId"),
    "Id": P("Id"),
    "GeneratorId": P("GeneratorId"),
    "Region": P("Region"),
    "Type": P("Types"),
    "SeverityLabel": P("Severity.Label"),
    "Title": P("Title"),
    "Description": P("Description"),
    "RecommendationText": P("Remediation.Recommendation.Text"),
    "SourceUrl": P("SourceUrl"),
    "ProductName": P("ProductName"),
    "CompanyName": P("CompanyName"),
    "MalwareName": P("Malware.Name"),
    "MalwareType": P("Malware.Type"),
    "MalwarePath": P("Malware.Path"),
    "MalwareState": P("Malware.State"),
    "NetworkDirection": P("Network.Direction"),
    "NetworkProtocol": P("Network.Protocol"),
    "NetworkSourceDomain": P("Network.SourceDomain"),
    "NetworkSourceMac": P("Network.SourceMac"),
    "NetworkDestinationDomain": P("Network.DestinationDomain"),
    "ProcessName": P("Process.Name"),
    "ProcessPath": P("Process.Path"),
    "ThreatIntelIndicatorType": P("ThreatIntelIndicators.Type"),
    "ThreatIntelIndicatorValue": P("ThreatIntelIndicators.Value"),
    "ThreatIntelIndicatorCategory": P("ThreatIntelIndicators.Category"),
    "ThreatIntelIndicatorSource": P("ThreatIntelIndicators.Source"),
    "ThreatIntelIndicatorSourceUrl": P("ThreatIntelIndicators.SourceUrl"),
    "ResourceType": P("Resources.Type"),
    "ResourceId": P("Resources.Id"),
    "ResourcePartition": P("Resources.Partition"),
    "ResourceRegion": P("Resources.Region"),
    "ResourceAwsEc2InstanceType": P("Resources.Details.AwsEc2Instance.Type"),
    "ResourceAwsEc2InstanceImageId": P("Resources.Details.AwsEc2Instance.ImageId"),
    "ResourceAwsEc2InstanceKeyName": P("Resources.Details.AwsEc2Instance.KeyName"),
    "ResourceAwsEc2InstanceIamInstanceProfileArn": P("Resources.Details.AwsEc2Instance.IamInstanceProfileArn"),
    "ResourceAwsEc2InstanceVpcId": P("Resources.Details.AwsEc2Instance.VpcId"),
    "ResourceAwsEc2InstanceSubnetId": P("Resources.Details.AwsEc2Instance.SubnetId"),
    "ResourceAwsS3BucketOwnerId": P("Resources.Details.AwsS3Bucket.OwnerId"),
    "ResourceAwsS3BucketOwnerName": P("Resources.Details.AwsS3Bucket.OwnerName"),
    "ResourceAwsIamAccessKeyUserName": P("Resources.Details.AwsIamAccessKey.UserName"),
    "ResourceAwsIamAccessKeyPrincipalName": P("Resources.Details.AwsIamAccessKey.PrincipalName"),
    "ResourceAwsIamAccessKeyStatus": P("Resources.Details.AwsIamAccessKey.Status"),
    "ResourceAwsIamUserUserName": P("Resources.Details.AwsIamUser.UserName"),
    "ResourceContainerName": P("Resources.Details.Container.Name"),
    "ResourceContainerImageId": P("Resources.Details.Container.ImageId"),
    "ResourceContainerImageName": P("Resources.Details.Container.ImageName"),
    "ComplianceStatus": P("Compliance.Status"),
    "VerificationState": P("VerificationState"),
    "WorkflowState": P("WorkflowState"),
    "WorkflowStatus": P("Workflow.Status"),
    "RecordState": P("RecordState"),
    "RelatedFindingsProductArn": P("RelatedFindings.ProductArn"),
    "RelatedFindingsId": P("RelatedFindings.Id"),
    "NoteText": P("Note.Text"),
    "NoteUpdatedBy": P("Note.UpdatedBy"),
    "FindingProviderFieldsRelatedFindingsId": P("FindingProviderFields.RelatedFindings.Id"),
    "FindingProviderFieldsRelatedFindingsProductArn": P("FindingProviderFields.RelatedFindings.ProductArn"),
    "FindingProviderFieldsSeverityLabel": P("FindingProviderFields.Severity.Label"),
    "FindingProviderFieldsSeverityOriginal": P("FindingProviderFields.Severity.Original"),
    "FindingProviderFieldsTypes": P("FindingProviderFields.Types"),
    "ComplianceSecurityControlId": P("Compliance.SecurityControlId"),
    "ComplianceAssociatedStandardsId": P("Compliance.AssociatedStandards.StandardsId"),
    "VulnerabilitiesExploitAvailable": P("Vulnerabilities.ExploitAvailable"),
    "VulnerabilitiesFixAvailable": P("Vulnerabilities.FixAvailable"),
    "ComplianceSecurityControlParametersName": P("Compliance.SecurityControlParameters.Name"),
    "ComplianceSecurityControlParametersValue": P("Compliance.SecurityControlParameters.Value"),
    "AwsAccountName": P("AwsAccountName"),
    "ResourceApplicationName": P("Resources.ApplicationName"),
    "ResourceApplicationArn": P("Resources.ApplicationArn"),
    "ResourceOwnerAccountId": P("Resources.Owner.Account.Id"),
    "ResourceOwnerOrgId": P("Resources.Owner.Org.Id"),
    "ResourceProvider": P("Resources.Provider"),
}

SH_MAP_FILTERS: dict[str, tuple[str, ...]] = {
    "ProductFields": P("ProductFields"),
    "UserDefinedFields": P("UserDefinedFields"),
    "ResourceTags": P("Resources.Tags"),
    "ResourceDetailsOther": P("Resources.Details.Other"),
}

SH_DATE_FILTERS: dict[str, tuple[str, ...]] = {
    "FirstObservedAt": P("FirstObservedAt"),
    "LastObservedAt": P("LastObservedAt"),
    "CreatedAt": P("CreatedAt"),
    "UpdatedAt": P("UpdatedAt"),
    "ProcessLaunchedAt": P("Process.LaunchedAt"),
    "ProcessTerminatedAt": P("Process.TerminatedAt"),
    "ThreatIntelIndicatorLastObservedAt": P("ThreatIntelIndicators.LastObservedAt"),
    "ResourceAwsEc2InstanceLaunchedAt": P("Resources.Details.AwsEc2Instance.LaunchedAt"),
    "ResourceAwsIamAccessKeyCreatedAt": P("Resources.Details.AwsIamAccessKey.CreatedAt"),
    "ResourceContainerLaunchedAt": P("Resources.Details.Container.LaunchedAt"),
    "NoteUpdatedAt": P("Note.UpdatedAt"),
}

SH_NUMBER_FILTERS: dict[str, tuple[str, ...]] = {
    "SeverityProduct": P("Severity.Product"),
    "SeverityNormalized": P("Severity.Normalized"),
    "Confidence": P("Confidence"),
    "Criticality": P("Criticality"),
    "NetworkSourcePort": P("Network.SourcePort"),
    "NetworkDestinationPort": P("Network.DestinationPort"),
    "ProcessPid": P("Process.Pid"),
    "ProcessParentPid": P("Process.ParentPid"),
    "FindingProviderFieldsConfidence": P("FindingProviderFields.Confidence"),
    "FindingProviderFieldsCriticality": P("FindingProviderFields.Criticality"),
}

SH_IP_FILTERS: dict[str, tuple[str, ...]] = {
    "NetworkSourceIpV4": P("Network.SourceIpV4"),
    "NetworkSourceIpV6": P("Network.SourceIpV6"),
    "NetworkDestinationIpV4": P("Network.DestinationIpV4"),
    "NetworkDestinationIpV6": P("Network.DestinationIpV6"),
    "ResourceAwsEc2InstanceIpV4Addresses": P("Resources.Details.AwsEc2Instance.IpV4Addresses"),
    "ResourceAwsEc2InstanceIpV6Addresses": P("Resources.Details.AwsEc2Instance.IpV6Addresses"),
}

SH_BOOLEAN_FILTERS: dict[str, tuple[str, ...]] = {"Sample": P("Sample")}

STRING_POSITIVE = {"EQUALS", "PREFIX", "CONTAINS"}
STRING_NEGATIVE = {"NOT_EQUALS", "PREFIX_NOT_EQUALS", "NOT_CONTAINS"}
MAP_POSITIVE = {"EQUALS", "CONTAINS"}
MAP_NEGATIVE = {"NOT_EQUALS", "NOT_CONTAINS"}

SEVERITY_LABELS = ("INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL")
SEVERITY_LABEL_TO_NORMALIZED = {"INFORMATIONAL": 0, "LOW": 1, "MEDIUM": 40, "HIGH": 70, "CRITICAL": 90}
VERIFICATION_STATES = ("UNKNOWN", "TRUE_POSITIVE", "FALSE_POSITIVE", "BENIGN_POSITIVE")
WORKFLOW_STATUSES = ("NEW", "NOTIFIED", "RESOLVED", "SUPPRESSED")
RECORD_STATES = ("ACTIVE", "ARCHIVED")
ASFF_SCHEMA_VERSION = "2018-10-08"

# After creation, BatchImportFindings cannot change these (BatchImportFindings
# API reference): they always keep their stored value on re-import.
SH_CUSTOMER_ONLY_FIELDS = ("Note", "UserDefinedFields", "VerificationState", "Workflow")
# Providers "should not" set these with BatchImportFindings; once a customer
# set them with BatchUpdateFindings the customer's value is kept on re-import.
SH_CUSTOMER_OVERRIDABLE_FIELDS = ("Confidence", "Criticality", "RelatedFindings", "Severity", "Types")

UDF_MAX_PAIRS = 50
UDF_KEY_MAX = 128
UDF_VALUE_MAX = 1024
NOTE_MAX = 512
MAX_FINDING_BYTES = 240 * 1024


def severity_label_for(normalized: float) -> str:
    if normalized <= 0:
        return "INFORMATIONAL"
    if normalized < 40:
        return "LOW"
    if normalized < 70:
        return "MEDIUM"
    if normalized < 90:
        return "HIGH"
    return "CRITICAL"


def validate_udf(udf: Any, where: str) -> str | None:
    """UserDefinedFields: at most 50 pairs, key 1..128, value 1..1024 chars."""
    if not isinstance(udf, dict):
        return f"Invalid parameter '{where}': must be a map of strings"
    if len(udf) > UDF_MAX_PAIRS:
        return f"Invalid parameter '{where}': at most {UDF_MAX_PAIRS} key-value pairs are allowed, got {len(udf)}"
    for k, v in udf.items():
        if not isinstance(k, str) or not (1 <= len(k) <= UDF_KEY_MAX) or not k.strip():
            return f"Invalid parameter '{where}': key length must be between 1 and {UDF_KEY_MAX} characters"
        if not isinstance(v, str) or not (1 <= len(v) <= UDF_VALUE_MAX) or not v.strip():
            return f"Invalid parameter '{where}.{k}': value length must be between 1 and {UDF_VALUE_MAX} characters"
    return None


def validate_ratio(v: Any, where: str) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int) or not (0 <= v <= 100):
        return f"Invalid parameter '{where}': must be an integer between 0 and 100"
    return None


def validate_related_findings(v: Any, where: str) -> str | None:
    if not isinstance(v, list) or not (1 <= len(v) <= 10):
        return f"Invalid parameter '{where}': must be a list of 1 to 10 items"
    for i, rf in enumerate(v):
        if not isinstance(rf, dict) or not is_nonempty_str(rf.get("Id")) or not is_nonempty_str(rf.get("ProductArn")):
            return f"Invalid parameter '{where}[{i}]': Id and ProductArn are required"
    return None


def validate_types(v: Any, where: str) -> str | None:
    if not isinstance(v, list) or not (1 <= len(v) <= 50) or not all(is_nonempty_str(t) for t in v):
        return f"Invalid parameter '{where}': must be a list of 1 to 50 non-empty strings"
    return None


def validate_finding(f: Any) -> str | None:
    """ASFF validation of one imported finding; returns an error message."""
    if not isinstance(f, dict):
        return "Finding must be an object"
    # Required top-level ASFF attributes (user guide, "Required top-level ASFF
    # attributes"). The API model's `required` list omits Severity and Types,
    # the service enforces them.
    for name in ("SchemaVersion", "Id", "ProductArn", "GeneratorId", "AwsAccountId", "CreatedAt", "UpdatedAt", "Title", "Description"):
        if not is_nonempty_str(f.get(name)):
            return f"Finding does not adhere to Amazon Web Services Security Finding Format. data.{name} is required and must be a non-empty string"
    if f["SchemaVersion"] != ASFF_SCHEMA_VERSION:
        return f"Invalid SchemaVersion '{f['SchemaVersion']}', expected '{ASFF_SCHEMA_VERSION}'"
    for name, lo, hi in (("Id", 1, 512), ("GeneratorId", 1, 512), ("ProductArn", 12, 2048), ("Title", 1, 256), ("Description", 1, 1024)):
        if not (lo <= len(f[name]) <= hi):
            return f"Invalid parameter 'data.{name}': length must be between {lo} and {hi}"
    for name in ("ProductName", "CompanyName"):
        if name in f and (not is_nonempty_str(f[name]) or len(f[name]) > 128):
            return f"Invalid parameter 'data.{name}': length must be between 1 and 128"
    if not re.fullmatch(r"\d{12}", f["AwsAccountId"]):
        return "Invalid parameter 'data.AwsAccountId': must be a 12-digit account id"
    for name in ("CreatedAt", "UpdatedAt", "FirstObservedAt", "LastObservedAt"):
        if name in f and parse_timestamp(f[name]) is None:
            return f"Invalid parameter 'data.{name}': not a valid RFC 3339 timestamp with a time zone"
    sev = f.get("Severity")
    if not isinstance(sev, dict):
        return "Finding does not adhere to Amazon Web Services Security Finding Format. data.Severity is required"
    if "Label" not in sev and "Normalized" not in sev:
        return "Invalid parameter 'data.Severity': Label (or the deprecated Normalized) is required"
    if "Label" in sev and sev["Label"] not in SEVERITY_LABELS:
        return f"Invalid parameter 'data.Severity.Label': must be one of {', '.join(SEVERITY_LABELS)}"
    if "Normalized" in sev and validate_ratio(sev["Normalized"], "data.Severity.Normalized"):
        return validate_ratio(sev["Normalized"], "data.Severity.Normalized")
    if "Types" not in f:
        return "Finding does not adhere to Amazon Web Services Security Finding Format. data.Types is required"
    err = validate_types(f["Types"], "data.Types")
    if err:
        return err
    res = f.get("Resources")
    if not isinstance(res, list) or not (1 <= len(res) <= 32):
        return "Invalid parameter 'data.Resources': must be a list of 1 to 32 resources"
    for i, r in enumerate(res):
        if not isinstance(r, dict) or not is_nonempty_str(r.get("Type")) or not is_nonempty_str(r.get("Id")):
            return f"Invalid parameter 'data.Resources[{i}]': Type and Id are required"
    if "UserDefinedFields" in f:
        err = validate_udf(f["UserDefinedFields"], "data.UserDefinedFields")
        if err:
            return err
    for name in ("Confidence", "Criticality"):
        if name in f:
            err = validate_ratio(f[name], "data." + name)
            if err:
                return err
    if "RelatedFindings" in f:
        err = validate_related_findings(f["RelatedFindings"], "data.RelatedFindings")
        if err:
            return err
    if "VerificationState" in f and f["VerificationState"] not in VERIFICATION_STATES:
        return "Invalid parameter 'data.VerificationState'"
    if "RecordState" in f and f["RecordState"] not in RECORD_STATES:
        return "Invalid parameter 'data.RecordState'"
    wf = f.get("Workflow")
    if wf is not None and (not isinstance(wf, dict) or wf.get("Status", "NEW") not in WORKFLOW_STATUSES):
        return "Invalid parameter 'data.Workflow.Status'"
    note = f.get("Note")
    if note is not None:
        if not isinstance(note, dict) or not all(is_nonempty_str(note.get(k)) for k in ("Text", "UpdatedBy", "UpdatedAt")):
            return "Invalid parameter 'data.Note': Text, UpdatedBy and UpdatedAt are required"
        if len(note["Text"]) > NOTE_MAX:
            return f"Invalid parameter 'data.Note.Text': length must be between 1 and {NOTE_MAX}"
    return None


def _product_names(product_arn: str) -> tuple[str, str]:
    # arn:aws:securityhub:REGION:ACCOUNT:product/COMPANY/PRODUCT
    m = re.match(r"^arn:[^:]+:securityhub:[^:]*:[^:]*:product/([^/]+)/(.+)$", product_arn)
    if not m:
        return "Default", "Personal"
    company, product = m.group(1), m.group(2)
    if product == "default":
        return "Default", "Personal"
    return product, company


class SecurityHubState:
    def __init__(self) -> None:
        # (ProductArn, Id) -> {"finding": dict, "customer": set of fields set by BatchUpdateFindings}
        self.findings: dict[tuple[str, str], dict] = {}
        # OCSF findings of the new hub, by metadata.uid (seeded with POST /_emulator/findingsv2:
        # the new hub has no customer import API).
        self.findings_v2: dict[str, dict] = {}
        # The hub resource, its cross-Region aggregator (at most one per account, in its home
        # Region), and the organization's delegated administrators (recorded in the management
        # account's state by EnableOrganizationAdminAccount).
        self.subscribed_at = now_iso()
        self.aggregator: dict | None = None


# ---------------------------------------------------------------- V2 (OCSF)
# From botocore's service model: MetadataUidList and OcsfFindingIdentifierList have max 100;
# Comment is a NonEmptyString documented as 1-512 characters; the allowed enum values of
# SeverityId and StatusId; GetFindingsV2 MaxResults 1-100; OcsfStringField's enum.
V2_MAX_IDENTIFIERS = 100
V2_COMMENT_MAX = 512
V2_SEVERITY_IDS = {0: "Unknown", 1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical", 6: "Fatal", 99: "Other"}
V2_STATUS_IDS = {0: "Unknown", 1: "New", 2: "In Progress", 3: "Suppressed", 4: "Resolved", 5: "Archived", 99: "Other"}
OCSF_STRING_FIELDS = frozenset([
    "metadata.uid", "activity_name", "cloud.account.uid", "cloud.provider", "cloud.region", "cloud.account.name",
    "compliance.assessments.category", "compliance.assessments.name", "compliance.control", "compliance.status",
    "compliance.standards", "finding_info.desc", "finding_info.src_url", "finding_info.title", "finding_info.types",
    "finding_info.uid", "impact", "likelihood", "metadata.product.name", "metadata.product.uid",
    "metadata.product.vendor_name", "remediation.desc", "resources.name", "resources.owner.account.uid",
    "resources.region", "resources.type", "resources.uid", "severity", "status", "comment", "class_name",
])
V2_STRING_COMPARISONS = ("EQUALS", "PREFIX", "NOT_EQUALS", "PREFIX_NOT_EQUALS", "CONTAINS", "NOT_CONTAINS", "CONTAINS_WORD")


def validation_error(message: str) -> ApiError:
    # ValidationException: httpStatusCode 400 in the model; the V2 operations' input error.
    return ApiError(400, "ValidationException", message)


def _v2_triple(f: dict) -> tuple[str, str, str]:
    return (
        str(((f.get("cloud") or {}).get("account") or {}).get("uid") or ""),
        str((f.get("finding_info") or {}).get("uid") or ""),
        str(((f.get("metadata") or {}).get("product") or {}).get("uid") or ""),
    )


class SecurityHubService(Service):
    """Security Hub (signing name ``securityhub``), API version 2018-10-26."""

    name = "securityhub"
    # HTTP bindings from botocore securityhub/2018-10-26/service-2.json.
    bindings = (
        ("POST", "/findings/import", "BatchImportFindings"),
        ("PATCH", "/findings/batchupdate", "BatchUpdateFindings"),
        ("POST", "/findings", "GetFindings"),
        ("PATCH", "/findingsv2/batchupdatev2", "BatchUpdateFindingsV2"),
        ("POST", "/findingsv2", "GetFindingsV2"),
        ("GET", "/accounts", "DescribeHub"),
        ("GET", "/administrator", "GetAdministratorAccount"),
        ("POST", "/organization/admin/enable", "EnableOrganizationAdminAccount"),
        ("GET", "/organization/configuration", "DescribeOrganizationConfiguration"),
        ("POST", "/findingAggregator/create", "CreateFindingAggregator"),
        ("GET", "/findingAggregator/list", "ListFindingAggregators"),
        ("GET", "/findingAggregator/get/{FindingAggregatorArn+}", "GetFindingAggregator"),
    )
    # Published Security Hub API quotas: BatchImportFindings and
    # BatchUpdateFindings 10 rps burst 30; GetFindings 3 rps burst 6.
    default_limits = {
        "BatchImportFindings": (10.0, 30),
        "BatchUpdateFindings": (10.0, 30),
        "GetFindings": (3.0, 6),
        # V2 rates are not published: assumed equal to V1's (an --rate override changes them).
        "BatchUpdateFindingsV2": (10.0, 30),
        "GetFindingsV2": (3.0, 6),
    }
    sample_names = ["findings_per_update", "findings_per_update_v2"]

    def __init__(self, store: StateStore, stats: Stats, udf_mode: str = "replace") -> None:
        if udf_mode not in ("replace", "merge"):
            raise ValueError("udf_mode must be 'replace' or 'merge'")
        self.store = store
        self.stats = stats
        self.udf_mode = udf_mode
        # Region -> the delegated administrator account EnableOrganizationAdminAccount named.
        # The emulator has no organization: any caller may name one (the real API wants the
        # organization's management account).
        self.admins: dict[str, str] = {}
        self._admins_lock = threading.Lock()

    def reset(self) -> None:
        with self._admins_lock:
            self.admins.clear()

    # ---------------------------------------------------------------- the hub and its setup
    # Shapes from botocore securityhub/2018-10-26/service-2.json. The emulator's hub is
    # enabled in every account (findings are accepted without EnableSecurityHub).
    def describe_hub(self, ctx: RequestContext, _body: dict) -> dict:
        hub_arn = f"arn:aws:securityhub:{ctx.region}:{ctx.account}:hub/default"
        asked = (ctx.query.get("HubArn") or [None])[0]
        if asked is not None and asked != hub_arn:
            raise ApiError(404, "ResourceNotFoundException", f"Hub {asked} not found")
        return {"HubArn": hub_arn, "SubscribedAt": self._state(ctx).subscribed_at, "AutoEnableControls": True,
                "ControlFindingGenerator": "SECURITY_CONTROL"}

    def get_administrator_account(self, ctx: RequestContext, _body: dict) -> dict:
        # Members of an administrator are out of the emulator's scope: no account has one.
        return {}

    def enable_organization_admin_account(self, ctx: RequestContext, body: dict) -> dict:
        admin = body.get("AdminAccountId")
        if not isinstance(admin, str) or not re.fullmatch(r"\d{12}", admin):
            raise invalid_input("AdminAccountId must be a 12-digit account id")
        with self._admins_lock:
            self.admins[ctx.region] = admin
        return {"AdminAccountId": admin, "Feature": body.get("Feature") or "SecurityHub"}

    def describe_organization_configuration(self, ctx: RequestContext, _body: dict) -> dict:
        with self._admins_lock:
            admin = self.admins.get(ctx.region)
        if admin != ctx.account:
            raise ApiError(401, "InvalidAccessException",
                           f"Account {ctx.account} is not the Security Hub administrator of its organization")
        return {"AutoEnable": True, "MemberAccountLimitReached": False, "AutoEnableStandards": "DEFAULT",
                "OrganizationConfiguration": {"ConfigurationType": "LOCAL", "Status": "ENABLED"}}

    def create_finding_aggregator(self, ctx: RequestContext, body: dict) -> dict:
        mode = body.get("RegionLinkingMode")
        modes = ("ALL_REGIONS", "ALL_REGIONS_EXCEPT_SPECIFIED", "SPECIFIED_REGIONS", "NO_REGIONS")
        if mode not in modes:
            raise invalid_input(f"RegionLinkingMode must be one of {', '.join(modes)}")
        regions = body.get("Regions") or []
        if mode != "ALL_REGIONS" and mode != "NO_REGIONS" and not regions:
            raise invalid_input(f"Regions is required with RegionLinkingMode {mode}")
        st = self._state(ctx)
        if st.aggregator is not None:
            raise invalid_input("A finding aggregator already exists in this account")
        arn = f"arn:aws:securityhub:{ctx.region}:{ctx.account}:finding-aggregator/{uuid.uuid4()}"
        st.aggregator = {"FindingAggregatorArn": arn, "FindingAggregationRegion": ctx.region,
                         "RegionLinkingMode": mode, "Regions": list(regions)}
        return dict(st.aggregator)

    def list_finding_aggregators(self, ctx: RequestContext, _body: dict) -> dict:
        # Regional in AWS: the aggregator is listed in its home Region only.
        agg = self._state(ctx).aggregator
        return {"FindingAggregators": [{"FindingAggregatorArn": agg["FindingAggregatorArn"]}] if agg else []}

    def get_finding_aggregator(self, ctx: RequestContext, _body: dict) -> dict:
        arn = ctx.path_params.get("FindingAggregatorArn")
        agg = self._state(ctx).aggregator
        if not agg or agg["FindingAggregatorArn"] != arn:
            raise ApiError(404, "ResourceNotFoundException", f"Finding aggregator {arn} not found")
        return dict(agg)


    def control_routes(self):
        return {
            ("GET", "/_emulator/findings"): self.dump_findings,
            ("POST", "/_emulator/findingsv2"): self.seed_findings_v2,
            ("GET", "/_emulator/findingsv2"): self.dump_findings_v2,
        }

    def _state(self, ctx: RequestContext) -> SecurityHubState:
        return self.store.get(self.name, ctx.account, ctx.region, SecurityHubState)

    # ---------------------------------------------------------------- import
    def batch_import_findings(self, ctx: RequestContext, body: dict) -> dict:
        findings = body.get("Findings")
        if not isinstance(findings, list):
            raise invalid_input("Invalid parameter 'Findings': required list of findings")
        if not (1 <= len(findings) <= 100):
            raise invalid_input(f"Invalid parameter 'Findings': must contain between 1 and 100 findings, got {len(findings)}")
        failed = []
        ok = 0
        now = now_iso()
        with self.store.lock:
            st = self._state(ctx)
            for f in findings:
                fid = f.get("Id") if isinstance(f, dict) and is_nonempty_str(f.get("Id")) else "<missing Id>"
                err = validate_finding(f)
                if err:
                    failed.append({"Id": fid, "ErrorCode": "InvalidInput", "ErrorMessage": err})
                    continue
                if len(json.dumps(f, separators=(",", ":"))) > MAX_FINDING_BYTES:
                    failed.append({"Id": fid, "ErrorCode": "FindingSizeExceeded", "ErrorMessage": "Finding size exceeded 240 KB"})
                    continue
                self._upsert(st, ctx, copy.deepcopy(f), now)
                ok += 1
        return {"FailedCount": len(failed), "SuccessCount": ok, "FailedFindings": failed}

    def _upsert(self, st: SecurityHubState, ctx: RequestContext, f: dict, now: str) -> None:
        key = (f["ProductArn"], f["Id"])
        existing = st.findings.get(key)
        if "FindingProviderFields" not in f:
            fpf: dict[str, Any] = {}
            for name in ("Confidence", "Criticality", "RelatedFindings", "Types"):
                if name in f:
                    fpf[name] = copy.deepcopy(f[name])
            sev = {k: v for k, v in f.get("Severity", {}).items() if k in ("Label", "Original")}
            if "Label" not in sev and "Normalized" in f.get("Severity", {}):
                sev["Label"] = severity_label_for(f["Severity"]["Normalized"])
            if sev:
                fpf["Severity"] = sev
            f["FindingProviderFields"] = fpf
        sev = f["Severity"]
        if "Label" not in sev:
            sev["Label"] = severity_label_for(sev["Normalized"])
        if "Normalized" not in sev:
            sev["Normalized"] = SEVERITY_LABEL_TO_NORMALIZED[sev["Label"]]
        f.setdefault("Region", ctx.region)
        product, company = _product_names(f["ProductArn"])
        f.setdefault("ProductName", product)
        f.setdefault("CompanyName", company)
        f.setdefault("RecordState", "ACTIVE")
        f["ProcessedAt"] = now
        if existing is None:
            f.setdefault("WorkflowState", "NEW")
            f.setdefault("Workflow", {"Status": "NEW"})
            st.findings[key] = {"finding": f, "customer": set()}
            return
        old = existing["finding"]
        for name in SH_CUSTOMER_ONLY_FIELDS + ("WorkflowState",):
            if name in old:
                f[name] = copy.deepcopy(old[name])
            else:
                f.pop(name, None)
        for name in SH_CUSTOMER_OVERRIDABLE_FIELDS:
            if name in existing["customer"]:
                if name in old:
                    f[name] = copy.deepcopy(old[name])
                else:
                    f.pop(name, None)
        existing["finding"] = f

    # ---------------------------------------------------------------- update
    def _validate_update(self, body: dict) -> list:
        ids = body.get("FindingIdentifiers")
        if not isinstance(ids, list):
            raise invalid_input("Invalid parameter 'FindingIdentifiers': required list of finding identifiers")
        if not (1 <= len(ids) <= 100):
            raise invalid_input(f"Invalid parameter 'FindingIdentifiers': must contain between 1 and 100 items, got {len(ids)}")
        for i, ident in enumerate(ids):
            if not isinstance(ident, dict) or not is_nonempty_str(ident.get("Id")) or not is_nonempty_str(ident.get("ProductArn")):
                raise invalid_input(f"Invalid parameter 'FindingIdentifiers[{i}]': Id and ProductArn are required")
        if "Note" in body:
            note = body["Note"]
            if not isinstance(note, dict):
                raise invalid_input("Invalid parameter 'Note': must be an object with Text and UpdatedBy")
            for k in ("Text", "UpdatedBy"):
                v = note.get(k)
                if not is_nonempty_str(v) or len(v) > NOTE_MAX:
                    raise invalid_input(f"Invalid parameter 'Note.{k}': length must be between 1 and {NOTE_MAX} characters")
        if "UserDefinedFields" in body:
            err = validate_udf(body["UserDefinedFields"], "UserDefinedFields")
            if err:
                raise invalid_input(err)
        if "Severity" in body:
            sev = body["Severity"]
            if not isinstance(sev, dict):
                raise invalid_input("Invalid parameter 'Severity': must be an object")
            if "Label" in sev and sev["Label"] not in SEVERITY_LABELS:
                raise invalid_input(f"Invalid parameter 'Severity.Label': must be one of {', '.join(SEVERITY_LABELS)}")
            if "Normalized" in sev:
                err = validate_ratio(sev["Normalized"], "Severity.Normalized")
                if err:
                    raise invalid_input(err)
            if "Product" in sev and (isinstance(sev["Product"], bool) or not isinstance(sev["Product"], (int, float))):
                raise invalid_input("Invalid parameter 'Severity.Product': must be a number")
        if "VerificationState" in body and body["VerificationState"] not in VERIFICATION_STATES:
            raise invalid_input(f"Invalid parameter 'VerificationState': must be one of {', '.join(VERIFICATION_STATES)}")
        for name in ("Confidence", "Criticality"):
            if name in body:
                err = validate_ratio(body[name], name)
                if err:
                    raise invalid_input(err)
        if "Types" in body:
            err = validate_types(body["Types"], "Types")
            if err:
                raise invalid_input(err)
        if "Workflow" in body:
            wf = body["Workflow"]
            if not isinstance(wf, dict) or ("Status" in wf and wf["Status"] not in WORKFLOW_STATUSES):
                raise invalid_input(f"Invalid parameter 'Workflow.Status': must be one of {', '.join(WORKFLOW_STATUSES)}")
        if "RelatedFindings" in body:
            err = validate_related_findings(body["RelatedFindings"], "RelatedFindings")
            if err:
                raise invalid_input(err)
        return ids

    def batch_update_findings(self, ctx: RequestContext, body: dict) -> dict:
        ids = self._validate_update(body)
        counts: dict[tuple[str, str], int] = {}
        for ident in ids:
            k = (ident["ProductArn"], ident["Id"])
            counts[k] = counts.get(k, 0) + 1
        processed, unprocessed = [], []
        now = now_iso()
        with self.store.lock:
            st = self._state(ctx)
            for ident in ids:
                k = (ident["ProductArn"], ident["Id"])
                out_ident = {"Id": ident["Id"], "ProductArn": ident["ProductArn"]}
                if counts[k] > 1:
                    # Every occurrence of a repeated identifier is rejected.
                    unprocessed.append({"FindingIdentifier": out_ident, "ErrorCode": "DuplicatedFindingIdentifier", "ErrorMessage": "Finding Identifier is duplicated"})
                    continue
                rec = st.findings.get(k)
                if rec is None:
                    unprocessed.append({"FindingIdentifier": out_ident, "ErrorCode": "FindingNotFound", "ErrorMessage": "Finding Not Found"})
                    continue
                self._apply_update(rec, body, now)
                processed.append(out_ident)
        self.stats.sample(ctx.account, "findings_per_update", len(ids))
        return {"ProcessedFindings": processed, "UnprocessedFindings": unprocessed}

    def _apply_update(self, rec: dict, body: dict, now: str) -> None:
        f = rec["finding"]
        if "Note" in body:
            f["Note"] = {"Text": body["Note"]["Text"], "UpdatedBy": body["Note"]["UpdatedBy"], "UpdatedAt": now}
        if "UserDefinedFields" in body:
            if self.udf_mode == "merge":
                merged = dict(f.get("UserDefinedFields") or {})
                merged.update(body["UserDefinedFields"])
                f["UserDefinedFields"] = merged
            else:
                f["UserDefinedFields"] = dict(body["UserDefinedFields"])
        if "Severity" in body:
            sev = dict(f.get("Severity") or {})
            upd = body["Severity"]
            if "Label" in upd:
                sev["Label"] = upd["Label"]
                sev["Normalized"] = upd.get("Normalized", SEVERITY_LABEL_TO_NORMALIZED[upd["Label"]])
            elif "Normalized" in upd:
                sev["Normalized"] = upd["Normalized"]
                sev["Label"] = severity_label_for(upd["Normalized"])
            if "Product" in upd:
                sev["Product"] = upd["Product"]
            f["Severity"] = sev
            rec["customer"].add("Severity")
        if "Workflow" in body:
            wf = dict(f.get("Workflow") or {})
            wf.update(body["Workflow"])
            f["Workflow"] = wf
        if "VerificationState" in body:
            f["VerificationState"] = body["VerificationState"]
        for name in ("Confidence", "Criticality", "Types", "RelatedFindings"):
            if name in body:
                f[name] = copy.deepcopy(body[name])
                rec["customer"].add(name)
        f["ProcessedAt"] = now  # UpdatedAt is not changed by BatchUpdateFindings

    # ------------------------------------------------------------- get
    def get_findings(self, ctx: RequestContext, body: dict) -> dict:
        filters = body.get("Filters") or {}
        if not isinstance(filters, dict):
            raise invalid_input("Invalid parameter 'Filters': must be an object")
        max_results = body.get("MaxResults", 100)
        if isinstance(max_results, bool) or not isinstance(max_results, int) or not (1 <= max_results <= 100):
            raise invalid_input("Invalid parameter 'MaxResults': must be between 1 and 100")
        sort = body.get("SortCriteria") or []
        if not isinstance(sort, list):
            raise invalid_input("Invalid parameter 'SortCriteria': must be a list")
        for c in sort:
            if not isinstance(c, dict) or c.get("SortOrder", "asc") not in ("asc", "desc"):
                raise invalid_input("Invalid parameter 'SortCriteria': SortOrder must be asc or desc")
        predicate = self._compile_filters(filters)
        fingerprint = hashlib.sha256(json.dumps([filters, sort], sort_keys=True).encode()).hexdigest()[:16]
        offset = 0
        token = body.get("NextToken")
        if token:
            offset, fp = decode_token(token)
            if fp != fingerprint:
                raise invalid_input("Invalid parameter 'NextToken': the token does not match the request's filters")
        with self.store.lock:
            st = self._state(ctx)
            matched = [rec["finding"] for rec in st.findings.values() if predicate(rec["finding"])]
            for c in reversed(sort):
                matched = self._sorted(matched, c.get("Field"), c.get("SortOrder", "asc") == "desc")
            page = copy.deepcopy(matched[offset:offset + max_results])
        resp: dict[str, Any] = {"Findings": page}
        if offset + max_results < len(matched):
            resp["NextToken"] = encode_token(offset + max_results, fingerprint)
        return resp

    @staticmethod
    def _sorted(findings: list[dict], field_name: Any, desc: bool) -> list[dict]:
        if not isinstance(field_name, str):
            return findings
        path = (SH_STRING_FILTERS.get(field_name) or SH_DATE_FILTERS.get(field_name) or SH_NUMBER_FILTERS.get(field_name)
                or tuple(field_name.split(".")))
        present, missing = [], []
        for f in findings:
            vals = [v for v in values_at(f, path) if isinstance(v, (str, int, float)) and not isinstance(v, bool)]
            (present if vals else missing).append((vals[0] if vals else None, f))
        try:
            present.sort(key=lambda t: t[0], reverse=desc)
        except TypeError:
            present.sort(key=lambda t: str(t[0]), reverse=desc)
        return [f for _, f in present] + [f for _, f in missing]

    def _compile_filters(self, filters: dict) -> Callable[[dict], bool]:
        preds: list[Callable[[dict], bool]] = []
        if len([k for k, v in filters.items() if v]) > 10:
            raise invalid_input("Invalid parameter 'Filters': you can filter by up to 10 finding attributes")
        for name, flist in filters.items():
            if flist is None:
                continue
            if not isinstance(flist, list):
                raise invalid_input(f"Invalid parameter 'Filters.{name}': must be a list")
            if not flist:
                continue
            if len(flist) > 20:
                raise invalid_input(f"Invalid parameter 'Filters.{name}': at most 20 filter values are allowed")
            for flt in flist:
                if not isinstance(flt, dict):
                    raise invalid_input(f"Invalid parameter 'Filters.{name}': each filter must be an object")
            if name in SH_STRING_FILTERS:
                preds.append(self._string_pred(name, SH_STRING_FILTERS[name], flist))
            elif name in SH_MAP_FILTERS:
                preds.append(self._map_pred(name, SH_MAP_FILTERS[name], flist))
            elif name in SH_DATE_FILTERS:
                preds.append(self._date_pred(name, SH_DATE_FILTERS[name], flist))
            elif name in SH_NUMBER_FILTERS:
                preds.append(self._number_pred(name, SH_NUMBER_FILTERS[name], flist))
            elif name in SH_IP_FILTERS:
                preds.append(self._ip_pred(name, SH_IP_FILTERS[name], flist))
            elif name in SH_BOOLEAN_FILTERS:
                preds.append(self._bool_pred(name, SH_BOOLEAN_FILTERS[name], flist))
            else:
                # e.g. the deprecated Keyword filter, or an unknown name.
                raise invalid_input(f"Invalid parameter 'Filters.{name}': filter is not supported by this emulator")
        return lambda f: all(p(f) for p in preds)

    @staticmethod
    def _check_mix(name: str, comparisons: set[str]) -> None:
        # Combinations rejected by the service (StringFilter / MapFilter docs).
        if "CONTAINS" in comparisons and comparisons - {"CONTAINS"}:
            raise invalid_input(f"Invalid parameter 'Filters.{name}': CONTAINS filters can only be used with other CONTAINS filters")
        if "NOT_CONTAINS" in comparisons and comparisons - {"NOT_CONTAINS"}:
            raise invalid_input(f"Invalid parameter 'Filters.{name}': NOT_CONTAINS filters can only be used with other NOT_CONTAINS filters")
        if "EQUALS" in comparisons and comparisons & {"NOT_EQUALS", "PREFIX_NOT_EQUALS"}:
            raise invalid_input(f"Invalid parameter 'Filters.{name}': EQUALS cannot be combined with NOT_EQUALS or PREFIX_NOT_EQUALS")

    def _string_pred(self, name: str, path: tuple[str, ...], flist: list[dict]) -> Callable[[dict], bool]:
        pos, neg = [], []
        for flt in flist:
            cmp_, val = flt.get("Comparison"), flt.get("Value")
            if not is_nonempty_str(val):
                raise invalid_input(f"Invalid parameter 'Filters.{name}.Value': must be a non-empty string")
            if cmp_ in STRING_POSITIVE:
                pos.append((cmp_, val))
            elif cmp_ in STRING_NEGATIVE:
                neg.append((cmp_, val))
            elif cmp_ == "CONTAINS_WORD":
                raise invalid_input(f"Invalid parameter 'Filters.{name}.Comparison': CONTAINS_WORD is only supported by the V2 APIs")
            else:
                raise invalid_input(f"Invalid parameter 'Filters.{name}.Comparison': {cmp_!r}")
        self._check_mix(name, {c for c, _ in pos + neg})

        def test(cmp_: str, actual: str, val: str) -> bool:
            if cmp_ in ("EQUALS", "NOT_EQUALS"):
                return actual == val
            if cmp_ in ("PREFIX", "PREFIX_NOT_EQUALS"):
                return actual.startswith(val)
            return val in actual  # CONTAINS / NOT_CONTAINS

        def pred(f: dict) -> bool:
            actual = [v if isinstance(v, str) else json.dumps(v) for v in values_at(f, path)]
            if pos and not any(test(c, a, v) for c, v in pos for a in actual):
                return False
            for c, v in neg:  # negatives are AND'ed; a missing field passes
                if any(test(c, a, v) for a in actual):
                    return False
            return True

        return pred

    def _map_pred(self, name: str, path: tuple[str, ...], flist: list[dict]) -> Callable[[dict], bool]:
        pos, neg = [], []
        for flt in flist:
            cmp_, key, val = flt.get("Comparison"), flt.get("Key"), flt.get("Value")
            if not is_nonempty_str(key) or not is_nonempty_str(val):
                raise invalid_input(f"Invalid parameter 'Filters.{name}': Key and Value must be non-empty strings")
            if cmp_ in MAP_POSITIVE:
                pos.append((cmp_, key, val))
            elif cmp_ in MAP_NEGATIVE:
                neg.append((cmp_, key, val))
            else:
                raise invalid_input(f"Invalid parameter 'Filters.{name}.Comparison': {cmp_!r}")
        comparisons = {c for c, _, _ in pos + neg}
        self._check_mix(name, comparisons)

        def test(cmp_: str, maps: list[dict], key: str, val: str) -> bool:
            for m in maps:
                actual = m.get(key)
                if not isinstance(actual, str):
                    continue
                if (cmp_ in ("EQUALS", "NOT_EQUALS") and actual == val) or (cmp_ in ("CONTAINS", "NOT_CONTAINS") and val in actual):
                    return True
            return False

        def pred(f: dict) -> bool:
            maps = [m for m in values_at(f, path) if isinstance(m, dict)]
            if pos and not any(test(c, maps, k, v) for c, k, v in pos):
                return False
            return not any(test(c, maps, k, v) for c, k, v in neg)

        return pred

    def _date_pred(self, name: str, path: tuple[str, ...], flist: list[dict]) -> Callable[[dict], bool]:
        ranges = []
        now = datetime.now(timezone.utc)
        for flt in flist:
            if "DateRange" in flt:
                dr = flt["DateRange"] or {}
                value, unit = dr.get("Value"), dr.get("Unit", "DAYS")
                if isinstance(value, bool) or not isinstance(value, int) or unit != "DAYS":
                    raise invalid_input(f"Invalid parameter 'Filters.{name}.DateRange'")
                boundary = now - timedelta(days=value)
                if dr.get("Comparison", "WITHIN") == "OLDER_THAN":
                    ranges.append((None, boundary))
                else:
                    ranges.append((boundary, None))
            else:
                start = parse_timestamp(flt["Start"]) if "Start" in flt else None
                end = parse_timestamp(flt["End"]) if "End" in flt else None
                if ("Start" in flt and start is None) or ("End" in flt and end is None) or (start is None and end is None):
                    raise invalid_input(f"Invalid parameter 'Filters.{name}': Start/End must be valid timestamps, or use DateRange")
                ranges.append((start, end))

        def pred(f: dict) -> bool:
            for v in values_at(f, path):
                t = parse_timestamp(v)
                if t is None:
                    continue
                for start, end in ranges:
                    if (start is None or t >= start) and (end is None or t <= end):
                        return True
            return False

        return pred

    def _number_pred(self, name: str, path: tuple[str, ...], flist: list[dict]) -> Callable[[dict], bool]:
        ops = {"Gte": lambda a, b: a >= b, "Lte": lambda a, b: a <= b, "Eq": lambda a, b: a == b, "Gt": lambda a, b: a > b, "Lt": lambda a, b: a < b}
        conds = []
        for flt in flist:
            c = [(ops[k], v) for k, v in flt.items() if k in ops and isinstance(v, (int, float)) and not isinstance(v, bool)]
            if not c:
                raise invalid_input(f"Invalid parameter 'Filters.{name}': one of Gte, Lte, Eq, Gt, Lt is required")
            conds.append(c)

        def pred(f: dict) -> bool:
            nums = [v for v in values_at(f, path) if isinstance(v, (int, float)) and not isinstance(v, bool)]
            return any(all(op(n, b) for op, b in c) for c in conds for n in nums)

        return pred

    def _ip_pred(self, name: str, path: tuple[str, ...], flist: list[dict]) -> Callable[[dict], bool]:
        nets = []
        for flt in flist:
            try:
                nets.append(ipaddress.ip_network(flt.get("Cidr", ""), strict=False))
            except ValueError:
                raise invalid_input(f"Invalid parameter 'Filters.{name}.Cidr'") from None

        def pred(f: dict) -> bool:
            for v in values_at(f, path):
                try:
                    ip = ipaddress.ip_address(v)
                except ValueError:
                    continue
                if any(ip.version == n.version and ip in n for n in nets):
                    return True
            return False

        return pred

    def _bool_pred(self, name: str, path: tuple[str, ...], flist: list[dict]) -> Callable[[dict], bool]:
        wanted = set()
        for flt in flist:
            if not isinstance(flt.get("Value"), bool):
                raise invalid_input(f"Invalid parameter 'Filters.{name}.Value': must be a boolean")
            wanted.add(flt["Value"])

        def pred(f: dict) -> bool:
            vals = values_at(f, path) or [False]
            return any(v in wanted for v in vals)

        return pred

    # ------------------------------------------------------------- V2
    def batch_update_findings_v2(self, ctx: RequestContext, body: dict) -> dict:
        uids = body.get("MetadataUids")
        idents = body.get("FindingIdentifiers")
        if uids and idents:
            raise validation_error("MetadataUids and FindingIdentifiers cannot be used together")
        if not uids and not idents:
            raise validation_error("one of MetadataUids or FindingIdentifiers is required")
        listed = uids or idents
        if not isinstance(listed, list):
            raise validation_error("MetadataUids or FindingIdentifiers must be a list")
        if len(listed) > V2_MAX_IDENTIFIERS:
            raise validation_error(f"at most {V2_MAX_IDENTIFIERS} findings per request, got {len(listed)}")
        if uids:
            for i, uid in enumerate(uids):
                if not is_nonempty_str(uid):
                    raise validation_error(f"MetadataUids[{i}] must be a non-empty string")
        else:
            for i, ident in enumerate(idents):
                if not isinstance(ident, dict) or not all(
                        is_nonempty_str(ident.get(k)) for k in ("CloudAccountUid", "FindingInfoUid", "MetadataProductUid")):
                    raise validation_error(
                        f"FindingIdentifiers[{i}]: CloudAccountUid, FindingInfoUid and MetadataProductUid are required")
        updates = {k: body[k] for k in ("Comment", "SeverityId", "StatusId") if k in body}
        if not updates:
            raise validation_error("at least one of Comment, SeverityId or StatusId is required")
        if "Comment" in updates:
            c = updates["Comment"]
            if not is_nonempty_str(c) or len(c) > V2_COMMENT_MAX:
                raise validation_error(f"Comment must be between 1 and {V2_COMMENT_MAX} characters and not blank")
        for name, allowed in (("SeverityId", V2_SEVERITY_IDS), ("StatusId", V2_STATUS_IDS)):
            if name in updates and (isinstance(updates[name], bool) or updates[name] not in allowed):
                raise validation_error(f"{name} must be one of {sorted(allowed)}")
        processed, unprocessed = [], []
        with self.store.lock:
            st = self._state(ctx)
            by_triple = {_v2_triple(f): f for f in st.findings_v2.values()}
            for item in listed:
                if uids:
                    f = st.findings_v2.get(item)
                    out = {"MetadataUid": item}
                else:
                    key = (item["CloudAccountUid"], item["FindingInfoUid"], item["MetadataProductUid"])
                    f = by_triple.get(key)
                    out = {"FindingIdentifier": dict(zip(("CloudAccountUid", "FindingInfoUid", "MetadataProductUid"), key))}
                if f is None:
                    unprocessed.append({**out, "ErrorCode": "ResourceNotFoundException", "ErrorMessage": "Finding not found"})
                    continue
                if "Comment" in updates:
                    f["comment"] = updates["Comment"]
                if "SeverityId" in updates:
                    f["severity_id"] = updates["SeverityId"]
                    f["severity"] = V2_SEVERITY_IDS[updates["SeverityId"]]
                if "StatusId" in updates:
                    f["status_id"] = updates["StatusId"]
                    f["status"] = V2_STATUS_IDS[updates["StatusId"]]
                # finding_info.modified_time and time are not changed by BatchUpdateFindingsV2.
                processed.append(out)
        self.stats.sample(ctx.account, "findings_per_update_v2", len(listed))
        return {"ProcessedFindings": processed, "UnprocessedFindings": unprocessed}

    def get_findings_v2(self, ctx: RequestContext, body: dict) -> dict:
        max_results = body.get("MaxResults", 100)
        if isinstance(max_results, bool) or not isinstance(max_results, int) or not (1 <= max_results <= 100):
            raise validation_error("MaxResults must be between 1 and 100")
        if body.get("Scopes"):
            raise validation_error("Scopes is not supported by this emulator")
        predicate = self._compile_v2_filters(body.get("Filters") or {})
        sort = body.get("SortCriteria") or []
        if not isinstance(sort, list):
            raise validation_error("SortCriteria must be a list")
        for c in sort:
            if not isinstance(c, dict) or c.get("SortOrder", "asc") not in ("asc", "desc"):
                raise validation_error("SortCriteria: SortOrder must be asc or desc")
            if not isinstance(c.get("Field"), str) or c["Field"] not in OCSF_STRING_FIELDS:
                raise validation_error(f"SortCriteria: unknown Field {c.get('Field')!r}")
        fingerprint = hashlib.sha256(
            json.dumps([body.get("Filters") or {}, sort], sort_keys=True).encode()).hexdigest()[:16]
        offset = 0
        token = body.get("NextToken")
        if token:
            offset, fp = decode_token(token)
            if fp != fingerprint:
                raise validation_error("NextToken does not match the request's filters")
        with self.store.lock:
            matched = [f for f in self._state(ctx).findings_v2.values() if predicate(f)]
            for c in reversed(sort):
                matched = self._sorted(matched, c["Field"], c.get("SortOrder", "asc") == "desc")
            page = copy.deepcopy(matched[offset:offset + max_results])
        resp: dict[str, Any] = {"Findings": page}
        if offset + max_results < len(matched):
            resp["NextToken"] = encode_token(offset + max_results, fingerprint)
        return resp

    def _compile_v2_filters(self, filters: dict) -> Callable[[dict], bool]:
        if not isinstance(filters, dict):
            raise validation_error("Filters must be an object")
        composites = filters.get("CompositeFilters") or []
        operator = filters.get("CompositeOperator", "AND")
        if operator not in ("AND", "OR"):
            raise validation_error("CompositeOperator must be AND or OR")
        if len(composites) > 10:
            raise validation_error("at most 10 composite filters")
        preds = []
        for ci, comp in enumerate(composites):
            if not isinstance(comp, dict):
                raise validation_error(f"CompositeFilters[{ci}] must be an object")
            unsupported = [k for k in comp if k not in ("StringFilters", "Operator")]
            if unsupported:
                raise validation_error(f"CompositeFilters[{ci}]: {unsupported[0]} is not supported by this emulator")
            strings = comp.get("StringFilters") or []
            if len(strings) > 20:
                raise validation_error(f"CompositeFilters[{ci}]: at most 20 string filters")
            inner_op = comp.get("Operator", "AND")
            if inner_op not in ("AND", "OR"):
                raise validation_error(f"CompositeFilters[{ci}].Operator must be AND or OR")
            tests = []
            for flt in strings:
                name = flt.get("FieldName") if isinstance(flt, dict) else None
                if name not in OCSF_STRING_FIELDS:
                    raise validation_error(f"CompositeFilters[{ci}].StringFilters: unknown FieldName {name!r}")
                f = flt.get("Filter") or {}
                cmp_, val = f.get("Comparison"), f.get("Value")
                if cmp_ not in V2_STRING_COMPARISONS or not is_nonempty_str(val):
                    raise validation_error(f"CompositeFilters[{ci}].StringFilters: bad Filter for {name}")
                tests.append((tuple(name.split(".")), cmp_, val))

            def comp_pred(finding: dict, tests=tests, inner_op=inner_op) -> bool:
                results = []
                for path, cmp_, val in tests:
                    actual = [v for v in values_at(finding, path) if isinstance(v, str)]
                    if cmp_ == "EQUALS":
                        r = val in actual
                    elif cmp_ == "NOT_EQUALS":
                        r = val not in actual
                    elif cmp_ == "PREFIX":
                        r = any(a.startswith(val) for a in actual)
                    elif cmp_ == "PREFIX_NOT_EQUALS":
                        r = not any(a.startswith(val) for a in actual)
                    elif cmp_ == "CONTAINS":
                        r = any(val in a for a in actual)
                    elif cmp_ == "NOT_CONTAINS":
                        r = not any(val in a for a in actual)
                    else:  # CONTAINS_WORD
                        r = any(val in a.split() for a in actual)
                    results.append(r)
                return (all(results) if inner_op == "AND" else any(results)) if results else True

            preds.append(comp_pred)
        if not preds:
            return lambda f: True
        if operator == "AND":
            return lambda f: all(p(f) for p in preds)
        return lambda f: any(p(f) for p in preds)

    def seed_findings_v2(self, query: dict[str, list[str]], body: dict | None = None) -> Any:
        account = (query.get("account") or [""])[0]
        region = (query.get("region") or ["us-east-1"])[0]
        findings = (body or {}).get("Findings")
        if not account or not isinstance(findings, list):
            raise invalid_input("query parameter 'account' and body {\"Findings\": [...]} are required")
        with self.store.lock:
            st = self.store.get(self.name, account, region, SecurityHubState)
            for f in findings:
                uid = ((f or {}).get("metadata") or {}).get("uid") if isinstance(f, dict) else None
                if not is_nonempty_str(uid) or not all(_v2_triple(f)):
                    raise invalid_input("each OCSF finding needs metadata.uid, cloud.account.uid, finding_info.uid, metadata.product.uid")
                st.findings_v2[uid] = copy.deepcopy(f)
        return {"Seeded": len(findings)}

    def dump_findings_v2(self, query: dict[str, list[str]], _body: dict | None = None) -> Any:
        account = (query.get("account") or [""])[0]
        if not account:
            raise invalid_input("query parameter 'account' is required")
        with self.store.lock:
            out = []
            for acct, _region, st in self.store.items(self.name):
                if acct == account:
                    out.extend(copy.deepcopy(f) for f in st.findings_v2.values())
        return out

    # ------------------------------------------------------------ control
    def dump_findings(self, query: dict[str, list[str]], _body: dict | None = None) -> Any:
        account = (query.get("account") or [""])[0]
        if not account:
            raise invalid_input("query parameter 'account' is required")
        with self.store.lock:
            out = []
            for acct, _region, st in self.store.items(self.name):
                if acct == account:
                    out.extend(copy.deepcopy(rec["finding"]) for rec in st.findings.values())
        return out

