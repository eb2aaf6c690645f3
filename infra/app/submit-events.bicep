// The topic that carries submit requests INTO the app: publishers send CloudEvents whose data is a
// submit body, and the Event Grid subscription to the app's `submit_from_event` function (created
// after publishing by infra/hooks/subscribe_submit_events.py, because it needs the Functions
// host's Event Grid system key) delivers them.
//
// Local (access-key) auth is off: publishers need "EventGrid Data Sender" on this topic (granted by
// you, per publisher; docs/chaining.md). The topic has its own system-assigned identity, used only
// to write events that exhausted their retries into the dead-letter container (the storage account
// takes no keys, so dead-lettering must use an identity), which is all it may do there.
//
// Deliberately not here: the event subscription itself (see above) and any publisher's role.

@description('Name of the Event Grid custom topic for submit requests.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the topic.')
param tags object = {}

@description('Storage account that holds the dead-letter container.')
param storageAccountName string

@description('Blob container for submit events that could not be delivered.')
param deadLetterContainerName string

// Built-in role definition id (Azure built-in roles reference).
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: deadLetterContainerName
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetters.id, topic.id, storageBlobDataContributor)
  scope: deadLetters
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

output id string = topic.id
output name string = topic.name
output endpoint string = topic.properties.endpoint
output deadLetterContainerId string = deadLetters.id
