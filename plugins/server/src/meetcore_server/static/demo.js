/**
 * The demo page of `meetcore serve`: create a room, share its link, join it with camera
 * and microphone, see everyone's video and who is in, leave or end it. Everything goes
 * through the browser SDK, exactly as an application would use it.
 *
 * With `meetcore serve --dev` the token comes from `/get-token` (the seeds' token
 * server); otherwise the page asks for one (`uv run meetcore token`).
 */

import { MeetCore, MeetCoreError } from "/sdk/meetcore.js";

const $ = (id) => document.getElementById(id);

/** @type {import("/sdk/meetcore.js").Meeting | null} */
let meeting = null;
let token = "";
/** True once this page asked to end the meeting: its own 1008 is then no surprise. */
let endedHere = false;
/** True while the banner says this page waits to be let in. */
let waitingNote = false;

/** For scripts and tests: the page's meeting, and its event list. */
window.demo = {
  get meeting() {
    return meeting;
  },
  log,
};

// -- the token and the room ------------------------------------------------------

/** The seeds' getToken: the dev server's `/get-token`, or what the user pasted. */
async function getToken() {
  await tokenReady;
  if (token) return token;
  const pasted = $("token").value.trim();
  if (pasted) return pasted;
  throw new Error("Paste a token (uv run meetcore token) first.");
}

/** The dev server's token, if this server has `--dev`; else show the token field. */
async function discoverToken() {
  try {
    const response = await fetch("/get-token", { headers: { Accept: "application/json" } });
    if (response.ok) {
      token = (await response.json()).token;
      log("token from /get-token (development mode)");
      return;
    }
  } catch {
    // no dev token server: ask for one
  }
  $("token-field").hidden = false;
}

/** The seeds' getMeetingId: `POST /v2/rooms` with the token raw in Authorization. */
async function getMeetingId(token) {
  const response = await fetch("/v2/rooms", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: token },
  });
  const body = await response.json();
  if (!response.ok)
    throw new MeetCoreError(body.code ?? response.status, body.message ?? "cannot create a room");
  return body.roomId;
}

function joinLink(meetingId) {
  const url = new URL(location.href);
  url.search = "";
  url.hash = "";
  url.searchParams.set("meetingId", meetingId);
  return url.href;
}

// -- the banner: what happened to this page ----------------------------------------

/**
 * Show `text` in the banner. "error" and "warning" (what the user did not choose) go to
 * the alert region, read out at once; "info" and "success" to the status region.
 * @param {"error" | "warning" | "info" | "success"} kind
 * @param {string} text
 */
function announce(kind, text) {
  const alert = kind === "error" || kind === "warning";
  $("banner").dataset.kind = kind;
  $("banner-alert").textContent = alert ? text : "";
  $("banner-status").textContent = alert ? "" : text;
  $("banner-close").hidden = false;
  waitingNote = false;
}

function clearBanner() {
  delete $("banner").dataset.kind;
  $("banner-alert").textContent = "";
  $("banner-status").textContent = "";
  $("banner-close").hidden = true;
  waitingNote = false;
}

/** An error's code and message, or its message. */
function describe(error) {
  return error.code ? `Error ${error.code}: ${error.message}` : String(error.message ?? error);
}

/** Why this page is out of the meeting, in words (1101 and this page's own end aside). */
const LEFT_BECAUSE = {
  1001: ["error", "The connection was lost for too long"],
  1002: ["warning", "You were removed by a moderator"],
  1003: ["warning", "You were removed: your mode changed"],
  1006: ["warning", "The room was closed"],
  1008: ["warning", "The meeting was ended by a moderator"],
  1009: ["warning", "The meeting was ended via the REST API"],
  1010: ["warning", "You were removed via the REST API"],
  1011: ["warning", "Another tab or device joined as you"],
  1102: ["error", "Could not reconnect to the server"],
};

/** @param {{code: number, message: string}} reason */
function sayWhyOut(reason) {
  if (reason.code === 1101) return announce("info", "You left the meeting");
  if (reason.code === 1008 && endedHere) return announce("info", "You ended the meeting for everyone");
  const [kind, text] = LEFT_BECAUSE[reason.code] ?? [
    "warning",
    `You are out of the meeting: ${reason.message}`,
  ];
  announce(kind, `${text} (${reason.code})`);
}

