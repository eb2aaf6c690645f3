"""What the deployment templates promise, checked without Azure and without a Bicep compiler.

A wrong role or a missing app setting only shows up after a deployment, and none can be made
here, so this module reads the templates the way ARM would:

- every ``.bicep`` file (and ``main.bicepparam``) is parsed with tree-sitter-bicep and must have no
  ERROR or MISSING node;
- a small evaluator (bottom of this file) runs ``main.bicep`` and its modules for given parameters:
  parameters, variables, interpolation, ternaries, module params and outputs, ``existing``
  resources and the few functions the templates use. Values only Azure knows (a storage account's
  table endpoint, an identity's client id) come from ``RUNTIME_PROPERTIES``, shaped the way Azure
  returns them. Anything it does not understand raises ``Unsupported``, so a check can fail but
  never pass by skipping what it cannot read;
- the settings that evaluation deploys are fed to the app's own ``load_settings``, and compared with
  ``SETTINGS`` and ``local.settings.sample.json``: one source of truth for settings;
- role assignments are checked by role-definition id, scope and principal.

What it deliberately does not do: prove that ARM accepts the API versions or property names (only
a deployment can), or test the Bicep language itself.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import tree_sitter_bicep
import yaml
from tree_sitter import Language, Node, Parser

from shared.kube import jobspec
from shared.kube.client import KubeClient
from shared.settings import SETTINGS, load_settings

REPO = Path(__file__).resolve().parents[1]
INFRA = REPO / "infra"
MAIN_BICEP = INFRA / "main.bicep"
MAIN_PARAMS = INFRA / "main.bicepparam"
RBAC_YAML = INFRA / "k8s" / "rbac.yaml"
LOCAL_SAMPLE = REPO / "local.settings.sample.json"
DEPLOY_GUIDE = REPO / "docs" / "deploy.md"

# Built-in role definition ids, from Microsoft's "Azure built-in roles" reference.
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
EVENTGRID_DATA_SENDER = "d5a91429-5739-47e2-a06b-3470a27159e7"
AKS_CLUSTER_ADMIN_ROLE = "0ab0b1a8-8aac-4efd-b8c2-3ee1fb270be8"
AKS_CLUSTER_USER_ROLE = "4abbcc35-e782-43d8-92c5-2d3f1bd2253f"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"

# Settings the Functions host reads itself (never declared in SETTINGS, which lists the app's own).
HOST_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "SweepQueue__credential",
    "SweepQueue__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
# Host settings a local run needs (Core Tools / the dev host), never set in Azure by Bicep.
LOCAL_HOST_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "AzureWebJobsFeatureFlags"}
# Flex Consumption rejects or ignores these as app settings (runtime, scale and deployment source
# live in functionAppConfig): "Flex Consumption plan deprecations" in the app settings reference.
FLEX_DEPRECATED_SETTINGS = {
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_DNS_SERVER",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_VNET_ROUTE_ALL",
    "WEBSITE_TIME_ZONE",
    "TZ",
}
# Environment variables the platform or a library defines, which app code may read without
# declaring them in SETTINGS.
PLATFORM_VARIABLES = {"REQUESTS_CA_BUNDLE", "WEBSITE_HOSTNAME", "WEBSITE_SITE_NAME", "AZURE_FUNCTIONS_ENVIRONMENT"}

# Where the evaluated deployment runs, and what Azure answers for the identity it creates.
DEPLOY_SUBSCRIPTION = "00000000-0000-0000-0000-0000000000d1"
DEPLOY_RESOURCE_GROUP = "rg-aksjobs"
DEPLOY_TENANT = "00000000-0000-0000-0000-0000000000e1"
LOCATION = "westeurope"
IDENTITY_CLIENT_ID = "11111111-1111-1111-1111-111111111111"
IDENTITY_PRINCIPAL_ID = "22222222-2222-2222-2222-222222222222"
TOPIC_PRINCIPAL_ID = "44444444-4444-4444-4444-444444444444"  # the submit topic's system-assigned identity

# The minimum a user must give (the cluster); everything else has a default.
REQUIRED = {"environmentName": "dev", "aksResourceGroup": "rg-aks", "aksClusterName": "aks-prod"}
SPECS = {spec.name: spec for spec in SETTINGS}


# ------------------------------------------------------------------------------------ syntax


def test_every_bicep_file_parses_without_error_nodes():
    files = sorted(INFRA.rglob("*.bicep"))
    assert MAIN_BICEP in files and len(files) > 1
    problems = {str(f.relative_to(REPO)): syntax_problems(parse(f.read_bytes())) for f in files}
    assert {f: p for f, p in problems.items() if p} == {}


def test_the_syntax_check_reports_a_broken_template():
    broken = b"resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n"
    assert syntax_problems(parse(broken))


def test_bicepparam_file_parses_and_sets_only_parameters_main_bicep_declares():
    text = MAIN_PARAMS.read_text()
    assert re.search(r"^using\s+'\./main\.bicep'\s*$", text, re.M)
    problems = syntax_problems(parse(bicepparam_as_bicep(text)))
    assert problems == []
    declared = set(template("main.bicep").params)
    assert set(bicepparam_assignments(text)) <= declared


def test_bicepparam_sets_every_parameter_that_has_no_default():
    main = template("main.bicep")
    required = {name for name, p in main.params.items() if p.default is None}
    assert required and required <= set(bicepparam_assignments(MAIN_PARAMS.read_text()))


def test_every_module_exists_and_gets_exactly_the_parameters_it_declares():
    calls = [(parent, decl) for parent in all_templates() for decl in parent.modules.values()]
    assert calls
    for parent, decl in calls:
        module = template(str((parent.path.parent / decl.path).relative_to(INFRA)))
        passed = set(object_keys(property_node(decl.body, "params")))
        required = {name for name, p in module.params.items() if p.default is None}
        where = f"{parent.path.name} -> {decl.path}"
        assert passed <= set(module.params), f"{where}: unknown {passed - set(module.params)}"
        assert required <= passed, f"{where}: missing {required - passed}"


def test_every_module_output_referenced_is_declared_by_the_module():
    references = 0
    for t in all_templates():
        for symbol, output in re.findall(r"\b([A-Za-z_]\w*)\.outputs\.([A-Za-z_]\w*)", code_without_comments(t.path)):
            if symbol in t.modules:
                references += 1
                module = template(str((t.path.parent / t.modules[symbol].path).relative_to(INFRA)))
                assert output in module.outputs, f"{t.path.name}: {symbol}.outputs.{output}"
    assert references


# ------------------------------------------------------------------------- settings contract


def test_bicep_sets_every_setting_the_app_reads_in_azure():
    deployed = set(deploy().app_settings)
    needed = {s.name for s in SETTINGS if not s.local_only}
    assert needed - deployed == set()


def test_bicep_sets_nothing_the_app_and_host_do_not_read():
    deployed = set(deploy().app_settings)
    assert deployed - {s.name for s in SETTINGS} - HOST_SETTINGS == set()


def test_bicep_keeps_local_only_settings_and_their_secrets_out_of_azure():
    deployed = set(deploy().app_settings)
    local_only = {s.name for s in SETTINGS if s.local_only}
    assert local_only and deployed & local_only == set()


def test_bicep_sets_no_setting_flex_consumption_rejects():
    assert set(deploy().app_settings) & FLEX_DEPRECATED_SETTINGS == set()


@pytest.mark.parametrize("mode", ["admin", "user"])
def test_deployed_settings_pass_the_apps_own_validation(mode):
    d = deploy(aksCredentialMode=mode, aksNamespace="batch", allowedNamespaces="batch,nightly")
    settings = load_settings(d.app_settings)
    assert settings.credential_mode == mode
    assert (settings.subscription_id, settings.resource_group, settings.cluster_name) == (
        DEPLOY_SUBSCRIPTION, "rg-aks", "aks-prod")
    assert settings.namespace == "batch" and settings.allowed_namespaces == ("batch", "nightly")
    assert settings.azure_client_id == IDENTITY_CLIENT_ID
    assert settings.arm_endpoint == "https://management.azure.com"
    assert settings.runs_table_connection_string is None


def test_entra_mode_deploys_settings_the_app_accepts_with_the_deployments_tenant_by_default():
    client = "5e1b7c2d-2222-4222-8222-00000000b0c5"
    d = deploy(authMode="entra", entraAudience="api://aks-jobs", entraAllowedClientIds=client)
    settings = load_settings(d.app_settings)
    assert (settings.auth_mode, settings.entra_tenant_id) == ("entra", DEPLOY_TENANT)
    assert settings.entra_audiences == ("api://aks-jobs",) and settings.entra_allowed_client_ids == (client,)
    assert settings.authority_host == "https://login.microsoftonline.com"


def test_entra_mode_puts_easy_auth_in_front_returning_401_except_health_and_signed_urls():
    app_id, polysync = "0d8c7a31-1111-4111-8111-0000000000a9", "5e1b7c2d-2222-4222-8222-00000000b0c5"
    d = deploy(authMode="entra", entraAppClientId=app_id, entraAllowedClientIds=polysync)
    props = d.resource("appAuth", "auth")["properties"]
    assert props["platform"]["enabled"] is True
    assert props["globalValidation"]["unauthenticatedClientAction"] == "Return401"
    assert props["globalValidation"]["excludedPaths"] == ["/api/health", "/api/signed/*", "/runtime/webhooks/eventgrid"]
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["registration"] == {"openIdIssuer": f"https://login.microsoftonline.com/{DEPLOY_TENANT}/v2.0",
                                   "clientId": app_id}
    assert aad["validation"]["defaultAuthorizationPolicy"]["allowedApplications"] == [polysync]
    assert aad["validation"]["allowedAudiences"] == [app_id, f"api://{app_id}"]
    assert load_settings(d.app_settings).entra_audiences == (app_id, f"api://{app_id}")


def test_key_mode_deploys_easy_auth_disabled():
    props = deploy().resource("appAuth", "auth")["properties"]
    assert props["platform"]["enabled"] is False
    assert props["identityProviders"]["azureActiveDirectory"]["enabled"] is False


def test_a_run_url_signing_key_is_always_deployed_and_a_given_one_wins():
    generated = load_settings(deploy().app_settings).run_url_signing_keys
    assert len(generated) == 1 and len(generated[0]) >= 32
    given = "a" * 64
    assert load_settings(deploy(runUrlSigningKey=given).app_settings).run_url_signing_keys == (given,)


def test_runs_table_setting_points_at_the_deployed_accounts_table_service():
    d = deploy(runsTableName="runsprod")
    account = d.app_settings["AzureWebJobsStorage__accountName"]
    assert d.app_settings["RUNS_TABLE_ENDPOINT"] == f"https://{account}.table.core.windows.net/"
    assert d.app_settings["RUNS_TABLE_NAME"] == "runsprod"
    assert d.module_params("storage")["runsTableName"] == "runsprod"


def test_sweep_queue_trigger_connects_with_the_apps_identity_to_the_deployed_queue():
    d = deploy()
    account = d.app_settings["AzureWebJobsStorage__accountName"]
    assert d.app_settings["SweepQueue__queueServiceUri"] == f"https://{account}.queue.core.windows.net/"
    assert (d.app_settings["SweepQueue__credential"], d.app_settings["SweepQueue__clientId"]) == (
        "managedidentity", IDENTITY_CLIENT_ID)
    assert d.app_settings["SWEEP_QUEUE_NAME"] == "aksjobs-sweep"
    assert "SweepQueue" not in d.app_settings  # a connection string would carry a key


def test_run_events_setting_points_at_the_deployed_topic():
    d = deploy()
    topic = d.module_params("events")["name"]
    assert d.app_settings["EVENTGRID_TOPIC_ENDPOINT"] == f"https://{topic}.westeurope-1.eventgrid.azure.net/api/events"


def test_host_storage_and_telemetry_use_the_apps_identity_not_a_key():
    s = deploy().app_settings
    assert s["AzureWebJobsStorage__credential"] == "managedidentity"
    assert s["AzureWebJobsStorage__clientId"] == s["AZURE_CLIENT_ID"] == IDENTITY_CLIENT_ID
    assert s["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == f"Authorization=AAD;ClientId={IDENTITY_CLIENT_ID}"
    assert "AzureWebJobsStorage" not in s
    assert "InstrumentationKey=" in s["APPLICATIONINSIGHTS_CONNECTION_STRING"]


def test_cluster_in_another_subscription_is_named_in_settings_and_granted_there():
    other = "99999999-8888-7777-6666-555555555555"
    d = deploy(aksSubscriptionId=other)
    assert d.app_settings["AKS_SUBSCRIPTION_ID"] == other
    (cluster_role,) = [a for a in d.role_assignments() if a.scope.type.endswith("managedClusters")]
    assert (cluster_role.scope.subscription, cluster_role.scope.resource_group, cluster_role.scope.name) == (
        other, "rg-aks", "aks-prod")
    assert cluster_role.role_definition_id.startswith(f"/subscriptions/{other}/providers/")


def test_bicep_defaults_match_the_apps_defaults():
    deployed = deploy().app_settings
    # Deliberate: the app falls back to admin (works on clusters with local accounts), a new
    # deployment starts least-privileged.
    deliberate = {"AKS_CREDENTIAL_MODE"}
    differing = {
        name: (deployed[name], spec.default)
        for name, spec in SPECS.items()
        if name in deployed and spec.default is not None and name not in deliberate
        and deployed[name].rstrip("/") != spec.default.rstrip("/")
    }
    assert differing == {}


def test_bicepparam_turns_an_exported_environment_into_parameters():
    environ = {"AZURE_ENV_NAME": "prod", "AKS_RESOURCE_GROUP": "rg-k8s", "AKS_CLUSTER_NAME": "aks-eu",
               "AKS_CREDENTIAL_MODE": "admin", "STALL_AFTER_SECONDS": "120"}
    params = bicepparam_values(environ)
    settings = load_settings(deploy(**params).app_settings)
    assert (settings.resource_group, settings.cluster_name, settings.credential_mode) == ("rg-k8s", "aks-eu", "admin")
    assert settings.stall_after_seconds == 120


def test_bicepparam_refuses_to_deploy_without_a_cluster():
    with pytest.raises(BicepError, match="AKS_RESOURCE_GROUP"):
        bicepparam_values({"AKS_CLUSTER_NAME": "aks-eu"})


def test_only_admin_and_user_modes_can_be_deployed():
    with pytest.raises(BicepError, match="aksCredentialMode"):
        deploy(aksCredentialMode="kubeconfig")


def test_local_settings_sample_lists_every_setting_and_the_local_host_settings():
    values = json.loads(LOCAL_SAMPLE.read_text())["Values"]
    assert set(values) == {s.name for s in SETTINGS} | LOCAL_HOST_SETTINGS


def test_local_settings_sample_configures_a_valid_local_run():
    sample = json.loads(LOCAL_SAMPLE.read_text())
    assert sample["IsEncrypted"] is False
    values = sample["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == values["RUNS_TABLE_CONNECTION_STRING"] == "UseDevelopmentStorage=true"
    assert "EnableWorkerIndexing" in values["AzureWebJobsFeatureFlags"].split(",")
    settings = load_settings(values)
    assert settings.credential_mode == "kubeconfig" and settings.kubeconfig_path


def test_binding_expressions_in_function_app_name_deployed_settings():
    source = (REPO / "function_app.py").read_text()
    expressions = set(re.findall(r"%([A-Za-z0-9_]+)%", source))
    deployed = set(deploy().app_settings)
    sample = set(json.loads(LOCAL_SAMPLE.read_text())["Values"])
    assert expressions - (deployed & sample & set(SPECS)) == set()


def test_app_code_reads_the_environment_only_through_declared_settings():
    pattern = re.compile(r"""(?:environ\.get|environ\[|getenv)\(?\s*["']([A-Za-z0-9_]+)["']""")
    sources = [REPO / "function_app.py", *sorted((REPO / "shared").rglob("*.py"))]
    read = {name for path in sources for name in pattern.findall(path.read_text())}
    # The host's own settings may be read too (telemetry exports where the host does).
    assert read - set(SPECS) - PLATFORM_VARIABLES - HOST_SETTINGS == set()


# ---------------------------------------------------------------------------- roles and keys


@pytest.mark.parametrize("mode, cluster_role", [("admin", AKS_CLUSTER_ADMIN_ROLE), ("user", AKS_CLUSTER_USER_ROLE)],
                         ids=["admin", "user"])
def test_identity_holds_exactly_the_documented_roles_on_the_right_resources(mode, cluster_role):
    d = deploy(aksCredentialMode=mode)
    granted = {(a.role, a.scope.type) for a in d.role_assignments() if a.principal_id == IDENTITY_PRINCIPAL_ID}
    assert granted == {
        (STORAGE_BLOB_DATA_OWNER, "Microsoft.Storage/storageAccounts"),
        (STORAGE_TABLE_DATA_CONTRIBUTOR, "Microsoft.Storage/storageAccounts"),
        (STORAGE_QUEUE_DATA_CONTRIBUTOR, "Microsoft.Storage/storageAccounts"),
        (MONITORING_METRICS_PUBLISHER, "Microsoft.Insights/components"),
        (EVENTGRID_DATA_SENDER, "Microsoft.EventGrid/topics"),
        (cluster_role, "Microsoft.ContainerService/managedClusters"),
    }


def test_roles_are_granted_to_the_apps_identity_on_the_resources_deployed_here():
    d = deploy()
    everything = d.role_assignments()
    assignments = [a for a in everything if a.principal_id == IDENTITY_PRINCIPAL_ID]
    # The one other principal: the submit topic's own identity, for dead-lettering (next test).
    assert {(a.principal_id, a.principal_type) for a in everything} == {
        (IDENTITY_PRINCIPAL_ID, "ServicePrincipal"), (TOPIC_PRINCIPAL_ID, "ServicePrincipal")}
    by_type = {a.scope.type: a.scope.name for a in assignments}
    assert by_type["Microsoft.Storage/storageAccounts"] == d.app_settings["AzureWebJobsStorage__accountName"]
    assert by_type["Microsoft.EventGrid/topics"] == d.module_params("events")["name"]
    assert by_type["Microsoft.Insights/components"] == d.module_params("monitoring")["applicationInsightsName"]
    assert all(a.role_definition_id.endswith(f"/providers/Microsoft.Authorization/roleDefinitions/{a.role}")
               for a in assignments)


def test_submit_topic_identity_may_only_write_dead_letters_into_its_container():
    d = deploy()
    (assignment,) = [a for a in d.role_assignments() if a.principal_id == TOPIC_PRINCIPAL_ID]
    account = d.app_settings["AzureWebJobsStorage__accountName"]
    container = d.module_params("storage")["deadLetterContainerName"]
    assert assignment.role == STORAGE_BLOB_DATA_CONTRIBUTOR
    assert assignment.scope.type == "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert assignment.scope.name == f"{account}/default/{container}"
    assert d.resource("submitEvents", "topic")["identity"] == {"type": "SystemAssigned"}
    assert d.outputs["SUBMIT_DEAD_LETTER_CONTAINER_ID"] == assignment.scope.id


def test_role_assignment_names_are_deterministic_and_distinct():
    # guid() of scope, principal and role: a redeployment finds the same assignment instead of
    # failing with RoleAssignmentExists (the reader has no newGuid()/utcNow(), so using them fails).
    first, again = deploy().role_assignments(), deploy().role_assignments()
    names = [a.name for a in first]
    assert names == [a.name for a in again] and len(set(names)) == len(names)
    assert [str(uuid.UUID(n)) for n in names] == names


def test_function_app_runs_as_the_user_assigned_identity_on_flex_consumption():
    d = deploy()
    plan = d.resource("functionApp", "plan")
    app = d.resource("functionApp", "app")
    identity_id = d.main.modules["identity"].resource_ref("identity").id
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"} and plan["properties"]["reserved"] is True
    assert app["kind"] == "functionapp,linux"
    assert app["identity"] == {"type": "UserAssigned", "userAssignedIdentities": {identity_id: {}}}
    config = app["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"] == {
        "type": "UserAssignedIdentity", "userAssignedIdentityResourceId": identity_id}
    account = d.app_settings["AzureWebJobsStorage__accountName"]
    container = d.module_params("storage")["deploymentContainerName"]
    assert config["deployment"]["storage"]["value"] == f"https://{account}.blob.core.windows.net/{container}"
    assert d.resource("functionApp", "settings")["properties"] == d.app_settings


@pytest.mark.parametrize("app_name", ["", "func-" + "a" * 26 + "-b", "Func-AKS-Jobs", "f" * 60])
def test_blob_container_names_follow_the_storage_rules_for_any_app_name(app_name):
    # Container names: 3-63 lowercase letters, digits and hyphens; a letter or digit first and last;
    # no two hyphens in a row.
    containers = [name for name in (deploy(functionAppName=app_name).module_params("storage")[p]
                                    for p in ("deploymentContainerName", "deadLetterContainerName"))]
    valid = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
    assert [c for c in containers if not valid.match(c)] == []


def test_storage_refuses_shared_keys_and_anonymous_access():
    account = deploy().resource("storage", "storage")
    assert account["properties"]["allowSharedKeyAccess"] is False
    assert account["properties"]["allowBlobPublicAccess"] is False
    assert account["properties"]["minimumTlsVersion"] == "TLS1_2"


def test_telemetry_and_events_refuse_local_auth():
    d = deploy()
    assert d.resource("monitoring", "applicationInsights")["properties"]["DisableLocalAuth"] is True
    for module in ("events", "submitEvents"):
        topic = d.resource(module, "topic")["properties"]
        assert topic["disableLocalAuth"] is True and topic["inputSchema"] == "CloudEventSchemaV1_0"


def test_templates_hold_no_account_keys_or_connection_strings():
    forbidden = re.compile(r"listKeys|listConnectionStrings|listAccountSas|AccountKey|DefaultEndpointsProtocol"
                           r"|SharedAccessKey|primaryKey|secondaryKey|keys\[0\]", re.I)
    found = {}
    for path in [*INFRA.rglob("*.bicep"), MAIN_PARAMS]:
        code = code_without_comments(path)
        if hits := forbidden.findall(code):
            found[str(path.relative_to(REPO))] = hits
    assert found == {}


def test_outputs_name_what_deploy_steps_need():
    outputs = deploy().outputs
    assert outputs["AZURE_FUNCTION_APP_NAME"] == deploy().module_params("functionApp")["name"]
    assert outputs["AZURE_FUNCTION_APP_URL"] == f"https://{outputs['AZURE_FUNCTION_APP_NAME']}.azurewebsites.net"
    assert outputs["AZURE_PRINCIPAL_ID"] == IDENTITY_PRINCIPAL_ID
    assert outputs["AZURE_CLIENT_ID"] == IDENTITY_CLIENT_ID


# ----------------------------------------------------------------------- Kubernetes RBAC, azd


def _exercise_every_facade_verb(kube: KubeClient, sim) -> set[str]:
    """Calls each public method of the facade once against the simulator; returns the names called."""
    job = kube.create_job("default", {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "rbac-run"},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "main", "image": "busybox:1.36"}]}}}})
    calls = {
        "get_job": lambda: kube.get_job("default", "rbac-run"),
        "list_jobs": lambda: kube.list_jobs("default", label_selector="a=b"),
        "list_jobs_page": lambda: kube.list_jobs_page("default", limit=1),
        "list_pods": lambda: kube.list_pods("default"),
        "list_events": lambda: kube.list_events("default"),
        "read_pod_log": lambda: kube.read_pod_log("default", sim.pods_of("default", "rbac-run")[0]["metadata"]["name"]),
        "create_secret": lambda: kube.create_secret("default", {
            "metadata": {"name": "rbac-run", "ownerReferences": [jobspec.secret_owner_reference(job)]},
            "stringData": {"k": "v"}}),
        "delete_job": lambda: kube.delete_job("default", "rbac-run"),
        # /version is a non-resource URL every authenticated user may read (system:public-info-viewer):
        # it adds nothing to the Role.
        "server_version": lambda: kube.server_version(),
    }
    sim.advance(5)
    for call in calls.values():
        call()
    return {"create_job", *calls}


