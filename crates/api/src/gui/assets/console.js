// Meshplane console: refreshes the page's <main> from the server without a full reload, every
// few seconds while the tab is visible. The server renders everything; this only swaps it in.
(function () {
  "use strict";
  var main = document.querySelector("main[data-refresh]");
  var state = document.getElementById("refresh-state");
  if (!main) return;
  var every = (parseInt(main.getAttribute("data-refresh"), 10) || 5) * 1000;
  var busy = false;

  function say(text, bad) {
    if (!state) return;
    state.textContent = text;
    state.className = bad ? "stale" : "";
  }

  // Someone typing in a filter would lose what they typed to a refresh: wait until they are done.
  function typing() {
    var a = document.activeElement;
    return a && main.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName);
  }

  function tick() {
    if (busy || document.hidden || typing()) return;
    busy = true;
    fetch(window.location.href, {
      headers: { "X-Meshplane-Fragment": "1" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (r) {
        if (r.status === 401) {
          // Signed out (token expired or revoked): show the sign-in page.
          window.location.reload();
          return null;
        }
        if (r.headers.get("X-Meshplane-Fragment") !== "1") {
          say("live refresh failed: HTTP " + r.status, true);
          return null;
        }
        return r.text();
      })
      .then(function (html) {
        if (html === null || html === undefined) return;
        main.innerHTML = html;
        main.setAttribute("data-refreshed", new Date().toISOString());
        say("live: updated " + new Date().toLocaleTimeString(), false);
      })
      .catch(function () {
        say("live refresh failed: the control plane did not answer", true);
      })
      .then(function () {
        busy = false;
      });
  }

  window.setInterval(tick, every);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) tick();
  });
})();
