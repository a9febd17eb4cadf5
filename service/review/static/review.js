// Review UI of mars-impacts: plain JavaScript, no build step, no external resources.
//
// The queue is loaded once per filter change and kept as a snapshot: a decision updates the
// detection's entry in place and moves on to the next one, so "previous" always finds what
// was just decided. Actions run one after another (a promise chain), so fast key presses are
// applied in order and never twice at once. The analyst is never sent: the server takes it
// from the session; every POST carries the CSRF token read from the impacts_csrf cookie.
"use strict";

(() => {
  const REASONS = ["crater", "shadow", "nodata_border", "artefact", "other"];
  const DONE = { accept: "Accepted", reject: "Rejected", unsure: "Marked unsure" };
  const LABEL = {
    pending: "pending", accept: "accepted", reject: "rejected", unsure: "unsure", conflict: "conflict",
  };
  const $ = (id) => document.getElementById(id);

  const state = {
    me: null,
    items: [], // DetectionOut snapshot of the queue page
    total: 0,
    index: -1,
    maskOn: true,
    rejectMode: false,
  };
  let chain = Promise.resolve();

  // ------------------------------------------------------------------ server
  function csrf() {
    const found = document.cookie.split("; ").find((c) => c.startsWith("impacts_csrf="));
    return found ? decodeURIComponent(found.slice("impacts_csrf=".length)) : "";
  }

  async function api(path, options = {}) {
    const init = { method: options.method || "GET", headers: { Accept: "application/json" } };
    if (init.method !== "GET") {
      init.headers["X-CSRF-Token"] = csrf();
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body || {});
    }
    const response = await fetch(path, init);
    if (response.status === 401) {
      window.location.assign("/login");
      throw new Error("the session has ended; log in again");
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      let detail = data && data.detail;
      if (Array.isArray(detail)) detail = detail.map((d) => d.msg).join("; ");
      throw new Error(detail || `${response.status} ${response.statusText}`);
    }
    return data;
  }

  // Run actions one at a time, in the order they were asked for.
  function run(action) {
    chain = chain.then(action).catch((error) => say(error.message, true));
    return chain;
  }

  // ------------------------------------------------------------------ rendering
  function say(text, isError = false) {
    const message = $("message");
    message.textContent = text;
    message.classList.toggle("error", isError);
  }

  function fmt(value, digits = 1) {
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  }

  function when(iso) {
    return new Date(iso).toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function describe(d) {
    const reason = d.reason ? ` (${d.reason.replace("_", " ")})` : "";
    const note = d.note ? ` — “${d.note}”` : "";
    return `${LABEL[d.decision]}${reason}${note}, ${when(d.at)}`;
  }

  function renderQueue() {
    const list = $("queue");
    list.replaceChildren();
    state.items.forEach((item, i) => {
      const li = document.createElement("li");
      li.dataset.id = item.id;
      li.title = `${item.scene} · ${item.model_version} · ${LABEL[item.status]}`;
      li.classList.toggle("current", i === state.index);
      const scene = document.createElement("span");
      scene.className = "q-scene";
      scene.textContent = `#${item.id} ${item.scene}`;
      const score = document.createElement("span");
      score.className = "q-score";
      score.textContent = item.score.toFixed(3);
      const dot = document.createElement("span");
      dot.className = `dot ${item.status}`;
      dot.title = LABEL[item.status];
      li.append(scene, score, dot);
      li.addEventListener("click", () => run(() => show(i)));
      list.append(li);
    });
    const shown = state.items.length;
    $("queue-count").textContent = shown
      ? `${shown} shown of ${state.total} matching`
      : "no detection matches";
    const models = [...new Set(state.items.map((item) => item.model_version))].sort();
    $("models").replaceChildren(...models.map((m) => Object.assign(document.createElement("option"), { value: m })));
  }

  function renderDetection(d) {
    $("empty").hidden = true;
    const section = $("detection");
    section.hidden = false;
    section.dataset.id = d.id;
    section.dataset.status = d.status;
    $("det-id").textContent = `#${d.id}`;
    $("det-key").textContent = d.key;
    $("scene").textContent = d.scene;
    $("box").textContent =
      `rows ${d.row_min}–${d.row_max}, cols ${d.col_min}–${d.col_max} ` +
      `(${d.row_max - d.row_min + 1} × ${d.col_max - d.col_min + 1} px)`;
    $("centroid").textContent =
      `row ${fmt(d.centroid_row)}, col ${fmt(d.centroid_col)} · x ${fmt(d.centroid_x)}, y ${fmt(d.centroid_y)}`;
    $("area").textContent = `${d.area_px} px`;
    $("model").textContent = d.model_version;
    $("score").textContent = d.score.toFixed(3);
    const status = $("status");
    status.textContent = LABEL[d.status];
    status.className = `badge ${d.status}`;
    $("conflict").hidden = d.status !== "conflict";
    const mine = d.decisions.find((x) => x.analyst === state.me);
    $("mine").textContent = mine ? describe(mine) : "not decided";
    const others = d.decisions.filter((x) => x.analyst !== state.me);
    $("others").replaceChildren(
      ...(others.length
        ? others.map((x) => Object.assign(document.createElement("li"), { textContent: `${x.analyst}: ${describe(x)}` }))
        : [Object.assign(document.createElement("li"), { className: "muted", textContent: "none" })]),
    );
    $("position").textContent = `${state.index + 1} / ${state.items.length}`;
    const base = `/v1/review/detections/${d.id}`;
    $("crop").src = `${base}/crop.png`;
    $("context").src = `${base}/context.png`;
    drawMask(`${base}/mask.png`);
  }

  // The mask PNG is 0/255 grey; paint its set pixels in a see-through orange over the crop.
  function drawMask(url) {
    const canvas = $("mask");
    const image = new Image();
    image.onload = () => {
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
      const ctx = canvas.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(image, 0, 0);
      const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
      const p = pixels.data;
      for (let i = 0; i < p.length; i += 4) {
        const on = p[i] > 127;
        p[i] = 255; p[i + 1] = 120; p[i + 2] = 40; p[i + 3] = on ? 230 : 0;
      }
      ctx.putImageData(pixels, 0, 0);
    };
    image.src = url;
  }

  function renderProgress(rows) {
    const box = $("progress");
    box.replaceChildren();
    for (const row of rows) {
      const done = row.total - row.pending;
      const wrap = document.createElement("div");
      wrap.className = "progress-row";
      wrap.dataset.scene = row.scene;
      const label = document.createElement("div");
      label.className = "label";
      const name = document.createElement("span");
      name.textContent = row.scene;
      const count = document.createElement("span");
      count.className = "muted";
      count.textContent = `${done} / ${row.total}`;
      label.append(name, count);
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.title = `${row.accepted} accepted, ${row.rejected} rejected, ${row.unsure} unsure, ` +
        `${row.conflict} in conflict, ${row.pending} pending`;
      for (const [cls, n] of [["accept", row.accepted], ["reject", row.rejected], ["unsure", row.unsure],
        ["conflict", row.conflict]]) {
        const part = document.createElement("span");
        part.className = cls;
        part.style.width = `${row.total ? (100 * n) / row.total : 0}%`;
        bar.append(part);
      }
      wrap.append(label, bar);
      box.append(wrap);
    }
    const select = $("f-scene");
    const chosen = select.value;
    select.replaceChildren(Object.assign(document.createElement("option"), { value: "", textContent: "all scenes" }));
    for (const row of rows) {
      select.append(Object.assign(document.createElement("option"), { value: row.scene, textContent: row.scene }));
    }
    select.value = chosen;
  }

  function setRejectMode(on) {
    state.rejectMode = on;
    $("reasons").classList.toggle("active", on);
    if (on) say("Reject: pick a reason, 1 crater · 2 shadow · 3 no-data border · 4 artefact · 5 other (Esc cancels)");
  }

  function setMask(on) {
    state.maskOn = on;
    $("crop-frame").classList.toggle("show-mask", on);
    $("mask-state").textContent = on ? "on" : "off";
  }

  // ------------------------------------------------------------------ actions
  function filterQuery() {
    const q = new URLSearchParams({ limit: "200", status: $("f-status").value, order: $("f-order").value });
    const scene = $("f-scene").value;
    if (scene) q.set("scene", scene);
    for (const [id, key] of [["f-score-min", "score_min"], ["f-score-max", "score_max"]]) {
      if ($(id).value !== "") q.set(key, $(id).value);
    }
    const model = $("f-model").value.trim();
    if (model) q.set("model_version", model);
    if ($("f-undecided").checked) q.set("undecided", "true");
    return q;
  }

  async function loadQueue() {
    const page = await api(`/v1/review/queue?${filterQuery()}`);
    state.items = page.items;
    state.total = page.total;
    state.index = -1;
    if (state.items.length) {
      await show(0);
    } else {
      $("detection").hidden = true;
      $("empty").hidden = false;
      renderQueue();
    }
  }

  async function loadProgress() {
    renderProgress(await api("/v1/review/progress"));
  }

  async function show(index) {
    if (index < 0 || index >= state.items.length) return;
    const fresh = await api(`/v1/review/detections/${state.items[index].id}`);
    state.items[index] = fresh;
    state.index = index;
    setRejectMode(false);
    $("note").value = "";
    renderDetection(fresh);
    renderQueue();
  }

  async function step(delta) {
    const next = state.index + delta;
    if (next < 0) return say("This is the first detection of the queue.");
    if (next >= state.items.length) return say("End of the queue: change the filters or apply them again for more.");
    await show(next);
  }

  async function decide(decision, reason = null) {
    const current = state.items[state.index];
    if (!current) return;
    setRejectMode(false);
    const note = $("note").value.trim() || null;
    const result = await api("/v1/review/decisions", {
      method: "POST",
      body: { detection_id: current.id, decision, reason, note },
    });
    state.items[state.index] = result.detection;
    const why = reason ? ` as ${reason.replace("_", " ")}` : "";
    say(`${DONE[decision]} #${current.id}${why}.`);
    await loadProgress();
    if (state.index + 1 < state.items.length) {
      await show(state.index + 1);
    } else {
      renderDetection(result.detection);
      renderQueue();
      say(`${DONE[decision]} #${current.id}${why}. That was the last one shown.`);
    }
  }

  async function undo() {
    setRejectMode(false);
    const result = await api("/v1/review/undo", { method: "POST" });
    if (!result.decision) return say("Nothing to undo.");
    const id = result.detection.id;
    let index = state.items.findIndex((item) => item.id === id);
    if (index < 0) {
      index = Math.max(state.index, 0);
      state.items.splice(index, 0, result.detection);
    }
    await loadProgress();
    await show(index);
    say(`Undid ${LABEL[result.decision.decision]} on #${id}.`);
  }

  async function logout() {
    try {
      await api("/logout", { method: "POST" });
    } finally {
      window.location.assign("/login");
    }
  }

  function toggleHelp(open = $("help").hidden) {
    $("help").hidden = !open;
  }

  // ------------------------------------------------------------------ keyboard
  function onKey(event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = event.target.closest && event.target.closest("input, select, textarea");
    if (event.key === "Escape") {
      if (typing) event.target.blur();
      toggleHelp(false);
      if (state.rejectMode) {
        setRejectMode(false);
        say("Reject cancelled.");
      }
      return;
    }
    if (typing) return; // typing a note or a filter is not a shortcut
    if (event.key === "?") {
      toggleHelp();
      event.preventDefault();
      return;
    }
    if (!$("help").hidden) return;
    if (state.rejectMode && /^[1-5]$/.test(event.key)) {
      const reason = REASONS[Number(event.key) - 1];
      run(() => decide("reject", reason));
      event.preventDefault();
      return;
    }
    const actions = {
      a: () => run(() => decide("accept")),
      r: () => setRejectMode(true),
      u: () => run(() => decide("unsure")),
      z: () => run(undo),
      n: () => run(() => step(1)),
      j: () => run(() => step(1)),
      k: () => run(() => step(-1)),
      p: () => run(() => step(-1)),
      m: () => setMask(!state.maskOn),
    };
    const action = actions[event.key];
    if (action) {
      if (event.key !== "r" && state.rejectMode) setRejectMode(false);
      action();
      event.preventDefault();
    }
  }

  // ------------------------------------------------------------------ start
  function wire() {
    document.addEventListener("keydown", onKey);
    $("btn-accept").addEventListener("click", () => run(() => decide("accept")));
    $("btn-reject").addEventListener("click", () => setRejectMode(true));
    $("btn-unsure").addEventListener("click", () => run(() => decide("unsure")));
    $("btn-undo").addEventListener("click", () => run(undo));
    $("btn-next").addEventListener("click", () => run(() => step(1)));
    $("btn-prev").addEventListener("click", () => run(() => step(-1)));
    $("btn-mask").addEventListener("click", () => setMask(!state.maskOn));
    for (const button of document.querySelectorAll("#reasons button")) {
      button.addEventListener("click", () => run(() => decide("reject", button.dataset.reason)));
    }
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      document.activeElement.blur();
      run(loadQueue);
    });
    $("help-button").addEventListener("click", () => toggleHelp());
    $("help-close").addEventListener("click", () => toggleHelp(false));
    $("help").addEventListener("click", (event) => {
      if (event.target === $("help")) toggleHelp(false);
    });
    $("logout").addEventListener("click", logout);
  }

  async function start() {
    wire();
    const me = await api("/v1/review/me");
    state.me = me.analyst;
    $("analyst").textContent = me.analyst;
    await loadProgress();
    await loadQueue();
    document.body.dataset.ready = "true";
  }

  run(start);
})();
