// The one identity the app runs as.
//
// Why a user-assigned identity and not the site's system-assigned one: role assignments (here and on
// the AKS cluster, possibly in another subscription) and the Kubernetes RoleBinding need its
// principal id *before* the function app exists, and it survives re-creating the app. The app finds
// it through AZURE_CLIENT_ID; the host finds it through AzureWebJobsStorage__clientId.
//
// Deliberately not here: any role assignment (rbac.bicep, aks-access.bicep grant them).

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
