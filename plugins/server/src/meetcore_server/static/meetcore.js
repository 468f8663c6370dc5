/**
 * meetcore's browser SDK: VideoSDK's JavaScript API on a meetcore server.
 *
 * An ES module with no dependency and no build step, served by `meetcore serve` at
 * `/sdk/meetcore.js`:
 *
 *     import { MeetCore } from "/sdk/meetcore.js";
 *
 *     MeetCore.config(token);
 *     const meeting = MeetCore.initMeeting({ meetingId, name: "Franz Kafka" });
 *     meeting.on("meeting-joined", () => console.log("in"));
 *     meeting.on("participant-joined", (participant) => console.log(participant.displayName));
 *     meeting.join();
 *     ...
 *     meeting.leave();
 *
 * It speaks the WebSocket protocol of `docs/protocol.md` (join or resume, a welcome,
 * the meeting's events each with its `seq`, requests answered `ok` or `error`, `ping`
 * within the lease) and has the events, reason codes and reconnection of the Python
 * client (`meetcore_client`). Media goes through the browser's own
 * RTCPeerConnection. `docs/browser.md` maps VideoSDK's guides onto it line by line.
 *
 * @module meetcore
 */

// ---------------------------------------------------------------------------------
// The wire protocol (docs/protocol.md)
//
// Every message type, event type and code of the protocol this SDK uses is named once,
// between the two WIRE CONSTANTS lines, one `NAME: value,` a line:
// tests/webrtc/test_wire_coverage.py reads them and checks them against
// meetcore_protocol (the message types), meetcore's events, ErrorCode and LeaveReason.
// The code below uses the names, never the strings.
// BEGIN WIRE CONSTANTS

/** Message types the SDK sends (`meetcore_protocol.ClientMessage`). */
const ClientType = Object.freeze({
  JOIN: "join",
  RESUME: "resume",
  LEAVE: "leave",
  END: "end",
  REMOVE_PARTICIPANT: "remove-participant",
  SET_MEDIA: "set-media",
  CHANGE_MODE: "change-mode",
  RESPOND_ENTRY: "respond-entry",
  PING: "ping",
  OFFER: "offer",
  ANSWER: "answer",
});

/** Message types the server sends (`meetcore_protocol.ServerMessage`), all handled. */
const ServerType = Object.freeze({
  WELCOME: "welcome",
  EVENTS: "events",
  OK: "ok",
  ERROR: "error",
  PONG: "pong",
  ANSWER: "answer",
  OFFER: "offer",
  REDIRECT: "redirect",
});

/**
 * Event types of the meeting's log (in `events` frames) the SDK applies. The others
 * change nothing a participant sees (tests/webrtc/test_wire_coverage.py says why).
 */
const EventType = Object.freeze({
  PARTICIPANT_JOINED: "participant-joined",
  PARTICIPANT_LEFT: "participant-left",
  ENTRY_WITHDRAWN: "entry-withdrawn",
  MEDIA_CHANGED: "media-changed",
  MODE_CHANGED: "mode-changed",
  ENTRY_REQUESTED: "entry-requested",
  ENTRY_RESPONDED: "entry-responded",
  SESSION_STARTED: "session-started",
  SESSION_ENDED: "session-ended",
});

/** Why a participant left (VideoSDK's numbers); 1101 and up come from the SDK itself. */
export const LeaveReason = Object.freeze({
  WEBSOCKET_DISCONNECTED: 1001,
  REMOVE_PEER: 1002,
  REMOVE_PEER_VIEWER_MODE_CHANGED: 1003,
  REMOVE_PEER_MEDIA_RELAY_STOP: 1004,
  SWITCH_ROOM: 1005,
  ROOM_CLOSE: 1006,
  UNKNOWN: 1007,
  REMOVE_ALL: 1008,
  MEETING_END_API: 1009,
  REMOVE_PEER_API: 1010,
  DUPLICATE_PARTICIPANT: 1011,
  MANUAL_LEAVE_CALLED: 1101,
  WEBSOCKET_CONNECTION_ATTEMPTS_EXHAUSTED: 1102,
  JOIN_ROOM_FAILED: 1103,
  SWITCH_ROOM_FAILED: 1104,
});

/** Error codes (VideoSDK's numbers): 4xxx from the server, 3xxx from the SDK or server. */
export const ErrorCode = Object.freeze({
  INVALID_API_KEY: 4001,
  INVALID_TOKEN: 4002,
  INVALID_MEETING_ID: 4003,
  INVALID_PARTICIPANT_ID: 4004,
  DUPLICATE_PARTICIPANT: 4005,
  ACCOUNT_DEACTIVATED: 4006,
  INVALID_PERMISSIONS: 4008,
  MAX_PARTICIPANT_REACHED: 4009,
  MAX_SPEAKER_REACHED: 4010,
  UNAUTHORIZED_MEETING_ID: 4022,
  UNAUTHORIZED_PARTICIPANT_ID: 4023,
  UNAUTHORIZED_ROLE: 4024,
  UNAUTHORIZED_REQUEST: 4025,
  MEETING_ID_DISABLED: 4052,
  APIKEY_DEACTIVATED: 4053,
  RESPOND_ENTRY_FAILED: 4059,
  CHANGE_MODE_FAILED: 4065,
  REMOVE_PARTICIPANT_FAILED: 4066,
  SOMETHING_WENT_WRONG: 5000,
  ACTION_BEFORE_JOINED: 3035,
  UNABLE_TO_JOIN: 3047,
  ALREADY_IN_REQUESTED_STATE: 3054,
  OPERATION_IN_PROGRESS: 3055,
  MEETING_RECONNECTING: 3065,
  NOT_SUPPORTED_IN_MODE: 3066,
  INVALID_PARAMETER: 3073,
  OPERATION_TIMED_OUT: 3079,
  ERROR_CAMERA_ACCESS_DENIED_OR_DISMISSED: 3017,
  ERROR_MICROPHONE_ACCESS_DENIED_OR_DISMISSED: 3018,
});

const REASON_MESSAGES = {
  1001: "the connection was lost",
  1002: "removed by a moderator",
  1003: "removed: the mode changed",
  1004: "the media relay stopped",
  1005: "switched room",
  1006: "the room was closed",
  1007: "unknown",
  1008: "the meeting was ended",
  1009: "the meeting was ended through the API",
  1010: "removed through the API",
  1011: "this participantId joined from another device",
  1101: "left",
  1102: "could not reconnect",
  1103: "joining failed",
  1104: "switching room failed",
};
// END WIRE CONSTANTS

/**
 * Why someone left: VideoSDK's `{code, message}`.
 * @typedef {{code: number, message: string}} Reason
 */

/**
 * @param {number} code
 * @returns {Reason}
 */
export function reasonOf(code) {
  return { code, message: REASON_MESSAGES[code] ?? "unknown" };
}

/** A refusal, from the server or the SDK, with VideoSDK's `code`. */
export class MeetCoreError extends Error {
  /**
   * @param {number} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = "MeetCoreError";
    /** @type {number} */
    this.code = code;
  }
}

/** Modes a participant may join in; the old names map onto the new ones. */
const MODES = ["SEND_AND_RECV", "SIGNALLING_ONLY", "RECV_ONLY", "CONFERENCE", "VIEWER"];
const SENDING_MODES = ["SEND_AND_RECV", "CONFERENCE"];

