"""template.yaml as the local stack reads it: the one source of the functions' and state
machines' settings (memory, timeout, reserved concurrency, environment, handlers, state
machine names, definitions and their substitutions, the S3 event filter).

Intrinsic functions are resolved the way CloudFormation resolves them, for the subset the
settings use: ``!Ref`` to a parameter (its ``Default``, or a local override), to a pseudo
parameter, to a function (its name), to a state machine (its ARN) or to the bucket;
``!GetAtt X.Arn``; ``!Sub`` with ``${Name}`` / ``${X.Arn}``; ``!Join`` (of a list, or of a
CommaDelimitedList parameter, which is its comma-separated text here). Local function names are
``<stack>-<logical id without "Function", kebab-case>`` (``cubecut-local-block``); AWS
would generate them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from cubecut.errors import CubecutError

from .lambda_context import LOCAL_ACCOUNT_ID, LOCAL_REGION

#: template.yaml at the root of the checkout (the project is installed editable).
TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"


class TemplateError(CubecutError, ValueError):
    """template.yaml is missing or uses something the local stack cannot resolve."""


@dataclass(frozen=True)
class FunctionSpec:
    """One ``AWS::Serverless::Function`` with its settings resolved (Globals applied)."""

    logical_id: str
    name: str
    arn: str
    handler: str
    memory_mb: int
    timeout_s: int
    reserved_concurrency: int | None
    environment: dict[str, str]

    @property
    def short_name(self) -> str:
        """The logical id without ``Function`` (``Block``): what ``LocalStack(wrap=...)`` is given."""
        return self.logical_id.removesuffix("Function")


@dataclass(frozen=True)
class StateMachineSpec:
    """One ``AWS::Serverless::StateMachine``: its name and its definition, substituted."""

    logical_id: str
    name: str
    arn: str
    definition: str


@dataclass(frozen=True)
class LocalTemplate:
    functions: dict[str, FunctionSpec]
    state_machines: dict[str, StateMachineSpec]
    parameters: dict[str, str]
    #: ``(prefix, suffix)`` of the S3 event that starts ``OnUploadFunction``.
    upload_filter: tuple[str, str]
    #: The data bucket's VersioningConfiguration status ("Enabled", or None if unversioned).
    bucket_versioning: str | None = None


class _Loader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags as their long forms (``!Ref x`` → ``{"Ref": x}``)."""


def _intrinsic(loader: _Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _intrinsic)


def apply_substitutions(text: str, values: Mapping[str, Any]) -> str:
    """Replace ``${Name}`` in a definition's text, as ``DefinitionSubstitutions`` does."""
    def value(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise TemplateError(f"no substitution for ${{{match.group(1)}}}")
        return str(values[match.group(1)])

    return re.sub(r"\$\{([\w.:]+)\}", value, text)


def _resolve(value: Any, names: Mapping[str, str]) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((key, argument),) = value.items()
        try:
            if key == "Ref":
                return names[argument]
            if key == "Fn::GetAtt":
                return names[".".join(argument)]
        except KeyError as exc:
            raise TemplateError(f"cannot resolve {key} {argument} locally") from exc
        if key == "Fn::Sub" and isinstance(argument, str):
            return apply_substitutions(argument, names)
        if key == "Fn::Join" and isinstance(argument, list) and len(argument) == 2:
            items = _resolve(argument[1], names)  # a CommaDelimitedList parameter is its text here
            return items if isinstance(items, str) else str(argument[0]).join(str(i) for i in items)
    if isinstance(value, dict):
        return {key: _resolve(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve(item, names) for item in value]
    return value


#: The function properties the local stack uses (the rest, e.g. Policies, is AWS's business).
_FUNCTION_SETTINGS = ("Handler", "MemorySize", "Timeout", "ReservedConcurrentExecutions", "Events")


#: The state machine properties the local stack uses (logging and tracing are AWS's business).
_STATE_MACHINE_SETTINGS = ("DefinitionUri", "DefinitionSubstitutions")


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def load_template(*, stack_name: str, bucket: str, parameters: Mapping[str, Any] | None = None,
                  path: Path = TEMPLATE_PATH) -> LocalTemplate:
    """Read ``path`` as stack ``stack_name``, with parameter ``Default`` values (or
    ``parameters``) and ``bucket`` as the data bucket."""
    if not path.is_file():
        raise TemplateError(f"the local stack runs template.yaml and infra/statemachines of a cubecut checkout, "
                            f"and {path} is not there (an installed wheel has neither): run it from a clone")
    template = yaml.load(path.read_text(), Loader=_Loader)  # _Loader is a SafeLoader
    resources: dict[str, Any] = template["Resources"]
    values = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
    values.update({name: str(value) for name, value in (parameters or {}).items()})
    names: dict[str, str] = {**values, "AWS::StackName": stack_name, "AWS::AccountId": LOCAL_ACCOUNT_ID,
                             "AWS::Region": LOCAL_REGION, "AWS::Partition": "aws"}
    buckets = {logical: r for logical, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}
    names.update(dict.fromkeys(buckets, bucket))
    for logical, resource in resources.items():
        if resource["Type"] == "AWS::Serverless::Function":
            name = f"{stack_name}-{_kebab(logical.removesuffix('Function'))}"
            names[logical] = name
            names[f"{logical}.Arn"] = f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:function:{name}"
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            machine = _resolve(resource["Properties"]["Name"], names)
            names[logical] = names[f"{logical}.Arn"] = \
                f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:stateMachine:{machine}"
    defaults = template.get("Globals", {}).get("Function", {})
    functions, machines, upload_filter, versioning = {}, {}, ("", ""), None
    for logical, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::S3::Bucket" and logical == "DataBucket":
            versioning = properties.get("VersioningConfiguration", {}).get("Status")
        if resource["Type"] == "AWS::Serverless::Function":
            merged = {**defaults, **properties}
            settings = _resolve({key: merged[key] for key in _FUNCTION_SETTINGS if key in merged}, names)
            environment = {**_resolve(defaults.get("Environment", {}).get("Variables", {}), names),
                           **_resolve(properties.get("Environment", {}).get("Variables", {}), names)}
            reserved = settings.get("ReservedConcurrentExecutions")
            functions[logical] = FunctionSpec(
                logical, names[logical], names[f"{logical}.Arn"], settings["Handler"], int(settings["MemorySize"]),
                int(settings["Timeout"]), None if reserved is None else int(reserved),
                {key: str(value) for key, value in environment.items()})
            for event in settings.get("Events", {}).values():
                if event["Type"] == "S3":
                    rules = {r["Name"]: r["Value"] for r in event["Properties"]["Filter"]["S3Key"]["Rules"]}
                    upload_filter = (rules.get("prefix", ""), rules.get("suffix", ""))
        elif resource["Type"] == "AWS::Serverless::StateMachine":
            settings = _resolve({key: properties[key] for key in _STATE_MACHINE_SETTINGS}, names)
            text = (path.parent / settings["DefinitionUri"]).read_text()
            machines[logical] = StateMachineSpec(logical, names[logical].rsplit(":", 1)[1], names[logical],
                                                 apply_substitutions(text, settings["DefinitionSubstitutions"]))
    return LocalTemplate(functions, machines, values, upload_filter, versioning)