// -- participants: a tile and a row in the list each ----------------------------------

/**
 * What the page shows of each participant, by id: the participant, its tile, its row,
 * whether its video renders, and the handlers it calls.
 * @type {Map<string, {participant: object, tile: HTMLElement, row: HTMLElement,
 *   rendering: boolean, handlers: object}>}
 */
const shown = new Map();

/** Words for the modes that are not the default. */
const MODE_WORDS = {
  RECV_ONLY: "receive only",
  SIGNALLING_ONLY: "signalling only",
  VIEWER: "signalling only",
};

/** Show a participant (again): a tile, a row; both follow its streams and media state. */
function show(participant) {
  const before = shown.get(participant.id);
  if (before?.participant === participant) return render(participant);
  if (before) forget(before.participant); // the same id, another connection
  const entry = { participant, tile: makeTile(participant), row: makeRow(), rendering: false };
  entry.handlers = {
    "stream-enabled": (stream) => showStream(participant, stream),
    "stream-disabled": (stream) => hideStream(participant, stream),
    "media-status-changed": () => render(participant),
  };
  for (const [event, handler] of Object.entries(entry.handlers)) participant.on(event, handler);
  shown.set(participant.id, entry);
  $("tiles").append(entry.tile);
  $("people-list").append(entry.row);
  $("people-count").textContent = String(shown.size);
  for (const stream of participant.streams.values()) showStream(participant, stream);
  render(participant);
}

function forget(participant) {
  const entry = shown.get(participant.id);
  if (entry?.participant !== participant) return;
  for (const [event, handler] of Object.entries(entry.handlers)) participant.off(event, handler);
  entry.tile.remove();
  entry.row.remove();
  shown.delete(participant.id);
  $("people-count").textContent = String(shown.size);
}

/** A tile: the video, a placeholder until it renders, the name with the mic state. */
function makeTile(participant) {
  const tile = document.createElement("div");
  tile.className = "tile";
  tile.dataset.participantId = participant.id;
  tile.dataset.local = String(participant.local);
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // sound goes through the <audio> element (none for oneself)
  // the placeholder goes when a frame is there to show, and comes back when it is not
  const rendered = (yes) => {
    const entry = shown.get(participant.id);
    if (entry?.participant !== participant) return;
    entry.rendering = yes;
    render(participant);
  };
  for (const event of ["loadeddata", "resize"])
    video.addEventListener(event, () => rendered(Boolean(video.srcObject) && video.videoWidth > 0));
  video.addEventListener("emptied", () => rendered(false));
  const placeholder = document.createElement("div");
  placeholder.className = "placeholder";
  const avatar = document.createElement("span");
  avatar.className = "avatar";
  avatar.setAttribute("aria-hidden", "true");
  avatar.textContent = initials(participant.displayName || participant.id);
  const caption = document.createElement("span");
  caption.className = "caption";
  placeholder.append(avatar, caption);
  const name = document.createElement("div");
  name.className = "name";
  tile.append(video, placeholder, name);
  return tile;
}

/** A row of the participant list: the name, the mode if not the default, mic, camera. */
function makeRow() {
  const row = document.createElement("li");
  for (const part of ["who", "mode", "mic", "camera"]) {
    const span = document.createElement("span");
    span.className = part;
    row.append(span);
  }
  return row;
}

/** Bring a participant's tile and row up to date with what the SDK says of it. */
function render(participant) {
  const entry = shown.get(participant.id);
  if (entry?.participant !== participant) return;
  const { tile, row } = entry;
  const name = participant.displayName || participant.id;
  const label = participant.local ? `${name} (you)` : name;
  const mic = participant.micOn ? "on" : "off";
  const camera = participant.webcamOn ? "on" : "off";

  const waiting = participant.webcamOn || participant.streamOf("video") !== undefined;
  tile.dataset.video = entry.rendering ? "on" : waiting ? "waiting" : "off";
  tile.querySelector(".caption").textContent = waiting ? "Waiting for video…" : "Camera off";
  const tag = tile.querySelector(".name");
  tag.textContent = label;
  tag.insertAdjacentHTML("beforeend", participant.micOn ? MIC_ON : MIC_OFF);

  row.dataset.participantId = participant.id;
  row.dataset.mic = mic;
  row.dataset.camera = camera;
  row.querySelector(".who").textContent = label;
  const mode = row.querySelector(".mode");
  mode.textContent = MODE_WORDS[participant.mode] ?? "";
  mode.hidden = !mode.textContent;
  row.querySelector(".mic").textContent = `Mic ${mic}`;
  row.querySelector(".camera").textContent = `Camera ${camera}`;
}