/** Milliseconds a request waits for its answer before failing with 3079. */
export const REQUEST_TIMEOUT = 15_000;
/** Redirects (a cluster's node sending the client to its meeting's media node) a join or resume follows. */
const MAX_REDIRECTS = 3;
/**
 * Milliseconds a join keeps asking the node it came in by again when the node it was
 * sent to cannot be reached (it died: its meetings are sent there until its announcement
 * lapses, a third of the lease; then they are placed on a live node).
 */
const DEAD_NODE_RETRY = 15_000;

/** Milliseconds between reconnection attempts, as the Python client; then 1102. */
export const RECONNECT_DELAYS = Object.freeze([100, 250, 500, 1000, 1000, 2000, 2000, 2000, 2000, 2000]);

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** 8 characters of a-z0-9, as VideoSDK generates participant ids. */
function newParticipantId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => ALPHABET[b % ALPHABET.length]).join("");
}

/**
 * Keep a promise's rejection for whoever awaits it, without an "unhandled rejection"
 * report when nobody does (the seeds call `meeting.join()` and `meeting.leave()`
 * without `await`; failures also arrive as `error` events).
 * @template T
 * @param {Promise<T>} promise
 * @returns {Promise<T>}
 */
function quiet(promise) {
  promise.catch(() => {});
  return promise;
}

// ---------------------------------------------------------------------------------
// Events

/** `on(event, handler)`, `off(event, handler)`, and emitting to the handlers. */
class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
  }

  /**
   * Call `handler` each time `event` is emitted.
   * @param {string} event
   * @param {Function} handler
   */
  on(event, handler) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
  }

  /**
   * Stop calling `handler` for `event`.
   * @param {string} event
   * @param {Function} handler
   */
  off(event, handler) {
    this._handlers.get(event)?.delete(handler);
  }

  /**
   * Call `handler` once, the next time `event` is emitted.
   * @param {string} event
   * @param {Function} handler
   */
  once(event, handler) {
    const wrapper = (...args) => {
      this.off(event, wrapper);
      handler(...args);
    };
    this.on(event, wrapper);
  }

  /**
   * @param {string} event
   * @param {...any} args
   */
  emit(event, ...args) {
    for (const handler of [...(this._handlers.get(event) ?? [])]) {
      try {
        handler(...args);
      } catch (error) {
        console.error(`[meetcore] a "${event}" handler failed`, error);
      }
    }
  }
}

// ---------------------------------------------------------------------------------
// Participants and streams

/**
 * One media track of a participant: VideoSDK's Stream.
 * `kind` is "audio" or "video"; `track` the MediaStreamTrack to play.
 */
export class Stream {
  /**
   * @param {"audio" | "video" | "share" | "shareAudio"} kind
   * @param {MediaStreamTrack} track
   * @param {string} participantId whose stream it is
   */
  constructor(kind, track, participantId) {
    /** `participantId:kind`, as the server names the track. @type {string} */
    this.id = `${participantId}:${kind}`;
    this.kind = kind;
    this.track = track;
    this.participantId = participantId;
    /** True once the stream has ended (after `stream-disabled`). */
    this.ended = false;
    /**
     * For a remote stream, the RTCRtpReceiver it comes through and the media section
     * (`mid`) that carries it: its `inbound-rtp` report in `meeting.peerConnection.getStats()`
     * has this `mid`. @type {RTCRtpReceiver | null}
     */
    this.receiver = null;
    /** @type {string | null} */
    this.mid = null;
  }
}

/**
 * A participant as the SDK sees it (`local` true for the one this page joined as).
 *
 * Events on `participant.on(...)`: `stream-enabled` (stream), `stream-disabled`
 * (stream), `media-status-changed` ({kind, newStatus}).
 */
export class Participant extends Emitter {
  /**
   * @param {object} state a participant of the welcome, or a participant-joined event
   * @param {boolean} local
   * @param {Meeting} meeting
   */
  constructor(state, local, meeting) {
    super();
    /** @type {string} */
    this.id = state.participantId;
    /** @type {string} */
    this.connectionId = state.connectionId;
    /** @type {string} */
    this.displayName = state.name ?? "";
    /** @type {object} */
    this.metaData = state.metaData ?? {};
    /** @type {boolean} */
    this.micOn = Boolean(state.micEnabled);
    /** @type {boolean} */
    this.webcamOn = Boolean(state.webcamEnabled);
    /** @type {string} */
    this.mode = state.mode ?? "SEND_AND_RECV";
    /** @type {string[]} */
    this.permissions = state.permissions ?? [];
    /** @type {boolean} */
    this.local = local;
    /** The participant's media, by stream id. @type {Map<string, Stream>} */
    this.streams = new Map();
    this._meeting = meeting;
  }

  /** Remove this participant from the meeting (needs `allow_mod`): it leaves with 1002. */
  remove() {
    return quiet(this._meeting._request({ type: ClientType.REMOVE_PARTICIPANT, participantId: this.id }));
  }

  /** Switch this participant's microphone off (a moderator's request). */
  disableMic() {
    return quiet(
      this._meeting._request({ type: ClientType.SET_MEDIA, kind: "mic", enabled: false, participantId: this.id }),
    );
  }

  /** Switch this participant's webcam off (a moderator's request). */
  disableWebcam() {
    return quiet(
      this._meeting._request({ type: ClientType.SET_MEDIA, kind: "webcam", enabled: false, participantId: this.id }),
    );
  }

  /**
   * @param {Stream} stream
   * @internal
   */
  _addStream(stream) {
    if (this.streams.get(stream.id) === stream) return;
    for (const old of [...this.streams.values()]) {
      if (old.kind === stream.kind || old.id === stream.id) this._removeStream(old);
    }
    this.streams.set(stream.id, stream);
    this.emit("stream-enabled", stream);
  }

  /**
   * @param {Stream} stream
   * @internal
   */
  _removeStream(stream) {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    this.emit("stream-disabled", stream);
  }

  /**
   * The stream of a kind, if any.
   * @param {string} kind
   * @returns {Stream | undefined}
   */
  streamOf(kind) {
    for (const stream of this.streams.values()) if (stream.kind === kind) return stream;
    return undefined;
  }
}

// ---------------------------------------------------------------------------------
// The meeting

/**
 * @typedef {object} MeetingOptions
 * @property {string} meetingId the room id (required)
 * @property {string} [name] the participant's name
 * @property {string} [participantId] generated when absent or null (8 of a-z0-9); "" is refused (4004)
 * @property {boolean} [micEnabled] start with the microphone on (default false)
 * @property {boolean} [webcamEnabled] start with the camera on (default false)
 * @property {object} [metaData] a plain object the others see
 * @property {string} [mode] SEND_AND_RECV (default), SIGNALLING_ONLY, RECV_ONLY
 * @property {boolean} [multiStream] default true (`multistream` is accepted too)
 * @property {boolean} [debugMode] default true: log errors and state changes to the console
 * @property {MediaStreamTrack} [customCameraVideoTrack] a video track to send instead of the camera's
 * @property {MediaStreamTrack} [customMicrophoneAudioTrack] an audio track to send instead of the microphone's
 * @property {RTCIceServer[]} [iceServers] STUN/TURN servers for the media connection (default none: host candidates)
 * @property {string} [baseUrl] the meetcore server (default: where this module was loaded from)
 * @property {readonly number[]} [reconnectDelays] milliseconds between reconnection attempts
 */

