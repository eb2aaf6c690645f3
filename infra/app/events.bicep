// The Event Grid custom topic the app publishes run status transitions to (CloudEvents 1.0).
//
// Local (access-key) auth is disabled: the app publishes with its managed identity, which holds
// "EventGrid Data Sender" on this topic (rbac.bicep). Subscribers (Polysync, Logic Apps, ...) add
// their own event subscriptions; Event Grid delivers at least once, so they must dedupe by event id.
//
// Deliberately not here: event subscriptions (they belong to the consumers) and role assignments.

@description('Name of the Event Grid custom topic.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the topic.')
param tags object = {}

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

output id string = topic.id
output name string = topic.name
output endpoint string = topic.properties.endpoint
