// The VoiceMesh console: one agent session over /console/session (wire format: docs/console.md).
// Everything the page shows is also kept in window.vmConsole, which the browser test reads.
"use strict";

const RATE = 16000; // what the capture worklet sends
const DEFAULTS = { stt: "faster-whisper/tiny.en:en", llm: "llama.cpp/smollm2-135m-instruct", tts: "piper/en_US-joe-medium" };
const BARS = [
  ["end_of_utterance_delay_ms", "end of turn"], ["stt_final_latency_ms", "STT final"],
  ["llm_ttft_ms", "LLM first token"], ["tts_ttfb_ms", "TTS first audio"], ["voice_to_voice_ms", "voice to voice"],
];
const $ = (id) => document.getElementById(id);

const vm = (window.vmConsole = {
  state: "disconnected", sessionId: "", finals: [], interim: "", replies: {}, metrics: [], usage: {},
  errors: [], played: { chunks: 0, samples: 0, ended: 0, flushed: 0, peak: 0 }, video: { frames: 0, distinct: 0 },
  models: null, updates: 0, captured: 0, audio: "", turns: [], keyUsage: null, states: [], interims: 0,
});

let ws = null, ctx = null, analyser = null, mic = null, capture = null;
let pending = null; // the JSON header of the binary frame to come
let cursor = 0; // when the next agent audio chunk starts, on ctx's clock
let sources = [];
let timeline = []; // [agent-audio sample offset, ctx time, rate] of each scheduled chunk, for avatar sync
let samplesSeen = 0;
const frameHashes = new Set();

function showError(message) {
  vm.errors.push(message);
  $("error").textContent = message;
  $("error").hidden = false;
}

function setState(state) {
  vm.state = state;
  $("state").textContent = state;
  $("state").className = `state ${state}`;
}

