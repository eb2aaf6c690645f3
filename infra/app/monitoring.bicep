// Log Analytics + Application Insights for the function app.
//
// Local (instrumentation-key) authentication is disabled: telemetry is accepted only with an Entra
// token, so the connection string the app gets is an address, not a credential. The app's identity
// needs "Monitoring Metrics Publisher" on the component for that (rbac.bicep), and the host is told
// to use the identity through APPLICATIONINSIGHTS_AUTHENTICATION_STRING.
//
// Deliberately not here: alerts, dashboards, workbooks, and role assignments.

@description('Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Azure region.')
param location string

@description('Tags applied to both resources.')
param tags object = {}

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output applicationInsightsId string = applicationInsights.id
output applicationInsightsName string = applicationInsights.name
// Not a secret once local auth is disabled: it names the ingestion endpoint, Entra does the auth.
output connectionString string = applicationInsights.properties.ConnectionString
