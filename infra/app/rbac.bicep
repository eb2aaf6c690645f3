// What the app's identity may do in its own resource group, and nothing more.
//
//   Storage Blob Data Owner         on the storage account: the Functions host keeps timer locks and
//                                   keys in blobs, and Flex Consumption reads the deployment package.
//   Storage Table Data Contributor  on the storage account: the runs table (entities only; the table
//                                   itself is created by storage.bicep).
//   Storage Queue Data Contributor  on the storage account: the sweep queue (the timer sends, the
//                                   queue trigger receives and deletes; the queue is storage.bicep's).
//   Monitoring Metrics Publisher    on Application Insights: telemetry with local auth disabled.
//   EventGrid Data Sender           on the run-events topic: publish status transitions.
//
// Roles are named by role-definition id (a display name can be renamed; the id cannot), and each
// assignment's name is derived from scope + principal + role, so re-deploying is idempotent.
//
// Deliberately not here: access to the AKS cluster (aks-access.bicep: the cluster may live in another
// resource group or subscription), and any role for the person deploying.

@description('Principal (object) id of the app\'s user-assigned identity.')
param principalId string

@description('Name of the storage account (host storage, deployment package, runs table).')
param storageAccountName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Name of the Event Grid topic for run events.')
param topicName string

// Built-in role definition ids (Azure built-in roles reference).
var roleDefinitionIds = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource topic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: topicName
}

resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleDefinitionIds.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.storageBlobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleDefinitionIds.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.storageTableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, roleDefinitionIds.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.storageQueueDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, roleDefinitionIds.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource eventSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, principalId, roleDefinitionIds.eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionIds.eventGridDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
