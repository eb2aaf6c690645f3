// Everything the AKS Jobs function app needs in Azure, in one resource group, wired to an existing
// AKS cluster that may live elsewhere.
//
//   az deployment group create -g <rg> --template-file infra/main.bicep --parameters infra/main.bicepparam
//   func azure functionapp publish <AZURE_FUNCTION_APP_NAME output> --python
//
// This file owns the list of app settings: every setting the app reads (shared/settings.py, SETTINGS)
// is set below from a parameter or from the resource it names, and nothing else is, apart from the
// host's own identity-based storage and Application Insights settings. tests/test_infra.py holds that
// list against SETTINGS and local.settings.sample.json.
//
// Deliberately not here: the AKS cluster itself, Kubernetes RBAC inside it (infra/k8s/rbac.yaml), a
// virtual network, keys, connection strings with keys, and any role for the person deploying.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------------
// Where and what to call things

@description('Short environment name (azd sets it). Seeds the unique suffix of every resource name and the azd-env-name tag.')
@minLength(1)
@maxLength(64)
param environmentName string

@description('Azure region for every resource created here. Must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Function app name (becomes <name>.azurewebsites.net). Empty: func-aksjobs-<unique suffix>.')
@maxLength(60)
param functionAppName string = ''

// ---------------------------------------------------------------------------------------------------
// The existing AKS cluster (Polysync platform attributes: Subscription Id, Resource Group Name, AKS
// Cluster Name, AKS Namespace)

@description('Subscription of the AKS cluster. Empty: the subscription of this deployment.')
param aksSubscriptionId string = ''

@description('Resource group of the AKS cluster (may differ from the one deployed into).')
@minLength(1)
@maxLength(90)
param aksResourceGroup string

@description('Name of the existing AKS managed cluster.')
@minLength(1)
@maxLength(63)
param aksClusterName string

@description('Namespace whose Jobs are discovered and run (app setting AKS_NAMESPACE).')
@minLength(1)
@maxLength(63)
param aksNamespace string = 'default'

@description('Comma-separated namespaces callers may choose. Empty: aksNamespace only.')
param allowedNamespaces string = ''

@description('admin: the app fetches the admin kubeconfig (Cluster Admin Role; refused when local accounts are disabled). user: the user kubeconfig plus an Entra token (Cluster User Role; needs Kubernetes RBAC from infra/k8s/rbac.yaml or Azure RBAC for Kubernetes).')
@allowed(['admin', 'user'])
param aksCredentialMode string = 'user'

// ---------------------------------------------------------------------------------------------------
// App behaviour (defaults match shared/settings.py)

@description('Table that holds run state.')
@minLength(3)
@maxLength(63)
param runsTableName string = 'aksjobruns'

@description('NCRONTAB schedule (six fields, seconds first) of the sweep that refreshes active runs.')
param sweepSchedule string = '*/30 * * * * *'

@description('Seconds a pod may wait (image pull, scheduling) before the run shows as Stalled.')
@minValue(0)
param stallAfterSeconds int = 300

@description('Seconds a run may stay Submitting with no Job before the sweep counts its Job missing.')
@minValue(0)
param submitGraceSeconds int = 60

@description('Seconds after a run is created from which the sweep lists the pods of its not yet ready Job.')
@minValue(0)
param podCheckAfterSeconds int = 30

@description('ttlSecondsAfterFinished for created Jobs whose source Job sets none: whole seconds, or none to keep finished Jobs.')
param jobTtlSecondsAfterFinished string = '86400'

@description('Least ttlSecondsAfterFinished a run Job gets, even when its source asks for less (0 included): several sweep periods, so the outcome is read before Kubernetes deletes the Job.')
@minValue(0)
param jobTtlFloorSeconds int = 300

@description('Seconds a fetched kubeconfig is reused before it is fetched again.')
@minValue(1)
param credentialTtlSeconds int = 3600

@description('Timeout of one Kubernetes API request, in seconds.')
@minValue(1)
param kubeRequestTimeoutSeconds int = 30

