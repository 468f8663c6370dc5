/**
 * The demo page of `meetcore serve`: create a room, share its link, join it with camera
 * and microphone, see everyone's video, leave or end it. Everything goes through the
 * browser SDK, exactly as an application would use it.
 *
 * With `meetcore serve --dev` the token comes from `/get-token` (the seeds' token
 * server); otherwise the page asks for one (`uv run meetcore token`).
 */

import { MeetCore } from "/sdk/meetcore.js";

const $ = (id) => document.getElementById(id);

/** @type {import("/sdk/meetcore.js").Meeting | null} */
let meeting = null;
let token = "";

/** For scripts and tests: the page's meeting. */
window.demo = {
  get meeting() {
    return meeting;
  },
};

// -- the token and the room ------------------------------------------------------

/** The seeds' getToken: the dev server's `/get-token`, or what the user pasted. */
async function getToken() {
  await tokenReady;
  if (token) return token;
  const pasted = $("token").value.trim();
  if (pasted) return pasted;
  throw new Error("paste a token (uv run meetcore token) first");
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
    throw new Error(`${body.code ?? response.status}: ${body.message ?? "cannot create a room"}`);
  return body.roomId;
}

function joinLink(meetingId) {
  const url = new URL(location.href);
  url.search = "";
  url.hash = "";
  url.searchParams.set("meetingId", meetingId);
  return url.href;
}

// -- tiles -----------------------------------------------------------------------

function tileOf(participant) {
  return document.querySelector(`.tile[data-participant-id="${CSS.escape(participant.id)}"]`);
}

/** A participant's tile: video, name, mic state. */
function addTile(participant) {
  let tile = tileOf(participant);
  if (tile) {
    updateName(participant);
    return tile;
  }
  tile = document.createElement("div");
  tile.className = "tile";
  tile.dataset.participantId = participant.id;
  tile.dataset.local = String(participant.local);
  tile.dataset.video = "off";
  const video = document.createElement("video");
  video.autoplay = true;
  video.playsInline = true;
  video.muted = true; // sound goes through the <audio> element (none for oneself)
  const avatar = document.createElement("div");
  avatar.className = "avatar";
  avatar.textContent = initials(participant.displayName || participant.id);
  const name = document.createElement("div");
  name.className = "name";
  tile.append(video, avatar, name);
  $("tiles").append(tile);
  updateName(participant);
  for (const stream of participant.streams.values()) showStream(participant, stream);
  participant.on("stream-enabled", (stream) => showStream(participant, stream));
  participant.on("stream-disabled", (stream) => hideStream(participant, stream));
  participant.on("media-status-changed", () => updateName(participant));
  return tile;
}

function updateName(participant) {
  const tile = tileOf(participant);
  if (!tile) return;
  const name = tile.querySelector(".name");
  name.textContent = participant.displayName || participant.id;
  if (participant.local) name.textContent += " (you)";
  name.insertAdjacentHTML("beforeend", participant.micOn ? MIC_ON : MIC_OFF);
}

const MIC = '<path d="M8 1a2 2 0 0 0-2 2v5a2 2 0 0 0 4 0V3a2 2 0 0 0-2-2zM4 7v1a4 4 0 0 0 8 0V7M8 12v3"/>';
const MIC_ON = `<svg class="mic" viewBox="0 0 16 16" fill="none" stroke="currentColor" stroke-width="1.5" aria-label="microphone on">${MIC}</svg>`;
const MIC_OFF = `<svg class="mic" viewBox="0 0 16 16" fill="none" stroke="#ff6b6b" stroke-width="1.5" aria-label="microphone off">${MIC}<path d="M2 2l12 12"/></svg>`;

function showStream(participant, stream) {
  const tile = addTile(participant);
  if (stream.kind === "video") {
    const video = tile.querySelector("video");
    video.srcObject = new MediaStream([stream.track]);
    video.play().catch(() => {});
    tile.dataset.video = "on";
  } else if (stream.kind === "audio" && !participant.local) {
    let audio = tile.querySelector("audio");
    if (!audio) {
      audio = document.createElement("audio");
      audio.autoplay = true;
      tile.append(audio);
    }
    audio.srcObject = new MediaStream([stream.track]);
    audio.play().catch(() => {});
  }
}

