// Ferry console: small progressive enhancements. Everything works without it except copy buttons and the
// live canary label; htmx (served from the django-htmx package) does the fragment swaps and polling.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // Confirm before an action: <form data-confirm="..."> or data-confirm-template with {field} placeholders.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute("data-confirm");
    var template = form.getAttribute("data-confirm-template");
    if (template) {
      message = template.replace(/\{(\w+)\}/g, function (_, name) {
        var field = form.elements[name];
        return field ? field.value : "";
      });
    }
    if (message && !window.confirm(message)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // Copy buttons: data-copy="text" or data-copy-from="element id".
  function copyText(text, button) {
    function done() {
      var label = button.textContent;
      button.textContent = "Copied";
      button.setAttribute("aria-live", "polite");
      setTimeout(function () { button.textContent = label; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else {
      fallback(text);
      done();
    }
  }
  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "absolute";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(area);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-copy-from]");
    if (!button) return;
    var text = button.getAttribute("data-copy");
    if (text === null) {
      var source = document.getElementById(button.getAttribute("data-copy-from"));
      text = source ? (source.value !== undefined ? source.value : source.textContent) : "";
    }
    copyText(text, button);
  });

  // The canary slider shows its value as it moves.
  document.addEventListener("input", function (event) {
    if (event.target.id === "canary-percent") {
      var output = document.getElementById("canary-output");
      if (output) output.textContent = event.target.value + " %";
    }
  });

  // Selects that submit their form at once (the project switcher).
  document.addEventListener("change", function (event) {
    var form = event.target.closest("form[data-autosubmit]");
    if (form && event.target.tagName === "SELECT") form.requestSubmit ? form.requestSubmit() : form.submit();
  });
})();
