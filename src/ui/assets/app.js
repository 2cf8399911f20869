// helios-infra dashboard: the job list and the job page. Plain DOM, no framework; every
// value from the store is written with textContent, never as HTML.
'use strict';

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const dur = (ms) => {
  if (ms === undefined || ms === null) return '—';
  const s = Math.round(ms / 1000);
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
};
// The spend ledger (every billed attempt) with its cap, else the compute of committed chunks.
const usd = (v) => '$' + (v >= 1 ? v.toFixed(2) : v.toPrecision(3));
const money = (j) => {
  const s = j.spend || {};
  if (typeof s.spent_usd === 'number' && (s.spent_usd > 0 || s.cap_usd)) {
    let t = usd(s.spent_usd);
    if (typeof s.cap_usd === 'number') t += ' of ' + usd(s.cap_usd) + ' cap';
    if (s.estimate && typeof s.estimate.usd === 'number') t += ' (est. ' + usd(s.estimate.usd) + ')';
    return t;
  }
  const c = j.cost;
  return (c && typeof c.estimated_usd === 'number') ? '$' + c.estimated_usd.toFixed(4) : '—';
};
const pct = (j) => j.frames ? (100 * j.frames_done / j.frames).toFixed(1) + '%' : '—';

async function listJobs() {
  const r = await fetch('/api/jobs', { credentials: 'same-origin' });
  if (!r.ok) return;
  const jobs = await r.json();
  const want = $('#filter').value;
  const body = $('#jobs tbody');
  body.replaceChildren();
  const shown = jobs.filter((j) => !want || j.state === want);
  for (const j of shown) {
    const tr = el('tr', { 'data-job': j.id });
    const link = el('a', { href: '/jobs/' + encodeURIComponent(j.id) }, j.id);
    const td = el('td'); td.append(link); tr.append(td);
    tr.append(el('td', { class: 'composition', title: j.composition || '' }, j.composition || '—'));
    tr.append(el('td', { class: 'output', title: j.output }, j.output));
    tr.append(el('td', { class: 'created' }, new Date(j.created_ms).toLocaleString()));
    tr.append(el('td', {}, j.batch ? `${j.batch} #${j.batch_row}` : ''));
    tr.append(el('td', { class: 'state ' + j.state }, j.display_state || j.state));
    tr.append(el('td', {}, pct(j)));
    tr.append(el('td', {}, `${j.frames_done}/${j.frames}`));
    tr.append(el('td', {}, `${j.chunks_done}/${j.chunk_count}`));
    tr.append(el('td', {}, j.adapter));
    tr.append(el('td', {}, dur(j.elapsed_ms)));
    tr.append(el('td', {}, dur(j.eta_ms)));
    tr.append(el('td', {}, money(j)));
    body.append(tr);
  }
  // Batches: their rows' jobs, counted by state.
  const batches = new Map();
  for (const j of jobs) {
    if (!j.batch) continue;
    const b = batches.get(j.batch) || { rows: 0, succeeded: 0, failed: 0, cancelled: 0, other: 0, frames: 0, done: 0 };
    b.rows += 1;
    if (['succeeded', 'failed', 'cancelled'].includes(j.state)) b[j.state] += 1;
    else if (j.state === 'stopped') b.cancelled += 1; else b.other += 1;
    b.frames += j.frames; b.done += j.frames_done;
    batches.set(j.batch, b);
  }
  const bbody = $('#batches tbody');
  bbody.replaceChildren();
  for (const [id, b] of batches) {
    const tr = el('tr', { 'data-batch': id });
    for (const v of [id, b.rows, b.succeeded, b.failed, b.cancelled, b.other, `${b.done}/${b.frames}`]) tr.append(el('td', {}, String(v)));
    bbody.append(tr);
  }
  $('#batches').hidden = $('#batches-title').hidden = batches.size === 0;
  $('#empty').hidden = jobs.length > 0;
  $('#updated').textContent = 'updated ' + new Date().toLocaleTimeString();
}

function renderTimeline(job) {
  const all = job.chunks.flatMap((c) => c.attempt_list);
  const now = Date.now();
  const t0 = Math.min(...all.map((a) => a.started_ms), now);
  const t1 = Math.max(...all.map((a) => a.ended_ms || now), t0 + 1);
  const span = t1 - t0;
  const box = $('#timeline');
  box.replaceChildren();
  for (const c of job.chunks) {
    const row = el('div', { class: 'row', 'data-chunk': String(c.index), 'data-state': c.state });
    row.append(el('span', { class: 'name' }, `#${c.index}`));
    const lane = el('div', { class: 'lane' });
    const list = c.attempt_list;
    list.forEach((a, i) => {
      const end = a.ended_ms || now;
      // An attempt that started while an earlier one still ran is a speculative duplicate.
      const dup = list.slice(0, i).some((b) => (b.ended_ms || now) > a.started_ms);
      const won = c.committed_attempt === a.attempt;
      const bar = el('div', {
        class: `bar ${a.outcome}${dup ? ' speculative' : ''}${won ? ' committed' : ''}`,
        'data-attempt': String(a.attempt),
        'data-outcome': a.outcome,
        'data-committed': String(won),
        title: `chunk ${c.index} attempt ${a.attempt}: ${a.outcome}` +
          (c.committed_attempt === a.attempt ? ' (committed)' : '') +
          (a.error ? ` — ${a.kind}: ${a.error}` : ''),
      });
      bar.style.left = (100 * (a.started_ms - t0) / span) + '%';
      bar.style.width = (100 * Math.max(end - a.started_ms, 0) / span) + '%';
      lane.append(bar);
    });
    row.append(lane);
    box.append(row);
  }
}