def test_rbac_manifest_grants_exactly_the_verbs_the_kubernetes_facade_sends(kubesim):
    """Derived, not listed: every facade method runs against the simulator, which records what the
    API server's RBAC authorizer would be asked for each request; the Role must grant exactly that."""
    from tests.fixtures.kubesim import api_client_for

    class Connector:
        client = api_client_for(kubesim)

        def api_client(self):
            return self.client

        def refresh(self, stale=None):
            return self.client

    kubesim.reset_counters()
    called = _exercise_every_facade_verb(KubeClient(Connector(), timeout=5), kubesim)
    public = {name for name, _ in inspect.getmembers(KubeClient, inspect.isfunction) if not name.startswith("_")}
    assert called == public, "exercise the facade's new method here"
    needed = set(kubesim.authorizations)
    role, _binding = rbac_documents()
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    assert granted == needed
    assert ("", "secrets", "get") not in granted  # would let the identity read every Secret in the namespace


def test_every_kubernetes_facade_verb_has_a_caller_in_the_app():
    """So the Role derived above holds no verb only a dead method sends."""
    public = {name for name, _ in inspect.getmembers(KubeClient, inspect.isfunction) if not name.startswith("_")}
    sources = [REPO / "function_app.py", *(p for p in sorted((REPO / "shared").rglob("*.py"))
                                           if p.name != "client.py" or p.parent.name != "kube")]
    called = {node.attr for path in sources for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, ast.Attribute)}
    assert public - called == set()


