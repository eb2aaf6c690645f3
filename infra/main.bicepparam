// Parameters for infra/main.bicep, read from environment variables so that one file serves both
//   az deployment group create -g "$AZURE_RESOURCE_GROUP" --template-file infra/main.bicep --parameters infra/main.bicepparam
// (export the variables first) and `azd up` (azd passes its environment: `azd env set NAME value`).
// A variable that is unset takes the default shown. docs/deploy.md explains each one at length.
using './main.bicep'

// Seeds the unique suffix of every resource name; azd sets AZURE_ENV_NAME itself.
param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'aksjobs')

// No location here: everything goes to the resource group's region (main.bicep's default), which
// must offer Flex Consumption. Pick the region when you create the resource group.

// Function app name (<name>.azurewebsites.net). Empty: func-aksjobs-<unique suffix>.
param functionAppName = readEnvironmentVariable('AZURE_FUNCTION_APP_NAME', '')

// The existing cluster: the Polysync platform's Subscription Id, Resource Group Name and AKS Cluster
// Name. The subscription may differ from the one deployed into (empty: the same one).
param aksSubscriptionId = readEnvironmentVariable('AKS_SUBSCRIPTION_ID', '')
param aksResourceGroup = readEnvironmentVariable('AKS_RESOURCE_GROUP')
param aksClusterName = readEnvironmentVariable('AKS_CLUSTER_NAME')

// The Polysync platform's AKS Namespace: source Jobs are discovered there and runs created there.
param aksNamespace = readEnvironmentVariable('AKS_NAMESPACE', 'default')

// Further namespaces a caller may name per request, comma-separated (each needs its own RoleBinding
// in user mode). Empty: AKS_NAMESPACE only.
param allowedNamespaces = readEnvironmentVariable('ALLOWED_NAMESPACES', '')

// user (recommended; works with local accounts disabled; apply infra/k8s/rbac.yaml afterwards) or
// admin (admin kubeconfig; cluster-admin inside Kubernetes).
param aksCredentialMode = readEnvironmentVariable('AKS_CREDENTIAL_MODE', 'user')

// Table Storage table for run state.
param runsTableName = readEnvironmentVariable('RUNS_TABLE_NAME', 'aksjobruns')

// NCRONTAB (six fields, seconds first) of the sweep that refreshes active runs.
param sweepSchedule = readEnvironmentVariable('SWEEP_SCHEDULE', '*/30 * * * * *')

// Seconds a pod may wait for an image or a node before the run shows as Stalled.
param stallAfterSeconds = int(readEnvironmentVariable('STALL_AFTER_SECONDS', '300'))

// Seconds a run may stay Submitting with no Job before the sweep counts its Job missing.
param submitGraceSeconds = int(readEnvironmentVariable('SUBMIT_GRACE_SECONDS', '60'))

// Seconds after a run is created from which the sweep lists the pods of its not yet ready Job.
param podCheckAfterSeconds = int(readEnvironmentVariable('POD_CHECK_AFTER_SECONDS', '30'))

// ttlSecondsAfterFinished for created Jobs whose source sets none; 'none' keeps finished Jobs.
param jobTtlSecondsAfterFinished = readEnvironmentVariable('JOB_TTL_SECONDS_AFTER_FINISHED', '86400')

// Least ttlSecondsAfterFinished a run Job gets, even when its source asks for less.
param jobTtlFloorSeconds = int(readEnvironmentVariable('JOB_TTL_FLOOR_SECONDS', '300'))

// Seconds a fetched kubeconfig is reused.
param credentialTtlSeconds = int(readEnvironmentVariable('CREDENTIAL_TTL_SECONDS', '3600'))

// Timeout of one Kubernetes API request, in seconds.
param kubeRequestTimeoutSeconds = int(readEnvironmentVariable('KUBE_REQUEST_TIMEOUT_SECONDS', '30'))

// Flex Consumption scale limits.
param maximumInstanceCount = int(readEnvironmentVariable('MAXIMUM_INSTANCE_COUNT', '40'))
param instanceMemoryMB = int(readEnvironmentVariable('INSTANCE_MEMORY_MB', '2048'))

// Untyped parameters whose names match these patterns are Secrets (docs/polysync.md).
param secretParameterPatterns = readEnvironmentVariable('SECRET_PARAMETER_PATTERNS', '*PASSWORD*,*PASSWD*,*SECRET*,*TOKEN,*_TOKEN_*,*API_KEY*,*APIKEY*,*ACCESS_KEY*,*ACCOUNT_KEY*,*PRIVATE_KEY*,*CONNECTION_STRING*,*CONNSTR*,*CREDENTIAL*')

// Who may call: key (function keys) or entra (Polysync's service principal; docs/polysync.md).
param authMode = readEnvironmentVariable('AUTH_MODE', 'key')
param entraTenantId = readEnvironmentVariable('ENTRA_TENANT_ID', '')
param entraAppClientId = readEnvironmentVariable('ENTRA_APP_CLIENT_ID', '')
param entraAudience = readEnvironmentVariable('ENTRA_AUDIENCE', '')
param entraAllowedClientIds = readEnvironmentVariable('ENTRA_ALLOWED_CLIENT_IDS', '')

// Signs the status URLs handed out. azd keeps one per environment (the preprovision hook stores it
// with azd env set the first time); the plain path must export the same key on every deployment.
// Unset: a new key per deployment, and URLs handed out before a deployment stop working after it.
param runUrlSigningKey = readEnvironmentVariable('RUN_URL_SIGNING_KEY', '')