function renderJob(job) {
  document.title = `helios-infra ${job.id} (${job.state})`;
  $('#job-id').textContent = job.id;
  const st = $('#state');
  st.textContent = job.display_state || job.state;
  st.className = 'state ' + job.state;
  st.dataset.state = job.state;
  $('#progress').value = job.frames ? job.frames_done / job.frames : 0;
  $('#progress-text').textContent = `${pct(job)} — ${job.frames_done}/${job.frames} frames, ${job.chunks_done}/${job.chunk_count} chunks`;
  $('#elapsed').textContent = dur(job.elapsed_ms);
  $('#eta').textContent = dur(job.eta_ms);
  $('#adapter').textContent = job.adapter;
  $('#stitch').textContent = job.stitch_method || job.stitch || '—';
  $('#cost').textContent = money(job);
  const err = $('#error');
  err.hidden = !job.error;
  err.textContent = job.error || '';
  const ended = ['succeeded', 'failed', 'cancelled', 'stopped'].includes(job.state);
  $('#cancel').disabled = ended;
  $('#resume').disabled = job.state === 'succeeded' || !ended;
  renderTimeline(job);

  const failures = $('#failures');
  failures.replaceChildren();
  for (const c of job.chunks) {
    for (const a of c.attempt_list) {
      if (!a.error) continue;
      const d = el('div', { class: 'failure', 'data-chunk': String(c.index) });
      d.append(el('div', {}, `chunk ${c.index} (frames ${c.start}..${c.end}), attempt ${a.attempt}: ${a.outcome} — ${a.kind}`));
      d.append(el('pre', { class: 'error' }, a.error));
      failures.append(d);
    }
  }
  if (!failures.children.length) failures.append(el('p', { class: 'muted' }, 'none'));

  const body = $('#chunks tbody');
  body.replaceChildren();
  for (const c of job.chunks) {
    const tr = el('tr', { 'data-chunk': String(c.index) });
    tr.append(el('td', {}, String(c.index)));
    tr.append(el('td', {}, `${c.start}..${c.end}`));
    tr.append(el('td', { class: 'state ' + c.state }, c.state));
    tr.append(el('td', {}, c.attempt_list.map((a) => `${a.attempt}:${a.outcome}`).join(' ')));
    tr.append(el('td', {}, c.worker_ms != null ? dur(c.worker_ms) : '—'));
    if (c.stages || c.timings) reports[c.index] = c.stages || c.timings;
    const s = c.state === 'done' ? reports[c.index] : null;
    tr.append(el('td', {}, s ? Object.entries(s).filter(([, v]) => typeof v === 'number').map(([k, v]) => `${k} ${Math.round(v)}`).join(', ') : '—'));
    body.append(tr);
  }

  const out = $('#output');
  out.replaceChildren();
  const video = $('#preview');
  const output = `/jobs/${encodeURIComponent(job.id)}/output`;
  if (job.state === 'succeeded' && job.downloaded) {
    out.append(el('a', { href: output }, job.output));
  } else {
    out.textContent = job.state === 'succeeded' ? (job.output_url || job.output) : `${job.output} (when the job succeeds)`;
  }
  $('#live-text').textContent = job.live && job.live.playlist
    ? `${job.playable_frames}/${job.frames} frames playable — HLS: ${location.origin}${job.live.playlist}`
    : (job.live && job.live.unavailable) || '';
  live.update(job, video, output);
}