const MIC = '<path d="M8 1a2 2 0 0 0-2 2v5a2 2 0 0 0 4 0V3a2 2 0 0 0-2-2zM4 7v1a4 4 0 0 0 8 0V7M8 12v3"/>';
const MIC_ON = `<svg class="mic" role="img" viewBox="0 0 16 16" fill="none" stroke="currentColor" stroke-width="1.5" aria-label="microphone on">${MIC}</svg>`;
const MIC_OFF = `<svg class="mic" role="img" viewBox="0 0 16 16" fill="none" stroke="#ff6b6b" stroke-width="1.5" aria-label="microphone off">${MIC}<path d="M2 2l12 12"/></svg>`;

function showStream(participant, stream) {
  const entry = shown.get(participant.id);
  if (entry?.participant !== participant) return;
  if (stream.kind === "video") {
    const video = entry.tile.querySelector("video");
    entry.rendering = false; // until this stream's first frame
    video.srcObject = new MediaStream([stream.track]);
    video.play().catch(() => {});
    render(participant);
  } else if (stream.kind === "audio" && !participant.local) {
    let audio = entry.tile.querySelector("audio");
    if (!audio) {
      audio = document.createElement("audio");
      audio.autoplay = true;
      entry.tile.append(audio);
    }
    audio.srcObject = new MediaStream([stream.track]);
    audio.play().catch(() => {});
  }
}

function hideStream(participant, stream) {
  const entry = shown.get(participant.id);
  if (entry?.participant !== participant) return;
  if (stream.kind === "video") {
    entry.tile.querySelector("video").srcObject = null;
    entry.rendering = false;
    render(participant);
  } else {
    entry.tile.querySelector("audio")?.remove();
  }
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return (
    parts
      .slice(0, 2)
      .map((part) => part[0].toUpperCase())
      .join("") || "?"
  );
}

// -- the meeting -----------------------------------------------------------------

/** Entries the event list keeps; older ones go, and the numbering starts later. */
const LOG_LIMIT = 100;

/** Add an entry at the end of the event list (oldest first, numbered from 1). */
function log(text) {
  const list = $("log");
  const following = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  const item = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  item.append(time, ` ${text}`);
  list.append(item);
  while (list.children.length > LOG_LIMIT) {
    list.firstElementChild.remove();
    list.start += 1;
  }
  if (following) list.scrollTop = list.scrollHeight;
}

function setControls() {
  const local = meeting?.localParticipant;
  $("toggle-mic").textContent = local?.micOn ? "Mute" : "Unmute";
  $("toggle-webcam").textContent = local?.webcamOn ? "Stop camera" : "Start camera";
}

/** Out of the meeting (or never let in): back to the form. */
function showSetup() {
  for (const { participant } of [...shown.values()]) forget(participant);
  $("room").hidden = true;
  $("people").hidden = true;
  $("setup").hidden = false;
  $("join").disabled = false;
}

async function startMeeting(event) {
  event.preventDefault();
  $("join").disabled = true;
  clearBanner();
  meeting = null;
  endedHere = false;
  try {
    const meetingId = $("meeting-id").value.trim() || (await getMeetingId(await getToken()));
    $("meeting-id").value = meetingId;
    MeetCore.config(await getToken());
    meeting = MeetCore.initMeeting({
      meetingId,
      name: $("name").value.trim(),
      micEnabled: $("mic").checked,
      webcamEnabled: $("webcam").checked,
      multistream: true,
    });
    listen(meeting);
    await meeting.join();
    if (meeting.waiting) {
      announce("info", "Waiting for a moderator to let you in…");
      waitingNote = true;
    }
  } catch (error) {
    log(`could not join: ${describe(error)}`);
    if (!meeting) announce("error", `Could not join. ${describe(error)}`); // else the error event said it
    $("join").disabled = false;
  }
}