def test_rbac_manifest_is_namespaced_and_binds_the_identity_as_a_user():
    role, binding = rbac_documents()
    assert (role["kind"], binding["kind"]) == ("Role", "RoleBinding")
    # No namespace in the file: `kubectl apply -n <ns>` places it in each namespace the app uses.
    assert "namespace" not in role["metadata"] and "namespace" not in binding["metadata"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    (subject,) = binding["subjects"]
    assert subject["kind"] == "User" and subject["apiGroup"] == "rbac.authorization.k8s.io"
    placeholder = subject["name"]
    assert placeholder == "<AZURE_PRINCIPAL_ID>" and "AZURE_PRINCIPAL_ID" in deploy().outputs
    assert f"s/{placeholder}/$AZURE_PRINCIPAL_ID/" in RBAC_YAML.read_text()


def test_azd_deploys_the_function_app_the_templates_tag():
    project = yaml.safe_load((REPO / "azure.yaml").read_text())
    assert project["infra"]["provider"] == "bicep"
    assert (REPO / project["infra"]["path"] / f"{project['infra'].get('module', 'main')}.bicep") == MAIN_BICEP
    ((service, spec),) = project["services"].items()
    assert (spec["host"], spec["language"], (REPO / spec["project"]).resolve()) == ("function", "python", REPO)
    assert deploy().module_params("functionApp")["tags"]["azd-service-name"] == service


def test_deploy_guide_explains_every_parameter_setting_and_role():
    guide = DEPLOY_GUIDE.read_text()
    missing = [p for p in template("main.bicep").params if f"`{p}`" not in guide]
    missing += [s.name for s in SETTINGS if f"`{s.name}`" not in guide]
    missing += [r for r in ("Storage Blob Data Owner", "Storage Table Data Contributor",
                            "Storage Queue Data Contributor",
                            "Monitoring Metrics Publisher", "EventGrid Data Sender",
                            "Azure Kubernetes Service Cluster Admin Role",
                            "Azure Kubernetes Service Cluster User Role",
                            "Storage Blob Data Contributor") if r not in guide]
    assert missing == []
    assert "az deployment group create" in guide and "func azure functionapp publish" in guide


def test_deploy_guide_asks_for_deployment_rights_where_the_cluster_module_deploys():
    # aks-access is a module scoped to the cluster's resource group: a deployment there.
    assert property_node(template("main.bicep").modules["aksAccess"].body, "scope") is not None
    guide = DEPLOY_GUIDE.read_text()
    assert "Microsoft.Resources/deployments/write" in guide and "cluster's resource group" in guide


@pytest.mark.parametrize("mode, other_role", [("admin", AKS_CLUSTER_USER_ROLE), ("user", AKS_CLUSTER_ADMIN_ROLE)])
def test_deploy_guide_removes_the_other_modes_cluster_role_after_a_switch(mode, other_role):
    granted = {a.role for a in deploy(aksCredentialMode=mode).role_assignments()}
    assert other_role not in granted  # the template grants only this mode's role ...
    # ... and cannot take the old one back: the guide gives the command.
    command = f'az role assignment delete --assignee "$AZURE_PRINCIPAL_ID" --role {other_role} --scope "$AKS_ID"'
    assert command in DEPLOY_GUIDE.read_text()


# ======================================================================= reading the templates
#
# Everything below is the test's own Bicep reader. It understands the subset the templates use and
# raises Unsupported for anything else.

_PARSER = Parser(Language(tree_sitter_bicep.language()))


# Values only Azure knows after creating a resource, in the shape Azure returns them.
RUNTIME_PROPERTIES: dict[tuple[str, str], Callable[[str], Any]] = {
    ("Microsoft.ManagedIdentity/userAssignedIdentities", "properties.clientId"): lambda n: IDENTITY_CLIENT_ID,
    ("Microsoft.ManagedIdentity/userAssignedIdentities", "properties.principalId"): lambda n: IDENTITY_PRINCIPAL_ID,
    ("Microsoft.Storage/storageAccounts", "properties.primaryEndpoints.blob"):
        lambda n: f"https://{n}.blob.core.windows.net/",
    ("Microsoft.Storage/storageAccounts", "properties.primaryEndpoints.table"):
        lambda n: f"https://{n}.table.core.windows.net/",
    ("Microsoft.Storage/storageAccounts", "properties.primaryEndpoints.queue"):
        lambda n: f"https://{n}.queue.core.windows.net/",
    ("Microsoft.Insights/components", "properties.ConnectionString"):
        lambda n: ("InstrumentationKey=33333333-3333-3333-3333-333333333333;"
                   f"IngestionEndpoint=https://{LOCATION}-5.in.applicationinsights.azure.com/"),
    ("Microsoft.EventGrid/topics", "properties.endpoint"):
        lambda n: f"https://{n}.{LOCATION}-1.eventgrid.azure.net/api/events",
    ("Microsoft.Web/sites", "properties.defaultHostName"): lambda n: f"{n}.azurewebsites.net",
    ("Microsoft.EventGrid/topics", "identity.principalId"): lambda n: TOPIC_PRINCIPAL_ID,
}


class BicepError(Exception):
    """What ARM or the Bicep compiler would refuse (a missing parameter, a value not allowed)."""


class Unsupported(Exception):
    """The template uses something this reader does not model: extend the reader, don't skip."""


def parse(source: bytes):
    return _PARSER.parse(source)


def walk(node: Node):
    yield node
    for child in node.children:
        yield from walk(child)


def syntax_problems(tree) -> list[str]:
    return [f"{n.start_point.row + 1}:{n.start_point.column + 1} {'MISSING' if n.is_missing else 'ERROR'} "
            f"{n.text.decode(errors='replace')[:40]!r}"
            for n in walk(tree.root_node) if n.type == "ERROR" or n.is_missing]


def code_without_comments(path: Path) -> str:
    source = path.read_bytes()
    if path.suffix == ".bicepparam":
        source = bicepparam_as_bicep(source.decode())
    tree = parse(source)
    spans = [(n.start_byte, n.end_byte) for n in walk(tree.root_node) if n.type == "comment"]
    kept, at = [], 0
    for start, end in spans:
        kept.append(source[at:start])
        at = end
    kept.append(source[at:])
    return b"".join(kept).decode()


def bicepparam_as_bicep(text: str) -> bytes:
    """A .bicepparam differs from .bicep in two forms only (tree-sitter-bicep knows neither):
    `using '<file>'` and untyped `param <name> = <value>`. Rewritten to a comment and a `var`,
    what remains is plain Bicep with the same expressions at the same places."""
    text = re.sub(r"^using\s+(.*)$", lambda m: "//" + " " * (len(m.group(0)) - 2), text, flags=re.M)
    return re.sub(r"^param(\s+[A-Za-z_][A-Za-z0-9_]*\s*=)", r"var  \1", text, flags=re.M).encode()


def bicepparam_assignments(text: str) -> dict[str, Node]:
    root = parse(bicepparam_as_bicep(text)).root_node
    return {c.children[1].text.decode(): c.children[-1] for c in root.children if c.type == "variable_declaration"}


def bicepparam_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """main.bicepparam evaluated as the Bicep CLI would with `environ` exported."""
    source = bicepparam_as_bicep(MAIN_PARAMS.read_text())
    params_file = Template(MAIN_PARAMS, parse(source))
    ev = Evaluation(params_file, {}, environ=environ)
    return {name: ev.value(node) for name, node in bicepparam_assignments(MAIN_PARAMS.read_text()).items()}


def object_keys(node: Node | None) -> list[str]:
    if node is None:
        return []
    if node.type != "object":
        raise Unsupported(f"expected an object literal, got {node.type}: {node.text.decode()[:60]}")
    return [_key(p) for p in node.children if p.type == "object_property" and _key(p) is not None]


def property_node(obj: Node, key: str) -> Node | None:
    for p in obj.children:
        if p.type == "object_property" and _key(p) == key:
            return p.children[-1]
    return None


def _key(prop: Node) -> str | None:
    first = prop.children[0]
    if first.type == "identifier":
        return first.text.decode()
    if first.type == "string":
        return "".join(c.text.decode() for c in first.children if c.type == "string_content")
    return None  # a nested resource declaration, not a key


@dataclass
class Param:
    default: Node | None
    decorators: list[Node]


@dataclass
class Declared:
    """A resource or module declaration: its symbol, type (or module path) and body."""

    symbol: str
    path: str
    body: Node
    existing: bool = False
    parent: str | None = None


@dataclass
class Template:
    path: Path
    tree: Any
    params: dict[str, Param] = field(default_factory=dict)
    vars: dict[str, Node] = field(default_factory=dict)
    resources: dict[str, Declared] = field(default_factory=dict)
    modules: dict[str, Declared] = field(default_factory=dict)
    outputs: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self):
        pending: list[Node] = []
        for node in self.tree.root_node.children:
            if node.type == "decorators":
                pending = [d for d in node.children if d.type == "decorator"]
                continue
            if node.type == "comment":
                continue
            if node.type == "parameter_declaration":
                value = [c for c in node.children[3:] if c.type not in ("=", "comment")]
                self.params[node.children[1].text.decode()] = Param(value[0] if value else None, pending)
            elif node.type == "variable_declaration":
                self.vars[node.children[1].text.decode()] = node.children[-1]
            elif node.type == "output_declaration":
                self.outputs[node.children[1].text.decode()] = node.children[-1]
            elif node.type == "module_declaration":
                self.modules[node.children[1].text.decode()] = Declared(
                    node.children[1].text.decode(), _string_literal(node.children[2]), node.children[-1])
            pending = []
        for node in walk(self.tree.root_node):
            if node.type == "resource_declaration":
                parent = node.parent.parent.parent if node.parent.type == "object_property" else None
                self.resources[node.children[1].text.decode()] = Declared(
                    node.children[1].text.decode(), _string_literal(node.children[2]), node.children[-1],
                    existing=any(c.type == "existing" for c in node.children),
                    parent=parent.children[1].text.decode() if parent is not None else None)


