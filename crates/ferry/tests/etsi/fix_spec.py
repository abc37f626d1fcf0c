"""Writes a copy of an official ETSI MEC OpenAPI file with its known bugs fixed, for the
conformance test (crates/ferry/tests/etsi_conformance.rs). Every fix names the line of the
file (docs/etsi-mec/) it changes and why; docs/etsi-mec/README.md lists them.

usage: fix_spec.py IN.yaml OUT.yaml
"""

import sys

import yaml


def problem_json_alongside_json(doc, name):
    """MEC 010-2 and MEC 021 v2.1.1 (the OAS 3.0 files) declare their ProblemDetails error
    bodies as `application/json` (e.g. MEC021_AppMobilityService.yaml line 897, the 400 of
    `components.responses`; MEC010-2_AppLcm.yaml line 1438; MEC010-2_AppPkgMgmt.yaml line
    1701). ETSI GS MEC 009 clause 6.15 and
    RFC 7807 make it `application/problem+json`, and the MEC 011, 012 and 013 files say so:
    ferry sends problem+json everywhere, so the fix admits it next to application/json."""
    fixed = 0

    def walk(node):
        nonlocal fixed
        if isinstance(node, dict):
            content = node.get("content")
            if isinstance(content, dict) and "application/json" in content:
                schema = (content["application/json"] or {}).get("schema") or {}
                if str(schema.get("$ref", "")).endswith("ProblemDetails") and (
                    "application/problem+json" not in content
                ):
                    content["application/problem+json"] = content["application/json"]
                    fixed += 1
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return fixed


def paths(doc):
    return doc.get("paths", {})


def schemas(doc):
    return doc.get("components", {}).get("schemas", {})


def lcm_app_instance_created_as_zip(doc, name):
    """MEC010-2_AppLcm.yaml line 41: the 201 of POST /app_instances declares its
    AppInstanceInfo body as `application/zip`; it is JSON (every other AppInstanceInfo in the
    file is application/json, and a schema of object properties cannot describe a zip)."""
    if "AppLcm" not in name:
        return 0
    created = paths(doc)["/app_instances"]["post"]["responses"]["201"]["content"]
    created["application/json"] = created.pop("application/zip")
    return 1


def lcm_operation_params_is_an_object(doc, name):
    """MEC010-2_AppLcm.yaml lines 600-607: `OperationParams` is typed as a string enum
    (INSTANTIATE, OPERATE, TERMINATE) while its own description says it "shall be formatted
    according to the request data type of the related LCM operation" (an InstantiateAppRequest,
    OperateAppRequest or TerminateAppRequest object)."""
    if "AppLcm" not in name:
        return 0
    schemas(doc)["OperationParams"] = {
        "description": schemas(doc)["OperationParams"]["description"],
        "type": "object",
    }
    return 1


def lcm_subscription_info_notification_type_optional(doc, name):
    """MEC010-2_AppLcm.yaml line 703: AppInstSubscriptionInfo requires `notificationType`, a
    single state, while the request (AppInstSubscriptionRequest, line 839) makes
    `appInstanceState` optional: a subscription to every state change has no single value to
    put there. ferry sends it when the request named a state."""
    if "AppLcm" not in name:
        return 0
    info = schemas(doc)["AppInstSubscriptionInfo"]
    info["required"] = [r for r in info["required"] if r != "notificationType"]
    return 1


def pkgm_subscription_list_spelling(doc, name):
    """MEC010-2_AppPkgMgmt.yaml lines 1061 and 1065: the items of the subscription list
    require `subsctiptionType` (sic), while AppPkgSubscriptionInfo, the subscription itself,
    spells `subscriptionType`. ferry answers with the correct spelling in both (and accepts
    both spellings in requests)."""
    if "AppPkgMgmt" not in name:
        return 0
    item = schemas(doc)["Subscriptions.AppPkgSubscription"]
    item["required"] = ["href", "subscriptionType"]
    item["properties"]["subscriptionType"] = item["properties"].pop("subsctiptionType")
    return 1


def pkgm_delete_in_use_is_409(doc, name):
    """MEC010-2_AppPkgMgmt.yaml lines 157-170: DELETE /app_packages/{appPkgId} documents no 409,
    yet a package that app instances still use cannot be deleted (ETSI GS MEC 010-2 clause
    7.4.2.3.5 lets only a package not in use go; NFV SOL005, which MEC 010-2 follows, answers
    409 Conflict). The file's own components.responses has the 409 (line 1728)."""
    if "AppPkgMgmt" not in name:
        return 0
    op = paths(doc)["/app_packages/{appPkgId}"]["delete"]["responses"]
    op["409"] = {"$ref": "#/components/responses/409"}
    return 1


