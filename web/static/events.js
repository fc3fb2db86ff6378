// The events page: polls /api/events every second (as the original page did) and redraws
// the table of the last 10 predictions and a bar chart of the top classes; polls
// /api/sounds too and redraws the table of the last 10 sound events. "Show older" pages
// back through the history (/api/events?before=<id>), which the daemon's event store
// keeps across restarts.
"use strict";
(function () {
  const body = document.getElementById("events-body");
  const chart = document.getElementById("chart");
  const live = document.getElementById("live-state");
  const soundsBody = document.getElementById("sounds-body");
  const historyBody = document.getElementById("history-body");
  const historyState = document.getElementById("history-state");
  const olderButton = document.getElementById("older");
  let lastId = -1;
  let lastSounds = "";
  let oldestShown = null;

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }

  // A source is shown by its file name (full paths squeezed the other columns into
  // three-line wraps); the whole path is the cell's tooltip.
  function sourceCell(row, source) {
    const td = document.createElement("td");
    const path = source || "";
    td.textContent = path.split(/[\\/]/).filter(Boolean).pop() || path;
    if (path) td.title = path;
    td.className = "source";
    row.appendChild(td);
  }

  function when(seconds) {
    return seconds === null || seconds === undefined ? "" :
      new Date(seconds * 1000).toLocaleString();
  }

  function describe(predictions) {
    if (!predictions.length) return "(nothing above the threshold)";
    return predictions.map(p => p.label + ": " + p.score.toFixed(2)).join(", ");
  }

  function eventRow(e) {
    const row = document.createElement("tr");
    row.dataset.id = String(e.id);
    cell(row, when(e.timestamp));
    sourceCell(row, e.source);
    cell(row, e.start.toFixed(2) + "–" + e.end.toFixed(2) + " s");
    cell(row, describe(e.predictions));
    return row;
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
    for (const e of events) body.appendChild(eventRow(e));
    if (oldestShown === null) oldestShown = events[events.length - 1].id;
  }

  // The average score of each class over the windows shown (absent = 0), top 5.
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
      cell(row, when(s.start_time));
      sourceCell(row, s.source);
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
      if (response.status === 401) {
        window.location.assign("/login?next=/events/");
        return;
      }
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

  async function older() {
    if (oldestShown === null) return;
    try {
      const response = await fetch("/api/events?limit=10&before=" + oldestShown,
                                   {cache: "no-store"});
      const data = await response.json();
      for (const e of data.events) historyBody.appendChild(eventRow(e));
      if (data.events.length) oldestShown = data.events[data.events.length - 1].id;
      if (data.next_before === null) {
        historyState.textContent = "No older predictions kept.";
        olderButton.disabled = true;
      }
    } catch (e) {
      historyState.textContent = "Daemon unreachable.";
    }
  }

  olderButton.addEventListener("click", older);
  poll();
  setInterval(poll, 1000);
})();