def _string_literal(node: Node) -> str:
    if node.type != "string" or any(c.type == "interpolation" for c in node.children):
        raise Unsupported(f"expected a plain string, got {node.text.decode()[:60]}")
    return "".join(c.text.decode() for c in node.children if c.type == "string_content")


@cache
def template(relative: str) -> Template:
    path = INFRA / relative
    return Template(path, parse(path.read_bytes()))


def all_templates() -> list[Template]:
    return [template(str(p.relative_to(INFRA))) for p in sorted(INFRA.rglob("*.bicep"))]


def rbac_documents() -> tuple[dict, dict]:
    docs = [d for d in yaml.safe_load_all(RBAC_YAML.read_text()) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["Role", "RoleBinding"], kinds  # nothing cluster-wide
    return next(d for d in docs if d["kind"] == "Role"), next(d for d in docs if d["kind"] == "RoleBinding")


@dataclass(frozen=True)
class ResourceRef:
    type: str  # without API version
    name: str
    subscription: str
    resource_group: str

    @property
    def id(self) -> str:
        # A child's id interleaves type and name segments: .../storageAccounts/a/blobServices/default/...
        namespace, *types = self.type.split("/")
        names = self.name.split("/")
        if len(types) != len(names):
            raise Unsupported(f"type {self.type} does not fit name {self.name}")
        segments = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/{namespace}/{segments}"


@dataclass(frozen=True)
class RoleAssignment:
    name: str
    scope: ResourceRef
    role_definition_id: str
    principal_id: str
    principal_type: str

    @property
    def role(self) -> str:
        return self.role_definition_id.rsplit("/", 1)[-1]


class Evaluation:
    """One template evaluated for one set of parameter values, at one deployment scope."""

    def __init__(self, tmpl: Template, params: Mapping[str, Any], *, subscription: str = DEPLOY_SUBSCRIPTION,
                 resource_group: str = DEPLOY_RESOURCE_GROUP, environ: Mapping[str, str] | None = None,
                 modules: Mapping[str, Evaluation] | None = None):
        self.template = tmpl
        self.subscription = subscription
        self.resource_group = resource_group
        self.environ = environ
        self.modules: dict[str, Evaluation] = dict(modules or {})
        self._cache: dict[str, Any] = {}
        unknown = set(params) - set(tmpl.params)
        if unknown:
            raise BicepError(f"{tmpl.path.name}: unknown parameters {sorted(unknown)}")
        self.given = dict(params)

    # -- symbols
    def param(self, name: str) -> Any:
        key = f"param:{name}"
        if key not in self._cache:
            spec = self.template.params[name]
            if name in self.given:
                value = self.given[name]
            elif spec.default is not None:
                value = self.value(spec.default)
            else:
                raise BicepError(f"{self.template.path.name}: parameter {name} has no value")
            self._check_decorators(name, spec.decorators, value)
            self._cache[key] = value
        return self._cache[key]

    def _check_decorators(self, name: str, decorators: list[Node], value: Any) -> None:
        for d in decorators:
            call = d.children[1]
            fn = call.children[0].text.decode().split(".")[-1]
            args = [self.value(a) for a in call.children[1].children if a.type not in ("(", ")", ",")]
            if not _decorator_allows(fn, args, value):
                raise BicepError(f"{self.template.path.name}: parameter {name}={value!r} fails @{fn}{args}")

    def var(self, name: str) -> Any:
        key = f"var:{name}"
        if key not in self._cache:
            self._cache[key] = self.value(self.template.vars[name])
        return self._cache[key]

    def resource_ref(self, symbol: str) -> ResourceRef:
        decl = self.template.resources[symbol]
        name = self.value(property_node(decl.body, "name"))
        rtype = decl.path.split("@")[0]
        if decl.parent is not None:  # declared inside its parent: a type relative to the parent's
            parent = self.resource_ref(decl.parent)
            rtype, name = f"{parent.type}/{rtype}", f"{parent.name}/{name}"
        elif (parent_node := property_node(decl.body, "parent")) is not None:  # `parent: symbol`: full type
            if parent_node.type != "identifier":
                raise Unsupported(f"parent: {parent_node.text.decode()[:60]}")
            parent = self.resource_ref(parent_node.text.decode())
            if not rtype.startswith(parent.type + "/"):
                raise BicepError(f"{decl.symbol}: type {rtype} is not a child of {parent.type}")
            name = f"{parent.name}/{name}"
        return ResourceRef(rtype, name, self.subscription, self.resource_group)

    def resource_body(self, symbol: str) -> dict:
        return self.value(self.template.resources[symbol].body)

    # -- expressions
    def value(self, node: Node) -> Any:  # noqa: C901 - one branch per node type is the clearest form
        t = node.type
        if t == "string":
            return "".join(self._string_part(c) for c in node.children if c.type not in ("'", '"'))
        if t == "number":
            return int(node.text.decode())
        if t == "boolean":
            return node.text.decode() == "true"
        if t == "null":
            return None
        if t == "parenthesized_expression":
            return self.value(node.children[1])
        if t == "object":
            return {self._object_key(p): self.value(p.children[-1]) for p in node.children
                    if p.type == "object_property" and _key(p) is not None}
        if t == "array":
            return [self.value(c) for c in node.children if c.type not in ("[", "]", ",", "comment")]
        if t == "identifier":
            return self._identifier(node.text.decode())
        if t == "member_expression":
            return self._member(node)
        if t == "subscript_expression":
            return self.value(node.children[0])[self.value(node.children[2])]
        if t == "ternary_expression":
            cond, yes, no = (c for c in node.children if c.type not in ("?", ":"))
            return self.value(yes) if self.value(cond) else self.value(no)
        if t == "unary_expression" and node.children[0].type == "!":
            return not self.value(node.children[1])
        if t == "binary_expression":
            left, op, right = node.children
            return self._binary(op.type, self.value(left), self.value(right))
        if t == "call_expression":
            return self._call(node)
        raise Unsupported(f"{self.template.path.name}: {t}: {node.text.decode()[:60]}")

    def _object_key(self, prop: Node) -> str:
        first = prop.children[0]
        return self.value(first) if first.type == "string" else first.text.decode()

    def _string_part(self, node: Node) -> str:
        if node.type == "string_content":
            return node.text.decode()
        if node.type == "escape_sequence":
            return {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}[node.text.decode()]
        if node.type == "interpolation":
            return str(self.value(node.children[1]))
        raise Unsupported(f"string part {node.type}")

    def _identifier(self, name: str) -> Any:
        t = self.template
        if name in t.params:
            return self.param(name)
        if name in t.vars:
            return self.var(name)
        if name in t.resources:
            return self.resource_ref(name)
        if name in t.modules:
            return ("module", name)
        raise Unsupported(f"{t.path.name}: unknown symbol {name}")

    def _member(self, node: Node) -> Any:
        chain: list[str] = []
        while node.type == "member_expression":
            chain.insert(0, node.children[-1].text.decode())
            node = node.children[0]
        return self._with_member_chain(node, chain)

    def _with_member_chain(self, node: Node, chain: list[str]) -> Any:
        # tree-sitter-bicep 1.1.0 binds `.name` looser than operators: it reads `a ? b : c.d` as
        # `(a ? b : c).d` and `a == b.c` as `(a == b).c`. Bicep itself binds member access tightest
        # (an operator result needs parentheses before a dot, which parse as
        # parenthesized_expression), so the chain belongs to the right-most operand.
        if node.type == "ternary_expression":
            cond, yes, no = (c for c in node.children if c.type not in ("?", ":"))
            return self.value(yes) if self.value(cond) else self._with_member_chain(no, chain)
        if node.type == "binary_expression":
            left, op, right = node.children
            return self._binary(op.type, self.value(left), self._with_member_chain(right, chain))
        if node.type == "unary_expression":
            return not self._with_member_chain(node.children[1], chain)
        if node.type == "member_expression":
            return self._member_chain(*self._split_member(node), chain)
        return self._member_chain(node, [], chain)

    @staticmethod
    def _split_member(node: Node) -> tuple[Node, list[str]]:
        chain: list[str] = []
        while node.type == "member_expression":
            chain.insert(0, node.children[-1].text.decode())
            node = node.children[0]
        return node, chain

    def _member_chain(self, node: Node, inner: list[str], outer: list[str]) -> Any:
        chain = inner + outer
        if not chain:
            return self.value(node)
        if node.type == "identifier":
            name = node.text.decode()
            if name in self.template.modules and chain[0] == "outputs":
                value = self.modules[name].output(chain[1])
                return _dig(value, chain[2:])
            if name in self.template.resources and name not in self.template.vars:
                ref = self.resource_ref(name)
                if chain == ["id"]:
                    return ref.id
                if chain == ["name"]:
                    return ref.name.rsplit("/", 1)[-1]
                runtime = RUNTIME_PROPERTIES.get((ref.type, ".".join(chain)))
                if runtime is None:
                    raise Unsupported(f"{self.template.path.name}: runtime value {ref.type}.{'.'.join(chain)}")
                return runtime(ref.name)
        return _dig(self.value(node), chain)

    @staticmethod
    def _binary(op: str, left: Any, right: Any) -> Any:
        ops = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b,
               "&&": lambda a, b: a and b, "||": lambda a, b: a or b, "??": lambda a, b: b if a is None else a}
        if op not in ops:
            raise Unsupported(f"operator {op}")
        return ops[op](left, right)

    def _call(self, node: Node) -> Any:
        fn = node.children[0].text.decode()
        args = [self.value(a) for a in node.children[1].children if a.type not in ("(", ")", ",")]
        if fn == "resourceGroup" and args:  # a deployment scope: (subscription, resource group)
            return ("resourceGroup", *([self.subscription, *args] if len(args) == 1 else args))
        functions: dict[str, Callable[..., Any]] = {
            "string": lambda x: x if isinstance(x, str) else json.dumps(x),
            "int": int,
            "empty": lambda x: not x,
            "toLower": lambda x: x.lower(),
            "take": lambda x, n: x[:n],
            "union": lambda *objs: {k: v for o in objs for k, v in o.items()},
            "uniqueString": lambda *xs: hashlib.sha256("|".join(xs).encode()).hexdigest()[:13],
            "guid": lambda *xs: str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(xs))),
            "environment": lambda: {"name": "AzureCloud", "resourceManager": "https://management.azure.com/",
                                    "authentication": {"loginEndpoint": "https://login.microsoftonline.com/"}},
            "tenant": lambda: {"tenantId": DEPLOY_TENANT},
            "newGuid": lambda: str(uuid.uuid4()),
            "split": lambda text, sep: text.split(sep),
            "subscription": lambda: {"subscriptionId": self.subscription, "id": f"/subscriptions/{self.subscription}"},
            "resourceGroup": lambda: {"name": self.resource_group, "location": LOCATION,
                                      "id": f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"},
            "subscriptionResourceId": lambda rtype, name: f"/subscriptions/{self.subscription}/providers/{rtype}/{name}",
            "readEnvironmentVariable": self._read_environment_variable,
        }
        if fn not in functions:
            raise Unsupported(f"{self.template.path.name}: function {fn}()")
        return functions[fn](*args)

    def _read_environment_variable(self, name: str, *default: str) -> str:
        if self.environ is None:
            raise Unsupported("readEnvironmentVariable() outside a .bicepparam file")
        if name in self.environ:
            return self.environ[name]
        if default:
            return default[0]
        raise BicepError(f"environment variable {name} is not set")

    def output(self, name: str) -> Any:
        return self.value(self.template.outputs[name])