/**
 * One participant's view of a meeting; made by `MeetCore.initMeeting`.
 *
 * Events (`meeting.on(name, handler)`): `meeting-joined` (), `meeting-left` (reason),
 * `participant-joined` (participant), `participant-left` (participant, reason),
 * `meeting-state-changed` ({state}), `error` ({code, message}), `entry-requested`
 * ({participantId, name, allow(), deny()}), `entry-responded` (participantId,
 * decision), `participant-mode-changed` ({participantId, mode}).
 */
export class Meeting extends Emitter {
  /**
   * @param {string} token
   * @param {MeetingOptions} options
   */
  constructor(token, options) {
    super();
    /** The meeting (room) id. @type {string} */
    this.id = options.meetingId;
    this.token = token;
    this.baseUrl = (options.baseUrl ?? defaultBaseUrl()).replace(/\/+$/, "");
    const ws = new URL(this.baseUrl + "/ws");
    ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
    /**
     * The signaling WebSocket's URL: `baseUrl`'s, or the node a cluster sent the client to
     * (its meeting's media node). @type {string}
     */
    this.url = ws.href;
    this._entryUrl = ws.href;
    /** Where a `redirect` said to resume. @type {string | null} */
    this._movedTo = null;
    const multistream = options.multistream ?? options.multiStream ?? true;
    /** @type {string} */
    this.participantId = options.participantId ?? newParticipantId();
    this.options = options;
    this.debugMode = options.debugMode ?? true;
    this._hello = {
      type: ClientType.JOIN,
      token,
      meetingId: this.id,
      name: options.name ?? "",
      participantId: this.participantId,
      micEnabled: Boolean(options.micEnabled),
      webcamEnabled: Boolean(options.webcamEnabled),
      metaData: options.metaData ?? {},
      mode: options.mode ?? "SEND_AND_RECV",
      multistream: Boolean(multistream),
      debugMode: this.debugMode,
    };
    this.reconnectDelays = options.reconnectDelays ?? RECONNECT_DELAYS;
    /** The other participants, by id (VideoSDK's `meeting.participants`). @type {Map<string, Participant>} */
    this.participants = new Map();
    /**
     * The participant this page joins as: there from the start, as in VideoSDK, so that
     * its `stream-enabled` can be listened to before `join()`. @type {Participant}
     */
    this.localParticipant = new Participant(
      { ...this._hello, micEnabled: false, webcamEnabled: false, permissions: [] },
      true,
      this,
    );
    /** The open session's id. @type {string | null} */
    this.sessionId = null;
    /** CONNECTING, CONNECTED, RECONNECTING, FAILED or DISCONNECTED. @type {string} */
    this.state = "DISCONNECTED";
    /** True from `meeting-joined` to `meeting-left`. */
    this.joined = false;
    /** True while waiting in the waiting room (`ask_join`). */
    this.waiting = false;
    /** The last event sequence number handled. */
    this.seq = 0;
    this._phase = "new"; // new | joining | in | out
    /** @type {WebSocket | null} */
    this._socket = null;
    this._connectionId = "";
    this._resumeToken = "";
    this._leaseTtl = 15_000;
    this._lastHeard = 0;
    this._heartbeat = 0;
    this._requestIds = 0;
    /** @type {Map<number, {resolve: Function, reject: Function, timer: number}>} */
    this._pending = new Map();
    /** @type {Set<Function>} called when the state becomes CONNECTED or the meeting is out */
    this._stateWaiters = new Set();
    this._onPageHide = () => this._leaveOnUnload();
    this.media = new MediaSession(this);
  }

  // -- joining ---------------------------------------------------------------------

  /**
   * Join the meeting: `meeting-joined` fires once in (at once, or once let in from the
   * waiting room). The promise settles then (or once waiting); on a refusal it rejects
   * with a `MeetCoreError` and `error` is emitted. Calling it without `await`, as the
   * seeds do, is fine.
   * @returns {Promise<void>}
   */
  join() {
    return quiet(this._join());
  }

  async _join() {
    if (this._phase === "joining") {
      throw this._error(ErrorCode.OPERATION_IN_PROGRESS, "join is already in progress");
    }
    if (this._phase === "in") throw this._error(ErrorCode.ALREADY_IN_REQUESTED_STATE, "already joined");
    this._phase = "joining";
    this.joined = false;
    this.waiting = false;
    this.seq = 0;
    this.participants = new Map();
    this._setState("CONNECTING");
    let socket;
    let welcome;
    try {
      await this.media.prepare();
      [socket, welcome] = await this._open(this._hello, this.url);
    } catch (error) {
      socket?.close();
      this._phase = "new";
      this._setState("FAILED");
      const code = error instanceof MeetCoreError ? error.code : ErrorCode.UNABLE_TO_JOIN;
      this.media.close();
      throw this._error(code, error.message ?? String(error));
    }
    this._phase = "in";
    this._leaseTtl = welcome.leaseTtl; // the heartbeat's pace: set before it starts
    this._attach(socket);
    this._welcome(welcome);
    this._setState("CONNECTED");
    addEventListener("pagehide", this._onPageHide);
    if (!this.waiting) this._admitted();
  }

  /**
   * Connect to `url` and send the join or resume, following a cluster's redirects (to
   * the meeting's media node, at most MAX_REDIRECTS); `this.url` is where it is then.
   * A node it is sent to that cannot be reached (dead) makes it ask `url` again, for
   * up to DEAD_NODE_RETRY.
   * @param {object} hello
   * @param {string} url
   * @returns {Promise<[WebSocket, object]>} the socket and its welcome
   */
  async _open(hello, url) {
    const entry = url;
    let redirects = 0;
    let tries = 0;
    let deadline = Infinity; // from the first redirect: how long a dead node may cost
    while (redirects <= MAX_REDIRECTS) {
      let socket;
      try {
        socket = await openSocket(url);
      } catch (error) {
        if (url === entry || Date.now() >= deadline) throw error;
        // the node it was sent to is gone: ask the entry node again, which places the
        // meeting on a live node once the dead one's announcement lapses
        const delay = RECONNECT_DELAYS[Math.min(tries++, RECONNECT_DELAYS.length - 1)];
        await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
        url = entry;
        redirects = 0;
        continue;
      }
      try {
        const welcome = await this._greet(socket, hello);
        this.url = url;
        return [socket, welcome];
      } catch (error) {
        socket.close();
        if (!(error instanceof Redirected)) throw error;
        if (url.startsWith("wss:") && !error.url.startsWith("wss:")) {
          const why = `refused a redirect from TLS to plain text: ${error.url.slice(0, 200)}`;
          throw new MeetCoreError(ErrorCode.UNABLE_TO_JOIN, why);
        }
        url = error.url;
        redirects++;
        deadline = Math.min(deadline, Date.now() + DEAD_NODE_RETRY);
      }
    }
    const why = `more than ${MAX_REDIRECTS} redirects from one node to another, the last to ${url}`;
    throw new MeetCoreError(ErrorCode.UNABLE_TO_JOIN, why);
  }

