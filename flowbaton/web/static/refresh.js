// Reload the page every <body data-refresh> seconds (0: never), except while
// the operator selects text, types in a field or looks at another tab: a
// reload would throw the selection or the typing away. A file of its own:
// the Content-Security-Policy runs no inline script.
(function () {
  "use strict";
  var seconds = Number(document.body.getAttribute("data-refresh") || 0);
  if (!(seconds > 0)) {
    return;
  }
  function busy() {
    var selection = window.getSelection();
    var active = document.activeElement;
    var typing = active !== null && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(active.tagName);
    return document.hidden || typing || (selection !== null && !selection.isCollapsed);
  }
  window.setInterval(function () {
    if (!busy()) {
      window.location.reload();
    }
  }, seconds * 1000);
}());