def _decorator_allows(fn: str, args: list[Any], value: Any) -> bool:
    if fn == "allowed":
        return value in args[0]
    if fn in ("minLength", "minValue"):
        return (len(value) if fn == "minLength" else value) >= args[0]
    if fn in ("maxLength", "maxValue"):
        return (len(value) if fn == "maxLength" else value) <= args[0]
    return True  # description, metadata, secure: nothing to check


def _dig(value: Any, chain: list[str]) -> Any:
    for key in chain:
        if not isinstance(value, Mapping) or key not in value:
            raise Unsupported(f"cannot read .{key} of {value!r}")
        value = value[key]
    return value


class Deployment:
    """main.bicep and its modules evaluated for one set of parameters, the way ARM runs them."""

    def __init__(self, params: Mapping[str, Any]):
        self.main = Evaluation(template("main.bicep"), params)
        for symbol in _module_order(self.main.template):
            decl = self.main.template.modules[symbol]
            module_params = self.main.value(property_node(decl.body, "params"))
            scope_node = property_node(decl.body, "scope")
            sub, rg = DEPLOY_SUBSCRIPTION, DEPLOY_RESOURCE_GROUP
            if scope_node is not None:
                kind, sub, rg = self.main.value(scope_node)
            self.main.modules[symbol] = Evaluation(template(decl.path), module_params, subscription=sub,
                                                   resource_group=rg)

    @property
    def app_settings(self) -> dict[str, str]:
        return self.main.var("appSettings")

    @property
    def outputs(self) -> dict[str, Any]:
        return {name: self.main.output(name) for name in self.main.template.outputs}

    def module_params(self, symbol: str) -> dict[str, Any]:
        module = self.main.modules[symbol]
        return {name: module.param(name) for name in module.template.params}

    def resource(self, module: str, symbol: str) -> dict:
        return self.main.modules[module].resource_body(symbol)

    def role_assignments(self) -> list[RoleAssignment]:
        found = []
        for ev in [self.main, *self.main.modules.values()]:
            for symbol, decl in ev.template.resources.items():
                if decl.path.startswith("Microsoft.Authorization/roleAssignments@"):
                    body = ev.resource_body(symbol)
                    props = body["properties"]
                    found.append(RoleAssignment(body["name"], body["scope"], props["roleDefinitionId"],
                                                props["principalId"], props["principalType"]))
        return found