function hideStream(participant, stream) {
  const tile = tileOf(participant);
  if (!tile) return;
  if (stream.kind === "video") {
    tile.querySelector("video").srcObject = null;
    tile.dataset.video = "off";
  } else {
    tile.querySelector("audio")?.remove();
  }
}

function removeTile(participant) {
  tileOf(participant)?.remove();
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

function log(text) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  $("log").prepend(item);
  while ($("log").children.length > 100) $("log").lastChild.remove();
}

function setControls() {
  const local = meeting?.localParticipant;
  $("toggle-mic").textContent = local?.micOn ? "Mute" : "Unmute";
  $("toggle-webcam").textContent = local?.webcamOn ? "Stop camera" : "Start camera";
}

async function startMeeting(event) {
  event.preventDefault();
  $("join").disabled = true;
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
    addTile(meeting.localParticipant);
    await meeting.join();
  } catch (error) {
    log(`could not join: ${error.code ?? ""} ${error.message}`);
    $("tiles").replaceChildren();
    $("join").disabled = false;
  }
}

/** @param {import("/sdk/meetcore.js").Meeting} meeting */
function listen(meeting) {
  meeting.on("meeting-state-changed", ({ state }) => {
    $("state").textContent = state;
    $("state").dataset.state = state;
  });
  meeting.on("meeting-joined", () => {
    log(`meeting-joined ${meeting.id} as ${meeting.participantId}`);
    $("setup").hidden = true;
    $("room").hidden = false;
    $("room-id").textContent = meeting.id;
    history.replaceState(null, "", joinLink(meeting.id));
    addTile(meeting.localParticipant);
    for (const participant of meeting.participants.values()) addTile(participant);
    setControls();
  });
  meeting.on("participant-joined", (participant) => {
    log(`participant-joined ${participant.displayName} (${participant.id})`);
    addTile(participant);
  });
  meeting.on("participant-left", (participant, reason) => {
    log(`participant-left ${participant.displayName} (${participant.id}): ${reason.code} ${reason.message}`);
    removeTile(participant);
  });
  meeting.on("meeting-left", (reason) => {
    log(`meeting-left: ${reason.code} ${reason.message}`);
    $("tiles").replaceChildren();
    $("room").hidden = true;
    $("setup").hidden = false;
    $("join").disabled = false;
  });
  meeting.on("entry-requested", (request) => {
    log(`entry-requested ${request.name} (${request.participantId})`);
    if (confirm(`${request.name || request.participantId} asks to join. Let them in?`)) request.allow();
    else request.deny();
  });
  meeting.on("entry-responded", (participantId, decision) =>
    log(`entry-responded ${participantId}: ${decision}`),
  );
  meeting.on("error", ({ code, message }) => log(`error ${code}: ${message}`));
  meeting.localParticipant.on("media-status-changed", setControls);
}

// -- wiring ----------------------------------------------------------------------

$("setup").addEventListener("submit", startMeeting);

$("create").addEventListener("click", async () => {
  try {
    const meetingId = await getMeetingId(await getToken());
    $("meeting-id").value = meetingId;
    history.replaceState(null, "", joinLink(meetingId));
    log(`room ${meetingId} created`);
  } catch (error) {
    log(`could not create a room: ${error.message}`);
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

$("toggle-mic").addEventListener("click", () => {
  (meeting.localParticipant.micOn ? meeting.muteMic() : meeting.unmuteMic()).finally(setControls);
});

$("toggle-webcam").addEventListener("click", () => {
  (meeting.localParticipant.webcamOn ? meeting.disableWebcam() : meeting.enableWebcam()).finally(setControls);
});

$("leave").addEventListener("click", () => meeting.leave());
$("end").addEventListener("click", () => meeting.end());

const params = new URLSearchParams(location.search);
$("meeting-id").value = params.get("meetingId") ?? "";
$("name").value = params.get("name") ?? "";
const tokenReady = discoverToken();