function enable(connected) {
  $("connect").disabled = connected;
  for (const id of ["disconnect", "interrupt", "apply", "send"]) $(id).disabled = !connected;
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

async function connect() {
  $("error").hidden = true;
  vm.errors = [];
  enable(true);
  ctx = ctx || new AudioContext();
  await ctx.resume();
  if (!analyser) {
    analyser = ctx.createAnalyser();
    analyser.connect(ctx.destination);
    watchLevel();
  }
  const key = $("key").value.trim();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/console/session`;
  ws = new WebSocket(url, key ? ["voicemesh.console", `voicemesh-key.${key}`] : ["voicemesh.console"]);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { setState("connecting"); send({ type: "describe" }); };
  ws.onmessage = (e) => (typeof e.data === "string" ? onMessage(JSON.parse(e.data)) : onBinary(e.data));
  ws.onclose = (e) => {
    // A refusal came as an error message first; the close reason is for clients that read only that.
    if (e.code === 1006) showError("the connection to the gateway was lost");
    else if (e.code !== 1000 && e.reason && $("error").hidden) showError(e.reason);
    stopMic();
    setState("disconnected");
    enable(false);
    ws = null;
  };
}

function start() {
  const pick = (m) => $(`pick-${m}`).value || DEFAULTS[m];
  const message = { type: "start", instructions: $("instructions").value, input_sample_rate: RATE,
                    stt: pick("stt"), llm: pick("llm"), tts: pick("tts") };
  if ($("pick-avatar").value) message.avatar = $("pick-avatar").value;
  send(message);
}

async function startMic() {
  mic = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
  });
  await ctx.audioWorklet.addModule("/console/capture.js");
  capture = new AudioWorkletNode(ctx, "vm-capture", { processorOptions: { targetRate: RATE } });
  capture.port.onmessage = (e) => {
    if (ws && ws.readyState === WebSocket.OPEN && vm.sessionId) { ws.send(e.data); vm.captured++; }
  };
  const silent = ctx.createGain();
  silent.gain.value = 0; // the worklet runs only when connected to the output; nobody should hear the mic
  ctx.createMediaStreamSource(mic).connect(capture).connect(silent).connect(ctx.destination);
}

function stopMic() {
  if (capture) capture.disconnect();
  if (mic) mic.getTracks().forEach((t) => t.stop());
  capture = mic = null;
  vm.sessionId = "";
}

function fillPickers(models) {
  vm.models = models;
  for (const m of ["stt", "llm", "tts"]) {
    const select = $(`pick-${m}`);
    select.replaceChildren();
    for (const model of models[m] || []) {
      const names = m === "tts" && model.voices.length > 1 ? model.voices.map((v) => `${model.descriptor}:${v}`) : [model.descriptor];
      for (const name of names) select.add(new Option(name, name, false, name === DEFAULTS[m]));
    }
  }
  const avatar = $("pick-avatar");
  avatar.replaceChildren(new Option("none", ""));
  // With an avatar service, the first avatar it lists is on by default ("none" turns it off).
  (models.avatar || []).forEach((model, i) => avatar.add(new Option(model.descriptor, model.descriptor, false, i === 0)));
}

function onMessage(m) {
  switch (m.type) {
    case "models":
      fillPickers(m);
      if (!vm.sessionId) start();
      break;
    case "session_started":
      vm.sessionId = m.session_id;
      setState("listening");
      send({ type: "usage" });
      startMic().catch((e) => showError(`microphone: ${e.message}`));
      break;
    case "session_ended":
      if (m.message) showError(`${m.code}: ${m.message}`);
      stopMic();
      setState("ended");
      break;
    case "user_transcript":
      if (m.final) {
        vm.interim = "";
        if (m.text.trim()) { vm.finals.push(m.text); line("user", m.text); }
      } else {
        vm.interims++;
        vm.interim = m.text;
      }
      $("interim").textContent = vm.interim;
      break;
    case "agent_text":
      vm.replies[m.turn_id] = (vm.replies[m.turn_id] || "") + m.delta;
      line("agent", vm.replies[m.turn_id], m.turn_id);
      break;
    case "agent_state":
      vm.states.push(m.state);
      setState(m.state);
      break;
    case "turn_done":
      vm.turns.push(m);
      send({ type: "usage" }); // the ledger has the turn's usage by now, or soon
      if (m.interrupted) { flush(); line("agent", m.text, m.turn_id).classList.add("interrupted"); }
      break;
    case "metrics":
      vm.metrics.push(m);
      drawMetrics(m);
      break;
    case "usage":
      addUsage(m);
      break;
    case "key_usage":
      showKeyUsage(m);
      break;
    case "error":
      showError(`${m.code}: ${m.message}`);
      break;
    case "agent_audio":
    case "agent_video":
      pending = m;
      break;
  }
}

function line(who, text, turn) {
  const id = turn === undefined ? null : `${who}-${turn}`;
  let li = id && document.getElementById(id);
  if (!li) {
    li = document.createElement("li");
    li.className = who;
    if (id) li.id = id;
    $("transcript").append(li);
  }
  li.textContent = `${who === "user" ? "You" : "Agent"}: ${text}`;
  return li;
}

function onBinary(data) {
  const header = pending;
  pending = null;
  if (!header) return;
  if (header.type === "agent_audio") play(header, new Int16Array(data));
  else showFrame(header, data);
}

function play(header, pcm) {
  const buffer = ctx.createBuffer(1, pcm.length, header.sample_rate);
  const out = buffer.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 0x8000;
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(analyser);
  cursor = Math.max(cursor, ctx.currentTime + 0.05);
  source.start(cursor);
  timeline.push([samplesSeen, cursor, header.sample_rate]);
  if (timeline.length > 500) timeline.shift();
  samplesSeen += pcm.length;
  cursor += buffer.duration;
  sources.push(source);
  source.onended = () => { vm.played.ended++; sources = sources.filter((s) => s !== source); };
  vm.played.chunks++;
  vm.played.samples += pcm.length;
  $("playback").textContent = `played ${vm.played.chunks} chunks, ${(vm.played.samples / header.sample_rate).toFixed(1)} s`;
}

function flush() { // barge-in: what the agent had queued must not be heard
  for (const s of sources) { try { s.stop(); } catch (e) { /* not started yet */ } }
  vm.played.flushed += sources.length;
  sources = [];
  cursor = ctx ? ctx.currentTime : 0;
}

function watchLevel() {
  const samples = new Float32Array(analyser.fftSize);
  setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const v of samples) sum += v * v;
    vm.played.peak = Math.max(vm.played.peak, Math.sqrt(sum / samples.length));
    vm.audio = `${ctx.state} ${ctx.sampleRate} Hz at ${ctx.currentTime.toFixed(1)} s`;
  }, 50);
}

function showFrame(header, data) {
  const bytes = new Uint8Array(data);
  let hash = 0;
  for (let i = 0; i < bytes.length; i += 7) hash = (hash * 31 + bytes[i]) | 0;
  frameHashes.add(hash);
  vm.video = { frames: vm.video.frames + 1, distinct: frameHashes.size };
  // A frame stamped with an audio offset is shown when that sample plays; idle frames (-1) at once.
  let delay = 0;
  const entry = header.audio_offset >= 0 && [...timeline].reverse().find((t) => t[0] <= header.audio_offset);
  if (entry) delay = Math.max(0, (entry[1] + (header.audio_offset - entry[0]) / entry[2] - ctx.currentTime) * 1000);
  const url = URL.createObjectURL(new Blob([data], { type: "image/jpeg" }));
  setTimeout(() => {
    const img = $("avatar");
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = url;
    img.hidden = false;
  }, delay);
}

function drawMetrics(m) {
  const scale = Math.max(1500, ...vm.metrics.map((x) => x.voice_to_voice_ms));
  const turn = document.createElement("div");
  turn.className = "turn";
  turn.dataset.turn = m.turn_id;
  const title = document.createElement("div");
  title.textContent = `turn ${m.turn_id}`;
  turn.append(title);
  for (const [field, label] of BARS) {
    const bar = document.createElement("div");
    bar.className = "bar";
    const name = document.createElement("span");
    name.textContent = label;
    const fill = document.createElement("i");
    fill.style.width = `${Math.round((m[field] / scale) * 300)}px`;
    const value = document.createElement("span");
    value.textContent = m[field] ? `${Math.round(m[field])} ms` : "–";
    bar.append(name, fill, value);
    turn.append(bar);
  }
  const models = document.createElement("div");
  models.className = "models";
  models.textContent = [m.stt_model, m.llm_model, m.tts_model].filter(Boolean).join(" · ");
  turn.append(models);
  $("latency").prepend(turn);
}

function usageTable(id, first, entries) {
  const rows = [[first, "audio in s", "audio out s", "tokens in", "tokens out", "chars"]];
  for (const [name, x] of entries) {
    rows.push([name, (x.audio_seconds_in || 0).toFixed(1), (x.audio_seconds_out || 0).toFixed(1), x.input_tokens || 0,
               x.output_tokens || 0, x.characters || 0]);
  }
  $(id).replaceChildren(...rows.map((r, i) => {
    const tr = document.createElement("tr");
    for (const cell of r) { const td = document.createElement(i ? "td" : "th"); td.textContent = cell; tr.append(td); }
    return tr;
  }));
}

function addUsage(m) {
  const u = (vm.usage[m.service] = vm.usage[m.service] || { audio_seconds_in: 0, audio_seconds_out: 0, input_tokens: 0, output_tokens: 0, characters: 0 });
  for (const k of Object.keys(u)) u[k] += m.usage[k] || 0;
  usageTable("usage-table", "service", Object.entries(vm.usage));
}

function showKeyUsage(m) { // from the mesh's ledger: every session of this key, per model
  vm.keyUsage = m;
  $("key-usage-note").textContent = m.available ? `key ${m.name || m.key_id}` : m.message;
  if (m.available) usageTable("key-usage-table", "model", Object.entries(m.models));
}

document.addEventListener("DOMContentLoaded", () => {
  $("connect").onclick = () => connect().catch((e) => showError(e.message));
  $("disconnect").onclick = () => ws && ws.close(1000);
  $("interrupt").onclick = () => { flush(); send({ type: "interrupt" }); };
  $("apply").onclick = () => send({ type: "update_models", instructions: $("instructions").value });
  for (const m of ["stt", "llm", "tts"]) {
    $(`pick-${m}`).onchange = (e) => { if (vm.sessionId) { vm.updates++; send({ type: "update_models", [m]: e.target.value }); } };
  }
  $("text-form").onsubmit = (e) => {
    e.preventDefault();
    const text = $("text").value.trim();
    if (text) { send({ type: "text", text }); line("user", text); $("text").value = ""; }
  };
  enable(false);
});
