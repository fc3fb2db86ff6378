// Live DeviceHive connection status on the configuration page, polled every second.
// Everything goes through textContent: no server value is ever parsed as HTML.
"use strict";
(function () {
  const stateEl = document.getElementById("dh-state");
  const errorEl = document.getElementById("dh-error");
  const countersEl = document.getElementById("dh-counters");
  async function poll() {
    try {
      const response = await fetch("/api/status", {cache: "no-store"});
      const status = await response.json();
      const dh = status.devicehive || {};
      stateEl.textContent = dh.state || "unknown";
      stateEl.className = "state " + (dh.state || "");
      countersEl.textContent = " · sent " + (dh.sent || 0) + ", queued " + (dh.queued || 0) +
        ", dropped " + (dh.dropped || 0);
      errorEl.textContent = dh.last_error ? "Last error: " + dh.last_error : "";
      errorEl.className = dh.last_error ? "error" : "error hidden";
    } catch (e) {
      stateEl.textContent = "daemon unreachable";
      stateEl.className = "state disconnected";
    }
  }
  poll();
  setInterval(poll, 1000);
})();