@description('Comma-separated shell-style patterns (case-insensitive): an untyped run parameter whose name matches one is a Secret (kept only in the run\'s Kubernetes Secret); none turns name matching off.')
param secretParameterPatterns string = '*PASSWORD*,*PASSWD*,*SECRET*,*TOKEN,*_TOKEN_*,*API_KEY*,*APIKEY*,*ACCESS_KEY*,*ACCOUNT_KEY*,*PRIVATE_KEY*,*CONNECTION_STRING*,*CONNSTR*,*CREDENTIAL*'

// ---------------------------------------------------------------------------------------------------
// Who may call (docs/polysync.md, docs/deploy.md)

@description('key: function keys, checked by the Functions host. entra: Entra ID bearer tokens of the allowed applications (Polysync\'s service principal), checked by the app.')
@allowed(['key', 'entra'])
param authMode string = 'key'

@description('Tenant whose tokens are accepted (authMode entra). Empty: the tenant of this deployment.')
param entraTenantId string = ''

@description('Client (application) id of the app registration that represents this app (authMode entra).')
param entraAppClientId string = ''

@description('Comma-separated accepted token audiences, no spaces (authMode entra). Empty: entraAppClientId and api://<entraAppClientId>.')
param entraAudience string = ''

@description('Comma-separated client (application) ids allowed to call: Polysync\'s service principal (authMode entra).')
param entraAllowedClientIds string = ''

@description('Keys signing the status, run and cancel URLs the app hands out (comma-separated, 32+ characters each; the first signs). Empty: generatedRunUrlSigningKey. Pass the same key on every deployment to keep URLs handed out before a deployment working after it (azd does: its preprovision hook keeps one per environment).')
@secure()
param runUrlSigningKey string = ''

@description('Used when runUrlSigningKey is empty: a new key per deployment.')
@secure()
param generatedRunUrlSigningKey string = newGuid()

// ---------------------------------------------------------------------------------------------------
// Hosting

