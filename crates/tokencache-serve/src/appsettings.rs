//! appsettings.json (Microsoft.Identity.Web) as serve configuration.
