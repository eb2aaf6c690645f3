// App Service Authentication (Easy Auth) in front of the app, for authMode 'entra'.
//
// With authMode 'entra' the platform already refuses, with a 401, every request without a valid
// Entra ID token of the allowed client applications (Polysync's service principal) before the
// Functions host sees it; the app then checks the same token again (shared/auth/entra.py), so a
// mistake in either layer alone opens nothing. Excluded, because they must work without a token:
// /api/health (probes), /api/signed/* (the per-run signed status, run and cancel URLs the app
// hands out; each carries its own HMAC, checked by the app) and /runtime/webhooks/eventgrid
// (Event Grid delivers submit events there with the host's Event Grid system key).
//
// With authMode 'key' the same resource is deployed disabled, so switching back turns it off.

@description('Name of the existing function app.')
param appName string

@description('key or entra.')
@allowed(['key', 'entra'])
param authMode string

@description('OpenID issuer of the tenant: <login endpoint><tenant id>/v2.0.')
param openIdIssuer string

@description('Client (application) id of the app registration that represents this app.')
param clientId string

@description('Accepted token audiences.')
param allowedAudiences array

@description('Client ids of the applications allowed to call (Polysync\'s service principal).')
param allowedApplications array

resource app 'Microsoft.Web/sites@2024-04-01' existing = {
  name: appName
}

resource auth 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: authMode == 'entra'
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/health'
        '/api/signed/*'
        '/runtime/webhooks/eventgrid'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: authMode == 'entra'
        registration: {
          openIdIssuer: openIdIssuer
          clientId: clientId
        }
        validation: {
          allowedAudiences: allowedAudiences
          defaultAuthorizationPolicy: {
            allowedApplications: allowedApplications
          }
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
  }
}
