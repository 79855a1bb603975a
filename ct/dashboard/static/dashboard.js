// CodeTogether server dashboard: confirmations, gentle auto-refresh, log scrolling.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  var log = document.getElementById("log");
  if (log) {
    log.scrollTop = log.scrollHeight;
  }

  // Pages with live numbers reload every data-refresh seconds, unless the user is busy.
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (seconds > 0) {
    var lastActivity = Date.now();
    ["keydown", "mousedown", "scroll"].forEach(function (name) {
      document.addEventListener(name, function () { lastActivity = Date.now(); }, true);
    });
    window.setInterval(function () {
      var active = document.activeElement;
      var typing = active && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
      var selecting = String(window.getSelection ? window.getSelection() : "").length > 0;
      if (!typing && !selecting && !document.hidden && Date.now() - lastActivity > 3000) {
        window.location.reload();
      }
    }, seconds * 1000);
  }
})();