  /**
   * Send the join or resume and wait for the welcome (or the refusal).
   * @param {WebSocket} socket
   * @param {object} hello
   * @returns {Promise<object>} the welcome
   */
  _greet(socket, hello) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => fail(new MeetCoreError(ErrorCode.UNABLE_TO_JOIN, "no welcome from the server")),
        REQUEST_TIMEOUT,
      );
      const done = () => {
        clearTimeout(timer);
        socket.onmessage = socket.onclose = null;
      };
      const fail = (error) => {
        done();
        reject(error);
      };
      socket.onmessage = (message) => {
        let data;
        try {
          data = JSON.parse(message.data);
        } catch {
          return;
        }
        if (data.type === ServerType.WELCOME) {
          done();
          resolve(data);
        } else if (data.type === ServerType.ERROR) {
          fail(new MeetCoreError(data.code, data.message));
        } else if (data.type === ServerType.REDIRECT) {
          fail(redirectOf(data.baseUrl));
        }
      };
      socket.onclose = (event) => {
        fail(new MeetCoreError(ErrorCode.UNABLE_TO_JOIN, `the server closed the connection (${event.code})`));
      };
      socket.send(JSON.stringify(hello));
    });
  }

  /** @param {object} welcome */
  _welcome(welcome) {
    this.participantId = welcome.participantId;
    this._connectionId = welcome.connectionId;
    this._resumeToken = welcome.resumeToken;
    this._leaseTtl = welcome.leaseTtl;
    if (welcome.resumed) return;
    this.seq = welcome.seq;
    this.sessionId = welcome.sessionId ?? null;
    this.waiting = Boolean(welcome.waiting);
    const before = this.participants;
    this.participants = new Map();
    for (const state of welcome.participants ?? []) {
      if (state.connectionId === welcome.connectionId) {
        this.localParticipant = this._local(state);
      } else {
        this.participants.set(
          state.participantId,
          before.get(state.participantId) ?? new Participant(state, false, this),
        );
      }
    }
    for (const request of welcome.pending ?? []) this._entryRequested(request);
  }

  /** @param {object} state */
  _local(state) {
    const local = this.localParticipant;
    local.id = state.participantId;
    local.connectionId = state.connectionId;
    local.displayName = state.name ?? local.displayName;
    local.micOn = Boolean(state.micEnabled);
    local.webcamOn = Boolean(state.webcamEnabled);
    local.mode = state.mode ?? local.mode;
    local.permissions = state.permissions ?? local.permissions;
    return local;
  }

  /** The local participant is in the meeting (at once, or let in from the waiting room). */
  _admitted() {
    this.waiting = false;
    this.joined = true;
    this.emit("meeting-joined");
    this.media.start();
  }

  // -- the connection --------------------------------------------------------------

  /** @param {WebSocket} socket */
  _attach(socket) {
    this._socket = socket;
    this._lastHeard = Date.now();
    socket.onmessage = (message) => {
      if (socket !== this._socket) return;
      this._lastHeard = Date.now();
      let data;
      try {
        data = JSON.parse(message.data);
      } catch (error) {
        this.emit("error", { code: ErrorCode.SOMETHING_WENT_WRONG, message: `unreadable message: ${error}` });
        return;
      }
      this._receive(data);
    };
    socket.onclose = () => this._dropped(socket);
    socket.onerror = () => {};
    clearInterval(this._heartbeat);
    this._heartbeat = setInterval(() => this._beat(socket), Math.max(100, this._leaseTtl / 3));
  }

  /** Ping within the lease; a socket that has gone silent for the lease is dropped. */
  _beat(socket) {
    if (socket !== this._socket) return;
    if (Date.now() - this._lastHeard > this._leaseTtl) {
      this._dropped(socket); // no pong for a whole lease: the connection is dead
      return;
    }
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: ClientType.PING }));
  }

  /**
   * The socket closed or went silent: resume, unless the meeting is over for us.
   * @param {WebSocket} socket
   */
  _dropped(socket) {
    if (socket !== this._socket) return;
    this._socket = null;
    clearInterval(this._heartbeat);
    socket.onmessage = socket.onclose = null;
    if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) socket.close();
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(new MeetCoreError(ErrorCode.MEETING_RECONNECTING, "the connection dropped"));
    }
    this._pending.clear();
    if (this._phase === "out") {
      this._finish();
      return;
    }
    this._reconnect();
  }

  async _reconnect() {
    this._setState("RECONNECTING");
    const was = this.url;
    for (const delay of this.reconnectDelays) {
      await sleep(delay);
      if (this._phase === "out") return;
      const resume = {
        type: ClientType.RESUME,
        token: this.token,
        meetingId: this.id,
        participantId: this.participantId,
        connectionId: this._connectionId,
        resumeToken: this._resumeToken,
        lastSeq: this.seq,
      };
      let socket;
      let welcome;
      try {
        const first = this._movedTo ?? this.url;
        [socket, welcome] = await this._open(resume, first).catch((error) => {
          // the node it was sent to is gone: back to where it came in, which sends it on
          // to the meeting's new media node
          if (!(error instanceof Unreachable) || first === this._entryUrl) throw error;
          return this._open(resume, this._entryUrl);
        });
      } catch (error) {
        if (error.code === ErrorCode.UNABLE_TO_JOIN) continue; // the server went away again
        this.emit("error", { code: error.code, message: error.message });
        break;
      }
      if (this._phase === "out") {
        socket.close();
        return;
      }
      this._leaseTtl = welcome.leaseTtl; // the heartbeat's pace: set before it starts
      this._movedTo = null;
      this._attach(socket);
      this._welcome(welcome);
      this._setState("CONNECTED");
      if (this.url !== was) this.media.moved(); // another node: its media connection is there
      this.media.resumed();
      return;
    }
    this._out(reasonOf(LeaveReason.WEBSOCKET_CONNECTION_ATTEMPTS_EXHAUSTED));
  }

  // -- what the server sends -------------------------------------------------------

  /** @param {object} message */
  _receive(message) {
    switch (message.type) {
      case ServerType.EVENTS:
        for (const delivery of message.events) {
          if (delivery.seq <= this.seq) continue; // seen before a reconnect
          this.seq = delivery.seq;
          this._apply(delivery.event);
          if (this._phase === "out") return;
        }
        break;
      case ServerType.WELCOME: // let in after waiting: the meeting as it is now
        this._welcome(message);
        if (!this.waiting && !this.joined) this._admitted();
        break;
      case ServerType.REDIRECT: // media is on another node: resume there once the socket closes
      case ServerType.OK:
      case ServerType.ANSWER: // the server's answer to our media offer
      case ServerType.PONG:
      case ServerType.ERROR: {
        if (message.type === ServerType.REDIRECT) {
          const moved = redirectOf(message.baseUrl);
          if (moved instanceof Redirected) this._movedTo = moved.url;
          message = { ...message, type: ServerType.ERROR, code: ErrorCode.MEETING_RECONNECTING };
          message.message = "moving to the node of the meeting's media";
        }
        const pending = this._pending.get(message.requestId);
        if (pending) {
          this._pending.delete(message.requestId);
          clearTimeout(pending.timer);
          if (message.type === ServerType.ERROR) pending.reject(new MeetCoreError(message.code, message.message));
          else pending.resolve(message);
        } else if (message.type === ServerType.ERROR) {
          this._error(message.code, message.message);
        }
        break;
      }
      default:
        this.media.receive(message);
    }
  }

  /** @param {object} event an event of the meeting's log */
  _apply(event) {
    const own = event.connectionId !== undefined && event.connectionId === this._connectionId;
    switch (event.type) {
      case EventType.PARTICIPANT_JOINED:
        if (own) {
          this.localParticipant = this._local(event);
          if (!this.joined) this._admitted();
        } else {
          const participant = new Participant(event, false, this);
          this.participants.set(event.participantId, participant);
          if (this.joined) {
            this.emit("participant-joined", participant);
            this.media.participantJoined(participant);
          }
        }
        break;
      case EventType.PARTICIPANT_LEFT:
      case EventType.ENTRY_WITHDRAWN: {
        if (own) {
          this._out(reasonOf(event.reason));
          return;
        }
        const gone = this.participants.get(event.participantId);
        if (gone && gone.connectionId === event.connectionId) {
          this.participants.delete(event.participantId);
          this.media.participantLeft(gone);
          if (event.type === EventType.PARTICIPANT_LEFT && this.joined) {
            this.emit("participant-left", gone, reasonOf(event.reason));
          }
        }
        break;
      }
      case EventType.MEDIA_CHANGED: {
        const who = this._participant(event.participantId);
        if (!who) break;
        if (event.kind === "mic") who.micOn = event.enabled;
        else who.webcamOn = event.enabled;
        who.emit("media-status-changed", {
          kind: event.kind === "mic" ? "audio" : "video",
          newStatus: event.enabled ? "enabled" : "disabled",
        });
        this.media.mediaChanged(who, event);
        break;
      }
      case EventType.MODE_CHANGED: {
        const who = this._participant(event.participantId);
        if (who) who.mode = event.mode;
        this.emit("participant-mode-changed", { participantId: event.participantId, mode: event.mode });
        if (who) this.media.modeChanged(who);
        break;
      }
      case EventType.ENTRY_REQUESTED:
        this._entryRequested(event);
        break;
      case EventType.ENTRY_RESPONDED: {
        const decision = event.allowed ? "allowed" : "denied";
        this.emit("entry-responded", event.participantId, decision);
        if (own && !event.allowed) {
          this._phase = "out";
          this._finish();
        }
        break;
      }
      case EventType.SESSION_STARTED:
        this.sessionId = event.sessionId;
        break;
      case EventType.SESSION_ENDED:
        this.sessionId = null;
        break;
      default:
        break;
    }
  }

  /** @param {{participantId: string, name: string}} request */
  _entryRequested(request) {
    const { participantId, name } = request;
    this.emit("entry-requested", {
      participantId,
      name,
      allow: () => this.respondEntry(participantId, "allowed"),
      deny: () => this.respondEntry(participantId, "denied"),
    });
  }

  /**
   * @param {string} participantId
   * @returns {Participant | undefined}
   */
  _participant(participantId) {
    if (this.localParticipant?.id === participantId) return this.localParticipant;
    return this.participants.get(participantId);
  }

  /**
   * The local participant is out of the meeting.
   * @param {Reason} reason
   */
  _out(reason) {
    if (this._phase === "out") return;
    this._phase = "out";
    this.joined = false;
    this.emit("meeting-left", reason);
    this._finish();
  }

  /** Everything the meeting held goes: the socket, the media, the pending requests. */
  _finish() {
    clearInterval(this._heartbeat);
    removeEventListener("pagehide", this._onPageHide);
    for (const { resolve, timer } of this._pending.values()) {
      clearTimeout(timer);
      resolve(); // a leave, end... is done: the participant is out
    }
    this._pending.clear();
    this.media.close();
    const socket = this._socket;
    this._socket = null;
    if (socket) {
      socket.onmessage = socket.onclose = null;
      socket.close();
    }
    this._setState("DISCONNECTED");
    for (const waiter of [...this._stateWaiters]) waiter();
  }

  /** @param {string} state */
  _setState(state) {
    if (state !== this.state) {
      this.state = state;
      if (this.debugMode) console.debug(`[meetcore] ${this.id}: ${state}`);
      this.emit("meeting-state-changed", { state });
    }
    if (state === "CONNECTED") for (const waiter of [...this._stateWaiters]) waiter();
  }

  /**
   * Emit `error` and return the error to throw.
   * @param {number} code
   * @param {string} message
   */
  _error(code, message) {
    if (this.debugMode) console.warn(`[meetcore] error ${code}: ${message}`);
    this.emit("error", { code, message });
    return new MeetCoreError(code, message);
  }

  /**
   * `pagehide` (the page is closed, reloaded or left): leave on the open socket, as
   * the seeds advise, rather than let the lease run out. (Not `beforeunload`: the
   * application may still cancel the unload there.)
   */
  _leaveOnUnload() {
    const socket = this._socket;
    if (this._phase !== "in" || !socket || socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ type: ClientType.LEAVE }));
    this._out(reasonOf(LeaveReason.MANUAL_LEAVE_CALLED));
  }

  // -- requests --------------------------------------------------------------------

  /**
   * Send a request and wait for its `ok` (rejects with the `error`'s code).
   * @param {object} message
   * @returns {Promise<object>}
   */
  async _request(message) {
    if (this._phase !== "in")
      throw new MeetCoreError(ErrorCode.ACTION_BEFORE_JOINED, "join the meeting first");
    if (this.state === "RECONNECTING" && message.type === ClientType.LEAVE) {
      await this._backOrOut(); // leave once reconnected (or out anyway)
      if (this._phase === "out") return {};
    }
    const socket = this._socket;
    // a socket closing (its close event not yet here) is a reconnection starting
    if (this.state === "RECONNECTING" || !socket || socket.readyState !== WebSocket.OPEN) {
      throw new MeetCoreError(ErrorCode.MEETING_RECONNECTING, "the meeting is reconnecting");
    }
    const requestId = ++this._requestIds;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(requestId);
        reject(new MeetCoreError(ErrorCode.OPERATION_TIMED_OUT, "no answer from the server"));
      }, REQUEST_TIMEOUT);
      this._pending.set(requestId, { resolve, reject, timer });
      socket.send(JSON.stringify({ ...message, requestId }));
    });
  }

  /** Wait until the connection is back or the meeting is over (at most REQUEST_TIMEOUT). */
  _backOrOut() {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this._stateWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, REQUEST_TIMEOUT);
      this._stateWaiters.add(done);
    });
  }

  /** Resolves once the local participant is out (after `leave`, `end`...). */
  _closed() {
    if (this._phase === "out") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (this._phase !== "out") return;
        this._stateWaiters.delete(done);
        resolve();
      };
      this._stateWaiters.add(done);
    });
  }

  /**
   * A request from a public method: errors become `error` events too.
   * @param {object} message
   */
  async _call(message) {
    try {
      return await this._request(message);
    } catch (error) {
      if (error instanceof MeetCoreError) this._error(error.code, error.message);
      throw error;
    }
  }

  /**
   * Leave the meeting: this page gets `meeting-left`, the others `participant-left`,
   * both with 1101.
   * @returns {Promise<void>}
   */
  leave() {
    return quiet(
      (async () => {
        if (this._phase === "out")
          throw this._error(ErrorCode.ALREADY_IN_REQUESTED_STATE, "already left the meeting");
        await this._call({ type: ClientType.LEAVE });
        await this._closed();
      })(),
    );
  }

  /**
   * End the meeting for everyone, this page included: all get `meeting-left` with 1008.
   * Needs `allow_mod` in the token, unless alone.
   * @returns {Promise<void>}
   */
  end() {
    return quiet(
      (async () => {
        if (this.state === "RECONNECTING" && this._phase === "in") {
          throw this._error(ErrorCode.MEETING_RECONNECTING, "the meeting is reconnecting");
        }
        await this._call({ type: ClientType.END });
        await this._closed();
      })(),
    );
  }

  /**
   * Change the local participant's mode: `participant-mode-changed` follows.
   * @param {string} mode SEND_AND_RECV, SIGNALLING_ONLY or RECV_ONLY
   */
  changeMode(mode) {
    if (!MODES.includes(mode)) {
      return quiet(
        Promise.reject(this._error(ErrorCode.INVALID_PARAMETER, `unknown mode ${JSON.stringify(mode)}`)),
      );
    }
    return quiet(this._call({ type: ClientType.CHANGE_MODE, mode }));
  }

  /**
   * Answer an entry request (needs `allow_join`).
   * @param {string} participantId
   * @param {"allowed" | "denied"} decision
   */
  respondEntry(participantId, decision) {
    return quiet(this._call({ type: ClientType.RESPOND_ENTRY, participantId, decision }));
  }

  /** Switch the camera on: `stream-enabled` on the local participant. */
  enableWebcam() {
    return quiet(this.media.setLocal("webcam", true));
  }

  /** Switch the camera off: `stream-disabled` on the local participant. */
  disableWebcam() {
    return quiet(this.media.setLocal("webcam", false));
  }

  /** Switch the microphone on. */
  unmuteMic() {
    return quiet(this.media.setLocal("mic", true));
  }

  /** Switch the microphone off. */
  muteMic() {
    return quiet(this.media.setLocal("mic", false));
  }

  /** The browser's RTCPeerConnection carrying this meeting's media (null without media). */
  get peerConnection() {
    return this.media.pc;
  }
}

