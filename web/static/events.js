// The events page: polls /api/events every second (as the original page did) and redraws
// the table of the last 10 predictions and a bar chart of the top classes; polls
// /api/sounds too and redraws the table of the last 10 sound events.
"use strict";
(function () {
  const body = document.getElementById("events-body");
  const chart = document.getElementById("chart");
  const live = document.getElementById("live-state");
  const soundsBody = document.getElementById("sounds-body");
  let lastId = -1;
  let lastSounds = "";

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }

  function describe(predictions) {
    if (!predictions.length) return "(nothing above the threshold)";
    return predictions.map(p => p.label + ": " + p.score.toFixed(2)).join(", ");
  }

  function drawTable(events) {
    body.replaceChildren();
    if (!events.length) {
      const row = document.createElement("tr");
      row.className = "empty";
      cell(row, "No predictions yet.");
      body.appendChild(row);
      return;
    }
    for (const e of events) {
      const row = document.createElement("tr");
      row.dataset.id = String(e.id);
      cell(row, new Date(e.timestamp * 1000).toLocaleTimeString());
      cell(row, e.start.toFixed(2) + "–" + e.end.toFixed(2) + " s");
      cell(row, describe(e.predictions));
      body.appendChild(row);
    }
  }

  function drawChart(events) {
    const totals = new Map();
    for (const e of events) {
      for (const p of e.predictions) totals.set(p.label, (totals.get(p.label) || 0) + p.score);
    }
    const n = Math.max(events.length, 1);
    const top = [...totals.entries()].map(([label, s]) => [label, s / n])
      .sort((a, b) => b[1] - a[1]).slice(0, 5);
    chart.replaceChildren();
    for (const [label, score] of top) {
      const row = document.createElement("div");
      row.className = "row";
      const name = document.createElement("span");
      name.className = "label";
      name.textContent = label;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.round(score * 300) + "px";
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = score.toFixed(2);
      row.append(name, bar, value);
      chart.appendChild(row);
    }
  }

  function drawSounds(sounds) {
    if (!sounds.length) return;
    soundsBody.replaceChildren();
    for (const s of sounds) {
      const row = document.createElement("tr");
      row.dataset.id = String(s.id);
      const when = s.start_time === null ? "" : new Date(s.start_time * 1000).toLocaleTimeString();
      cell(row, when);
      cell(row, s.sound);
      cell(row, s.start.toFixed(2) + "–" + (s.active ? "…" : s.end.toFixed(2) + " s"));
      cell(row, s.peak_score.toFixed(2));
      cell(row, s.peak_dbfs.toFixed(0) + " dBFS");
      soundsBody.appendChild(row);
    }
  }

  async function pollSounds() {
    const response = await fetch("/api/sounds?limit=10", {cache: "no-store"});
    const text = await response.text();
    if (text === lastSounds) return;
    lastSounds = text;
    drawSounds(JSON.parse(text).sounds);
  }

  async function poll() {
    try {
      const response = await fetch("/api/events?limit=10", {cache: "no-store"});
      const data = await response.json();
      live.textContent = "Live.";
      await pollSounds();
      if (data.last_id === lastId) return;
      lastId = data.last_id;
      drawTable(data.events);
      drawChart(data.events);
    } catch (e) {
      live.textContent = "Daemon unreachable; retrying.";
    }
  }
  poll();
  setInterval(poll, 1000);
})();
