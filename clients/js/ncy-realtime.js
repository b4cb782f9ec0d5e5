// ncy-realtime.js — browser client for the NCY realtime gateway (`/ws`). ES module, no dependencies.
// Also served by every gateway at `/client.js`.
//
//   import { RealtimeClient } from '/client.js';
//   const rt = new RealtimeClient('wss://rt.example.com/ws', { getToken: async () => fetchJwt() });
//   rt.on('task_updated', (data, msg) => render(data));
//   rt.onRecoveryFailed = (room) => reloadStateOf(room);   // history no longer covers the gap
//   rt.connect();
//   rt.joinProject(projectId);
//
// What it does for the app:
// - authenticates with `getToken()` on every (re)connect and refreshes the token before `exp`;
// - remembers the last (offset, epoch) of every room and, after a reconnect, asks for what was
//   missed (`since`), so messages published meanwhile arrive in order, once;
// - reconnects with jittered exponential backoff (1012 going away, 4008 slow consumer, network
//   errors, token expiry); it stops on 4003 (authentication failed) and 4010 (disconnected by the
//   server, e.g. a ban) until `connect()` is called again;
// - forgets a project the server took it out of (`left` with reason `revoked` or `unsubscribed`), so
//   a reconnect does not ask to join it again; `onLeft(room, reason)` tells the app.

const NO_RETRY = new Set([4003, 4010]);

export class RealtimeClient {
  constructor(url, options = {}) {
    this.url = url;
    this.getToken = options.getToken ?? (async () => null);
    this.minDelay = options.minDelayMs ?? 500;
    this.maxDelay = options.maxDelayMs ?? 15000;
    this.handlers = new Map();
    this.positions = new Map(); // room -> {offset, epoch}
    this.projects = new Set();
    this.pending = [];
    this.attempt = 0;
    this.ws = null;
    this.userId = null;
    this.stopped = true;
    this.onRecoveryFailed = options.onRecoveryFailed ?? (() => {});
    this.onPresence = options.onPresence ?? (() => {});
    this.onStatus = options.onStatus ?? (() => {});
    this.onError = options.onError ?? (() => {});
    this.onJoined = options.onJoined ?? (() => {});
    this.onLeft = options.onLeft ?? (() => {});
  }

  /** Registers `handler(data, message)` for messages of `event` ('*' for every event). */
  on(event, handler) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(handler);
    return () => this.handlers.get(event)?.delete(handler);
  }

  connect() {
    this.stopped = false;
    this.open();
  }

  close() {
    this.stopped = true;
    clearTimeout(this.refreshTimer);
    clearTimeout(this.retryTimer);
    this.ws?.close(1000, 'bye');
  }

  joinProject(projectId) {
    this.projects.add(projectId);
    this.sendJoin(projectId);
  }

  leaveProject(projectId) {
    this.projects.delete(projectId);
    this.positions.delete(`project:${projectId}`);
    this.send({ type: 'leave_project', projectId });
  }

  /**
   * Follows a job this user owns (enqueued with its `ownerUserId`): `onProgress(percent, message)`,
   * then `onCompleted(result)` or `onFailed(error, willRetry)` / `onCancelled()`. The worker sends
   * these to the owner's own room, so nothing needs joining, and a reconnect recovers missed ones.
   * Returns a function that stops following.
   */
  watchJob(jobId, { onProgress, onCompleted, onFailed, onCancelled } = {}) {
    const offs = [
      ['job_progress', (d) => onProgress?.(d.progress, d.message, d)],
      ['job_completed', (d) => onCompleted?.(d.result, d)],
      ['job_failed', (d) => onFailed?.(d.error, d.willRetry, d)],
      ['job_cancelled', (d) => onCancelled?.(d)],
    ].map(([event, fn]) => this.on(event, (d) => { if (d.jobId === jobId) fn(d); }));
    return () => offs.forEach((off) => off());
  }

  /**
   * Asks who is online in a joined room; the answer goes to `onPresence(room, users, answer)`, where
   * `answer.total` counts everyone online and `answer.truncated` says `users` is only the first ones.
   */
  presence(room) {
    this.send({ type: 'presence', room });
  }

  // -- internals ---------------------------------------------------------------------------------

  send(frame) {
    if (this.ws?.readyState === 1 && this.userId) this.ws.send(JSON.stringify(frame));
    else this.pending.push(frame);
  }

  sendJoin(projectId) {
    const since = this.positions.get(`project:${projectId}`);
    this.send({ type: 'join_project', projectId, ...(since ? { since } : {}) });
  }

  async open() {
    const token = await this.getToken();
    if (this.stopped) return;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.userId = null;
    this.onStatus('connecting');
    ws.onopen = () => {
      const since = {};
      for (const [room, pos] of this.positions) if (!room.startsWith('project:')) since[room] = pos;
      ws.send(JSON.stringify({ type: 'authenticate', token, since }));
    };
    ws.onmessage = (ev) => {
      let f;
      try { f = JSON.parse(ev.data); } catch { return; }
      this.dispatch(f);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.userId = null;
      clearTimeout(this.refreshTimer);
      this.onStatus('disconnected', ev.code, ev.reason);
      if (this.stopped || NO_RETRY.has(ev.code)) return;
      const cap = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt++);
      const delay = cap / 2 + Math.random() * (cap / 2); // jitter: spread reconnect storms
      this.retryTimer = setTimeout(() => this.open(), delay);
    };
  }

  dispatch(f) {
    switch (f.type) {
      case 'authenticated': {
        this.userId = f.userId;
        this.attempt = 0;
        this.scheduleRefresh(f.exp);
        this.onStatus('connected');
        for (const p of this.projects) this.sendJoin(p);
        const queued = this.pending.splice(0);
        for (const q of queued) if (q.type !== 'join_project') this.send(q);
        break;
      }
      case 'joined':
        if (f.recovered === false) this.onRecoveryFailed(f.room);
        if (!this.positions.has(f.room) || f.recovered === false) {
          this.positions.set(f.room, { offset: f.offset, epoch: f.epoch });
        }
        this.onJoined(f.room, f);
        break;
      case 'message': {
        const pos = this.positions.get(f.room);
        if (pos && pos.epoch === f.epoch && f.offset <= pos.offset) return; // already seen
        this.positions.set(f.room, { offset: f.offset, epoch: f.epoch });
        for (const key of [f.event, '*']) {
          for (const h of this.handlers.get(key) ?? []) h(f.data, f);
        }
        break;
      }
      case 'presence':
        this.onPresence(f.room, f.users, f);
        break;
      case 'left':
        if (f.reason && f.room.startsWith('project:')) {
          this.projects.delete(f.room.slice('project:'.length));
          this.positions.delete(f.room);
        }
        this.onLeft(f.room, f.reason ?? null);
        break;
      case 'refreshed':
        this.scheduleRefresh(f.exp);
        break;
      case 'authentication_failed':
      case 'error':
        this.onError(f);
        break;
      default:
        break;
    }
  }

  scheduleRefresh(exp) {
    clearTimeout(this.refreshTimer);
    if (!exp) return;
    const ms = Math.max(1000, exp * 1000 - Date.now() - 30000);
    this.refreshTimer = setTimeout(async () => {
      const token = await this.getToken();
      if (token && this.ws?.readyState === 1) this.ws.send(JSON.stringify({ type: 'refresh', token }));
    }, ms);
  }
}
