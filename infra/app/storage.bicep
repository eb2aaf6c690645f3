// Storage for five things: the Functions host (timer locks, keys), the Flex Consumption deployment
// package, the runs table the app keeps its state in, the dead-letter container for submit
// events Event Grid could not deliver, and the queue the sweep fans out through.
//
// Shared-key access is off: nothing may reach this account with an account key or a connection
// string, only with Entra tokens (the app's managed identity, through role assignments in
// rbac.bicep). That is also why no output here carries a key.
//
// Deliberately not here: file shares (Flex Consumption needs no content share), public blob access,
// and role assignments.

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to the account.')
param tags object = {}

@description('Blob container that holds the deployment package (Flex Consumption deploys from it).')
param deploymentContainerName string

@description('Table that holds run state (the app setting RUNS_TABLE_NAME).')
param runsTableName string

@description('Blob container where Event Grid leaves submit events it could not deliver.')
param deadLetterContainerName string

@description('Queue the sweep timer fans out to, one message per namespace (the app setting SWEEP_QUEUE_NAME).')
param sweepQueueName string = 'aksjobs-sweep'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    // The portal's data browser would otherwise try keys first and fail.
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }

  resource blobService 'blobServices' = {
    name: 'default'

    resource deploymentContainer 'containers' = {
      name: deploymentContainerName
      properties: {
        publicAccess: 'None'
      }
    }

    resource deadLetterContainer 'containers' = {
      name: deadLetterContainerName
      properties: {
        publicAccess: 'None'
      }
    }
  }

  resource tableService 'tableServices' = {
    name: 'default'

    // Created here so the app never needs the right to create tables at run time.
    resource runsTable 'tables' = {
      name: runsTableName
    }
  }

  resource queueService 'queueServices' = {
    name: 'default'

    resource sweepQueue 'queues' = {
      name: sweepQueueName
    }
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainerName
output runsTableName string = runsTableName
output deadLetterContainerName string = deadLetterContainerName
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output sweepQueueName string = sweepQueueName