// ---------------------------------------------------------------------------------
// Media

/** The codecs the server forwards (it does not transcode): every sender uses these. */
const FORWARDED_CODECS = { audio: ["audio/opus"], video: ["video/vp8", "video/rtx"] };
/** Milliseconds to wait for ICE candidates before offering (no trickle ICE). */
const GATHERING_TIMEOUT = 3000;
/** Milliseconds before a failed media connection is opened again. */
const MEDIA_RETRY_DELAY = 1000;

/**
 * The meeting's media: the local camera and microphone, and one RTCPeerConnection to
 * the server (`docs/protocol.md`, media). The client offers one audio and one video
 * section to publish on (sendonly; a track is attached while the log says the mic or
 * webcam is on); the server answers, then sends an `offer` whenever what this client
 * receives changes, with `streams` mapping its sections (mids) to participants and
 * kinds, and the client answers. Negotiations run one at a time, in order.
 */
class MediaSession {
  /** @param {Meeting} meeting */
  constructor(meeting) {
    this.meeting = meeting;
    /** @type {RTCPeerConnection | null} */
    this.pc = null;
    /** Local tracks by kind ("mic", "webcam"). @type {Map<string, MediaStreamTrack>} */
    this.local = new Map();
    /** The sections we publish on, by stream kind. @type {Map<string, RTCRtpTransceiver>} */
    this.senders = new Map();
    /** Remote streams by the section (mid) that carries them. @type {Map<string, Stream>} */
    this.remote = new Map();
    /** Answers to our own offers so far: a server offer made before the last one is stale. */
    this.answers = 0;
    /** True while the media connection is open or opening. */
    this.active = false;
    this._queue = Promise.resolve();
    this._retry = 0;
  }

