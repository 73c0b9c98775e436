// Progressive enhancement only: every page reads and every form posts without this file.
(function () {
  "use strict";

  // The runs list refreshes itself while the page is open (fast while a run is in progress):
  // the server renders the rows of the same URL as a fragment.
  function liveRuns() {
    var body = document.querySelector("tbody[data-live]");
    if (!body || !window.fetch) return;
    var delay = function () { return body.getAttribute("data-fast") === "yes" ? 4000 : 15000; };
    function tick() {
      if (document.hidden) { setTimeout(tick, delay()); return; }
      fetch(body.getAttribute("data-live"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { if (!r.ok || r.redirected) throw new Error(r.status); return r.text(); })
        .then(function (html) {
          body.innerHTML = html;
          var running = body.querySelector(".row-running, .row-queued");
          body.setAttribute("data-fast", running ? "yes" : "no");
        })
        .catch(function () { /* try again later */ })
        .then(function () { setTimeout(tick, delay()); });
    }
    setTimeout(tick, delay());
  }

  // "Select all" for bulk forms.
  function selectAll() {
    document.querySelectorAll("input[data-select-all]").forEach(function (box) {
      box.hidden = false;
      var name = box.getAttribute("data-select-all");
      box.addEventListener("change", function () {
        document.querySelectorAll('input[name="' + name + '"]').forEach(function (b) { b.checked = box.checked; });
      });
    });
  }

  // Copy a key or a link shown once.
  function copyButtons() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      if (!navigator.clipboard) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        navigator.clipboard.writeText(source.textContent.trim()).then(function () {
          button.textContent = "Copied";
        });
      });
    });
  }

  // Ask before destructive changes.
  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  // Switchers go on change; their Go button stays for keyboards without scripts.
  function switchers() {
    document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    liveRuns(); selectAll(); copyButtons(); confirmations(); switchers();
  });
})();
