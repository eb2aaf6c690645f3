// The app's access to the existing AKS cluster, granted where the cluster lives.
//
// main.bicep deploys this module with `scope: resourceGroup(aksSubscriptionId, aksResourceGroup)`,
// so the cluster may sit in another resource group or subscription. That makes it a deployment in the
// cluster's resource group: whoever deploys needs Microsoft.Resources/deployments/* there (Owner or
// Contributor; User Access Administrator and Role Based Access Control Administrator lack it) and
// the right to create role assignments on the cluster (Owner, User Access Administrator or Role
// Based Access Control Administrator).
//
// A deployment never deletes: after a switch of credentialMode the other mode's assignment stays
// until removed (docs/deploy.md gives the `az role assignment delete` command).
//
//   admin mode: "Azure Kubernetes Service Cluster Admin Role" = listClusterAdminCredential. The admin
//               kubeconfig is cluster-admin inside Kubernetes; no Kubernetes RBAC is needed, and
//               clusters with local accounts disabled refuse it.
//   user mode:  "Azure Kubernetes Service Cluster User Role" = listClusterUserCredential. That only
//               yields the cluster's address and CA; what the identity may do inside the cluster
//               comes from Kubernetes RBAC (infra/k8s/rbac.yaml) or Azure RBAC for Kubernetes.
//
// Deliberately not here: the Kubernetes Role/RoleBinding (a Kubernetes object, applied with kubectl)
// and Azure RBAC for Kubernetes data-plane roles (docs/deploy.md shows the one command).

@description('Name of the existing AKS managed cluster (in this module\'s resource group).')
param clusterName string

@description('Principal (object) id of the app\'s user-assigned identity.')
param principalId string

@description('admin: may fetch the admin kubeconfig. user: may fetch the user kubeconfig.')
@allowed(['admin', 'user'])
param credentialMode string

// Built-in role definition ids (Azure built-in roles reference).
var roleDefinitionIds = {
  aksClusterAdmin: '0ab0b1a8-8aac-4efd-b8c2-3ee1fb270be8'
  aksClusterUser: '4abbcc35-e782-43d8-92c5-2d3f1bd2253f'
}

var roleDefinitionId = credentialMode == 'admin' ? roleDefinitionIds.aksClusterAdmin : roleDefinitionIds.aksClusterUser

resource cluster 'Microsoft.ContainerService/managedClusters@2024-09-01' existing = {
  name: clusterName
}

resource clusterCredentials 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cluster.id, principalId, roleDefinitionId)
  scope: cluster
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output clusterId string = cluster.id
output roleDefinitionId string = roleDefinitionId