  /** The local participant's mode, as the log has it (or as asked, before joining). */
  get mode() {
    return this.meeting.localParticipant.mode ?? this.meeting._hello.mode;
  }

  /** True when the mode sends media. */
  get sends() {
    return SENDING_MODES.includes(this.mode);
  }

  /** True when the mode has a media connection at all (all but SIGNALLING_ONLY). */
  get connects() {
    return !["SIGNALLING_ONLY", "VIEWER"].includes(this.mode);
  }

  /**
   * Run `job` after the ones before it; a failure is reported and the queue goes on.
   * @param {() => Promise<void>} job
   */
  _enqueue(job) {
    this._queue = this._queue.then(job).catch((error) => {
      if (this.meeting.debugMode) console.warn("[meetcore] media negotiation failed", error);
    });
    return this._queue;
  }

  // -- local tracks ----------------------------------------------------------------

  /** Before joining: open the camera and microphone the options ask for. */
  async prepare() {
    const { _hello: hello, options } = this.meeting;
    const sends = SENDING_MODES.includes(hello.mode);
    hello.webcamEnabled = sends && Boolean(options.webcamEnabled) && (await this._open("webcam"));
    hello.micEnabled = sends && Boolean(options.micEnabled) && (await this._open("mic"));
  }

  /**
   * Open the local track of `kind`; false (and an `error` event) when the browser refuses.
   * @param {"mic" | "webcam"} kind
   */
  async _open(kind) {
    if (this.local.has(kind)) return true;
    const options = this.meeting.options;
    let track = kind === "webcam" ? options.customCameraVideoTrack : options.customMicrophoneAudioTrack;
    if (!track || track.readyState === "ended") {
      try {
        const constraints = kind === "webcam" ? { video: { width: 640, height: 360 } } : { audio: true };
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        track = kind === "webcam" ? stream.getVideoTracks()[0] : stream.getAudioTracks()[0];
      } catch (error) {
        this.meeting._error(deniedCode(kind), `cannot open the ${kind}: ${error.message ?? error}`);
        return false;
      }
    }
    this.local.set(kind, track);
    return true;
  }

  /** @param {string} kind "mic" or "webcam" */
  _isCustom(kind) {
    const options = this.meeting.options;
    const custom = kind === "webcam" ? options.customCameraVideoTrack : options.customMicrophoneAudioTrack;
    return custom !== undefined && this.local.get(kind) === custom;
  }

  /** @param {string} kind "mic" or "webcam" */
  _stopLocal(kind) {
    const track = this.local.get(kind);
    this.local.delete(kind);
    if (track && !this._isCustom(kind)) track.stop();
  }

  /**
   * Switch a local medium on or off: open the track, then ask the server; the track is
   * sent (and `stream-enabled` fires) once the log says so.
   * @param {"mic" | "webcam"} kind
   * @param {boolean} enabled
   */
  async setLocal(kind, enabled) {
    const meeting = this.meeting;
    if (meeting._phase !== "in" || !meeting.joined) {
      throw meeting._error(ErrorCode.ACTION_BEFORE_JOINED, "join the meeting first");
    }
    if (meeting.state === "RECONNECTING")
      throw meeting._error(ErrorCode.MEETING_RECONNECTING, "the meeting is reconnecting");
    if (enabled && !this.sends) {
      throw meeting._error(ErrorCode.NOT_SUPPORTED_IN_MODE, `no ${kind} in mode ${this.mode}`);
    }
    const local = meeting.localParticipant;
    const on = kind === "mic" ? local.micOn : local.webcamOn;
    if (on === enabled) {
      throw meeting._error(
        ErrorCode.ALREADY_IN_REQUESTED_STATE,
        `the ${kind} is already ${enabled ? "on" : "off"}`,
      );
    }
    if (enabled && !(await this._open(kind)))
      throw new MeetCoreError(deniedCode(kind), `cannot open the ${kind}`);
    try {
      await meeting._call({ type: ClientType.SET_MEDIA, kind, enabled });
    } catch (error) {
      if (enabled && !(kind === "mic" ? local.micOn : local.webcamOn)) this._stopLocal(kind);
      throw error;
    }
  }

