// Live status on the configuration page (the sounds listened to, the detection switch,
// MQTT, webhooks, DeviceHive), polled every second from /api/status.
// Everything goes through textContent: no server value is ever parsed as HTML.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);

  function showState(el, state) {
    el.textContent = state || "unknown";
    el.className = "state " + (state || "");
  }

  function showError(el, message) {
    el.textContent = message ? "Last error: " + message : "";
    el.className = message ? "error" : "error hidden";
  }

  function showDeviceHive(dh) {
    showState($("dh-state"), dh.state);
    $("dh-counters").textContent = " · sent " + (dh.sent || 0) + ", queued " + (dh.queued || 0) +
      ", dropped " + (dh.dropped || 0);
    showError($("dh-error"), dh.last_error);
  }

  function showMqtt(mqtt) {
    showState($("mqtt-state"), mqtt.state);
    $("mqtt-url").textContent = mqtt.url || "";
    $("mqtt-counters").textContent = mqtt.state === "disabled" && !mqtt.url ? "" :
      "· sent " + (mqtt.sent || 0) + ", pending " + (mqtt.pending || 0) +
      ", duplicates " + (mqtt.duplicates || 0);
    showError($("mqtt-error"), mqtt.last_error);
  }

  function showWebhooks(hooks) {
    const targets = hooks.targets || [];
    const body = $("webhooks-body");
    body.replaceChildren(...targets.map((t) => {
      const row = document.createElement("tr");
      for (const value of [t.url, t.state, t.sent, t.retries, t.rejected,
                           t.last_error || t.last_status || ""]) {
        const cell = document.createElement("td");
        cell.textContent = String(value === null || value === undefined ? "" : value);
        row.appendChild(cell);
      }
      return row;
    }));
    $("webhooks-table").className = targets.length ? "" : "hidden";
  }

  // The sounds are known once the daemon's models are loaded: the table fills then.
  function showListening(listening) {
    const sounds = (listening && listening.sounds) || [];
    const message = $("listening-message");
    if (!sounds.length) {
      message.textContent = listening && listening.sounds === null ?
        "Loading the models; the sounds follow." :
        "No sound is followed: start the daemon with --listen (e.g. --listen dog,siren) or --events.";
      message.className = "muted";
      $("listening-table").className = "hidden";
      return;
    }
    $("listening-body").replaceChildren(...sounds.map((s) => {
      const row = document.createElement("tr");
      for (const value of [s.name, (s.classes || []).join(", "), Number(s.threshold).toFixed(2),
                           Number(s.off).toFixed(2)]) {
        const cell = document.createElement("td");
        cell.textContent = String(value);
        row.appendChild(cell);
      }
      return row;
    }));
    $("listening-table").className = "";
    message.className = "muted hidden";
  }

  function showDetection(detection) {
    const state = $("detection-state");
    if (!state || !detection) return;
    state.textContent = detection.on ? "on" : "paused";
    state.className = "state " + (detection.on ? "connected" : "disabled");
    $("detection-on").value = detection.on ? "0" : "1";
    $("detection-toggle").textContent = detection.on ? "Pause detection" : "Resume detection";
  }

  async function poll() {
    try {
      const response = await fetch("/api/status", {cache: "no-store"});
      const status = await response.json();
      showDeviceHive(status.devicehive || {});
      showMqtt(status.mqtt || {state: "disabled"});
      showWebhooks(status.webhooks || {});
      showDetection(status.detection);
      showListening(status.listening);
    } catch (e) {
      showState($("dh-state"), "daemon unreachable");
      $("dh-state").className = "state disconnected";
    }
  }
  poll();
  setInterval(poll, 1000);
})();