def app_support_confirmations_can_be_malformed(doc, name):
    """MEC011_MecAppSupportApi.yaml lines 828-863 and 912-947: POST confirm_termination and
    confirm_ready take a JSON body (AppTerminationConfirmation, AppReadyConfirmation with a
    required `indication`) but document no 400, so a malformed body has no answer. ferry
    answers 400 with ProblemDetails, the 400 the file documents for its other operations."""
    if "MecAppSupport" not in name:
        return 0
    bad = paths(doc)["/applications/{appInstanceId}/traffic_rules/{trafficRuleId}"]["put"][
        "responses"
    ]["400"]
    n = 0
    for p in ("confirm_ready", "confirm_termination"):
        paths(doc)[f"/applications/{{appInstanceId}}/{p}"]["post"]["responses"]["400"] = bad
        n += 1
    return n


def service_mgmt_create_body_is_service_info(doc, name):
    """MEC011_MecServiceMgmtApi.yaml lines 478-480: the body of POST
    /applications/{appInstanceId}/services is `oneOf: [{type: object}, {type: object}]`, which
    no value satisfies (every object matches both); the clause (ETSI GS MEC 011 7.2.2) makes
    it a ServiceInfo."""
    if "MecServiceMgmt" not in name:
        return 0
    body = paths(doc)["/applications/{appInstanceId}/services"]["post"]["requestBody"]
    body["content"]["application/json"]["schema"] = {"$ref": "#/components/schemas/ServiceInfo"}
    return 1


def ams_device_information_without_consumer(doc, name):
    """MEC021_AppMobilityService.yaml line 658: RegistrationInfo.deviceInformation requires
    `serviceConsumerId`, which is not one of its properties (it belongs to RegistrationInfo
    itself; the v2.2.1 file drops it from deviceInformation)."""
    if "AppMobilityService" not in name:
        return 0
    dev = schemas(doc)["RegistrationInfo.deviceInformation"]
    dev["required"] = [r for r in dev["required"] if r != "serviceConsumerId"]
    return 1


def ams_subscription_type_is_a_string(doc, name):
    """MEC021_AppMobilityService.yaml lines 769-775: the `subscriptionType` of the entries of
    the subscription list (SubscriptionLinkList) is an integer enum (0 RESERVED,
    1 MOBILITY_PROCEDURE, 2 ADJACENT_APPINFO), while the subscriptions themselves (lines 503
    and 636) carry the strings "MobilityProcedureSubscription" and
    "AdjacentAppInfoSubscription"; the v2.2.1 file makes the list's a string enum of those."""
    if "AppMobilityService" not in name:
        return 0
    schemas(doc)["subscriptionType"] = {
        "type": "string",
        "enum": ["MobilityProcedureSubscription", "AdjacentAppInfoSubscription"],
    }
    return 1


def rni_subscription_type_names_its_schema(doc, name):
    """MEC012_RniAPI.yaml lines 855, 896, 1064, 1162, 1206: subscription bodies are `oneOf`
    the nine subscription types, told apart by the `subscriptionType` discriminator of
    InlineSubscription (lines 2632-2651). JSON Schema ignores discriminators, and several
    types have the same required attributes (MeasTaSubscription and CaReconfSubscription,
    lines 1651 and 1402, both `filterCriteriaAssoc`; RabEst, RabMod and RabRel, lines 1813,
    1877, 1916, all `filterCriteriaQci`), so a valid MeasTaSubscription matches two branches
    and fails the `oneOf`. The fix says in each type's schema what the discriminator mapping
    says: its `subscriptionType` is its own name."""
    if "RniAPI" not in name:
        return 0
    all_schemas = schemas(doc)
    mapping = all_schemas["InlineSubscription"]["discriminator"]["mapping"]
    fixed = 0
    for type_name, schema_name in mapping.items():
        parts = all_schemas[schema_name]["allOf"]
        own = next(p for p in parts if "$ref" not in p)
        own.setdefault("properties", {})["subscriptionType"] = {
            "type": "string",
            "enum": [type_name],
        }
        fixed += 1
    return fixed


# Each fix checks which file it is given; the generic one applies to every file.
FIXES = [
    problem_json_alongside_json,
    lcm_app_instance_created_as_zip,
    lcm_operation_params_is_an_object,
    lcm_subscription_info_notification_type_optional,
    pkgm_subscription_list_spelling,
    pkgm_delete_in_use_is_409,
    app_support_confirmations_can_be_malformed,
    service_mgmt_create_body_is_service_info,
    ams_device_information_without_consumer,
    ams_subscription_type_is_a_string,
    rni_subscription_type_names_its_schema,
]


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    for fix in FIXES:
        n = fix(doc, src)
        if n:
            print(f"fix_spec: {fix.__name__}: {n} change(s) in {src}", file=sys.stderr)
    with open(dst, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False, allow_unicode=True)


if __name__ == "__main__":
    main()
