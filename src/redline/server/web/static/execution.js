// An executed run's live log (issue 25): while the run is queued or running, read the log
// from the last offset (the dashboard's /runs/{id}/log, with the session cookie) and append
// it; refresh the facts (status, exit code, reasons, runner, time used, the Cancel button).
// Stops once the log is complete. The page reads without this file.
(function () {
  "use strict";

  var LIVE_DELAY = 1000;     // while the run is live
  var CATCH_UP_DELAY = 50;   // more of the log is waiting: read it at once
  var ERROR_DELAY = 5000;    // the server did not answer: try again later
  var HIDDEN_DELAY = 5000;   // the tab is in the background: poll less often
  var MAX_CHARS = 2000000;   // a longer log keeps its tail here (the whole log is a run file)

  function follow(section) {
    var log = document.getElementById("run-log");
    var state = document.getElementById("log-state");
    var ended = document.getElementById("log-ended");
    var facts = document.getElementById("execution-facts");
    var offset = parseInt(section.getAttribute("data-offset"), 10) || 0;
    var wasLive = (facts.querySelector("[data-status]") || facts).getAttribute("data-status");
    wasLive = wasLive === "queued" || wasLive === "running";

    function atBottom() {
      return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    }

    function append(text) {
      if (!text) return;
      var stick = atBottom();
      var all = log.textContent + text;
      if (all.length > MAX_CHARS) {
        all = "[earlier output left out here: the whole log is among the run's files]\n" +
          all.slice(all.length - MAX_CHARS);
      }
      log.textContent = all;
      if (stick) log.scrollTop = log.scrollHeight;
    }

    function tick() {
      if (document.hidden) { setTimeout(tick, HIDDEN_DELAY); return; }
      var url = section.getAttribute("data-log-url") + "?offset=" + offset;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) {
          if (!r.ok || r.redirected) throw new Error(String(r.status));
          return r.json();
        })
        .then(function (chunk) {
          var advanced = chunk.nextOffset > offset;
          append(chunk.text);
          offset = chunk.nextOffset;
          section.setAttribute("data-offset", String(offset));
          facts.innerHTML = chunk.factsHtml;
          if (chunk.complete) {
            state.textContent = "End of the log.";
            if (wasLive) ended.hidden = false;
            return;
          }
          state.textContent = chunk.live ? "The run is live: this log follows its output."
            : "Reading the rest of the log…";
          setTimeout(tick, advanced ? CATCH_UP_DELAY : LIVE_DELAY);
        })
        .catch(function () {
          state.textContent = "Lost contact with the server; trying again…";
          setTimeout(tick, ERROR_DELAY);
        });
    }

    // Cancel asks first (the facts are replaced as the run goes on: listen on the container).
    facts.addEventListener("submit", function (event) {
      var form = event.target;
      if (form.hasAttribute("data-ask") && !window.confirm(form.getAttribute("data-ask"))) {
        event.preventDefault();
      }
    });
    if (section.getAttribute("data-complete") !== "yes") setTimeout(tick, LIVE_DELAY);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.getElementById("execution");
    if (section && window.fetch) follow(section);
  });
})();