/** @param {import("/sdk/meetcore.js").Meeting} meeting */
function listen(meeting) {
  meeting.on("meeting-state-changed", ({ state }) => {
    const before = $("state").dataset.state;
    $("state").textContent = state;
    $("state").dataset.state = state;
    if (state === "RECONNECTING") announce("warning", "Connection lost: reconnecting…");
    else if (state === "CONNECTED" && before === "RECONNECTING") announce("success", "Reconnected");
  });
  meeting.on("meeting-joined", () => {
    log(`meeting-joined ${meeting.id} as ${meeting.participantId}`);
    if (waitingNote) clearBanner();
    $("setup").hidden = true;
    $("room").hidden = false;
    $("people").hidden = false;
    $("room-id").textContent = meeting.id;
    history.replaceState(null, "", joinLink(meeting.id));
    show(meeting.localParticipant);
    for (const participant of meeting.participants.values()) show(participant);
    setControls();
  });
  meeting.on("participant-joined", (participant) => {
    log(`participant-joined ${participant.displayName} (${participant.id})`);
    show(participant);
  });
  meeting.on("participant-left", (participant, reason) => {
    log(`participant-left ${participant.displayName} (${participant.id}): ${reason.code} ${reason.message}`);
    forget(participant);
  });
  meeting.on("participant-mode-changed", ({ participantId, mode }) => {
    log(`participant-mode-changed ${participantId}: ${mode}`);
    const entry = shown.get(participantId);
    if (entry) render(entry.participant);
  });
  meeting.on("meeting-left", (reason) => {
    log(`meeting-left: ${reason.code} ${reason.message}`);
    sayWhyOut(reason);
    showSetup();
  });
  meeting.on("entry-requested", (request) => {
    log(`entry-requested ${request.name} (${request.participantId})`);
    if (confirm(`${request.name || request.participantId} asks to join. Let them in?`)) request.allow();
    else request.deny();
  });
  meeting.on("entry-responded", (participantId, decision) => {
    log(`entry-responded ${participantId}: ${decision}`);
    if (participantId === meeting.participantId && decision === "denied" && !meeting.joined) {
      announce("warning", "A moderator did not let you in");
      showSetup();
    }
  });
  meeting.on("error", ({ code, message }) => {
    log(`error ${code}: ${message}`);
    const failed = meeting.state === "FAILED"; // the join itself was refused
    announce("error", `${failed ? "Could not join. " : ""}Error ${code}: ${message}`);
  });
  meeting.localParticipant.on("media-status-changed", setControls);
}

// -- wiring ----------------------------------------------------------------------

$("setup").addEventListener("submit", startMeeting);
$("banner-close").addEventListener("click", clearBanner);

$("create").addEventListener("click", async () => {
  try {
    const meetingId = await getMeetingId(await getToken());
    $("meeting-id").value = meetingId;
    history.replaceState(null, "", joinLink(meetingId));
    log(`room ${meetingId} created`);
  } catch (error) {
    log(`could not create a room: ${describe(error)}`);
    announce("error", `Could not create a room. ${describe(error)}`);
  }
});

$("copy").addEventListener("click", async () => {
  const link = joinLink(meeting.id);
  try {
    await navigator.clipboard.writeText(link);
    $("copy").textContent = "Link copied";
  } catch {
    prompt("The join link:", link);
  }
  setTimeout(() => ($("copy").textContent = "Copy join link"), 2000);
});

// a refusal is an `error` event (the banner); the buttons show the state either way
$("toggle-mic").addEventListener("click", () => {
  (meeting.localParticipant.micOn ? meeting.muteMic() : meeting.unmuteMic()).then(setControls, setControls);
});

$("toggle-webcam").addEventListener("click", () => {
  const local = meeting.localParticipant;
  (local.webcamOn ? meeting.disableWebcam() : meeting.enableWebcam()).then(setControls, setControls);
});

$("leave").addEventListener("click", () => meeting.leave());
$("end").addEventListener("click", () => {
  endedHere = true;
  meeting.end().catch(() => (endedHere = false));
});

const params = new URLSearchParams(location.search);
$("meeting-id").value = params.get("meetingId") ?? "";
$("name").value = params.get("name") ?? "";
const tokenReady = discoverToken();
