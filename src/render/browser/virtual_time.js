// helios-infra: deterministic time for compositions.
// Injected via Page.addScriptToEvaluateOnNewDocument BEFORE any page script.
// Replaces the page's notion of time with a virtual clock driven by
// window.__heliosSeek(ms). Config may be pre-set in window.__HELIOS_CONFIG__
// by an earlier injected script: {seed, epoch, virtualTimers}.
(() => {
  'use strict';
  if (window.__heliosSeek) return;
  const cfg = Object.assign(
    { seed: 0x9e3779b9, epoch: 1704067200000 /* 2024-01-01T00:00:00Z */, virtualTimers: true },
    window.__HELIOS_CONFIG__ || {}
  );

  const real = {
    setTimeout: window.setTimeout.bind(window),
    clearTimeout: window.clearTimeout.bind(window),
    setInterval: window.setInterval.bind(window),
    clearInterval: window.clearInterval.bind(window),
    requestAnimationFrame: window.requestAnimationFrame.bind(window),
    cancelAnimationFrame: window.cancelAnimationFrame.bind(window),
    performanceNow: performance.now.bind(performance),
    Date: window.Date,
    random: Math.random,
    // The renderer sends raw canvas pixels over one, whatever the page does to WebSocket.
    WebSocket: window.WebSocket,
  };
  Object.defineProperty(window, '__heliosReal', { value: real });

  let now = 0; // virtual time in ms since composition start
  // What the page did, so the renderer can show that seeking costs the same at any frame.
  const stats = { seeks: 0, rafCallbacks: 0, timerCallbacks: 0 };
  Object.defineProperty(window, '__heliosStats', { value: () => Object.assign({}, stats) });

  const report = (e) => {
    // Surfaces as Runtime.exceptionThrown without aborting our loops.
    if (typeof window.reportError === 'function') window.reportError(e);
    else real.setTimeout(() => { throw e; });
  };

  // ---- Math.random: seeded mulberry32, reseeded per seek (history independent)
  let rng = cfg.seed >>> 0;
  const mulberry32 = () => {
    let t = (rng = (rng + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const reseed = (ms) => {
    const us = Math.round(ms * 1000);
    const lo = us % 4294967296, hi = Math.floor(us / 4294967296);
    let h = (cfg.seed ^ Math.imul(lo >>> 0, 0x85ebca6b) ^ Math.imul(hi >>> 0, 0xc2b2ae35)) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
    h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
    rng = (h ^ (h >>> 16)) >>> 0;
  };
  Math.random = mulberry32;

  // ---- Date / performance.now
  const RealDate = real.Date;
  function VDate(...args) {
    if (!new.target) return new RealDate(Math.floor(cfg.epoch + now)).toString();
    if (args.length === 0) return Reflect.construct(RealDate, [Math.floor(cfg.epoch + now)], new.target);
    return Reflect.construct(RealDate, args, new.target);
  }
  Object.setPrototypeOf(VDate, RealDate);
  VDate.prototype = RealDate.prototype;
  VDate.now = () => Math.floor(cfg.epoch + now);
  window.Date = VDate;
  performance.now = () => now;
  // document.timeline follows real compositor frames in Chromium, not our clock: pin it.
  try {
    Object.defineProperty(document.timeline, 'currentTime', { configurable: true, get: () => now });
  } catch (e) { /* a browser without a DocumentTimeline: nothing to pin */ }

  // ---- requestAnimationFrame: queued, run only by __heliosSeek
  let rafSeq = 0;
  let rafQueue = new Map();
  window.requestAnimationFrame = (cb) => { const id = ++rafSeq; rafQueue.set(id, cb); return id; };
  window.cancelAnimationFrame = (id) => { rafQueue.delete(id); };
  const runRaf = (ts) => {
    const q = rafQueue;
    rafQueue = new Map();
    for (const cb of q.values()) { stats.rafCallbacks++; try { cb(ts); } catch (e) { report(e); } }
  };

  // ---- setTimeout / setInterval on the virtual clock
  let timerSeq = 0;
  const timers = new Map(); // id -> {due, order, cb, args, interval}
  if (cfg.virtualTimers) {
    const add = (cb, delay, args, repeat) => {
      const id = ++timerSeq;
      const d = Math.max(repeat ? 1 : 0, Number(delay) || 0);
      timers.set(id, { due: now + d, order: id, cb, args, interval: repeat ? d : null });
      return id;
    };
    window.setTimeout = (cb, delay, ...args) => add(cb, delay, args, false);
    window.setInterval = (cb, delay, ...args) => add(cb, delay, args, true);
    window.clearTimeout = window.clearInterval = (id) => { timers.delete(id); };
  }
  const runTimers = (target) => {
    for (let guard = 0; guard < 1000000; guard++) {
      let nid = 0, nt = null;
      for (const [id, t] of timers) {
        if (t.due <= target && (!nt || t.due < nt.due || (t.due === nt.due && t.order < nt.order))) { nid = id; nt = t; }
      }
      if (!nt) break;
      if (nt.due > now) now = nt.due;
      if (nt.interval != null) { nt.due += nt.interval; nt.order = ++timerSeq; } else timers.delete(nid);
      if (typeof nt.cb === 'function') { stats.timerCallbacks++; try { nt.cb(...nt.args); } catch (e) { report(e); } }
    }
  };

  // ---- Web Animations (CSS animations, CSS transitions, WAAPI)
  // document.timeline keeps running on real time, so every animation is paused
  // and its currentTime is set explicitly. birth = virtual time at which we
  // first saw the animation (0 for animations existing at load).
  const births = new Map(); // Animation -> birth ms (strong refs so finished ones can be re-seeked)
  const adopt = (birth) => {
    for (const a of document.getAnimations()) if (!births.has(a)) births.set(a, birth);
  };
  const seekAnimations = (ms) => {
    adopt(ms);
    for (const [a, birth] of births) {
      if (a.playState === 'idle') { births.delete(a); continue; } // cancelled
      try {
        if (a.playState !== 'paused') a.pause();
        a.currentTime = Math.max(0, ms - birth);
      } catch (e) { report(e); }
    }
  };

  const waitForAssets = () => {
    const waits = [];
    if (document.fonts && document.fonts.ready) waits.push(document.fonts.ready);
    for (const img of document.images) {
      if (!img.complete) {
        waits.push(new Promise((r) => {
          img.addEventListener('load', r, { once: true });
          img.addEventListener('error', r, { once: true });
        }));
      }
    }
    return Promise.all(waits);
  };

  window.__HELIOS_VIRTUAL_TIME__ = 0;
  Object.defineProperty(window, '__heliosSeek', {
    value: async (ms) => {
      ms = Number(ms);
      stats.seeks++;
      adopt(now);            // animations created since the last seek (or at load) started at `now`
      runTimers(ms);
      now = ms;
      window.__HELIOS_VIRTUAL_TIME__ = ms;
      reseed(ms);
      runRaf(ms);
      await Promise.resolve(); // let microtasks queued by callbacks run
      seekAnimations(ms);
      await waitForAssets();
      return ms;
    },
  });
  Object.defineProperty(window, '__heliosNow', { value: () => now });
})();
