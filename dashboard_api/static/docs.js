"use strict";
// Starts Swagger UI (loaded from /docs-assets, the swagger-ui-bundle pip package) on the
// API's OpenAPI schema. A file of its own so that /docs needs no inline script.
window.ui = window.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [window.SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
