// Starts Swagger UI on /api/docs. A file of its own, not an inline script, so the page keeps the
// app's Content-Security-Policy (script-src 'self'); the document's URL comes from a data attribute.
(function () {
  "use strict";
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    // BaseLayout: no top bar, whose logo carries an inline <style> that the policy (style-src 'self') refuses.
    layout: "BaseLayout",
    // The "Try it out" calls go to this origin with the key given under "Authorize".
    persistAuthorization: false,
    validatorUrl: null
  });
})();