def _module_order(tmpl: Template) -> list[str]:
    """Modules in dependency order (a module's params may read another module's outputs)."""
    deps = {s: {n.text.decode() for n in walk(d.body) if n.type == "identifier" and n.text.decode() in tmpl.modules}
            - {s} for s, d in tmpl.modules.items()}
    # Variables a module reads (appSettings) pull in the modules those variables read, transitively.
    var_deps = {v: {n.text.decode() for n in walk(node) if n.type == "identifier"} for v, node in tmpl.vars.items()}
    changed = True
    while changed:
        changed = False
        for names in var_deps.values():
            more = set().union(*(var_deps[n] for n in names if n in var_deps)) - names
            if more:
                names |= more
                changed = True
    var_deps = {v: names & set(tmpl.modules) for v, names in var_deps.items()}
    for s, d in tmpl.modules.items():
        for n in walk(d.body):
            if n.type == "identifier" and n.text.decode() in var_deps:
                deps[s] |= var_deps[n.text.decode()]
    order: list[str] = []
    while len(order) < len(deps):
        ready = [s for s in deps if s not in order and deps[s] <= set(order)]
        if not ready:
            raise Unsupported(f"module cycle among {set(deps) - set(order)}")
        order.extend(sorted(ready))
    return order


def deploy(**params: Any) -> Deployment:
    return Deployment({**REQUIRED, **params})