// The player: the committed prefix of a running job through Media Source Extensions (the
// segments are fragmented MP4 on the job's timeline, behind one init), or the live HLS
// playlist where the browser plays HLS itself; the finished output once it is here.
const live = {
  ms: null, sb: null, job: null, appended: -1, busy: false, done: false, native: false,
  update(job, video, output) {
    const finished = job.state === 'succeeded' && job.downloaded;
    if (this.done) return;
    if (!this.ms && !this.native) {
      // Nothing to stream into: the page opened on a finished job, or no live video.
      if (finished) return this.finish(video, output);
      const codecs = job.live && job.live.codecs;
      if (!codecs || !job.live.playlist) { video.hidden = true; return; }
      const type = `video/mp4; codecs="${codecs}"`;
      if (window.MediaSource && MediaSource.isTypeSupported(type)) {
        this.ms = new MediaSource();
        video.src = URL.createObjectURL(this.ms);
        this.ms.addEventListener('sourceopen', () => {
          this.sb = this.ms.addSourceBuffer(type);
          this.pump(video, output);
        }, { once: true });
      } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
        this.native = true;
        video.src = job.live.playlist;
      } else { video.hidden = true; return; }
      video.hidden = false;
      video.muted = true;
      video.dataset.live = 'true';
    }
    this.job = job;
    if (this.sb) this.pump(video, output);
    else if (this.native && finished) this.finish(video, output);
  },
  // Appends the playable segments not yet appended (the API's committed prefix), in
  // order, one at a time, following the latest state of the job.
  async pump(video, output) {
    if (this.busy || !this.sb) return;
    this.busy = true;
    try {
      const id = encodeURIComponent(this.job.id);
      if (this.appended < 0) {
        const r = await fetch(`/jobs/${id}/live/init.mp4`, { credentials: 'same-origin' });
        if (!r.ok) return;
        await this.append(await r.arrayBuffer());
        this.appended = 0;
      }
      while (this.appended < this.job.playable_chunks) {
        const n = this.appended;
        const r = await fetch(`/jobs/${id}/live/${n}.m4s`, { credentials: 'same-origin' });
        if (!r.ok) break;
        await this.append(await r.arrayBuffer());
        this.appended = n + 1;
        const b = this.sb.buffered;
        if (b.length && video.currentTime < b.start(0)) video.currentTime = b.start(0);
        if (video.paused) video.play().catch(() => {});
      }
      const j = this.job;
      if (j.state === 'succeeded' && this.appended === j.chunk_count && this.ms.readyState === 'open') {
        this.ms.endOfStream();
        if (j.downloaded) this.finish(video, output);
      }
    } finally {
      this.busy = false;
    }
  },
  append(data) {
    return new Promise((resolve, reject) => {
      this.sb.addEventListener('updateend', resolve, { once: true });
      this.sb.addEventListener('error', reject, { once: true });
      this.sb.appendBuffer(data);
    });
  },
  // The output (with its audio) takes over where the live video was.
  finish(video, output) {
    this.done = true;
    const at = video.currentTime || 0;
    const playing = !video.paused;
    video.dataset.live = 'false';
    video.src = output;
    video.hidden = false;
    video.addEventListener('loadedmetadata', () => {
      if (at) video.currentTime = Math.min(at, video.duration || at);
      if (playing) video.play().catch(() => {});
    }, { once: true });
  },
};

async function act(id, what) {
  let query = '';
  // A job stopped by its cost cap continues only under a higher one.
  if (what === 'resume' && $('#state').dataset.state === 'stopped') {
    const cap = window.prompt('This job was stopped by its cost cap. New cap in USD:', '');
    if (!cap) return;
    query = '?max_cost=' + encodeURIComponent(cap);
  }
  const r = await fetch(`/api/jobs/${encodeURIComponent(id)}/${what}${query}`, { method: 'POST', credentials: 'same-origin' });
  let msg = r.statusText;
  try { msg = (await r.json()).message; } catch (e) { /* not JSON */ }
  $('#action-result').textContent = msg;
  if (what === 'resume' && r.ok) {
    resumed = { from: $('#state').dataset.state, at: Date.now() };
    follow(id);
  }
}

// Stage timings by chunk, from the job's reports (GET /api/jobs/ID; events omit them).
const reports = {};
let source = null;
// After Resume: the state it was in and when, so that the page keeps listening until the
// resumed run has taken over (the stream of an ended job closes; EventSource reconnects).
let resumed = null;
function follow(id) {
  if (source) source.close();
  source = new EventSource(`/api/jobs/${encodeURIComponent(id)}/events`);
  source.onmessage = (e) => {
    const job = JSON.parse(e.data);
    renderJob(job);
    const waiting = resumed && job.state === resumed.from && Date.now() - resumed.at < 30000;
    if (!waiting) resumed = null;
    if (job.final && !waiting) {
      source.close(); source = null;
      // Once more with the reports' stage timings.
      fetch(`/api/jobs/${encodeURIComponent(id)}`, { credentials: 'same-origin' })
        .then((r) => r.ok ? r.json() : null).then((j) => j && renderJob(j));
    }
  };
  source.onerror = () => { if (source && source.readyState === EventSource.CLOSED) source = null; };
}

if (document.body.dataset.page === 'jobs') {
  $('#filter').addEventListener('change', listJobs);
  listJobs();
  setInterval(listJobs, 2000);
} else {
  const id = decodeURIComponent(location.pathname.split('/')[2] || '');
  $('#cancel').addEventListener('click', () => act(id, 'cancel'));
  $('#resume').addEventListener('click', () => act(id, 'resume'));
  fetch(`/api/jobs/${encodeURIComponent(id)}`, { credentials: 'same-origin' })
    .then((r) => r.json()).then(renderJob).then(() => follow(id));
}