  /**
   * Publish (or stop publishing) a local medium, as the log now says.
   * @param {"mic" | "webcam"} kind
   * @param {boolean} enabled
   */
  _publish(kind, enabled) {
    const local = this.meeting.localParticipant;
    const streamKind = kind === "webcam" ? "video" : "audio";
    const sender = this.senders.get(streamKind)?.sender;
    if (enabled) {
      const track = this.local.get(kind);
      if (!track) return; // switched on elsewhere (a moderator cannot): nothing to send
      sender?.replaceTrack(track).catch(() => {});
      if (local.streamOf(streamKind)?.track !== track)
        local._addStream(new Stream(streamKind, track, local.id));
    } else {
      sender?.replaceTrack(null).catch(() => {});
      this._stopLocal(kind);
      const stream = local.streamOf(streamKind);
      if (stream) local._removeStream(stream);
    }
  }

  // -- what the meeting tells us -----------------------------------------------------

  /** Joined (or let in): show the local tracks, open the media connection. */
  start() {
    const local = this.meeting.localParticipant;
    if (local.micOn) this._publish("mic", true);
    else this._stopLocal("mic");
    if (local.webcamOn) this._publish("webcam", true);
    else this._stopLocal("webcam");
    this._sync();
  }

  /**
   * Open the media connection once there is something to send or receive, as the
   * Python client does; close it in SIGNALLING_ONLY.
   */
  _sync() {
    const meeting = this.meeting;
    if (!meeting.joined || meeting._phase !== "in") return;
    if (!this.connects) {
      this._disconnect();
      return;
    }
    if (this.active) return;
    const me = meeting.localParticipant;
    const others = [...meeting.participants.values()].some(
      (p) => SENDING_MODES.includes(p.mode) && (p.micOn || p.webcamOn),
    );
    if (!(me.micOn || me.webcamOn || others)) return;
    this.active = true;
    this._enqueue(() => this._connect());
  }

  /**
   * A media change in the log: publish or stop our own track, end someone's stream.
   * @param {Participant} who
   * @param {{kind: string, enabled: boolean}} event
   */
  mediaChanged(who, event) {
    const streamKind = event.kind === "webcam" ? "video" : "audio";
    if (who.local) {
      this._publish(event.kind, event.enabled);
    } else if (!event.enabled) {
      this._endStreams(who.id, streamKind); // at once; the server's next offer frees the section
    }
    this._sync();
  }

  /**
   * A participant's mode changed: the local one may have to stop sending, or start or
   * stop its media connection.
   * @param {Participant} who
   */
  modeChanged(who) {
    if (who.local && !this.sends) {
      for (const kind of ["mic", "webcam"]) if (this.local.has(kind)) this._publish(kind, false);
    }
    this._sync();
  }

  /** @param {Participant} participant */
  participantJoined(participant) {
    this._sync();
  }

  /** @param {Participant} participant */
  participantLeft(participant) {
    this._endStreams(participant.id);
  }

  /**
   * The signaling connection came back after a drop: the media connection went on,
   * unless it could not be opened meanwhile.
   */
  resumed() {
    this._sync();
  }

  /** The signaling connection resumed on another node: make the media connection there. */
  moved() {
    this._disconnect();
  }

  /**
   * A media message from the server: its `offer` (renegotiation).
   * @param {object} message
   */
  receive(message) {
    if (message.type !== ServerType.OFFER) return;
    const generation = this.answers;
    this._enqueue(() => this._answer(message, generation));
  }

  /** Stop every local track, close the peer connection, end the remote streams. */
  close() {
    this._disconnect();
    for (const kind of [...this.local.keys()]) this._stopLocal(kind);
    const local = this.meeting.localParticipant;
    for (const stream of [...local.streams.values()]) local._removeStream(stream);
  }

  // -- negotiation -------------------------------------------------------------------

  /** Open (or open again) the media connection: our offer, the server's answer. */
  async _connect() {
    this._disconnect();
    if (!this.connects || this.meeting._phase !== "in") return;
    this.active = true;
    const pc = new RTCPeerConnection({ iceServers: this.meeting.options.iceServers ?? [] });
    this.pc = pc;
    for (const kind of ["audio", "video"]) {
      const transceiver = pc.addTransceiver(kind, { direction: "sendonly" });
      preferForwardedCodecs(transceiver, kind);
      this.senders.set(kind, transceiver);
      const track = this.local.get(kind === "video" ? "webcam" : "mic");
      const local = this.meeting.localParticipant;
      if (track && (kind === "video" ? local.webcamOn : local.micOn))
        await transceiver.sender.replaceTrack(track);
    }
    pc.addEventListener("connectionstatechange", () => this._stateChanged(pc));
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      await gathered(pc);
      if (pc !== this.pc) return;
      const answer = await this.meeting._request({ type: ClientType.OFFER, sdp: pc.localDescription.sdp });
      if (pc !== this.pc || answer?.type !== ServerType.ANSWER) return;
      this.answers += 1; // before any await: offers that arrive from now on are for this connection
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      this._streams(pc, answer.streams ?? []);
    } catch (error) {
      if (pc === this.pc) this._disconnect(); // the next change (or a resume) tries again
      throw error;
    }
  }

  /**
   * The server's offer: apply it, map its sections to streams, answer.
   * @param {{sdp: string, streams?: object[]}} message
   * @param {number} generation `answers` when the offer arrived
   */
  async _answer(message, generation) {
    const pc = this.pc;
    if (!pc || generation !== this.answers || pc.signalingState !== "stable") return; // stale
    await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    this._streams(pc, message.streams ?? []);
    if (pc !== this.pc) return;
    await this.meeting._request({ type: ClientType.ANSWER, sdp: pc.localDescription.sdp });
  }

  /** @param {RTCPeerConnection} pc */
  _stateChanged(pc) {
    if (pc !== this.pc || pc.connectionState !== "failed") return;
    if (this.meeting.debugMode) console.warn("[meetcore] the media connection failed: opening it again");
    clearTimeout(this._retry);
    this._retry = setTimeout(() => {
      if (pc === this.pc && this.meeting._phase === "in") this._enqueue(() => this._connect());
    }, MEDIA_RETRY_DELAY);
  }

  _disconnect() {
    this.active = false;
    clearTimeout(this._retry);
    for (const stream of [...this.remote.values()]) this._end(stream);
    this.remote.clear();
    this.senders.clear();
    this.pc?.close();
    this.pc = null;
  }

  // -- remote streams ----------------------------------------------------------------

  /**
   * Start and end remote streams as the server's SDP maps its sections.
   * @param {RTCPeerConnection} pc
   * @param {{mid: string, participantId: string, kind: string}[]} slots
   */
  _streams(pc, slots) {
    const wanted = new Map(slots.map((slot) => [slot.mid, slot]));
    for (const [mid, stream] of [...this.remote]) {
      const slot = wanted.get(mid);
      if (!slot || slot.participantId !== stream.participantId || slot.kind !== stream.kind || stream.ended) {
        this._end(stream);
        this.remote.delete(mid);
      }
    }
    const sections = new Map(
      pc
        .getTransceivers()
        .filter((t) => t.mid !== null)
        .map((t) => [t.mid, t]),
    );
    for (const [mid, slot] of wanted) {
      const transceiver = sections.get(mid);
      const owner = this.meeting.participants.get(slot.participantId);
      if (this.remote.has(mid) || !transceiver || !owner) continue;
      // a clone per stream: it ends with the stream, and never shows whoever the
      // section carries next
      const stream = new Stream(slot.kind, transceiver.receiver.track.clone(), slot.participantId);
      stream.receiver = transceiver.receiver;
      stream.mid = mid;
      stream._owner = owner;
      this.remote.set(mid, stream);
      owner._addStream(stream);
    }
  }

  /**
   * End a participant's remote streams (of one kind, or all).
   * @param {string} participantId
   * @param {string} [kind]
   */
  _endStreams(participantId, kind) {
    for (const stream of this.remote.values()) {
      if (stream.participantId === participantId && (kind === undefined || stream.kind === kind))
        this._end(stream);
    }
  }

  /** @param {Stream} stream */
  _end(stream) {
    if (stream.ended) return;
    stream.ended = true;
    stream.track.stop();
    stream._owner?._removeStream(stream);
  }
}