@description('Upper bound on Flex Consumption instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each Flex Consumption instance, in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

var resourceToken = toLower(uniqueString(resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var appName = !empty(functionAppName) ? functionAppName : 'func-aksjobs-${resourceToken}'
// Named from the token only: a cut app name can end in '-', and '--' is not a valid container name.
var deploymentContainerName = 'app-package-${resourceToken}'
var clusterSubscriptionId = !empty(aksSubscriptionId) ? aksSubscriptionId : subscription().subscriptionId

module identity 'app/identity.bicep' = {
  name: 'identity'
  params: {
    name: 'id-aksjobs-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'staksjobs${take(resourceToken, 15)}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    runsTableName: runsTableName
    deadLetterContainerName: 'submit-dead-letters'
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-aksjobs-${resourceToken}'
    applicationInsightsName: 'appi-aksjobs-${resourceToken}'
    location: location
    tags: tags
  }
}

module events 'app/events.bicep' = {
  name: 'events'
  params: {
    name: 'evgt-aksjobs-${resourceToken}'
    location: location
    tags: tags
  }
}

// Submit requests in: the subscription to submit_from_event is made after publishing (azure.yaml's
// postdeploy hook, or docs/chaining.md by hand), since it needs the Functions host's system key.
module submitEvents 'app/submit-events.bicep' = {
  name: 'submit-events'
  params: {
    name: 'evgt-aksjobs-submit-${resourceToken}'
    location: location
    tags: tags
    storageAccountName: storage.outputs.name
    deadLetterContainerName: storage.outputs.deadLetterContainerName
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    topicName: events.outputs.name
  }
}

// The cluster's own resource group, possibly in another subscription.
module aksAccess 'app/aks-access.bicep' = {
  name: 'aks-access'
  scope: resourceGroup(clusterSubscriptionId, aksResourceGroup)
  params: {
    clusterName: aksClusterName
    principalId: identity.outputs.principalId
    credentialMode: aksCredentialMode
  }
}

var entraTenant = empty(entraTenantId) ? tenant().tenantId : entraTenantId
var entraAudiences = empty(entraAudience) ? (empty(entraAppClientId) ? '' : '${entraAppClientId},api://${entraAppClientId}') : entraAudience

// Every app setting. Keys the app reads are declared in shared/settings.py (SETTINGS); the first
// block is read by the Functions host itself. Values are strings: app settings have no other type.
var appSettings = {
  // Functions host: identity-based storage and Entra-authenticated telemetry.
  AzureWebJobsStorage__accountName: storage.outputs.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  // The sweep queue trigger's identity-based connection (connection "SweepQueue").
  SweepQueue__credential: 'managedidentity'
  SweepQueue__clientId: identity.outputs.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identity.outputs.clientId}'

  // The app (shared/settings.py).
  AKS_SUBSCRIPTION_ID: clusterSubscriptionId
  AKS_RESOURCE_GROUP: aksResourceGroup
  AKS_CLUSTER_NAME: aksClusterName
  AKS_NAMESPACE: aksNamespace
  AKS_CREDENTIAL_MODE: aksCredentialMode
  ALLOWED_NAMESPACES: allowedNamespaces
  ARM_ENDPOINT: environment().resourceManager
  AZURE_CLIENT_ID: identity.outputs.clientId
  RUNS_TABLE_ENDPOINT: storage.outputs.tableEndpoint
  RUNS_TABLE_NAME: storage.outputs.runsTableName
  EVENTGRID_TOPIC_ENDPOINT: events.outputs.endpoint
  SWEEP_SCHEDULE: sweepSchedule
  SWEEP_QUEUE_NAME: storage.outputs.sweepQueueName
  SweepQueue__queueServiceUri: storage.outputs.queueEndpoint
  STALL_AFTER_SECONDS: string(stallAfterSeconds)
  POLL_READ_THROUGH_SECONDS: '5'
  SUBMIT_GRACE_SECONDS: string(submitGraceSeconds)
  POD_CHECK_AFTER_SECONDS: string(podCheckAfterSeconds)
  JOB_TTL_SECONDS_AFTER_FINISHED: jobTtlSecondsAfterFinished
  JOB_TTL_FLOOR_SECONDS: string(jobTtlFloorSeconds)
  CREDENTIAL_TTL_SECONDS: string(credentialTtlSeconds)
  KUBE_REQUEST_TIMEOUT_SECONDS: string(kubeRequestTimeoutSeconds)
  SECRET_PARAMETER_PATTERNS: secretParameterPatterns
  AUTH_MODE: authMode
  ENTRA_TENANT_ID: entraTenant
  ENTRA_AUDIENCE: entraAudiences
  ENTRA_ALLOWED_CLIENT_IDS: entraAllowedClientIds
  AZURE_AUTHORITY_HOST: environment().authentication.loginEndpoint
  RUN_URL_SIGNING_KEY: empty(runUrlSigningKey) ? generatedRunUrlSigningKey : runUrlSigningKey
}

module functionApp 'app/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: appName
    planName: 'plan-aksjobs-${resourceToken}'
    location: location
    tags: union(tags, {
      'azd-service-name': 'api'
    })
    identityId: identity.outputs.id
    blobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    appSettings: appSettings
  }
  // The host starts as soon as the app exists; with its roles in place it does not begin with a
  // round of 403s from storage.
  dependsOn: [
    rbac
  ]
}

// Easy Auth in front of the app for authMode 'entra' (deployed disabled for 'key').
module appAuth 'app/auth.bicep' = {
  name: 'auth'
  params: {
    appName: functionApp.outputs.name
    authMode: authMode
    openIdIssuer: '${environment().authentication.loginEndpoint}${entraTenant}/v2.0'
    clientId: entraAppClientId
    allowedAudiences: split(entraAudiences, ',')
    allowedApplications: split(entraAllowedClientIds, ',')
  }
}

// Named for the tools that read them (azd copies outputs into its environment).
output AZURE_LOCATION string = location
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_CLIENT_ID string = identity.outputs.clientId
// The Kubernetes user name of the identity: the subject of infra/k8s/rbac.yaml's RoleBinding.
output AZURE_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output RUNS_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output EVENTGRID_TOPIC_ENDPOINT string = events.outputs.endpoint
output AKS_CLUSTER_ROLE_DEFINITION_ID string = aksAccess.outputs.roleDefinitionId
// What infra/hooks/subscribe_submit_events.py needs to subscribe submit_from_event to the submit topic.
output SUBMIT_TOPIC_ID string = submitEvents.outputs.id
output SUBMIT_TOPIC_ENDPOINT string = submitEvents.outputs.endpoint
output SUBMIT_DEAD_LETTER_CONTAINER_ID string = submitEvents.outputs.deadLetterContainerId
