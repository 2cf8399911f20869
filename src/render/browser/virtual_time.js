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
  const stats = { seeks: 0, rafCallbacks: 0, timerCallbacks: 0, settleRounds: 0, unsettled: 0 };
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
  // A callback requested from inside a rAF callback is the page's animation loop: it runs at
  // the next frame. One requested from anywhere else (a task, a timer, a promise) is work the
  // current frame caused, and runs before the frame is captured (see settle below).
  let rafSeq = 0;
  let rafQueue = new Map();
  let inRaf = false;
  let rafFromOutside = false;
  window.requestAnimationFrame = (cb) => {
    const id = ++rafSeq;
    rafQueue.set(id, cb);
    if (!inRaf) rafFromOutside = true;
    return id;
  };
  window.cancelAnimationFrame = (id) => { rafQueue.delete(id); };
  const runRaf = (ts) => {
    const q = rafQueue;
    rafQueue = new Map();
    rafFromOutside = false;
    inRaf = true;
    try {
      for (const cb of q.values()) { stats.rafCallbacks++; try { cb(ts); } catch (e) { report(e); } }
    } finally { inRaf = false; }
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
  // Runs the timers due by `target`, in due order, at most `limit` callbacks; returns how many ran.
  const runTimers = (target, limit = 1000000) => {
    let ran = 0;
    for (; ran < limit; ran++) {
      let nid = 0, nt = null;
      for (const [id, t] of timers) {
        if (t.due <= target && (!nt || t.due < nt.due || (t.due === nt.due && t.order < nt.order))) { nid = id; nt = t; }
      }
      if (!nt) break;
      if (nt.due > now) now = nt.due;
      if (nt.interval != null) { nt.due += nt.interval; nt.order = ++timerSeq; } else timers.delete(nid);
      if (typeof nt.cb === 'function') { stats.timerCallbacks++; try { nt.cb(...nt.args); } catch (e) { report(e); } }
    }
    return ran;
  };
  // requestIdleCallback: a real browser runs it whenever it happens to be idle, which
  // depends on the machine; here it runs as a timer due now, so it settles with the frame.
  if (cfg.virtualTimers && window.requestIdleCallback) {
    window.requestIdleCallback = (cb) => window.setTimeout(() => cb({ didTimeout: false, timeRemaining: () => 50 }), 0);
    window.cancelIdleCallback = (id) => window.clearTimeout(id);
  }
  const timersDue = (target) => { for (const t of timers.values()) if (t.due <= target) return true; return false; };

  // ---- Web Animations (CSS animations, CSS transitions, WAAPI)
  // document.timeline keeps running on real time, so every animation is paused
  // and its currentTime is set explicitly. birth = virtual time at which we
  // first saw the animation (0 for animations existing at load).
  const births = new Map(); // Animation -> birth ms (strong refs so finished ones can be re-seeked)
  const adopt = (birth) => {
    for (const a of document.getAnimations()) if (!births.has(a)) births.set(a, birth);
  };
  // A Helios composition with autoSyncAnimations puts every animation on the composition's
  // own timeline (currentTime = the composition time, whenever the animation was created:
  // its delays say when it starts), and so does the renderer then, also for animations
  // created while the frame settles.
  const heliosSyncs = () => {
    const h = window.helios;
    return !!(h && h.autoSyncAnimations === true && h.driver && typeof h.driver.syncWaapiAnimations === 'function');
  };
  const seekAnimations = (ms) => {
    adopt(ms);
    const global = heliosSyncs();
    for (const [a, birth] of births) {
      if (a.playState === 'idle') { births.delete(a); continue; } // cancelled
      try {
        if (a.playState !== 'paused') a.pause();
        a.currentTime = global ? ms : Math.max(0, ms - birth);
      } catch (e) { report(e); }
    }
  };

  const assetsPending = () => {
    if (document.fonts && document.fonts.status === 'loading') return true;
    for (const img of document.images) if (!img.complete) return true;
    return false;
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

  // ---- Work the page posts "for as soon as possible", counted so that a frame is captured
  // only once all of it has run. Frameworks schedule their rendering in tasks of their own:
  // React's scheduler posts to a MessageChannel, setImmediate shims post to the window; a
  // fetch or XHR answers in a task too. Each is counted when posted and uncounted when it
  // runs; `activity` counts callbacks that ran outside rAF callbacks.
  let activity = 0;
  let inFlight = 0;           // posted messages not yet delivered
  const requests = new Set(); // fetches and XHRs not yet answered
  let counted = new WeakMap(); // MessagePort -> messages counted on their way to it
  const peers = new WeakMap(); // MessagePort -> the other end, for channels made in this page
  const started = new WeakSet(); // ports that deliver (start() called or onmessage set)
  const away = new WeakSet();  // ports transferred to a worker or another window
  const uncount = () => { if (inFlight > 0) inFlight--; };
  const markTransfers = (opt) => {
    const list = Array.isArray(opt) ? opt : (opt && Array.isArray(opt.transfer) ? opt.transfer : []);
    for (const t of list) if (t instanceof MessagePort) away.add(t);
  };
  const RealMC = window.MessageChannel;
  const MP = window.MessagePort && MessagePort.prototype;
  const realPost = MP && MP.postMessage;
  // A real turn of the event loop, not counted: the settle loop's own heartbeat.
  const beat = RealMC ? new RealMC() : null;
  let beats = [];
  if (beat) beat.port1.onmessage = () => { const q = beats; beats = []; for (const r of q) r(); };
  const turn = () => new Promise((r) => {
    if (!beat) { real.setTimeout(r, 0); return; }
    beats.push(r);
    if (beats.length === 1) realPost.call(beat.port2, 0);
  });
  if (RealMC && MP) {
    const delivered = function () {
      const n = counted.get(this) || 0;
      if (n > 0) { counted.set(this, n - 1); uncount(); }
      activity++;
    };
    function MessageChannel() {
      if (!new.target) return new RealMC(); // throws the browser's own TypeError
      const c = new RealMC();
      peers.set(c.port1, c.port2);
      peers.set(c.port2, c.port1);
      c.port1.addEventListener('message', delivered);
      c.port2.addEventListener('message', delivered);
      return c;
    }
    MessageChannel.prototype = RealMC.prototype;
    Object.defineProperty(window, 'MessageChannel', { value: MessageChannel, writable: true, configurable: true });
    const realStart = MP.start;
    MP.start = function () { started.add(this); return realStart.call(this); };
    const onmsg = Object.getOwnPropertyDescriptor(MP, 'onmessage');
    if (onmsg && onmsg.set) {
      Object.defineProperty(MP, 'onmessage', {
        configurable: true, enumerable: onmsg.enumerable, get: onmsg.get,
        set(v) { if (v) started.add(this); onmsg.set.call(this, v); },
      });
    }
    MP.postMessage = function (msg, opt) {
      markTransfers(opt);
      const r = realPost.apply(this, arguments);
      const to = peers.get(this);
      if (to && started.has(to) && !away.has(to) && !away.has(this)) {
        counted.set(to, (counted.get(to) || 0) + 1);
        inFlight++;
      }
      return r;
    };
    const realClose = MP.close;
    MP.close = function () {
      for (const p of [this, peers.get(this)]) {
        const n = (p && counted.get(p)) || 0;
        if (n) { counted.delete(p); inFlight = Math.max(0, inFlight - n); }
      }
      return realClose.call(this);
    };
  }
  // Messages a page posts to itself (setImmediate shims).
  let selfPosts = 0;
  const realWinPost = window.postMessage;
  window.postMessage = function (msg, opt) {
    markTransfers(arguments.length > 2 ? arguments[2] : opt);
    const r = realWinPost.apply(this, arguments);
    const origin = opt && typeof opt === 'object' ? opt.targetOrigin : opt;
    // A bare postMessage(...) call reaches the window with no `this`.
    const self = this == null || this === window;
    if (self && (origin === '*' || origin === '/' || origin === location.origin)) {
      selfPosts++;
      inFlight++;
    }
    return r;
  };
  window.addEventListener('message', (e) => {
    if (e.source === window && selfPosts > 0) { selfPosts--; uncount(); }
    activity++;
  }, true);
  if (window.Worker) {
    const realWorkerPost = Worker.prototype.postMessage;
    Worker.prototype.postMessage = function (msg, opt) { markTransfers(opt); return realWorkerPost.apply(this, arguments); };
  }
  // Requests the page makes: their answers change the page in a task of their own.
  // A request, or the reading of a body (a response arrives before its body), is work in
  // flight until it is answered.
  const track = (p) => {
    const done = p.then(() => { requests.delete(done); activity++; }, () => { requests.delete(done); activity++; });
    requests.add(done);
    return p;
  };
  if (window.fetch) {
    const realFetch = window.fetch;
    // The page's own handlers run after ours, in the same microtask checkpoint or later:
    // the settle loop takes a whole turn after the answer.
    window.fetch = function () { return track(realFetch.apply(this, arguments)); };
  }
  for (const Body of [window.Response, window.Request]) {
    if (!Body) continue;
    for (const m of ['arrayBuffer', 'blob', 'bytes', 'formData', 'json', 'text']) {
      const read = Body.prototype[m];
      if (typeof read === 'function') Body.prototype[m] = function () { return track(read.apply(this, arguments)); };
    }
  }
  if (window.XMLHttpRequest) {
    const XP = XMLHttpRequest.prototype;
    const realSend = XP.send;
    XP.send = function () {
      let answered;
      const done = new Promise((r) => { answered = r; });
      requests.add(done);
      this.addEventListener('loadend', () => { requests.delete(done); activity++; answered(); }, { once: true });
      try { return realSend.apply(this, arguments); } catch (e) { requests.delete(done); answered(); throw e; }
    };
  }

  // DOM changes made outside rAF callbacks and outside the callbacks counted above (an
  // image's load handler, a media event): one more round to see what they cause.
  // Records reach an observer's callback at every microtask checkpoint, so the callback
  // keeps them: takeRecords() alone would miss all but the last microtask's.
  let mutations = null;
  let changes = 0;
  const mutated = () => {
    if (!mutations && window.MutationObserver && document.documentElement) {
      mutations = new MutationObserver((records) => { changes += records.length; });
      mutations.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
    }
    const n = changes + (mutations ? mutations.takeRecords().length : 0);
    changes = 0;
    return n > 0;
  };

  // ---- will-change: transform, made history-free. Chromium rasters a layer hinted with
  // will-change: transform (or translate, rotate, scale) at the scale it first drew it and
  // keeps that scale while the layer shrinks or grows, so its pixels depend on the frame its
  // chunk began with. The hint is rewritten to will-change: filter, which keeps what the hint
  // means for the page (its own composited layer, a stacking context, a containing block for
  // fixed descendants) but lets every frame raster at its own scale.
  const STICKY = /^(transform|translate|rotate|scale)$/;
  let hintWatch = null;
  let hintsSeen = false;
  let hinted = [];
  const unstickOne = (el) => {
    if (!(el instanceof Element)) return;
    rewrite(el, getComputedStyle(el).willChange);
  };
  // An inline style can only change the element's own inline hint (no style is computed),
  // unless it wiped a hint rewritten earlier, under which a stylesheet's may show again.
  const rewritten = new WeakSet();
  const unstickInline = (el) => {
    if (!el.style) return;
    if (rewritten.has(el) && !/filter/.test(el.style.willChange)) unstickOne(el);
    else rewrite(el, el.style.willChange);
  };
  const rewrite = (el, hint) => {
    if (!hint || hint === 'auto') return;
    const parts = hint.split(',').map((p) => p.trim());
    if (!parts.some((p) => STICKY.test(p))) return;
    const kept = parts.filter((p) => !STICKY.test(p) && p !== 'filter');
    el.style.setProperty('will-change', kept.concat('filter').join(', '), 'important');
    rewritten.add(el);
  };
  const unstickTree = (root) => {
    unstickOne(root);
    if (root.querySelectorAll) for (const el of root.querySelectorAll('*')) unstickOne(el);
  };
  const unstickHints = () => {
    if (!document.documentElement) return;
    if (!hintsSeen) {
      hintsSeen = true;
      hintWatch = new MutationObserver((records) => { for (const r of records) hinted.push(r); });
      hintWatch.observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['style', 'class'] });
      unstickTree(document.documentElement);
      hintWatch.takeRecords();
      return;
    }
    const records = hinted.concat(hintWatch.takeRecords());
    hinted = [];
    // An inline style changes the element's own inline hint (read without computing
    // styles); a class can change its descendants' too; added nodes bring their subtrees.
    // Each element is looked at once a frame.
    const own = new Set(), trees = new Set();
    for (const r of records) {
      if (r.type === 'attributes') (r.attributeName === 'class' ? trees : own).add(r.target);
      else for (const n of r.addedNodes) if (n instanceof Element) trees.add(n);
    }
    for (const el of trees) unstickTree(el);
    for (const el of own) if (!trees.has(el)) unstickInline(el);
    hintWatch.takeRecords(); // our own rewrites (synchronous: not yet delivered)
  };

  // ---- Settling: after the time is set, everything the new time caused runs before capture.
  // Rounds of: one turn of the event loop (microtasks, posted messages, answers), the timers
  // due now (setTimeout(0) included: the clock does not move), and the rAF callbacks that
  // work outside the animation loop asked for (a framework that draws on the next animation
  // frame after a state change). The animation loop itself runs once a frame, as in a
  // browser. The page is settled after a round in which nothing ran and nothing is in
  // flight. It is all counted in rounds, never in wall-clock time, so a busy machine settles
  // the same way as an idle one.
  const SETTLE_ROUNDS = 1000;  // rounds that still find new work before the frame is refused
  const TIMERS_PER_ROUND = 100;
  const QUIET_TURNS = 1000;    // turns with a message in flight but nothing running (a lost count)
  const describe = () => {
    const parts = [];
    if (inFlight) parts.push(inFlight + ' posted message(s) in flight');
    if (requests.size) parts.push(requests.size + ' request(s) unanswered');
    if (timersDue(now)) parts.push('timers due now (a setTimeout(0) that re-posts itself?)');
    if (rafQueue.size && rafFromOutside) parts.push('requestAnimationFrame callbacks asked for outside the animation loop');
    return parts.join(', ') || 'new tasks every round';
  };
  const settle = async (ms) => {
    let rounds = 0, quiet = 0;
    mutated(); // what the seek itself changed is the frame's, not news
    for (;;) {
      const before = activity;
      await turn();
      activity += runTimers(now, TIMERS_PER_ROUND);
      if (assetsPending()) { await waitForAssets(); activity++; }
      const changed = mutated();
      const worked = activity !== before || changed;
      if (rafQueue.size && rafFromOutside) { runRaf(ms); activity++; }
      else if (!worked && inFlight === 0 && requests.size === 0) break;
      else if (!worked && inFlight === 0) {
        // Only answers are awaited: wait for the next one (the frame's own timeout bounds it).
        await Promise.race(requests);
        continue;
      } else if (!worked) {
        // A message is on its way but nothing ran this turn: give it more turns.
        if (++quiet > QUIET_TURNS) { inFlight = 0; counted = new WeakMap(); selfPosts = 0; }
        continue;
      }
      quiet = 0;
      if (++rounds > SETTLE_ROUNDS) {
        stats.unsettled++;
        throw new Error('the page never settled at ' + (ms / 1000).toFixed(3) + ' s: after ' + SETTLE_ROUNDS +
          ' rounds of the event loop it still had new work (' + describe() + '); a composition must ' +
          'stop scheduling work once a frame is drawn');
      }
    }
    seekAnimations(ms); // animations the settled page started begin at this frame
    unstickHints();
    mutated();          // the rewrites above are ours, not the page's
    stats.settleRounds += rounds;
    return rounds;
  };

  window.__HELIOS_VIRTUAL_TIME__ = 0;
  // Moves time to `ms` and returns once the page has finished drawing that moment.
  Object.defineProperty(window, '__heliosSeek', {
    value: async (ms, settled = true) => {
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
      if (settled) await settle(ms);
      return ms;
    },
  });
  Object.defineProperty(window, '__heliosSettle', { value: () => settle(now) });
  Object.defineProperty(window, '__heliosNow', { value: () => now });
})();
