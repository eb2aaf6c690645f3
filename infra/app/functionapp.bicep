// The Flex Consumption (FC1) plan and the Python function app on it.
//
// The app runs as the user-assigned identity only: the deployment package is read from blob
// storage with it, the host reaches its storage with it (AzureWebJobsStorage__* in the settings
// main.bicep passes in), and the app's own code gets it through AZURE_CLIENT_ID.
//
// Deliberately not here: which app settings exist (main.bicep owns that list, so one file shows
// every setting next to where its value comes from), and settings Flex Consumption rejects or
// ignores (FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION, WEBSITE_RUN_FROM_PACKAGE,
// WEBSITE_CONTENT*): runtime, scale and deployment source live in functionAppConfig instead.

@description('Name of the function app (also its host name: <name>.azurewebsites.net).')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region (must offer Flex Consumption).')
param location string

@description('Tags applied to the plan and the app.')
param tags object = {}

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Primary blob endpoint of the storage account that holds the deployment package.')
param blobEndpoint string

@description('Blob container for the deployment package.')
param deploymentContainerName string

@description('Python version of the Functions runtime.')
@allowed(['3.11'])
param pythonVersion string = '3.11'

@description('Upper bound on instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance, in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Every app setting, name to value (built in main.bicep).')
param appSettings object

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }

  // Replaces the whole settings collection on every deployment: a setting added by hand in the
  // portal disappears at the next `az deployment group create`. Add it to main.bicep instead.
  resource settings 'config' = {
    name: 'appsettings'
    properties: appSettings
  }
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName
