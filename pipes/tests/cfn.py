"""A small CloudFormation evaluator for the tests: resolves a template for chosen parameter values.

`Stack(template, parameters, account=..., region=...)` evaluates the template's Conditions and
resolves `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::If`, `Fn::Join`, `Fn::Select`, `Fn::Split`,
`Fn::FindInMap`, `Fn::Equals`/`Not`/`And`/`Or` and `AWS::NoValue` (dropped from lists and maps),
as CloudFormation would at deploy time. Resources get deterministic physical names (their
logical id unless the template names them) and ARNs of the shape their service uses, so that
IAM statements resolve to the ARNs a request names. Only what our templates use is supported;
anything else raises `Unsupported`, so a new construct fails loudly instead of resolving wrongly.

Plain Python, no AWS access; used by iam_check.py and the template tests.
"""

from __future__ import annotations

import copy
import re
from typing import Any

NO_VALUE = object()  # AWS::NoValue, removed from the enclosing list or map


class Unsupported(Exception):
    """A construct this evaluator does not implement."""


def stack_name_default() -> str:
    return "securityhub-enricher"


class Stack:
    """One template resolved for one set of parameter values, account and Region."""

    def __init__(
        self,
        template: dict,
        parameters: dict[str, Any] | None = None,
        *,
        account: str = "111122223333",
        region: str = "us-east-1",
        partition: str = "aws",
        stack_name: str | None = None,
        physical_names: dict[str, str] | None = None,
    ):
        self.template = template
        self.account = account
        self.region = region
        self.partition = partition
        self.stack_name = stack_name or stack_name_default()
        self.physical_names = dict(physical_names or {})
        self.parameters: dict[str, Any] = {}
        for name, spec in template.get("Parameters", {}).items():
            if parameters and name in parameters:
                value = parameters[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise KeyError(f"parameter {name} has no default and no value was given")
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = [v.strip() for v in value.split(",")] if value else []
            elif not isinstance(value, list):
                value = str(value)
            self.parameters[name] = value
        unknown = set(parameters or {}) - set(self.parameters)
        if unknown:
            raise KeyError(f"not parameters of this template: {sorted(unknown)}")
        self._conditions: dict[str, bool] = {}
        self._resolved: dict[str, dict] | None = None

    # ---------------------------------------------------------------- conditions

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definition = self.template.get("Conditions", {}).get(name)
            if definition is None:
                raise KeyError(f"no condition {name}")
            self._conditions[name] = bool(self.resolve(definition))
        return self._conditions[name]

    def exists(self, logical_id: str) -> bool:
        resource = self.template["Resources"].get(logical_id)
        if resource is None:
            return False
        condition = resource.get("Condition")
        return condition is None or self.condition(condition)

    def resources(self, type_: str | None = None) -> dict[str, dict]:
        """The resources that exist for these parameters, with their properties resolved."""
        if self._resolved is None:
            self._resolved = {}
            for name, resource in self.template["Resources"].items():
                if self.exists(name):
                    resolved = dict(resource)
                    resolved["Properties"] = self.resolve(resource.get("Properties", {}))
                    self._resolved[name] = resolved
        return {n: r for n, r in self._resolved.items() if type_ is None or r.get("Type") == type_}

    # ---------------------------------------------------------------- names and ARNs

    def pseudo(self, name: str) -> Any:
        values = {
            "AWS::AccountId": self.account,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise Unsupported(f"pseudo parameter {name}")
        return values[name]

    def _type(self, logical_id: str) -> str:
        resource = self.template["Resources"].get(logical_id)
        if resource is None:
            raise KeyError(f"no resource {logical_id}")
        return resource["Type"]

    def _raw_property(self, logical_id: str, prop: str) -> Any:
        value = self.template["Resources"][logical_id].get("Properties", {}).get(prop)
        return None if value is None else self.resolve(value)

    def physical_name(self, logical_id: str) -> str:
        if logical_id in self.physical_names:
            return self.physical_names[logical_id]
        type_ = self._type(logical_id)
        name_property = {
            "AWS::IAM::Role": "RoleName",
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::DynamoDB::Table": "TableName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::Kinesis::Stream": "Name",
            "AWS::SNS::Topic": "TopicName",
            "AWS::Serverless::Function": "FunctionName",
            "AWS::Events::Rule": "Name",
            "AWS::Pipes::Pipe": "Name",
            "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
        }.get(type_)
        if name_property:
            named = self._raw_property(logical_id, name_property)
            if isinstance(named, str) and named:
                return named
        return logical_id

    def arn(self, logical_id: str) -> str:
        p, r, a = self.partition, self.region, self.account
        name = self.physical_name(logical_id)
        type_ = self._type(logical_id)
        shapes = {
            "AWS::IAM::Role": f"arn:{p}:iam::{a}:role/{name}",
            "AWS::IAM::ManagedPolicy": f"arn:{p}:iam::{a}:policy/{name}",
            "AWS::Logs::LogGroup": f"arn:{p}:logs:{r}:{a}:log-group:{name}:*",
            "AWS::DynamoDB::Table": f"arn:{p}:dynamodb:{r}:{a}:table/{name}",
            "AWS::SQS::Queue": f"arn:{p}:sqs:{r}:{a}:{name}",
            "AWS::Kinesis::Stream": f"arn:{p}:kinesis:{r}:{a}:stream/{name}",
            "AWS::SNS::Topic": f"arn:{p}:sns:{r}:{a}:{name}",
            "AWS::Serverless::Function": f"arn:{p}:lambda:{r}:{a}:function:{name}",
            "AWS::Events::Rule": f"arn:{p}:events:{r}:{a}:rule/{name}",
            "AWS::Pipes::Pipe": f"arn:{p}:pipes:{r}:{a}:pipe/{name}",
            "AWS::SecurityHub::ActionTarget": f"arn:{p}:securityhub:{r}:{a}:action/custom/{name}",
            "AWS::CloudWatch::Alarm": f"arn:{p}:cloudwatch:{r}:{a}:alarm:{name}",
            "AWS::Scheduler::Schedule": f"arn:{p}:scheduler:{r}:{a}:schedule/default/{name}",
            "AWS::Organizations::ResourcePolicy": f"arn:{p}:organizations::{a}:resourcepolicy/o-example/rp-{name}",
        }
        if type_ not in shapes:
            raise Unsupported(f"ARN of {type_} ({logical_id})")
        return shapes[type_]

    def ref(self, name: str) -> Any:
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.parameters:
            return self.parameters[name]
        if name.endswith(".Alias"):  # SAM: AutoPublishAlias
            function = name[: -len(".Alias")]
            return self.arn(function) + ":live"
        type_ = self._type(name)
        if type_ == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{self.physical_name(name)}"
        if type_ in ("AWS::SNS::Topic", "AWS::IAM::ManagedPolicy", "AWS::SecurityHub::ActionTarget"):
            return self.arn(name)
        return self.physical_name(name)

    def get_att(self, logical_id: str, attribute: str) -> Any:
        if attribute == "Arn":
            return self.arn(logical_id)
        if attribute == "StreamArn" and self._type(logical_id) == "AWS::DynamoDB::Table":
            return self.arn(logical_id) + "/stream/2026-01-01T00:00:00.000"
        if attribute == "QueueName":
            return self.physical_name(logical_id)
        if attribute == "QueueUrl":
            return self.ref(logical_id)
        if attribute == "TopicName":
            return self.physical_name(logical_id)
        if attribute == "RoleId":
            return "AROA" + logical_id.upper()[:17]
        raise Unsupported(f"Fn::GetAtt {logical_id}.{attribute}")

    # ---------------------------------------------------------------- intrinsics

    def sub(self, text: str, variables: dict[str, Any]) -> str:
        def replace(match: re.Match) -> str:
            key = match.group(1)
            if key.startswith("!"):
                return "${" + key[1:] + "}"
            if key in variables:
                value = variables[key]
            elif "." in key and not key.startswith("AWS::"):
                resource, attribute = key.split(".", 1)
                value = self.get_att(resource, attribute) if attribute != "Alias" else self.ref(key)
            else:
                value = self.ref(key)
            if not isinstance(value, str):
                raise Unsupported(f"Fn::Sub ${{{key}}} is not a string: {value!r}")
            return value

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            out = [self.resolve(item) for item in node]
            return [item for item in out if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return self.ref(value)
            if key == "Fn::GetAtt":
                target, attribute = value if isinstance(value, list) else value.split(".", 1)
                return self.get_att(target, attribute)
            if key == "Fn::Sub":
                if isinstance(value, str):
                    return self.sub(value, {})
                text, variables = value
                return self.sub(text, {k: self.resolve(v) for k, v in variables.items()})
            if key == "Fn::If":
                condition, yes, no = value
                return self.resolve(yes if self.condition(condition) else no)
            if key == "Fn::Equals":
                left, right = (self.resolve(v) for v in value)
                return str(left) == str(right)
            if key == "Fn::Not":
                (inner,) = value
                return not self.resolve(inner)
            if key == "Fn::And":
                return all(self.resolve(v) for v in value)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in value)
            if key == "Condition":
                return self.condition(value)
            if key == "Fn::Join":
                separator, items = value
                return separator.join(str(i) for i in self.resolve(items))
            if key == "Fn::Select":
                index, items = value
                items = self.resolve(items)
                return items[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = value
                return str(self.resolve(text)).split(separator)
            if key == "Fn::FindInMap":
                mapping, first, second = (self.resolve(v) for v in value)
                return self.template["Mappings"][mapping][str(first)][str(second)]
            if key.startswith("Fn::"):
                raise Unsupported(key)
        out = {}
        for key, value in node.items():
            resolved = self.resolve(value)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out


def copy_template(template: dict) -> dict:
    return copy.deepcopy(template)