/** @param {string} kind "mic" or "webcam" */
function deniedCode(kind) {
  return kind === "webcam"
    ? ErrorCode.ERROR_CAMERA_ACCESS_DENIED_OR_DISMISSED
    : ErrorCode.ERROR_MICROPHONE_ACCESS_DENIED_OR_DISMISSED;
}

/**
 * Offer only the codec the server forwards for the section's kind (and RTX).
 * @param {RTCRtpTransceiver} transceiver
 * @param {"audio" | "video"} kind
 */
function preferForwardedCodecs(transceiver, kind) {
  const capabilities = globalThis.RTCRtpReceiver?.getCapabilities?.(kind);
  if (!capabilities || !transceiver.setCodecPreferences) return;
  const codecs = capabilities.codecs.filter((codec) =>
    FORWARDED_CODECS[kind].includes(codec.mimeType.toLowerCase()),
  );
  if (codecs.some((codec) => codec.mimeType.toLowerCase() !== "video/rtx"))
    transceiver.setCodecPreferences(codecs);
}

/**
 * Resolves once the connection has gathered its ICE candidates (or after a while).
 * @param {RTCPeerConnection} pc
 */
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    const timer = setTimeout(resolve, GATHERING_TIMEOUT);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

// ---------------------------------------------------------------------------------
// Helpers

/** @param {number} ms */
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A WebSocket once open (rejects if it cannot be opened).
 * @param {string} url
 * @returns {Promise<WebSocket>}
 */
function openSocket(url) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url);
    socket.onopen = () => {
      socket.onopen = socket.onerror = socket.onclose = null;
      resolve(socket);
    };
    socket.onerror = socket.onclose = () => {
      socket.onopen = socket.onerror = socket.onclose = null;
      reject(new Unreachable(url));
    };
  });
}

/** A server that cannot be reached (the socket did not open). */
class Unreachable extends MeetCoreError {
  /** @param {string} url */
  constructor(url) {
    super(ErrorCode.UNABLE_TO_JOIN, `cannot reach ${url}`);
  }
}

/** The server sent the join or resume to another node (its WebSocket URL in `url`). */
class Redirected extends Error {
  /** @param {string} url */
  constructor(url) {
    super(`redirected to ${url}`);
    this.url = url;
  }
}

/**
 * A `redirect` message's base URL as a WebSocket URL (`Redirected`), or the refusal of
 * one that is not http(s).
 * @param {unknown} baseUrl
 */
function redirectOf(baseUrl) {
  let ws;
  try {
    ws = new URL(String(baseUrl).replace(/\/+$/, "") + "/ws");
  } catch {
    ws = null;
  }
  const http = ws?.protocol === "http:" || ws?.protocol === "https:";
  if (!http || /\s/.test(String(baseUrl))) {
    const why = `redirected to a URL that is not http(s): ${String(baseUrl).slice(0, 200)}`;
    return new MeetCoreError(ErrorCode.UNABLE_TO_JOIN, why);
  }
  ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
  return new Redirected(ws.href);
}

/** Where this module was loaded from (the meetcore server), else the page's origin. */
function defaultBaseUrl() {
  const here = new URL(import.meta.url);
  if (here.protocol === "http:" || here.protocol === "https:") return here.origin;
  return location.origin;
}

/** @param {unknown} value */
function isPlainObject(value) {
  if (value === null || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

// ---------------------------------------------------------------------------------
// The entry point

let configuredToken = null;
let configuredBaseUrl = null;

/**
 * VideoSDK's entry point, for a meetcore server.
 */
export const MeetCore = Object.freeze({
  /**
   * Keep the token that `initMeeting` uses (a JWT from your backend, or `/get-token`).
   * @param {string} token
   * @param {{baseUrl?: string}} [options] the server, when it is not where this module came from
   */
  config(token, options = {}) {
    if (typeof token !== "string" || !token)
      throw new MeetCoreError(ErrorCode.INVALID_TOKEN, "config(token): the token must be a non-empty string");
    configuredToken = token;
    if (options.baseUrl !== undefined) configuredBaseUrl = options.baseUrl;
  },

  /**
   * A `Meeting` for VideoSDK's `initMeeting` options; nothing is sent before `join()`.
   * Throws a `MeetCoreError` at once for a missing meetingId (4003), a bad mode or
   * metaData (3073), or no token configured (4002).
   * @param {MeetingOptions} options
   * @returns {Meeting}
   */
  initMeeting(options) {
    if (!isPlainObject(options))
      throw new MeetCoreError(ErrorCode.INVALID_PARAMETER, "initMeeting({...}) takes an options object");
    const { meetingId, mode, metaData, participantId, name } = options;
    if (typeof meetingId !== "string" || !meetingId.trim()) {
      throw new MeetCoreError(
        ErrorCode.INVALID_MEETING_ID,
        "initMeeting: meetingId must be a non-empty string",
      );
    }
    if (mode !== undefined && !MODES.includes(mode)) {
      throw new MeetCoreError(
        ErrorCode.INVALID_PARAMETER,
        `initMeeting: unknown mode ${JSON.stringify(mode)}`,
      );
    }
    if (metaData !== undefined && metaData !== null && !isPlainObject(metaData)) {
      throw new MeetCoreError(ErrorCode.INVALID_PARAMETER, "initMeeting: metaData must be a plain object");
    }
    if (
      participantId !== undefined &&
      (typeof participantId !== "string" || !participantId || /\s/.test(participantId))
    ) {
      throw new MeetCoreError(
        ErrorCode.INVALID_PARTICIPANT_ID,
        "initMeeting: participantId must be a string without whitespace",
      );
    }
    if (name !== undefined && typeof name !== "string") {
      throw new MeetCoreError(ErrorCode.INVALID_PARAMETER, "initMeeting: name must be a string");
    }
    if (configuredToken === null)
      throw new MeetCoreError(ErrorCode.INVALID_TOKEN, "call MeetCore.config(token) before initMeeting");
    const baseUrl = options.baseUrl ?? configuredBaseUrl ?? undefined;
    return new Meeting(configuredToken, { ...options, metaData: metaData ?? undefined, baseUrl });
  },
});

/** The same object under VideoSDK's name, so that code written for it runs as it is. */
export { MeetCore as VideoSDK };
export default MeetCore;
